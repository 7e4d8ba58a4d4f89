//! API tokens for REST integrations: scoped to one workspace and a subset of the creator's
//! permissions, shown once, stored hashed, revocable, with last-used time.

use crate::api::{Call, Reply};
use crate::api::{Json, Path};
use crate::audit::Action;
use crate::auth::secrets::{self, SecretKind};
use crate::auth::{AuthUser, Permission, PermissionSet};
use crate::db;
use crate::db::schema::api_tokens;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::validate;
use crate::workspaces::parse_grantable;
use actix_web::{HttpResponse, delete, get, post};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An API token's metadata (never the secret).
#[derive(Debug, Serialize, Deserialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = api_tokens)]
pub struct ApiTokenView {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub permissions: Vec<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateApiTokenRequest {
    /// 1 to 100 characters.
    pub name: String,
    /// What the token may do: a non-empty subset of the creator's permissions.
    pub permissions: Vec<String>,
    /// Days until the token expires (1–3650); never when absent.
    pub expires_in_days: Option<i64>,
}

impl CreateApiTokenRequest {
    /// The name, the permissions and the expiry time, checked.
    fn parse(&self) -> AppResult<(String, PermissionSet, Option<DateTime<Utc>>)> {
        let name = validate::text("name", &self.name, 1, 100)?;
        let permissions = parse_grantable("permissions", &self.permissions)?;
        if permissions == PermissionSet::EMPTY {
            return Err(AppError::validation("`permissions` must name at least one permission"));
        }
        let expires_at = match self.expires_in_days {
            Some(days) if !(1..=3650).contains(&days) => {
                return Err(AppError::validation("`expires_in_days` must be between 1 and 3650"));
            }
            Some(days) => Some(Utc::now() + chrono::Duration::days(days)),
            None => None,
        };
        Ok((name, permissions, expires_at))
    }
}

/// The new token. `token` is shown only in this response.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedApiToken {
    #[serde(flatten)]
    pub api_token: ApiTokenView,
    pub token: String,
}

/// `POST /api/workspaces/{id}/tokens` — create an API token (`manage_api_tokens`, users only).
#[utoipa::path(tag = "api tokens", params(("id" = Uuid, Path)), request_body = CreateApiTokenRequest,
    responses((status = 201, body = CreatedApiToken), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
#[post("/workspaces/{id}/tokens")]
pub async fn create_api_token(call: Call<AuthUser>, path: Path<Uuid>, body: Json<CreateApiTokenRequest>) -> Reply {
    let (workspace, (name, permissions, expires_at)) = (*path, body.parse()?);
    let (token, hash) = secrets::generate(SecretKind::ApiToken);
    let created_by = call.caller.id;
    let api_token = call
        .audited(workspace, Permission::ManageApiTokens, |conn, acc| {
            async move {
                if !permissions.closure().is_subset(acc.permissions) {
                    return Err(AppError::forbidden(
                        "a token cannot have permissions its creator does not hold",
                    ));
                }
                let row: ApiTokenView = diesel::insert_into(api_tokens::table)
                    .values((
                        api_tokens::id.eq(Uuid::new_v4()),
                        api_tokens::workspace_id.eq(workspace),
                        api_tokens::name.eq(&name),
                        api_tokens::token_hash.eq(hash),
                        api_tokens::permissions.eq(permissions.names()),
                        api_tokens::created_by.eq(created_by),
                        api_tokens::expires_at.eq(expires_at),
                    ))
                    .returning(ApiTokenView::as_returning())
                    .get_result(conn)
                    .await?;
                let (token, permissions) = (row.id, permissions.names());
                Ok((
                    Action::ApiTokenCreate {
                        workspace,
                        token,
                        name,
                        permissions,
                    },
                    row,
                ))
            }
            .scope_boxed()
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedApiToken { api_token, token }))
}

/// `GET /api/workspaces/{id}/tokens` — the workspace's API tokens (`manage_api_tokens`).
#[utoipa::path(tag = "api tokens", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<ApiTokenView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/workspaces/{id}/tokens")]
pub async fn list_api_tokens(call: Call, path: Path<Uuid>) -> Reply {
    let (mut conn, _) = call.authorized(*path, Permission::ManageApiTokens).await?;
    let tokens = api_tokens::table
        .filter(api_tokens::workspace_id.eq(*path))
        .order(api_tokens::created_at.desc())
        .select(ApiTokenView::as_select());
    Ok(HttpResponse::Ok().json(tokens.load::<ApiTokenView>(&mut conn).await?))
}

/// `DELETE /api/workspaces/{id}/tokens/{token_id}` — revoke an API token at once.
#[utoipa::path(tag = "api tokens", params(("id" = Uuid, Path), ("token_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/workspaces/{id}/tokens/{token_id}")]
pub async fn revoke_api_token(call: Call, path: Path<(Uuid, Uuid)>) -> Reply {
    let (workspace, token) = *path;
    call.audited(workspace, Permission::ManageApiTokens, |conn, _| {
        async move {
            let active = api_tokens::table
                .find(token)
                .filter(api_tokens::workspace_id.eq(workspace))
                .filter(api_tokens::revoked_at.is_null());
            let updated = diesel::update(active)
                .set(api_tokens::revoked_at.eq(Utc::now()))
                .execute(conn)
                .await?;
            db::touched(updated, || {
                AppError::new(ErrorCode::TokenNotFound, "no such active API token in this workspace")
            })?;
            Ok((Action::ApiTokenRevoke { workspace, token }, ()))
        }
        .scope_boxed()
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
