//! This node's lease in the `nodes` table: registration, heartbeat, reaping the leases of
//! dead nodes (their presences go, and everyone is told), and rejoining as a fresh node if
//! this one was paused past its own lease.

use crate::cluster::Hub;
use crate::cluster::bus::Ephemeral;
use crate::db::DbPool;
use crate::db::schema::{nodes, presence};
use crate::error::{AppError, AppResult};
use crate::transport::{Connections, NodeId};
use diesel::dsl::now;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
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
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Renews the lease only if it has not already expired; false means it had.
async fn renew(pool: &DbPool, node_id: Uuid, config: &NodeConfig, connections: i32) -> AppResult<bool> {
    let mut conn = pool.get().await?;
    let renewed = diesel::update(nodes::table.find(node_id).filter(nodes::lease_expires_at.gt(now)))
        .set((
            nodes::lease_expires_at.eq(crate::db::now_plus(config.lease)),
            nodes::heartbeat_at.eq(now),
            nodes::connections.eq(connections),
        ))
        .execute(&mut conn)
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
}

/// Heartbeat loop: renew, reap (every room cleans up after the dead), and handle a lost
/// lease.
pub fn spawn_heartbeat(beat: Heartbeat) {
    tokio::spawn(async move {
        let Heartbeat {
            hub,
            config,
            connections,
            shutting_down,
        } = beat;
        let pool = hub.pool.clone();
        let mut tick = tokio::time::interval(config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if AtomicBool::load(&shutting_down, Ordering::Relaxed) {
                return;
            }
            let node_id = hub.bus.node_id();
            match renew(&pool, node_id.0, &config, connections.count() as i32).await {
                Ok(true) => {}
                Ok(false) => {
                    // We were declared dead (paused past the lease): what we held was
                    // cleaned up by a survivor. Drop our clients (they resume elsewhere or
                    // here) and rejoin as a fresh node, under a new id (so a late "node down"
                    // about the old id cannot touch what the new one holds).
                    connections.close_all(1012, "service restart: node rejoining the cluster");
                    let fresh = hub.bus.new_identity();
                    tracing::error!(old = %node_id, new = %fresh, "lease lost; closed connections and rejoining");
                    if let Err(err) = register(&pool, fresh.0, &config).await {
                        tracing::error!(error = %err, "re-registering the node failed");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
            }
            match reap(&pool).await {
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
