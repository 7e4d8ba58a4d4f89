//! The artifact room: the node's running `ArtifactEditor` actors (one per live document),
//! registered in the hub for the `artifact` topic kind. It routes committed updates and
//! awareness from the bus to them, re-checks access, and lets `/ws` clients watch a
//! document's durable watermark (`saved` frames).

use crate::artifacts::editor::{ArtifactEditor, RemoteAwareness};
use crate::artifacts::store;
use crate::auth::Permission;
use crate::cluster::hub::{Link, Subscription, TopicActors};
use crate::cluster::{Bus, Hub, Room};
use crate::db::DbPool;
use crate::directory::Directory;
use crate::error::AppResult;
use crate::feature::RoomContext;
use crate::transport::{NodeId, Topic};
use actix::{Actor, Addr};
use base64::Engine;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::{Arc, Weak};
use std::time::Duration;
use uuid::Uuid;

/// The topic kind of artifacts.
pub const KIND: &str = "artifact";

/// An artifact's topic.
pub fn topic(artifact_id: Uuid) -> Topic {
    Topic::new(KIND, artifact_id)
}

/// The artifact room's traffic between nodes: a y-websocket awareness update (cursors,
/// names), base64.
#[derive(Debug, Serialize, Deserialize)]
pub struct AwarenessNotice {
    pub artifact: Uuid,
    pub update: String,
}

pub struct Editors {
    pool: DbPool,
    bus: Arc<Bus>,
    hub: Weak<Hub>,
    idle_timeout: Duration,
    gap_timeout: Duration,
    max_batch: usize,
    actors: Directory<ArtifactEditor>,
}

impl Editors {
    /// The room, built by the hub (`artifacts::FEATURE`).
    pub fn build(ctx: &RoomContext) -> anyhow::Result<Arc<dyn Room>> {
        Ok(Arc::new(Self {
            pool: ctx.pool.clone(),
            bus: ctx.bus.clone(),
            hub: ctx.hub.clone(),
            idle_timeout: Duration::from_millis(ctx.config.session_idle_ms),
            gap_timeout: Duration::from_millis(ctx.config.gap_fill_ms),
            max_batch: ctx.config.group_commit_max,
            actors: Directory::default(),
        }))
    }

    /// The hub this room is registered in (alive as long as the server).
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.upgrade().expect("the hub outlives its rooms")
    }

    pub fn gap_timeout(&self) -> Duration {
        self.gap_timeout
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    pub fn get_or_spawn(self: &Arc<Self>, artifact_id: Uuid, workspace_id: Uuid) -> Addr<ArtifactEditor> {
        self.actors.get_or_start(artifact_id, workspace_id, || {
            ArtifactEditor::new(artifact_id, self.pool.clone(), self.clone(), self.idle_timeout).start()
        })
    }

    pub fn get(&self, artifact_id: Uuid) -> Option<Addr<ArtifactEditor>> {
        self.actors.get(artifact_id)
    }

    pub fn unregister(&self, artifact_id: Uuid, addr: &Addr<ArtifactEditor>) {
        self.actors.remove(artifact_id, addr);
    }

    /// Shares an awareness update with the other nodes.
    pub fn share_awareness(&self, artifact: Uuid, update: &[u8]) {
        let notice = AwarenessNotice {
            artifact,
            update: base64::engine::general_purpose::STANDARD.encode(update),
        };
        self.bus.room_ephemeral(KIND, &notice, false);
    }
}

impl Room for Editors {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn actors(&self) -> &dyn TopicActors {
        &self.actors
    }

    /// `/ws` subscribers of an artifact watch its durable watermark (`view_artifacts`).
    fn subscribe(self: Arc<Self>, artifact_id: Uuid, sub: Subscription) -> BoxFuture<'static, AppResult<Link>> {
        Box::pin(async move {
            let workspace_id = {
                let mut conn = self.pool.get().await?;
                let (row, _) =
                    store::authorize_user(&mut conn, sub.user_id, artifact_id, Permission::ViewArtifacts).await?;
                row.workspace_id
            };
            let editor = self.get_or_spawn(artifact_id, workspace_id);
            editor.do_send(sub);
            Ok(Link {
                actions: None,
                leave: editor.recipient(),
            })
        })
    }

    fn ephemeral(&self, from: NodeId, payload: serde_json::Value) {
        let Ok(notice) = serde_json::from_value::<AwarenessNotice>(payload) else {
            tracing::warn!("unreadable artifact traffic from the bus");
            return;
        };
        if let (Some(addr), Ok(update)) = (
            self.get(notice.artifact),
            base64::engine::general_purpose::STANDARD.decode(notice.update),
        ) {
            addr.do_send(RemoteAwareness { node: from, update });
        }
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
