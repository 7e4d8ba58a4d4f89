//! Live chat sessions: REST management, the per-session `LiveSession` actor, the
//! durable writes behind it, and the registry of running actors.

use crate::feature::Feature;
use crate::routes;

pub mod access;
pub mod ai;
pub mod events;
pub mod handlers;
pub mod live;
pub mod presence;
pub mod protocol;
pub mod registry;
pub mod replay;
pub mod store;
pub mod writer;

/// Live chat sessions: REST and the `session` room.
pub const FEATURE: Feature = Feature::new(
    "sessions",
    routes! {
        handlers::create_session, handlers::list_sessions, handlers::get_session, handlers::update_session,
        handlers::archive_session, handlers::unarchive_session, handlers::list_participants,
        handlers::add_participant, handlers::remove_participant, handlers::list_messages,
    },
)
.room(registry::LiveSessions::build);
