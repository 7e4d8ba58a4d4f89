//! Artifact mode (`--artifact`): one live document. `--writers` y-websocket clients append
//! timestamped chunks (`|<send micros>:<writer>|`) at the end of the text, `--rate` updates
//! per second in total, while `--readers` clients only watch. Every client measures, for
//! each chunk of another writer, the time from send until the chunk is in its own text,
//! split into writers on the client's node and on the other node. At the end every client's
//! text and the committed text (over REST) must be identical.
//!
//! Chunks are found in what each incoming update adds to the document (the state diff
//! against the state vector from before applying it), not with `Text::observe` deltas: a
//! yrs text delta walks the whole text, ~100–170 µs per update once it holds 15,000
//! chunks, against ~1 µs to apply the update, so on shared cores the deltas would measure
//! the load tool instead of the server.

use crate::{Api, Args, Socket, now_micros, stats, usage};
use bedda_collab::cluster::bus::{EVENTS_CHANNEL, EventsNotice};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use yrs::sync::{Message as YMessage, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

/// The rows of the artifact run's table.
pub const REPORT_KEYS: &[&str] = &[
    "nodes",
    "writers",
    "readers",
    "updates_sent",
    "target_rate",
    "achieved_send_rate",
    "deliveries",
    "expected_deliveries",
    "deliveries_per_second",
    "server_cpu_cores",
    "load_tool_cpu_cores",
    "notifying_commits_per_second",
    "updates_per_commit",
    "clients_closed",
    "converged",
    "distinct_texts",
    "rest_text_matches",
    "chunks_in_text",
    "every_chunk_once",
    "text_bytes",
];

/// Gives up waiting for the last deliveries after this long without progress.
const DRAIN_STALL: Duration = Duration::from_secs(5);
/// How long the handshake (connect, both sync steps) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client whose handshake is done.
struct Client {
    doc: Doc,
    socket: Socket,
}

/// What one client saw.
struct Outcome {
    same: Vec<u64>,
    cross: Vec<u64>,
    text: String,
    /// Why the socket ended before the run did, if it did.
    closed: Option<String>,
}

/// Who a client is and, for a writer, when it sends.
struct Role {
    index: usize,
    nodes: usize,
    /// (first send, interval, last moment to send) for writers.
    sending: Option<(tokio::time::Instant, Duration, tokio::time::Instant)>,
}

impl Role {
    fn node(&self) -> usize {
        self.index % self.nodes
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    delivered: AtomicU64,
}

pub async fn run(args: &Args, api: &Api) -> anyhow::Result<Value> {
    anyhow::ensure!(args.writers > 0, "--artifact needs at least one writer");
    let clients = args.writers + args.readers;
    eprintln!("setting up {} users and one artifact…", args.users);
    let (workspace, tokens) = crate::setup_workspace(api, args).await?;
    let owner = &tokens[0];
    let body = json!({ "title": "load", "kind": "text" });
    let created = api
        .post(&format!("/api/workspaces/{workspace}/artifacts"), Some(owner), body)
        .await?;
    let artifact = created["id"].as_str().unwrap_or_default().to_owned();
    let commits = match &args.database_url {
        Some(url) => Some(CommitCounter::start(url, &format!("artifact:{artifact}")).await?),
        None => None,
    };

    eprintln!("opening {} writers and {} readers…", args.writers, args.readers);
    let mut opened = Vec::with_capacity(clients);
    for i in 0..clients {
        let path = format!("/api/artifacts/{artifact}/connect-token");
        let user = &tokens[i % tokens.len()];
        let token = api.post(&path, Some(user), json!({ "access": "write" })).await?;
        let token = token["token"].as_str().unwrap_or_default();
        opened.push(open(&args.nodes[i % args.nodes.len()], &artifact, token).await?);
    }
    // Each handshake committed the client's (empty) SyncStep2 answer: let those settle.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let counters = Arc::new(Counters::default());
    let (stop, stopped) = watch::channel(false);
    let interval = Duration::from_secs_f64(args.writers as f64 / args.rate.max(0.001));
    let commits_before = commits.as_ref().map(CommitCounter::read);
    let (cpu_before, _) = usage(&args.server_pid);
    let tool_before = own_cpu();
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let send_until = start + Duration::from_secs(args.duration);
    let mut tasks = Vec::with_capacity(clients);
    for (index, client) in opened.into_iter().enumerate() {
        // Writers' ticks are spread over the interval rather than all at once.
        let sending = (index < args.writers).then(|| {
            (
                start + interval.mul_f64(index as f64 / args.writers as f64),
                interval,
                send_until,
            )
        });
        let role = Role {
            index,
            nodes: args.nodes.len(),
            sending,
        };
        tasks.push(tokio::spawn(drive(client, role, counters.clone(), stopped.clone())));
    }

    tokio::time::sleep_until(send_until + Duration::from_millis(50)).await;
    let send_secs = args.duration as f64;
    let sent = counters.sent.load(Ordering::Relaxed);
    let expected = sent * (clients as u64 - 1);
    eprintln!("sent {sent} updates; waiting for the last deliveries…");
    let mut progress = (counters.delivered.load(Ordering::Relaxed), Instant::now());
    while progress.0 < expected && progress.1.elapsed() < DRAIN_STALL {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let delivered = counters.delivered.load(Ordering::Relaxed);
        if delivered != progress.0 {
            progress = (delivered, Instant::now());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_after, _) = usage(&args.server_pid);
    let tool_after = own_cpu();
    let commits_after = commits.as_ref().map(CommitCounter::read);
    let _ = stop.send(true);

    let (mut same, mut cross, mut texts, mut closed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for task in tasks {
        let outcome = task.await?;
        same.extend(outcome.same);
        cross.extend(outcome.cross);
        texts.push(outcome.text);
        closed.extend(outcome.closed);
    }
    let committed = api.get(&format!("/api/artifacts/{artifact}"), owner).await?;
    let committed = committed["content"].as_str().unwrap_or_default().to_owned();
    let distinct: HashSet<&String> = texts.iter().collect();
    let rest_matches = texts.iter().all(|t| *t == committed);
    let chunks = markers(committed.as_bytes());
    let unique_chunks: HashSet<_> = chunks.iter().collect();
    let delivered = counters.delivered.load(Ordering::Relaxed);
    let (commits, updates_per_commit) = match (commits_before, commits_after) {
        (Some((c0, u0)), Some((c1, u1))) if c1 > c0 => {
            ((c1 - c0) as f64 / send_secs, (u1 - u0) as f64 / (c1 - c0) as f64)
        }
        _ => (f64::NAN, f64::NAN),
    };
    Ok(json!({
        "mode": "artifact",
        "artifact": artifact,
        "nodes": args.nodes.len(),
        "writers": args.writers,
        "readers": args.readers,
        "updates_sent": sent,
        "target_rate": args.rate,
        "achieved_send_rate": sent as f64 / send_secs,
        "deliveries": delivered,
        "expected_deliveries": expected,
        "deliveries_per_second": delivered as f64 / send_secs,
        "latency_same_node": stats(same),
        "latency_cross_node": stats(cross),
        "server_cpu_cores": if args.server_pid.is_empty() { f64::NAN } else { (cpu_after - cpu_before) / elapsed },
        "load_tool_cpu_cores": (tool_after - tool_before) / elapsed,
        "notifying_commits_per_second": commits,
        "updates_per_commit": updates_per_commit,
        "clients_closed": closed.len(),
        "first_close": closed.first(),
        "converged": distinct.len() == 1 && rest_matches && closed.is_empty(),
        "distinct_texts": distinct.len(),
        "rest_text_matches": rest_matches,
        "chunks_in_text": chunks.len(),
        "every_chunk_once": chunks.len() as u64 == sent && unique_chunks.len() == chunks.len(),
        "text_bytes": committed.len(),
    }))
}

/// Connects to `/ws/artifacts/{id}` and does the y-websocket handshake: our state vector
/// out, the server's answered, its answer to ours applied.
async fn open(node: &str, artifact: &str, token: &str) -> anyhow::Result<Client> {
    let base = node.trim_end_matches('/').replacen("http", "ws", 1);
    let url = format!("{base}/ws/artifacts/{artifact}?token={token}");
    let (socket, _) = tokio_tungstenite::connect_async(url).await?;
    let mut client = Client {
        doc: Doc::new(),
        socket,
    };
    let sv = client.doc.transact().state_vector();
    send(&mut client.socket, YMessage::Sync(SyncMessage::SyncStep1(sv))).await?;
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let mut answered = false;
    let mut synced = false;
    while !(answered && synced) {
        let next = tokio::time::timeout_at(deadline, client.socket.next()).await;
        let bytes = match next {
            Err(_) => anyhow::bail!("no sync handshake from {node} within {HANDSHAKE_TIMEOUT:?}"),
            Ok(None) => anyhow::bail!("{node} closed the artifact socket during the handshake"),
            Ok(Some(message)) => match message? {
                Message::Binary(bytes) => bytes,
                Message::Close(frame) => anyhow::bail!("{node} closed the artifact socket: {frame:?}"),
                _ => continue,
            },
        };
        match YMessage::decode_v1(&bytes)? {
            YMessage::Sync(SyncMessage::SyncStep1(sv)) => {
                let diff = client.doc.transact().encode_diff_v1(&sv);
                send(&mut client.socket, YMessage::Sync(SyncMessage::SyncStep2(diff))).await?;
                answered = true;
            }
            YMessage::Sync(SyncMessage::SyncStep2(update)) => {
                client.doc.transact_mut().apply_update(Update::decode_v1(&update)?)?;
                synced = true;
            }
            YMessage::Sync(SyncMessage::Update(update)) => {
                client.doc.transact_mut().apply_update(Update::decode_v1(&update)?)?;
            }
            _ => {}
        }
    }
    Ok(client)
}

async fn send<S>(sink: &mut S, message: YMessage) -> anyhow::Result<()>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    sink.send(Message::Binary(message.encode_v1().into())).await?;
    Ok(())
}

/// One client's run: send its chunks (writers), apply what arrives, record latencies, until
/// told to stop; returns what it saw and its final text.
async fn drive(client: Client, role: Role, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) -> Outcome {
    let Client { doc, socket } = client;
    let text = doc.get_or_insert_text("content");
    let (mut sink, mut stream) = socket.split();
    let mut outcome = Outcome {
        same: Vec::new(),
        cross: Vec::new(),
        text: String::new(),
        closed: None,
    };
    let (first, interval, until) = role.sending.unwrap_or_else(|| {
        let now = tokio::time::Instant::now();
        (now, Duration::from_secs(1), now)
    });
    let mut sending = role.sending.is_some();
    let mut tick = tokio::time::interval_at(first, interval);
    // A writer held up by the shared cores catches up, so the offered rate holds (with
    // `Skip`, ticks more than 5 ms late are dropped: ~800 of 1,000 updates/s got out).
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            _ = tick.tick(), if sending => {
                if tokio::time::Instant::now() >= until {
                    sending = false;
                    continue;
                }
                let chunk = format!("|{}:{}|", now_micros(), role.index);
                let update = {
                    let mut txn = doc.transact_mut();
                    let end = text.len(&txn);
                    text.insert(&mut txn, end, &chunk);
                    txn.encode_update_v1()
                };
                if let Err(err) = send(&mut sink, YMessage::Sync(SyncMessage::Update(update))).await {
                    outcome.closed = Some(format!("client {}: send failed: {err}", role.index));
                    break;
                }
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            next = stream.next() => {
                let bytes = match next {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(frame))) => {
                        outcome.closed = Some(format!("client {}: closed by the server: {frame:?}", role.index));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(err)) => {
                        outcome.closed = Some(format!("client {}: {err}", role.index));
                        break;
                    }
                    None => {
                        outcome.closed = Some(format!("client {}: connection ended", role.index));
                        break;
                    }
                };
                match receive(&doc, &bytes) {
                    Ok(Received::Reply(reply)) => {
                        if let Err(err) = send(&mut sink, reply).await {
                            outcome.closed = Some(format!("client {}: send failed: {err}", role.index));
                            break;
                        }
                    }
                    Ok(Received::Added(added)) => {
                        let at = now_micros();
                        for (sent, writer) in markers(&added) {
                            if writer == role.index {
                                continue;
                            }
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                            let latency = at.saturating_sub(sent);
                            if writer % role.nodes == role.node() {
                                outcome.same.push(latency);
                            } else {
                                outcome.cross.push(latency);
                            }
                        }
                    }
                    Ok(Received::Nothing) => {}
                    Err(err) => {
                        outcome.closed = Some(format!("client {}: bad message: {err}", role.index));
                        break;
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    outcome.text = text.get_string(&doc.transact());
    let _ = sink.close().await;
    outcome
}

enum Received {
    /// Send this back (the answer to the server's SyncStep1).
    Reply(YMessage),
    /// What the message added to the document, as an update.
    Added(Vec<u8>),
    Nothing,
}

/// Handles one y-websocket message from the server.
fn receive(doc: &Doc, bytes: &[u8]) -> anyhow::Result<Received> {
    Ok(match YMessage::decode_v1(bytes)? {
        YMessage::Sync(SyncMessage::SyncStep1(sv)) => {
            let diff = doc.transact().encode_diff_v1(&sv);
            Received::Reply(YMessage::Sync(SyncMessage::SyncStep2(diff)))
        }
        YMessage::Sync(SyncMessage::SyncStep2(update)) | YMessage::Sync(SyncMessage::Update(update)) => {
            let mut txn = doc.transact_mut();
            let before = txn.state_vector();
            txn.apply_update(Update::decode_v1(&update)?)?;
            Received::Added(txn.encode_diff_v1(&before))
        }
        _ => Received::Nothing,
    })
}

/// The `|<send micros>:<writer>|` chunk markers in `bytes` (a text, or an encoded update,
/// which carries inserted strings verbatim).
fn markers(bytes: &[u8]) -> Vec<(u64, usize)> {
    fn number(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
        let digits = bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let text = std::str::from_utf8(&bytes[at..at + digits]).ok()?;
        Some((text.parse().ok()?, at + digits))
    }
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|b| *b == b'|') {
        let open = at + offset;
        at = open + 1;
        let Some((sent, colon)) = number(bytes, open + 1) else {
            continue;
        };
        if bytes.get(colon) != Some(&b':') {
            continue;
        }
        let Some((writer, close)) = number(bytes, colon + 1) else {
            continue;
        };
        if bytes.get(close) == Some(&b'|') {
            found.push((sent, writer as usize));
            at = close + 1;
        }
    }
    found
}

/// CPU seconds (user + system) this process has used.
fn own_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Counts the notifying commits of one topic by listening to the doorbell itself: the
/// events table cannot tell, because compaction deletes an artifact's logged updates.
struct CommitCounter {
    _client: tokio_postgres::Client,
    commits: Arc<AtomicU64>,
    updates: Arc<AtomicU64>,
}

impl CommitCounter {
    async fn start(url: &str, topic: &str) -> anyhow::Result<Self> {
        let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let commits = Arc::new(AtomicU64::new(0));
        let updates = Arc::new(AtomicU64::new(0));
        let (c, u, topic) = (commits.clone(), updates.clone(), topic.to_owned());
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                let tokio_postgres::AsyncMessage::Notification(n) = message else {
                    continue;
                };
                let Ok(notice) = serde_json::from_str::<EventsNotice>(n.payload()) else {
                    continue;
                };
                for part in notice.topics.iter().filter(|t| t.topic == topic) {
                    let events = match part.range {
                        Some((first, last)) => (last - first + 1) as u64,
                        None => part.events.len() as u64,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    u.fetch_add(events, Ordering::Relaxed);
                }
            }
        });
        client.batch_execute(&format!("LISTEN {EVENTS_CHANNEL}")).await?;
        Ok(Self {
            _client: client,
            commits,
            updates,
        })
    }

    /// (notifying commits, updates committed) so far.
    fn read(&self) -> (u64, u64) {
        (
            self.commits.load(Ordering::Relaxed),
            self.updates.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_in_texts_and_updates() {
        assert_eq!(markers(b"x|12:0||34:1|y|5:|6|7:2|"), vec![(12, 0), (34, 1), (7, 2)]);
        let doc = Doc::new();
        let text = doc.get_or_insert_text("content");
        let update = {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "|1700000000000000:3|");
            text.insert(&mut txn, 20, "|1700000000000001:3|");
            txn.encode_update_v1()
        };
        assert_eq!(markers(&update), vec![(1700000000000000, 3), (1700000000000001, 3)]);
    }

    #[test]
    fn only_what_an_update_adds_is_reported() {
        let (writer, reader) = (Doc::new(), Doc::new());
        let text = writer.get_or_insert_text("content");
        let chunk = |s: &str| {
            let mut txn = writer.transact_mut();
            let end = text.len(&txn);
            text.insert(&mut txn, end, s);
            txn.encode_update_v1()
        };
        let first = chunk("|1:0|");
        let second = chunk("|2:0|");
        let sync = |update: &[u8]| {
            let message = YMessage::Sync(SyncMessage::Update(update.to_vec())).encode_v1();
            match receive(&reader, &message).unwrap() {
                Received::Added(added) => markers(&added),
                _ => panic!("an update adds"),
            }
        };
        assert_eq!(sync(&first), vec![(1, 0)]);
        assert_eq!(sync(&first), vec![]);
        let whole = writer
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        assert_eq!(sync(&whole), vec![(2, 0)]);
        assert_eq!(sync(&second), vec![]);
    }
}
