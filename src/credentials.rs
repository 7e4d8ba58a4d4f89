//! Which credential each open WebSocket stands on, so that ending a credential (revoking an
//! artifact token, logging out, disabling an account) closes its sockets on every node: the
//! node that ends it closes its own and sends [`Revoked`] on the bus for the others.

use crate::error::ErrorCode;
use crate::transport::{ConnId, ServerClose};
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// What an open socket was authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    pub user: Uuid,
    /// The login session behind it (a Bearer session, or the session that issued the
    /// ticket or artifact token); `None` for credentials issued before sessions were recorded.
    pub login_session: Option<Uuid>,
    /// The artifact connect token (`/ws/artifacts` sockets only).
    pub artifact_token: Option<Uuid>,
}

/// Credentials that just ended; every socket standing on one of them closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Revoked {
    /// Every socket of the user (account disabled).
    User { user: Uuid },
    /// Every socket opened under this login session (logout).
    LoginSession { user: Uuid, session: Uuid },
    /// The sockets opened with these artifact tokens.
    ArtifactTokens { user: Uuid, tokens: Vec<Uuid> },
}

impl Revoked {
    fn covers(&self, credential: &Credential) -> bool {
        match self {
            Revoked::User { user } => credential.user == *user,
            Revoked::LoginSession { user, session } => {
                credential.user == *user && credential.login_session == Some(*session)
            }
            Revoked::ArtifactTokens { user, tokens } => {
                credential.user == *user && credential.artifact_token.is_some_and(|t| tokens.contains(&t))
            }
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Revoked::User { .. } => "this account was disabled",
            Revoked::LoginSession { .. } => "logged out",
            Revoked::ArtifactTokens { .. } => "this connect token was revoked",
        }
    }
}

/// This node's sockets by credential.
#[derive(Default)]
pub struct Sockets {
    open: Mutex<HashMap<ConnId, (Credential, Recipient<ServerClose>)>>,
}

impl Sockets {
    pub fn register(&self, id: ConnId, credential: Credential, addr: Recipient<ServerClose>) {
        self.open.lock().expect("sockets lock").insert(id, (credential, addr));
    }

    pub fn unregister(&self, id: ConnId) {
        self.open.lock().expect("sockets lock").remove(&id);
    }

    /// Closes this node's sockets that stand on a revoked credential with `access_revoked`
    /// (4403); returns how many.
    pub fn close(&self, revoked: &Revoked) -> usize {
        let open = self.open.lock().expect("sockets lock");
        let mut closed = 0;
        for (credential, addr) in open.values() {
            if revoked.covers(credential) {
                addr.do_send(ServerClose {
                    code: ErrorCode::AccessRevoked.close_code(),
                    reason: revoked.reason().to_owned(),
                });
                closed += 1;
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_cover_exactly_their_sockets() {
        let (user, other, session, token) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let ws = Credential {
            user,
            login_session: Some(session),
            artifact_token: None,
        };
        let editor = Credential {
            artifact_token: Some(token),
            ..ws
        };
        let elsewhere = Credential {
            login_session: Some(Uuid::new_v4()),
            artifact_token: None,
            ..ws
        };
        let logout = Revoked::LoginSession { user, session };
        assert!(logout.covers(&ws) && logout.covers(&editor) && !logout.covers(&elsewhere));
        let revoke = Revoked::ArtifactTokens {
            user,
            tokens: vec![token],
        };
        assert!(revoke.covers(&editor) && !revoke.covers(&ws));
        let stranger = Revoked::ArtifactTokens {
            user: other,
            tokens: vec![token],
        };
        assert!(!stranger.covers(&editor));
        let disabled = Revoked::User { user };
        assert!(disabled.covers(&ws) && disabled.covers(&elsewhere));
    }
}
