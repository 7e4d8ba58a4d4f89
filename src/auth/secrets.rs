//! Opaque bearer secrets (login sessions, API tokens, invitations) and password hashing.
//! Secrets are 32 random bytes; only their SHA-256 is ever stored.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};
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

/// Argon2id with the configured memory cost.
#[derive(Clone)]
pub struct PasswordHashing {
    params: Params,
    /// A hash of a random password, verified against when the account does not exist so
    /// that a failed login takes the same time either way.
    dummy_hash: String,
}

impl PasswordHashing {
    pub fn new(memory_kib: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
        let mut this = Self {
            params,
            dummy_hash: String::new(),
        };
        let (random, _) = generate(SecretKind::Session);
        this.dummy_hash = this.hash(&random)?;
        Ok(this)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    pub fn hash(&self, password: &str) -> anyhow::Result<String> {
        self.argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    }

    /// Verifies `password` against a stored hash, or against the dummy hash when there is
    /// no account (always false then).
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let target = stored.unwrap_or(&self.dummy_hash);
        let ok = PasswordHash::new(target)
            .map(|parsed| self.argon2().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false);
        ok && stored.is_some()
    }
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

    #[test]
    fn passwords_verify_only_when_right() {
        let hashing = PasswordHashing::new(1024).unwrap();
        let stored = hashing.hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(hashing.verify("correct horse", Some(&stored)));
        assert!(!hashing.verify("wrong", Some(&stored)));
        assert!(!hashing.verify("correct horse", None));
    }
}
