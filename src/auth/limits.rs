//! Cluster-wide limits on logins and registrations, counted in Postgres (`auth_limits`) on
//! the database's clock, and [`Refused`], the answer with a `Retry-After` when one is hit
//! (issue 11, item 5; DECISIONS.md 33).
//!
//! Scopes (rows keyed by `(scope, sha256(key))`, so no email or address is stored in clear):
//! - `login_address` — attempts per client address per minute;
//! - `login_pair` — attempts per (account, address) per minute: an attacker at one address
//!   is slowed without touching the owner's budget at another;
//! - `login_account` — failed logins per account from all addresses per 15 minutes; past
//!   the cap the account backs off exponentially (30 s, 1 min, 2 min, … up to 15 min) for every
//!   address except the *known* ones;
//! - `login_known` — an (account, address) that logged in or registered in the last 30 days;
//! - `register_address` — registrations per client address per hour.

use crate::error::{AppError, ErrorCode};
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use diesel::sql_types::{Bytea, Double, Integer};
use diesel::{QueryResult, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The back-off of an account that just passed its failure cap; each further failure
/// doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// Longest exponential back-off of an account under a spread-out attack.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// A request refused for now: the error, and how long the caller should wait (sent as
/// `Retry-After`; zero sends none).
#[derive(Debug)]
pub struct Refused {
    pub error: AppError,
    pub retry_after: Duration,
}

impl Refused {
    pub fn new(code: ErrorCode, message: impl Into<std::borrow::Cow<'static, str>>, retry_after: Duration) -> Self {
        Self {
            error: AppError::new(code, message),
            retry_after,
        }
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        AppError::internal(source).into()
    }

    fn rate_limited(what: &str, wait_secs: f64) -> Self {
        let retry_after = Duration::from_secs(wait_secs.ceil().max(1.0) as u64);
        let message = format!("{what}; try again in {} s", retry_after.as_secs());
        Self::new(ErrorCode::RateLimited, message, retry_after)
    }
}

impl From<AppError> for Refused {
    fn from(error: AppError) -> Self {
        Self {
            error,
            retry_after: Duration::ZERO,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl ResponseError for Refused {
    fn status_code(&self) -> StatusCode {
        self.error.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = self.error.error_response();
        if !self.retry_after.is_zero() {
            let secs = self.retry_after.as_secs().max(1);
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The configured budgets (flags `--login-rate-per-account`, `--login-rate-per-address`,
/// `--login-account-failures`, `--register-rate-per-address`).
#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    /// Login attempts per (account, address) per minute.
    pub per_pair_per_minute: u32,
    /// Login attempts per address per minute.
    pub per_address_per_minute: u32,
    /// Failed logins per account (all addresses) per 15 minutes before back-off.
    pub account_failures: u32,
    /// Registrations per address per hour.
    pub registrations_per_hour: u32,
}

/// The stored key of a scope: SHA-256 of its parts.
fn key(parts: &[&str]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.finalize().to_vec()
}

/// The keys of one login attempt.
pub struct Attempt {
    address: Vec<u8>,
    pair: Vec<u8>,
    account: Vec<u8>,
}

impl Attempt {
    /// `email` lower-cased; `address` the peer address (`None`: all such callers share one).
    pub fn new(email: &str, address: Option<&str>) -> Self {
        let address = address.unwrap_or("unknown");
        Self {
            address: key(&[address]),
            pair: key(&[email, address]),
            account: key(&[email]),
        }
    }
}

fn limit(n: u32) -> i32 {
    i32::try_from(n.max(1)).unwrap_or(i32::MAX)
}

#[derive(QueryableByName)]
struct LoginWaits {
    #[diesel(sql_type = Double)]
    address_wait: f64,
    #[diesel(sql_type = Double)]
    pair_wait: f64,
    #[diesel(sql_type = Double)]
    account_wait: f64,
}

#[derive(QueryableByName)]
struct Wait {
    #[diesel(sql_type = Double)]
    wait: f64,
}

/// One fixed window per row: a hit in an expired window starts a new one.
const UPSERT_HIT: &str = "ON CONFLICT (scope, key) DO UPDATE SET \
       hits = CASE WHEN l.window_ends <= now() THEN 1 ELSE l.hits + 1 END, \
       window_ends = CASE WHEN l.window_ends <= now() THEN excluded.window_ends ELSE l.window_ends END";

impl AuthLimits {
    /// Counts one login attempt and refuses it when a budget is spent. One statement: it
    /// bumps the address and pair windows and reads the account's back-off, which binds
    /// only when this (account, address) is not a known one.
    pub async fn check_login(&self, conn: &mut AsyncPgConnection, attempt: &Attempt) -> Result<(), Refused> {
        let sql = format!(
            "WITH hit AS ( \
               INSERT INTO auth_limits AS l (scope, key, hits, window_ends) \
               VALUES ('login_address', $1, 1, now() + interval '1 minute'), \
                      ('login_pair', $2, 1, now() + interval '1 minute') \
               {UPSERT_HIT} \
               RETURNING l.scope, l.hits, l.window_ends) \
             SELECT \
               coalesce((SELECT extract(epoch FROM window_ends - now()) FROM hit \
                         WHERE scope = 'login_address' AND hits > $4), 0)::float8 AS address_wait, \
               coalesce((SELECT extract(epoch FROM window_ends - now()) FROM hit \
                         WHERE scope = 'login_pair' AND hits > $5), 0)::float8 AS pair_wait, \
               coalesce((SELECT extract(epoch FROM a.blocked_until - now()) FROM auth_limits a \
                         WHERE a.scope = 'login_account' AND a.key = $3 AND a.blocked_until > now() \
                           AND NOT EXISTS (SELECT 1 FROM auth_limits k WHERE k.scope = 'login_known' \
                                           AND k.key = $2 AND k.window_ends > now())), 0)::float8 AS account_wait"
        );
        let waits: LoginWaits = diesel::sql_query(sql)
            .bind::<Bytea, _>(&attempt.address)
            .bind::<Bytea, _>(&attempt.pair)
            .bind::<Bytea, _>(&attempt.account)
            .bind::<Integer, _>(limit(self.per_address_per_minute))
            .bind::<Integer, _>(limit(self.per_pair_per_minute))
            .get_result(conn)
            .await
            .map_err(AppError::from)?;
        if waits.address_wait > 0.0 {
            return Err(Refused::rate_limited(
                "too many login attempts from this address",
                waits.address_wait,
            ));
        }
        if waits.pair_wait > 0.0 {
            return Err(Refused::rate_limited(
                "too many login attempts for this account",
                waits.pair_wait,
            ));
        }
        if waits.account_wait > 0.0 {
            return Err(Refused::rate_limited(
                "too many failed logins for this account; a device that logged in before may still log in",
                waits.account_wait,
            ));
        }
        Ok(())
    }

    /// Records a failed login against the account; past `account_failures` in the window,
    /// the account backs off for [`FIRST_BACKOFF`] × 2^(failures over the cap − 1), up to
    /// [`MAX_BACKOFF`], and the window stays open while failures go on.
    pub async fn login_failed(&self, conn: &mut AsyncPgConnection, attempt: &Attempt) -> QueryResult<()> {
        diesel::sql_query(
            "INSERT INTO auth_limits AS l (scope, key, hits, window_ends) \
             VALUES ('login_account', $1, 1, now() + interval '15 minutes') \
             ON CONFLICT (scope, key) DO UPDATE SET \
               hits = CASE WHEN l.window_ends <= now() THEN 1 ELSE l.hits + 1 END, \
               window_ends = CASE WHEN l.window_ends <= now() OR l.hits + 1 > $2 \
                             THEN excluded.window_ends ELSE l.window_ends END, \
               blocked_until = CASE WHEN l.window_ends > now() AND l.hits + 1 > $2 \
                               THEN now() + make_interval(secs => least($3, $4 * power(2::float8, least(l.hits - $2, 30)))) \
                               ELSE l.blocked_until END",
        )
        .bind::<Bytea, _>(&attempt.account)
        .bind::<Integer, _>(limit(self.account_failures))
        .bind::<Double, _>(MAX_BACKOFF.as_secs_f64())
        .bind::<Double, _>(FIRST_BACKOFF.as_secs_f64())
        .execute(conn)
        .await
        .map(|_| ())
    }

    /// Records a successful login (or a registration): the (account, address) becomes known
    /// for 30 days and its attempt window starts afresh.
    pub async fn login_succeeded(&self, conn: &mut AsyncPgConnection, attempt: &Attempt) -> QueryResult<()> {
        diesel::sql_query(
            "WITH forget AS (DELETE FROM auth_limits WHERE scope = 'login_pair' AND key = $1) \
             INSERT INTO auth_limits (scope, key, hits, window_ends) \
             VALUES ('login_known', $1, 0, now() + interval '30 days') \
             ON CONFLICT (scope, key) DO UPDATE SET window_ends = excluded.window_ends",
        )
        .bind::<Bytea, _>(&attempt.pair)
        .execute(conn)
        .await
        .map(|_| ())
    }

    /// Counts one registration from `address` and refuses it past the hourly budget.
    pub async fn check_registration(&self, conn: &mut AsyncPgConnection, address: Option<&str>) -> Result<(), Refused> {
        let sql = format!(
            "INSERT INTO auth_limits AS l (scope, key, hits, window_ends) \
             VALUES ('register_address', $1, 1, now() + interval '1 hour') \
             {UPSERT_HIT} \
             RETURNING (CASE WHEN l.hits > $2 THEN extract(epoch FROM l.window_ends - now()) ELSE 0 END)::float8 AS wait"
        );
        let row: Wait = diesel::sql_query(sql)
            .bind::<Bytea, _>(key(&[address.unwrap_or("unknown")]))
            .bind::<Integer, _>(limit(self.registrations_per_hour))
            .get_result(conn)
            .await
            .map_err(AppError::from)?;
        if row.wait > 0.0 {
            return Err(Refused::rate_limited(
                "too many registrations from this address",
                row.wait,
            ));
        }
        Ok(())
    }
}

/// Deletes rows whose window and back-off are over; returns how many went. Called by each
/// node's housekeeping every few minutes (cheap when there is little to do; any node may).
pub async fn prune(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM auth_limits WHERE window_ends < now() \
         AND (blocked_until IS NULL OR blocked_until < now())",
    )
    .execute(conn)
    .await
}
