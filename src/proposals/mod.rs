//! Model proposals (issue 13, seed 2.2): a participant proposes the model a session uses,
//! the eligible voters vote, and the rules decide exactly once cluster-wide; an approval
//! changes the session's model. Events ride the session's log; each open proposal is an
//! actor on the node that opened it (its expiry timer), and any node's heartbeat expires
//! what a dead node left (docs/ARCHITECTURE.md, "The proposals room").

use crate::feature::Feature;
use crate::routes;

pub mod actor;
pub mod frames;
pub mod handlers;
pub mod room;
pub mod rules;
pub mod store;

pub use frames::ProposalAction;

pub const FEATURE: Feature = Feature::new(
    "proposals",
    routes! {
        handlers::list_proposals,
        handlers::get_proposal,
        handlers::create_proposal,
        handlers::vote_proposal,
        handlers::withdraw_proposal,
    },
)
.room(room::Proposals::build);
