//! The operator side: what server admins (`--admin-emails`) see of the cluster, and the
//! accounts they can disable.

pub mod nodes;
pub mod users;

use crate::auth::AuthUser;
use crate::error::{AppError, AppResult};
use crate::feature::Feature;
use crate::routes;
use crate::state::AppState;

pub const FEATURE: Feature = Feature::new(
    "admin",
    routes! { nodes::list_nodes, users::disable_user, users::enable_user },
);

/// Server administration is for the addresses in `--admin-emails`.
pub fn require_admin(state: &AppState, user: &AuthUser) -> AppResult<()> {
    if state
        .config
        .admin_emails
        .iter()
        .any(|e| e.eq_ignore_ascii_case(&user.email))
    {
        return Ok(());
    }
    Err(AppError::forbidden(
        "server administration is for the addresses in --admin-emails",
    ))
}
