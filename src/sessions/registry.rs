//! The node's directory of running `LiveSession` actors: get-or-spawn by session id,
//! routing of committed events and ephemeral traffic (local and from the bus) to them,
//! access re-checks after membership changes.

use crate::ai::Ai;
use crate::cluster::Bus;
use crate::cluster::bus::{Ephemeral, PresenceState};
use crate::db::DbPool;
use crate::directory::Directory;
use crate::events::Event;
use crate::sessions::ai::{CancelGeneration, RemoteChunk};
use crate::sessions::live::{
    CatchUp, LiveConfig, LiveSession, NodeDown, Publish, RecheckAccess, RemotePresence, RemoteTyping,
};
use actix::{Actor, Addr};
use std::sync::Arc;
use uuid::Uuid;

pub struct LiveSessions {
    pool: DbPool,
    bus: Arc<Bus>,
    ai: Arc<Ai>,
    config: LiveConfig,
    actors: Directory<LiveSession>,
}

impl LiveSessions {
    pub fn new(pool: DbPool, bus: Arc<Bus>, ai: Arc<Ai>, config: LiveConfig) -> Arc<Self> {
        Arc::new(Self {
            pool,
            bus,
            ai,
            config,
            actors: Directory::default(),
        })
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    pub fn ai(&self) -> &Arc<Ai> {
        &self.ai
    }

    /// A chunk of a reply generated on another node.
    pub fn remote_chunk(&self, session_id: Uuid, message_id: Uuid, offset: usize, text: String, model: String) {
        self.with(session_id, |a| {
            a.do_send(RemoteChunk {
                message_id,
                offset,
                text,
                model,
            })
        });
    }

    /// Someone on another node asked to stop a reply; stop it if it runs here.
    pub fn cancel_generation(&self, session_id: Uuid, message_id: Uuid) {
        self.with(session_id, |a| a.do_send(CancelGeneration(message_id)));
    }

    /// The session's actor on this node, started if there is none (or it has stopped).
    pub fn get_or_spawn(self: &Arc<Self>, session_id: Uuid, workspace_id: Uuid) -> Addr<LiveSession> {
        self.actors.get_or_start(session_id, workspace_id, || {
            LiveSession::new(session_id, self.pool.clone(), self.clone(), self.config.clone()).start()
        })
    }

    /// Called by a stopping actor; removes it unless it was already replaced.
    pub fn unregister(&self, session_id: Uuid, addr: &Addr<LiveSession>) {
        self.actors.remove(session_id, addr);
    }

    fn with(&self, session_id: Uuid, f: impl FnOnce(&Addr<LiveSession>)) {
        if let Some(addr) = self.actors.get(session_id) {
            f(&addr);
        }
    }

    pub fn is_running(&self, session_id: Uuid) -> bool {
        self.actors.contains(session_id)
    }

    /// Hands committed events to the session's actor, if it runs here.
    pub fn publish(&self, session_id: Uuid, events: Vec<Event>) {
        if !events.is_empty() {
            self.with(session_id, |a| a.do_send(Publish(events)));
        }
    }

    /// A session's visibility or participants changed: its subscribers re-check, everywhere.
    pub fn session_access_changed(&self, session_id: Uuid, user_id: Option<Uuid>) {
        self.recheck_session(session_id, user_id);
        self.bus.ephemeral(Ephemeral::SessionAccess {
            session: session_id,
            user: user_id,
        });
    }

    pub fn recheck_workspace(&self, workspace_id: Uuid, user_id: Option<Uuid>) {
        self.actors
            .each(Some(workspace_id), |a| a.do_send(RecheckAccess(user_id)));
    }

    pub fn recheck_session(&self, session_id: Uuid, user_id: Option<Uuid>) {
        self.with(session_id, |a| a.do_send(RecheckAccess(user_id)));
    }

    pub fn remote_typing(&self, session_id: Uuid, user: Uuid, typing: bool) {
        self.with(session_id, |a| a.do_send(RemoteTyping { user, typing }));
    }

    pub fn remote_presence(&self, session_id: Uuid, user: Uuid, node: Uuid, state: Option<PresenceState>) {
        self.with(session_id, |a| a.do_send(RemotePresence { user, node, state }));
    }

    /// A node is gone: every session drops the presences it held.
    pub fn node_down(&self, node: Uuid) {
        self.actors.each(None, |a| a.do_send(NodeDown(node)));
    }

    /// After the listener was lost: every session reads what it missed from the log.
    pub fn catch_up_all(&self) {
        self.actors.each(None, |a| a.do_send(CatchUp));
    }

    /// Number of session actors running on this node.
    pub fn running(&self) -> usize {
        self.actors.running()
    }
}
