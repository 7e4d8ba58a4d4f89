//! bedda-collab: the real-time collaboration server behind bedda.ai.
//! See docs/ARCHITECTURE.md for how the pieces fit.

pub mod admin;
pub mod ai;
pub mod api;
pub mod app;
pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod db;
pub mod directory;
pub mod error;
pub mod events;
pub mod feature;
pub mod gateway;
pub mod janitor;
pub mod mail;
pub mod openapi;
pub mod pagination;
pub mod proposals;
pub mod redact;
pub mod sessions;
pub mod state;
pub mod sys;
pub mod transport;
pub mod validate;
pub mod workspaces;
