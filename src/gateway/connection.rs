//! The connection actor: one per WebSocket. Parses frames, rate-limits, keeps the
//! heartbeat, subscribes to topics of any registered room and routes each room's own
//! frames to it, and writes their frames out
//! through a bounded outbound buffer (a reader that falls too far behind is disconnected
//! with `slow_consumer`, close code 4008, rather than slowing anyone else).

use crate::cluster::hub::{Leave, Link, Subscription, TopicAction};
use crate::error::{AppError, ErrorCode};
use crate::gateway::protocol::{ClientFrame, Envelope, GATEWAY_FRAMES, PROTOCOL_VERSION, refuse_nul, salvage_ref};
use crate::state::AppState;
use crate::transport::frames::HelloLimits;
use crate::transport::{
    ClientHandle, ConnId, Outbound, ServerClose, ServerFrame, ToClient, WsLimits, error_frame, wire_size,
};
use actix::prelude::*;
use actix_web::web;
use actix_web_actors::ws;
use bytestring::ByteString;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// A topic this connection subscribed to: its kind and where its frames go.
struct Subscribed {
    kind: &'static str,
    link: Link,
}

/// A subscribe still being authorized: actions sent for its topic meanwhile wait here and go
/// to the room in order once it is linked (a client may pipeline `subscribe` and a write).
struct Starting {
    kind: &'static str,
    queued: Vec<(Option<String>, Box<dyn std::any::Any + Send>)>,
}

/// Most actions held for one topic while its subscribe is being authorized.
const MAX_QUEUED_WHILE_STARTING: usize = 32;

pub struct Connection {
    id: ConnId,
    user_id: Uuid,
    display_name: String,
    state: web::Data<AppState>,
    limits: WsLimits,
    subscriptions: HashMap<String, Subscribed>,
    starting: HashMap<String, Starting>,
    last_heard: Instant,
    limiter: DefaultDirectRateLimiter,
    /// Bytes handed to the socket writer and not yet taken by it.
    outbound: Arc<Outbound>,
    /// The login session it was opened under (logging out of it closes the socket).
    login_session: Option<Uuid>,
}

impl Connection {
    pub fn new(user_id: Uuid, display_name: String, state: web::Data<AppState>, outbound: Arc<Outbound>) -> Self {
        let limits = state.ws_limits.clone();
        let per_second = NonZeroU32::new(limits.frames_per_second.max(1)).expect("non-zero");
        let burst = NonZeroU32::new(limits.frames_per_second.max(1) * 2).expect("non-zero");
        Self {
            id: ConnId::new(),
            user_id,
            display_name,
            state,
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            limits,
            subscriptions: HashMap::new(),
            starting: HashMap::new(),
            last_heard: Instant::now(),
            outbound,
            login_session: None,
        }
    }

    /// Ties the connection to the login session it was opened under.
    pub fn bound_to(self, login_session: Option<Uuid>) -> Self {
        Self { login_session, ..self }
    }

    /// This connection as rooms and writers reach it.
    fn client(&self, ctx: &ws::WebsocketContext<Self>) -> ClientHandle {
        ClientHandle {
            recipient: ctx.address().recipient(),
            outbound: self.outbound.clone(),
        }
    }

    /// Writes a frame of our own, or cuts the connection if the client is not reading.
    fn push(&mut self, text: ByteString, ctx: &mut ws::WebsocketContext<Self>) {
        match self.outbound.reserve(wire_size(text.len())) {
            Ok(()) => ctx.text(text),
            Err(_) => self.slow(ctx),
        }
    }

    fn slow(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        tracing::info!(conn = %self.id, "slow consumer disconnected");
        self.close(
            ctx,
            ErrorCode::SlowConsumer,
            "you are reading too slowly; reconnect and resume from your last seq",
        );
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: ErrorCode, reason: &str) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Other(code.close_code()),
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }

    fn error(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        reference: Option<&str>,
        topic: Option<&str>,
        err: AppError,
    ) {
        self.push(error_frame(reference, topic, &err), ctx);
    }

    fn handle_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if self.limiter.check().is_err() {
            let err = AppError::new(ErrorCode::RateLimited, "too many frames; slow down");
            return self.error(ctx, salvage_ref(text).as_deref(), None, err);
        }
        if let Err(err) = refuse_nul(text) {
            return self.error(ctx, salvage_ref(text).as_deref(), None, err);
        }
        let invalid = |e: &dyn std::fmt::Display| AppError::new(ErrorCode::InvalidFrame, format!("invalid frame: {e}"));
        let envelope: Envelope = match serde_json::from_str(text) {
            Ok(envelope) => envelope,
            Err(e) => return self.error(ctx, salvage_ref(text).as_deref(), None, invalid(&e)),
        };
        let reference = envelope.reference.as_ref().and_then(|r| r.as_str()).map(str::to_owned);
        if reference.as_ref().is_some_and(|r| r.len() > 64) {
            let err = AppError::validation("`ref` must be at most 64 characters");
            return self.error(ctx, None, None, err);
        }
        if GATEWAY_FRAMES.contains(&envelope.kind.as_str()) {
            match serde_json::from_str::<ClientFrame>(text) {
                Ok(frame) => self.gateway_frame(frame, ctx),
                Err(e) => self.error(ctx, reference.as_deref(), None, invalid(&e)),
            }
            return;
        }
        let Some(room) = self.state.hub.room_for_action(&envelope.kind) else {
            let err = invalid(&format_args!("unknown frame type `{}`", envelope.kind));
            return self.error(ctx, reference.as_deref(), None, err);
        };
        let topic = envelope.topic.as_ref().and_then(|t| t.as_str()).map(str::to_owned);
        let action = match room.decode_action(text) {
            Ok(action) => action,
            Err(err) => return self.error(ctx, reference.as_deref(), topic.as_deref(), err),
        };
        let topic = topic.unwrap_or_default();
        let target = self
            .subscriptions
            .get(&topic)
            .filter(|s| s.kind == room.kind())
            .and_then(|s| s.link.actions.clone());
        match target {
            Some(actions) => actions.do_send(TopicAction {
                conn: self.id,
                user_id: self.user_id,
                reference,
                action,
                reply: self.client(ctx),
            }),
            None => match self.starting.get_mut(&topic).filter(|s| s.kind == room.kind()) {
                Some(starting) if starting.queued.len() < MAX_QUEUED_WHILE_STARTING => {
                    starting.queued.push((reference, action));
                }
                Some(_) => {
                    let err = AppError::new(
                        ErrorCode::NotSubscribed,
                        "too many frames for a topic whose subscribe is still starting; wait for `subscribed`",
                    );
                    self.error(ctx, reference.as_deref(), Some(&topic), err);
                }
                None => self.error(ctx, reference.as_deref(), Some(&topic), not_subscribed()),
            },
        }
    }

    /// The subscribe of `topic` ended: hand what was queued for it to the room, or answer
    /// each with the subscribe's error.
    fn flush_starting(&mut self, topic: &str, failed: Option<&AppError>, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(starting) = self.starting.remove(topic) else {
            return;
        };
        let actions = self.subscriptions.get(topic).and_then(|s| s.link.actions.clone());
        for (reference, action) in starting.queued {
            match (&actions, failed) {
                (Some(actions), None) => actions.do_send(TopicAction {
                    conn: self.id,
                    user_id: self.user_id,
                    reference,
                    action,
                    reply: self.client(ctx),
                }),
                (_, Some(err)) => {
                    let err = AppError::new(err.code, err.message.clone());
                    self.error(ctx, reference.as_deref(), Some(topic), err);
                }
                (None, None) => self.error(ctx, reference.as_deref(), Some(topic), not_subscribed()),
            }
        }
    }

    fn gateway_frame(&mut self, frame: ClientFrame, ctx: &mut ws::WebsocketContext<Self>) {
        match frame {
            ClientFrame::Ping { reference } => {
                let pong = ServerFrame::Pong {
                    reference: reference.as_deref(),
                };
                self.push(pong.encode(), ctx);
            }
            ClientFrame::Subscribe {
                reference,
                topic,
                after_seq,
            } => self.subscribe(topic, after_seq, reference, ctx),
            ClientFrame::Unsubscribe { reference, topic } => match self.subscriptions.remove(&topic) {
                Some(sub) => {
                    sub.link.leave.do_send(Leave { conn: self.id });
                    let frame = ServerFrame::Unsubscribed {
                        reference: reference.as_deref(),
                        topic: &topic,
                        reason: "requested",
                    };
                    self.push(frame.encode(), ctx);
                }
                None => {
                    let err = AppError::new(ErrorCode::NotSubscribed, "not subscribed to that topic");
                    self.error(ctx, reference.as_deref(), Some(&topic), err);
                }
            },
        }
    }

    /// Subscribes to a topic of any registered kind; its room authorizes and replays.
    fn subscribe(
        &mut self,
        topic: String,
        after_seq: Option<i64>,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let hub = self.state.hub.clone();
        let Some(parsed) = hub.topic(&topic) else {
            let kinds: Vec<String> = hub
                .rooms()
                .filter(|r| r.subscribable())
                .map(|r| format!("`{}:<uuid>`", r.kind()))
                .collect();
            let err = AppError::new(
                ErrorCode::UnknownTopic,
                format!("topics look like {}", kinds.join(" or ")),
            );
            return self.error(ctx, reference.as_deref(), Some(&topic), err);
        };
        if after_seq.is_some_and(|s| s < 0) {
            let err = AppError::validation("`after_seq` must be >= 0");
            return self.error(ctx, reference.as_deref(), Some(&topic), err);
        }
        let room = hub.room(parsed.kind).expect("parsed topics have a room").clone();
        self.starting.entry(topic.clone()).or_insert_with(|| Starting {
            kind: parsed.kind,
            queued: Vec::new(),
        });
        let sub = Subscription {
            conn: self.id,
            user_id: self.user_id,
            display_name: self.display_name.clone(),
            reference: reference.clone(),
            after_seq,
            client: self.client(ctx),
        };
        ctx.spawn(
            room.subscribe(parsed.id, sub)
                .into_actor(self)
                .map(move |result, act, ctx| {
                    match result {
                        Ok(link) => {
                            let subscribed = Subscribed {
                                kind: parsed.kind,
                                link,
                            };
                            // A re-subscribe replaces the old link (the room replaced it too).
                            act.subscriptions.insert(topic.clone(), subscribed);
                            act.flush_starting(&topic, None, ctx);
                        }
                        Err(err) => {
                            act.flush_starting(&topic, Some(&err), ctx);
                            act.error(ctx, reference.as_deref(), Some(&topic), err);
                        }
                    }
                }),
        );
    }
}

fn not_subscribed() -> AppError {
    AppError::new(ErrorCode::NotSubscribed, "subscribe to the topic first")
}

impl Actor for Connection {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let hello = ServerFrame::Hello {
            protocol: PROTOCOL_VERSION,
            connection_id: self.id.0,
            user_id: self.user_id,
            heartbeat_ms: self.limits.heartbeat_interval.as_millis() as u64,
            limits: HelloLimits {
                max_frame_bytes: self.limits.max_frame_bytes,
                max_message_chars: crate::sessions::store::MAX_MESSAGE_CHARS,
                frames_per_second: self.limits.frames_per_second,
            },
        };
        self.push(hello.encode(), ctx);
        ctx.run_interval(self.limits.heartbeat_interval, |act, ctx| {
            if act.last_heard.elapsed() > act.limits.client_timeout {
                tracing::debug!(conn = %act.id, "client silent too long; dropping");
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
        self.state.connections.register(self.id, ctx.address().recipient());
        let credential = crate::credentials::Credential {
            user: self.user_id,
            login_session: self.login_session,
            artifact_token: None,
        };
        (self.state.hub.sockets).register(self.id, credential, ctx.address().recipient());
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Whoever waits for this connection to drain (a replay) stops waiting.
        self.outbound.close();
        for sub in self.subscriptions.values() {
            sub.link.leave.do_send(Leave { conn: self.id });
        }
        self.state.connections.unregister(self.id);
        self.state.hub.sockets.unregister(self.id);
    }
}

impl Handler<ServerClose> for Connection {
    type Result = ();

    fn handle(&mut self, msg: ServerClose, ctx: &mut Self::Context) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Other(msg.code),
            description: Some(msg.reason),
        }));
        ctx.stop();
    }
}

impl Handler<ToClient> for Connection {
    type Result = ();

    fn handle(&mut self, msg: ToClient, ctx: &mut Self::Context) {
        match msg {
            // Already reserved by the sender.
            ToClient::Frame(text) => ctx.text(text),
            ToClient::Slow => self.slow(ctx),
            ToClient::Binary(_) => {}
            ToClient::Close { code, reason } => {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Other(code),
                    description: Some(reason),
                }));
                ctx.stop();
            }
            ToClient::Dropped { topic } => {
                self.subscriptions.remove(&topic);
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Connection {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => self.handle_text(&text, ctx),
            Ok(ws::Message::Binary(_)) => {
                self.close(
                    ctx,
                    ErrorCode::InvalidFrame,
                    "binary frames are not part of the protocol",
                );
            }
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(_)) => {
                self.close(ctx, ErrorCode::InvalidFrame, "fragmented frames are not supported");
            }
            Err(err) => {
                tracing::debug!(conn = %self.id, error = %err, "WebSocket protocol error");
                ctx.close(Some(super::protocol_error_close(&err)));
                ctx.stop();
            }
        }
    }
}
