//! Collaborative artifacts: Yjs documents edited live over the y-websocket protocol, with
//! a durable update log, snapshots, versions, diffs, reverts, branches and merges.

pub mod edit;
pub mod editor;
pub mod handlers;
pub mod registry;
pub mod socket;
pub mod store;
pub mod textmerge;
pub mod versions;
