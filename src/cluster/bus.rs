//! Publishing on the bus. Durable events: one NOTIFY on `collab_events` per transaction,
//! in the same transaction as the event rows (delivered at commit, never on rollback),
//! inline when small, seq ranges to read from the log when not. Ephemeral traffic (node
//! down, access changes, and each room's own: typing, presence, AI chunks, awareness):
//! queued and sent on `collab_ephemeral` once per tick, so many small signals cost one
//! notifying commit. Room payloads are opaque here: only their room decodes them.

use crate::db::DbPool;
use crate::error::AppResult;
use crate::events::Event;
use crate::transport::NodeId;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

diesel::define_sql_function! {
    /// Postgres's `pg_notify(channel, payload)`. It returns `void`; it is only executed.
    /// Through the query builder each connection prepares it once (a raw `sql_query` is
    /// prepared anew on every call: one more round trip inside every notifying commit).
    fn pg_notify(channel: Text, payload: Text) -> Nullable<Text>;
}

pub const EVENTS_CHANNEL: &str = "collab_events";
pub const EPHEMERAL_CHANNEL: &str = "collab_ephemeral";
/// Postgres refuses NOTIFY payloads of 8000 bytes or more; stay clear of it.
pub const MAX_PAYLOAD: usize = 7900;

/// A durable-event doorbell: the events one transaction committed, per topic.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventsNotice {
    pub node: NodeId,
    pub topics: Vec<TopicNotice>,
}

/// One topic's part of a doorbell.
#[derive(Debug, Serialize, Deserialize)]
pub struct TopicNotice {
    pub topic: String,
    /// The events themselves, when they fit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// Otherwise the inclusive seq range to read from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<(i64, i64)>,
}

/// One piece of ephemeral traffic. The hub's own kinds are named; a room's travel opaquely
/// as its kind and a payload only that room decodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ephemeral {
    /// A node is gone (its lease expired or it shut down): drop what it held.
    NodeDown { node: NodeId },
    /// A member's standing in a workspace changed (`user` None = everyone's).
    Access { workspace: Uuid, user: Option<Uuid> },
    /// Credentials ended (logout, token revocation, account disabled): close their sockets.
    Revoke { revoked: crate::credentials::Revoked },
    /// A room's own traffic (typing, presence, AI chunks, awareness, …).
    Room { room: String, payload: serde_json::Value },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EphemeralNotice {
    pub node: NodeId,
    pub items: Vec<Ephemeral>,
}

/// This node's handle on the bus.
pub struct Bus {
    /// The node's identity; replaced when the node rejoins after losing its lease.
    node_id: Arc<RwLock<NodeId>>,
    ephemeral: mpsc::UnboundedSender<(Ephemeral, bool)>,
}

impl Bus {
    /// Starts the ephemeral sender (one NOTIFY per `tick` at most).
    pub fn start(node_id: NodeId, pool: DbPool, tick: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let node_id = Arc::new(RwLock::new(node_id));
        tokio::spawn(ephemeral_sender(node_id.clone(), pool, tick, rx));
        Self { node_id, ephemeral: tx }
    }

    /// This node's current id.
    pub fn node_id(&self) -> NodeId {
        *self.node_id.read().expect("node id lock")
    }

    /// Takes a new identity (rejoining as a fresh node); returns it.
    pub fn new_identity(&self) -> NodeId {
        let id = NodeId::new();
        *self.node_id.write().expect("node id lock") = id;
        id
    }

    /// Queues ephemeral traffic for the next tick.
    pub fn ephemeral(&self, item: Ephemeral) {
        let _ = self.ephemeral.send((item, false));
    }

    /// Queues a room's own ephemeral traffic (`urgent`: send without waiting for the tick).
    pub fn room_ephemeral(&self, room: &'static str, payload: &impl Serialize, urgent: bool) {
        let Ok(payload) = serde_json::to_value(payload) else {
            return;
        };
        let item = Ephemeral::Room {
            room: room.to_owned(),
            payload,
        };
        let _ = self.ephemeral.send((item, urgent));
    }

    /// Rings the doorbell for the events written in this transaction (any topics): one
    /// NOTIFY, delivered at commit. Events inline when they fit, else each topic's seq
    /// range to read from the log. Only `events::commit` calls it.
    pub(crate) async fn notify_events(&self, conn: &mut AsyncPgConnection, events: &[Event]) -> AppResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        for payload in doorbells(self.node_id(), events) {
            diesel::select(pg_notify(EVENTS_CHANNEL, payload))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// The doorbell payloads for a transaction's events: one, with the events inline when it
/// fits; else one with each topic's seq range; only a transaction touching hundreds of
/// topics needs more than one.
pub fn doorbells(node: NodeId, events: &[Event]) -> Vec<String> {
    let mut topics: Vec<TopicNotice> = Vec::new();
    for event in events {
        match topics.iter_mut().find(|t| t.topic == event.topic) {
            Some(t) => t.events.push(event.clone()),
            None => topics.push(TopicNotice {
                topic: event.topic.clone(),
                events: vec![event.clone()],
                range: None,
            }),
        }
    }
    let encode = |topics: &[TopicNotice]| {
        #[derive(Serialize)]
        struct View<'a> {
            node: NodeId,
            topics: &'a [TopicNotice],
        }
        serde_json::to_string(&View { node, topics }).unwrap_or_default()
    };
    let inline = encode(&topics);
    if inline.len() <= MAX_PAYLOAD {
        return vec![inline];
    }
    for t in &mut topics {
        let first = t.events.iter().map(|e| e.seq).min().unwrap_or(0);
        let last = t.events.iter().map(|e| e.seq).max().unwrap_or(0);
        t.events.clear();
        t.range = Some((first, last));
    }
    let mut out = Vec::new();
    let mut start = 0;
    for end in 1..=topics.len() {
        if end - start > 1 && encode(&topics[start..end]).len() > MAX_PAYLOAD {
            out.push(encode(&topics[start..end - 1]));
            start = end - 1;
        }
    }
    out.push(encode(&topics[start..]));
    out
}

/// Packs queued items into payloads under the limit.
pub fn pack(node: NodeId, items: Vec<Ephemeral>) -> Vec<String> {
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
    node: Arc<RwLock<NodeId>>,
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
            let sent = diesel::select(pg_notify(EPHEMERAL_CHANNEL, payload))
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
        let node = NodeId::new();
        let items: Vec<_> = (0..500)
            .map(|_| Ephemeral::Access {
                workspace: Uuid::new_v4(),
                user: Some(Uuid::new_v4()),
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

    fn event(topic: &str, seq: i64, size: usize) -> Event {
        Event {
            topic: topic.to_owned(),
            seq,
            kind: "k".to_owned(),
            data: serde_json::json!({ "x": "y".repeat(size) }),
            actor_id: None,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn one_doorbell_per_transaction_inline_or_by_range() {
        let node = NodeId::new();
        let small = vec![
            event("session:a", 1, 10),
            event("session:b", 7, 10),
            event("session:a", 2, 10),
        ];
        let bells = doorbells(node, &small);
        assert_eq!(bells.len(), 1);
        let notice: EventsNotice = serde_json::from_str(&bells[0]).unwrap();
        assert_eq!(notice.topics.len(), 2);
        assert_eq!(notice.topics[0].events.len(), 2);

        let big = vec![event("artifact:a", 3, 6000), event("artifact:a", 4, 6000)];
        let bells = doorbells(node, &big);
        assert_eq!(bells.len(), 1);
        let notice: EventsNotice = serde_json::from_str(&bells[0]).unwrap();
        assert_eq!(notice.topics[0].range, Some((3, 4)));
        assert!(notice.topics[0].events.is_empty());

        // Hundreds of topics in one transaction: ranges, split under the limit.
        let many: Vec<Event> = (0..400).map(|i| event(&format!("session:{i:040}"), 1, 100)).collect();
        let bells = doorbells(node, &many);
        assert!(bells.len() > 1);
        let mut seen = 0;
        for bell in &bells {
            assert!(bell.len() <= MAX_PAYLOAD);
            seen += serde_json::from_str::<EventsNotice>(bell).unwrap().topics.len();
        }
        assert_eq!(seen, 400);
    }
}
