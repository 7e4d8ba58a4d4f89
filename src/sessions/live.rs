//! The `LiveSession` actor: one per chat session per node that has subscribers. It orders
//! committed events by seq (deduping, filling gaps from the log), replays what a
//! subscriber missed, fans out to local connections, and keeps presence and typing
//! (`presence.rs`). Writes go to the group-commit writer (`writer.rs`); acks are sent only
//! after commit.

use crate::ai::Ai;
use crate::cluster::Bus;
use crate::db::DbPool;
use crate::error::{AppError, ErrorCode};
use crate::events::{self, Event, SharedEvent};
use crate::sessions::access::session_access;
use crate::sessions::ai::Reply;
use crate::sessions::presence::{PresenceEntry, TypingEntry};
use crate::sessions::registry::LiveSessions;
use crate::sessions::store::Action;
use crate::sessions::writer::{WriteJob, writer_loop};
use actix::prelude::*;
use bytestring::ByteString;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

pub use crate::cluster::bus::PresenceState;
pub use crate::sessions::presence::{CatchUp, NodeDown, RemotePresence, RemoteTyping};

/// What a session actor sends to a connection.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum ToClient {
    /// A frame to write as-is (serialized once, shared between recipients).
    Frame(ByteString),
    /// The subscription ended on the server's side (access revoked, session gone).
    Dropped { topic: String },
    /// The client fell too far behind: close it with `slow_consumer`.
    Slow,
    /// A binary frame (the y-websocket protocol).
    Binary(bytes::Bytes),
    /// Close the connection with this code (e.g. access revoked).
    Close { code: u16, reason: String },
}

/// A connection's outbound queue as its senders see it: bytes handed over and not yet
/// taken by the socket writer. Senders reserve before they enqueue, so a connection whose
/// reader stopped (and whose actor is therefore no longer polled) cannot make its mailbox
/// grow past the limit.
pub struct Outbound {
    queued: AtomicUsize,
    limit: usize,
    slow: AtomicBool,
}

impl Outbound {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            limit,
            slow: AtomicBool::new(false),
        })
    }

    /// Reserves room for `bytes`; `Err(true)` the first time the limit is crossed (the
    /// connection must be told), `Err(false)` after that.
    pub fn reserve(&self, bytes: usize) -> Result<(), bool> {
        if self.slow.load(Ordering::Relaxed) {
            return Err(false);
        }
        if self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes > self.limit {
            return Err(!self.slow.swap(true, Ordering::Relaxed));
        }
        Ok(())
    }

    /// The socket writer took `bytes`.
    pub fn release(&self, bytes: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(bytes)));
    }
}

/// Size of a server-to-client frame on the wire (unmasked header + payload).
pub fn wire_size(payload: usize) -> usize {
    payload
        + match payload {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        }
}

/// How session actors and writers reach a connection.
#[derive(Clone)]
pub struct ClientHandle {
    pub recipient: Recipient<ToClient>,
    pub outbound: Arc<Outbound>,
}

impl ClientHandle {
    /// Enqueues a message; a frame that would overflow the connection's outbound limit
    /// is replaced by `Slow` (once) and the connection closes with `slow_consumer`.
    pub fn do_send(&self, msg: ToClient) {
        match msg {
            ToClient::Frame(frame) => match self.outbound.reserve(wire_size(frame.len())) {
                Ok(()) => self.recipient.do_send(ToClient::Frame(frame)),
                Err(true) => self.recipient.do_send(ToClient::Slow),
                Err(false) => {}
            },
            ToClient::Binary(bytes) => match self.outbound.reserve(wire_size(bytes.len())) {
                Ok(()) => self.recipient.do_send(ToClient::Binary(bytes)),
                Err(true) => self.recipient.do_send(ToClient::Slow),
                Err(false) => {}
            },
            other => self.recipient.do_send(other),
        }
    }
}

/// Encodes a server frame.
pub fn frame(value: serde_json::Value) -> ByteString {
    value.to_string().into()
}

/// An error frame.
pub fn error_frame(reference: Option<&str>, topic: Option<&str>, err: &AppError) -> ByteString {
    let body = err.body();
    frame(json!({ "type": "error", "ref": reference, "topic": topic, "code": body.code, "message": body.message }))
}

/// Tunables of live sessions.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Stop a session actor this long after its last subscriber left.
    pub idle_timeout: Duration,
    /// How long an out-of-order event waits for the missing ones before they are read
    /// from the log.
    pub gap_timeout: Duration,
    /// How long a typing indicator lasts without a refresh.
    pub typing_ttl: Duration,
    /// At most one typing broadcast per user per this interval.
    pub typing_throttle: Duration,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            gap_timeout: Duration::from_millis(250),
            typing_ttl: Duration::from_secs(5),
            typing_throttle: Duration::from_secs(2),
            max_batch: 64,
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub conn_id: Uuid,
    pub user_id: Uuid,
    pub display_name: String,
    pub reference: Option<String>,
    /// Replay events after this seq; `None` = live events only.
    pub after_seq: Option<i64>,
    pub recipient: ClientHandle,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub conn_id: Uuid,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Write {
    pub conn_id: Uuid,
    pub user_id: Uuid,
    pub reference: Option<String>,
    pub action: Action,
    pub reply: ClientHandle,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    pub conn_id: Uuid,
    pub typing: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetStatus {
    pub conn_id: Uuid,
    pub status: String,
}

/// Committed events of this session, from any source (own writer, REST, other nodes).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Vec<Event>);

/// Re-check the access of this user's subscribers (or everyone's when `None`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecheckAccess(pub Option<Uuid>);

/// The writer finished `n` jobs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WritesDone(pub usize);

enum SubState {
    /// Authorizing and replaying; live events wait here.
    CatchingUp(Vec<Arc<SharedEvent>>),
    Live {
        last_sent: i64,
    },
}

struct Subscriber {
    user_id: Uuid,
    recipient: ClientHandle,
    state: SubState,
}

pub struct LiveSession {
    pub(super) session_id: Uuid,
    pub(super) topic: String,
    pub(super) pool: DbPool,
    pub(super) bus: Arc<Bus>,
    registry: Arc<LiveSessions>,
    pub(super) config: LiveConfig,
    /// Highest seq fanned out; every event up to it has been delivered in order.
    pub(super) last_seq: i64,
    /// Events that arrived ahead of a gap.
    pending: BTreeMap<i64, Arc<SharedEvent>>,
    gap_fill_scheduled: bool,
    subscribers: HashMap<Uuid, Subscriber>,
    /// Users connected through this node.
    pub(super) presence: HashMap<Uuid, PresenceEntry>,
    /// Users connected through other nodes, per node.
    pub(super) remote: HashMap<Uuid, HashMap<Uuid, PresenceState>>,
    pub(super) typing: HashMap<Uuid, TypingEntry>,
    writer: Option<mpsc::UnboundedSender<WriteJob>>,
    writes_in_flight: usize,
    pub(super) ai: Arc<Ai>,
    /// The session's settings that decide AI replies (kept current from `session.updated`).
    pub(super) ai_mode: String,
    pub(super) default_model: Option<String>,
    /// Replies streaming in this session.
    pub(super) replies: HashMap<Uuid, Reply>,
    /// Replies that ended recently (late chunks from the bus are ignored).
    pub(super) finished_replies: std::collections::HashSet<Uuid>,
    /// The tick that expires typing and flushes reply chunks, while either exists.
    ticker: Option<SpawnHandle>,
}

impl LiveSession {
    pub fn new(session_id: Uuid, pool: DbPool, registry: Arc<LiveSessions>, config: LiveConfig) -> Self {
        Self {
            session_id,
            topic: events::session_topic(session_id),
            pool,
            bus: registry.bus().clone(),
            ai: registry.ai().clone(),
            registry,
            config,
            last_seq: 0,
            pending: BTreeMap::new(),
            gap_fill_scheduled: false,
            subscribers: HashMap::new(),
            presence: HashMap::new(),
            remote: HashMap::new(),
            typing: HashMap::new(),
            writer: None,
            writes_in_flight: 0,
            ai_mode: "off".to_owned(),
            default_model: None,
            replies: HashMap::new(),
            finished_replies: Default::default(),
            ticker: None,
        }
    }

    /// Sends a frame to every live subscriber except those of `except_user`.
    pub(super) fn broadcast(&self, frame: &ByteString, except_user: Option<Uuid>) {
        for sub in self.subscribers.values() {
            if matches!(sub.state, SubState::Live { .. }) && Some(sub.user_id) != except_user {
                sub.recipient.do_send(ToClient::Frame(frame.clone()));
            }
        }
    }

    fn fan_out(&mut self, event: &Arc<SharedEvent>) {
        for sub in self.subscribers.values_mut() {
            match &mut sub.state {
                SubState::CatchingUp(buffer) => buffer.push(event.clone()),
                SubState::Live { last_sent } => {
                    if event.seq > *last_sent {
                        *last_sent = event.seq;
                        sub.recipient.do_send(ToClient::Frame(event.frame.clone()));
                    }
                }
            }
        }
    }

    /// Accepts committed events in any order and from any source; fans out in seq order
    /// without gaps or duplicates.
    pub(super) fn accept(&mut self, events: Vec<Event>, ctx: &mut Context<Self>) {
        for event in events {
            if event.seq > self.last_seq {
                self.observe(&event);
                self.pending
                    .entry(event.seq)
                    .or_insert_with(|| SharedEvent::new(&event));
            }
        }
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.last_seq + 1 {
                break;
            }
            let event = entry.remove();
            self.last_seq = event.seq;
            self.fan_out(&event);
        }
        if !self.pending.is_empty() && !self.gap_fill_scheduled {
            self.gap_fill_scheduled = true;
            ctx.run_later(self.config.gap_timeout, |act, ctx| {
                act.gap_fill_scheduled = false;
                act.fill_gap(ctx);
            });
        }
    }

    /// Starts the tick (typing expiry, reply chunks) if it is not running; it stops by
    /// itself when there is nothing left to do.
    pub(super) fn ensure_ticking(&mut self, ctx: &mut Context<Self>) {
        if self.ticker.is_some() {
            return;
        }
        let handle = ctx.run_interval(self.ai.chunk_interval, |act, ctx| {
            act.expire_typing();
            act.flush_generations(ctx);
            if act.typing.is_empty()
                && act.replies.is_empty()
                && let Some(handle) = act.ticker.take()
            {
                ctx.cancel_future(handle);
            }
        });
        self.ticker = Some(handle);
    }

    /// Keeps what the actor caches in step with committed events.
    fn observe(&mut self, event: &Event) {
        match event.kind.as_str() {
            "message.completed" => {
                if let Some(id) = event
                    .data
                    .pointer("/message/id")
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse().ok())
                {
                    self.generation_completed(id);
                }
            }
            "session.updated" => {
                if let Some(session) = event.data.get("session") {
                    if let Some(mode) = session.get("ai_mode").and_then(|v| v.as_str()) {
                        self.ai_mode = mode.to_owned();
                    }
                    self.default_model = session.get("default_model").and_then(|v| v.as_str()).map(str::to_owned);
                }
            }
            _ => {}
        }
    }

    /// Reads the missing events from the log.
    fn fill_gap(&mut self, ctx: &mut Context<Self>) {
        let Some(&upto) = self.pending.keys().next() else {
            return;
        };
        let (pool, topic, after) = (self.pool.clone(), self.topic.clone(), self.last_seq);
        let fut = async move {
            let mut conn = pool.get().await?;
            events::after(&mut conn, &topic, after, upto - after).await
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(events) => act.accept(events, ctx),
            Err(err) => {
                tracing::warn!(error = %err, topic = %act.topic, "gap fill failed; retrying");
                act.accept(Vec::new(), ctx);
            }
        }));
    }

    fn remove_subscriber(&mut self, conn_id: Uuid, ctx: &mut Context<Self>) {
        let Some(sub) = self.subscribers.remove(&conn_id) else {
            return;
        };
        if matches!(sub.state, SubState::Live { .. }) {
            self.local_leave(sub.user_id, ctx);
        }
        self.schedule_idle_stop(ctx);
    }

    pub(super) fn schedule_idle_stop(&self, ctx: &mut Context<Self>) {
        if self.subscribers.is_empty() {
            ctx.run_later(self.config.idle_timeout, |act, ctx| {
                // A reply this node is streaming keeps the actor (it owns the stream).
                let streaming = act.replies.values().any(|r| r.local.is_some());
                if act.subscribers.is_empty() && act.writes_in_flight == 0 && !streaming {
                    ctx.stop();
                }
            });
        }
    }

    fn live_user(&self, conn_id: Uuid) -> Option<Uuid> {
        self.subscribers
            .get(&conn_id)
            .filter(|s| matches!(s.state, SubState::Live { .. }))
            .map(|s| s.user_id)
    }

    /// Finishes a subscribe once authorized and loaded: `subscribed`, the replay, the
    /// events buffered meanwhile, `caught_up`; then the subscriber is live.
    fn complete_subscribe(
        &mut self,
        msg: &Subscribe,
        head: i64,
        replay: Vec<Event>,
        checkpoints: Vec<(Uuid, String, String)>,
        ctx: &mut Context<Self>,
    ) {
        let Some(sub) = self.subscribers.get_mut(&msg.conn_id) else {
            return;
        };
        let SubState::CatchingUp(buffered) = std::mem::replace(&mut sub.state, SubState::Live { last_sent: 0 }) else {
            return;
        };
        let typing: Vec<Uuid> = self.typing.keys().copied().collect();
        let mut presence = self.snapshot();
        if self.merged(msg.user_id).is_none() {
            let me = PresenceState {
                display_name: msg.display_name.clone(),
                status: "online".to_owned(),
            };
            presence.push(Self::presence_json(msg.user_id, &me));
        }
        msg.recipient.do_send(ToClient::Frame(frame(json!({
            "type": "subscribed", "ref": msg.reference, "topic": self.topic, "head_seq": head,
            "presence": presence, "typing": typing, "generations": self.generations_snapshot(checkpoints),
        }))));
        let mut last_sent = msg.after_seq.unwrap_or(head);
        for event in replay.iter().map(SharedEvent::new).chain(buffered) {
            if event.seq > last_sent {
                last_sent = event.seq;
                msg.recipient.do_send(ToClient::Frame(event.frame.clone()));
            }
        }
        msg.recipient.do_send(ToClient::Frame(frame(
            json!({ "type": "caught_up", "topic": self.topic, "seq": last_sent }),
        )));
        if let Some(sub) = self.subscribers.get_mut(&msg.conn_id) {
            sub.state = SubState::Live { last_sent };
        }
        self.local_join(msg.user_id, &msg.display_name, ctx);
        // Events the log had beyond what was fanned out here: take them in too.
        self.accept(replay, ctx);
    }

    fn start_writer(&mut self, ctx: &mut Context<Self>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.writer = Some(tx);
        let max_batch = self.config.max_batch;
        let job = writer_loop(
            self.pool.clone(),
            self.bus.clone(),
            self.session_id,
            max_batch,
            rx,
            ctx.address(),
        );
        actix::spawn(job);
    }
}

impl Actor for LiveSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.start_writer(ctx);
        // Learn where the log and the other nodes stand before handling anything else.
        let (pool, topic) = (self.pool.clone(), self.topic.clone());
        let remote = self.load_remote_presence();
        let session_id = self.session_id;
        let load = async move {
            let mut conn = pool.get().await?;
            let seq = events::last_seq(&mut conn, &topic).await?;
            let settings: (String, Option<String>) = {
                use crate::db::schema::chat_sessions;
                use diesel::prelude::*;
                use diesel_async::RunQueryDsl;
                chat_sessions::table
                    .find(session_id)
                    .select((chat_sessions::ai_mode, chat_sessions::default_model))
                    .first(&mut conn)
                    .await?
            };
            Ok::<_, AppError>((seq, settings, remote.await?))
        };
        ctx.wait(load.into_actor(self).map(|result, act, ctx| match result {
            Ok((seq, (ai_mode, default_model), remote)) => {
                act.last_seq = seq;
                act.ai_mode = ai_mode;
                act.default_model = default_model;
                act.replace_remote(remote);
            }
            Err(err) => {
                tracing::error!(error = %err, topic = %act.topic, "cannot load the session's state; stopping");
                ctx.stop();
            }
        }));
        // (The tick for typing expiry and reply chunks runs only while there is any: see
        // `ensure_ticking`; an idle session costs no timer wake-ups.)
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.registry.unregister(self.session_id, &ctx.address());
        for sub in self.subscribers.values() {
            sub.recipient.do_send(ToClient::Dropped {
                topic: self.topic.clone(),
            });
        }
    }
}

impl Handler<Subscribe> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, ctx: &mut Self::Context) {
        // A re-subscribe of the same connection replaces the old subscription.
        self.remove_subscriber(msg.conn_id, ctx);
        self.subscribers.insert(
            msg.conn_id,
            Subscriber {
                user_id: msg.user_id,
                recipient: msg.recipient.clone(),
                state: SubState::CatchingUp(Vec::new()),
            },
        );
        let (pool, topic, session_id, user_id) = (self.pool.clone(), self.topic.clone(), self.session_id, msg.user_id);
        let after_seq = msg.after_seq;
        let load = async move {
            let mut conn = pool.get().await?;
            session_access(&mut conn, session_id, user_id).await?;
            let head = events::last_seq(&mut conn, &topic).await?;
            let checkpoints = crate::ai::generation::streaming(&mut conn, session_id).await?;
            let replay = match after_seq {
                Some(after) if after > head => {
                    return Err(AppError::validation(format!(
                        "`after_seq` {after} is ahead of the session (at {head})"
                    )));
                }
                Some(after) => events::all_after(&mut conn, &topic, after).await?,
                None => Vec::new(),
            };
            Ok((head, replay, checkpoints))
        };
        ctx.spawn(load.into_actor(self).map(move |result, act, ctx| match result {
            Ok((head, replay, checkpoints)) => act.complete_subscribe(&msg, head, replay, checkpoints, ctx),
            Err(err) => {
                if act.subscribers.remove(&msg.conn_id).is_some() {
                    let frame = error_frame(msg.reference.as_deref(), Some(&act.topic), &err);
                    msg.recipient.do_send(ToClient::Frame(frame));
                    msg.recipient.do_send(ToClient::Dropped {
                        topic: act.topic.clone(),
                    });
                }
                act.schedule_idle_stop(ctx);
            }
        }));
    }
}

impl Handler<Unsubscribe> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Self::Context) {
        self.remove_subscriber(msg.conn_id, ctx);
    }
}

impl Handler<Write> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: Write, _ctx: &mut Self::Context) {
        if self.live_user(msg.conn_id) != Some(msg.user_id) {
            let err = AppError::new(
                ErrorCode::NotSubscribed,
                "subscribe to the session before writing to it",
            );
            msg.reply.do_send(ToClient::Frame(error_frame(
                msg.reference.as_deref(),
                Some(&self.topic),
                &err,
            )));
            return;
        }
        if matches!(msg.action, Action::Send { .. }) {
            self.local_typing(msg.user_id, false);
        }
        let job = WriteJob {
            user_id: msg.user_id,
            reference: msg.reference,
            action: msg.action,
            reply: msg.reply,
        };
        if let Some(writer) = &self.writer
            && writer.send(job).is_ok()
        {
            self.writes_in_flight += 1;
        }
    }
}

impl Handler<WritesDone> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: WritesDone, ctx: &mut Self::Context) {
        self.writes_in_flight = self.writes_in_flight.saturating_sub(msg.0);
        self.schedule_idle_stop(ctx);
    }
}

impl Handler<Publish> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        self.accept(msg.0, ctx);
    }
}

impl Handler<Typing> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: Typing, ctx: &mut Self::Context) {
        if let Some(user_id) = self.live_user(msg.conn_id) {
            self.local_typing(user_id, msg.typing);
            self.ensure_ticking(ctx);
        }
    }
}

impl Handler<SetStatus> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: SetStatus, ctx: &mut Self::Context) {
        if let Some(user_id) = self.live_user(msg.conn_id) {
            self.set_status(user_id, msg.status, ctx);
        }
    }
}

impl Handler<RecheckAccess> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: RecheckAccess, ctx: &mut Self::Context) {
        let targets: Vec<(Uuid, Uuid)> = self
            .subscribers
            .iter()
            .filter(|(_, s)| msg.0.is_none_or(|u| u == s.user_id))
            .map(|(c, s)| (*c, s.user_id))
            .collect();
        let (pool, session_id) = (self.pool.clone(), self.session_id);
        let check = async move {
            let mut revoked = Vec::new();
            let mut conn = pool.get().await?;
            for (conn_id, user_id) in targets {
                match session_access(&mut conn, session_id, user_id).await {
                    Ok(_) => {}
                    Err(err) if err.code == ErrorCode::Internal || err.code == ErrorCode::ServiceUnavailable => {
                        return Err(err);
                    }
                    Err(_) => revoked.push(conn_id),
                }
            }
            Ok::<_, AppError>(revoked)
        };
        ctx.spawn(check.into_actor(self).map(|result, act, ctx| {
            let revoked = match result {
                Ok(revoked) => revoked,
                Err(err) => {
                    tracing::warn!(error = %err, "access re-check failed");
                    return;
                }
            };
            for conn_id in revoked {
                if let Some(sub) = act.subscribers.get(&conn_id) {
                    let err = AppError::new(ErrorCode::AccessRevoked, "your access to this session was revoked");
                    sub.recipient
                        .do_send(ToClient::Frame(error_frame(None, Some(&act.topic), &err)));
                    sub.recipient.do_send(ToClient::Dropped {
                        topic: act.topic.clone(),
                    });
                }
                act.remove_subscriber(conn_id, ctx);
            }
        }));
    }
}
