//! The node's open WebSocket connections: counted for the node registry, and closed
//! together (1012 service restart) on shutdown or when the node rejoins the cluster.

use crate::gateway::connection::ServerClose;
use actix::Recipient;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

#[derive(Default)]
pub struct Connections {
    open: Mutex<HashMap<Uuid, Recipient<ServerClose>>>,
}

impl Connections {
    pub fn register(&self, id: Uuid, addr: Recipient<ServerClose>) {
        self.open.lock().expect("connections lock").insert(id, addr);
    }

    pub fn unregister(&self, id: Uuid) {
        self.open.lock().expect("connections lock").remove(&id);
    }

    pub fn count(&self) -> usize {
        self.open.lock().expect("connections lock").len()
    }

    /// Closes every connection with `code` (clients reconnect, here or elsewhere).
    pub fn close_all(&self, code: u16, reason: &str) {
        for addr in self.open.lock().expect("connections lock").values() {
            addr.do_send(ServerClose {
                code,
                reason: reason.to_owned(),
            });
        }
    }
}
