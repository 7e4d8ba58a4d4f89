//! Member endpoints: list, change role, set custom permissions, remove, leave.

use crate::api::{Call, Reply};
use crate::api::{Json, Path};
use crate::audit::{self, Action, Actor};
use crate::auth::authorize::{MemberRow, find_member};
use crate::auth::{Access, AuthUser, Permission, Role};
use crate::db::DbConn;
use crate::db::schema::{chat_sessions, session_participants, users, workspace_members};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::events::{self, Event};
use crate::sessions::events::SessionEvent;
use crate::state::AppState;
use crate::workspaces::{lock_workspace, parse_grantable};
use actix_web::{HttpResponse, delete, get, patch, post, put};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use scoped_futures::{ScopedBoxFuture, ScopedFutureExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A member of a workspace.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberView {
    pub workspace_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// Custom grants on top of the role.
    pub granted: Vec<String>,
    /// Custom revokes (win over the role and grants).
    pub revoked: Vec<String>,
    /// What the member can do, all told.
    pub permissions: Vec<Permission>,
    pub joined_at: DateTime<Utc>,
}

pub fn member_view(m: MemberRow, email: String, display_name: String) -> MemberView {
    MemberView {
        workspace_id: m.workspace_id,
        user_id: m.user_id,
        email,
        display_name,
        role: m.role,
        permissions: m.effective().iter().collect(),
        granted: m.granted,
        revoked: m.revoked,
        joined_at: m.joined_at,
    }
}

/// The members of a workspace in joining order, or only `user_id` when given.
async fn load_member_views(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    user_id: Option<Uuid>,
) -> AppResult<Vec<MemberView>> {
    let mut query = workspace_members::table
        .inner_join(users::table)
        .filter(workspace_members::workspace_id.eq(workspace_id))
        .select((MemberRow::as_select(), users::email, users::display_name))
        .order(workspace_members::joined_at.asc())
        .into_boxed();
    if let Some(user_id) = user_id {
        query = query.filter(workspace_members::user_id.eq(user_id));
    }
    let rows: Vec<(MemberRow, String, String)> = query.load(conn).await?;
    Ok(rows.into_iter().map(|(m, e, n)| member_view(m, e, n)).collect())
}

pub async fn load_member_view(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    user_id: Uuid,
) -> AppResult<MemberView> {
    let mut views = load_member_views(conn, workspace_id, Some(user_id)).await?;
    views.pop().ok_or_else(member_not_found)
}

/// Makes the user a member with `role` and the `granted` extra permissions.
pub async fn add_member(
    conn: &mut AsyncPgConnection,
    (workspace_id, user_id): (Uuid, Uuid),
    role: Role,
    granted: &[String],
) -> AppResult<()> {
    let member = (
        workspace_members::role.eq(role.as_str()),
        workspace_members::granted.eq(granted),
    );
    let key = (
        workspace_members::workspace_id.eq(workspace_id),
        workspace_members::user_id.eq(user_id),
    );
    diesel::insert_into(workspace_members::table)
        .values((key, member))
        .execute(conn)
        .await?;
    Ok(())
}

fn member_not_found() -> AppError {
    AppError::new(ErrorCode::MemberNotFound, "no such member in this workspace")
}

async fn owner_count(conn: &mut AsyncPgConnection, workspace_id: Uuid) -> AppResult<i64> {
    Ok(workspace_members::table
        .filter(workspace_members::workspace_id.eq(workspace_id))
        .filter(workspace_members::role.eq(Role::Owner.as_str()))
        .count()
        .get_result(conn)
        .await?)
}

/// Only owners may act on owners or make someone an owner.
fn require_owner_for(acc: &Access, target_role: Role, new_role: Option<Role>) -> AppResult<()> {
    if (target_role == Role::Owner || new_role == Some(Role::Owner)) && !acc.is_owner() {
        return Err(AppError::forbidden(
            "only an owner can change an owner or make someone an owner",
        ));
    }
    Ok(())
}

/// `GET /api/workspaces/{id}/members` — everyone in the workspace.
#[utoipa::path(tag = "members", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<MemberView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/workspaces/{id}/members")]
pub async fn list_members(call: Call, path: Path<Uuid>) -> Reply {
    let (mut conn, _) = call.authorized(*path, None).await?;
    Ok(HttpResponse::Ok().json(load_member_views(&mut conn, *path, None).await?))
}

/// Changes one member under the workspace lock, as a caller holding `permission`: `change`
/// gets the caller's access and the member's row and returns the audit action. Answers
/// with the member as they are now.
async fn change_member<F>(call: &Call, (id, user_id): (Uuid, Uuid), permission: Permission, change: F) -> Reply
where
    F: for<'r> FnOnce(&'r mut AsyncPgConnection, Access, MemberRow) -> ScopedBoxFuture<'static, 'r, AppResult<Action>>
        + Send
        + 'static,
{
    let view = call
        .audited(id, permission, |conn, acc| {
            async move {
                lock_workspace(conn, id).await?;
                let target = find_member(conn, id, user_id).await?.ok_or_else(member_not_found)?;
                let action = change(conn, acc, target).await?;
                Ok((action, load_member_view(conn, id, user_id).await?))
            }
            .scope_boxed()
        })
        .await?;
    call.state.hub.access_changed(id, Some(user_id));
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateMemberRequest {
    pub role: Role,
}

/// `PATCH /api/workspaces/{id}/members/{user_id}` — change a member's role (`manage_users`).
#[utoipa::path(tag = "members", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = UpdateMemberRequest,
    responses((status = 200, body = MemberView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[patch("/workspaces/{id}/members/{user_id}")]
pub async fn update_member(call: Call, path: Path<(Uuid, Uuid)>, body: Json<UpdateMemberRequest>) -> Reply {
    let ((id, user_id), to) = (*path, body.role);
    change_member(&call, *path, Permission::ManageUsers, move |conn, acc, target| {
        async move {
            let from = target.role;
            require_owner_for(&acc, from, Some(to))?;
            if from == Role::Owner && to != Role::Owner && owner_count(conn, id).await? <= 1 {
                return Err(AppError::new(
                    ErrorCode::LastOwner,
                    "the last owner cannot be demoted; make someone else an owner first",
                ));
            }
            diesel::update(workspace_members::table.find((id, user_id)))
                .set(workspace_members::role.eq(to.as_str()))
                .execute(conn)
                .await?;
            Ok(Action::MemberRoleChange {
                workspace: id,
                user: user_id,
                from,
                to,
            })
        }
        .scope_boxed()
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SetPermissionsRequest {
    /// Permissions granted on top of the role (replaces the current list).
    #[serde(default)]
    pub granted: Vec<String>,
    /// Permissions taken away from the role (replaces the current list).
    #[serde(default)]
    pub revoked: Vec<String>,
}

/// `PUT /api/workspaces/{id}/members/{user_id}/permissions` — set a member's custom grants
/// and revokes (`manage_permissions`). One can only grant what one holds oneself.
#[utoipa::path(tag = "members", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = SetPermissionsRequest,
    responses((status = 200, body = MemberView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
#[put("/workspaces/{id}/members/{user_id}/permissions")]
pub async fn set_member_permissions(call: Call, path: Path<(Uuid, Uuid)>, body: Json<SetPermissionsRequest>) -> Reply {
    let (id, user_id) = *path;
    let granted = parse_grantable("granted", &body.granted)?;
    let revoked = parse_grantable("revoked", &body.revoked)?;
    let myself = call.caller.user_id() == Some(user_id);
    change_member(&call, *path, Permission::ManagePermissions, move |conn, acc, target| {
        async move {
            if myself {
                return Err(AppError::forbidden("you cannot change your own permissions"));
            }
            require_owner_for(&acc, target.role, None)?;
            // Whatever the change gives the member (implications included, and lifted
            // revokes too) must be something the caller holds.
            let after = crate::auth::permissions::effective(target.role, granted, revoked);
            if !after.difference(target.effective()).is_subset(acc.permissions) {
                return Err(AppError::forbidden("you can only grant permissions you hold yourself"));
            }
            let (granted, revoked) = (granted.names(), revoked.names());
            diesel::update(workspace_members::table.find((id, user_id)))
                .set((
                    workspace_members::granted.eq(&granted),
                    workspace_members::revoked.eq(&revoked),
                ))
                .execute(conn)
                .await?;
            Ok(Action::MemberPermissions {
                workspace: id,
                user: user_id,
                granted,
                revoked,
                previous_granted: target.granted,
                previous_revoked: target.revoked,
            })
        }
        .scope_boxed()
    })
    .await
}

/// Removes a membership, enforcing the last-owner rule: `remover` is the access of whoever
/// removes the member, `None` when members leave themselves. The member leaves the
/// workspace's sessions too.
async fn remove(
    state: &AppState,
    mut conn: DbConn,
    actor: Actor,
    (id, user_id): (Uuid, Uuid),
    remover: Option<Access>,
) -> Reply {
    events::commit(&mut conn, &state.hub, |conn| {
        async move {
            lock_workspace(conn, id).await?;
            let target = find_member(conn, id, user_id).await?.ok_or_else(member_not_found)?;
            if let Some(acc) = &remover {
                require_owner_for(acc, target.role, None)?;
            }
            if target.role == Role::Owner && owner_count(conn, id).await? <= 1 {
                return Err(AppError::new(
                    ErrorCode::LastOwner,
                    "the last owner cannot leave; make someone else an owner or delete the workspace",
                ));
            }
            diesel::delete(workspace_members::table.find((id, user_id)))
                .execute(conn)
                .await?;
            let removed = leave_sessions(conn, id, user_id).await?;
            let (workspace, user, role) = (id, user_id, target.role);
            let action = match remover {
                Some(_) => Action::MemberRemove { workspace, user, role },
                None => Action::MemberLeave { workspace, user, role },
            };
            audit::record(conn, &actor, action).await?;
            Ok(((), removed))
        }
        .scope_boxed()
    })
    .await?
    .publish(&state.hub);
    state.hub.access_changed(id, Some(user_id));
    Ok(HttpResponse::NoContent().finish())
}

/// Leaving the workspace leaves its sessions too (no silent return on rejoining); each
/// session's log says so, like any participant removal.
async fn leave_sessions(conn: &mut AsyncPgConnection, id: Uuid, user_id: Uuid) -> AppResult<Vec<Event>> {
    let sessions = chat_sessions::table
        .filter(chat_sessions::workspace_id.eq(id))
        .select(chat_sessions::id);
    let left: Vec<Uuid> = diesel::delete(
        session_participants::table
            .filter(session_participants::user_id.eq(user_id))
            .filter(session_participants::session_id.eq_any(sessions)),
    )
    .returning(session_participants::session_id)
    .get_results(conn)
    .await?;
    let mut removed = Vec::with_capacity(left.len());
    for session in left {
        let event = SessionEvent::ParticipantRemoved {
            user_id,
            reason: Some("left_workspace"),
        };
        removed.push(event.append(conn, session, None).await?);
    }
    Ok(removed)
}

/// `DELETE /api/workspaces/{id}/members/{user_id}` — remove a member (`manage_users`).
#[utoipa::path(tag = "members", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/workspaces/{id}/members/{user_id}")]
pub async fn remove_member(call: Call, path: Path<(Uuid, Uuid)>) -> Reply {
    let (conn, acc) = call.authorized(path.0, Permission::ManageUsers).await?;
    remove(&call.state, conn, call.actor(), *path, Some(acc)).await
}

/// `POST /api/workspaces/{id}/leave` — leave the workspace (the last owner cannot).
#[utoipa::path(tag = "members", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[post("/workspaces/{id}/leave")]
pub async fn leave_workspace(call: Call<AuthUser>, path: Path<Uuid>) -> Reply {
    let (conn, _) = call.authorized(*path, None).await?;
    remove(&call.state, conn, call.actor(), (*path, call.caller.id), None).await
}
