//! Workspace endpoints: create, list mine, get, rename, delete; and the permission catalogue.

use crate::audit::{self, Actor};
use crate::auth::{Auth, Permission, PermissionSet, RequestMeta, Role, UserAuth, access, authorize};
use crate::db::schema::{workspace_members, workspaces};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::state::AppState;
use crate::validate;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A workspace as seen by the caller.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkspaceView {
    pub id: Uuid,
    pub name: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The caller's role (absent for API tokens).
    pub my_role: Option<Role>,
    /// What the caller may do here.
    pub my_permissions: Vec<Permission>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateWorkspaceRequest {
    /// 1 to 100 characters.
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateWorkspaceRequest {
    /// 1 to 100 characters.
    pub name: String,
}

type WorkspaceRow = (Uuid, String, Uuid, DateTime<Utc>, DateTime<Utc>);

fn view(row: WorkspaceRow, role: Option<Role>, permissions: PermissionSet) -> WorkspaceView {
    WorkspaceView {
        id: row.0,
        name: row.1,
        created_by: row.2,
        created_at: row.3,
        updated_at: row.4,
        my_role: role,
        my_permissions: permissions.iter().collect(),
    }
}

const COLUMNS: (
    workspaces::id,
    workspaces::name,
    workspaces::created_by,
    workspaces::created_at,
    workspaces::updated_at,
) = (
    workspaces::id,
    workspaces::name,
    workspaces::created_by,
    workspaces::created_at,
    workspaces::updated_at,
);

/// `POST /api/workspaces` — create a workspace; the creator becomes its owner.
#[utoipa::path(tag = "workspaces", request_body = CreateWorkspaceRequest,
    responses((status = 201, body = WorkspaceView), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
#[post("/workspaces")]
pub async fn create_workspace(
    UserAuth(user): UserAuth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    body: web::Json<CreateWorkspaceRequest>,
) -> AppResult<HttpResponse> {
    let name = validate::text("name", &body.name, 1, 100)?;
    let mut conn = state.pool.get().await?;
    let row = conn
        .transaction::<_, AppError, _>(async |conn| {
            async move {
                let id = Uuid::new_v4();
                let row: WorkspaceRow = diesel::insert_into(workspaces::table)
                    .values((
                        workspaces::id.eq(id),
                        workspaces::name.eq(&name),
                        workspaces::created_by.eq(user.id),
                    ))
                    .returning(COLUMNS)
                    .get_result(conn)
                    .await?;
                diesel::insert_into(workspace_members::table)
                    .values((
                        workspace_members::workspace_id.eq(id),
                        workspace_members::user_id.eq(user.id),
                        workspace_members::role.eq(Role::Owner.as_str()),
                    ))
                    .execute(conn)
                    .await?;
                let actor = Actor::user(user.id, &meta);
                audit::record(
                    conn,
                    &actor,
                    Some(id),
                    "workspace.create",
                    ("workspace", id.to_string()),
                    serde_json::json!({ "name": name }),
                )
                .await?;
                Ok(row)
            }
            .await
        })
        .await?;
    Ok(HttpResponse::Created().json(view(row, Some(Role::Owner), Role::Owner.permissions())))
}

/// `GET /api/workspaces` — the workspaces the caller belongs to.
#[utoipa::path(tag = "workspaces", responses((status = 200, body = Vec<WorkspaceView>)), security(("bearer" = [])))]
#[get("/workspaces")]
pub async fn list_workspaces(Auth(principal): Auth, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let mut conn = state.pool.get().await?;
    let views = match &principal {
        crate::auth::Principal::User(user) => {
            let rows: Vec<(WorkspaceRow, crate::auth::authorize::MemberRow)> = workspaces::table
                .inner_join(workspace_members::table)
                .filter(workspace_members::user_id.eq(user.id))
                .select((COLUMNS, crate::auth::authorize::MemberRow::as_select()))
                .order(workspaces::created_at.asc())
                .load(&mut conn)
                .await?;
            rows.into_iter()
                .map(|(w, m)| view(w, Some(m.role()), m.effective()))
                .collect::<Vec<_>>()
        }
        crate::auth::Principal::Token(token) => {
            let acc = access(&mut conn, &principal, token.workspace_id).await?;
            let row: WorkspaceRow = workspaces::table
                .find(token.workspace_id)
                .select(COLUMNS)
                .first(&mut conn)
                .await?;
            vec![view(row, None, acc.permissions)]
        }
    };
    Ok(HttpResponse::Ok().json(views))
}

/// `GET /api/workspaces/{id}` — one workspace, with the caller's role and permissions.
#[utoipa::path(tag = "workspaces", params(("id" = Uuid, Path)),
    responses((status = 200, body = WorkspaceView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/workspaces/{id}")]
pub async fn get_workspace(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    let acc = access(&mut conn, &principal, id).await?;
    let row: WorkspaceRow = workspaces::table.find(id).select(COLUMNS).first(&mut conn).await?;
    Ok(HttpResponse::Ok().json(view(row, acc.role, acc.permissions)))
}

/// `PATCH /api/workspaces/{id}` — rename (needs `manage_workspace`).
#[utoipa::path(tag = "workspaces", params(("id" = Uuid, Path)), request_body = UpdateWorkspaceRequest,
    responses((status = 200, body = WorkspaceView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[patch("/workspaces/{id}")]
pub async fn update_workspace(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<Uuid>,
    body: web::Json<UpdateWorkspaceRequest>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let name = validate::text("name", &body.name, 1, 100)?;
    let mut conn = state.pool.get().await?;
    let acc = authorize(&mut conn, &principal, id, Permission::ManageWorkspace).await?;
    let actor = Actor::new(&principal, &meta);
    let row = conn
        .transaction::<_, AppError, _>(async |conn| {
            async move {
                let old: String = workspaces::table
                    .find(id)
                    .select(workspaces::name)
                    .for_update()
                    .first(conn)
                    .await?;
                let row: WorkspaceRow = diesel::update(workspaces::table.find(id))
                    .set((workspaces::name.eq(&name), workspaces::updated_at.eq(Utc::now())))
                    .returning(COLUMNS)
                    .get_result(conn)
                    .await?;
                audit::record(
                    conn,
                    &actor,
                    Some(id),
                    "workspace.rename",
                    ("workspace", id.to_string()),
                    serde_json::json!({ "from": old, "to": name }),
                )
                .await?;
                Ok(row)
            }
            .await
        })
        .await?;
    Ok(HttpResponse::Ok().json(view(row, acc.role, acc.permissions)))
}

/// `DELETE /api/workspaces/{id}` — delete the workspace and everything in it (owners only).
#[utoipa::path(tag = "workspaces", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/workspaces/{id}")]
pub async fn delete_workspace(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    authorize(&mut conn, &principal, id, Permission::DeleteWorkspace).await?;
    let actor = Actor::new(&principal, &meta);
    conn.transaction::<_, AppError, _>(async |conn| {
        async move {
            let name: String = workspaces::table
                .find(id)
                .select(workspaces::name)
                .for_update()
                .first(conn)
                .await?;
            audit::record(
                conn,
                &actor,
                Some(id),
                "workspace.delete",
                ("workspace", id.to_string()),
                serde_json::json!({ "name": name }),
            )
            .await?;
            diesel::delete(workspaces::table.find(id)).execute(conn).await?;
            Ok(())
        }
        .await
    })
    .await?;
    state.hub.access_changed(id, None);
    Ok(HttpResponse::NoContent().finish())
}

/// One permission of the catalogue.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PermissionInfo {
    pub name: Permission,
    /// Permissions that come with this one.
    pub implies: Vec<Permission>,
    /// Whether it can be granted to a member or an API token.
    pub grantable: bool,
}

/// One role of the roles table.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleInfo {
    pub name: Role,
    /// As the roles table lists them.
    pub permissions: Vec<Permission>,
    /// With implications followed: what the role can actually do.
    pub effective: Vec<Permission>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Catalogue {
    pub permissions: Vec<PermissionInfo>,
    pub roles: Vec<RoleInfo>,
}

/// `GET /api/permissions` — the permission catalogue and the roles table (public).
#[utoipa::path(tag = "workspaces", responses((status = 200, body = Catalogue)))]
#[get("/permissions")]
pub async fn get_catalogue() -> HttpResponse {
    HttpResponse::Ok().json(Catalogue {
        permissions: Permission::ALL
            .iter()
            .map(|p| PermissionInfo {
                name: *p,
                implies: p.implies().to_vec(),
                grantable: p.grantable(),
            })
            .collect(),
        roles: Role::ALL
            .iter()
            .map(|r| RoleInfo {
                name: *r,
                permissions: r.base_permissions().iter().collect(),
                effective: r.permissions().iter().collect(),
            })
            .collect(),
    })
}
