//! Artifact connect tokens as their owner manages them: list, revoke one (by id, or by the
//! token itself), revoke all. Revoking deletes the token and closes the sockets opened with
//! it on every node (4403 `access_revoked`); a client reconnecting with it gets 401.

use crate::api::{Call, Reply};
use crate::api::{Json, Path};
use crate::auth::AuthUser;
use crate::auth::secrets;
use crate::credentials::Revoked;
use crate::db::schema::artifact_tokens;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use actix_web::{HttpResponse, delete, get, post};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A connect token as its owner sees it (never the secret itself).
#[derive(Debug, Serialize, Deserialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = artifact_tokens)]
pub struct ArtifactTokenView {
    pub id: Uuid,
    pub artifact_id: Uuid,
    pub access: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// How many tokens a revocation ended.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevokedTokens {
    pub revoked: usize,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RevokeTokenRequest {
    /// The `bca_…` token to revoke (it must be yours).
    pub token: String,
}

/// Deletes `user`'s tokens that `which` selects and closes their sockets cluster-wide;
/// returns how many there were.
async fn revoke<F>(state: &AppState, conn: &mut AsyncPgConnection, user: Uuid, which: F) -> AppResult<usize>
where
    F: FnOnce(
        artifact_tokens::BoxedQuery<'static, diesel::pg::Pg>,
    ) -> artifact_tokens::BoxedQuery<'static, diesel::pg::Pg>,
{
    let ids: Vec<Uuid> = which(
        artifact_tokens::table
            .filter(artifact_tokens::user_id.eq(user))
            .into_boxed(),
    )
    .select(artifact_tokens::id)
    .load(conn)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let deleted: Vec<Uuid> = diesel::delete(artifact_tokens::table.filter(artifact_tokens::id.eq_any(&ids)))
        .returning(artifact_tokens::id)
        .get_results(conn)
        .await?;
    // In pieces: one bus notice must stay well under NOTIFY's 8000 bytes.
    for tokens in deleted.chunks(100) {
        state.hub.revoke(Revoked::ArtifactTokens {
            user,
            tokens: tokens.to_vec(),
        });
    }
    Ok(deleted.len())
}

fn not_found() -> AppError {
    AppError::new(ErrorCode::TokenNotFound, "no such artifact connect token of yours")
}

/// `GET /api/artifact-tokens` — your artifact connect tokens that have not expired.
#[utoipa::path(tag = "artifacts", responses((status = 200, body = Vec<ArtifactTokenView>),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/artifact-tokens")]
pub async fn list_artifact_tokens(call: Call<AuthUser>) -> Reply {
    let mut conn = call.state.pool.get().await?;
    let rows: Vec<ArtifactTokenView> = artifact_tokens::table
        .filter(artifact_tokens::user_id.eq(call.caller.id))
        .filter(artifact_tokens::expires_at.gt(diesel::dsl::now))
        .order(artifact_tokens::created_at.desc())
        .select(ArtifactTokenView::as_select())
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

/// `DELETE /api/artifact-tokens/{id}` — revoke one of your tokens; its sockets close (4403).
#[utoipa::path(tag = "artifacts", params(("id" = Uuid, Path)), responses((status = 204),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[delete("/artifact-tokens/{id}")]
pub async fn revoke_artifact_token(call: Call<AuthUser>, path: Path<Uuid>) -> Reply {
    let mut conn = call.state.pool.get().await?;
    let id = *path;
    match revoke(&call.state, &mut conn, call.caller.id, |q| {
        q.filter(artifact_tokens::id.eq(id))
    })
    .await?
    {
        0 => Err(not_found()),
        _ => Ok(HttpResponse::NoContent().finish()),
    }
}

/// `POST /api/artifact-tokens/revoke` — revoke a token by its value (one of yours: a token
/// found in a log or a shared link); its sockets close (4403).
#[utoipa::path(tag = "artifacts", request_body = RevokeTokenRequest, responses((status = 204),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[post("/artifact-tokens/revoke")]
pub async fn revoke_artifact_token_by_value(call: Call<AuthUser>, body: Json<RevokeTokenRequest>) -> Reply {
    let hash = secrets::hash(&body.token);
    let mut conn = call.state.pool.get().await?;
    let which =
        |q: artifact_tokens::BoxedQuery<'static, diesel::pg::Pg>| q.filter(artifact_tokens::token_hash.eq(hash));
    match revoke(&call.state, &mut conn, call.caller.id, which).await? {
        0 => Err(not_found()),
        _ => Ok(HttpResponse::NoContent().finish()),
    }
}

/// `DELETE /api/artifact-tokens` — revoke all your artifact connect tokens; every socket
/// opened with one closes (4403).
#[utoipa::path(tag = "artifacts", responses((status = 200, body = RevokedTokens),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/artifact-tokens")]
pub async fn revoke_all_artifact_tokens(call: Call<AuthUser>) -> Reply {
    let mut conn = call.state.pool.get().await?;
    let revoked = revoke(&call.state, &mut conn, call.caller.id, |q| q).await?;
    Ok(HttpResponse::Ok().json(RevokedTokens { revoked }))
}
