//! A feature as the server wires it: its HTTP routes (each registered with its OpenAPI
//! path, so the route list is written once) and, when it serves a topic kind, its room.
//! `app.rs` lists the features; nothing else names them.

use crate::cluster::{Bus, Hub, Room};
use crate::config::Config;
use crate::db::DbPool;
use std::sync::{Arc, Weak};
use utoipa_actix_web::service_config::ServiceConfig;

/// What a room is built from.
pub struct RoomContext<'a> {
    /// The hub the room is registered in (being built: upgrade it once the server runs).
    pub hub: Weak<Hub>,
    pub pool: &'a DbPool,
    pub bus: &'a Arc<Bus>,
    pub config: &'a Config,
}

/// Builds a feature's room.
pub type BuildRoom = fn(&RoomContext) -> anyhow::Result<Arc<dyn Room>>;

pub struct Feature {
    pub name: &'static str,
    /// Routes under `/api` (behind authentication), with their OpenAPI paths.
    pub api: fn(&mut ServiceConfig),
    /// Its room, when the feature serves a topic kind.
    pub room: Option<BuildRoom>,
    /// Routes outside `/api` (WebSocket endpoints), without OpenAPI paths.
    pub public: fn(&mut actix_web::web::ServiceConfig),
}

/// For a feature without routes of that kind.
pub fn none<T: ?Sized>(_: &mut T) {}

impl Feature {
    /// A feature with `/api` routes only.
    pub const fn new(name: &'static str, api: fn(&mut ServiceConfig)) -> Self {
        Self {
            name,
            api,
            room: None,
            public: none,
        }
    }

    /// … that serves a topic kind with this room.
    pub const fn room(self, build: BuildRoom) -> Self {
        Self {
            room: Some(build),
            ..self
        }
    }

    /// … with routes outside `/api`.
    pub const fn public(self, public: fn(&mut actix_web::web::ServiceConfig)) -> Self {
        Self { public, ..self }
    }
}

/// A feature's `/api` routes: each handler registered once, with its OpenAPI path.
#[macro_export]
macro_rules! routes {
    ($($handler:path),* $(,)?) => {
        |cfg: &mut utoipa_actix_web::service_config::ServiceConfig| {
            $(cfg.service($handler);)*
        }
    };
}
