//! `Proposals`, the `proposal` room: the node's proposal actors (one per open proposal it
//! opened, holding the expiry timer), the changes every path shares (propose, vote,
//! withdraw: commit, publish, tell the actor), and the heartbeat sweep that expires
//! overdue proposals of any node — so a proposal whose node died still ends on time, once.
//! Clients never subscribe to `proposal:` topics: proposals live on their session's topic.

use crate::cluster::hub::{Link, Subscription, TopicActors};
use crate::cluster::{Hub, Room};
use crate::db::DbPool;
use crate::directory::Directory;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::{self, Event};
use crate::feature::RoomContext;
use crate::proposals::actor::{ProposalActor, Resolved};
use crate::proposals::rules::Vote;
use crate::proposals::store::{self, NewProposal, ProposalRow, Target};
use crate::sessions::access::session_access;
use actix::prelude::*;
use futures_util::future::BoxFuture;
use scoped_futures::ScopedFutureExt;
use std::any::Any;
use std::sync::{Arc, Weak};
use uuid::Uuid;

pub const KIND: &str = "proposal";

/// Overdue proposals expired per heartbeat (the rest wait for the next beat).
const SWEEP_BATCH: i64 = 100;

pub struct Proposals {
    pool: DbPool,
    hub: Weak<Hub>,
    bus: Arc<crate::cluster::Bus>,
    actors: Directory<ProposalActor>,
}

impl Proposals {
    pub fn build(ctx: &RoomContext) -> anyhow::Result<Arc<dyn Room>> {
        Ok(Arc::new(Self {
            pool: ctx.pool.clone(),
            hub: ctx.hub.clone(),
            bus: ctx.bus.clone(),
            actors: Directory::default(),
        }))
    }

    pub fn hub(&self) -> Arc<Hub> {
        self.hub.upgrade().expect("the hub outlives its rooms")
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub(crate) fn unregister(&self, id: Uuid, addr: &Addr<ProposalActor>) {
        self.actors.remove(id, addr);
    }

    /// The model ids clients may choose (`GET /api/models`).
    fn models(&self) -> Vec<String> {
        let live = self.hub().get::<crate::sessions::registry::LiveSessions>();
        live.ai().models().into_iter().map(|m| m.id).collect()
    }

    /// Opens a proposal in `session_id` as `user`; its actor starts here. Returns the row
    /// and the seq of its `proposal.created`.
    pub async fn propose(
        self: &Arc<Self>,
        session_id: Uuid,
        user: Uuid,
        model: String,
        reasoning: String,
        expires_in_seconds: Option<u64>,
    ) -> AppResult<(ProposalRow, i64)> {
        let new = NewProposal::new(model, reasoning, expires_in_seconds, &self.models())?;
        let node = self.bus.node_id().0;
        let hub = self.hub();
        let mut conn = self.pool.get().await?;
        let (row, workspace, seq) = events::commit(&mut conn, &hub, move |conn| {
            async move {
                let access = session_access(conn, session_id, user).await?;
                let (row, events) = store::create(conn, &access, new, node).await?;
                let seq = last_seq(&events);
                Ok(((row, access.session.workspace_id, seq), events))
            }
            .scope_boxed()
        })
        .await?
        .publish(&hub);
        drop(conn);
        self.watch(&row, workspace);
        Ok((row, seq))
    }

    /// Casts or changes a vote; returns the proposal after it and the seq of the last event.
    pub async fn vote(&self, target: Target, vote: Vote, comment: Option<String>) -> AppResult<(ProposalRow, i64)> {
        let comment = store::validate_comment(comment)?;
        self.change(move |conn| async move { store::vote(conn, target, vote, comment).await }.scope_boxed())
            .await
    }

    /// Withdraws (the proposer) or cancels (`manage_sessions`) an open proposal.
    pub async fn withdraw(&self, target: Target) -> AppResult<(ProposalRow, i64)> {
        self.change(move |conn| async move { store::withdraw(conn, target).await }.scope_boxed())
            .await
    }

    async fn change<F>(&self, work: F) -> AppResult<(ProposalRow, i64)>
    where
        F: for<'r> FnOnce(
                &'r mut diesel_async::AsyncPgConnection,
            )
                -> scoped_futures::ScopedBoxFuture<'static, 'r, AppResult<(ProposalRow, Vec<Event>)>>
            + Send
            + 'static,
    {
        let hub = self.hub();
        let mut conn = self.pool.get().await?;
        let (row, seq) = events::commit(&mut conn, &hub, move |conn| {
            async move {
                let (row, events) = work(conn).await?;
                let seq = last_seq(&events);
                Ok(((row, seq), events))
            }
            .scope_boxed()
        })
        .await?
        .publish(&hub);
        if row.status != crate::proposals::rules::Status::Open.as_str() {
            self.ended(row.id);
        }
        Ok((row, seq))
    }

    /// Starts the actor holding an open proposal's expiry timer on this node.
    fn watch(self: &Arc<Self>, row: &ProposalRow, workspace: Uuid) {
        let room = self.clone();
        let (id, expires_at) = (row.id, row.expires_at);
        self.actors
            .get_or_start(id, workspace, move || ProposalActor::new(id, expires_at, room).start());
    }

    /// The proposal was resolved: its actor here (if any) stops.
    fn ended(&self, id: Uuid) {
        if let Some(addr) = self.actors.get(id) {
            addr.do_send(Resolved);
        }
    }

    /// Ends the proposal `expired` when it is due. `Ok(true)` while it stays open (not due
    /// by the database's clock yet, or another transaction holds it).
    /// (Boxed here, where its lifetimes are concrete, so the heartbeat's future is `Send`.)
    pub fn try_expire(&self, id: Uuid) -> BoxFuture<'static, AppResult<bool>> {
        let (pool, hub) = (self.pool.clone(), self.hub());
        let room = hub.get::<Proposals>();
        Box::pin(async move {
            let mut conn = pool.get().await?;
            let expired = events::commit(&mut conn, &hub, move |conn| {
                async move {
                    Ok(match store::expire(conn, id).await? {
                        Some((row, events)) => (Some(row), events),
                        None => (None, Vec::new()),
                    })
                }
                .scope_boxed()
            })
            .await?
            .publish(&hub);
            if expired.is_some() {
                room.ended(id);
                return Ok(false);
            }
            store::still_open(&mut conn, id).await
        })
    }

    /// Expires every overdue open proposal, whichever node opened it (each in its own
    /// transaction; the row lock and the status check make each end once).
    async fn sweep(&self) -> AppResult<usize> {
        let due = {
            let mut conn = self.pool.get().await?;
            store::overdue_ids(&mut conn, SWEEP_BATCH).await?
        };
        let mut expired = 0;
        for id in due {
            if !self.try_expire(id).await? {
                expired += 1;
            }
        }
        Ok(expired)
    }
}

/// The seq of the last event written (0 when none).
fn last_seq(events: &[Event]) -> i64 {
    events.last().map(|e| e.seq).unwrap_or(0)
}

impl Room for Proposals {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn actors(&self) -> &dyn TopicActors {
        &self.actors
    }

    /// Proposals are events on their session's topic; `proposal:<id>` is not a topic.
    fn subscribable(&self) -> bool {
        false
    }

    /// Never called (not subscribable); kept as the same refusal for safety.
    fn subscribe(self: Arc<Self>, _id: Uuid, _sub: Subscription) -> BoxFuture<'static, AppResult<Link>> {
        Box::pin(async {
            Err(AppError::new(
                ErrorCode::UnknownTopic,
                "proposals are events on their session's topic: subscribe to `session:<id>`",
            ))
        })
    }

    /// Expires the overdue proposals of every node (those of dead nodes included).
    fn heartbeat<'a>(&'a self, _hub: &'a Hub) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match self.sweep().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "expired overdue model proposals"),
                Err(err) => tracing::warn!(error = %err, "expiring overdue model proposals failed"),
            }
        })
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
