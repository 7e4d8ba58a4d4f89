//! Live chat sessions: REST management, the per-session `LiveSession` actor, the
//! durable writes behind it, and the registry of running actors.

pub mod access;
pub mod ai;
pub mod handlers;
pub mod live;
pub mod presence;
pub mod registry;
pub mod store;
pub mod writer;
