//! Model proposal REST endpoints: a session's proposals (history with votes), one
//! proposal, and the same changes as the WebSocket frames (propose, vote, withdraw), which
//! share one implementation (`room::Proposals`).

use crate::api::{Call, Json, Path, Query, Reply};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::pagination::Limit;
use crate::proposals::room::Proposals;
use crate::proposals::rules::Vote;
use crate::proposals::store::{self, ProposalView, Target};
use crate::sessions::access::session_access;
use actix_web::{HttpResponse, get, post};
use serde::Deserialize;
use uuid::Uuid;

fn user_of(call: &Call) -> AppResult<Uuid> {
    call.caller
        .user_id()
        .ok_or_else(|| AppError::new(ErrorCode::UserRequired, "model proposals are for logged-in users"))
}

/// The proposal as the caller sees it now.
async fn respond(call: &Call, id: Uuid, status: actix_web::http::StatusCode) -> Reply {
    let user = user_of(call)?;
    let mut conn = call.state.pool.get().await?;
    let view = store::view(&mut conn, id, user).await?;
    Ok(HttpResponse::build(status).json(view))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// 1–200, default 50 (newest first).
    pub limit: Option<i64>,
}

/// `GET /api/sessions/{id}/proposals` — the session's model proposals, newest first, each
/// with its votes (anyone who can see the session).
#[utoipa::path(tag = "proposals", params(("id" = Uuid, Path), ListQuery),
    responses((status = 200, body = Vec<ProposalView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/sessions/{id}/proposals")]
pub async fn list_proposals(call: Call, path: Path<Uuid>, query: Query<ListQuery>) -> Reply {
    let (id, limit) = (*path, Limit::parse(query.limit)?);
    let user = user_of(&call)?;
    let mut conn = call.state.pool.get().await?;
    session_access(&mut conn, id, user).await?;
    Ok(HttpResponse::Ok().json(store::list(&mut conn, id, limit.get()).await?))
}

/// `GET /api/proposals/{id}` — one proposal with its votes.
#[utoipa::path(tag = "proposals", params(("id" = Uuid, Path)),
    responses((status = 200, body = ProposalView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/proposals/{id}")]
pub async fn get_proposal(call: Call, path: Path<Uuid>) -> Reply {
    respond(&call, *path, actix_web::http::StatusCode::OK).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeRequest {
    /// One of `GET /api/models`, not the session's current model.
    pub model: String,
    /// Why (1–2000 characters).
    pub reasoning: String,
    /// Voting time, 30–86400 seconds (default 300).
    pub expires_in_seconds: Option<u64>,
}

/// `POST /api/sessions/{id}/proposals` — propose a model (a participant holding
/// `vote_on_models`; one open proposal per session).
#[utoipa::path(tag = "proposals", params(("id" = Uuid, Path)), request_body = ProposeRequest,
    responses((status = 201, body = ProposalView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[post("/sessions/{id}/proposals")]
pub async fn create_proposal(call: Call, path: Path<Uuid>, body: Json<ProposeRequest>) -> Reply {
    let user = user_of(&call)?;
    let body = body.into_inner();
    let room = call.state.hub.get::<Proposals>();
    let (row, _) = room
        .propose(*path, user, body.model, body.reasoning, body.expires_in_seconds)
        .await?;
    respond(&call, row.id, actix_web::http::StatusCode::CREATED).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    pub vote: Vote,
    /// Optional, 1–1000 characters.
    pub comment: Option<String>,
}

/// `POST /api/proposals/{id}/vote` — cast or change a vote (an eligible voter, while open).
#[utoipa::path(tag = "proposals", params(("id" = Uuid, Path)), request_body = VoteRequest,
    responses((status = 200, body = ProposalView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[post("/proposals/{id}/vote")]
pub async fn vote_proposal(call: Call, path: Path<Uuid>, body: Json<VoteRequest>) -> Reply {
    let user = user_of(&call)?;
    let body = body.into_inner();
    let target = Target {
        id: *path,
        user,
        session: None,
    };
    call.state
        .hub
        .get::<Proposals>()
        .vote(target, body.vote, body.comment)
        .await?;
    respond(&call, *path, actix_web::http::StatusCode::OK).await
}

/// `POST /api/proposals/{id}/withdraw` — the proposer withdraws it, or `manage_sessions`
/// cancels it.
#[utoipa::path(tag = "proposals", params(("id" = Uuid, Path)),
    responses((status = 200, body = ProposalView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[post("/proposals/{id}/withdraw")]
pub async fn withdraw_proposal(call: Call, path: Path<Uuid>) -> Reply {
    let user = user_of(&call)?;
    let target = Target {
        id: *path,
        user,
        session: None,
    };
    call.state.hub.get::<Proposals>().withdraw(target).await?;
    respond(&call, *path, actix_web::http::StatusCode::OK).await
}
