//! What every handler can reach (`web::Data<AppState>`): the pool, the hub of rooms, the
//! node, settings and the foundation services. It names no feature: a feature finds its
//! own room through the hub (`state.hub.get::<LiveSessions>()`).

use crate::auth::hashing::PasswordHashing;
use crate::auth::limits::AuthLimits;
use crate::cluster::node::NodeConfig;
use crate::cluster::{Bus, Hub};
use crate::config::Config;
use crate::db::DbPool;
use crate::mail::Mailer;
use crate::transport::{Connections, WsLimits};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub struct AppState {
    pub pool: DbPool,
    /// The rooms of this node (sessions, artifacts, …) and the bus they share.
    pub hub: Arc<Hub>,
    /// This node on the bus (its id, NOTIFY publishing).
    pub bus: Arc<Bus>,
    pub ws_limits: WsLimits,
    pub allowed_origins: Vec<String>,
    /// Open WebSocket connections on this node.
    pub connections: Arc<Connections>,
    pub node: NodeConfig,
    /// Set when the node is shutting down: background loops stop.
    pub shutting_down: Arc<AtomicBool>,
    pub config: Config,
    /// The Argon2 worker pool (register, login).
    pub passwords: PasswordHashing,
    /// Login and registration budgets, counted in Postgres.
    pub auth_limits: AuthLimits,
    pub mailer: Mailer,
}
