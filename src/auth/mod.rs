//! Accounts and credentials: registration, login sessions, the bearer-token middleware,
//! the permission catalogue and the `authorize` check.

use crate::feature::Feature;
use crate::routes;

pub mod authorize;
pub mod handlers;
pub mod hashing;
pub mod limits;
pub mod permissions;
pub mod principal;
pub mod secrets;

use handlers::{login, logout, me, register};

pub use authorize::{Access, access, authorize, authorized};
pub use permissions::{Permission, PermissionSet, Role};
pub use principal::{Auth, AuthUser, Principal, RequestMeta, UserAuth};

/// Accounts and login sessions.
pub const FEATURE: Feature = Feature::new("accounts", routes! { register, login, logout, me });
