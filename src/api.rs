//! What REST handlers share: [`Call`], what a handler starts from — the server state, the
//! authenticated caller and where the request came from, extracted as one argument (the
//! caller first, so an unauthenticated request fails before anything else is looked at) —
//! and [`Reply`], what it returns — and the input extractors every handler uses instead of
//! actix's: [`Json`], [`Credentials`], [`Query`] and [`Path`] refuse a NUL character (which
//! Postgres cannot store in `text` or `jsonb`) before anything reaches the database.

use crate::audit::{self, Action, Actor};
use crate::auth::{Access, Auth, AuthUser, Permission, Principal, RequestMeta, UserAuth, authorized};
use crate::db::DbConn;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use diesel_async::AsyncPgConnection;
use futures_util::future::LocalBoxFuture;
use scoped_futures::{ScopedBoxFuture, ScopedFutureExt};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::future::{Ready, ready};
use uuid::Uuid;

/// What a handler returns: a response, or an error in the one error envelope.
pub type Reply = AppResult<HttpResponse>;

/// Who may make a call: any principal, or only a logged-in user.
pub trait Caller: Sized {
    fn extract(req: &HttpRequest) -> Result<Self, AppError>;
    fn principal(&self) -> Principal;
}

impl Caller for Principal {
    fn extract(req: &HttpRequest) -> Result<Self, AppError> {
        Ok(Auth::extract(req).into_inner()?.0)
    }

    fn principal(&self) -> Principal {
        self.clone()
    }
}

impl Caller for AuthUser {
    fn extract(req: &HttpRequest) -> Result<Self, AppError> {
        Ok(UserAuth::extract(req).into_inner()?.0)
    }

    fn principal(&self) -> Principal {
        Principal::User(self.clone())
    }
}

/// One REST call: `Call` for any caller, `Call<AuthUser>` for logged-in users only.
pub struct Call<C = Principal> {
    pub state: web::Data<AppState>,
    pub caller: C,
    pub meta: RequestMeta,
}

impl<C: Caller> FromRequest for Call<C> {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::extract(req))
    }
}

impl<C: Caller> Call<C> {
    fn extract(req: &HttpRequest) -> Result<Self, AppError> {
        let caller = C::extract(req)?;
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("AppState missing")))?;
        let meta = RequestMeta::extract(req).into_inner()?;
        Ok(Self { state, caller, meta })
    }

    /// The caller for the audit log.
    pub fn actor(&self) -> Actor {
        Actor::new(&self.caller.principal(), &self.meta)
    }

    /// A pooled connection and the caller's access to the workspace, holding `permission`
    /// (`None`: membership is enough).
    pub async fn authorized(
        &self,
        workspace_id: Uuid,
        permission: impl Into<Option<Permission>>,
    ) -> AppResult<(DbConn, Access)> {
        authorized(&self.state.pool, &self.caller.principal(), workspace_id, permission).await
    }

    /// An audited change in a workspace: once the caller holds `permission` there, runs
    /// `work` (given the caller's access) in one transaction with the audit row of the
    /// action it returns.
    pub async fn audited<'a, T, F>(
        &'a self,
        workspace_id: Uuid,
        permission: impl Into<Option<Permission>>,
        work: F,
    ) -> AppResult<T>
    where
        F: for<'r> FnOnce(&'r mut AsyncPgConnection, Access) -> ScopedBoxFuture<'a, 'r, AppResult<(Action, T)>>
            + Send
            + 'a,
        T: Send + 'a,
    {
        let (mut conn, access) = self.authorized(workspace_id, permission).await?;
        let actor = self.actor();
        audit::commit(&mut conn, &actor, move |conn| {
            async move { work(conn, access).await }.scope_boxed()
        })
        .await
    }
}

/// A JSON request body (`web::Json` with the app's `JsonConfig`: size limit, content type,
/// error envelope), refused with `validation_failed` when any string in it holds a NUL.
#[derive(Debug)]
pub struct Json<T>(pub T);

/// A JSON body of credentials (a login): like [`Json`], but a NUL anywhere is
/// `invalid_credentials`, as any other wrong email or password.
#[derive(Debug)]
pub struct Credentials<T>(pub T);

/// Reads a JSON body, refusing a NUL with `refusal`, then deserializes it.
async fn json_body<T: DeserializeOwned>(
    req: HttpRequest,
    mut payload: Payload,
    refusal: fn(&str) -> AppError,
) -> Result<T, actix_web::Error> {
    let raw = web::Json::<Box<RawValue>>::from_request(&req, &mut payload)
        .await?
        .into_inner();
    if crate::validate::json_has_nul(raw.get().as_bytes()) {
        return Err(refusal(raw.get()).into());
    }
    serde_json::from_str(raw.get())
        .map_err(|e| AppError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {e}")).into())
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move { json_body(req, payload, crate::validate::nul_in_json).await.map(Json) })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Credentials<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        let refusal = |_: &str| AppError::new(ErrorCode::InvalidCredentials, "wrong email or password");
        Box::pin(async move { json_body(req, payload, refusal).await.map(Credentials) })
    }
}

/// A query string (`web::Query` with the app's `QueryConfig`), refused with
/// `validation_failed` when it decodes to text holding a NUL (`%00`).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if crate::validate::url_has_nul(req.query_string()) {
            let err = AppError::validation("the query string must not contain NUL characters (%00)");
            return ready(Err(err.into()));
        }
        ready(
            web::Query::<T>::from_request(req, payload)
                .into_inner()
                .map(|q| Query(q.into_inner())),
        )
    }
}

/// Path parameters (`web::Path` with the app's `PathConfig`), refused with
/// `validation_failed` when the path decodes to text holding a NUL (`%00`).
#[derive(Debug)]
pub struct Path<T>(T);

impl<T: DeserializeOwned> FromRequest for Path<T> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if crate::validate::url_has_nul(req.uri().path()) {
            let err = AppError::validation("the path must not contain NUL characters (%00)");
            return ready(Err(err.into()));
        }
        ready(
            web::Path::<T>::from_request(req, payload)
                .into_inner()
                .map(|p| Path(p.into_inner())),
        )
    }
}

macro_rules! wrapper {
    ($($name:ident),*) => {$(
        impl<T> $name<T> {
            pub fn into_inner(self) -> T {
                self.0
            }
        }

        impl<T> std::ops::Deref for $name<T> {
            type Target = T;
            fn deref(&self) -> &T {
                &self.0
            }
        }

        impl<T> std::ops::DerefMut for $name<T> {
            fn deref_mut(&mut self) -> &mut T {
                &mut self.0
            }
        }
    )*};
}

wrapper!(Json, Credentials, Query, Path);
