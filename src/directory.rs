//! A node's directory of running actors of one kind (session actors, artifact editors),
//! keyed by the id of what they serve, each tagged with its workspace: get-or-start,
//! removal by a stopping actor, lookups and broadcasts.

use actix::{Actor, Addr};
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

struct Entry<A: Actor> {
    workspace_id: Uuid,
    addr: Addr<A>,
}

pub struct Directory<A: Actor> {
    actors: Mutex<HashMap<Uuid, Entry<A>>>,
}

impl<A: Actor> Default for Directory<A> {
    fn default() -> Self {
        Self {
            actors: Mutex::new(HashMap::new()),
        }
    }
}

impl<A: Actor> Directory<A> {
    /// The running actor for `id`, or a new one from `start` (also when the old one has
    /// stopped).
    pub fn get_or_start(&self, id: Uuid, workspace_id: Uuid, start: impl FnOnce() -> Addr<A>) -> Addr<A> {
        let mut actors = self.actors.lock().expect("directory lock");
        if let Some(entry) = actors.get(&id)
            && entry.addr.connected()
        {
            return entry.addr.clone();
        }
        let addr = start();
        actors.insert(
            id,
            Entry {
                workspace_id,
                addr: addr.clone(),
            },
        );
        addr
    }

    /// Called by a stopping actor; removes it unless it was already replaced.
    pub fn remove(&self, id: Uuid, addr: &Addr<A>) {
        let mut actors = self.actors.lock().expect("directory lock");
        if actors.get(&id).is_some_and(|e| &e.addr == addr) {
            actors.remove(&id);
        }
    }

    pub fn get(&self, id: Uuid) -> Option<Addr<A>> {
        self.actors
            .lock()
            .expect("directory lock")
            .get(&id)
            .map(|e| e.addr.clone())
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.actors.lock().expect("directory lock").contains_key(&id)
    }

    /// Every actor (or those of one workspace).
    pub fn each(&self, workspace_id: Option<Uuid>, mut f: impl FnMut(&Addr<A>)) {
        for entry in self.actors.lock().expect("directory lock").values() {
            if workspace_id.is_none_or(|w| w == entry.workspace_id) {
                f(&entry.addr);
            }
        }
    }

    /// How many are running.
    pub fn running(&self) -> usize {
        self.actors
            .lock()
            .expect("directory lock")
            .values()
            .filter(|e| e.addr.connected())
            .count()
    }
}
