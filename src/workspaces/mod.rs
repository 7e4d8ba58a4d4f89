//! Workspaces and everything about membership: the workspace itself, members and their
//! roles and custom permissions, invitations, API tokens.

use crate::feature::Feature;
use crate::routes;

pub mod api_tokens;
pub mod handlers;
pub mod invitations;
pub mod members;

use crate::db::schema::workspaces;
use crate::error::{AppError, AppResult, ErrorCode};
use api_tokens::{create_api_token, list_api_tokens, revoke_api_token};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use handlers::{create_workspace, delete_workspace, get_catalogue, get_workspace, list_workspaces, update_workspace};
use invitations::{accept_invitation, create_invitation, list_invitations, revoke_invitation};
use members::{leave_workspace, list_members, remove_member, set_member_permissions, update_member};
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
pub const FEATURE: Feature = Feature::new(
    "workspaces",
    routes! {
        get_catalogue, create_workspace, list_workspaces, get_workspace, update_workspace, delete_workspace,
        list_members, update_member, set_member_permissions, remove_member, leave_workspace,
        create_invitation, list_invitations, revoke_invitation, accept_invitation,
        create_api_token, list_api_tokens, revoke_api_token,
    },
);
