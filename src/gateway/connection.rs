//! The connection actor: one per WebSocket. Parses frames, rate-limits, keeps the
//! heartbeat, routes topic actions to the session actors, and writes their frames out
//! through a bounded outbound buffer (a reader that falls too far behind is disconnected
//! with `slow_consumer`, close code 4008, rather than slowing anyone else).

use crate::app::AppState;
use crate::artifacts::editor::{ArtifactEditor, Unwatch, Watch};
use crate::artifacts::store as artifact_store;
use crate::auth::Permission;
use crate::db::schema::chat_sessions;
use crate::error::{AppError, ErrorCode};
use crate::gateway::protocol::{ClientFrame, PROTOCOL_VERSION, Topic, salvage_ref};
use crate::sessions::ai::ControlGeneration;
use crate::sessions::live::{
    self, ClientHandle, Outbound, SetStatus, Subscribe, ToClient, Typing, Unsubscribe, Write, error_frame, frame,
    wire_size,
};
use crate::sessions::store::Action;
use crate::validate;
use actix::prelude::*;
use actix_web::web;
use actix_web_actors::ws;
use bytestring::ByteString;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::json;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// WebSocket limits and timings.
#[derive(Debug, Clone)]
pub struct WsLimits {
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
    pub max_frame_bytes: usize,
    pub outbound_buffer_bytes: usize,
    pub frames_per_second: u32,
}

pub struct Connection {
    id: Uuid,
    user_id: Uuid,
    display_name: String,
    state: web::Data<AppState>,
    limits: WsLimits,
    subscriptions: HashMap<String, Addr<live::LiveSession>>,
    /// Artifact topics watched for their durable watermark.
    watching: HashMap<String, Addr<ArtifactEditor>>,
    last_heard: Instant,
    limiter: DefaultDirectRateLimiter,
    /// Bytes handed to the socket writer and not yet taken by it.
    outbound: Arc<Outbound>,
}

impl Connection {
    pub fn new(user_id: Uuid, display_name: String, state: web::Data<AppState>, outbound: Arc<Outbound>) -> Self {
        let limits = state.ws_limits.clone();
        let per_second = NonZeroU32::new(limits.frames_per_second.max(1)).expect("non-zero");
        let burst = NonZeroU32::new(limits.frames_per_second.max(1) * 2).expect("non-zero");
        Self {
            id: Uuid::new_v4(),
            user_id,
            display_name,
            state,
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            limits,
            subscriptions: HashMap::new(),
            watching: HashMap::new(),
            last_heard: Instant::now(),
            outbound,
        }
    }

    /// This connection as session actors and writers reach it.
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
        let parsed: ClientFrame = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                let err = AppError::new(ErrorCode::InvalidFrame, format!("invalid frame: {e}"));
                return self.error(ctx, salvage_ref(text).as_deref(), None, err);
            }
        };
        let reference = parsed.reference().map(str::to_owned);
        if reference.as_ref().is_some_and(|r| r.len() > 64) {
            let err = AppError::validation("`ref` must be at most 64 characters");
            return self.error(ctx, None, None, err);
        }
        let reference_str = reference.as_deref();
        match parsed {
            ClientFrame::Ping { .. } => self.push(frame(json!({ "type": "pong", "ref": reference_str })), ctx),
            ClientFrame::Subscribe { topic, after_seq, .. } => self.subscribe(topic, after_seq, reference, ctx),
            ClientFrame::Unsubscribe { topic, .. } => {
                let conn_id = self.id;
                let watched = self
                    .watching
                    .remove(&topic)
                    .inspect(|a| a.do_send(Unwatch { conn_id }))
                    .is_some();
                let subscribed = self
                    .subscriptions
                    .remove(&topic)
                    .inspect(|a| a.do_send(Unsubscribe { conn_id }))
                    .is_some();
                if watched || subscribed {
                    let f = frame(
                        json!({ "type": "unsubscribed", "ref": reference_str, "topic": topic, "reason": "requested" }),
                    );
                    self.push(f, ctx);
                } else {
                    let err = AppError::new(ErrorCode::NotSubscribed, "not subscribed to that topic");
                    self.error(ctx, reference_str, Some(&topic), err);
                }
            }
            ClientFrame::SendMessage { topic, body, .. } => self.write(topic, reference, Action::Send { body }, ctx),
            ClientFrame::EditMessage {
                topic,
                message_id,
                body,
                ..
            } => self.write(topic, reference, Action::Edit { message_id, body }, ctx),
            ClientFrame::DeleteMessage { topic, message_id, .. } => {
                self.write(topic, reference, Action::Delete { message_id }, ctx)
            }
            ClientFrame::React {
                topic,
                message_id,
                emoji,
                ..
            } => self.write(topic, reference, Action::React { message_id, emoji }, ctx),
            ClientFrame::StopGeneration { topic, message_id, .. } => {
                self.control_generation(topic, message_id, false, reference, ctx)
            }
            ClientFrame::Regenerate { topic, message_id, .. } => {
                self.control_generation(topic, message_id, true, reference, ctx)
            }
            ClientFrame::Typing { topic, typing, .. } => match self.subscriptions.get(&topic) {
                Some(addr) => addr.do_send(Typing {
                    conn_id: self.id,
                    typing,
                }),
                None => self.error(ctx, reference_str, Some(&topic), not_subscribed()),
            },
            ClientFrame::Presence { topic, status, .. } => {
                let status = match validate::text("status", &status, 1, 32) {
                    Ok(s) => s,
                    Err(err) => return self.error(ctx, reference_str, Some(&topic), err),
                };
                match self.subscriptions.get(&topic) {
                    Some(addr) => addr.do_send(SetStatus {
                        conn_id: self.id,
                        status,
                    }),
                    None => self.error(ctx, reference_str, Some(&topic), not_subscribed()),
                }
            }
        }
    }

    fn write(
        &mut self,
        topic: String,
        reference: Option<String>,
        action: Action,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        // Cheap checks here, before anything queues; the session actor checks permissions.
        let checked = match &action {
            Action::Send { body } | Action::Edit { body, .. } => {
                crate::sessions::store::validate_body(body).map(|_| ())
            }
            Action::React { emoji, .. } => crate::sessions::store::validate_emoji(emoji).map(|_| ()),
            Action::Delete { .. } => Ok(()),
        };
        if let Err(err) = checked {
            return self.error(ctx, reference.as_deref(), Some(&topic), err);
        }
        match self.subscriptions.get(&topic) {
            Some(addr) => addr.do_send(Write {
                conn_id: self.id,
                user_id: self.user_id,
                reference,
                action,
                reply: self.client(ctx),
            }),
            None => self.error(ctx, reference.as_deref(), Some(&topic), not_subscribed()),
        }
    }

    fn subscribe(
        &mut self,
        topic: String,
        after_seq: Option<i64>,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let session_id = match Topic::parse(&topic) {
            Some(Topic::Session(id)) => id,
            Some(Topic::Artifact(id)) => return self.watch_artifact(topic, id, reference, ctx),
            None => {
                let err = AppError::new(
                    ErrorCode::UnknownTopic,
                    "topics look like `session:<uuid>` or `artifact:<uuid>`",
                );
                return self.error(ctx, reference.as_deref(), Some(&topic), err);
            }
        };
        if after_seq.is_some_and(|s| s < 0) {
            return self.error(
                ctx,
                reference.as_deref(),
                Some(&topic),
                AppError::validation("`after_seq` must be >= 0"),
            );
        }
        let state = self.state.clone();
        let lookup = async move {
            let mut conn = state.pool.get().await?;
            let workspace: Option<Uuid> = chat_sessions::table
                .find(session_id)
                .select(chat_sessions::workspace_id)
                .first(&mut conn)
                .await
                .optional()?;
            workspace.ok_or_else(|| AppError::new(ErrorCode::SessionNotFound, "session not found"))
        };
        ctx.spawn(lookup.into_actor(self).then(move |result, act, ctx| {
            let workspace_id = match result {
                Ok(w) => w,
                Err(err) => {
                    act.error(ctx, reference.as_deref(), Some(&topic), err);
                    return futures_util::future::Either::Left(fut::ready(()));
                }
            };
            let addr = act.state.live.get_or_spawn(session_id, workspace_id);
            act.subscriptions.insert(topic.clone(), addr.clone());
            let msg = act.subscribe_message(reference.clone(), after_seq, ctx);
            futures_util::future::Either::Right(addr.send(msg).into_actor(act).map(move |sent, act, ctx| {
                if sent.is_err() {
                    // The actor stopped as we reached it (idle); start a fresh one.
                    let addr = act.state.live.get_or_spawn(session_id, workspace_id);
                    act.subscriptions.insert(topic, addr.clone());
                    addr.do_send(act.subscribe_message(reference, after_seq, ctx));
                }
            }))
        }));
    }
}

impl Connection {
    fn control_generation(
        &mut self,
        topic: String,
        message_id: Uuid,
        regenerate: bool,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        match self.subscriptions.get(&topic) {
            Some(addr) => addr.do_send(ControlGeneration {
                user_id: self.user_id,
                message_id,
                regenerate,
                reference,
                reply: self.client(ctx),
            }),
            None => self.error(ctx, reference.as_deref(), Some(&topic), not_subscribed()),
        }
    }

    fn subscribe_message(
        &self,
        reference: Option<String>,
        after_seq: Option<i64>,
        ctx: &ws::WebsocketContext<Self>,
    ) -> Subscribe {
        Subscribe {
            conn_id: self.id,
            user_id: self.user_id,
            display_name: self.display_name.clone(),
            reference,
            after_seq,
            recipient: self.client(ctx),
        }
    }

    /// Watches an artifact's durable watermark (needs `view_artifacts`).
    fn watch_artifact(
        &mut self,
        topic: String,
        artifact_id: Uuid,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let (state, user_id) = (self.state.clone(), self.user_id);
        let check = async move {
            let mut conn = state.pool.get().await?;
            let (row, _) =
                artifact_store::authorize_user(&mut conn, user_id, artifact_id, Permission::ViewArtifacts).await?;
            Ok::<_, AppError>(row.workspace_id)
        };
        ctx.spawn(check.into_actor(self).map(move |result, act, ctx| match result {
            Ok(workspace_id) => {
                let editor = act.state.editors.get_or_spawn(artifact_id, workspace_id);
                editor.do_send(Watch {
                    conn_id: act.id,
                    reference,
                    client: act.client(ctx),
                });
                act.watching.insert(topic, editor);
            }
            Err(err) => act.error(ctx, reference.as_deref(), Some(&topic), err),
        }));
    }
}

fn not_subscribed() -> AppError {
    AppError::new(ErrorCode::NotSubscribed, "subscribe to the topic first")
}

impl Actor for Connection {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let hello = frame(json!({
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "connection_id": self.id,
            "user_id": self.user_id,
            "heartbeat_ms": self.limits.heartbeat_interval.as_millis() as u64,
            "limits": {
                "max_frame_bytes": self.limits.max_frame_bytes,
                "max_message_chars": crate::sessions::store::MAX_MESSAGE_CHARS,
                "frames_per_second": self.limits.frames_per_second,
            },
        }));
        self.push(hello, ctx);
        ctx.run_interval(self.limits.heartbeat_interval, |act, ctx| {
            if act.last_heard.elapsed() > act.limits.client_timeout {
                tracing::debug!(conn = %act.id, "client silent too long; dropping");
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
        self.state.connections.register(self.id, ctx.address().recipient());
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        for addr in self.watching.values() {
            addr.do_send(Unwatch { conn_id: self.id });
        }
        for addr in self.subscriptions.values() {
            addr.do_send(Unsubscribe { conn_id: self.id });
        }
        self.state.connections.unregister(self.id);
    }
}

/// The server closes this connection (shutdown, node rejoin).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ServerClose {
    pub code: u16,
    pub reason: String,
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
                self.watching.remove(&topic);
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
                let code = match err {
                    ws::ProtocolError::Overflow => ws::CloseCode::Size,
                    _ => ws::CloseCode::Protocol,
                };
                ctx.close(Some(ws::CloseReason {
                    code,
                    description: Some(err.to_string()),
                }));
                ctx.stop();
            }
        }
    }
}
