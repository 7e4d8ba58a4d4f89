//! `bedda-load`: the load and latency tool. Against running server nodes it opens many
//! WebSocket connections, subscribes them to sessions of a chosen size, drives a chosen
//! message rate, and reports delivery latency (same node and across nodes), deliveries
//! per second, connection setup rate, server CPU and memory, and notifying commits per
//! second on Postgres. With `--artifact` it drives one live document instead (see
//! `artifact.rs`). See docs/PERFORMANCE.md.

mod artifact;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Parser, Debug, Clone)]
#[command(about = "Load and latency tool for bedda-collab")]
struct Args {
    /// Base URLs of the nodes (comma-separated); connections are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    nodes: Vec<String>,
    /// WebSocket connections to open.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Connections per chat session (one of them sends).
    #[arg(long, default_value_t = 10)]
    session_size: usize,
    /// Messages per second, in total over all sessions (with `--artifact`: document
    /// updates per second, in total over all writers).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Distinct user accounts behind the connections.
    #[arg(long, default_value_t = 20)]
    users: usize,
    /// Bytes of padding per message.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Only open the connections (no sessions, no messages): measures setup rate and
    /// memory per idle connection.
    #[arg(long)]
    idle: bool,
    /// Local addresses to connect from, round-robin (e.g. `127.0.0.2,127.0.0.3`): one
    /// source address reaches at most ~28,000 connections per server port (the ephemeral
    /// port range), so 100,000 connections need several.
    #[arg(long, value_delimiter = ',')]
    source_addrs: Vec<std::net::IpAddr>,
    /// Artifact mode: one artifact edited over the y-websocket protocol by `--writers`
    /// clients while `--readers` clients watch; `--clients`, `--session-size`, `--payload`
    /// and `--idle` do not apply.
    #[arg(long)]
    artifact: bool,
    /// Artifact mode: clients that append timestamped chunks to the text.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Artifact mode: clients that only watch (connected with write tokens all the same).
    #[arg(long, default_value_t = 16)]
    readers: usize,
    /// Server process ids (comma-separated) to read CPU and memory from /proc.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// The database the nodes use, to count notifying commits.
    #[arg(long)]
    database_url: Option<String>,
    /// Write the JSON report here as well.
    #[arg(long)]
    json: Option<String>,
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// (user+system CPU seconds, RSS bytes) of a process.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (fields[11].parse::<f64>().ok()? + fields[12].parse::<f64>().ok()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((cpu, rss_kb * 1024))
}

fn usage(pids: &[u32]) -> (f64, u64) {
    pids.iter()
        .filter_map(|p| proc_usage(*p))
        .fold((0.0, 0), |(c, r), (c2, r2)| (c + c2, r + r2))
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    async fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }
}

/// One workspace and `--users` editors in it: (workspace id, user tokens, the owner's first).
async fn setup_workspace(api: &Api, args: &Args) -> anyhow::Result<(String, Vec<String>)> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let password = "load-test-password";
    let register = |i: usize| {
        let email = format!("load-{}-{i}@example.com", &run[..8]);
        async move {
            let body = json!({ "email": email, "password": password, "display_name": format!("load {i}") });
            api.post("/api/auth/register", None, body)
                .await
                .map(|b| (email, b["token"].as_str().unwrap_or_default().to_owned()))
        }
    };
    let (_, owner) = register(0).await?;
    let ws = api
        .post(
            "/api/workspaces",
            Some(&owner),
            json!({ "name": format!("load {run}") }),
        )
        .await?;
    let ws = ws["id"].as_str().unwrap_or_default().to_owned();
    let mut tokens = vec![owner.clone()];
    for i in 1..args.users.max(1) {
        let (email, token) = register(i).await?;
        let inv = api
            .post(
                &format!("/api/workspaces/{ws}/invitations"),
                Some(&owner),
                json!({ "email": email, "role": "editor" }),
            )
            .await?;
        api.post(
            "/api/invitations/accept",
            Some(&token),
            json!({ "token": inv["token"] }),
        )
        .await?;
        tokens.push(token);
    }
    Ok((ws, tokens))
}

/// Users (tokens) in one workspace, and session topics.
async fn setup(api: &Api, args: &Args, sessions: usize) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let (ws, tokens) = setup_workspace(api, args).await?;
    let owner = &tokens[0];
    let mut topics = Vec::new();
    for i in 0..sessions {
        let body = json!({ "title": format!("load {i}"), "visibility": "workspace" });
        let s = api
            .post(&format!("/api/workspaces/{ws}/sessions"), Some(owner), body)
            .await?;
        topics.push(format!("session:{}", s["id"].as_str().unwrap_or_default()));
    }
    Ok((tokens, topics))
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(node: &str, token: &str, source: Option<std::net::IpAddr>) -> anyhow::Result<Socket> {
    let url = format!("{}/ws", node.replacen("http", "ws", 1));
    let mut request = url.clone().into_client_request()?;
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse()?);
    let (mut socket, _) = match source {
        None => tokio_tungstenite::connect_async(request).await?,
        Some(ip) => {
            let target = url::Url::parse(&url)?;
            let host = target.host_str().unwrap_or("127.0.0.1");
            let addr = tokio::net::lookup_host((host, target.port().unwrap_or(80)))
                .await?
                .next()
                .ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))?;
            let tcp = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            tcp.bind(std::net::SocketAddr::new(ip, 0))?;
            let stream = tcp.connect(addr).await?;
            tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await?
        }
    };
    // hello
    socket
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("closed before hello"))??;
    Ok(socket)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

fn stats(mut v: Vec<u64>) -> Value {
    v.sort_unstable();
    json!({
        "count": v.len(),
        "p50_ms": percentile(&v, 0.50),
        "p95_ms": percentile(&v, 0.95),
        "p99_ms": percentile(&v, 0.99),
        "max_ms": v.last().map(|m| *m as f64 / 1000.0),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let fd_limit = bedda_collab::sys::raise_fd_limit();
    let api = Api {
        http: reqwest::Client::new(),
        base: args.nodes[0].trim_end_matches('/').to_owned(),
    };
    let (report, table) = if args.artifact {
        let report = artifact::run(&args, &api).await?;
        let table = markdown(&report, artifact::REPORT_KEYS);
        (report, table)
    } else {
        let report = messages(&args, &api, fd_limit).await?;
        let table = markdown(&report, MESSAGE_REPORT_KEYS);
        (report, table)
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("{table}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// The chat-message run (or `--idle`): connections, sessions, messages.
async fn messages(args: &Args, api: &Api, fd_limit: u64) -> anyhow::Result<Value> {
    if (args.clients as u64) + 64 > fd_limit {
        eprintln!(
            "warning: open-file limit is {fd_limit}; {} connections will be refused past it",
            args.clients
        );
    }
    let sessions = if args.idle {
        0
    } else {
        args.clients.div_ceil(args.session_size.max(1))
    };
    eprintln!("setting up {} users and {sessions} sessions…", args.users);
    let (tokens, topics) = setup(api, args, sessions).await?;
    let (_, rss_before) = usage(&args.server_pid);

    // Connect, 64 at a time.
    eprintln!("opening {} connections…", args.clients);
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(args.clients);
    let mut refused = 0usize;
    let mut first_error = None;
    for chunk in (0..args.clients).collect::<Vec<_>>().chunks(64) {
        let attempts = chunk.iter().map(|i| {
            let node = args.nodes[i % args.nodes.len()].clone();
            let token = tokens[i % tokens.len()].clone();
            let n = i % args.nodes.len();
            let source = (!args.source_addrs.is_empty()).then(|| args.source_addrs[i % args.source_addrs.len()]);
            async move { (n, connect(&node, &token, source).await) }
        });
        for (node, result) in futures_util::future::join_all(attempts).await {
            match result {
                Ok(s) => sockets.push((node, s)),
                Err(e) => {
                    refused += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
    }
    let setup_secs = started.elapsed().as_secs_f64();
    let connected = sockets.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, rss_after) = usage(&args.server_pid);
    let mut report = json!({
        "nodes": args.nodes.len(),
        "connections": connected,
        "refused": refused,
        "first_refusal": first_error,
        "fd_limit": fd_limit,
        "connection_setup_per_second": connected as f64 / setup_secs,
        "server_rss_bytes_before": rss_before,
        "server_rss_bytes_after": rss_after,
        "server_bytes_per_connection": if connected > 0 { (rss_after.saturating_sub(rss_before)) as f64 / connected as f64 } else { f64::NAN },
    });

    if !args.idle {
        let summary = drive(args, sockets, &topics).await?;
        if let Value::Object(extra) = summary {
            report.as_object_mut().unwrap().extend(extra);
        }
    }
    Ok(report)
}

/// Subscribes every socket, sends at the chosen rate, and measures deliveries.
async fn drive(args: &Args, sockets: Vec<(usize, Socket)>, topics: &[String]) -> anyhow::Result<Value> {
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let per_session_rate = args.rate / topics.len().max(1) as f64;
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for (i, (node, socket)) in sockets.into_iter().enumerate() {
        let topic = topics[i / args.session_size.max(1)].clone();
        let (mut sink, mut stream) = socket.split();
        sink.send(Message::Text(
            json!({ "type": "subscribe", "topic": topic }).to_string().into(),
        ))
        .await?;
        // Wait until live.
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Text(t) = msg
                && t.contains("\"caught_up\"")
            {
                break;
            }
        }
        let is_sender = i % args.session_size.max(1) == 0;
        if is_sender {
            senders.push((node, topic.clone(), sink));
        }
        let (stop, delivered) = (stop.clone(), delivered.clone());
        readers.push(tokio::spawn(async move {
            let (mut same, mut cross) = (Vec::new(), Vec::new());
            loop {
                let next = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
                let msg = match next {
                    Ok(Some(Ok(m))) => m,
                    Ok(_) => break,
                    Err(_) if stop.load(Ordering::Relaxed) => break,
                    Err(_) => continue,
                };
                let Message::Text(text) = msg else { continue };
                if !text.contains("message.created") {
                    continue;
                }
                let received = now_micros();
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let body = v["data"]["message"]["body"].as_str().unwrap_or_default();
                let mut parts = body.split(' ');
                let (Some(sent), Some(from)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let (Ok(sent), Ok(from)) = (sent.parse::<u64>(), from.parse::<usize>()) else {
                    continue;
                };
                delivered.fetch_add(1, Ordering::Relaxed);
                let latency = received.saturating_sub(sent);
                if from == node {
                    same.push(latency)
                } else {
                    cross.push(latency)
                }
            }
            (same, cross)
        }));
    }
    let commits_before = count_commits(args).await;
    let (cpu_before, _) = usage(&args.server_pid);
    let started = Instant::now();
    let padding = "x".repeat(args.payload);
    let duration = Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for (node, topic, mut sink) in senders {
        let padding = padding.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let interval = Duration::from_secs_f64(1.0 / per_session_rate.max(0.001));
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let start = Instant::now();
            while start.elapsed() < duration {
                tick.tick().await;
                let body = format!("{} {node} {padding}", now_micros());
                let frame = json!({ "type": "send_message", "topic": topic, "body": body });
                if sink.send(Message::Text(frame.to_string().into())).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap_or(0);
    }
    let send_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_after, _) = usage(&args.server_pid);
    let commits_after = count_commits(args).await;
    let (mut same, mut cross) = (Vec::new(), Vec::new());
    for r in readers {
        if let Ok((s, c)) = r.await {
            same.extend(s);
            cross.extend(c);
        }
    }
    let total = delivered.load(Ordering::Relaxed);
    Ok(json!({
        "sessions": topics.len(),
        "session_size": args.session_size,
        "messages_sent": sent,
        "target_rate": args.rate,
        "achieved_send_rate": sent as f64 / send_secs,
        "deliveries": total,
        "expected_deliveries": sent * args.session_size as u64,
        "deliveries_per_second": total as f64 / send_secs,
        "latency_same_node": stats(same),
        "latency_cross_node": stats(cross),
        "server_cpu_cores": if args.server_pid.is_empty() { f64::NAN } else { (cpu_after - cpu_before) / elapsed },
        "notifying_commits_per_second": match (commits_before, commits_after) {
            (Some(b), Some(a)) => (a - b) as f64 / send_secs,
            _ => f64::NAN,
        },
    }))
}

/// Transactions that wrote events (each rang the doorbell once): events written in one
/// transaction share its start time.
async fn count_commits(args: &Args) -> Option<i64> {
    let url = args.database_url.as_ref()?;
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT count(DISTINCT (topic, created_at)) FROM events", &[])
        .await
        .ok()?;
    Some(row.get(0))
}

/// The rows of the message run's table.
const MESSAGE_REPORT_KEYS: &[&str] = &[
    "nodes",
    "connections",
    "refused",
    "connection_setup_per_second",
    "server_bytes_per_connection",
    "sessions",
    "session_size",
    "messages_sent",
    "achieved_send_rate",
    "deliveries",
    "expected_deliveries",
    "deliveries_per_second",
    "server_cpu_cores",
    "notifying_commits_per_second",
];

/// The report as a markdown table: `keys` in order (those present), then the latencies.
fn markdown(r: &Value, keys: &[&str]) -> String {
    let mut out = String::from("| metric | value |\n|---|---|\n");
    let mut row = |k: &str, v: String| out.push_str(&format!("| {k} | {v} |\n"));
    let num = |v: &Value| match (v.as_u64(), v.as_f64()) {
        (Some(n), _) => n.to_string(),
        (None, Some(f)) => format!("{f:.1}"),
        _ => v.to_string(),
    };
    for key in keys {
        if let Some(v) = r.get(key) {
            row(key, num(v));
        }
    }
    for key in ["latency_same_node", "latency_cross_node"] {
        if let Some(l) = r.get(key) {
            row(
                &format!("{key} p50 / p95 / p99 / max (ms)"),
                format!(
                    "{} / {} / {} / {}",
                    num(&l["p50_ms"]),
                    num(&l["p95_ms"]),
                    num(&l["p99_ms"]),
                    num(&l["max_ms"])
                ),
            );
        }
    }
    out
}
