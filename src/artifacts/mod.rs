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

/// Artifacts: REST, versions, the y-websocket endpoint and the `artifact` room.
pub const FEATURE: crate::feature::Feature = crate::feature::Feature {
    name: "artifacts",
    api: |cfg| {
        cfg.service(handlers::create_artifact)
            .service(handlers::list_artifacts)
            .service(handlers::get_artifact)
            .service(handlers::rename_artifact)
            .service(handlers::delete_artifact)
            .service(handlers::create_connect_token)
            .service(versions::save_version)
            .service(versions::list_versions)
            .service(versions::get_version)
            .service(versions::diff_versions)
            .service(versions::revert_version)
            .service(versions::create_branch)
            .service(versions::merge_branch);
    },
    room: Some(registry::Editors::build),
    public: |cfg| {
        cfg.route("/ws/artifacts/{id}", actix_web::web::get().to(socket::connect));
    },
};
