//! The WebSocket gateway: `GET /ws` (JSON protocol v1, docs/PROTOCOL.md). The handshake
//! checks `Origin`, authenticates (Bearer header or a single-use connect ticket), and
//! starts a connection actor. actix-web-actors is deprecated upstream in favour of
//! actix-ws; it is used only inside this module so it can be swapped.

use crate::feature::Feature;
use crate::routes;

pub mod connection;
pub mod protocol;
pub mod tickets;

use crate::auth::principal::{Principal, resolve};
use crate::db::schema::users;
use crate::error::{AppError, ErrorCode};
use crate::state::AppState;
use crate::transport::Outbound;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws;
use bytes::Bytes;
use connection::Connection;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::Stream;
use serde::Deserialize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

#[derive(Debug, Deserialize)]
pub struct ConnectQuery {
    /// A connect ticket from `POST /api/ws-tickets`.
    pub ticket: Option<String>,
}

/// Refuses a browser page whose origin may not open a socket here (requests without
/// `Origin` are not browsers: cross-site hijacking needs a browser).
pub(crate) fn check_origin(state: &AppState, req: &HttpRequest) -> Result<(), AppError> {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("?");
    if state
        .allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    Err(AppError::new(
        ErrorCode::OriginNotAllowed,
        format!(
            "the origin {origin} may not open a WebSocket here (allowed: {}); set --allowed-origins (ALLOWED_ORIGINS) or --public-url",
            state.allowed_origins.join(", ")
        ),
    ))
}

/// The origins allowed by default: that of `--public-url`, and when it is a loopback address
/// also the other spellings of loopback on the same scheme and port (a page opened at
/// `http://localhost:8080` must work when the public URL says `http://127.0.0.1:8080`).
pub fn default_origins(public_url: &str) -> anyhow::Result<Vec<String>> {
    let url = url::Url::parse(public_url)?;
    let origin = url.origin().ascii_serialization();
    let loopback = ["127.0.0.1", "localhost", "[::1]"];
    let Some(host) = url.host_str().filter(|h| loopback.contains(h)) else {
        return Ok(vec![origin]);
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let mut origins = vec![origin];
    origins.extend(
        loopback
            .iter()
            .filter(|other| **other != host)
            .map(|other| format!("{}://{other}{port}", url.scheme())),
    );
    Ok(origins)
}

/// `GET /ws` — upgrade to the JSON real-time protocol.
pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    query: crate::api::Query<ConnectQuery>,
) -> Result<HttpResponse, AppError> {
    check_origin(&state, &req)?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let (user_id, login_session) = if let Some(token) = header {
        match resolve(&state, token).await? {
            Principal::User(user) => (user.id, Some(user.session_id)),
            Principal::Token(_) => {
                return Err(AppError::new(
                    ErrorCode::UserRequired,
                    "WebSocket connections are for logged-in users",
                ));
            }
        }
    } else if let Some(ticket) = &query.ticket {
        let mut conn = state.pool.get().await?;
        tickets::redeem(&mut conn, ticket).await?.ok_or_else(|| {
            AppError::new(
                ErrorCode::Unauthenticated,
                "connect ticket expired, used or unknown; fetch a new one",
            )
        })?
    } else {
        return Err(AppError::new(
            ErrorCode::Unauthenticated,
            "authenticate with `Authorization: Bearer` or `?ticket=` from POST /api/ws-tickets",
        ));
    };
    let mut conn = state.pool.get().await?;
    let display_name: String = users::table
        .find(user_id)
        .select(users::display_name)
        .first(&mut conn)
        .await?;
    drop(conn);

    let mut response = ws::handshake(&req)
        .map_err(|e| AppError::new(ErrorCode::InvalidFrame, format!("not a WebSocket upgrade: {e}")))?;
    let outbound = Outbound::new(state.ws_limits.outbound_buffer_bytes);
    let actor = Connection::new(user_id, display_name, state.clone(), outbound.clone()).bound_to(login_session);
    let codec = actix_http::ws::Codec::new().max_size(state.ws_limits.max_frame_bytes);
    let frames = ws::WebsocketContext::with_codec(actor, stream, codec);
    Ok(response.streaming(Counted {
        inner: Box::pin(frames),
        outbound,
    }))
}

/// Counts the bytes the HTTP layer takes from the connection's outbound buffer, so the
/// connection actor knows how much is still queued for a slow reader.
pub(crate) struct Counted {
    pub(crate) inner: Pin<Box<dyn Stream<Item = Result<Bytes, actix_web::Error>>>>,
    pub(crate) outbound: Arc<Outbound>,
}

impl Stream for Counted {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(bytes))) = &polled {
            self.outbound.release(bytes.len());
        }
        polled
    }
}

/// The `/ws` endpoint and its connect tickets.
pub const FEATURE: Feature = Feature::new("gateway", routes! { tickets::create_ticket }).public(|cfg| {
    cfg.route("/ws", web::get().to(connect));
});

/// How a WebSocket protocol error (from either socket kind) closes the connection: a frame
/// over the size limit is 1009 (message too big), anything else 1002.
pub fn protocol_error_close(err: &ws::ProtocolError) -> ws::CloseReason {
    let code = match err {
        ws::ProtocolError::Overflow => ws::CloseCode::Size,
        _ => ws::CloseCode::Protocol,
    };
    ws::CloseReason {
        code,
        description: Some(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::default_origins;

    #[test]
    fn a_loopback_public_url_allows_every_loopback_spelling() {
        assert_eq!(
            default_origins("http://127.0.0.1:8080").unwrap(),
            ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"]
        );
        assert_eq!(
            default_origins("https://localhost/app").unwrap(),
            ["https://localhost", "https://127.0.0.1", "https://[::1]"]
        );
        assert_eq!(
            default_origins("https://chat.example.com/").unwrap(),
            ["https://chat.example.com"]
        );
    }
}
