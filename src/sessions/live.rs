//! The `LiveSession` actor: one per chat session per node that has subscribers. It orders
//! committed events by seq (deduping, filling gaps from the log), replays what a
//! subscriber missed, fans out to local connections, and keeps presence and typing.
//! Writes go to a group-commit writer task; acks are sent only after commit.

use crate::db::DbPool;
use crate::error::{AppError, ErrorCode};
use crate::events::{self, Event, SharedEvent};
use crate::sessions::access::session_access;
use crate::sessions::registry::LiveSessions;
use crate::sessions::store::{self, Action};
use actix::prelude::*;
use bytestring::ByteString;
use diesel_async::AsyncConnection;
use diesel_async::scoped_futures::ScopedFutureExt;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use uuid::Uuid;

/// What a session actor sends to a connection.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum ToClient {
    /// A frame to write as-is (serialized once, shared between recipients).
    Frame(ByteString),
    /// The subscription ended on the server's side (access revoked, session gone).
    Dropped { topic: String },
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
    pub recipient: Recipient<ToClient>,
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
    pub reply: Recipient<ToClient>,
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

/// Internal: the writer finished `n` jobs.
#[derive(Message)]
#[rtype(result = "()")]
struct WritesDone(usize);

enum SubState {
    /// Authorizing and replaying; live events wait here.
    CatchingUp(Vec<Arc<SharedEvent>>),
    Live {
        last_sent: i64,
    },
}

struct Subscriber {
    user_id: Uuid,
    recipient: Recipient<ToClient>,
    state: SubState,
}

struct PresenceEntry {
    display_name: String,
    status: String,
    connections: usize,
}

struct TypingEntry {
    until: Instant,
    last_broadcast: Instant,
}

struct WriteJob {
    user_id: Uuid,
    reference: Option<String>,
    action: Action,
    reply: Recipient<ToClient>,
}

pub struct LiveSession {
    session_id: Uuid,
    topic: String,
    pool: DbPool,
    registry: Arc<LiveSessions>,
    config: LiveConfig,
    /// Highest seq fanned out; every event up to it has been delivered in order.
    last_seq: i64,
    /// Events that arrived ahead of a gap.
    pending: BTreeMap<i64, Arc<SharedEvent>>,
    gap_fill_scheduled: bool,
    subscribers: HashMap<Uuid, Subscriber>,
    presence: HashMap<Uuid, PresenceEntry>,
    typing: HashMap<Uuid, TypingEntry>,
    writer: Option<mpsc::UnboundedSender<WriteJob>>,
    writes_in_flight: usize,
}

impl LiveSession {
    pub fn new(session_id: Uuid, pool: DbPool, registry: Arc<LiveSessions>, config: LiveConfig) -> Self {
        Self {
            session_id,
            topic: events::session_topic(session_id),
            pool,
            registry,
            config,
            last_seq: 0,
            pending: BTreeMap::new(),
            gap_fill_scheduled: false,
            subscribers: HashMap::new(),
            presence: HashMap::new(),
            typing: HashMap::new(),
            writer: None,
            writes_in_flight: 0,
        }
    }

    /// Sends a frame to every live subscriber except those of `except_user`.
    fn broadcast(&self, frame: &ByteString, except_user: Option<Uuid>) {
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

    /// Accepts committed events in any order; fans out in seq order without gaps or
    /// duplicates.
    fn accept(&mut self, events: Vec<Event>, ctx: &mut Context<Self>) {
        for event in events {
            if event.seq > self.last_seq {
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

    fn presence_json(&self, user_id: Uuid, entry: &PresenceEntry) -> serde_json::Value {
        json!({ "user_id": user_id, "display_name": entry.display_name, "status": entry.status })
    }

    fn presence_diff(&self, joins: Vec<serde_json::Value>, leaves: Vec<Uuid>) {
        let frame = frame(json!({ "type": "presence", "topic": self.topic, "joins": joins, "leaves": leaves }));
        self.broadcast(&frame, None);
    }

    fn remove_subscriber(&mut self, conn_id: Uuid, ctx: &mut Context<Self>) {
        let Some(sub) = self.subscribers.remove(&conn_id) else {
            return;
        };
        if matches!(sub.state, SubState::Live { .. })
            && let Some(entry) = self.presence.get_mut(&sub.user_id)
        {
            entry.connections -= 1;
            if entry.connections == 0 {
                self.presence.remove(&sub.user_id);
                if self.typing.remove(&sub.user_id).is_some() {
                    self.typing_frame(sub.user_id, false);
                }
                self.presence_diff(Vec::new(), vec![sub.user_id]);
            }
        }
        self.schedule_idle_stop(ctx);
    }

    fn schedule_idle_stop(&self, ctx: &mut Context<Self>) {
        if self.subscribers.is_empty() {
            ctx.run_later(self.config.idle_timeout, |act, ctx| {
                if act.subscribers.is_empty() && act.writes_in_flight == 0 {
                    ctx.stop();
                }
            });
        }
    }

    fn typing_frame(&self, user_id: Uuid, typing: bool) {
        let frame = frame(json!({ "type": "typing", "topic": self.topic, "user_id": user_id, "typing": typing }));
        self.broadcast(&frame, Some(user_id));
    }

    fn live_user(&self, conn_id: Uuid) -> Option<Uuid> {
        self.subscribers
            .get(&conn_id)
            .filter(|s| matches!(s.state, SubState::Live { .. }))
            .map(|s| s.user_id)
    }

    fn start_writer(&mut self, ctx: &mut Context<Self>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.writer = Some(tx);
        let (pool, session_id, max_batch, me) =
            (self.pool.clone(), self.session_id, self.config.max_batch, ctx.address());
        actix::spawn(writer_loop(pool, session_id, max_batch, rx, me));
    }
}

impl Actor for LiveSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.start_writer(ctx);
        // Learn where the log stands before handling anything else.
        let (pool, topic) = (self.pool.clone(), self.topic.clone());
        let load = async move {
            let mut conn = pool.get().await?;
            events::last_seq(&mut conn, &topic).await
        };
        ctx.wait(load.into_actor(self).map(|result, act, ctx| match result {
            Ok(seq) => act.last_seq = seq,
            Err(err) => {
                tracing::error!(error = %err, topic = %act.topic, "cannot load the session's seq; stopping");
                ctx.stop();
            }
        }));
        // Typing indicators expire by themselves.
        ctx.run_interval(Duration::from_millis(500), |act, _| {
            let now = Instant::now();
            let expired: Vec<Uuid> = act
                .typing
                .iter()
                .filter(|(_, t)| t.until <= now)
                .map(|(u, _)| *u)
                .collect();
            for user in expired {
                act.typing.remove(&user);
                act.typing_frame(user, false);
            }
        });
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
        let conn_id = msg.conn_id;
        // A re-subscribe of the same connection replaces the old subscription.
        self.remove_subscriber(conn_id, ctx);
        self.subscribers.insert(
            conn_id,
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
            let mut replay = Vec::new();
            if let Some(mut after) = after_seq {
                if after > head {
                    return Err(AppError::validation(format!(
                        "`after_seq` {after} is ahead of the session (at {head})"
                    )));
                }
                // Page through however many were missed.
                loop {
                    let page = events::after(&mut conn, &topic, after, 500).await?;
                    let done = page.len() < 500;
                    if let Some(last) = page.last() {
                        after = last.seq;
                    }
                    replay.extend(page);
                    if done {
                        break;
                    }
                }
            }
            Ok((head, replay))
        };
        ctx.spawn(load.into_actor(self).map(move |result, act, ctx| {
            let reference = msg.reference.as_deref();
            let Some(sub) = act.subscribers.get_mut(&conn_id) else {
                return;
            };
            let (head, replay) = match result {
                Ok(ok) => ok,
                Err(err) => {
                    msg.recipient
                        .do_send(ToClient::Frame(error_frame(reference, Some(&act.topic), &err)));
                    msg.recipient.do_send(ToClient::Dropped {
                        topic: act.topic.clone(),
                    });
                    act.subscribers.remove(&conn_id);
                    act.schedule_idle_stop(ctx);
                    return;
                }
            };
            let SubState::CatchingUp(buffered) = std::mem::replace(&mut sub.state, SubState::Live { last_sent: 0 })
            else {
                return;
            };
            // Presence: one entry per user, however many tabs.
            let entry = act.presence.entry(msg.user_id).or_insert_with(|| PresenceEntry {
                display_name: msg.display_name.clone(),
                status: "online".to_owned(),
                connections: 0,
            });
            entry.connections += 1;
            let first_tab = entry.connections == 1;
            let snapshot: Vec<_> = act.presence.iter().map(|(u, e)| act.presence_json(*u, e)).collect();
            let typing: Vec<Uuid> = act.typing.keys().copied().collect();
            msg.recipient.do_send(ToClient::Frame(frame(json!({
                "type": "subscribed", "ref": reference, "topic": act.topic, "head_seq": head,
                "presence": snapshot, "typing": typing,
            }))));
            let mut last_sent = after_seq.unwrap_or(head);
            for event in replay.iter().map(SharedEvent::new).chain(buffered) {
                if event.seq > last_sent {
                    last_sent = event.seq;
                    msg.recipient.do_send(ToClient::Frame(event.frame.clone()));
                }
            }
            msg.recipient.do_send(ToClient::Frame(frame(json!({
                "type": "caught_up", "topic": act.topic, "seq": last_sent,
            }))));
            if let Some(sub) = act.subscribers.get_mut(&conn_id) {
                sub.state = SubState::Live { last_sent };
            }
            if first_tab {
                let entry = &act.presence[&msg.user_id];
                let join = act.presence_json(msg.user_id, entry);
                let frame = frame(json!({ "type": "presence", "topic": act.topic, "joins": [join], "leaves": [] }));
                act.broadcast(&frame, Some(msg.user_id));
            }
            // Events the log had beyond what we fanned out: take them in too.
            act.accept(replay, ctx);
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
        if matches!(msg.action, Action::Send { .. }) && self.typing.remove(&msg.user_id).is_some() {
            self.typing_frame(msg.user_id, false);
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

    fn handle(&mut self, msg: Typing, _ctx: &mut Self::Context) {
        let Some(user_id) = self.live_user(msg.conn_id) else {
            return;
        };
        let now = Instant::now();
        if !msg.typing {
            if self.typing.remove(&user_id).is_some() {
                self.typing_frame(user_id, false);
            }
            return;
        }
        let throttle = self.config.typing_throttle;
        let until = now + self.config.typing_ttl;
        match self.typing.get_mut(&user_id) {
            Some(entry) => {
                entry.until = until;
                if now.duration_since(entry.last_broadcast) >= throttle {
                    entry.last_broadcast = now;
                    self.typing_frame(user_id, true);
                }
            }
            None => {
                self.typing.insert(
                    user_id,
                    TypingEntry {
                        until,
                        last_broadcast: now,
                    },
                );
                self.typing_frame(user_id, true);
            }
        }
    }
}

impl Handler<SetStatus> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: SetStatus, _ctx: &mut Self::Context) {
        let Some(user_id) = self.live_user(msg.conn_id) else {
            return;
        };
        let Some(entry) = self.presence.get_mut(&user_id) else {
            return;
        };
        if entry.status == msg.status {
            return;
        }
        entry.status = msg.status;
        let join = self.presence_json(user_id, &self.presence[&user_id]);
        self.presence_diff(vec![join], Vec::new());
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

/// Commits queued writes in groups: one transaction (one round trip of COMMIT) for all
/// writes that queued up while the previous group was committing. Acks go out only after
/// the commit; a group that fails is retried one write at a time so one bad write cannot
/// sink the others.
async fn writer_loop(
    pool: DbPool,
    session_id: Uuid,
    max_batch: usize,
    mut rx: mpsc::UnboundedReceiver<WriteJob>,
    session: Addr<LiveSession>,
) {
    let topic = events::session_topic(session_id);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let outcomes = match commit(&pool, session_id, &batch).await {
            Ok(outcomes) => outcomes,
            Err(err) => {
                tracing::warn!(error = %err, %topic, jobs = n, "group commit failed; retrying one by one");
                let mut outcomes = Vec::with_capacity(n);
                for job in &batch {
                    let one = commit(&pool, session_id, std::slice::from_ref(job)).await;
                    outcomes.push(one.and_then(|mut o| o.pop().expect("one outcome")));
                }
                outcomes
            }
        };
        let committed: Vec<Event> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        if !committed.is_empty() {
            session.do_send(Publish(committed));
        }
        for (job, outcome) in batch.iter().zip(outcomes) {
            let reference = job.reference.as_deref();
            let frame = match outcome {
                Ok(events) => {
                    let seq = events.last().map(|e| e.seq);
                    frame(json!({ "type": "ack", "ref": reference, "topic": topic, "seq": seq }))
                }
                Err(err) => error_frame(reference, Some(&topic), &err),
            };
            job.reply.do_send(ToClient::Frame(frame));
        }
        session.do_send(WritesDone(n));
    }
}

type Outcome = Result<Vec<Event>, AppError>;

/// One transaction for a group of writes. Rule violations (permission, validation) are
/// per-write outcomes; a database error fails the whole group.
async fn commit(pool: &DbPool, session_id: Uuid, batch: &[WriteJob]) -> Result<Vec<Outcome>, AppError> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, AppError, _>(|conn| {
        async move {
            let mut outcomes = Vec::with_capacity(batch.len());
            for job in batch {
                match store::apply(conn, session_id, job.user_id, job.action.clone()).await {
                    Err(err) if err.code == ErrorCode::Internal || err.code == ErrorCode::ServiceUnavailable => {
                        return Err(err);
                    }
                    outcome => outcomes.push(outcome),
                }
            }
            Ok(outcomes)
        }
        .scope_boxed()
    })
    .await
}
