//! `GET /api/admin/nodes`: the live nodes of the cluster, for operators (users whose email
//! is in `--admin-emails`).

use crate::auth::UserAuth;
use crate::db::schema::nodes;
use crate::error::{AppResult, ErrorBody};
use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A node with a live lease.
#[derive(Debug, Serialize, Deserialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = nodes)]
pub struct NodeView {
    pub id: Uuid,
    pub address: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub lease_expires_at: DateTime<Utc>,
    /// Open WebSocket connections at the last heartbeat.
    pub connections: i32,
}

/// `GET /api/admin/nodes` — live nodes and their connection counts (server admins only).
#[utoipa::path(tag = "admin", responses((status = 200, body = Vec<NodeView>), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/admin/nodes")]
pub async fn list_nodes(UserAuth(user): UserAuth, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    crate::admin::require_admin(&state, &user)?;
    let mut conn = state.pool.get().await?;
    let rows: Vec<NodeView> = nodes::table
        .filter(nodes::lease_expires_at.gt(diesel::dsl::now))
        .order(nodes::started_at.asc())
        .select(NodeView::as_select())
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}
