//! The node's one LISTEN connection (tokio-postgres, read with `poll_message`). It routes
//! doorbells to the local actors that have subscribers, ignores its own node's, and on
//! reconnect (network blip, Postgres restart, `pg_terminate_backend`) listens again and
//! has every active topic catch up from the event log.

use crate::app::AppState;
use crate::cluster::bus::{EPHEMERAL_CHANNEL, EVENTS_CHANNEL, Ephemeral, EphemeralNotice, EventsNotice};
use crate::events;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// The listener's `application_name`, so operators (and tests) can find its backend.
pub fn application_name(node: uuid::Uuid) -> String {
    format!("bedda-collab-listener-{}", node.simple())
}

pub fn spawn(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        loop {
            if state.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            match listen(&state, first).await {
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
async fn listen(state: &Arc<AppState>, first: bool) -> anyhow::Result<()> {
    let mut config: tokio_postgres::Config = state.config.database_url.parse()?;
    config.application_name(application_name(state.bus.node_id()));
    config.connect_timeout(Duration::from_secs(5));
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
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
        state.live.catch_up_all();
        state.editors.catch_up_all();
    }
    let mut driver = driver;
    loop {
        tokio::select! {
            notification = rx.recv() => match notification {
                Some(n) => route(state, n.channel(), n.payload()),
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

fn route(state: &Arc<AppState>, channel: &str, payload: &str) {
    match channel {
        EVENTS_CHANNEL => {
            let Ok(notice) = serde_json::from_str::<EventsNotice>(payload) else {
                tracing::warn!("unreadable events notice");
                return;
            };
            if notice.node == state.bus.node_id() {
                return;
            }
            let Some((kind, id)) = notice.topic.split_once(':') else {
                return;
            };
            let Ok(id) = id.parse::<uuid::Uuid>() else { return };
            let running = match kind {
                "session" => state.live.is_running(id),
                "artifact" => state.editors.is_running(id),
                _ => false,
            };
            if !running {
                return;
            }
            let is_session = kind == "session";
            let deliver = move |state: &AppState, events: Vec<crate::events::Event>| {
                if is_session {
                    state.live.publish(id, events)
                } else {
                    state.editors.publish(id, events)
                }
            };
            match notice.range {
                None => deliver(state, notice.events),
                Some((first, last)) => {
                    // Too big to ride the doorbell: read it from the log.
                    let state = state.clone();
                    tokio::spawn(async move {
                        let fetched = async {
                            let mut conn = state.pool.get().await?;
                            events::after(&mut conn, &notice.topic, first - 1, last - first + 1).await
                        };
                        match fetched.await {
                            Ok(events) => deliver(&state, events),
                            Err(err) => tracing::warn!(error = %err, "fetching a referenced event failed"),
                        }
                    });
                }
            }
        }
        EPHEMERAL_CHANNEL => {
            let Ok(notice) = serde_json::from_str::<EphemeralNotice>(payload) else {
                tracing::warn!("unreadable ephemeral notice");
                return;
            };
            if notice.node == state.bus.node_id() {
                return;
            }
            for item in notice.items {
                apply_ephemeral(state, notice.node, item);
            }
        }
        _ => {}
    }
}

fn apply_ephemeral(state: &Arc<AppState>, from: uuid::Uuid, item: Ephemeral) {
    match item {
        Ephemeral::Typing { session, user, typing } => state.live.remote_typing(session, user, typing),
        Ephemeral::Presence {
            session,
            user,
            node,
            state: presence,
        } => state.live.remote_presence(session, user, node, presence),
        Ephemeral::AiChunk {
            session,
            message_id,
            offset,
            text,
            model,
        } => state.live.remote_chunk(session, message_id, offset, text, model),
        Ephemeral::StopGeneration { session, message_id } => state.live.cancel_generation(session, message_id),
        Ephemeral::NodeDown { node } => {
            state.live.node_down(node);
            state.editors.node_down(node);
        }
        Ephemeral::Access { workspace, user } => {
            state.live.recheck_workspace(workspace, user);
            state.editors.recheck_workspace(workspace, user);
        }
        Ephemeral::Awareness { artifact, node, update } => {
            use base64::Engine;
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(update) {
                state.editors.remote_awareness(artifact, node, bytes);
            }
        }
        Ephemeral::SessionAccess { session, user } => state.live.recheck_session(session, user),
    }
    let _ = from;
}
