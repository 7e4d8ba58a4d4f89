//! Builds the server: shared state, routes, middleware, input-error handlers, health checks.

use crate::artifacts::registry::Editors;
use crate::artifacts::{handlers as artifacts, versions};
use crate::auth::handlers as account;
use crate::auth::principal::authenticate;
use crate::auth::rate_limit::LoginLimits;
use crate::auth::secrets::PasswordHashing;
use crate::cluster::node::NodeConfig;
use crate::cluster::{Bus, node};
use crate::config::Config;
use crate::db::{self, DbPool};
use crate::error::{AppError, ErrorCode};
use crate::gateway::connection::WsLimits;
use crate::gateway::registry::Connections;
use crate::mail::Mailer;
use crate::openapi;
use crate::sessions::handlers as sessions;
use crate::sessions::live::LiveConfig;
use crate::sessions::registry::LiveSessions;
use crate::workspaces::{api_tokens, handlers as ws, invitations, members};
use actix_web::dev::Server;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::middleware::{Logger, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// Largest JSON body accepted.
pub const JSON_LIMIT: usize = 64 * 1024;

/// State every handler can reach.
pub struct AppState {
    pub pool: DbPool,
    /// The session actors running on this node.
    pub live: Arc<LiveSessions>,
    /// The artifact editors running on this node.
    pub editors: Arc<Editors>,
    pub ws_limits: WsLimits,
    pub allowed_origins: Vec<String>,
    /// Open WebSocket connections on this node.
    pub connections: Connections,
    /// This node on the bus (its id, NOTIFY publishing).
    pub bus: Arc<Bus>,
    pub node: NodeConfig,
    /// Set when the node is shutting down: background loops stop.
    pub shutting_down: AtomicBool,
    pub config: Config,
    pub passwords: PasswordHashing,
    pub login_limits: LoginLimits,
    pub mailer: Mailer,
}

/// A built server, bound and ready to run.
pub struct Application {
    pub port: u16,
    pub server: Server,
    pub state: web::Data<AppState>,
}

impl Application {
    /// Creates and migrates the database, binds the listener and builds the server.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        db::ensure_database(&config.database_url).await?;
        db::run_migrations(&config.database_url).await?;
        let pool = db::pool(&config.database_url, config.database_pool_size)?;
        let mailer = Mailer::new(config.smtp_url.is_some());
        if let Some(smtp_url) = &config.smtp_url {
            mailer.spawn_worker(
                pool.clone(),
                smtp_url.clone(),
                config.smtp_from.clone(),
                Duration::from_millis(config.outbox_poll_ms),
            )?;
        }
        let listener = TcpListener::bind(config.bind)?;
        let port = listener.local_addr()?.port();
        let node_config = NodeConfig {
            address: config
                .advertise_url
                .clone()
                .unwrap_or_else(|| format!("http://{}:{port}", config.bind.ip())),
            lease: Duration::from_millis(config.node_lease_ms),
            heartbeat: Duration::from_millis(config.node_heartbeat_ms),
        };
        let bus = Arc::new(Bus::start(
            Uuid::new_v4(),
            pool.clone(),
            Duration::from_millis(config.bus_tick_ms),
        ));
        node::register(&pool, bus.node_id(), &node_config).await?;
        let ai = Arc::new(crate::ai::build(&config));
        let live = LiveSessions::new(
            pool.clone(),
            bus.clone(),
            ai,
            LiveConfig {
                idle_timeout: Duration::from_millis(config.session_idle_ms),
                typing_ttl: Duration::from_millis(config.typing_ttl_ms),
                typing_throttle: Duration::from_millis(config.typing_ttl_ms * 2 / 5),
                ..LiveConfig::default()
            },
        );
        let editors = Editors::new(pool.clone(), bus.clone(), Duration::from_millis(config.session_idle_ms));
        let ws_limits = WsLimits {
            heartbeat_interval: Duration::from_millis(config.ws_heartbeat_ms),
            client_timeout: Duration::from_millis(config.ws_client_timeout_ms),
            max_frame_bytes: config.ws_max_frame_bytes,
            outbound_buffer_bytes: config.ws_outbound_buffer_bytes,
            frames_per_second: config.ws_frames_per_second,
        };
        let allowed_origins = if config.allowed_origins.is_empty() {
            vec![url::Url::parse(&config.public_url)?.origin().ascii_serialization()]
        } else {
            config.allowed_origins.clone()
        };
        let state = web::Data::new(AppState {
            pool,
            live,
            editors,
            ws_limits,
            allowed_origins,
            connections: Connections::default(),
            bus,
            node: node_config,
            shutting_down: AtomicBool::new(false),
            passwords: PasswordHashing::new(config.argon2_memory_kib)?,
            login_limits: LoginLimits::new(config.login_rate_per_account, config.login_rate_per_address),
            mailer,
            config,
        });
        spawn_housekeeping(state.clone().into_inner());
        node::spawn_heartbeat(state.clone().into_inner());
        crate::cluster::listener::spawn(state.clone().into_inner());
        tracing::info!(node = %state.bus.node_id(), address = %state.node.address, "node joined the cluster");

        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(json_config())
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .wrap(Logger::new("%a \"%r\" %s %b %Dms").exclude("/healthz"))
                .configure(routes)
                .default_service(web::to(not_found))
        })
        // Real-time frames are small: don't let Nagle's algorithm hold them back.
        .tcp_nodelay(true)
        .listen(listener)?
        .shutdown_timeout(5)
        .disable_signals()
        .run();
        Ok(Self { port, server, state })
    }
}

impl AppState {
    /// Leaves the cluster gracefully: clients are told to move (1012 service restart),
    /// presences and the lease are released now rather than at lease expiry.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        self.connections.close_all(1012, "service restart: reconnect");
        node::interrupt_replies(self, &[self.bus.node_id()]).await;
        if let Err(err) = node::leave(&self.pool, self.bus.node_id()).await {
            tracing::warn!(error = %err, "leaving the cluster cleanly failed; the lease will expire");
        }
        self.bus.ephemeral(crate::cluster::Ephemeral::NodeDown {
            node: self.bus.node_id(),
        });
        // Give the close frames and the last NOTIFY a moment to go out.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every route of the server.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(dashboard))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/ws", web::get().to(crate::gateway::connect))
        .route("/ws/artifacts/{id}", web::get().to(crate::artifacts::socket::connect))
        .route("/api/openapi.json", web::get().to(openapi::openapi_json))
        .service(openapi::scalar())
        .service(
            web::scope("/api")
                .wrap(from_fn(authenticate))
                .service(account::register)
                .service(account::login)
                .service(account::logout)
                .service(account::me)
                .service(ws::get_catalogue)
                .service(ws::create_workspace)
                .service(ws::list_workspaces)
                .service(ws::get_workspace)
                .service(ws::update_workspace)
                .service(ws::delete_workspace)
                .service(members::list_members)
                .service(members::update_member)
                .service(members::set_member_permissions)
                .service(members::remove_member)
                .service(members::leave_workspace)
                .service(invitations::create_invitation)
                .service(invitations::list_invitations)
                .service(invitations::revoke_invitation)
                .service(invitations::accept_invitation)
                .service(api_tokens::create_api_token)
                .service(api_tokens::list_api_tokens)
                .service(api_tokens::revoke_api_token)
                .service(crate::audit::list_audit)
                .service(crate::gateway::tickets::create_ticket)
                .service(sessions::create_session)
                .service(sessions::list_sessions)
                .service(sessions::get_session)
                .service(sessions::update_session)
                .service(sessions::archive_session)
                .service(sessions::unarchive_session)
                .service(sessions::list_participants)
                .service(sessions::add_participant)
                .service(sessions::remove_participant)
                .service(sessions::list_messages)
                .service(crate::cluster::admin::list_nodes)
                .service(crate::ai::handlers::list_models)
                .service(crate::ai::handlers::workspace_usage)
                .service(artifacts::create_artifact)
                .service(artifacts::list_artifacts)
                .service(artifacts::get_artifact)
                .service(artifacts::rename_artifact)
                .service(artifacts::delete_artifact)
                .service(artifacts::create_connect_token)
                .service(versions::save_version)
                .service(versions::list_versions)
                .service(versions::get_version)
                .service(versions::diff_versions)
                .service(versions::revert_version)
                .service(versions::create_branch)
                .service(versions::merge_branch),
        );
}

fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(JSON_LIMIT).error_handler(|err, _req| {
        let app = match &err {
            JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => AppError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body must be at most {JSON_LIMIT} bytes"),
            ),
            JsonPayloadError::ContentType => {
                AppError::new(ErrorCode::InvalidJson, "expected `Content-Type: application/json`")
            }
            JsonPayloadError::Deserialize(e) => {
                AppError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {e}"))
            }
            other => AppError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {other}")),
        };
        app.into()
    })
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    AppError::new(ErrorCode::InvalidQuery, format!("invalid query string: {err}")).into()
}

fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let PathError::Deserialize(e) = &err else {
        return AppError::new(ErrorCode::InvalidPath, "invalid path").into();
    };
    AppError::new(ErrorCode::InvalidPath, format!("invalid path parameter: {e}")).into()
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::new(
        ErrorCode::RouteNotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

/// `GET /` — the operator dashboard (`static/index.html`, built into the binary).
async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../static/index.html"))
}

/// `GET /healthz` — the process is alive.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz` — the database answers.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    use diesel_async::RunQueryDsl;
    let check = async {
        let mut conn = state.pool.get().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok::<_, AppError>(())
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))),
        Ok(Err(err)) => Err(AppError {
            code: ErrorCode::ServiceUnavailable,
            ..err
        }),
        Err(_) => Err(AppError::new(
            ErrorCode::ServiceUnavailable,
            "database did not answer in time",
        )),
    }
}

/// Periodic clean-up: expired login sessions, idle rate-limit keys.
fn spawn_housekeeping(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            state.login_limits.shrink();
            if let Ok(mut conn) = state.pool.get().await {
                use crate::db::schema::user_sessions;
                use diesel::prelude::*;
                use diesel_async::RunQueryDsl;
                let _ = diesel::delete(user_sessions::table.filter(user_sessions::expires_at.lt(chrono::Utc::now())))
                    .execute(&mut conn)
                    .await;
            }
        }
    });
}
