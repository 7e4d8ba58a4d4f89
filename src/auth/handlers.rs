//! Account endpoints: register, log in, log out, `GET /api/me`.

use crate::audit::{self, Actor};
use crate::auth::principal::{RequestMeta, UserAuth};
use crate::auth::secrets::{self, SecretKind};
use crate::db::schema::{user_sessions, users};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::validate;
use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user as others see them.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    /// Up to 254 characters; compared case-insensitively.
    pub email: String,
    /// 8 to 256 characters.
    pub password: String,
    /// 1 to 100 characters.
    pub display_name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// A new login session. The token is shown only here; send it as `Authorization: Bearer`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionResponse {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: UserView,
}

async fn create_session(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    user_id: Uuid,
    meta: &RequestMeta,
) -> AppResult<(String, DateTime<Utc>)> {
    let (token, hash) = secrets::generate(SecretKind::Session);
    let expires_at = Utc::now() + chrono::Duration::hours(state.config.session_ttl_hours);
    diesel::insert_into(user_sessions::table)
        .values((
            user_sessions::id.eq(Uuid::new_v4()),
            user_sessions::user_id.eq(user_id),
            user_sessions::token_hash.eq(hash),
            user_sessions::expires_at.eq(expires_at),
            user_sessions::ip.eq(meta.ip.as_deref()),
        ))
        .execute(conn)
        .await?;
    Ok((token, expires_at))
}

/// `POST /api/auth/register` — create an account and log it in.
#[utoipa::path(
    tag = "auth",
    request_body = RegisterRequest,
    responses((status = 201, body = SessionResponse), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[post("/auth/register")]
pub async fn register(
    state: web::Data<AppState>,
    meta: RequestMeta,
    body: web::Json<RegisterRequest>,
) -> AppResult<HttpResponse> {
    let email = validate::email(&body.email)?;
    validate::password(&body.password)?;
    let display_name = validate::text("display_name", &body.display_name, 1, 100)?;
    let hashing = state.passwords.clone();
    let password = body.password.clone();
    let password_hash = web::block(move || hashing.hash(&password))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;

    let mut conn = state.pool.get().await?;
    let state2 = state.clone();
    let (user, token, expires_at) = conn
        .transaction::<_, AppError, _>(async |conn| {
            async move {
                let taken: bool = diesel::select(diesel::dsl::exists(users::table.filter(users::email.eq(&email))))
                    .get_result(conn)
                    .await?;
                if taken {
                    return Err(AppError::new(
                        ErrorCode::EmailTaken,
                        "an account with this email already exists",
                    ));
                }
                let user = UserView {
                    id: Uuid::new_v4(),
                    email: email.clone(),
                    display_name,
                    created_at: Utc::now(),
                };
                diesel::insert_into(users::table)
                    .values((
                        users::id.eq(user.id),
                        users::email.eq(&user.email),
                        users::display_name.eq(&user.display_name),
                        users::password_hash.eq(&password_hash),
                        users::created_at.eq(user.created_at),
                    ))
                    .execute(conn)
                    .await
                    .map_err(|err| match err {
                        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
                            AppError::new(ErrorCode::EmailTaken, "an account with this email already exists")
                        }
                        other => other.into(),
                    })?;
                let (token, expires_at) = create_session(conn, &state2, user.id, &meta).await?;
                audit::record(
                    conn,
                    &Actor::user(user.id, &meta),
                    None,
                    "user.register",
                    ("user", user.id.to_string()),
                    serde_json::json!({}),
                )
                .await?;
                Ok((user, token, expires_at))
            }
            .await
        })
        .await?;
    Ok(HttpResponse::Created().json(SessionResponse {
        token,
        expires_at,
        user,
    }))
}

/// `POST /api/auth/login` — exchange email and password for a session token.
/// Rate-limited per account and per client address.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody))
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    meta: RequestMeta,
    body: web::Json<LoginRequest>,
) -> AppResult<HttpResponse> {
    let email = body.email.trim().to_lowercase();
    state.login_limits.check(&email, meta.ip.as_deref())?;
    let mut conn = state.pool.get().await?;
    type Row = (Uuid, String, String, String, DateTime<Utc>);
    let row: Option<Row> = users::table
        .filter(users::email.eq(&email))
        .select((
            users::id,
            users::email,
            users::display_name,
            users::password_hash,
            users::created_at,
        ))
        .first(&mut conn)
        .await
        .optional()?;
    drop(conn);
    let hashing = state.passwords.clone();
    let password = body.password.clone();
    let stored = row.as_ref().map(|r| r.3.clone());
    let ok = web::block(move || hashing.verify(&password, stored.as_deref()))
        .await
        .map_err(AppError::internal)?;
    let Some((id, email, display_name, _, created_at)) = row.filter(|_| ok) else {
        return Err(AppError::new(ErrorCode::InvalidCredentials, "wrong email or password"));
    };
    let mut conn = state.pool.get().await?;
    let (token, expires_at) = conn
        .transaction::<_, AppError, _>(async |conn| {
            async move {
                let session = create_session(conn, &state, id, &meta).await?;
                audit::record(
                    conn,
                    &Actor::user(id, &meta),
                    None,
                    "user.login",
                    ("user", id.to_string()),
                    serde_json::json!({}),
                )
                .await?;
                Ok(session)
            }
            .await
        })
        .await?;
    Ok(HttpResponse::Ok().json(SessionResponse {
        token,
        expires_at,
        user: UserView {
            id,
            email,
            display_name,
            created_at,
        },
    }))
}

/// `POST /api/auth/logout` — end the current login session.
#[utoipa::path(tag = "auth", responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
#[post("/auth/logout")]
pub async fn logout(UserAuth(user): UserAuth, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let mut conn = state.pool.get().await?;
    diesel::delete(user_sessions::table.find(user.session_id))
        .execute(&mut conn)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/me` — the logged-in user.
#[utoipa::path(tag = "auth", responses((status = 200, body = UserView), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
#[get("/me")]
pub async fn me(UserAuth(user): UserAuth, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let mut conn = state.pool.get().await?;
    let created_at: DateTime<Utc> = users::table
        .find(user.id)
        .select(users::created_at)
        .first(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(UserView {
        id: user.id,
        email: user.email,
        display_name: user.display_name,
        created_at,
    }))
}
