//! The session room: the node's running `LiveSession` actors (one per chat session with
//! subscribers), registered in the hub for the `session` topic kind. It routes committed
//! events, the session's client frames and its ephemeral traffic to them, and cleans up
//! after dead nodes (their streaming replies end `interrupted`).

use crate::ai::Ai;
use crate::cluster::hub::{Link, RecheckAccess, Subscription, TopicActors};
use crate::cluster::{Bus, Hub, Room};
use crate::db::DbPool;
use crate::db::schema::chat_sessions;
use crate::directory::Directory;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::feature::RoomContext;
use crate::sessions::ai::{CancelGeneration, RemoteChunk};
use crate::sessions::live::{LiveConfig, LiveSession, RemotePresence, RemoteTyping};
use crate::sessions::protocol::PresenceState;
use crate::sessions::protocol::{ACTIONS, SessionAction, SessionEphemeral};
use crate::sessions::replay::{ReplayConfig, ReplayGate};
use crate::transport::{NodeId, Topic};
use actix::{Actor, Addr};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::future::BoxFuture;
use std::any::Any;
use std::sync::{Arc, Weak};
use std::time::Duration;
use uuid::Uuid;

/// The topic kind of chat sessions.
pub const KIND: &str = "session";

/// A session's topic.
pub fn topic(session_id: Uuid) -> Topic {
    Topic::new(KIND, session_id)
}

pub struct LiveSessions {
    pool: DbPool,
    bus: Arc<Bus>,
    hub: Weak<Hub>,
    ai: Arc<Ai>,
    config: LiveConfig,
    replay: ReplayConfig,
    /// Bounds the replays running at once, per node and per user.
    gate: Arc<ReplayGate>,
    actors: Directory<LiveSession>,
}

impl LiveSessions {
    /// The room, built by the hub (`sessions::FEATURE`).
    pub fn build(ctx: &RoomContext) -> anyhow::Result<Arc<dyn Room>> {
        let config = ctx.config;
        let replay = ReplayConfig {
            per_node: config.replays_per_node,
            per_user: config.replays_per_user,
            stall_timeout: Duration::from_millis(config.ws_client_timeout_ms),
        };
        Ok(Arc::new(Self {
            gate: ReplayGate::new(&replay),
            replay,
            pool: ctx.pool.clone(),
            bus: ctx.bus.clone(),
            hub: ctx.hub.clone(),
            ai: Arc::new(crate::ai::build(config)),
            config: LiveConfig {
                idle_timeout: Duration::from_millis(config.session_idle_ms),
                typing_ttl: Duration::from_millis(config.typing_ttl_ms),
                typing_throttle: Duration::from_millis(config.typing_ttl_ms * 2 / 5),
                max_batch: config.group_commit_max,
                gap_timeout: Duration::from_millis(config.gap_fill_ms),
            },
            actors: Directory::default(),
        }))
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub fn ai(&self) -> &Arc<Ai> {
        &self.ai
    }

    /// The node's replay gate (per node and per user).
    pub fn replay_gate(&self) -> Arc<ReplayGate> {
        self.gate.clone()
    }

    pub fn replay_config(&self) -> &ReplayConfig {
        &self.replay
    }

    /// The hub this room is registered in (alive as long as the server).
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.upgrade().expect("the hub outlives its rooms")
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

    /// A session's visibility or participants changed: its subscribers re-check, everywhere.
    pub fn session_access_changed(&self, session_id: Uuid, user_id: Option<Uuid>) {
        self.with(session_id, |a| a.do_send(RecheckAccess(user_id)));
        self.bus.room_ephemeral(
            KIND,
            &SessionEphemeral::SessionAccess {
                session: session_id,
                user: user_id,
            },
            false,
        );
    }

    fn remote_presence(&self, session_id: Uuid, user: Uuid, node: NodeId, state: Option<PresenceState>) {
        self.with(session_id, |a| a.do_send(RemotePresence { user, node, state }));
    }
}

impl Room for LiveSessions {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn actors(&self) -> &dyn TopicActors {
        &self.actors
    }

    fn subscribe(self: Arc<Self>, session_id: Uuid, sub: Subscription) -> BoxFuture<'static, AppResult<Link>> {
        Box::pin(async move {
            let workspace_id: Uuid = {
                let mut conn = self.pool.get().await?;
                chat_sessions::table
                    .find(session_id)
                    .select(chat_sessions::workspace_id)
                    .first(&mut conn)
                    .await
                    .optional()?
                    .ok_or_else(|| AppError::new(ErrorCode::SessionNotFound, "session not found"))?
            };
            let mut addr = self.get_or_spawn(session_id, workspace_id);
            if let Err(actix::MailboxError::Closed) = addr.send(sub.clone()).await {
                // The actor stopped as we reached it (idle); start a fresh one.
                addr = self.get_or_spawn(session_id, workspace_id);
                addr.do_send(sub);
            }
            Ok(Link {
                actions: Some(addr.clone().recipient()),
                leave: addr.recipient(),
            })
        })
    }

    fn actions(&self) -> &'static [&'static str] {
        ACTIONS
    }

    fn decode_action(&self, frame: &str) -> AppResult<Box<dyn Any + Send>> {
        // Model proposal frames ride the session topic; `src/proposals` owns them.
        if let Some(action) = crate::proposals::frames::decode(frame)? {
            return Ok(Box::new(action));
        }
        Ok(Box::new(SessionAction::decode(frame)?))
    }

    fn ephemeral(&self, _from: NodeId, payload: serde_json::Value) {
        let Ok(item) = serde_json::from_value::<SessionEphemeral>(payload) else {
            tracing::warn!("unreadable session traffic from the bus");
            return;
        };
        match item {
            SessionEphemeral::Typing { session, user, typing } => {
                self.with(session, |a| a.do_send(RemoteTyping { user, typing }))
            }
            SessionEphemeral::Presence {
                session,
                user,
                node,
                state,
            } => self.remote_presence(session, user, node, state),
            SessionEphemeral::SessionAccess { session, user } => self.with(session, |a| a.do_send(RecheckAccess(user))),
            SessionEphemeral::AiChunk {
                session,
                message_id,
                offset,
                text,
                model,
            } => self.with(session, |a| {
                a.do_send(RemoteChunk {
                    message_id,
                    offset,
                    text,
                    model,
                })
            }),
            SessionEphemeral::StopGeneration { session, message_id } => {
                self.with(session, |a| a.do_send(CancelGeneration(message_id)))
            }
        }
    }

    fn reaped<'a>(&'a self, hub: &'a Hub, dead: &'a [NodeId]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Replies that were streaming on nodes that are gone end as interrupted.
            let nodes: Vec<Uuid> = dead.iter().map(|n| n.0).collect();
            let result = async {
                let mut conn = hub.pool.get().await?;
                crate::ai::generation::interrupt_nodes(&mut conn, hub, &nodes).await
            }
            .await;
            match result {
                Ok(committed) => {
                    committed.publish(hub);
                }
                Err(err) => tracing::warn!(error = %err, "marking interrupted replies failed"),
            }
        })
    }

    /// Replies owed by requests no live node will start are started here (`ai::intent`).
    fn heartbeat<'a>(&'a self, hub: &'a Hub) -> BoxFuture<'a, ()> {
        Box::pin(crate::ai::intent::adopt(hub.get::<LiveSessions>()))
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
