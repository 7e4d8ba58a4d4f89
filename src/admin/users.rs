//! `POST /api/admin/users/{id}/disable` and `/enable`: server admins (`--admin-emails`) shut
//! an account out and let it back in. Disabling ends everything the account holds — login
//! sessions, artifact connect tokens, connect tickets — closes its sockets on every node
//! (4403), and stops its API tokens working (their creator is disabled) until it is
//! enabled again; it cannot log in meanwhile. Each change writes an audit row.

use crate::admin::require_admin;
use crate::api::Path;
use crate::api::{Call, Reply};
use crate::audit::{self, Action};
use crate::auth::AuthUser;
use crate::credentials::Revoked;
use crate::db::schema::{artifact_tokens, connect_tickets, user_sessions, users};
use crate::error::{AppError, ErrorBody, ErrorCode};
use actix_web::{HttpResponse, post};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Timestamptz};
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An account's standing as a server admin sees it.
#[derive(Debug, Serialize, Deserialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = users)]
pub struct AccountStatus {
    pub id: Uuid,
    pub email: String,
    /// When it was disabled; `null` when it is enabled.
    pub disabled_at: Option<DateTime<Utc>>,
}

fn no_user() -> AppError {
    AppError::new(ErrorCode::MemberNotFound, "no such user")
}

/// Sets or clears `disabled_at` in one audited transaction; disabling also deletes the
/// account's login sessions (and with them their tickets and tokens) and its other tokens.
async fn set_disabled(call: &Call<AuthUser>, user: Uuid, disable: bool) -> Reply {
    require_admin(&call.state, &call.caller)?;
    if disable && user == call.caller.id {
        return Err(AppError::validation("you cannot disable your own account"));
    }
    let mut conn = call.state.pool.get().await?;
    let actor = call.actor();
    let status = audit::commit(&mut conn, &actor, |conn| {
        async move {
            let status: AccountStatus = diesel::update(users::table.find(user))
                // Disabling twice keeps the first time.
                .set(
                    users::disabled_at.eq(diesel::dsl::sql::<Nullable<Timestamptz>>(if disable {
                        "coalesce(disabled_at, now())"
                    } else {
                        "NULL"
                    })),
                )
                .returning(AccountStatus::as_returning())
                .get_result(conn)
                .await
                .optional()?
                .ok_or_else(no_user)?;
            if disable {
                diesel::delete(user_sessions::table.filter(user_sessions::user_id.eq(user)))
                    .execute(conn)
                    .await?;
                diesel::delete(artifact_tokens::table.filter(artifact_tokens::user_id.eq(user)))
                    .execute(conn)
                    .await?;
                diesel::delete(connect_tickets::table.filter(connect_tickets::user_id.eq(user)))
                    .execute(conn)
                    .await?;
            }
            let email = status.email.clone();
            let action = if disable {
                Action::UserDisable { user, email }
            } else {
                Action::UserEnable { user, email }
            };
            Ok((action, status))
        }
        .scope_boxed()
    })
    .await?;
    if disable {
        call.state.hub.revoke(Revoked::User { user });
    }
    Ok(HttpResponse::Ok().json(status))
}

/// `POST /api/admin/users/{id}/disable` — disable an account (server admins only): it
/// cannot log in, its sessions and tokens stop working and its sockets close everywhere.
#[utoipa::path(tag = "admin", params(("id" = Uuid, Path)), responses((status = 200, body = AccountStatus),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody)), security(("bearer" = [])))]
#[post("/admin/users/{id}/disable")]
pub async fn disable_user(call: Call<AuthUser>, path: Path<Uuid>) -> Reply {
    set_disabled(&call, *path, true).await
}

/// `POST /api/admin/users/{id}/enable` — enable a disabled account again (server admins
/// only); it logs in afresh (its old sessions and tokens stay ended).
#[utoipa::path(tag = "admin", params(("id" = Uuid, Path)), responses((status = 200, body = AccountStatus),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[post("/admin/users/{id}/enable")]
pub async fn enable_user(call: Call<AuthUser>, path: Path<Uuid>) -> Reply {
    set_disabled(&call, *path, false).await
}
