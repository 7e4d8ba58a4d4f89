//! The node's running `ArtifactEditor` actors: get-or-spawn by artifact id, routing of
//! committed updates and awareness from the bus, access re-checks.

use crate::artifacts::editor::{ArtifactEditor, CatchUp, NodeDown, Publish, RecheckAccess, RemoteAwareness};
use crate::cluster::Bus;
use crate::db::DbPool;
use crate::directory::Directory;
use crate::events::Event;
use actix::{Actor, Addr};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub struct Editors {
    pool: DbPool,
    bus: Arc<Bus>,
    idle_timeout: Duration,
    actors: Directory<ArtifactEditor>,
}

impl Editors {
    pub fn new(pool: DbPool, bus: Arc<Bus>, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            pool,
            bus,
            idle_timeout,
            actors: Directory::default(),
        })
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
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

    pub fn is_running(&self, artifact_id: Uuid) -> bool {
        self.actors.contains(artifact_id)
    }

    pub fn publish(&self, artifact_id: Uuid, events: Vec<Event>) {
        if let Some(addr) = self.get(artifact_id) {
            addr.do_send(Publish(events));
        }
    }

    pub fn remote_awareness(&self, artifact_id: Uuid, node: Uuid, update: Vec<u8>) {
        if let Some(addr) = self.get(artifact_id) {
            addr.do_send(RemoteAwareness { node, update });
        }
    }

    pub fn node_down(&self, node: Uuid) {
        self.actors.each(None, |a| a.do_send(NodeDown(node)));
    }

    pub fn catch_up_all(&self) {
        self.actors.each(None, |a| a.do_send(CatchUp));
    }

    pub fn recheck_workspace(&self, workspace_id: Uuid, user_id: Option<Uuid>) {
        self.actors
            .each(Some(workspace_id), |a| a.do_send(RecheckAccess(user_id)));
    }
}
