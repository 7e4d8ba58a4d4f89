//! Interop with the stock npm `yjs` + `y-websocket` clients: each client is one `node
//! tests/interop/client.js` process (a `WebsocketProvider` driven by JSON lines) editing an artifact
//! at `/ws/artifacts/{id}?token=…`. Concurrent and offline edits converge, late joiners get the
//! whole document, read-only clients change nothing, nodes agree, and the document outlives its server.

use crate::common::cluster::Node;
use crate::common::*;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use uuid::Uuid;

/// Longest a client waits for sync or for a text (a guard, not a measurement).
const WAIT_MS: u64 = 15_000;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Whether `node_modules` is at least as new as `package-lock.json`.
fn installed(dir: &Path) -> bool {
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (
        modified(dir.join("node_modules/.package-lock.json")),
        modified(dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    }
}

/// Runs `npm ci` in tests/interop when its packages are missing or stale: once per process, and
/// under a file lock so test processes running side by side (e.g. nextest) do not race.
fn ensure_node_modules() {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        let dir = interop_dir();
        let lock_path = std::env::temp_dir().join("bedda-collab-interop-npm.lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
        lock.lock().map_err(|e| format!("locking the npm lock file: {e}"))?;
        if installed(&dir) {
            return Ok(());
        }
        eprintln!(
            "interop: installing the pinned npm packages (`npm ci` in {})",
            dir.display()
        );
        let output = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("could not run `npm` ({e}): the interop tests need Node 20 and npm on PATH"))?;
        if !output.status.success() {
            return Err(format!(
                "`npm ci` in {} failed ({}); run it by hand to see why:\n{}{}",
                dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// One scripted y-websocket client (a node process).
struct JsClient {
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl JsClient {
    fn spawn(name: &str) -> JsClient {
        ensure_node_modules();
        let mut child = Command::new("node")
            .arg("client.js")
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting `node` (the interop tests need Node 20 on PATH): {e}"));
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let label = name.to_owned();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                eprintln!("[{label} stderr] {line}");
            }
        });
        JsClient {
            name: name.to_owned(),
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
        }
    }

    /// A client connected to `artifact` on `api` with a connect token, synced.
    async fn connect(api: &Api, artifact: Uuid, token: &str, name: &str) -> JsClient {
        let mut client = JsClient::spawn(name);
        let url = format!("ws://127.0.0.1:{}/ws/artifacts", api.port);
        client
            .cmd(json!({ "cmd": "connect", "url": url, "room": artifact.to_string(), "token": token }))
            .await;
        client.cmd(json!({ "cmd": "wait-synced", "timeout_ms": WAIT_MS })).await;
        client
    }

    /// Sends one command; returns its reply, failing the test if the command failed.
    async fn cmd(&mut self, command: Value) -> Value {
        let name = &self.name;
        let line = format!("{command}\n");
        if let Err(e) = self.stdin.write_all(line.as_bytes()).await {
            panic!("{name}: the client is gone ({e}) before {command}");
        }
        loop {
            let next = tokio::time::timeout(Duration::from_millis(WAIT_MS + 10_000), self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("{name}: no reply to {command}"))
                .unwrap();
            let Some(line) = next else {
                panic!("{name}: the client exited before replying to {command}");
            };
            let value: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{name}: not JSON: {line}"));
            if value.get("reply").is_none() {
                eprintln!("[{name}] {line}");
                continue;
            }
            assert_eq!(value["ok"], true, "{name}: {command} failed: {}", value["error"]);
            return value;
        }
    }

    async fn insert(&mut self, index: usize, text: &str) {
        self.cmd(json!({ "cmd": "insert", "index": index, "text": text })).await;
    }

    async fn append(&mut self, text: &str) {
        self.cmd(json!({ "cmd": "insert", "text": text })).await;
    }

    /// Deletes the first occurrence of `text`.
    async fn delete(&mut self, text: &str) {
        self.cmd(json!({ "cmd": "delete", "text": text })).await;
    }

    async fn text(&mut self) -> String {
        let reply = self.cmd(json!({ "cmd": "read" })).await;
        reply["text"].as_str().unwrap().to_owned()
    }

    async fn wait_text(&mut self, expected: &str) {
        self.cmd(json!({ "cmd": "wait-text", "equals": expected, "timeout_ms": WAIT_MS }))
            .await;
    }

    /// `provider.disconnect()`.
    async fn offline(&mut self) {
        self.cmd(json!({ "cmd": "offline" })).await;
    }

    /// `provider.connect()`, then waits until synced again.
    async fn online(&mut self) {
        self.cmd(json!({ "cmd": "online" })).await;
        self.cmd(json!({ "cmd": "wait-synced", "timeout_ms": WAIT_MS })).await;
    }

    async fn set_name(&mut self, name: &str) {
        self.cmd(json!({ "cmd": "set-awareness", "state": { "name": name } }))
            .await;
    }

    /// Waits until exactly these awareness states (by `name`, own included) are known.
    async fn wait_awareness(&mut self, names: &[&str]) {
        self.cmd(json!({ "cmd": "wait-awareness", "names": names, "timeout_ms": WAIT_MS }))
            .await;
    }

    /// Destroys the provider and waits for the process to exit.
    async fn close(mut self) {
        self.cmd(json!({ "cmd": "close" })).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// An owner, their workspace and one text artifact in it.
struct Room {
    owner: User,
    ws: Uuid,
    artifact: Uuid,
}

async fn room(api: &Api) -> Room {
    let owner = api.register("owner").await;
    let ws = api.create_workspace(&owner, "Interop").await;
    let (status, body) = api
        .post(
            &format!("/api/workspaces/{ws}/artifacts"),
            Some(&owner.token),
            json!({ "title": "Notes", "kind": "text" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let artifact = body["id"].as_str().unwrap().parse().unwrap();
    Room { owner, ws, artifact }
}

async fn connect_token(api: &Api, user: &User, artifact: Uuid, access: &str) -> String {
    let path = format!("/api/artifacts/{artifact}/connect-token");
    let (status, body) = api.post(&path, Some(&user.token), json!({ "access": access })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// A client for `user` with a fresh token of `access` ("read" or "write").
async fn join(api: &Api, user: &User, artifact: Uuid, access: &str, name: &str) -> JsClient {
    let token = connect_token(api, user, artifact, access).await;
    JsClient::connect(api, artifact, &token, name).await
}

/// Waits until `GET /api/artifacts/{id}` returns `expected` as its content.
async fn assert_content(api: &Api, user: &User, artifact: Uuid, expected: &str) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        let (status, body) = api.get(&format!("/api/artifacts/{artifact}"), &user.token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["content"] == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "content {} is not {expected:?}",
            body["content"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until all clients hold the same text; returns it.
async fn converged(clients: &mut [JsClient]) -> String {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        let texts = join_all(clients.iter_mut().map(JsClient::text)).await;
        if texts.iter().all(|t| *t == texts[0]) {
            return texts[0].clone();
        }
        assert!(Instant::now() < deadline, "the clients did not converge: {texts:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The in-process server, with a frame rate limit that scripted bursts stay under.
async fn app() -> TestApp {
    spawn_app_with(|config| config.ws_frames_per_second = 1000).await
}

/// The character client `c` (< 3) types in its edit `i` (< 20): all distinct, one UTF-16 unit each,
/// so inserts at any index never split another client's text.
fn mark(c: usize, i: usize) -> char {
    char::from_u32(['a', 'A', '\u{3b1}'][c] as u32 + i as u32).unwrap()
}

/// Every mark of `clients` clients with `edits` edits each, sorted.
fn marks(clients: usize, edits: usize) -> Vec<char> {
    let mut all: Vec<char> = (0..clients).flat_map(|c| (0..edits).map(move |i| mark(c, i))).collect();
    all.sort();
    all
}

fn sorted(text: &str) -> Vec<char> {
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort();
    chars
}

/// Each client inserts its marks one by one at scattered indices, all clients at once.
async fn type_concurrently(clients: &mut [JsClient], edits: usize) {
    join_all(clients.iter_mut().enumerate().map(|(c, client)| async move {
        for i in 0..edits {
            client.insert((i * 7 + c * 5) % 40, &mark(c, i).to_string()).await;
        }
    }))
    .await;
}

#[actix_web::test]
async fn concurrent_editors_converge() {
    let app = app().await;
    let room = room(&app).await;
    let mut clients = Vec::new();
    for name in ["ann", "bob", "cy"] {
        let user = app.add_member(&room.owner, room.ws, name, "editor").await;
        clients.push(join(&app, &user, room.artifact, "write", name).await);
    }
    type_concurrently(&mut clients, 20).await;
    let text = converged(&mut clients).await;
    assert_eq!(sorted(&text), marks(3, 20), "{text}");

    // Concurrent deletes (of one's own text and of another client's) converge too.
    join_all(clients.iter_mut().enumerate().map(|(c, client)| async move {
        client.delete(&mark((c + 1) % 3, 0).to_string()).await;
        client.delete(&mark(c, 19).to_string()).await;
    }))
    .await;
    let after = converged(&mut clients).await;
    let expected: String = text
        .chars()
        .filter(|&ch| (0..3).all(|c| ch != mark(c, 0) && ch != mark(c, 19)))
        .collect();
    assert_eq!(after, expected);
    assert_content(&app, &room.owner, room.artifact, &after).await;
}

#[actix_web::test]
async fn offline_edits_converge_after_reconnecting() {
    let app = app().await;
    let room = room(&app).await;
    let ann = app.add_member(&room.owner, room.ws, "ann", "editor").await;
    let bob = app.add_member(&room.owner, room.ws, "bob", "editor").await;
    let mut a = join(&app, &ann, room.artifact, "write", "ann").await;
    let mut b = join(&app, &bob, room.artifact, "write", "bob").await;
    a.append("shared line\n").await;
    b.wait_text("shared line\n").await;

    a.offline().await;
    a.append("[ann offline]").await;
    a.delete("shared").await;
    b.insert(0, "[bob online]").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.text().await, "[bob online]shared line\n", "offline edits leaked");

    a.online().await;
    let mut clients = [a, b];
    let text = converged(&mut clients).await;
    assert!(
        text.contains("[ann offline]") && text.contains("[bob online]"),
        "{text}"
    );
    assert!(!text.contains("shared"), "{text}");
    assert_content(&app, &room.owner, room.artifact, &text).await;
}

#[actix_web::test]
async fn late_joiners_receive_the_full_document() {
    let app = app().await;
    let room = room(&app).await;
    let mut a = join(&app, &room.owner, room.artifact, "write", "ann").await;
    for i in 0..50 {
        a.append(&format!("line {i}: the quick brown fox jumps over the lazy dog\n"))
            .await;
    }
    a.insert(0, &"x".repeat(10_000)).await;
    a.delete("line 7:").await;
    let text = a.text().await;

    let mut b = join(&app, &room.owner, room.artifact, "read", "late-bob").await;
    assert_eq!(b.text().await, text, "synced, yet not the whole document");
    a.close().await;
    b.close().await;
    // Nobody else is connected now: the whole document comes from the server.
    let mut c = join(&app, &room.owner, room.artifact, "read", "late-cy").await;
    assert_eq!(c.text().await, text);
    assert_content(&app, &room.owner, room.artifact, &text).await;
}

#[actix_web::test]
async fn read_only_edits_reach_nobody() {
    let app = app().await;
    let room = room(&app).await;
    let viewer = app.add_member(&room.owner, room.ws, "vic", "viewer").await;
    let editor = app.add_member(&room.owner, room.ws, "eve", "editor").await;
    let path = format!("/api/artifacts/{}/connect-token", room.artifact);
    let res = app.post(&path, Some(&viewer.token), json!({ "access": "write" })).await;
    assert_error(&res, StatusCode::FORBIDDEN, "permission_denied");

    let mut e = join(&app, &editor, room.artifact, "write", "eve").await;
    e.append("hello").await;
    let mut v = join(&app, &viewer, room.artifact, "read", "vic").await;
    assert_eq!(v.text().await, "hello");

    v.insert(0, "EVIL ").await;
    e.append(" world").await;
    // The read-only client still receives the others' edits (on top of its own local one).
    v.wait_text("EVIL hello world").await;
    // A reconnect makes the provider offer its local edit again (sync step 2): still refused.
    v.offline().await;
    v.online().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(e.text().await, "hello world");
    let mut late = join(&app, &room.owner, room.artifact, "write", "late").await;
    assert_eq!(late.text().await, "hello world");
    assert_content(&app, &room.owner, room.artifact, "hello world").await;
}

#[actix_web::test]
async fn clients_on_two_nodes_converge() {
    let db = TestDb::new().await;
    let nodes = [Node::start(&db, &[]).await, Node::start(&db, &[]).await];
    let room = room(&nodes[0]).await;
    let ann = nodes[0].add_member(&room.owner, room.ws, "ann", "editor").await;
    let mut clients = Vec::new();
    for (i, (node, user)) in nodes.iter().zip([&room.owner, &ann]).enumerate() {
        // Tokens come from the first node: any node must accept them.
        let token = connect_token(&nodes[0], user, room.artifact, "write").await;
        clients.push(JsClient::connect(node, room.artifact, &token, &format!("node{i}")).await);
    }
    type_concurrently(&mut clients, 20).await;
    let text = converged(&mut clients).await;
    assert_eq!(sorted(&text), marks(2, 20), "{text}");
    let mut late = join(&nodes[1], &ann, room.artifact, "read", "late-node1").await;
    assert_eq!(late.text().await, text);
    for node in &nodes {
        assert_content(node, &room.owner, room.artifact, &text).await;
    }
}

#[actix_web::test]
async fn the_document_survives_a_server_restart() {
    let db = TestDb::new().await;
    let node = Node::start(&db, &[]).await;
    let room = room(&node).await;
    let mut a = join(&node, &room.owner, room.artifact, "write", "ann").await;
    let mut witness = join(&node, &room.owner, room.artifact, "read", "witness").await;
    a.append("before the restart\n").await;
    a.insert(0, "# Title\n").await;
    a.delete("the ").await;
    let text = a.text().await;
    witness.wait_text(&text).await;
    a.close().await;
    witness.close().await;
    let (status, _) = node.terminate().await;
    assert!(status.success(), "clean exit: {status:?}");

    let node = Node::start(&db, &[]).await;
    let mut fresh = join(&node, &room.owner, room.artifact, "write", "fresh").await;
    assert_eq!(fresh.text().await, text);
    assert_content(&node, &room.owner, room.artifact, &text).await;
}

#[actix_web::test]
async fn awareness_is_relayed_and_removed_when_a_client_vanishes() {
    let app = app().await;
    let room = room(&app).await;
    let mut a = join(&app, &room.owner, room.artifact, "write", "ann").await;
    let mut b = join(&app, &room.owner, room.artifact, "write", "bob").await;
    a.set_name("ann").await;
    b.set_name("bob").await;
    a.wait_awareness(&["ann", "bob"]).await;
    b.wait_awareness(&["ann", "bob"]).await;
    // SIGKILL: no goodbye from the client; the server must notice and tell the others.
    b.child.kill().await.unwrap();
    a.wait_awareness(&["ann"]).await;
}
