//! `ProposalActor`: one per open proposal, on the node that opened it (DESIGN: "each …
//! proposal … is an Actix actor"). It holds the expiry timer; the proposal's state is in
//! Postgres, and votes from any node decide it in their own transactions. When the timer
//! fires it ends the proposal `expired` (if nothing else ended it first) and stops; when
//! this node resolves it earlier, it stops at once. If this node dies, a survivor's
//! heartbeat sweep expires the proposal instead (`room::Proposals::sweep`).

use crate::cluster::hub::{CatchUp, NodeDown, Publish, RecheckAccess};
use crate::proposals::room::Proposals;
use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How soon to try again when the database's clock says it is not due yet, or the row is
/// held by another transaction.
const RETRY: Duration = Duration::from_millis(250);
/// … and after a database error.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// The proposal was resolved: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resolved;

pub struct ProposalActor {
    id: Uuid,
    expires_at: DateTime<Utc>,
    room: Arc<Proposals>,
}

impl ProposalActor {
    pub fn new(id: Uuid, expires_at: DateTime<Utc>, room: Arc<Proposals>) -> Self {
        Self { id, expires_at, room }
    }

    fn schedule(&self, ctx: &mut Context<Self>, after: Duration) {
        ctx.run_later(after, |act, ctx| act.fire(ctx));
    }

    fn fire(&mut self, ctx: &mut Context<Self>) {
        let room = self.room.clone();
        let id = self.id;
        ctx.spawn(
            async move { room.try_expire(id).await }
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(true) => act.schedule(ctx, RETRY),
                    Ok(false) => ctx.stop(),
                    Err(err) => {
                        tracing::warn!(proposal = %act.id, error = %err, "expiring a model proposal failed; retrying");
                        act.schedule(ctx, RETRY_AFTER_ERROR);
                    }
                }),
        );
    }
}

impl Actor for ProposalActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let left = (self.expires_at - Utc::now()).to_std().unwrap_or_default();
        self.schedule(ctx, left);
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.room.unregister(self.id, &ctx.address());
    }
}

impl Handler<Resolved> for ProposalActor {
    type Result = ();

    fn handle(&mut self, _: Resolved, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

// The hub's defaults reach every room's actors with these; proposals have no topic of
// their own, so there is nothing to deliver, drop or re-check.
impl Handler<Publish> for ProposalActor {
    type Result = ();
    fn handle(&mut self, _: Publish, _: &mut Self::Context) {}
}

impl Handler<NodeDown> for ProposalActor {
    type Result = ();
    fn handle(&mut self, _: NodeDown, _: &mut Self::Context) {}
}

impl Handler<CatchUp> for ProposalActor {
    type Result = ();
    fn handle(&mut self, _: CatchUp, _: &mut Self::Context) {}
}

impl Handler<RecheckAccess> for ProposalActor {
    type Result = ();
    fn handle(&mut self, _: RecheckAccess, _: &mut Self::Context) {}
}
