//! AI endpoints: the model list, and token usage per workspace for analytics.

use crate::ai::provider::ModelInfo;
use crate::auth::{Auth, Permission, authorize};
use crate::db::schema::ai_usage;
use crate::error::{AppResult, ErrorBody};
use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use chrono::NaiveDate;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `GET /api/models` — the models sessions can use (the default first-marked).
#[utoipa::path(tag = "ai", responses((status = 200, body = Vec<ModelInfo>)), security(("bearer" = [])))]
#[get("/models")]
pub async fn list_models(_auth: Auth, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.hub.get::<crate::sessions::registry::LiveSessions>().ai().models())
}

/// Token usage of one user with one model on one day.
#[derive(Debug, Serialize, Deserialize, Queryable, utoipa::ToSchema)]
pub struct UsageRow {
    pub user_id: Uuid,
    pub model: String,
    pub day: NaiveDate,
    pub requests: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// `GET /api/workspaces/{id}/usage` — AI token usage per user, model and day (`view_analytics`).
#[utoipa::path(tag = "ai", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<UsageRow>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/workspaces/{id}/usage")]
pub async fn workspace_usage(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: crate::api::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    authorize(&mut conn, &principal, id, Permission::ViewAnalytics).await?;
    let rows: Vec<UsageRow> = ai_usage::table
        .filter(ai_usage::workspace_id.eq(id))
        .order((ai_usage::day.desc(), ai_usage::user_id, ai_usage::model))
        .limit(1000)
        .select((
            ai_usage::user_id,
            ai_usage::model,
            ai_usage::day,
            ai_usage::requests,
            ai_usage::prompt_tokens,
            ai_usage::completion_tokens,
        ))
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}
