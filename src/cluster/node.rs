//! This node's lease in the `nodes` table: registration, renewal (on a thread and a
//! connection of its own), reaping the leases of dead nodes (their presences go, and
//! everyone is told), and rejoining as a fresh node if this one was paused past its own
//! lease.

use crate::cluster::bus::Ephemeral;
use crate::cluster::{Bus, Hub};
use crate::db::DbPool;
use crate::db::schema::{nodes, presence};
use crate::error::{AppError, AppResult};
use crate::transport::{Connections, NodeId};
use diesel::dsl::now;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// Lease settings of this node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub address: String,
    pub lease: Duration,
    pub heartbeat: Duration,
}

/// Writes this node's row with a fresh lease.
pub async fn register(pool: &DbPool, node_id: Uuid, config: &NodeConfig) -> AppResult<()> {
    let mut conn = pool.get().await?;
    register_on(&mut conn, node_id, config).await
}

async fn register_on(conn: &mut AsyncPgConnection, node_id: Uuid, config: &NodeConfig) -> AppResult<()> {
    diesel::insert_into(nodes::table)
        .values((
            nodes::id.eq(node_id),
            nodes::address.eq(&config.address),
            nodes::lease_expires_at.eq(crate::db::now_plus(config.lease)),
        ))
        .on_conflict(nodes::id)
        .do_update()
        .set((
            nodes::lease_expires_at.eq(crate::db::now_plus(config.lease)),
            nodes::heartbeat_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Renews the lease only if it has not already expired; false means it had.
async fn renew(conn: &mut AsyncPgConnection, node_id: Uuid, config: &NodeConfig, connections: i32) -> AppResult<bool> {
    let renewed = diesel::update(nodes::table.find(node_id).filter(nodes::lease_expires_at.gt(now)))
        .set((
            nodes::lease_expires_at.eq(crate::db::now_plus(config.lease)),
            nodes::heartbeat_at.eq(now),
            nodes::connections.eq(connections),
        ))
        .execute(conn)
        .await?;
    Ok(renewed == 1)
}

/// Removes expired nodes and their presences in one transaction; returns the dead ids.
/// Several survivors may race: the row delete decides who reaps each node.
pub async fn reap(pool: &DbPool) -> AppResult<Vec<Uuid>> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        async move {
            let dead: Vec<Uuid> = diesel::delete(nodes::table.filter(nodes::lease_expires_at.lt(now)))
                .returning(nodes::id)
                .get_results(conn)
                .await?;
            if !dead.is_empty() {
                diesel::delete(presence::table.filter(presence::node_id.eq_any(&dead)))
                    .execute(conn)
                    .await?;
            }
            Ok(dead)
        }
        .await
    })
    .await
}

/// Leaves the cluster on shutdown: presences and the lease go now, not at expiry.
pub async fn leave(pool: &DbPool, node_id: Uuid) -> AppResult<()> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        async move {
            diesel::delete(presence::table.filter(presence::node_id.eq(node_id)))
                .execute(conn)
                .await?;
            diesel::delete(nodes::table.find(node_id)).execute(conn).await?;
            Ok(())
        }
        .await
    })
    .await
}

/// What the heartbeat works with.
pub struct Heartbeat {
    pub hub: Arc<Hub>,
    pub config: NodeConfig,
    pub connections: Arc<Connections>,
    pub shutting_down: Arc<AtomicBool>,
    /// The lease keeper opens its own connection with it (never one from the pool).
    pub database_url: String,
}

/// Starts the heartbeat: the lease keeper on a thread of its own, and the reaper (dead
/// nodes' clean-up, every room's chores) as a task on the server's runtime.
pub fn spawn_heartbeat(beat: Heartbeat) {
    let Heartbeat {
        hub,
        config,
        connections,
        shutting_down,
        database_url,
    } = beat;
    // The keeper ends with the reaper task: at shutdown, or when the server's runtime is
    // gone (an embedded server, a test), so that no thread outlives its server.
    let (reaper_alive, server_gone) = tokio::sync::oneshot::channel::<()>();
    spawn_lease_keeper(LeaseKeeper {
        bus: hub.bus.clone(),
        config: config.clone(),
        connections,
        shutting_down: shutting_down.clone(),
        database_url,
        server_gone,
    });
    tokio::spawn(async move {
        let _alive = reaper_alive;
        let mut tick = tokio::time::interval(config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if AtomicBool::load(&shutting_down, Ordering::Relaxed) {
                return;
            }
            match reap(&hub.pool).await {
                Ok(dead) => {
                    let dead: Vec<NodeId> = dead.into_iter().map(NodeId).collect();
                    hub.reaped(&dead).await;
                    for node in dead {
                        tracing::warn!(dead_node = %node, "node lease expired; removed its presences");
                        hub.node_down(node);
                        hub.bus.ephemeral(Ephemeral::NodeDown { node });
                    }
                }
                Err(err) => tracing::warn!(error = %err, "reaping dead nodes failed"),
            }
            hub.heartbeat().await;
        }
    });
}

/// What renews the lease: nothing it uses is shared with client work.
struct LeaseKeeper {
    bus: Arc<Bus>,
    config: NodeConfig,
    connections: Arc<Connections>,
    shutting_down: Arc<AtomicBool>,
    database_url: String,
    /// Resolves (with an error) when the reaper task has ended.
    server_gone: tokio::sync::oneshot::Receiver<()>,
}

/// Renews the lease on a dedicated OS thread with its own single-threaded runtime and its
/// own Postgres connection (reopened after any failure), so that no amount of client work
/// on the pool or on the server's runtime can delay it past the lease (issue 11).
fn spawn_lease_keeper(keeper: LeaseKeeper) {
    std::thread::Builder::new()
        .name("bedda-lease".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the lease keeper's runtime starts");
            runtime.block_on(keeper.run());
        })
        .expect("the lease keeper's thread starts");
}

impl LeaseKeeper {
    async fn run(mut self) {
        let mut conn: Option<AsyncPgConnection> = None;
        // One attempt may take at most this long; then the connection is dropped and
        // reopened, well before the lease runs out.
        let budget = self.config.heartbeat.max(self.config.lease / 3);
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut self.server_gone => return,
            }
            if AtomicBool::load(&self.shutting_down, Ordering::Relaxed) {
                return;
            }
            let node_id = self.bus.node_id();
            let attempt = tokio::time::timeout(budget, async {
                if conn.is_none() {
                    conn = Some(AsyncPgConnection::establish(&self.database_url).await?);
                }
                let conn = conn.as_mut().expect("opened above");
                renew(conn, node_id.0, &self.config, self.connections.count() as i32)
                    .await
                    .map_err(anyhow::Error::from)
            })
            .await;
            match attempt {
                Ok(Ok(true)) => {}
                // Shutting down deletes the row: that is no lost lease.
                Ok(Ok(false)) if AtomicBool::load(&self.shutting_down, Ordering::Relaxed) => return,
                Ok(Ok(false)) => self.rejoin(node_id, conn.as_mut().expect("just used")).await,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "lease renewal failed; reconnecting");
                    conn = None;
                }
                Err(_) => {
                    tracing::warn!(
                        budget_ms = budget.as_millis() as u64,
                        "lease renewal timed out; reconnecting"
                    );
                    conn = None;
                }
            }
        }
    }

    /// We were declared dead (paused past the lease): what we held was cleaned up by a
    /// survivor. Drop our clients (they resume elsewhere or here) and rejoin as a fresh
    /// node, under a new id (so a late "node down" about the old id cannot touch what the
    /// new one holds).
    async fn rejoin(&self, old: NodeId, conn: &mut AsyncPgConnection) {
        self.connections
            .close_all(1012, "service restart: node rejoining the cluster");
        let fresh = self.bus.new_identity();
        tracing::error!(old = %old, new = %fresh, "lease lost; closed connections and rejoining");
        if let Err(err) = register_on(conn, fresh.0, &self.config).await {
            tracing::error!(error = %err, "re-registering the node failed");
        }
    }
}
