//! Workspace endpoints: create, list mine, get, rename, delete; and the permission catalogue.

use crate::api::{Call, Reply};
use crate::api::{Json, Path};
use crate::audit::{self, Action};
use crate::auth::authorize::MemberRow;
use crate::auth::{AuthUser, Permission, PermissionSet, Principal, Role, access};
use crate::db::schema::{workspace_members, workspaces};
use crate::error::{AppResult, ErrorBody};
use crate::validate;
use crate::workspaces::members::add_member;
use actix_web::{HttpResponse, delete, get, patch, post};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A workspace row.
#[derive(Debug, Serialize, Deserialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = workspaces)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Workspace {
    async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<Self> {
        Ok(workspaces::table.find(id).select(Self::as_select()).first(conn).await?)
    }

    /// Creates the workspace with `owner` as its first member.
    async fn create(conn: &mut AsyncPgConnection, name: &str, owner: Uuid) -> AppResult<Self> {
        let row = diesel::insert_into(workspaces::table)
            .values((
                workspaces::id.eq(Uuid::new_v4()),
                workspaces::name.eq(name),
                workspaces::created_by.eq(owner),
            ))
            .returning(Self::as_returning())
            .get_result(conn)
            .await?;
        add_member(conn, (row.id, owner), Role::Owner, &[]).await?;
        Ok(row)
    }

    /// The name, with the row locked for the rest of the transaction.
    async fn lock_name(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<String> {
        let query = workspaces::table.find(id).select(workspaces::name).for_update();
        Ok(query.first(conn).await?)
    }

    async fn rename(conn: &mut AsyncPgConnection, id: Uuid, name: &str) -> AppResult<Self> {
        Ok(diesel::update(workspaces::table.find(id))
            .set((workspaces::name.eq(name), workspaces::updated_at.eq(Utc::now())))
            .returning(Self::as_returning())
            .get_result(conn)
            .await?)
    }
}

/// A workspace as seen by the caller.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkspaceView {
    #[serde(flatten)]
    pub workspace: Workspace,
    /// The caller's role (absent for API tokens).
    pub my_role: Option<Role>,
    /// What the caller may do here.
    pub my_permissions: Vec<Permission>,
}

fn view(workspace: Workspace, my_role: Option<Role>, permissions: PermissionSet) -> WorkspaceView {
    let my_permissions = permissions.iter().collect();
    WorkspaceView {
        workspace,
        my_role,
        my_permissions,
    }
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

/// `POST /api/workspaces` — create a workspace; the creator becomes its owner.
#[utoipa::path(tag = "workspaces", request_body = CreateWorkspaceRequest,
    responses((status = 201, body = WorkspaceView), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
#[post("/workspaces")]
pub async fn create_workspace(call: Call<AuthUser>, body: Json<CreateWorkspaceRequest>) -> Reply {
    let name = validate::text("name", &body.name, 1, 100)?;
    let mut conn = call.state.pool.get().await?;
    let actor = call.actor();
    let row = audit::commit(&mut conn, &actor, |conn| {
        async move {
            let row = Workspace::create(conn, &name, call.caller.id).await?;
            Ok((
                Action::WorkspaceCreate {
                    workspace: row.id,
                    name,
                },
                row,
            ))
        }
        .scope_boxed()
    })
    .await?;
    Ok(HttpResponse::Created().json(view(row, Some(Role::Owner), Role::Owner.permissions())))
}

/// `GET /api/workspaces` — the workspaces the caller belongs to.
#[utoipa::path(tag = "workspaces", responses((status = 200, body = Vec<WorkspaceView>)), security(("bearer" = [])))]
#[get("/workspaces")]
pub async fn list_workspaces(call: Call) -> Reply {
    let mut conn = call.state.pool.get().await?;
    let views = match &call.caller {
        Principal::User(user) => workspaces::table
            .inner_join(workspace_members::table)
            .filter(workspace_members::user_id.eq(user.id))
            .select((Workspace::as_select(), MemberRow::as_select()))
            .order(workspaces::created_at.asc())
            .load::<(Workspace, MemberRow)>(&mut conn)
            .await?
            .into_iter()
            .map(|(w, m)| view(w, Some(m.role), m.effective()))
            .collect(),
        Principal::Token(token) => {
            let acc = access(&mut conn, &call.caller, token.workspace_id).await?;
            vec![view(
                Workspace::find(&mut conn, token.workspace_id).await?,
                None,
                acc.permissions,
            )]
        }
    };
    Ok(HttpResponse::Ok().json(views))
}

/// `GET /api/workspaces/{id}` — one workspace, with the caller's role and permissions.
#[utoipa::path(tag = "workspaces", params(("id" = Uuid, Path)),
    responses((status = 200, body = WorkspaceView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/workspaces/{id}")]
pub async fn get_workspace(call: Call, path: Path<Uuid>) -> Reply {
    let (mut conn, acc) = call.authorized(*path, None).await?;
    let row = Workspace::find(&mut conn, *path).await?;
    Ok(HttpResponse::Ok().json(view(row, acc.role, acc.permissions)))
}

/// `PATCH /api/workspaces/{id}` — rename (needs `manage_workspace`).
#[utoipa::path(tag = "workspaces", params(("id" = Uuid, Path)), request_body = UpdateWorkspaceRequest,
    responses((status = 200, body = WorkspaceView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[patch("/workspaces/{id}")]
pub async fn update_workspace(call: Call, path: Path<Uuid>, body: Json<UpdateWorkspaceRequest>) -> Reply {
    let (id, to) = (*path, validate::text("name", &body.name, 1, 100)?);
    let renamed = call.audited(id, Permission::ManageWorkspace, |conn, acc| {
        async move {
            let from = Workspace::lock_name(conn, id).await?;
            let row = Workspace::rename(conn, id, &to).await?;
            let action = Action::WorkspaceRename {
                workspace: id,
                from,
                to,
            };
            Ok((action, view(row, acc.role, acc.permissions)))
        }
        .scope_boxed()
    });
    Ok(HttpResponse::Ok().json(renamed.await?))
}

/// `DELETE /api/workspaces/{id}` — delete the workspace and everything in it (owners only).
#[utoipa::path(tag = "workspaces", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/workspaces/{id}")]
pub async fn delete_workspace(call: Call, path: Path<Uuid>) -> Reply {
    let id = *path;
    call.audited(id, Permission::DeleteWorkspace, |conn, _| {
        async move {
            let name = Workspace::lock_name(conn, id).await?;
            // The audit row outlives the workspace: its `workspace_id` is not a foreign key.
            diesel::delete(workspaces::table.find(id)).execute(conn).await?;
            Ok((Action::WorkspaceDelete { workspace: id, name }, ()))
        }
        .scope_boxed()
    })
    .await?;
    call.state.hub.access_changed(id, None);
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
