//! `GET /ws/artifacts/{id}?token=…`: the y-websocket wire protocol, so an unmodified
//! `WebsocketProvider` (serverUrl `…/ws/artifacts`, room = artifact id) connects. One
//! `ArtifactSocket` actor per connection decodes frames and hands them to the artifact's
//! editor; connect tokens come from `POST /api/artifacts/{id}/connect-token`.

use crate::artifacts::editor::{Access, ArtifactEditor, Incoming, Join};
use crate::artifacts::registry::Editors;
use crate::artifacts::store;
use crate::auth::secrets::{self, SecretKind};
use crate::cluster::hub::Leave;
use crate::credentials::Credential;
use crate::db::schema::artifact_tokens;
use crate::error::{AppError, ErrorCode};
use crate::gateway::{Counted, check_origin};
use crate::state::AppState;
use crate::transport::{ClientHandle, ConnId, Outbound, ServerClose, ToClient};
use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;
use yrs::sync::Message as YMessage;
use yrs::updates::decoder::Decode;

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

/// `GET /ws/artifacts/{id}` — upgrade to the y-websocket protocol.
pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    path: crate::api::Path<Uuid>,
    query: crate::api::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let artifact_id = path.into_inner();
    check_origin(&state, &req)?;
    let unauthenticated = || {
        AppError::new(
            ErrorCode::Unauthenticated,
            "connect token missing, expired or for another artifact",
        )
    };
    let token = query.token.as_deref().ok_or_else(unauthenticated)?;
    if SecretKind::of(token) != Some(SecretKind::ArtifactToken) {
        return Err(unauthenticated());
    }
    let mut conn = state.pool.get().await?;
    let (user_id, access, token_id, login_session): (Uuid, String, Uuid, Option<Uuid>) = artifact_tokens::table
        .filter(artifact_tokens::token_hash.eq(secrets::hash(token)))
        .filter(artifact_tokens::artifact_id.eq(artifact_id))
        .filter(artifact_tokens::expires_at.gt(Utc::now()))
        .select((
            artifact_tokens::user_id,
            artifact_tokens::access,
            artifact_tokens::id,
            artifact_tokens::login_session_id,
        ))
        .first(&mut conn)
        .await
        .optional()?
        .ok_or_else(unauthenticated)?;
    let access = if access == "write" { Access::Write } else { Access::Read };
    // Membership is checked again on every connect: a token outlives nobody's access.
    let (row, _) = store::authorize_user(&mut conn, user_id, artifact_id, access.permission()).await?;
    drop(conn);

    let editor = state.hub.get::<Editors>().get_or_spawn(artifact_id, row.workspace_id);
    let outbound = Outbound::new(state.ws_limits.outbound_buffer_bytes);
    let frames_per_second = NonZeroU32::new(state.config.ws_artifact_frames_per_second.max(1)).expect("non-zero");
    let burst = frames_per_second.saturating_mul(NonZeroU32::new(2).expect("non-zero"));
    let actor = ArtifactSocket {
        id: ConnId::new(),
        credential: Credential {
            user: user_id,
            login_session,
            artifact_token: Some(token_id),
        },
        limiter: RateLimiter::direct(Quota::per_second(frames_per_second).allow_burst(burst)),
        artifact_id,
        workspace_id: row.workspace_id,
        user_id,
        access,
        editor,
        state: state.clone(),
        outbound: outbound.clone(),
        last_heard: Instant::now(),
    };
    let mut response = ws::handshake(&req)
        .map_err(|e| AppError::new(ErrorCode::InvalidFrame, format!("not a WebSocket upgrade: {e}")))?;
    let codec = actix_http::ws::Codec::new().max_size(state.ws_limits.max_frame_bytes.max(1 << 20));
    let frames = ws::WebsocketContext::with_codec(actor, stream, codec);
    Ok(response.streaming(Counted {
        inner: Box::pin(frames),
        outbound,
    }))
}

pub struct ArtifactSocket {
    id: ConnId,
    /// The token it was opened with (revoking it, or logging out, closes the socket).
    credential: Credential,
    /// Client frames per second (`--ws-artifact-frames-per-second`, bursts of twice that).
    limiter: DefaultDirectRateLimiter,
    artifact_id: Uuid,
    workspace_id: Uuid,
    user_id: Uuid,
    access: Access,
    editor: Addr<ArtifactEditor>,
    state: web::Data<AppState>,
    outbound: Arc<Outbound>,
    last_heard: Instant,
}

impl ArtifactSocket {
    fn close(&self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: &str) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Other(code),
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }
}

impl Actor for ArtifactSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if !self.editor.connected() {
            // It went idle between the handshake and now: start a fresh one.
            self.editor = self
                .state
                .hub
                .get::<Editors>()
                .get_or_spawn(self.artifact_id, self.workspace_id);
        }
        let client = ClientHandle {
            recipient: ctx.address().recipient(),
            outbound: self.outbound.clone(),
        };
        self.editor.do_send(Join {
            conn_id: self.id,
            user_id: self.user_id,
            access: self.access,
            client,
        });
        self.state.connections.register(self.id, ctx.address().recipient());
        (self.state.hub.sockets).register(self.id, self.credential, ctx.address().recipient());
        let limits = self.state.ws_limits.clone();
        ctx.run_interval(limits.heartbeat_interval, move |act, ctx| {
            if act.last_heard.elapsed() > limits.client_timeout {
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.editor.do_send(Leave { conn: self.id });
        self.state.connections.unregister(self.id);
        self.state.hub.sockets.unregister(self.id);
    }
}

impl Handler<ToClient> for ArtifactSocket {
    type Result = ();

    fn handle(&mut self, msg: ToClient, ctx: &mut Self::Context) {
        match msg {
            ToClient::Binary(bytes) => ctx.binary(bytes),
            ToClient::Close { code, reason } => self.close(ctx, code, &reason),
            ToClient::Slow => self.close(
                ctx,
                ErrorCode::SlowConsumer.close_code(),
                "reading too slowly; reconnect",
            ),
            ToClient::Frame(_) | ToClient::Dropped { .. } => {}
        }
    }
}

impl Handler<ServerClose> for ArtifactSocket {
    type Result = ();

    fn handle(&mut self, msg: ServerClose, ctx: &mut Self::Context) {
        self.close(ctx, msg.code, &msg.reason);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ArtifactSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        let counted = matches!(msg, Ok(ws::Message::Binary(_) | ws::Message::Text(_)));
        if counted && self.limiter.check().is_err() {
            // y-websocket has no error message, and a dropped update would leave the client
            // diverged without knowing: close, and it resyncs when it reconnects.
            let code = ErrorCode::RateLimited.close_code();
            return self.close(ctx, code, "too many frames per second; reconnect and slow down");
        }
        match msg {
            Ok(ws::Message::Binary(bytes)) => match YMessage::decode_v1(&bytes) {
                Ok(message) => self.editor.do_send(Incoming {
                    conn_id: self.id,
                    message,
                }),
                Err(_) => self.close(ctx, ErrorCode::InvalidFrame.close_code(), "not a y-websocket message"),
            },
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Text(_)) | Ok(ws::Message::Continuation(_)) => {
                self.close(
                    ctx,
                    ErrorCode::InvalidFrame.close_code(),
                    "the y-websocket protocol is binary",
                );
            }
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Err(err) => {
                ctx.close(Some(crate::gateway::protocol_error_close(&err)));
                ctx.stop();
            }
        }
    }
}
