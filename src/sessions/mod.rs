//! Live chat sessions: REST management, the per-session `LiveSession` actor, the
//! durable writes behind it, and the registry of running actors.

pub mod access;
pub mod ai;
pub mod events;
pub mod handlers;
pub mod live;
pub mod presence;
pub mod protocol;
pub mod registry;
pub mod store;
pub mod writer;

/// Live chat sessions: REST and the `session` room.
pub const FEATURE: crate::feature::Feature = crate::feature::Feature {
    name: "sessions",
    api: |cfg| {
        cfg.service(handlers::create_session)
            .service(handlers::list_sessions)
            .service(handlers::get_session)
            .service(handlers::update_session)
            .service(handlers::archive_session)
            .service(handlers::unarchive_session)
            .service(handlers::list_participants)
            .service(handlers::add_participant)
            .service(handlers::remove_participant)
            .service(handlers::list_messages);
    },
    room: Some(registry::LiveSessions::build),
    public: crate::feature::none,
};
