//! The node's one LISTEN connection (tokio-postgres, read with `poll_message`). It hands
//! doorbells to the rooms of the hub whose topics are active here, ignores its own node's,
//! and on reconnect (network blip, Postgres restart, `pg_terminate_backend`) listens again
//! and has every room catch up its active topics from the event log.

use crate::cluster::Hub;
use crate::cluster::bus::{EPHEMERAL_CHANNEL, EVENTS_CHANNEL, Ephemeral, EphemeralNotice, EventsNotice};
use crate::events;
use crate::transport::NodeId;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// The listener's `application_name`, so operators (and tests) can find its backend.
pub fn application_name(node: NodeId) -> String {
    format!("bedda-collab-listener-{}", node.0.simple())
}

pub fn spawn(hub: Arc<Hub>, database_url: String, shutting_down: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        loop {
            if shutting_down.load(Ordering::Relaxed) {
                return;
            }
            match listen(&hub, &database_url, first).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(err) => tracing::warn!(error = %err, ?backoff, "listener lost; reconnecting"),
            }
            first = false;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// One listener connection's life. Returns when the connection ends.
async fn listen(hub: &Arc<Hub>, database_url: &str, first: bool) -> anyhow::Result<()> {
    let mut config: tokio_postgres::Config = database_url.parse()?;
    config.application_name(application_name(hub.bus.node_id()));
    config.connect_timeout(Duration::from_secs(5));
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    });
    client
        .batch_execute(&format!("LISTEN {EVENTS_CHANNEL}; LISTEN {EPHEMERAL_CHANNEL};"))
        .await?;
    if !first {
        // Whatever was published while we were away is in the log.
        tracing::info!("listener back; catching up active topics");
        hub.catch_up_all();
    }
    loop {
        tokio::select! {
            notification = rx.recv() => match notification {
                Some(n) => route(hub, n.channel(), n.payload()),
                None => break,
            },
            ended = &mut driver => {
                return match ended {
                    Ok(Ok(())) => Err(anyhow::anyhow!("listener connection closed")),
                    Ok(Err(err)) => Err(err.into()),
                    Err(err) => Err(err.into()),
                };
            }
        }
    }
    drop(client);
    Ok(())
}

/// A notice from another node (our own were handled when they were sent).
fn foreign<T: serde::de::DeserializeOwned>(hub: &Hub, payload: &str, node: impl Fn(&T) -> NodeId) -> Option<T> {
    match serde_json::from_str::<T>(payload) {
        Ok(notice) => (node(&notice) != hub.bus.node_id()).then_some(notice),
        Err(err) => {
            tracing::warn!(error = %err, "unreadable notice on the bus");
            None
        }
    }
}

fn route(hub: &Arc<Hub>, channel: &str, payload: &str) {
    match channel {
        EVENTS_CHANNEL => {
            let Some(notice) = foreign(hub, payload, |n: &EventsNotice| n.node) else {
                return;
            };
            for topic in notice.topics {
                if !hub.is_active(&topic.topic) {
                    continue;
                }
                match topic.range {
                    None => hub.deliver_topic(&topic.topic, topic.events),
                    Some((first, last)) => {
                        // Too big to ride the doorbell: read it from the log.
                        let hub = hub.clone();
                        tokio::spawn(async move {
                            let fetched = async {
                                let mut conn = hub.pool.get().await?;
                                events::after(&mut conn, &topic.topic, first - 1, last - first + 1).await
                            };
                            match fetched.await {
                                Ok(events) => hub.deliver_topic(&topic.topic, events),
                                Err(err) => tracing::warn!(error = %err, "fetching a referenced event failed"),
                            }
                        });
                    }
                }
            }
        }
        EPHEMERAL_CHANNEL => {
            let Some(notice) = foreign(hub, payload, |n: &EphemeralNotice| n.node) else {
                return;
            };
            for item in notice.items {
                match item {
                    Ephemeral::NodeDown { node } => hub.node_down(node),
                    Ephemeral::Access { workspace, user } => hub.local_access_changed(workspace, user),
                    Ephemeral::Revoke { revoked } => {
                        hub.sockets.close(&revoked);
                    }
                    Ephemeral::Room { room, payload } => {
                        if let Some(room) = hub.room(&room) {
                            room.ephemeral(notice.node, payload);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}
