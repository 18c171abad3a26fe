//! Per-tenant credentials derived from the platform secret.
//!
//! A retry of an allocation must produce the same credential it produced before its lost
//! response, and no credential may travel through the workflow history. Deriving each one
//! with HMAC-SHA256 from the platform secret, the tenant id, the incarnation and a purpose
//! gives both.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// What a derived secret is for; each purpose yields an unrelated value.
#[derive(Clone, Copy, Debug)]
pub enum Purpose {
    DatabasePassword,
    InvitationCode,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Self::DatabasePassword => "database-password",
            Self::InvitationCode => "invitation-code",
        }
    }
}

/// A secret string: its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value built from derived secrets (e.g. a connection URL with a password).
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// 256 bits, hex-encoded, for `purpose` of one tenant incarnation.
pub fn derive(key: &[u8], tenant_id: Uuid, incarnation: i32, purpose: Purpose) -> Secret {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(purpose.label().as_bytes());
    mac.update(b"\0");
    mac.update(tenant_id.as_bytes());
    mac.update(&incarnation.to_be_bytes());
    Secret(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_stable_and_separated() {
        let id = Uuid::from_u128(7);
        let a = derive(b"k", id, 1, Purpose::DatabasePassword);
        assert_eq!(a, derive(b"k", id, 1, Purpose::DatabasePassword));
        assert_ne!(a, derive(b"k", id, 2, Purpose::DatabasePassword));
        assert_ne!(a, derive(b"k", id, 1, Purpose::InvitationCode));
        assert_ne!(a, derive(b"other", id, 1, Purpose::DatabasePassword));
        assert_eq!(a.expose().len(), 64);
        assert_eq!(format!("{a:?}"), "Secret(..)");
    }
}
