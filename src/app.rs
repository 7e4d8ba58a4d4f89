//! Builds the server: the features (their routes and rooms), the shared state, middleware,
//! input-error handlers, health checks. The only module that names every feature.

use crate::auth::hashing::{HashingConfig, PasswordHashing};
use crate::auth::limits::AuthLimits;
use crate::auth::principal::authenticate;
use crate::cluster::node::{self, Heartbeat, NodeConfig};
use crate::cluster::{Bus, Hub};
use crate::config::Config;
use crate::db;
use crate::error::{AppError, ErrorCode};
use crate::feature::{Feature, RoomContext};
use crate::mail::Mailer;
use crate::openapi;
use crate::state::AppState;
use crate::transport::{Connections, NodeId, WsLimits};
use crate::{admin, ai, artifacts, audit, auth, gateway, proposals, sessions, workspaces};
use actix_web::dev::Server;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::middleware::{Logger, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Largest JSON body accepted.
pub const JSON_LIMIT: usize = 64 * 1024;

/// Every feature of the server, each registered once: its routes (with their OpenAPI
/// paths) and its room.
pub const FEATURES: &[Feature] = &[
    auth::FEATURE,
    workspaces::FEATURE,
    audit::FEATURE,
    gateway::FEATURE,
    sessions::FEATURE,
    ai::FEATURE,
    artifacts::FEATURE,
    proposals::FEATURE,
    admin::FEATURE,
];

/// Every `/api` route of every feature.
fn api_routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    for feature in FEATURES {
        (feature.api)(cfg);
    }
}

/// Routes outside `/api` (WebSocket endpoints), from every feature.
fn public_routes(cfg: &mut web::ServiceConfig) {
    for feature in FEATURES {
        (feature.public)(cfg);
    }
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
        // Bind first: a port in use should fail fast and say which flag to change.
        let listener = TcpListener::bind(config.bind).with_context(|| {
            format!(
                "cannot listen on {}: choose another address with --bind (BIND)",
                config.bind
            )
        })?;
        db::ensure_database(&config.database_url).await?;
        db::run_migrations(&config.database_url).await?;
        let pool = db::pool(
            &config.database_url,
            config.database_pool_size,
            Duration::from_millis(config.database_checkout_timeout_ms),
        )?;
        let mailer = Mailer::new(config.smtp_url.is_some());
        if let Some(smtp_url) = &config.smtp_url {
            mailer.spawn_worker(
                pool.clone(),
                smtp_url.clone(),
                config.smtp_from.clone(),
                Duration::from_millis(config.outbox_poll_ms),
            )?;
        }
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
            NodeId::new(),
            pool.clone(),
            Duration::from_millis(config.bus_tick_ms),
        ));
        node::register(&pool, bus.node_id().0, &node_config).await?;
        let mut failed = None;
        let hub = Arc::new_cyclic(|weak| {
            let mut hub = Hub::new(pool.clone(), bus.clone());
            let context = RoomContext {
                hub: weak.clone(),
                pool: &pool,
                bus: &bus,
                config: &config,
            };
            for build in FEATURES.iter().filter_map(|f| f.room) {
                match build(&context) {
                    Ok(room) => hub.register(room),
                    Err(err) => failed = Some(err),
                }
            }
            hub
        });
        if let Some(err) = failed {
            return Err(err);
        }
        let ws_limits = WsLimits {
            heartbeat_interval: Duration::from_millis(config.ws_heartbeat_ms),
            client_timeout: Duration::from_millis(config.ws_client_timeout_ms),
            max_frame_bytes: config.ws_max_frame_bytes,
            outbound_buffer_bytes: config.ws_outbound_buffer_bytes,
            frames_per_second: config.ws_frames_per_second,
        };
        let allowed_origins = if config.allowed_origins.is_empty() {
            crate::gateway::default_origins(&config.public_url)?
        } else {
            config.allowed_origins.clone()
        };
        let state = web::Data::new(AppState {
            pool,
            hub,
            ws_limits,
            allowed_origins,
            connections: Arc::new(Connections::default()),
            bus,
            node: node_config,
            shutting_down: Arc::new(AtomicBool::new(false)),
            passwords: PasswordHashing::new(HashingConfig {
                memory_kib: config.argon2_memory_kib,
                workers: config.password_hash_workers,
                queue: config.password_hash_queue,
            })?,
            auth_limits: AuthLimits {
                per_pair_per_minute: config.login_rate_per_account,
                per_address_per_minute: config.login_rate_per_address,
                account_failures: config.login_account_failures,
                registrations_per_hour: config.register_rate_per_address,
            },
            mailer,
            config,
        });
        crate::janitor::spawn(state.pool.clone(), state.config.clone(), state.shutting_down.clone());
        node::spawn_heartbeat(Heartbeat {
            hub: state.hub.clone(),
            config: state.node.clone(),
            connections: state.connections.clone(),
            shutting_down: state.shutting_down.clone(),
            database_url: state.config.database_url.clone(),
        });
        crate::cluster::listener::spawn(
            state.hub.clone(),
            state.config.database_url.clone(),
            state.shutting_down.clone(),
        );
        tracing::info!(node = %state.bus.node_id(), address = %state.node.address, "node joined the cluster");

        let data = state.clone();
        let api_doc = openapi::document(utoipa_actix_web::scope("/api").configure(api_routes));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(json_config())
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                // `%r` would log connect tokens and tickets from query strings.
                .wrap(
                    Logger::new("%a \"%{request}xi\" %s %b %Dms")
                        .custom_request_replace("request", crate::redact::request_line)
                        .exclude("/healthz"),
                )
                .route("/", web::get().to(dashboard))
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .configure(public_routes)
                .configure(|cfg| openapi::serve(cfg, api_doc.clone()))
                .service(
                    utoipa_actix_web::scope("/api")
                        .wrap(from_fn(authenticate))
                        .configure(api_routes),
                )
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
        // The lease goes first: after it, no reply can start here (a start takes its request
        // only under a valid lease), so none is left streaming behind the interrupt below.
        if let Err(err) = node::leave(&self.pool, self.bus.node_id().0).await {
            tracing::warn!(error = %err, "leaving the cluster cleanly failed; the lease will expire");
        }
        self.hub.reaped(&[self.bus.node_id()]).await;
        self.bus.ephemeral(crate::cluster::Ephemeral::NodeDown {
            node: self.bus.node_id(),
        });
        // Give the close frames and the last NOTIFY a moment to go out.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
