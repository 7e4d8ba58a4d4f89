//! The node's directory of running `LiveSession` actors: get-or-spawn by session id,
//! local publishing of committed events, access re-checks after membership changes.

use crate::db::DbPool;
use crate::events::Event;
use crate::sessions::live::{LiveConfig, LiveSession, Publish, RecheckAccess};
use actix::{Actor, Addr};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

struct Entry {
    workspace_id: Uuid,
    addr: Addr<LiveSession>,
}

pub struct LiveSessions {
    pool: DbPool,
    config: LiveConfig,
    actors: Mutex<HashMap<Uuid, Entry>>,
}

impl LiveSessions {
    pub fn new(pool: DbPool, config: LiveConfig) -> Arc<Self> {
        Arc::new(Self {
            pool,
            config,
            actors: Mutex::new(HashMap::new()),
        })
    }

    /// The session's actor on this node, started if there is none (or it has stopped).
    pub fn get_or_spawn(self: &Arc<Self>, session_id: Uuid, workspace_id: Uuid) -> Addr<LiveSession> {
        let mut actors = self.actors.lock().expect("registry lock");
        if let Some(entry) = actors.get(&session_id)
            && entry.addr.connected()
        {
            return entry.addr.clone();
        }
        let addr = LiveSession::new(session_id, self.pool.clone(), self.clone(), self.config.clone()).start();
        actors.insert(
            session_id,
            Entry {
                workspace_id,
                addr: addr.clone(),
            },
        );
        addr
    }

    /// Called by a stopping actor; removes it unless it was already replaced.
    pub fn unregister(&self, session_id: Uuid, addr: &Addr<LiveSession>) {
        let mut actors = self.actors.lock().expect("registry lock");
        if actors.get(&session_id).is_some_and(|e| &e.addr == addr) {
            actors.remove(&session_id);
        }
    }

    /// Hands committed events to the session's actor, if it runs here.
    pub fn publish(&self, session_id: Uuid, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if let Some(entry) = self.actors.lock().expect("registry lock").get(&session_id) {
            entry.addr.do_send(Publish(events));
        }
    }

    /// A member's standing in a workspace changed: every session of it re-checks them.
    pub fn access_changed(&self, workspace_id: Uuid, user_id: Option<Uuid>) {
        for entry in self.actors.lock().expect("registry lock").values() {
            if entry.workspace_id == workspace_id {
                entry.addr.do_send(RecheckAccess(user_id));
            }
        }
    }

    /// A session's visibility or participants changed: re-check its subscribers.
    pub fn session_access_changed(&self, session_id: Uuid, user_id: Option<Uuid>) {
        if let Some(entry) = self.actors.lock().expect("registry lock").get(&session_id) {
            entry.addr.do_send(RecheckAccess(user_id));
        }
    }

    /// Number of session actors running on this node.
    pub fn running(&self) -> usize {
        self.actors
            .lock()
            .expect("registry lock")
            .values()
            .filter(|e| e.addr.connected())
            .count()
    }
}
