//! What REST handlers share: [`Call`], what a handler starts from — the server state, the
//! authenticated caller and where the request came from, extracted as one argument (the
//! caller first, so an unauthenticated request fails before anything else is looked at) —
//! and [`Reply`], what it returns.

use crate::audit::{self, Action, Actor};
use crate::auth::{Access, Auth, AuthUser, Permission, Principal, RequestMeta, UserAuth, authorized};
use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use diesel_async::AsyncPgConnection;
use scoped_futures::{ScopedBoxFuture, ScopedFutureExt};
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
