//! Tests of the foundation: accounts, workspaces, members, permissions, invitations,
//! API tokens, audit log, errors and docs.

mod accounts;
mod api_tokens;
mod audit;
mod auth_limits;
mod echo;
mod errors;
mod from_address;
mod generated;
mod hashing;
mod invitations;
mod mail;
mod nul;
mod permission_matrix;
mod readme;
mod workspaces;
