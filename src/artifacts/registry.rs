//! The node's running `ArtifactEditor` actors: get-or-spawn by artifact id, routing of
//! committed updates and awareness from the bus, access re-checks.

use crate::artifacts::editor::{ArtifactEditor, CatchUp, NodeDown, Publish, RecheckAccess, RemoteAwareness};
use crate::cluster::Bus;
use crate::db::DbPool;
use crate::events::Event;
use actix::{Actor, Addr};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

struct Entry {
    workspace_id: Uuid,
    addr: Addr<ArtifactEditor>,
}

pub struct Editors {
    pool: DbPool,
    bus: Arc<Bus>,
    idle_timeout: Duration,
    actors: Mutex<HashMap<Uuid, Entry>>,
}

impl Editors {
    pub fn new(pool: DbPool, bus: Arc<Bus>, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            pool,
            bus,
            idle_timeout,
            actors: Mutex::new(HashMap::new()),
        })
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    pub fn get_or_spawn(self: &Arc<Self>, artifact_id: Uuid, workspace_id: Uuid) -> Addr<ArtifactEditor> {
        let mut actors = self.actors.lock().expect("editors lock");
        if let Some(entry) = actors.get(&artifact_id)
            && entry.addr.connected()
        {
            return entry.addr.clone();
        }
        let addr = ArtifactEditor::new(artifact_id, self.pool.clone(), self.clone(), self.idle_timeout).start();
        actors.insert(
            artifact_id,
            Entry {
                workspace_id,
                addr: addr.clone(),
            },
        );
        addr
    }

    pub fn get(&self, artifact_id: Uuid) -> Option<Addr<ArtifactEditor>> {
        self.actors
            .lock()
            .expect("editors lock")
            .get(&artifact_id)
            .map(|e| e.addr.clone())
    }

    pub fn unregister(&self, artifact_id: Uuid, addr: &Addr<ArtifactEditor>) {
        let mut actors = self.actors.lock().expect("editors lock");
        if actors.get(&artifact_id).is_some_and(|e| &e.addr == addr) {
            actors.remove(&artifact_id);
        }
    }

    pub fn is_running(&self, artifact_id: Uuid) -> bool {
        self.actors.lock().expect("editors lock").contains_key(&artifact_id)
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

    fn each(&self, mut f: impl FnMut(&Entry)) {
        for entry in self.actors.lock().expect("editors lock").values() {
            f(entry);
        }
    }

    pub fn node_down(&self, node: Uuid) {
        self.each(|e| e.addr.do_send(NodeDown(node)));
    }

    pub fn catch_up_all(&self) {
        self.each(|e| e.addr.do_send(CatchUp));
    }

    pub fn recheck_workspace(&self, workspace_id: Uuid, user_id: Option<Uuid>) {
        self.each(|e| {
            if e.workspace_id == workspace_id {
                e.addr.do_send(RecheckAccess(user_id));
            }
        });
    }
}
