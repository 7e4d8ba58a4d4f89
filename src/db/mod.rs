//! Database access: the connection pool, creating the database, embedded migrations.

pub mod schema;

use crate::error::{AppError, AppResult};
use anyhow::{Context, anyhow};
use diesel_async::methods::LoadQuery;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

/// Builds the pool. Connections are opened lazily. A checkout waits at most
/// `checkout_timeout` (then `service_unavailable`), and so does opening a connection: a
/// node never hangs on its pool.
pub fn pool(database_url: &str, size: usize, checkout_timeout: std::time::Duration) -> anyhow::Result<DbPool> {
    // No ping on every checkout: that is a round trip on every request and every group
    // commit. A broken connection is still detected (and replaced) by the fast check.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(checkout_timeout))
        .create_timeout(Some(checkout_timeout))
        .build()
        .context("building the database pool")
}

/// `now() + after`, by the database's clock: leases, claims and expiries that other nodes
/// compare are judged by one clock, so skew between hosts cannot move them. (The interval
/// is a whole number of milliseconds formatted into the SQL: no input reaches it as text.)
pub fn now_plus(after: std::time::Duration) -> diesel::expression::SqlLiteral<diesel::sql_types::Timestamptz> {
    diesel::dsl::sql(&format!("now() + interval '{} milliseconds'", after.as_millis()))
}

/// Whether `query` finds any row.
pub async fn exists<Q>(conn: &mut AsyncPgConnection, query: Q) -> AppResult<bool>
where
    diesel::dsl::exists<Q>: diesel::Expression,
    diesel::dsl::select<diesel::dsl::exists<Q>>:
        diesel::query_builder::AsQuery + for<'q> LoadQuery<'q, AsyncPgConnection, bool> + Send,
{
    Ok(diesel::select(diesel::dsl::exists(query)).get_result(conn).await?)
}

/// `Err(not_found())` when a write touched no row: what it names is not there (or not in
/// the state the write needs).
pub fn touched(rows: usize, not_found: impl FnOnce() -> AppError) -> AppResult<()> {
    if rows == 0 { Err(not_found()) } else { Ok(()) }
}

/// Splits a Postgres URL into (URL of the `postgres` maintenance database, database name).
pub fn split_database_url(database_url: &str) -> anyhow::Result<(String, String)> {
    let mut url = url::Url::parse(database_url).context("DATABASE_URL is not a valid URL")?;
    let name = url.path().trim_start_matches('/').to_owned();
    if name.is_empty() {
        return Err(anyhow!("DATABASE_URL names no database"));
    }
    url.set_path("/postgres");
    Ok((url.to_string(), name))
}

/// The URL with any password removed, safe to print.
pub fn redact_url(database_url: &str) -> String {
    match url::Url::parse(database_url) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "<unparseable DATABASE_URL>".to_owned(),
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connects to the maintenance database with tokio-postgres (no TLS), driving the
/// connection on a background task.
pub async fn admin_client(admin_url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "maintenance connection closed");
        }
    });
    Ok(client)
}

/// Creates the database named in `database_url` if it does not exist yet.
pub async fn ensure_database(database_url: &str) -> anyhow::Result<()> {
    let (admin_url, name) = split_database_url(database_url)?;
    let client = admin_client(&admin_url).await.map_err(|err| {
        anyhow!(
            "cannot reach Postgres at {} ({}); start Postgres or set DATABASE_URL / --database-url",
            redact_url(database_url),
            err
        )
    })?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        match client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
        {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another node created it at the same moment (Postgres reports either code).
            Err(err)
                if err.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                    || err.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {}
            Err(err) => return Err(err).context("creating the database"),
        }
    }
    Ok(())
}

/// Runs the embedded migrations that have not run yet.
pub async fn run_migrations(database_url: &str) -> anyhow::Result<()> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
        let mut conn: AsyncConnectionWrapper<AsyncPgConnection> =
            AsyncConnectionWrapper::establish(&url).context("connecting to run migrations")?;
        // Nodes starting together migrate one at a time (session-level lock, released
        // when this connection closes).
        conn.batch_execute("SELECT pg_advisory_lock(72176)")
            .context("taking the migration lock")?;
        let applied: Vec<String> = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|err| anyhow!("running migrations: {err}"))?
            .into_iter()
            .map(|m| m.to_string())
            .collect();
        conn.batch_execute("SELECT pg_advisory_unlock(72176)")
            .context("releasing the migration lock")?;
        for migration in applied {
            tracing::info!(%migration, "applied migration");
        }
        Ok(())
    })
    .await
    .context("migration task panicked")?
}
