//! Who is calling: the bearer-token middleware that resolves a [`Principal`] before any
//! other extractor runs, and the extractors handlers take (`Auth`, `UserAuth`, `RequestMeta`).

use crate::auth::permissions::PermissionSet;
use crate::auth::secrets::{self, SecretKind};
use crate::db::schema::{api_tokens, user_sessions, users};
use crate::error::{AppError, ErrorCode};
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::future::{Ready, ready};
use uuid::Uuid;

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub session_id: Uuid,
}

/// An API token acting inside one workspace.
#[derive(Debug, Clone)]
pub struct AuthToken {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub permissions: PermissionSet,
    pub created_by: Uuid,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    User(AuthUser),
    Token(AuthToken),
}

impl Principal {
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Principal::User(u) => Some(u.id),
            Principal::Token(_) => None,
        }
    }

    /// The user an action is done for: the caller, or the creator of the API token.
    pub fn acting_user(&self) -> Uuid {
        match self {
            Principal::User(u) => u.id,
            Principal::Token(t) => t.created_by,
        }
    }

    pub fn token_id(&self) -> Option<Uuid> {
        match self {
            Principal::User(_) => None,
            Principal::Token(t) => Some(t.id),
        }
    }
}

/// Extracts the bearer secret from `Authorization`.
fn bearer(req: &ServiceRequest) -> Option<Result<String, AppError>> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION)?;
    let value = match header.to_str() {
        Ok(v) => v,
        Err(_) => return Some(Err(unauthenticated("malformed Authorization header"))),
    };
    match value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
        Some(token) => Some(Ok(token.trim().to_owned())),
        None => Some(Err(unauthenticated("Authorization must be `Bearer <token>`"))),
    }
}

fn unauthenticated(message: &'static str) -> AppError {
    AppError::new(ErrorCode::Unauthenticated, message)
}

/// Middleware: when a bearer token is present, resolve it (or fail with 401) before the
/// handler's other extractors run, so an unauthenticated caller learns nothing from
/// body validation.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(secret) = bearer(&req) {
        let secret = secret?;
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("AppState missing")))?;
        let principal = resolve(&state, &secret).await?;
        req.extensions_mut().insert(principal);
    }
    next.call(req).await
}

/// Looks a presented secret up by its hash.
pub async fn resolve(state: &AppState, secret: &str) -> Result<Principal, AppError> {
    let kind = SecretKind::of(secret);
    let hash = secrets::hash(secret);
    let mut conn = state.pool.get().await?;
    let now = Utc::now();
    match kind {
        Some(SecretKind::Session) => {
            let row: Option<(Uuid, Uuid, String, String)> = user_sessions::table
                .inner_join(users::table)
                .filter(user_sessions::token_hash.eq(&hash))
                .filter(user_sessions::expires_at.gt(now))
                .filter(users::disabled_at.is_null())
                .select((user_sessions::id, users::id, users::email, users::display_name))
                .first(&mut conn)
                .await
                .optional()?;
            let (session_id, id, email, display_name) =
                row.ok_or_else(|| unauthenticated("session expired or logged out"))?;
            Ok(Principal::User(AuthUser {
                id,
                email,
                display_name,
                session_id,
            }))
        }
        Some(SecretKind::ApiToken) => {
            type Row = (Uuid, Uuid, Vec<String>, Uuid, Option<DateTime<Utc>>);
            let row: Option<Row> = api_tokens::table
                .filter(api_tokens::token_hash.eq(&hash))
                .filter(api_tokens::revoked_at.is_null())
                // A disabled account's tokens stop working with it.
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    users::table
                        .filter(users::id.eq(api_tokens::created_by))
                        .filter(users::disabled_at.is_not_null()),
                )))
                .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now)))
                .select((
                    api_tokens::id,
                    api_tokens::workspace_id,
                    api_tokens::permissions,
                    api_tokens::created_by,
                    api_tokens::last_used_at,
                ))
                .first(&mut conn)
                .await
                .optional()?;
            let (id, workspace_id, permissions, created_by, last_used) =
                row.ok_or_else(|| unauthenticated("API token revoked, expired or unknown"))?;
            // Record use at most once a minute: a write per request would be waste.
            if last_used.is_none_or(|t| now - t > chrono::Duration::seconds(60)) {
                diesel::update(api_tokens::table.find(id))
                    .set(api_tokens::last_used_at.eq(now))
                    .execute(&mut conn)
                    .await?;
            }
            Ok(Principal::Token(AuthToken {
                id,
                workspace_id,
                permissions: PermissionSet::parse_lenient(&permissions),
                created_by,
            }))
        }
        _ => Err(unauthenticated("unrecognised bearer token")),
    }
}

/// Any authenticated caller (user or API token).
pub struct Auth(pub Principal);

impl FromRequest for Auth {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .map(Auth)
                .ok_or_else(|| unauthenticated("log in or present an API token")),
        )
    }
}

/// A logged-in user; API tokens are refused with `user_required`.
pub struct UserAuth(pub AuthUser);

impl FromRequest for UserAuth {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.extensions().get::<Principal>() {
            Some(Principal::User(user)) => Ok(UserAuth(user.clone())),
            Some(Principal::Token(_)) => Err(AppError::new(
                ErrorCode::UserRequired,
                "this action needs a logged-in user, not an API token",
            )),
            None => Err(unauthenticated("log in first")),
        })
    }
}

/// Where a request came from, for the audit log and rate limits.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl FromRequest for RequestMeta {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // The peer address, not X-Forwarded-For: a client could forge that header.
        let ip = req.peer_addr().map(|a| a.ip().to_string());
        let user_agent = req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        ready(Ok(RequestMeta { ip, user_agent }))
    }
}
