//! The `ArtifactEditor` actor: one per live artifact per node. It holds the Yjs document
//! and the awareness states, answers the y-websocket sync protocol, commits writers'
//! updates to the log (group commit, one NOTIFY) before applying and relaying them, takes
//! in updates committed elsewhere (REST edits, other nodes) in seq order, compacts the log
//! into a snapshot now and then, and unloads when idle.

use crate::artifacts::registry::Editors;
use crate::artifacts::store;
use crate::artifacts::textmerge::{self, Conflict, MergeOutcome, Resolution};
use crate::auth::Permission;
use crate::cluster::hub::{self, CatchUp, Leave, NodeDown, Publish, RecheckAccess, Subscription};
use crate::db::DbPool;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::ordered::{self, OrderedActor, OrderedTopic};
use crate::events::writer::{self, GroupCommit, Outcome, WritesDone, Written};
use crate::events::{self, Event};
use crate::transport::{ClientHandle, ConnId, NodeId, ServerFrame, ToClient, error_frame};
use actix::prelude::*;
use bytes::Bytes;
use diesel_async::AsyncConnection;
use diesel_async::AsyncPgConnection;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use yrs::sync::{AwarenessUpdate, Message as YMessage, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, Transact};

/// Compact the log into a snapshot after this many updates.
const COMPACT_EVERY: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn permission(self) -> Permission {
        match self {
            Access::Read => Permission::ViewArtifacts,
            Access::Write => Permission::EditArtifacts,
        }
    }
}

/// A y-websocket client joined.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub conn_id: ConnId,
    pub user_id: Uuid,
    pub access: Access,
    pub client: ClientHandle,
}

/// A y-websocket message from a client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Incoming {
    pub conn_id: ConnId,
    pub message: YMessage,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteAwareness {
    pub node: NodeId,
    pub update: Vec<u8>,
}

/// Turn the text into `new_text` with ordinary edits (revert, merge); answers with the
/// committed seq.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReplaceText {
    pub target: TextTarget,
    pub author: Uuid,
    pub reply: oneshot::Sender<AppResult<Replaced>>,
}

/// What the text should become.
pub enum TextTarget {
    /// Exactly this text (revert).
    Exactly(String),
    /// A three-way merge of `theirs` into the current text, from `base` — computed here,
    /// against the document as it is at this moment, so no edit that landed meanwhile is
    /// lost.
    Merge {
        base: String,
        theirs: String,
        resolutions: Vec<Resolution>,
    },
}

/// How a replacement ended.
pub enum Replaced {
    /// Committed at this seq (or nothing to change: the current seq).
    Committed(i64),
    /// The merge conflicts; nothing changed.
    Conflicts(Vec<Conflict>),
}

/// The committed document now: (state, text, seq).
#[derive(Message)]
#[rtype(result = "Result<(Vec<u8>, String, i64), AppError>")]
pub struct Current;

struct Client {
    user_id: Uuid,
    access: Access,
    handle: ClientHandle,
    /// Awareness client ids this connection announced.
    awareness_ids: HashSet<yrs::ClientID>,
}

enum Owner {
    Local,
    Remote(NodeId),
}

struct AwarenessEntry {
    clock: u32,
    json: Arc<str>,
    owner: Owner,
}

pub struct WriteJob {
    user_id: Option<Uuid>,
    update: Vec<u8>,
    /// The client that sent it, told to resync if the update cannot be committed.
    origin: Option<ClientHandle>,
    reply: Option<oneshot::Sender<AppResult<Replaced>>>,
}

pub struct ArtifactEditor {
    artifact_id: Uuid,
    topic: String,
    pool: DbPool,
    registry: Arc<Editors>,
    idle_timeout: Duration,
    doc: Doc,
    /// Committed updates in seq order: everything up to its last seq is in `doc`.
    ordered: OrderedTopic<Event>,
    since_snapshot: usize,
    clients: HashMap<ConnId, Client>,
    /// `/ws` subscribers watching the `saved` watermark, with their user.
    watchers: HashMap<ConnId, (Uuid, ClientHandle)>,
    awareness: HashMap<yrs::ClientID, AwarenessEntry>,
    writer: Option<mpsc::UnboundedSender<WriteJob>>,
    writes_in_flight: usize,
}

fn encode(message: &YMessage) -> Bytes {
    Bytes::from(message.encode_v1())
}

impl ArtifactEditor {
    pub fn new(artifact_id: Uuid, pool: DbPool, registry: Arc<Editors>, idle_timeout: Duration) -> Self {
        Self {
            artifact_id,
            topic: store::topic(artifact_id),
            pool,
            ordered: OrderedTopic::new(registry.gap_timeout()),
            registry,
            idle_timeout,
            doc: Doc::new(),
            since_snapshot: 0,
            clients: HashMap::new(),
            watchers: HashMap::new(),
            awareness: HashMap::new(),
            writer: None,
            writes_in_flight: 0,
        }
    }

    fn broadcast(&self, bytes: &Bytes, except: Option<ConnId>) {
        for (id, client) in &self.clients {
            if Some(*id) != except {
                client.handle.do_send(ToClient::Binary(bytes.clone()));
            }
        }
    }

    /// Takes committed events in any order; applies them in seq order, once each.
    fn accept(&mut self, events: Vec<Event>, ctx: &mut Context<Self>) {
        ordered::accept(self, events.into_iter().map(|e| (e.seq, e)), ctx);
    }

    fn compact(&mut self, ctx: &mut Context<Self>) {
        self.since_snapshot = 0;
        let (pool, id, upto, state) = (
            self.pool.clone(),
            self.artifact_id,
            self.ordered.last_seq(),
            store::state_of(&self.doc),
        );
        let job = async move {
            let mut conn = pool.get().await?;
            conn.transaction::<_, AppError, _>(async |conn| store::compact(conn, id, upto, &state).await)
                .await
        };
        ctx.spawn(job.into_actor(self).map(|result, act, _| {
            if let Err(err) = result {
                tracing::warn!(error = %err, topic = %act.topic, "compaction failed");
            }
        }));
    }

    fn schedule_idle_stop(&self, ctx: &mut Context<Self>) {
        if self.clients.is_empty() && self.watchers.is_empty() {
            ctx.run_later(self.idle_timeout, |act, ctx| {
                if act.clients.is_empty() && act.watchers.is_empty() && act.writes_in_flight == 0 {
                    ctx.stop();
                }
            });
        }
    }

    fn enqueue(&mut self, job: WriteJob) {
        if let Some(writer) = &self.writer
            && writer.send(job).is_ok()
        {
            self.writes_in_flight += 1;
        }
    }

    /// All known awareness states, as one update.
    fn awareness_all(&self) -> Option<Bytes> {
        let clients: HashMap<_, _> = self
            .awareness
            .iter()
            .filter(|(_, e)| &*e.json != "null")
            .map(|(id, e)| {
                (
                    *id,
                    yrs::sync::awareness::AwarenessUpdateEntry {
                        clock: e.clock,
                        json: e.json.clone(),
                    },
                )
            })
            .collect();
        (!clients.is_empty()).then(|| encode(&YMessage::Awareness(AwarenessUpdate { clients })))
    }

    /// Records an awareness update; returns whether anything in it was new.
    fn take_awareness(&mut self, update: &AwarenessUpdate, owner: impl Fn() -> Owner) -> bool {
        let mut changed = false;
        for (id, entry) in &update.clients {
            let newer = self.awareness.get(id).is_none_or(|e| entry.clock >= e.clock);
            if newer {
                self.awareness.insert(
                    *id,
                    AwarenessEntry {
                        clock: entry.clock,
                        json: entry.json.clone(),
                        owner: owner(),
                    },
                );
                changed = true;
            }
        }
        changed
    }

    /// Marks awareness states as gone (clock + 1, state null) and tells local clients.
    fn drop_awareness(&mut self, ids: Vec<yrs::ClientID>) -> Option<AwarenessUpdate> {
        let mut clients = HashMap::new();
        for id in ids {
            if let Some(entry) = self.awareness.get_mut(&id) {
                entry.clock += 1;
                entry.json = Arc::from("null");
                clients.insert(
                    id,
                    yrs::sync::awareness::AwarenessUpdateEntry {
                        clock: entry.clock,
                        json: entry.json.clone(),
                    },
                );
            }
        }
        if clients.is_empty() {
            return None;
        }
        let update = AwarenessUpdate { clients };
        self.broadcast(&encode(&YMessage::Awareness(update.clone())), None);
        Some(update)
    }

    fn remove_client(&mut self, conn_id: ConnId, ctx: &mut Context<Self>) {
        if let Some(client) = self.clients.remove(&conn_id)
            && let Some(update) = self.drop_awareness(client.awareness_ids.into_iter().collect())
        {
            self.share_awareness(&update);
        }
        self.schedule_idle_stop(ctx);
    }

    fn share_awareness(&self, update: &AwarenessUpdate) {
        self.registry.share_awareness(self.artifact_id, &update.encode_v1());
    }

    fn handle_sync(&mut self, conn_id: ConnId, message: SyncMessage) {
        let Some(client) = self.clients.get(&conn_id) else {
            return;
        };
        match message {
            SyncMessage::SyncStep1(sv) => {
                // The document's state may be larger than the outbound budget; without it the
                // client has nothing, so it goes through whole (issue 11).
                let diff = self.doc.transact().encode_diff_v1(&sv);
                let step2 = encode(&YMessage::Sync(SyncMessage::SyncStep2(diff)));
                client.handle.send_whole(step2);
            }
            SyncMessage::SyncStep2(update) | SyncMessage::Update(update) => {
                if client.access != Access::Write {
                    // Read-only: refused, changes nothing (y-websocket has no error message).
                    tracing::debug!(conn = %conn_id, "update from a read-only client ignored");
                    return;
                }
                match yrs::Update::decode_v1(&update) {
                    Err(_) => {
                        client.handle.do_send(ToClient::Close {
                            code: 4400,
                            reason: "invalid Yjs update".into(),
                        });
                        return;
                    }
                    // A sync step 2 with nothing new (every reconnect sends one; v1 encodes it as
                    // "0 structs, empty delete set"): not a change.
                    Ok(_) if update.as_slice() == [0, 0] => return,
                    Ok(_) => {}
                }
                let (user, origin) = (client.user_id, client.handle.clone());
                self.enqueue(WriteJob {
                    user_id: Some(user),
                    update,
                    origin: Some(origin),
                    reply: None,
                });
            }
        }
    }
}

impl Actor for ArtifactEditor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let updates = UpdateWriter {
            topic: self.topic.clone(),
        };
        self.writer = Some(writer::spawn(
            self.registry.hub(),
            updates,
            self.registry.max_batch(),
            ctx.address().recipient(),
        ));
        let (pool, id) = (self.pool.clone(), self.artifact_id);
        let load = async move {
            let mut conn = pool.get().await?;
            store::load(&mut conn, id).await
        };
        ctx.wait(load.into_actor(self).map(|result, act, ctx| match result {
            Ok((doc, seq)) => {
                act.doc = doc;
                act.ordered.reset_to(seq);
                // Started for a REST call or a socket that never joined: don't linger.
                act.schedule_idle_stop(ctx);
            }
            Err(err) => {
                tracing::error!(error = %err, topic = %act.topic, "cannot load the document; stopping");
                ctx.stop();
            }
        }));
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.registry.unregister(self.artifact_id, &ctx.address());
        for client in self.clients.values() {
            client.handle.do_send(ToClient::Close {
                code: 1012,
                reason: "editor restarting; reconnect".into(),
            });
        }
    }
}

impl Handler<Join> for ArtifactEditor {
    type Result = ();

    fn handle(&mut self, msg: Join, _ctx: &mut Self::Context) {
        // Like the y-websocket server: our state vector first, then who is here.
        let sv = self.doc.transact().state_vector();
        msg.client
            .do_send(ToClient::Binary(encode(&YMessage::Sync(SyncMessage::SyncStep1(sv)))));
        if let Some(awareness) = self.awareness_all() {
            msg.client.do_send(ToClient::Binary(awareness));
        }
        let client = Client {
            user_id: msg.user_id,
            access: msg.access,
            handle: msg.client,
            awareness_ids: HashSet::new(),
        };
        self.clients.insert(msg.conn_id, client);
    }
}

impl Handler<Leave> for ArtifactEditor {
    type Result = ();

    /// A y-websocket client left, or a `/ws` client stopped watching.
    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) {
        if self.watchers.remove(&msg.conn).is_some() {
            self.schedule_idle_stop(ctx);
        } else {
            self.remove_client(msg.conn, ctx);
        }
    }
}

impl Handler<Incoming> for ArtifactEditor {
    type Result = ();

    fn handle(&mut self, msg: Incoming, _ctx: &mut Self::Context) {
        match msg.message {
            YMessage::Sync(sync) => self.handle_sync(msg.conn_id, sync),
            YMessage::Awareness(update) => {
                let conn_id = msg.conn_id;
                if let Some(client) = self.clients.get_mut(&conn_id) {
                    client.awareness_ids.extend(update.clients.keys().copied());
                }
                if self.take_awareness(&update, || Owner::Local) {
                    // To everyone, the sender included: stock providers treat 30 s of silence as
                    // a dead connection, and their awareness renewals are what keeps it alive.
                    self.broadcast(&encode(&YMessage::Awareness(update.clone())), None);
                    self.share_awareness(&update);
                }
            }
            YMessage::AwarenessQuery => {
                if let (Some(client), Some(all)) = (self.clients.get(&msg.conn_id), self.awareness_all()) {
                    client.handle.do_send(ToClient::Binary(all));
                }
            }
            YMessage::Auth(_) | YMessage::Custom(..) => {}
        }
    }
}

/// A JSON `/ws` client watches the durable watermark.
impl Handler<Subscription> for ArtifactEditor {
    type Result = ();

    fn handle(&mut self, msg: Subscription, _ctx: &mut Self::Context) {
        let subscribed = ServerFrame::Subscribed {
            reference: msg.reference.as_deref(),
            topic: &self.topic,
            head_seq: self.ordered.last_seq(),
            live: None,
        };
        msg.client.frame(subscribed.encode());
        self.watchers.insert(msg.conn, (msg.user_id, msg.client));
    }
}

impl Handler<Publish> for ArtifactEditor {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        self.accept(msg.0, ctx);
    }
}

impl Handler<RemoteAwareness> for ArtifactEditor {
    type Result = ();

    fn handle(&mut self, msg: RemoteAwareness, _ctx: &mut Self::Context) {
        let Ok(update) = AwarenessUpdate::decode_v1(&msg.update) else {
            return;
        };
        if self.take_awareness(&update, || Owner::Remote(msg.node)) {
            self.broadcast(&encode(&YMessage::Awareness(update)), None);
        }
    }
}

impl Handler<NodeDown> for ArtifactEditor {
    type Result = ();

    fn handle(&mut self, msg: NodeDown, _ctx: &mut Self::Context) {
        let gone: Vec<yrs::ClientID> = self
            .awareness
            .iter()
            .filter(|(_, e)| matches!(e.owner, Owner::Remote(n) if n == msg.0) && &*e.json != "null")
            .map(|(id, _)| *id)
            .collect();
        self.drop_awareness(gone);
    }
}

impl Handler<CatchUp> for ArtifactEditor {
    type Result = ();

    fn handle(&mut self, _msg: CatchUp, ctx: &mut Self::Context) {
        OrderedActor::fill_gap(self, ctx);
    }
}

impl Handler<RecheckAccess> for ArtifactEditor {
    type Result = ();

    fn handle(&mut self, msg: RecheckAccess, ctx: &mut Self::Context) {
        let editing = self.clients.iter().map(|(id, c)| (*id, c.user_id, c.access));
        let watching = self.watchers.iter().map(|(id, (user, _))| (*id, *user, Access::Read));
        let targets: Vec<(ConnId, Uuid, Access)> = editing
            .chain(watching)
            .filter(|(_, user, _)| msg.0.is_none_or(|u| u == *user))
            .collect();
        let id = self.artifact_id;
        let check = hub::revoked(self.pool.clone(), targets, move |conn, user_id, access| {
            Box::pin(async move {
                store::authorize_user(conn, user_id, id, access.permission())
                    .await
                    .map(drop)
            })
        });
        ctx.spawn(check.into_actor(self).map(|result, act, ctx| match result {
            Ok(revoked) => {
                for conn_id in revoked {
                    if let Some((_, watcher)) = act.watchers.remove(&conn_id) {
                        let err = AppError::new(ErrorCode::AccessRevoked, "your access to this artifact was revoked");
                        watcher.frame(error_frame(None, Some(&act.topic), &err));
                        watcher.do_send(ToClient::Dropped {
                            topic: act.topic.clone(),
                        });
                        act.schedule_idle_stop(ctx);
                        continue;
                    }
                    if let Some(client) = act.clients.get(&conn_id) {
                        let reason = "your access to this artifact was revoked".to_owned();
                        client.handle.do_send(ToClient::Close {
                            code: ErrorCode::AccessRevoked.close_code(),
                            reason,
                        });
                    }
                    act.remove_client(conn_id, ctx);
                }
            }
            Err(err) => tracing::warn!(error = %err, "artifact access re-check failed"),
        }));
    }
}

impl Handler<ReplaceText> for ArtifactEditor {
    type Result = ();

    fn handle(&mut self, msg: ReplaceText, _ctx: &mut Self::Context) {
        let current = store::text_of(&self.doc);
        let new_text = match msg.target {
            TextTarget::Exactly(text) => text,
            TextTarget::Merge {
                base,
                theirs,
                resolutions,
            } if resolutions.is_empty() => match textmerge::merge3(&base, &current, &theirs) {
                MergeOutcome::Clean(text) => text,
                MergeOutcome::Conflicts(conflicts) => {
                    let _ = msg.reply.send(Ok(Replaced::Conflicts(conflicts)));
                    return;
                }
            },
            TextTarget::Merge {
                base,
                theirs,
                resolutions,
            } => match textmerge::merge3_resolved(&base, &current, &theirs, &resolutions) {
                Ok(text) => text,
                Err(message) => {
                    let _ = msg.reply.send(Err(AppError::validation(message)));
                    return;
                }
            },
        };
        // Build the edits on a copy, so nothing changes here before the commit.
        let copy = Doc::new();
        let update = store::apply(&copy, &store::state_of(&self.doc))
            .map(|_| crate::artifacts::edit::replace_text(&copy, &current, &new_text));
        match update {
            Ok(Some(update)) => self.enqueue(WriteJob {
                user_id: Some(msg.author),
                update,
                origin: None,
                reply: Some(msg.reply),
            }),
            Ok(None) => {
                let _ = msg.reply.send(Ok(Replaced::Committed(self.ordered.last_seq())));
            }
            Err(err) => {
                let _ = msg.reply.send(Err(err));
            }
        }
    }
}

impl Handler<Current> for ArtifactEditor {
    type Result = Result<(Vec<u8>, String, i64), AppError>;

    fn handle(&mut self, _msg: Current, _ctx: &mut Self::Context) -> Self::Result {
        Ok((
            store::state_of(&self.doc),
            store::text_of(&self.doc),
            self.ordered.last_seq(),
        ))
    }
}

impl Handler<WritesDone> for ArtifactEditor {
    type Result = ();

    fn handle(&mut self, msg: WritesDone, ctx: &mut Self::Context) {
        self.writes_in_flight = self.writes_in_flight.saturating_sub(msg.0);
        self.schedule_idle_stop(ctx);
    }
}

impl OrderedActor for ArtifactEditor {
    type Item = Event;

    fn ordered(&mut self) -> &mut OrderedTopic<Event> {
        &mut self.ordered
    }

    fn apply(&mut self, event: Event, _ctx: &mut Context<Self>) {
        let Some(update) = store::update_of(&event) else {
            return;
        };
        if let Err(err) = store::apply(&self.doc, &update) {
            tracing::error!(error = %err, topic = %self.topic, seq = event.seq, "a committed update does not apply");
            return;
        }
        self.since_snapshot += 1;
        self.broadcast(&encode(&YMessage::Sync(SyncMessage::Update(update))), None);
    }

    /// Tells watchers the new durable watermark; compacts now and then.
    fn applied(&mut self, _before: i64, ctx: &mut Context<Self>) {
        let saved = ServerFrame::Saved {
            topic: &self.topic,
            seq: self.ordered.last_seq(),
        }
        .encode();
        for (_, watcher) in self.watchers.values() {
            watcher.frame(saved.clone());
        }
        if self.since_snapshot >= COMPACT_EVERY {
            self.compact(ctx);
        }
    }

    /// Reads what is missing from the snapshot and the log.
    fn fill_gap(&mut self, ctx: &mut Context<Self>) {
        let (pool, id, after) = (self.pool.clone(), self.artifact_id, self.ordered.last_seq());
        let load = async move {
            let mut conn = pool.get().await?;
            store::since(&mut conn, id, after).await
        };
        ctx.spawn(load.into_actor(self).map(|result, act, ctx| match result {
            Ok((snapshot, events)) => {
                if let Some((upto, state)) = snapshot
                    && upto > act.ordered.last_seq()
                {
                    // The log below `upto` was compacted away: take the snapshot.
                    if store::apply(&act.doc, &state).is_ok() {
                        act.broadcast(&encode(&YMessage::Sync(SyncMessage::Update(state))), None);
                        act.ordered.reset_to(upto);
                    }
                }
                act.accept(events, ctx);
            }
            Err(err) => tracing::warn!(error = %err, topic = %act.topic, "artifact catch-up failed"),
        }));
    }
}

/// Commits queued updates in groups; the editor applies and relays them only once they
/// are durable (they reach it through the hub, like anyone's).
struct UpdateWriter {
    topic: String,
}

impl GroupCommit for UpdateWriter {
    type Job = WriteJob;

    fn write<'c>(&'c self, conn: &'c mut AsyncPgConnection, jobs: &'c [WriteJob]) -> Written<'c> {
        Box::pin(async move {
            let first = events::reserve(conn, &self.topic, jobs.len() as i64).await?;
            let rows = jobs
                .iter()
                .map(|job| {
                    (
                        store::UPDATE_KIND,
                        store::update_data(&job.update, job.user_id),
                        job.user_id,
                    )
                })
                .collect();
            let committed = events::insert_many(conn, &self.topic, first, rows).await?;
            Ok(committed.into_iter().map(|event| Ok(vec![event])).collect())
        })
    }

    fn finish(&self, jobs: Vec<WriteJob>, outcomes: Vec<Outcome>) {
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            match outcome {
                Ok(events) => {
                    if let Some(reply) = job.reply {
                        let seq = events.last().map(|e| e.seq).unwrap_or(0);
                        let _ = reply.send(Ok(Replaced::Committed(seq)));
                    }
                }
                Err(err) => {
                    // Not committed: nobody was told. The sender reconnects and resyncs,
                    // which offers the update again.
                    tracing::error!(error = %err, topic = %self.topic, "artifact update not committed");
                    if let Some(origin) = &job.origin {
                        origin.do_send(ToClient::Close {
                            code: 1011,
                            reason: "update not saved; resync".into(),
                        });
                    }
                    if let Some(reply) = job.reply {
                        let _ = reply.send(Err(err));
                    }
                }
            }
        }
    }
}
