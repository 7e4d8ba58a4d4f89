//! Opaque bearer secrets (login sessions, API tokens, invitations, tickets). Secrets are
//! 32 random bytes; only their SHA-256 is ever stored. Passwords: `auth::hashing`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng;
use rand::rngs::SysRng;
use sha2::{Digest, Sha256};

/// The kinds of secret we hand out; the prefix tells them apart at a glance (and lets
/// secret scanners recognise leaked ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    Session,
    ApiToken,
    Invitation,
    ConnectTicket,
    ArtifactToken,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::Session => "bcs_",
            SecretKind::ApiToken => "bct_",
            SecretKind::Invitation => "bci_",
            SecretKind::ConnectTicket => "bcw_",
            SecretKind::ArtifactToken => "bca_",
        }
    }

    /// Which kind a presented secret claims to be.
    pub fn of(secret: &str) -> Option<SecretKind> {
        [
            SecretKind::Session,
            SecretKind::ApiToken,
            SecretKind::Invitation,
            SecretKind::ConnectTicket,
            SecretKind::ArtifactToken,
        ]
        .into_iter()
        .find(|k| secret.starts_with(k.prefix()))
    }
}

/// A new random secret of the given kind, with its hash for storage.
pub fn generate(kind: SecretKind) -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    SysRng.try_fill_bytes(&mut bytes).expect("the OS random source");
    let secret = format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&secret);
    (secret, hash)
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let (a, ha) = generate(SecretKind::ApiToken);
        let (b, _) = generate(SecretKind::ApiToken);
        assert_ne!(a, b);
        assert!(a.starts_with("bct_"));
        assert_eq!(SecretKind::of(&a), Some(SecretKind::ApiToken));
        assert_eq!(ha, hash(&a));
        assert_eq!(ha.len(), 32);
    }
}
