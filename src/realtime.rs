//! Cross-feature real-time plumbing: telling every live actor (sessions, artifact editors),
//! on this node and the others, that someone's access changed.

use crate::app::AppState;
use crate::cluster::Ephemeral;
use uuid::Uuid;

/// A member's standing in a workspace changed (`user` None = everyone's): live
/// subscriptions and editing sockets re-check, everywhere.
pub fn access_changed(state: &AppState, workspace: Uuid, user: Option<Uuid>) {
    state.live.recheck_workspace(workspace, user);
    state.editors.recheck_workspace(workspace, user);
    state.bus.ephemeral(Ephemeral::Access { workspace, user });
}
