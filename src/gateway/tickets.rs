//! Connect tickets: short-lived, single-use credentials for opening a WebSocket from a
//! browser (which cannot set an `Authorization` header), so no long-lived token ever
//! travels in a URL. Any node can redeem a ticket: they live in Postgres, hashed.

use crate::auth::UserAuth;
use crate::auth::secrets::{self, SecretKind};
use crate::db::schema::connect_tickets;
use crate::error::{AppResult, ErrorBody};
use crate::state::AppState;
use actix_web::{HttpResponse, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long a ticket can wait before it is used.
pub const TICKET_TTL_SECONDS: i64 = 60;

/// A ticket for one WebSocket connect.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectTicket {
    /// Pass as `/ws?ticket=…`; works once, within a minute.
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
    /// The path to connect to, ticket included.
    pub url: String,
}

/// `POST /api/ws-tickets` — a single-use WebSocket connect ticket for the logged-in user.
/// Fetch a new one for every (re)connect.
#[utoipa::path(tag = "realtime", responses((status = 201, body = ConnectTicket), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
#[post("/ws-tickets")]
pub async fn create_ticket(UserAuth(user): UserAuth, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let (ticket, hash) = secrets::generate(SecretKind::ConnectTicket);
    let mut conn = state.pool.get().await?;
    // Expiry by the database's clock: another node may redeem it.
    let expires_at: DateTime<Utc> = diesel::insert_into(connect_tickets::table)
        .values((
            connect_tickets::token_hash.eq(hash),
            connect_tickets::user_id.eq(user.id),
            // Logging out of this session ends the ticket (and the socket it opened).
            connect_tickets::login_session_id.eq(user.session_id),
            connect_tickets::expires_at.eq(crate::db::now_plus(std::time::Duration::from_secs(
                TICKET_TTL_SECONDS as u64,
            ))),
        ))
        .returning(connect_tickets::expires_at)
        .get_result(&mut conn)
        .await?;
    let url = format!("/ws?ticket={ticket}");
    Ok(HttpResponse::Created().json(ConnectTicket {
        ticket,
        expires_at,
        url,
    }))
}

/// Redeems a ticket: the user it was issued to and the login session that asked for it, once.
pub async fn redeem(conn: &mut AsyncPgConnection, ticket: &str) -> AppResult<Option<(Uuid, Option<Uuid>)>> {
    if SecretKind::of(ticket) != Some(SecretKind::ConnectTicket) {
        return Ok(None);
    }
    Ok(diesel::update(
        connect_tickets::table
            .filter(connect_tickets::token_hash.eq(secrets::hash(ticket)))
            .filter(connect_tickets::used_at.is_null())
            .filter(connect_tickets::expires_at.gt(diesel::dsl::now)),
    )
    .set(connect_tickets::used_at.eq(Utc::now()))
    .returning((connect_tickets::user_id, connect_tickets::login_session_id))
    .get_result(conn)
    .await
    .optional()?)
}
