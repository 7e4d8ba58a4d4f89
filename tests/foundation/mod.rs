//! Tests of the foundation: accounts, workspaces, members, permissions, invitations,
//! API tokens, audit log, errors and docs.

mod accounts;
mod api_tokens;
mod audit;
mod errors;
mod generated;
mod invitations;
mod mail;
mod nul;
mod permission_matrix;
mod workspaces;
