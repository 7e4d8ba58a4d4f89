//! The one integration test binary: every test runs the real server against its own database.

mod ai;
mod artifacts;
mod cluster;
mod common;
mod foundation;
mod proposals;
mod sessions;
mod tokens;
