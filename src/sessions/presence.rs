//! Presence and typing inside a `LiveSession`: one presence per user however many tabs and
//! nodes they use (snapshot on subscribe, diffs after), recorded in Postgres against this
//! node's lease and announced on the bus; typing indicators that expire by themselves.

use crate::cluster::hub::{CatchUp, NodeDown};
use crate::db::schema::{nodes, presence};
use crate::error::AppError;
use crate::events;
use crate::sessions::live::LiveSession;
use crate::sessions::protocol::PresenceState;
use crate::sessions::protocol::SessionEphemeral;
use crate::sessions::registry::KIND;
use crate::transport::frames::PresenceView;
use crate::transport::{NodeId, ServerFrame};
use actix::prelude::*;
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;
use std::time::Instant;
use uuid::Uuid;

/// A user connected through this node.
pub struct PresenceEntry {
    pub state: PresenceState,
    pub connections: usize,
}

pub struct TypingEntry {
    pub until: Instant,
    pub last_broadcast: Instant,
    /// Typing through this node (announced on the bus) rather than through another.
    pub local: bool,
}

/// A user's presence through another node changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemotePresence {
    pub user: Uuid,
    pub node: NodeId,
    pub state: Option<PresenceState>,
}

/// A user on another node started or stopped typing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteTyping {
    pub user: Uuid,
    pub typing: bool,
}

type RemoteRows = Vec<(Uuid, Uuid, PresenceState)>;

impl LiveSession {
    pub(super) fn presence_view(user_id: Uuid, state: &PresenceState) -> PresenceView<'_> {
        PresenceView {
            user_id,
            display_name: &state.display_name,
            status: &state.status,
        }
    }

    /// What everyone sees of a user: their state through this node, else through another.
    pub(super) fn merged(&self, user_id: Uuid) -> Option<PresenceState> {
        self.presence.get(&user_id).map(|e| e.state.clone()).or_else(|| {
            self.remote
                .get(&user_id)
                .and_then(|nodes| nodes.values().next().cloned())
        })
    }

    pub(super) fn snapshot(&self) -> Vec<(Uuid, PresenceState)> {
        let mut users: Vec<Uuid> = self.presence.keys().chain(self.remote.keys()).copied().collect();
        users.sort();
        users.dedup();
        users
            .into_iter()
            .filter_map(|u| self.merged(u).map(|s| (u, s)))
            .collect()
    }

    /// Broadcasts the difference a change made to a user's merged presence (`joins` are
    /// upserts).
    pub(super) fn presence_changed(&self, user_id: Uuid, before: Option<PresenceState>, except: Option<Uuid>) {
        let after = self.merged(user_id);
        if before == after {
            return;
        }
        let (joins, leaves) = match &after {
            Some(state) => (vec![Self::presence_view(user_id, state)], Vec::new()),
            None => (Vec::new(), vec![user_id]),
        };
        let frame = ServerFrame::Presence {
            topic: &self.topic,
            joins,
            leaves,
        };
        self.broadcast(&frame.encode(), except);
    }

    /// A tab of a user joined through this node.
    pub(super) fn local_join(&mut self, user_id: Uuid, display_name: &str, ctx: &mut Context<Self>) {
        let before = self.merged(user_id);
        let entry = self.presence.entry(user_id).or_insert_with(|| PresenceEntry {
            state: PresenceState {
                display_name: display_name.to_owned(),
                status: "online".to_owned(),
            },
            connections: 0,
        });
        entry.connections += 1;
        if entry.connections == 1 {
            let state = entry.state.clone();
            self.announce_presence(user_id, Some(state), ctx);
            self.presence_changed(user_id, before, Some(user_id));
        }
    }

    /// A tab of a user left this node.
    pub(super) fn local_leave(&mut self, user_id: Uuid, ctx: &mut Context<Self>) {
        let Some(entry) = self.presence.get_mut(&user_id) else {
            return;
        };
        entry.connections -= 1;
        if entry.connections > 0 {
            return;
        }
        let before = self.merged(user_id);
        self.presence.remove(&user_id);
        if self.typing.get(&user_id).is_some_and(|t| t.local) {
            self.typing.remove(&user_id);
            self.typing_frame(user_id, false, true);
        }
        self.announce_presence(user_id, None, ctx);
        self.presence_changed(user_id, before, None);
    }

    pub(super) fn set_status(&mut self, user_id: Uuid, status: String, ctx: &mut Context<Self>) {
        let before = self.merged(user_id);
        let Some(entry) = self.presence.get_mut(&user_id) else {
            return;
        };
        if entry.state.status == status {
            return;
        }
        entry.state.status = status;
        let state = entry.state.clone();
        self.announce_presence(user_id, Some(state), ctx);
        self.presence_changed(user_id, before, None);
    }

    /// Records this node's presence of a user (or its end) in Postgres — only while this
    /// node's lease is valid, checked in the same statement — and tells the other nodes.
    fn announce_presence(&self, user_id: Uuid, state: Option<PresenceState>, ctx: &mut Context<Self>) {
        let (pool, session_id, node) = (self.pool.clone(), self.session_id, self.bus.node_id());
        let node_id = node.0;
        let row = state.clone();
        let write = async move {
            let mut conn = pool.get().await?;
            match row {
                Some(state) => {
                    let alive = nodes::table
                        .filter(nodes::id.eq(node_id))
                        .filter(nodes::lease_expires_at.gt(diesel::dsl::now))
                        .select((
                            session_id.into_sql::<sql_types::Uuid>(),
                            user_id.into_sql::<sql_types::Uuid>(),
                            nodes::id,
                            state.display_name.clone().into_sql::<sql_types::Text>(),
                            state.status.clone().into_sql::<sql_types::Text>(),
                        ));
                    diesel::insert_into(presence::table)
                        .values(alive)
                        .into_columns((
                            presence::session_id,
                            presence::user_id,
                            presence::node_id,
                            presence::display_name,
                            presence::status,
                        ))
                        .on_conflict((presence::session_id, presence::user_id, presence::node_id))
                        .do_update()
                        .set((presence::status.eq(&state.status), presence::updated_at.eq(Utc::now())))
                        .execute(&mut conn)
                        .await?;
                }
                None => {
                    diesel::delete(presence::table.find((session_id, user_id, node_id)))
                        .execute(&mut conn)
                        .await?;
                }
            }
            Ok::<_, AppError>(())
        };
        ctx.spawn(write.into_actor(self).map(|result, _, _| {
            if let Err(err) = result {
                tracing::warn!(error = %err, "recording presence failed");
            }
        }));
        let presence = SessionEphemeral::Presence {
            session: self.session_id,
            user: user_id,
            node,
            state,
        };
        self.bus.room_ephemeral(KIND, &presence, false);
    }

    /// The presences other nodes (with live leases) hold in this session.
    pub(super) fn load_remote_presence(&self) -> impl Future<Output = Result<RemoteRows, AppError>> + use<> {
        let (pool, session_id, node_id) = (self.pool.clone(), self.session_id, self.bus.node_id().0);
        async move {
            let mut conn = pool.get().await?;
            let rows: Vec<(Uuid, Uuid, String, String)> = presence::table
                .inner_join(nodes::table.on(nodes::id.eq(presence::node_id)))
                .filter(presence::session_id.eq(session_id))
                .filter(presence::node_id.ne(node_id))
                .filter(nodes::lease_expires_at.gt(diesel::dsl::now))
                .select((
                    presence::user_id,
                    presence::node_id,
                    presence::display_name,
                    presence::status,
                ))
                .load(&mut conn)
                .await?;
            Ok(rows
                .into_iter()
                .map(|(u, n, d, s)| {
                    (
                        u,
                        n,
                        PresenceState {
                            display_name: d,
                            status: s,
                        },
                    )
                })
                .collect())
        }
    }

    /// Replaces what we know of other nodes' presences, announcing the differences.
    pub(super) fn replace_remote(&mut self, rows: RemoteRows) {
        let mut fresh: HashMap<Uuid, HashMap<Uuid, PresenceState>> = HashMap::new();
        for (user, node, state) in rows {
            fresh.entry(user).or_default().insert(node, state);
        }
        let mut users: Vec<Uuid> = self.remote.keys().chain(fresh.keys()).copied().collect();
        users.sort();
        users.dedup();
        let before: Vec<(Uuid, Option<PresenceState>)> = users.iter().map(|u| (*u, self.merged(*u))).collect();
        self.remote = fresh;
        for (user, was) in before {
            self.presence_changed(user, was, None);
        }
    }

    /// Tells local subscribers (and, for a typist on this node, the other nodes).
    pub(super) fn typing_frame(&self, user_id: Uuid, typing: bool, local: bool) {
        let frame = ServerFrame::Typing {
            topic: &self.topic,
            user_id,
            typing,
        };
        self.broadcast(&frame.encode(), Some(user_id));
        if local {
            let typing = SessionEphemeral::Typing {
                session: self.session_id,
                user: user_id,
                typing,
            };
            self.bus.room_ephemeral(KIND, &typing, false);
        }
    }

    /// A local typing signal: broadcast at most once per throttle interval.
    pub(super) fn local_typing(&mut self, user_id: Uuid, typing: bool) {
        let now = Instant::now();
        if !typing {
            if self.typing.remove(&user_id).is_some() {
                self.typing_frame(user_id, false, true);
            }
            return;
        }
        let (throttle, until) = (self.config.typing_throttle, now + self.config.typing_ttl);
        let entry = self.typing.entry(user_id).or_insert(TypingEntry {
            until,
            last_broadcast: now,
            local: true,
        });
        let fresh = entry.last_broadcast == now;
        entry.until = until;
        entry.local = true;
        if fresh || now.duration_since(entry.last_broadcast) >= throttle {
            entry.last_broadcast = now;
            self.typing_frame(user_id, true, true);
        }
    }

    /// Ends indicators nobody refreshed.
    pub(super) fn expire_typing(&mut self) {
        let now = Instant::now();
        let expired: Vec<Uuid> = self
            .typing
            .iter()
            .filter(|(_, t)| t.until <= now)
            .map(|(u, _)| *u)
            .collect();
        for user in expired {
            if let Some(entry) = self.typing.remove(&user) {
                self.typing_frame(user, false, entry.local);
            }
        }
    }
}

impl Handler<RemotePresence> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: RemotePresence, _ctx: &mut Self::Context) {
        if msg.node == self.bus.node_id() {
            return;
        }
        let node = msg.node.0;
        let before = self.merged(msg.user);
        match msg.state {
            Some(state) => {
                self.remote.entry(msg.user).or_default().insert(node, state);
            }
            None => {
                if let Some(nodes) = self.remote.get_mut(&msg.user) {
                    nodes.remove(&node);
                    if nodes.is_empty() {
                        self.remote.remove(&msg.user);
                    }
                }
            }
        }
        self.presence_changed(msg.user, before, None);
    }
}

impl Handler<NodeDown> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: NodeDown, _ctx: &mut Self::Context) {
        let users: Vec<Uuid> = self
            .remote
            .iter()
            .filter(|(_, nodes)| nodes.contains_key(&msg.0.0))
            .map(|(u, _)| *u)
            .collect();
        for user in users {
            let before = self.merged(user);
            if let Some(nodes) = self.remote.get_mut(&user) {
                nodes.remove(&msg.0.0);
                if nodes.is_empty() {
                    self.remote.remove(&user);
                }
            }
            if self.merged(user).is_none() && self.typing.remove(&user).is_some() {
                self.typing_frame(user, false, false);
            }
            self.presence_changed(user, before, None);
        }
    }
}

impl Handler<RemoteTyping> for LiveSession {
    type Result = ();

    fn handle(&mut self, msg: RemoteTyping, ctx: &mut Self::Context) {
        self.ensure_ticking(ctx);
        if self.typing.get(&msg.user).is_some_and(|t| t.local) {
            return; // this node speaks for that user's typing
        }
        let now = Instant::now();
        if msg.typing {
            let until = now + self.config.typing_ttl;
            self.typing.insert(
                msg.user,
                TypingEntry {
                    until,
                    last_broadcast: now,
                    local: false,
                },
            );
        } else if self.typing.remove(&msg.user).is_none() {
            return;
        }
        self.typing_frame(msg.user, msg.typing, false);
    }
}

impl Handler<CatchUp> for LiveSession {
    type Result = ();

    fn handle(&mut self, _msg: CatchUp, ctx: &mut Self::Context) {
        let (pool, topic, after) = (self.pool.clone(), self.topic.clone(), self.last_seq());
        let remote = self.load_remote_presence();
        let fetch = async move {
            // One pooled connection at a time: never hold one while waiting for another.
            let missed = {
                let mut conn = pool.get().await?;
                events::all_after(&mut conn, &topic, after).await?
            };
            Ok::<_, AppError>((missed, remote.await?))
        };
        ctx.spawn(fetch.into_actor(self).map(|result, act, ctx| match result {
            Ok((missed, remote)) => {
                act.accept(missed, ctx);
                act.replace_remote(remote);
            }
            Err(err) => tracing::warn!(error = %err, topic = %act.topic, "catch-up failed"),
        }));
    }
}
