//! The `LiveSession` actor: one per chat session per node that has subscribers. It orders
//! committed events by seq (deduping, filling gaps from the log), replays what a
//! subscriber missed a page at a time (`replay.rs`), fans out to local connections, and
//! keeps presence and typing (`presence.rs`). Writes go to the group-commit writer
//! (`writer.rs`); acks are sent only after commit.

use crate::ai::Ai;
use crate::cluster::Bus;
use crate::cluster::hub::{self, Leave, Publish, RecheckAccess, Subscription, TopicAction};
use crate::db::DbPool;
use crate::error::{AppError, ErrorCode};
use crate::events::ordered::{self, OrderedActor, OrderedTopic};
use crate::events::writer::WritesDone;
use crate::events::{self, Event, SharedEvent};
use crate::sessions::access::session_access;
use crate::sessions::ai::{ControlGeneration, Reply};
use crate::sessions::presence::{PresenceEntry, TypingEntry};
use crate::sessions::protocol::SessionAction;
use crate::sessions::registry::LiveSessions;
use crate::sessions::replay::Replay;
use crate::sessions::store::Action;
use crate::sessions::writer::{SessionWriter, WriteJob};
use crate::transport::frames::{GenerationView, LiveState};
use crate::transport::{ClientHandle, ConnId, ServerFrame, ToClient, error_frame};
use actix::prelude::*;
use bytestring::ByteString;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

pub use crate::sessions::presence::{RemotePresence, RemoteTyping};
pub use crate::sessions::protocol::PresenceState;

/// Tunables of live sessions (from `Config`, built by the session room).
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

pub(super) enum SubState {
    /// Authorizing: nothing was sent yet.
    Joining,
    /// `subscribed` was sent; the missed events are read from the log a page at a time.
    /// Live events are not kept for it: the replay reads on until it reaches them.
    Replaying(Replay),
    Live {
        last_sent: i64,
    },
}

pub(super) struct Subscriber {
    pub(super) user_id: Uuid,
    pub(super) recipient: ClientHandle,
    pub(super) state: SubState,
    /// Tells this subscription from a later one of the same connection (a re-subscribe).
    pub(super) serial: u64,
}

pub struct LiveSession {
    pub(super) session_id: Uuid,
    pub(super) topic: String,
    pub(super) pool: DbPool,
    pub(super) bus: Arc<Bus>,
    pub(super) registry: Arc<LiveSessions>,
    pub(super) config: LiveConfig,
    /// Committed events in seq order: everything up to its last seq was fanned out.
    ordered: OrderedTopic<Event>,
    pub(super) subscribers: HashMap<ConnId, Subscriber>,
    /// The serial of the next subscription.
    next_serial: u64,
    /// Users connected through this node.
    pub(super) presence: HashMap<Uuid, PresenceEntry>,
    /// Users connected through other nodes, per node.
    pub(super) remote: HashMap<Uuid, HashMap<Uuid, PresenceState>>,
    pub(super) typing: HashMap<Uuid, TypingEntry>,
    writer: Option<mpsc::UnboundedSender<WriteJob>>,
    writes_in_flight: usize,
    pub(super) ai: Arc<Ai>,
    /// The session's default model, for AI replies (kept current from `session.updated`).
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
            topic: crate::sessions::registry::topic(session_id).to_string(),
            pool,
            bus: registry.bus().clone(),
            ai: registry.ai().clone(),
            registry,
            ordered: OrderedTopic::new(config.gap_timeout),
            config,
            subscribers: HashMap::new(),
            next_serial: 0,
            presence: HashMap::new(),
            remote: HashMap::new(),
            typing: HashMap::new(),
            writer: None,
            writes_in_flight: 0,
            default_model: None,
            replies: HashMap::new(),
            finished_replies: Default::default(),
            ticker: None,
        }
    }

    /// Sends an ephemeral frame (presence, typing, reply chunks) to every subscriber that
    /// got its `subscribed` (live or still replaying), except those of `except_user`.
    pub(super) fn broadcast(&self, frame: &ByteString, except_user: Option<Uuid>) {
        for sub in self.subscribers.values() {
            if !matches!(sub.state, SubState::Joining) && Some(sub.user_id) != except_user {
                sub.recipient.do_send(ToClient::Frame(frame.clone()));
            }
        }
    }

    fn fan_out(&mut self, event: &Arc<SharedEvent>) {
        for sub in self.subscribers.values_mut() {
            // A replaying subscriber reads this event from the log when it gets there.
            if let SubState::Live { last_sent } = &mut sub.state
                && event.seq > *last_sent
            {
                *last_sent = event.seq;
                sub.recipient.do_send(ToClient::Frame(event.frame.clone()));
            }
        }
    }

    /// Accepts committed events in any order and from any source; fans out in seq order
    /// without gaps or duplicates.
    pub(super) fn accept(&mut self, events: Vec<Event>, ctx: &mut Context<Self>) {
        ordered::accept(self, events.into_iter().map(|e| (e.seq, e)), ctx);
    }

    /// Highest seq fanned out.
    pub(super) fn last_seq(&self) -> i64 {
        self.ordered.last_seq()
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
                    self.default_model = session.get("default_model").and_then(|v| v.as_str()).map(str::to_owned);
                }
            }
            _ => {}
        }
    }

    pub(super) fn remove_subscriber(&mut self, conn_id: ConnId, ctx: &mut Context<Self>) {
        let Some(sub) = self.subscribers.remove(&conn_id) else {
            return;
        };
        match sub.state {
            SubState::Joining => {}
            SubState::Replaying(replay) => {
                replay.cancel(ctx);
                self.local_leave(sub.user_id, ctx);
            }
            SubState::Live { .. } => self.local_leave(sub.user_id, ctx),
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

    fn live_user(&self, conn_id: ConnId) -> Option<Uuid> {
        self.subscribers
            .get(&conn_id)
            .filter(|s| matches!(s.state, SubState::Live { .. }))
            .map(|s| s.user_id)
    }

    /// Starts a subscriber once authorized: `subscribed` (with the live state), then the
    /// paged replay of what it missed, which ends with `caught_up` (`replay.rs`).
    fn start_subscriber(
        &mut self,
        msg: &Subscription,
        serial: u64,
        head: i64,
        checkpoints: Vec<(Uuid, String, String)>,
        ctx: &mut Context<Self>,
    ) {
        if !self
            .subscribers
            .get(&msg.conn)
            .is_some_and(|s| s.serial == serial && matches!(s.state, SubState::Joining))
        {
            return;
        }
        // What was fanned out here may be ahead of what the log said a moment ago.
        let head = head.max(self.last_seq());
        let typing: Vec<Uuid> = self.typing.keys().copied().collect();
        let me = PresenceState {
            display_name: msg.display_name.clone(),
            status: "online".to_owned(),
        };
        let merged: Vec<(Uuid, PresenceState)> = self.snapshot();
        let mut presence: Vec<_> = merged
            .iter()
            .map(|(id, state)| Self::presence_view(*id, state))
            .collect();
        if self.merged(msg.user_id).is_none() {
            presence.push(Self::presence_view(msg.user_id, &me));
        }
        let generations = self.generations_snapshot(&checkpoints);
        let subscribed = ServerFrame::Subscribed {
            reference: msg.reference.as_deref(),
            topic: &self.topic,
            head_seq: head,
            live: Some(LiveState {
                presence,
                typing,
                generations: generations
                    .iter()
                    .map(|(id, model, text)| GenerationView {
                        message_id: *id,
                        model,
                        offset: 0,
                        text,
                    })
                    .collect(),
            }),
        };
        msg.client.frame(subscribed.encode());
        if let Some(sub) = self.subscribers.get_mut(&msg.conn) {
            sub.state = SubState::Replaying(Replay::new(msg.after_seq.unwrap_or(head), head));
        }
        self.local_join(msg.user_id, &msg.display_name, ctx);
        self.replay_step(msg.conn, serial, ctx);
    }

    fn start_writer(&mut self, ctx: &mut Context<Self>) {
        let writer = SessionWriter {
            session_id: self.session_id,
            bus: self.bus.clone(),
            topic: self.topic.clone(),
            session: ctx.address(),
        };
        let hub = self.registry.hub();
        self.writer = Some(events::writer::spawn(
            hub,
            writer,
            self.config.max_batch,
            ctx.address().recipient(),
        ));
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
            // One pooled connection at a time: never hold one while waiting for another.
            let (seq, settings) = {
                let mut conn = pool.get().await?;
                let seq = events::last_seq(&mut conn, &topic).await?;
                let default_model: Option<String> = {
                    use crate::db::schema::chat_sessions;
                    use diesel::prelude::*;
                    use diesel_async::RunQueryDsl;
                    chat_sessions::table
                        .find(session_id)
                        .select(chat_sessions::default_model)
                        .first(&mut conn)
                        .await?
                };
                (seq, default_model)
            };
            Ok::<_, AppError>((seq, settings, remote.await?))
        };
        ctx.wait(load.into_actor(self).map(|result, act, ctx| match result {
            Ok((seq, default_model, remote)) => {
                act.ordered.reset_to(seq);
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

impl Handler<Subscription> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: Subscription, ctx: &mut Self::Context) {
        // A re-subscribe of the same connection replaces the old subscription.
        self.remove_subscriber(msg.conn, ctx);
        let serial = self.next_serial;
        self.next_serial += 1;
        self.subscribers.insert(
            msg.conn,
            Subscriber {
                user_id: msg.user_id,
                recipient: msg.client.clone(),
                state: SubState::Joining,
                serial,
            },
        );
        let (pool, topic, session_id, user_id) = (self.pool.clone(), self.topic.clone(), self.session_id, msg.user_id);
        let after_seq = msg.after_seq;
        let load = async move {
            let mut conn = pool.get().await?;
            session_access(&mut conn, session_id, user_id).await?;
            let head = events::last_seq(&mut conn, &topic).await?;
            let checkpoints = crate::ai::generation::streaming(&mut conn, session_id).await?;
            if let Some(after) = after_seq
                && after > head
            {
                return Err(AppError::validation(format!(
                    "`after_seq` {after} is ahead of the session (at {head})"
                )));
            }
            Ok((head, checkpoints))
        };
        ctx.spawn(load.into_actor(self).map(move |result, act, ctx| match result {
            Ok((head, checkpoints)) => act.start_subscriber(&msg, serial, head, checkpoints, ctx),
            Err(err) => {
                if act.subscribers.get(&msg.conn).is_some_and(|s| s.serial == serial) {
                    act.subscribers.remove(&msg.conn);
                    msg.client
                        .frame(error_frame(msg.reference.as_deref(), Some(&act.topic), &err));
                    msg.client.do_send(ToClient::Dropped {
                        topic: act.topic.clone(),
                    });
                }
                act.schedule_idle_stop(ctx);
            }
        }));
    }
}

impl Handler<Leave> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) {
        self.remove_subscriber(msg.conn, ctx);
    }
}

impl Handler<TopicAction> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: TopicAction, ctx: &mut Self::Context) {
        let action = match msg.action.downcast::<SessionAction>() {
            Ok(action) => action,
            Err(other) => {
                if let Ok(proposal) = other.downcast::<crate::proposals::ProposalAction>() {
                    let room = self.registry.hub().get::<crate::proposals::room::Proposals>();
                    crate::proposals::frames::Run {
                        room,
                        session_id: self.session_id,
                        topic: self.topic.clone(),
                        user_id: msg.user_id,
                        subscribed: self.live_user(msg.conn) == Some(msg.user_id),
                        reference: msg.reference,
                        reply: msg.reply,
                    }
                    .spawn(*proposal);
                }
                return;
            }
        };
        let reference = msg.reference;
        match *action {
            SessionAction::Write(action) => self.write(msg.conn, msg.user_id, reference, action, msg.reply),
            SessionAction::Typing(typing) => {
                if let Some(user_id) = self.live_user(msg.conn) {
                    self.local_typing(user_id, typing);
                    self.ensure_ticking(ctx);
                }
            }
            SessionAction::Status(status) => {
                if let Some(user_id) = self.live_user(msg.conn) {
                    self.set_status(user_id, status, ctx);
                }
            }
            SessionAction::Generation { message_id, regenerate } => {
                let control = ControlGeneration {
                    user_id: msg.user_id,
                    message_id,
                    regenerate,
                    reference,
                    reply: msg.reply,
                };
                <Self as Handler<ControlGeneration>>::handle(self, control, ctx);
            }
        }
    }
}

impl LiveSession {
    /// Queues a write for the group-commit writer (acked once committed).
    fn write(&mut self, conn: ConnId, user_id: Uuid, reference: Option<String>, action: Action, reply: ClientHandle) {
        if self.live_user(conn) != Some(user_id) {
            let err = AppError::new(
                ErrorCode::NotSubscribed,
                "subscribe to the session before writing to it",
            );
            reply.frame(error_frame(reference.as_deref(), Some(&self.topic), &err));
            return;
        }
        if matches!(action, Action::Send { .. }) {
            self.local_typing(user_id, false);
        }
        let job = WriteJob {
            user_id,
            reference,
            action,
            reply,
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

impl Handler<RecheckAccess> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: RecheckAccess, ctx: &mut Self::Context) {
        let targets: Vec<(ConnId, Uuid, ())> = self
            .subscribers
            .iter()
            .filter(|(_, s)| msg.0.is_none_or(|u| u == s.user_id))
            .map(|(c, s)| (*c, s.user_id, ()))
            .collect();
        let session_id = self.session_id;
        let check = hub::revoked(self.pool.clone(), targets, move |conn, user_id, ()| {
            Box::pin(async move { session_access(conn, session_id, user_id).await.map(drop) })
        });
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
                    sub.recipient.frame(error_frame(None, Some(&act.topic), &err));
                    sub.recipient.do_send(ToClient::Dropped {
                        topic: act.topic.clone(),
                    });
                }
                act.remove_subscriber(conn_id, ctx);
            }
        }));
    }
}

impl OrderedActor for LiveSession {
    type Item = Event;

    fn ordered(&mut self) -> &mut OrderedTopic<Event> {
        &mut self.ordered
    }

    fn apply(&mut self, event: Event, _ctx: &mut Context<Self>) {
        self.observe(&event);
        self.fan_out(&SharedEvent::new(&event));
    }

    /// Reads the missing events from the log.
    fn fill_gap(&mut self, ctx: &mut Context<Self>) {
        let Some(upto) = self.ordered.first_pending() else {
            return;
        };
        let (pool, topic, after) = (self.pool.clone(), self.topic.clone(), self.ordered.last_seq());
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
}
