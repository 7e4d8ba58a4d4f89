//! The node's open WebSocket connections (of every endpoint): counted for the node
//! registry, and closed together (1012 service restart) on shutdown or when the node
//! rejoins the cluster.

use crate::transport::ConnId;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

/// The server closes this connection (shutdown, node rejoin).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ServerClose {
    pub code: u16,
    pub reason: String,
}

#[derive(Default)]
pub struct Connections {
    open: Mutex<HashMap<ConnId, Recipient<ServerClose>>>,
}

impl Connections {
    pub fn register(&self, id: ConnId, addr: Recipient<ServerClose>) {
        self.open.lock().expect("connections lock").insert(id, addr);
    }

    pub fn unregister(&self, id: ConnId) {
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
