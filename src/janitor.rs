//! The cluster's janitor: every node wakes every `--janitor-interval-ms`, but a pass runs on
//! one node at a time, under a Postgres advisory lock; the others skip it. A pass deletes
//! what nobody can use any more (expired connect tickets, artifact tokens and login
//! sessions; sent mail older than `--outbox-retention-hours`; spent login and registration
//! limit windows). Adding a prune is one line
//! in [`PRUNES`].

use crate::config::Config;
use crate::db::DbPool;
use crate::db::schema::{artifact_tokens, connect_tickets, email_outbox, user_sessions};
use crate::error::{AppError, AppResult};
use diesel::dsl::{now, sql};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The advisory lock a pass holds ("janitor" in ASCII): one pass in the cluster at a time.
pub const LOCK_KEY: i64 = 0x006a_616e_6974_6f72;

/// One prune: deletes what it owns in the pass's transaction; returns how many rows went.
pub type Prune = for<'c> fn(&'c mut AsyncPgConnection, &'c Config) -> BoxFuture<'c, AppResult<usize>>;

/// Every prune of a pass, by name (the name is what the pass reports). A new one is a line.
pub const PRUNES: &[(&str, Prune)] = &[
    ("connect_tickets", |conn, _| Box::pin(expired_tickets(conn))),
    ("artifact_tokens", |conn, _| Box::pin(expired_artifact_tokens(conn))),
    ("user_sessions", |conn, _| Box::pin(expired_sessions(conn))),
    ("email_outbox", |conn, config| {
        Box::pin(sent_mail(conn, config.outbox_retention_hours))
    }),
    ("auth_limits", |conn, _| {
        Box::pin(async move { Ok(crate::auth::limits::prune(conn).await?) })
    }),
];

async fn expired_tickets(conn: &mut AsyncPgConnection) -> AppResult<usize> {
    let expired = connect_tickets::table.filter(connect_tickets::expires_at.lt(now));
    Ok(diesel::delete(expired).execute(conn).await?)
}

async fn expired_artifact_tokens(conn: &mut AsyncPgConnection) -> AppResult<usize> {
    let expired = artifact_tokens::table.filter(artifact_tokens::expires_at.lt(now));
    Ok(diesel::delete(expired).execute(conn).await?)
}

/// Expired login sessions (their tickets and artifact tokens go with them).
async fn expired_sessions(conn: &mut AsyncPgConnection) -> AppResult<usize> {
    let expired = user_sessions::table.filter(user_sessions::expires_at.lt(now));
    Ok(diesel::delete(expired).execute(conn).await?)
}

/// Mail sent longer ago than the retention (its body was scrubbed when it was sent).
async fn sent_mail(conn: &mut AsyncPgConnection, retention_hours: u64) -> AppResult<usize> {
    let before = sql::<Nullable<Timestamptz>>(&format!("now() - interval '{retention_hours} hours'"));
    let old = email_outbox::table.filter(email_outbox::sent_at.lt(before));
    Ok(diesel::delete(old).execute(conn).await?)
}

/// Runs one pass unless another node is running one: `None` then, else how many rows each
/// prune deleted. One transaction: the lock is released at its end, whatever happens.
pub async fn run_once(pool: &DbPool, config: &Config) -> AppResult<Option<Vec<(&'static str, usize)>>> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let locked: bool = diesel::select(sql::<Bool>(&format!("pg_try_advisory_xact_lock({LOCK_KEY})")))
            .get_result(conn)
            .await?;
        if !locked {
            return Ok(None);
        }
        let mut counts = Vec::with_capacity(PRUNES.len());
        for (name, prune) in PRUNES {
            counts.push((*name, prune(conn, config).await?));
        }
        Ok(Some(counts))
    })
    .await
}

/// Starts the janitor loop on this node (like the heartbeat, a background task); it stops
/// when the node shuts down.
pub fn spawn(pool: DbPool, config: Config, shutting_down: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(config.janitor_interval_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if AtomicBool::load(&shutting_down, Ordering::Relaxed) {
                return;
            }
            match run_once(&pool, &config).await {
                Ok(Some(counts)) if counts.iter().any(|(_, n)| *n > 0) => {
                    tracing::info!(?counts, "janitor pass");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "janitor pass failed; retrying at the next interval"),
            }
        }
    });
}
