//! Accounts and credentials: registration, login sessions, the bearer-token middleware,
//! the permission catalogue and the `authorize` check.

pub mod authorize;
pub mod handlers;
pub mod permissions;
pub mod principal;
pub mod rate_limit;
pub mod secrets;

pub use authorize::{Access, access, authorize};
pub use permissions::{Permission, PermissionSet, Role};
pub use principal::{Auth, Principal, RequestMeta, UserAuth};

/// Accounts and login sessions.
pub const FEATURE: crate::feature::Feature = crate::feature::Feature {
    name: "accounts",
    api: |cfg| {
        cfg.service(handlers::register)
            .service(handlers::login)
            .service(handlers::logout)
            .service(handlers::me);
    },
    room: None,
    public: crate::feature::none,
};
