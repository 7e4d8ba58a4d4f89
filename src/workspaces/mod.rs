//! Workspaces and everything about membership: the workspace itself, members and their
//! roles and custom permissions, invitations, API tokens.

pub mod api_tokens;
pub mod handlers;
pub mod invitations;
pub mod members;

use crate::db::schema::workspaces;
use crate::error::{AppError, AppResult, ErrorCode};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// Locks the workspace row for the rest of the transaction, so that membership changes
/// of one workspace happen one at a time (the last-owner rule depends on it).
pub async fn lock_workspace(conn: &mut AsyncPgConnection, workspace_id: Uuid) -> AppResult<()> {
    workspaces::table
        .find(workspace_id)
        .select(workspaces::id)
        .for_update()
        .first::<Uuid>(conn)
        .await
        .optional()?
        .map(|_| ())
        .ok_or_else(|| AppError::new(ErrorCode::WorkspaceNotFound, "workspace not found"))
}

/// Parses a list of permission names from a request: unknown or non-grantable names are
/// a `validation_failed` naming them.
pub fn parse_grantable(field: &str, names: &[String]) -> AppResult<crate::auth::PermissionSet> {
    if names.len() > 64 {
        return Err(AppError::validation(format!("`{field}` lists too many permissions")));
    }
    let set = crate::auth::PermissionSet::parse(names).map_err(|e| AppError::validation(format!("`{field}`: {e}")))?;
    if let Some(p) = set.iter().find(|p| !p.grantable()) {
        return Err(AppError::validation(format!(
            "`{field}`: `{p}` belongs to owners and cannot be granted"
        )));
    }
    Ok(set)
}

/// Workspaces, members, invitations and API tokens.
pub const FEATURE: crate::feature::Feature = crate::feature::Feature {
    name: "workspaces",
    api: |cfg| {
        cfg.service(handlers::get_catalogue)
            .service(handlers::create_workspace)
            .service(handlers::list_workspaces)
            .service(handlers::get_workspace)
            .service(handlers::update_workspace)
            .service(handlers::delete_workspace)
            .service(members::list_members)
            .service(members::update_member)
            .service(members::set_member_permissions)
            .service(members::remove_member)
            .service(members::leave_workspace)
            .service(invitations::create_invitation)
            .service(invitations::list_invitations)
            .service(invitations::revoke_invitation)
            .service(invitations::accept_invitation)
            .service(api_tokens::create_api_token)
            .service(api_tokens::list_api_tokens)
            .service(api_tokens::revoke_api_token);
    },
    room: None,
    public: crate::feature::none,
};
