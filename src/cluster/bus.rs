//! Publishing on the bus. Durable events: one NOTIFY on `collab_events` in the same
//! transaction as the event rows (delivered at commit, never on rollback), inline when
//! small, a seq range to read from the log when not. Ephemeral traffic (typing, presence,
//! node-down, access changes): queued and sent on `collab_ephemeral` once per tick, so
//! many small signals cost one notifying commit.

use crate::db::DbPool;
use crate::error::AppResult;
use crate::events::Event;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

pub const EVENTS_CHANNEL: &str = "collab_events";
pub const EPHEMERAL_CHANNEL: &str = "collab_ephemeral";
/// Postgres refuses NOTIFY payloads of 8000 bytes or more; stay clear of it.
pub const MAX_PAYLOAD: usize = 7900;

/// A durable-event doorbell.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventsNotice {
    pub node: Uuid,
    pub topic: String,
    /// The events themselves, when they fit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// Otherwise the inclusive seq range to read from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<(i64, i64)>,
}

/// One piece of ephemeral traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ephemeral {
    Typing {
        session: Uuid,
        user: Uuid,
        typing: bool,
    },
    /// A user's presence in a session through one node; `None` = gone from that node.
    Presence {
        session: Uuid,
        user: Uuid,
        node: Uuid,
        state: Option<PresenceState>,
    },
    /// A node is gone (its lease expired or it shut down): drop what it held.
    NodeDown {
        node: Uuid,
    },
    /// A member's standing in a workspace changed (`user` None = everyone's).
    Access {
        workspace: Uuid,
        user: Option<Uuid>,
    },
    /// A session's visibility or participants changed.
    SessionAccess {
        session: Uuid,
        user: Option<Uuid>,
    },
    /// A coalesced piece of an AI reply (offset in UTF-16 code units).
    AiChunk {
        session: Uuid,
        message_id: Uuid,
        offset: usize,
        text: String,
        model: String,
    },
    /// Stop an AI reply (the node generating it acts).
    StopGeneration {
        session: Uuid,
        message_id: Uuid,
    },
    /// A y-websocket awareness update (cursors, names) for an artifact, base64.
    Awareness {
        artifact: Uuid,
        node: Uuid,
        update: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceState {
    pub display_name: String,
    pub status: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EphemeralNotice {
    pub node: Uuid,
    pub items: Vec<Ephemeral>,
}

/// This node's handle on the bus.
pub struct Bus {
    /// The node's identity; replaced when the node rejoins after losing its lease.
    node_id: Arc<RwLock<Uuid>>,
    ephemeral: mpsc::UnboundedSender<(Ephemeral, bool)>,
}

impl Bus {
    /// Starts the ephemeral sender (one NOTIFY per `tick` at most).
    pub fn start(node_id: Uuid, pool: DbPool, tick: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let node_id = Arc::new(RwLock::new(node_id));
        tokio::spawn(ephemeral_sender(node_id.clone(), pool, tick, rx));
        Self { node_id, ephemeral: tx }
    }

    /// This node's current id.
    pub fn node_id(&self) -> Uuid {
        *self.node_id.read().expect("node id lock")
    }

    /// Takes a new identity (rejoining as a fresh node); returns it.
    pub fn new_identity(&self) -> Uuid {
        let id = Uuid::new_v4();
        *self.node_id.write().expect("node id lock") = id;
        id
    }

    /// Queues ephemeral traffic for the next tick.
    pub fn ephemeral(&self, item: Ephemeral) {
        let _ = self.ephemeral.send((item, false));
    }

    /// Sends ephemeral traffic without waiting for the tick (it was coalesced already, and
    /// latency matters: AI reply chunks).
    pub fn ephemeral_now(&self, item: Ephemeral) {
        let _ = self.ephemeral.send((item, true));
    }

    /// Rings the doorbell for committed-with-this-transaction events of one topic. Call it
    /// once per transaction, after the event rows are written.
    pub async fn notify_events(&self, conn: &mut AsyncPgConnection, topic: &str, events: &[Event]) -> AppResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut notice = EventsNotice {
            node: self.node_id(),
            topic: topic.to_owned(),
            events: events.to_vec(),
            range: None,
        };
        let mut payload = serde_json::to_string(&notice).map_err(crate::error::AppError::internal)?;
        if payload.len() > MAX_PAYLOAD {
            let first = events.iter().map(|e| e.seq).min().unwrap_or(0);
            let last = events.iter().map(|e| e.seq).max().unwrap_or(0);
            notice.events.clear();
            notice.range = Some((first, last));
            payload = serde_json::to_string(&notice).map_err(crate::error::AppError::internal)?;
        }
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(EVENTS_CHANNEL)
            .bind::<Text, _>(payload)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Packs queued items into payloads under the limit.
pub fn pack(node: Uuid, items: Vec<Ephemeral>) -> Vec<String> {
    let mut out = Vec::new();
    let mut batch: Vec<Ephemeral> = Vec::new();
    let encode = |items: &[Ephemeral]| {
        serde_json::to_string(&EphemeralNotice {
            node,
            items: items.to_vec(),
        })
        .unwrap_or_default()
    };
    for item in items {
        batch.push(item);
        if encode(&batch).len() > MAX_PAYLOAD {
            let last = batch.pop().expect("just pushed");
            if !batch.is_empty() {
                out.push(encode(&batch));
            }
            batch = vec![last];
        }
    }
    if !batch.is_empty() {
        out.push(encode(&batch));
    }
    out
}

async fn ephemeral_sender(
    node: Arc<RwLock<Uuid>>,
    pool: DbPool,
    tick: Duration,
    mut rx: mpsc::UnboundedReceiver<(Ephemeral, bool)>,
) {
    while let Some((first, urgent)) = rx.recv().await {
        // Let the tick's worth of traffic gather, then send it together.
        if !urgent {
            tokio::time::sleep(tick).await;
        }
        let mut items = vec![first];
        while let Ok((item, _)) = rx.try_recv() {
            items.push(item);
        }
        let payloads = pack(*node.read().expect("node id lock"), items);
        let Ok(mut conn) = pool.get().await else {
            tracing::warn!("ephemeral traffic dropped: no database connection");
            continue;
        };
        for payload in payloads {
            let sent = diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(EPHEMERAL_CHANNEL)
                .bind::<Text, _>(payload)
                .execute(&mut conn)
                .await;
            if let Err(err) = sent {
                tracing::warn!(error = %err, "ephemeral traffic dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_every_payload_under_the_limit() {
        let node = Uuid::new_v4();
        let items: Vec<_> = (0..500)
            .map(|_| Ephemeral::Typing {
                session: Uuid::new_v4(),
                user: Uuid::new_v4(),
                typing: true,
            })
            .collect();
        let payloads = pack(node, items);
        assert!(payloads.len() > 1);
        let mut total = 0;
        for p in &payloads {
            assert!(p.len() <= MAX_PAYLOAD);
            total += serde_json::from_str::<EphemeralNotice>(p).unwrap().items.len();
        }
        assert_eq!(total, 500);
    }
}
