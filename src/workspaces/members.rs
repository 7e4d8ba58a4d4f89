//! Member endpoints: list, change role, set custom permissions, remove, leave.

use crate::audit::{self, Actor};
use crate::auth::authorize::{MemberRow, find_member};
use crate::auth::{Access, Auth, Permission, RequestMeta, Role, UserAuth, access, authorize};
use crate::db::schema::{chat_sessions, session_participants, users, workspace_members};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::events;
use crate::events::Event;
use crate::state::AppState;
use crate::workspaces::{lock_workspace, parse_grantable};
use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedFutureExt;
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
        role: m.role(),
        permissions: m.effective().iter().collect(),
        granted: m.granted,
        revoked: m.revoked,
        joined_at: m.joined_at,
    }
}

pub async fn load_member_view(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    user_id: Uuid,
) -> AppResult<MemberView> {
    let (m, email, name): (MemberRow, String, String) = workspace_members::table
        .inner_join(users::table)
        .filter(workspace_members::workspace_id.eq(workspace_id))
        .filter(workspace_members::user_id.eq(user_id))
        .select((MemberRow::as_select(), users::email, users::display_name))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(member_not_found)?;
    Ok(member_view(m, email, name))
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
pub async fn list_members(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    access(&mut conn, &principal, id).await?;
    let rows: Vec<(MemberRow, String, String)> = workspace_members::table
        .inner_join(users::table)
        .filter(workspace_members::workspace_id.eq(id))
        .select((MemberRow::as_select(), users::email, users::display_name))
        .order(workspace_members::joined_at.asc())
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(
        rows.into_iter()
            .map(|(m, e, n)| member_view(m, e, n))
            .collect::<Vec<_>>(),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateMemberRequest {
    pub role: Role,
}

/// `PATCH /api/workspaces/{id}/members/{user_id}` — change a member's role (`manage_users`).
#[utoipa::path(tag = "members", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = UpdateMemberRequest,
    responses((status = 200, body = MemberView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[patch("/workspaces/{id}/members/{user_id}")]
pub async fn update_member(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<UpdateMemberRequest>,
) -> AppResult<HttpResponse> {
    let (id, user_id) = path.into_inner();
    let new_role = body.role;
    let mut conn = state.pool.get().await?;
    let acc = authorize(&mut conn, &principal, id, Permission::ManageUsers).await?;
    let actor = Actor::new(&principal, &meta);
    let view = conn
        .transaction::<_, AppError, _>(async |conn| {
            async move {
                lock_workspace(conn, id).await?;
                let target = find_member(conn, id, user_id).await?.ok_or_else(member_not_found)?;
                let old_role = target.role();
                require_owner_for(&acc, old_role, Some(new_role))?;
                if old_role == Role::Owner && new_role != Role::Owner && owner_count(conn, id).await? <= 1 {
                    return Err(AppError::new(
                        ErrorCode::LastOwner,
                        "the last owner cannot be demoted; make someone else an owner first",
                    ));
                }
                diesel::update(workspace_members::table.find((id, user_id)))
                    .set(workspace_members::role.eq(new_role.as_str()))
                    .execute(conn)
                    .await?;
                audit::record(
                    conn,
                    &actor,
                    Some(id),
                    "member.role_change",
                    ("user", user_id.to_string()),
                    serde_json::json!({ "from": old_role, "to": new_role }),
                )
                .await?;
                load_member_view(conn, id, user_id).await
            }
            .await
        })
        .await?;
    state.hub.access_changed(id, Some(user_id));
    Ok(HttpResponse::Ok().json(view))
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
pub async fn set_member_permissions(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<SetPermissionsRequest>,
) -> AppResult<HttpResponse> {
    let (id, user_id) = path.into_inner();
    let granted = parse_grantable("granted", &body.granted)?;
    let revoked = parse_grantable("revoked", &body.revoked)?;
    let mut conn = state.pool.get().await?;
    let acc = authorize(&mut conn, &principal, id, Permission::ManagePermissions).await?;
    if principal.user_id() == Some(user_id) {
        return Err(AppError::forbidden("you cannot change your own permissions"));
    }
    let actor = Actor::new(&principal, &meta);
    let view = conn
        .transaction::<_, AppError, _>(async |conn| {
            async move {
                lock_workspace(conn, id).await?;
                let target = find_member(conn, id, user_id).await?.ok_or_else(member_not_found)?;
                require_owner_for(&acc, target.role(), None)?;
                // Whatever the change gives the member (implications included, and lifted
                // revokes too) must be something the caller holds.
                let before = target.effective();
                let after = crate::auth::permissions::effective(target.role(), granted, revoked);
                if !after.difference(before).is_subset(acc.permissions) {
                    return Err(AppError::forbidden("you can only grant permissions you hold yourself"));
                }
                diesel::update(workspace_members::table.find((id, user_id)))
                    .set((
                        workspace_members::granted.eq(granted.names()),
                        workspace_members::revoked.eq(revoked.names()),
                    ))
                    .execute(conn)
                    .await?;
                audit::record(
                    conn,
                    &actor,
                    Some(id),
                    "member.permissions",
                    ("user", user_id.to_string()),
                    serde_json::json!({
                        "granted": granted.names(), "revoked": revoked.names(),
                        "previous_granted": target.granted, "previous_revoked": target.revoked,
                    }),
                )
                .await?;
                load_member_view(conn, id, user_id).await
            }
            .await
        })
        .await?;
    state.hub.access_changed(id, Some(user_id));
    Ok(HttpResponse::Ok().json(view))
}

/// Removes a membership inside a transaction, enforcing the last-owner rule.
async fn remove(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user_id: Uuid,
    acc: Option<&Access>,
) -> AppResult<(MemberRow, Vec<Event>)> {
    lock_workspace(conn, id).await?;
    let target = find_member(conn, id, user_id).await?.ok_or_else(member_not_found)?;
    if let Some(acc) = acc {
        require_owner_for(acc, target.role(), None)?;
    }
    if target.role() == Role::Owner && owner_count(conn, id).await? <= 1 {
        return Err(AppError::new(
            ErrorCode::LastOwner,
            "the last owner cannot leave; make someone else an owner or delete the workspace",
        ));
    }
    diesel::delete(workspace_members::table.find((id, user_id)))
        .execute(conn)
        .await?;
    // Leaving the workspace leaves its sessions too (no silent return on rejoining).
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
    // Each session's log says so, like any participant removal.
    let mut removed = Vec::with_capacity(left.len());
    for session in left {
        let data = serde_json::json!({ "user_id": user_id, "reason": "left_workspace" });
        removed.push(crate::sessions::store::append(conn, session, "participant.removed", data, None).await?);
    }
    Ok((target, removed))
}

/// `DELETE /api/workspaces/{id}/members/{user_id}` — remove a member (`manage_users`).
#[utoipa::path(tag = "members", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/workspaces/{id}/members/{user_id}")]
pub async fn remove_member(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<(Uuid, Uuid)>,
) -> AppResult<HttpResponse> {
    let (id, user_id) = path.into_inner();
    let mut conn = state.pool.get().await?;
    let acc = authorize(&mut conn, &principal, id, Permission::ManageUsers).await?;
    let actor = Actor::new(&principal, &meta);
    events::commit(&mut conn, &state.hub, |conn| {
        async move {
            let (target, removed) = remove(conn, id, user_id, Some(&acc)).await?;
            audit::record(
                conn,
                &actor,
                Some(id),
                "member.remove",
                ("user", user_id.to_string()),
                serde_json::json!({ "role": target.role() }),
            )
            .await?;
            Ok(((), removed))
        }
        .scope_boxed()
    })
    .await?
    .publish(&state.hub);
    state.hub.access_changed(id, Some(user_id));
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/workspaces/{id}/leave` — leave the workspace (the last owner cannot).
#[utoipa::path(tag = "members", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[post("/workspaces/{id}/leave")]
pub async fn leave_workspace(
    UserAuth(user): UserAuth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    access(&mut conn, &crate::auth::Principal::User(user.clone()), id).await?;
    let actor = Actor::user(user.id, &meta);
    events::commit(&mut conn, &state.hub, |conn| {
        async move {
            let (target, removed) = remove(conn, id, user.id, None).await?;
            audit::record(
                conn,
                &actor,
                Some(id),
                "member.leave",
                ("user", user.id.to_string()),
                serde_json::json!({ "role": target.role() }),
            )
            .await?;
            Ok(((), removed))
        }
        .scope_boxed()
    })
    .await?
    .publish(&state.hub);
    state.hub.access_changed(id, Some(user.id));
    Ok(HttpResponse::NoContent().finish())
}
