//! Collaborative artifacts: Yjs documents edited live over the y-websocket protocol, with
//! a durable update log, snapshots, versions, diffs, reverts, branches and merges.

use crate::feature::Feature;
use crate::routes;

pub mod edit;
pub mod editor;
pub mod handlers;
pub mod registry;
pub mod socket;
pub mod store;
pub mod textmerge;
pub mod tokens;
pub mod versions;

/// Artifacts: REST, versions, the y-websocket endpoint and the `artifact` room.
pub const FEATURE: Feature = Feature::new(
    "artifacts",
    routes! {
        handlers::create_artifact, handlers::list_artifacts, handlers::get_artifact, handlers::rename_artifact,
        handlers::delete_artifact, handlers::create_connect_token,
        tokens::list_artifact_tokens, tokens::revoke_artifact_token, tokens::revoke_artifact_token_by_value,
        tokens::revoke_all_artifact_tokens,
        versions::save_version, versions::list_versions, versions::get_version, versions::diff_versions,
        versions::revert_version, versions::create_branch, versions::merge_branch,
    },
)
.room(registry::Editors::build)
.public(|cfg| {
    cfg.route("/ws/artifacts/{id}", actix_web::web::get().to(socket::connect));
});
