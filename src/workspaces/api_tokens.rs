//! API tokens for REST integrations: scoped to one workspace and a subset of the creator's
//! permissions, shown once, stored hashed, revocable, with last-used time.

use crate::audit::{self, Actor};
use crate::auth::secrets::{self, SecretKind};
use crate::auth::{Auth, Permission, Principal, RequestMeta, UserAuth, authorize};
use crate::db::schema::api_tokens;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::validate;
use crate::workspaces::parse_grantable;
use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
struct TokenRow {
    id: Uuid,
    workspace_id: Uuid,
    name: String,
    permissions: Vec<String>,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

/// An API token's metadata (never the secret).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
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

impl From<TokenRow> for ApiTokenView {
    fn from(r: TokenRow) -> Self {
        Self {
            id: r.id,
            workspace_id: r.workspace_id,
            name: r.name,
            permissions: r.permissions,
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        }
    }
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
pub async fn create_api_token(
    UserAuth(user): UserAuth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<Uuid>,
    body: web::Json<CreateApiTokenRequest>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let name = validate::text("name", &body.name, 1, 100)?;
    let permissions = parse_grantable("permissions", &body.permissions)?;
    if permissions == crate::auth::PermissionSet::EMPTY {
        return Err(AppError::validation("`permissions` must name at least one permission"));
    }
    let expires_at = match body.expires_in_days {
        Some(days) if !(1..=3650).contains(&days) => {
            return Err(AppError::validation("`expires_in_days` must be between 1 and 3650"));
        }
        Some(days) => Some(Utc::now() + chrono::Duration::days(days)),
        None => None,
    };
    let principal = Principal::User(user.clone());
    let mut conn = state.pool.get().await?;
    let acc = authorize(&mut conn, &principal, id, Permission::ManageApiTokens).await?;
    if !permissions.closure().is_subset(acc.permissions) {
        return Err(AppError::forbidden(
            "a token cannot have permissions its creator does not hold",
        ));
    }
    let (token, hash) = secrets::generate(SecretKind::ApiToken);
    let actor = Actor::user(user.id, &meta);
    let row = conn
        .transaction::<_, AppError, _>(async |conn| {
            async move {
                let row: TokenRow = diesel::insert_into(api_tokens::table)
                    .values((
                        api_tokens::id.eq(Uuid::new_v4()),
                        api_tokens::workspace_id.eq(id),
                        api_tokens::name.eq(&name),
                        api_tokens::token_hash.eq(hash),
                        api_tokens::permissions.eq(permissions.names()),
                        api_tokens::created_by.eq(user.id),
                        api_tokens::expires_at.eq(expires_at),
                    ))
                    .returning(TokenRow::as_returning())
                    .get_result(conn)
                    .await?;
                audit::record(
                    conn,
                    &actor,
                    Some(id),
                    "api_token.create",
                    ("api_token", row.id.to_string()),
                    serde_json::json!({ "name": name, "permissions": permissions.names() }),
                )
                .await?;
                Ok(row)
            }
            .await
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedApiToken {
        api_token: row.into(),
        token,
    }))
}

/// `GET /api/workspaces/{id}/tokens` — the workspace's API tokens (`manage_api_tokens`).
#[utoipa::path(tag = "api tokens", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<ApiTokenView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/workspaces/{id}/tokens")]
pub async fn list_api_tokens(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    authorize(&mut conn, &principal, id, Permission::ManageApiTokens).await?;
    let rows: Vec<TokenRow> = api_tokens::table
        .filter(api_tokens::workspace_id.eq(id))
        .order(api_tokens::created_at.desc())
        .select(TokenRow::as_select())
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(rows.into_iter().map(ApiTokenView::from).collect::<Vec<_>>()))
}

/// `DELETE /api/workspaces/{id}/tokens/{token_id}` — revoke an API token at once.
#[utoipa::path(tag = "api tokens", params(("id" = Uuid, Path), ("token_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/workspaces/{id}/tokens/{token_id}")]
pub async fn revoke_api_token(
    Auth(principal): Auth,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<(Uuid, Uuid)>,
) -> AppResult<HttpResponse> {
    let (id, token_id) = path.into_inner();
    let mut conn = state.pool.get().await?;
    authorize(&mut conn, &principal, id, Permission::ManageApiTokens).await?;
    let actor = Actor::new(&principal, &meta);
    conn.transaction::<_, AppError, _>(async |conn| {
        async move {
            let updated = diesel::update(
                api_tokens::table
                    .filter(api_tokens::id.eq(token_id))
                    .filter(api_tokens::workspace_id.eq(id))
                    .filter(api_tokens::revoked_at.is_null()),
            )
            .set(api_tokens::revoked_at.eq(Utc::now()))
            .execute(conn)
            .await?;
            if updated == 0 {
                return Err(AppError::new(
                    ErrorCode::TokenNotFound,
                    "no such active API token in this workspace",
                ));
            }
            audit::record(
                conn,
                &actor,
                Some(id),
                "api_token.revoke",
                ("api_token", token_id.to_string()),
                serde_json::json!({}),
            )
            .await
        }
        .await
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
