//! Account endpoints: register, log in, log out, `GET /api/me`.

use crate::api::Reply;
use crate::api::{Credentials, Json};
use crate::audit::{self, Action, Actor};
use crate::auth::limits::{Attempt, Refused};
use crate::auth::principal::{RequestMeta, UserAuth};
use crate::auth::secrets::{self, SecretKind};
use crate::db;
use crate::db::schema::{user_sessions, users};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::validate;
use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::DatabaseErrorKind;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What register and login answer: a refusal may carry `Retry-After`.
type Limited = Result<HttpResponse, Refused>;

/// A user as others see them.
#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = users)]
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

/// Opens a login session for `user` in the caller's transaction, with the audit row of
/// `action` (registering or logging in).
async fn create_session(
    conn: &mut AsyncPgConnection,
    (state, meta): (&AppState, &RequestMeta),
    user: UserView,
    action: Action,
) -> AppResult<SessionResponse> {
    let (token, hash) = secrets::generate(SecretKind::Session);
    let expires_at = Utc::now() + chrono::Duration::hours(state.config.session_ttl_hours);
    diesel::insert_into(user_sessions::table)
        .values((
            user_sessions::id.eq(Uuid::new_v4()),
            user_sessions::user_id.eq(user.id),
            user_sessions::token_hash.eq(hash),
            user_sessions::expires_at.eq(expires_at),
            user_sessions::ip.eq(meta.ip.as_deref()),
        ))
        .execute(conn)
        .await?;
    audit::record(conn, &Actor::user(user.id, meta), action).await?;
    Ok(SessionResponse {
        token,
        expires_at,
        user,
    })
}

/// Stores a new account; `email_taken` when the address has one already.
async fn insert_user(conn: &mut AsyncPgConnection, user: &UserView, password_hash: &str) -> AppResult<()> {
    let taken = || AppError::new(ErrorCode::EmailTaken, "an account with this email already exists");
    if db::exists(conn, users::table.filter(users::email.eq(user.email.clone()))).await? {
        return Err(taken());
    }
    let row = (
        users::password_hash.eq(password_hash),
        users::created_at.eq(user.created_at),
    );
    let columns = (
        users::id.eq(user.id),
        users::email.eq(&user.email),
        users::display_name.eq(&user.display_name),
    );
    match diesel::insert_into(users::table)
        .values((columns, row))
        .execute(conn)
        .await
    {
        Err(diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Err(taken()),
        other => other.map(|_| ()).map_err(AppError::from),
    }
}

/// `POST /api/auth/register` — create an account and log it in. Rate-limited per client
/// address; the password is hashed on the bounded Argon2 pool.
#[utoipa::path(tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = SessionResponse), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[post("/auth/register")]
pub async fn register(state: web::Data<AppState>, meta: RequestMeta, body: Json<RegisterRequest>) -> Limited {
    let email = validate::email(&body.email)?;
    validate::password(&body.password)?;
    let display_name = validate::text("display_name", &body.display_name, 1, 100)?;
    let mut conn = state.pool.get().await.map_err(AppError::from)?;
    state
        .auth_limits
        .check_registration(&mut conn, meta.ip.as_deref())
        .await?;
    // Never hold a pooled connection while waiting for a hashing worker.
    drop(conn);
    let password_hash = state.passwords.hash(&body.password).await?;
    let (id, created_at) = (Uuid::new_v4(), Utc::now());
    let user = UserView {
        id,
        email,
        display_name,
        created_at,
    };
    let attempt = Attempt::new(&user.email, meta.ip.as_deref());
    let mut conn = state.pool.get().await.map_err(AppError::from)?;
    let registered = conn.transaction::<_, AppError, _>(async |conn| {
        async {
            insert_user(conn, &user, &password_hash).await?;
            state.auth_limits.login_succeeded(conn, &attempt).await?;
            create_session(conn, (&state, &meta), user, Action::UserRegister { user: id }).await
        }
        .await
    });
    Ok(HttpResponse::Created().json(registered.await?))
}

/// `POST /api/auth/login` — exchange email and password for a session token.
/// Rate-limited per client address, per account and address, and per account (see
/// `auth::limits`), across the cluster.
#[utoipa::path(tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
#[post("/auth/login")]
pub async fn login(state: web::Data<AppState>, meta: RequestMeta, body: Credentials<LoginRequest>) -> Limited {
    let email = body.email.trim().to_lowercase();
    let attempt = Attempt::new(&email, meta.ip.as_deref());
    let mut conn = state.pool.get().await.map_err(AppError::from)?;
    state.auth_limits.check_login(&mut conn, &attempt).await?;
    let row: Option<(UserView, String)> = users::table
        .filter(users::email.eq(&email))
        // A disabled account cannot log in (and is told no more than for a wrong password).
        .filter(users::disabled_at.is_null())
        .select((UserView::as_select(), users::password_hash))
        .first(&mut conn)
        .await
        .optional()
        .map_err(AppError::from)?;
    drop(conn);
    let stored = row.as_ref().map(|r| r.1.as_str());
    let ok = state.passwords.verify(&body.password, stored).await?;
    let mut conn = state.pool.get().await.map_err(AppError::from)?;
    let Some((user, _)) = row.filter(|_| ok) else {
        state
            .auth_limits
            .login_failed(&mut conn, &attempt)
            .await
            .map_err(AppError::from)?;
        return Err(AppError::new(ErrorCode::InvalidCredentials, "wrong email or password").into());
    };
    let action = Action::UserLogin { user: user.id };
    let session = conn.transaction::<_, AppError, _>(async |conn| {
        async {
            state.auth_limits.login_succeeded(conn, &attempt).await?;
            create_session(conn, (&state, &meta), user, action).await
        }
        .await
    });
    Ok(HttpResponse::Ok().json(session.await?))
}

/// `POST /api/auth/logout` — end the current login session, with the artifact connect
/// tokens and connect tickets it issued (they go with the session row), and close every
/// socket opened under it, on every node (4403). The user's other login sessions stay.
#[utoipa::path(tag = "auth", responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
#[post("/auth/logout")]
pub async fn logout(UserAuth(user): UserAuth, state: web::Data<AppState>) -> Reply {
    let mut conn = state.pool.get().await?;
    diesel::delete(user_sessions::table.find(user.session_id))
        .execute(&mut conn)
        .await?;
    state.hub.revoke(crate::credentials::Revoked::LoginSession {
        user: user.id,
        session: user.session_id,
    });
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/me` — the logged-in user.
#[utoipa::path(tag = "auth", responses((status = 200, body = UserView), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
#[get("/me")]
pub async fn me(UserAuth(user): UserAuth, state: web::Data<AppState>) -> Reply {
    let mut conn = state.pool.get().await?;
    let me: UserView = users::table
        .find(user.id)
        .select(UserView::as_select())
        .first(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(me))
}
