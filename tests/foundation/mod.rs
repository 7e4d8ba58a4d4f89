//! Tests of the foundation: accounts, workspaces, members, permissions, invitations,
//! API tokens, audit log, errors and docs.

mod accounts;
mod permission_matrix;
