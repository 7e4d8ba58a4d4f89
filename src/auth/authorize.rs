//! The one `authorize` check every REST handler and WebSocket action goes through.

use crate::auth::permissions::{Permission, PermissionSet, Role, effective};
use crate::auth::principal::Principal;
use crate::db::schema::workspace_members;
use crate::db::{DbConn, DbPool};
use crate::error::{AppError, AppResult, ErrorCode};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// What the caller may do in one workspace.
#[derive(Debug, Clone)]
pub struct Access {
    pub workspace_id: Uuid,
    /// The member's role; `None` for an API token.
    pub role: Option<Role>,
    pub permissions: PermissionSet,
}

impl Access {
    pub fn require(&self, permission: Permission) -> AppResult<()> {
        if self.permissions.contains(permission) {
            Ok(())
        } else {
            Err(AppError::new(
                ErrorCode::PermissionDenied,
                format!("this action requires the `{permission}` permission"),
            ))
        }
    }

    pub fn is_owner(&self) -> bool {
        self.role == Some(Role::Owner)
    }
}

/// A member's stored role and custom adjustments.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workspace_members)]
pub struct MemberRow {
    pub workspace_id: Uuid,
    pub user_id: Uuid,
    /// Stored as text; the table allows only known roles.
    #[diesel(deserialize_as = String)]
    pub role: Role,
    pub granted: Vec<String>,
    pub revoked: Vec<String>,
    pub joined_at: chrono::DateTime<chrono::Utc>,
}

impl MemberRow {
    pub fn effective(&self) -> PermissionSet {
        effective(
            self.role,
            PermissionSet::parse_lenient(&self.granted),
            PermissionSet::parse_lenient(&self.revoked),
        )
    }
}

pub async fn find_member(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    user_id: Uuid,
) -> AppResult<Option<MemberRow>> {
    Ok(workspace_members::table
        .find((workspace_id, user_id))
        .select(MemberRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The caller's access to a workspace; `workspace_not_found` when they are not a member
/// (so non-members cannot probe which workspaces exist).
pub async fn access(conn: &mut AsyncPgConnection, principal: &Principal, workspace_id: Uuid) -> AppResult<Access> {
    let not_found = || AppError::new(ErrorCode::WorkspaceNotFound, "workspace not found");
    match principal {
        Principal::User(user) => user_access(conn, user.id, workspace_id).await,
        Principal::Token(token) => {
            if token.workspace_id != workspace_id {
                return Err(not_found());
            }
            // A token never does more than its creator may do now: demoting the creator
            // narrows their tokens at once, and removing them makes their tokens useless
            // (not even membership-only reads such as the member list).
            let creator = find_member(conn, workspace_id, token.created_by)
                .await?
                .ok_or_else(|| {
                    AppError::new(
                        ErrorCode::PermissionDenied,
                        "the creator of this API token is no longer a member of the workspace",
                    )
                })?
                .effective();
            Ok(Access {
                workspace_id,
                role: None,
                permissions: token.permissions.intersection(creator),
            })
        }
    }
}

/// A user's access to a workspace, by id (for callers that have no login session at hand:
/// socket connects, live re-checks).
pub async fn user_access(conn: &mut AsyncPgConnection, user_id: Uuid, workspace_id: Uuid) -> AppResult<Access> {
    let member = find_member(conn, workspace_id, user_id)
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::WorkspaceNotFound, "workspace not found"))?;
    Ok(Access {
        workspace_id,
        role: Some(member.role),
        permissions: member.effective(),
    })
}

/// Checks that the caller holds `permission` in the workspace.
pub async fn authorize(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    workspace_id: Uuid,
    permission: Permission,
) -> AppResult<Access> {
    let access = access(conn, principal, workspace_id).await?;
    access.require(permission)?;
    Ok(access)
}

/// A pooled connection and the caller's access to the workspace, holding `permission`
/// (`None`: membership is enough): how a workspace-scoped handler begins.
pub async fn authorized(
    pool: &DbPool,
    principal: &Principal,
    workspace_id: Uuid,
    permission: impl Into<Option<Permission>>,
) -> AppResult<(DbConn, Access)> {
    let mut conn = pool.get().await?;
    let access = access(&mut conn, principal, workspace_id).await?;
    if let Some(permission) = permission.into() {
        access.require(permission)?;
    }
    Ok((conn, access))
}
