//! The topic hub: the registry of rooms (one per topic kind: `session`, `artifact`, …) that
//! the shared machinery loops over. The listener hands committed events and ephemeral
//! traffic to the room of their topic kind, the heartbeat tells every room when a node is
//! gone, access changes reach every room, and the WebSocket gateway finds the room of a
//! topic to subscribe to it and to pass it the actions only that room understands.
//!
//! A room is a feature folder; this module imports none of them. Adding a topic kind is
//! implementing [`Room`] in the feature's folder and registering it in `app.rs`
//! (docs/ARCHITECTURE.md, "Adding a topic kind").

use crate::cluster::Bus;
use crate::credentials::{Revoked, Sockets};
use crate::db::DbPool;
use crate::directory::Directory;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::Event;
use crate::transport::{ClientHandle, ConnId, NodeId, Topic};
use actix::prelude::*;
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// A WebSocket connection subscribing to a topic (also the message a room sends its actor).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Subscription {
    pub conn: ConnId,
    pub user_id: Uuid,
    pub display_name: String,
    pub reference: Option<String>,
    /// Replay events after this seq; `None` = live events only.
    pub after_seq: Option<i64>,
    pub client: ClientHandle,
}

/// A connection leaves a topic (unsubscribe, or the socket closed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub conn: ConnId,
}

/// A client frame for a subscribed topic, decoded by the topic's room
/// ([`Room::decode_action`]) into its own action type.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TopicAction {
    pub conn: ConnId,
    pub user_id: Uuid,
    pub reference: Option<String>,
    pub action: Box<dyn Any + Send>,
    pub reply: ClientHandle,
}

/// Committed events of the actor's topic, from any source (its writer, REST, other nodes).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Vec<Event>);

/// A node is gone: drop what it held.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NodeDown(pub NodeId);

/// The bus may have missed things: read the log after the last seq (and reload what else
/// the actor mirrors from other nodes).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CatchUp;

/// Re-check the access of this user's subscribers (or everyone's when `None`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecheckAccess(pub Option<Uuid>);

/// The one live access re-check: `check` each subscriber (connection, user, what they hold)
/// in turn on one pooled connection; returns the connections whose access is gone. Database
/// trouble ends the check with an error, and nobody is cut off for it.
pub async fn revoked<T: Send + 'static>(
    pool: DbPool,
    targets: Vec<(ConnId, Uuid, T)>,
    check: impl for<'c> Fn(&'c mut AsyncPgConnection, Uuid, T) -> BoxFuture<'c, AppResult<()>>,
) -> AppResult<Vec<ConnId>> {
    let mut conn = pool.get().await?;
    let mut revoked = Vec::new();
    for (conn_id, user_id, held) in targets {
        match check(&mut conn, user_id, held).await {
            Ok(()) => {}
            Err(err) if crate::events::writer::is_fatal(&err) => return Err(err),
            Err(_) => revoked.push(conn_id),
        }
    }
    Ok(revoked)
}

/// A room's running topic actors, as the hub's defaults reach them: a `Directory` of an
/// actor that handles the four messages above.
pub trait TopicActors: Send + Sync {
    fn contains(&self, id: Uuid) -> bool;
    fn send_publish(&self, id: Uuid, events: Vec<Event>);
    fn send_node_down(&self, node: NodeId);
    fn send_catch_up(&self);
    fn send_recheck(&self, workspace: Uuid, user: Option<Uuid>);
    fn running(&self) -> usize;
}

impl<A> TopicActors for Directory<A>
where
    A: Actor<Context = Context<A>> + Handler<Publish> + Handler<NodeDown> + Handler<CatchUp> + Handler<RecheckAccess>,
{
    fn contains(&self, id: Uuid) -> bool {
        Directory::contains(self, id)
    }

    fn send_publish(&self, id: Uuid, events: Vec<Event>) {
        if let Some(addr) = self.get(id) {
            addr.do_send(Publish(events));
        }
    }

    fn send_node_down(&self, node: NodeId) {
        self.each(None, |a| a.do_send(NodeDown(node)));
    }

    fn send_catch_up(&self) {
        self.each(None, |a| a.do_send(CatchUp));
    }

    fn send_recheck(&self, workspace: Uuid, user: Option<Uuid>) {
        self.each(Some(workspace), |a| a.do_send(RecheckAccess(user)));
    }

    fn running(&self) -> usize {
        Directory::running(self)
    }
}

/// What a connection keeps for a topic it subscribed to.
#[derive(Clone)]
pub struct Link {
    /// Where the topic's actions go (`None`: the room takes no actions).
    pub actions: Option<Recipient<TopicAction>>,
    pub leave: Recipient<Leave>,
}

/// One kind of topic, served on this node by an actor per live topic.
pub trait Room: Send + Sync + 'static {
    /// The topic kind (`session` in `session:<uuid>`).
    fn kind(&self) -> &'static str;

    /// The room's running topic actors (the defaults below reach them through it).
    fn actors(&self) -> &dyn TopicActors;

    /// Whether topic `id` has a live actor on this node (only those take doorbells).
    fn is_active(&self, id: Uuid) -> bool {
        self.actors().contains(id)
    }

    /// Committed events of topic `id` (this node's writes, REST, other nodes), in any
    /// order and possibly twice: the actor orders and dedupes them by seq.
    fn deliver(&self, id: Uuid, events: Vec<Event>) {
        self.actors().send_publish(id, events);
    }

    /// Subscribes a WebSocket connection to topic `id` (authorizing it); the connection
    /// keeps the returned link for its actions and its leaving.
    fn subscribe(self: Arc<Self>, id: Uuid, sub: Subscription) -> BoxFuture<'static, AppResult<Link>>;

    /// Whether clients may subscribe to `kind:<id>` at all. A room that only keeps actors
    /// and chores (its events live on another room's topics) says no: its kind is then not
    /// a topic (`unknown_topic`, and not offered in that error's list).
    fn subscribable(&self) -> bool {
        true
    }

    /// The client frame types this room understands besides `subscribe`/`unsubscribe`.
    fn actions(&self) -> &'static [&'static str] {
        &[]
    }

    /// Decodes (and cheaply validates) a client frame of one of [`Room::actions`].
    fn decode_action(&self, frame: &str) -> AppResult<Box<dyn Any + Send>> {
        let _ = frame;
        Err(AppError::new(ErrorCode::InvalidFrame, "this topic takes no actions"))
    }

    /// This room's ephemeral traffic from another node (see [`Bus::room_ephemeral`]).
    fn ephemeral(&self, from: NodeId, payload: serde_json::Value) {
        let _ = (from, payload);
    }

    /// A node is gone (lease expired or shut down): drop what it held. Every node runs it.
    fn node_down(&self, node: NodeId) {
        self.actors().send_node_down(node);
    }

    /// Durable clean-up after nodes died; runs once, on the node that reaped them.
    fn reaped<'a>(&'a self, hub: &'a Hub, dead: &'a [NodeId]) -> BoxFuture<'a, ()> {
        let _ = (hub, dead);
        Box::pin(async {})
    }

    /// Every heartbeat of this node (after dead nodes were reaped): durable chores such as
    /// taking over work that no live node will finish.
    fn heartbeat<'a>(&'a self, hub: &'a Hub) -> BoxFuture<'a, ()> {
        let _ = hub;
        Box::pin(async {})
    }

    /// The listener was lost and is back: every active topic catches up from the log.
    fn catch_up_all(&self) {
        self.actors().send_catch_up();
    }

    /// A member's standing in a workspace changed (`user` None = everyone's): live
    /// subscribers re-check their access.
    fn access_changed(&self, workspace: Uuid, user: Option<Uuid>) {
        self.actors().send_recheck(workspace, user);
    }

    /// How many topic actors run here (for operators).
    fn running(&self) -> usize {
        self.actors().running()
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The rooms of this node, and what every room needs: the pool and the bus.
pub struct Hub {
    pub pool: DbPool,
    pub bus: Arc<Bus>,
    /// This node's sockets by the credential they stand on.
    pub sockets: Arc<Sockets>,
    rooms: HashMap<&'static str, Arc<dyn Room>>,
}

impl Hub {
    pub fn new(pool: DbPool, bus: Arc<Bus>) -> Self {
        Self {
            pool,
            bus,
            sockets: Arc::new(Sockets::default()),
            rooms: HashMap::new(),
        }
    }

    /// Registers a room; its kind must be new.
    pub fn register(&mut self, room: Arc<dyn Room>) {
        let kind = room.kind();
        assert!(
            self.rooms.insert(kind, room).is_none(),
            "room `{kind}` registered twice"
        );
    }

    /// A room by its concrete type (a feature reaching its own room, or another's).
    pub fn get<R: Room>(&self) -> Arc<R> {
        self.rooms
            .values()
            .find_map(|room| room.clone().as_any().downcast::<R>().ok())
            .unwrap_or_else(|| panic!("room {} is not registered", std::any::type_name::<R>()))
    }

    pub fn room(&self, kind: &str) -> Option<&Arc<dyn Room>> {
        self.rooms.get(kind)
    }

    pub fn rooms(&self) -> impl Iterator<Item = &Arc<dyn Room>> {
        self.rooms.values()
    }

    /// Parses `kind:uuid` for a registered kind.
    pub fn topic(&self, topic: &str) -> Option<Topic> {
        let (kind, id) = Topic::split(topic)?;
        let (kind, _) = self.rooms.get_key_value(kind).filter(|(_, room)| room.subscribable())?;
        Some(Topic::new(kind, id))
    }

    /// The room that understands client frames of type `frame_type`.
    pub fn room_for_action(&self, frame_type: &str) -> Option<&Arc<dyn Room>> {
        self.rooms.values().find(|r| r.actions().contains(&frame_type))
    }

    /// Hands committed events to the rooms of their topics on this node (after commit).
    pub fn deliver(&self, events: Vec<Event>) {
        let mut by_topic: Vec<(String, Vec<Event>)> = Vec::new();
        for event in events {
            match by_topic.iter_mut().find(|(t, _)| *t == event.topic) {
                Some((_, list)) => list.push(event),
                None => by_topic.push((event.topic.clone(), vec![event])),
            }
        }
        for (topic, events) in by_topic {
            self.deliver_topic(&topic, events);
        }
    }

    /// Hands one topic's committed events to its room, if its actor runs here.
    pub fn deliver_topic(&self, topic: &str, events: Vec<Event>) {
        if let Some(topic) = self.topic(topic)
            && let Some(room) = self.rooms.get(topic.kind)
            && !events.is_empty()
        {
            room.deliver(topic.id, events);
        }
    }

    /// Whether a topic has a live actor here.
    pub fn is_active(&self, topic: &str) -> bool {
        self.topic(topic)
            .and_then(|t| self.rooms.get(t.kind).map(|r| r.is_active(t.id)))
            .unwrap_or(false)
    }

    /// A member's standing in a workspace changed: every room re-checks, on every node.
    pub fn access_changed(&self, workspace: Uuid, user: Option<Uuid>) {
        self.local_access_changed(workspace, user);
        self.bus
            .ephemeral(crate::cluster::bus::Ephemeral::Access { workspace, user });
    }

    /// Credentials ended: their sockets close here now and on every other node at the next
    /// bus tick.
    pub fn revoke(&self, revoked: Revoked) {
        self.sockets.close(&revoked);
        self.bus.ephemeral(crate::cluster::bus::Ephemeral::Revoke { revoked });
    }

    pub(crate) fn local_access_changed(&self, workspace: Uuid, user: Option<Uuid>) {
        for room in self.rooms.values() {
            room.access_changed(workspace, user);
        }
    }

    /// A node is gone: every room drops what it held.
    pub fn node_down(&self, node: NodeId) {
        for room in self.rooms.values() {
            room.node_down(node);
        }
    }

    /// Durable clean-up of dead nodes, by every room.
    pub async fn reaped(&self, dead: &[NodeId]) {
        if dead.is_empty() {
            return;
        }
        for room in self.rooms.values() {
            room.reaped(self, dead).await;
        }
    }

    /// Every room's heartbeat chores.
    pub async fn heartbeat(&self) {
        for room in self.rooms.values() {
            room.heartbeat(self).await;
        }
    }

    pub fn catch_up_all(&self) {
        for room in self.rooms.values() {
            room.catch_up_all();
        }
    }
}
