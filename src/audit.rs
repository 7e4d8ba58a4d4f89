//! The audit log: one row per mutation, written in the mutation's own transaction, and
//! `GET /api/workspaces/{id}/audit` to read it.

use crate::feature::Feature;
use crate::routes;

use crate::auth::{Auth, Permission, Principal, RequestMeta, authorize};
use crate::db::schema::{audit_log, users};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who did something and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub token_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    pub fn new(principal: &Principal, meta: &RequestMeta) -> Self {
        Self {
            user_id: principal.user_id(),
            token_id: principal.token_id(),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        }
    }

    pub fn user(user_id: Uuid, meta: &RequestMeta) -> Self {
        Self {
            user_id: Some(user_id),
            token_id: None,
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = audit_log)]
struct NewAuditRow<'a> {
    workspace_id: Option<Uuid>,
    actor_user_id: Option<Uuid>,
    actor_token_id: Option<Uuid>,
    action: &'a str,
    target_type: &'a str,
    target_id: String,
    details: serde_json::Value,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
}

/// Appends one audit row; call it inside the transaction of the change it records.
pub async fn record(
    conn: &mut AsyncPgConnection,
    actor: &Actor,
    workspace_id: Option<Uuid>,
    action: &str,
    target: (&str, String),
    details: serde_json::Value,
) -> AppResult<()> {
    diesel::insert_into(audit_log::table)
        .values(NewAuditRow {
            workspace_id,
            actor_user_id: actor.user_id,
            actor_token_id: actor.token_id,
            action,
            target_type: target.0,
            target_id: target.1,
            details,
            ip: actor.ip.as_deref(),
            user_agent: actor.user_agent.as_deref(),
        })
        .execute(conn)
        .await?;
    Ok(())
}

/// One audit entry.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub actor_user_id: Option<Uuid>,
    pub actor_display_name: Option<String>,
    pub actor_token_id: Option<Uuid>,
    pub details: serde_json::Value,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A page of audit entries, newest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only entries with an id below this one.
    pub before: Option<i64>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
}

type AuditRow = (
    i64,
    String,
    String,
    String,
    Option<Uuid>,
    Option<String>,
    Option<Uuid>,
    serde_json::Value,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
);

/// `GET /api/workspaces/{id}/audit` — the workspace's audit log, newest first.
#[utoipa::path(
    tag = "audit",
    params(("id" = Uuid, Path, description = "workspace id"), AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/audit")]
pub async fn list_audit(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<AuditQuery>,
) -> AppResult<HttpResponse> {
    let workspace_id = path.into_inner();
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::validation("`limit` must be between 1 and 200"));
    }
    let mut conn = state.pool.get().await?;
    authorize(&mut conn, &principal, workspace_id, Permission::ViewAuditLog).await?;
    let mut q = audit_log::table
        .left_join(users::table.on(users::id.nullable().eq(audit_log::actor_user_id)))
        .filter(audit_log::workspace_id.eq(workspace_id))
        .select((
            audit_log::id,
            audit_log::action,
            audit_log::target_type,
            audit_log::target_id,
            audit_log::actor_user_id,
            users::display_name.nullable(),
            audit_log::actor_token_id,
            audit_log::details,
            audit_log::ip,
            audit_log::user_agent,
            audit_log::created_at,
        ))
        .order(audit_log::id.desc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(before) = query.before {
        q = q.filter(audit_log::id.lt(before));
    }
    let mut rows: Vec<AuditRow> = q.load(&mut conn).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let entries: Vec<AuditEntry> = rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.0,
            action: r.1,
            target_type: r.2,
            target_id: r.3,
            actor_user_id: r.4,
            actor_display_name: r.5,
            actor_token_id: r.6,
            details: r.7,
            ip: r.8,
            user_agent: r.9,
            created_at: r.10,
        })
        .collect();
    let next_before = if more { entries.last().map(|e| e.id) } else { None };
    Ok(HttpResponse::Ok().json(AuditPage { entries, next_before }))
}

/// The audit log.
pub const FEATURE: Feature = Feature::new("audit", routes! { list_audit });
