//! The tenant's realm in the control-plane store: its Ed25519 signing key pair and the
//! first admin's invitation.
//!
//! Owns the `realms` and `invitations` rows of a tenant. The invitation code itself is
//! derived from the platform secret whenever it is needed and never stored, logged or put
//! in an error: only its SHA-256 is kept. Must never touch another tenant's rows, nor
//! write a realm for an incarnation that is not the tenant's current one.

use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tenant_domain::{Allocation, ResourceKind, TenantSpec};
use tracing::{info, instrument};

use crate::secrets::{self, Purpose, Secret};
use crate::{ActivitiesConfig, StepError, StepResult};

/// How long the first admin's invitation stays redeemable.
const INVITATION_VALIDITY: &str = "7 days";

/// The realms of tenants, kept in the control-plane store.
pub struct Identity {
    cfg: Arc<ActivitiesConfig>,
    store: tenant_store::Store,
}

impl Identity {
    pub fn new(cfg: Arc<ActivitiesConfig>, store: tenant_store::Store) -> Self {
        Self { cfg, store }
    }

    /// Creates the tenant's signing key pair and its first admin's invitation, or adopts
    /// them when this incarnation already has them; a realm of an earlier incarnation is
    /// replaced. One transaction: a retry never finds half a realm.
    #[instrument(
        name = "identity.allocate",
        skip_all,
        fields(tenant = %spec.names.host, incarnation = spec.incarnation)
    )]
    pub async fn allocate(&self, spec: &TenantSpec) -> StepResult<Allocation> {
        let tenant_id = spec.tenant_id();
        let mut tx = self.store.pool().begin().await?;

        // Locking the tenant row serialises concurrent attempts for the same tenant and
        // proves the incarnation we were asked for is the current one.
        let current: Option<i32> =
            sqlx::query_scalar("SELECT incarnation FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?;
        match current {
            None => {
                return Err(StepError::permanent(
                    "TenantMissing",
                    format!("tenant {tenant_id} is not in the control-plane store"),
                ));
            }
            Some(current) if current != spec.incarnation => {
                return Err(StepError::permanent(
                    "StaleIncarnation",
                    format!(
                        "tenant {tenant_id} is in incarnation {current}, not {}: refusing to replace its realm",
                        spec.incarnation
                    ),
                ));
            }
            Some(_) => {}
        }

        let existing: Option<(i32, String)> =
            sqlx::query_as("SELECT incarnation, key_id FROM realms WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (key_id, adopted) = match existing {
            Some((incarnation, key_id)) if incarnation == spec.incarnation => (key_id, true),
            _ => {
                let realm = new_realm()?;
                sqlx::query(
                    "INSERT INTO realms (tenant_id, incarnation, key_id, private_key, public_jwk)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (tenant_id) DO UPDATE SET
                         incarnation = EXCLUDED.incarnation, key_id = EXCLUDED.key_id,
                         private_key = EXCLUDED.private_key, public_jwk = EXCLUDED.public_jwk,
                         created_at = now()",
                )
                .bind(tenant_id)
                .bind(spec.incarnation)
                .bind(&realm.key_id)
                .bind(realm.private_key_pem.as_str())
                .bind(&realm.public_jwk)
                .execute(&mut *tx)
                .await?;
                (realm.key_id, false)
            }
        };

        // Kept as is when this incarnation already has one: a retry must not extend it.
        let code_sha256 = Sha256::digest(self.invitation_code(spec).expose().as_bytes()).to_vec();
        sqlx::query(&format!(
            "INSERT INTO invitations (tenant_id, incarnation, email, code_sha256, expires_at)
             VALUES ($1, $2, $3, $4, now() + interval '{INVITATION_VALIDITY}')
             ON CONFLICT (tenant_id) DO UPDATE SET
                 incarnation = EXCLUDED.incarnation, email = EXCLUDED.email,
                 code_sha256 = EXCLUDED.code_sha256, expires_at = EXCLUDED.expires_at,
                 redeemed_at = NULL, created_at = now()
             WHERE invitations.incarnation <> EXCLUDED.incarnation"
        ))
        .bind(tenant_id)
        .bind(spec.incarnation)
        .bind(&spec.request.first_admin_email)
        .bind(code_sha256)
        .execute(&mut *tx)
        .await?;

        tx.commit().await?;
        info!(key_id = %key_id, adopted, "realm allocated");
        Ok(Allocation {
            kind: ResourceKind::Identity,
            name: key_id,
            adopted,
        })
    }

    /// Deletes the tenant's realm and invitation. Nothing to delete is success.
    #[instrument(
        name = "identity.release",
        skip_all,
        fields(tenant = %spec.names.host, incarnation = spec.incarnation)
    )]
    pub async fn release(&self, spec: &TenantSpec) -> StepResult<()> {
        let tenant_id = spec.tenant_id();
        let mut tx = self.store.pool().begin().await?;
        let invitations = sqlx::query("DELETE FROM invitations WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let realms = sqlx::query("DELETE FROM realms WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        info!(realms, invitations, "realm released");
        Ok(())
    }

    /// The first admin's invitation code for this incarnation: derived, never stored.
    pub fn invitation_code(&self, spec: &TenantSpec) -> Secret {
        secrets::derive(
            &self.cfg.secret_key,
            spec.tenant_id(),
            spec.incarnation,
            Purpose::InvitationCode,
        )
    }

    /// True while the tenant has a realm or an invitation row.
    pub async fn exists(&self, spec: &TenantSpec) -> StepResult<bool> {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM realms WHERE tenant_id = $1)
                 OR EXISTS (SELECT 1 FROM invitations WHERE tenant_id = $1)",
        )
        .bind(spec.tenant_id())
        .fetch_one(self.store.pool())
        .await?;
        Ok(exists)
    }
}

/// A freshly generated realm, ready to store.
struct NewRealm {
    key_id: String,
    private_key_pem: Zeroizing<String>,
    public_jwk: Value,
}

fn new_realm() -> StepResult<NewRealm> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let private_key_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the realm's signing key as PKCS#8")?;
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let key_id = jwk_thumbprint(&x);
    let public_jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
        "kid": key_id,
        "alg": "EdDSA",
        "use": "sig",
    });
    Ok(NewRealm {
        key_id,
        private_key_pem,
        public_jwk,
    })
}

/// The RFC 7638 thumbprint of an Ed25519 public key: a key id anyone holding the JWK can
/// recompute. The members are hashed in lexicographic order with no whitespace.
fn jwk_thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::DecodePrivateKey;

    #[test]
    fn a_new_realm_is_a_matching_key_pair_with_a_thumbprint_id() {
        let realm = new_realm().unwrap();
        let key = SigningKey::from_pkcs8_pem(&realm.private_key_pem).unwrap();
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        assert_eq!(realm.public_jwk["x"], x);
        assert_eq!(realm.public_jwk["kid"], realm.key_id);
        assert_eq!(realm.public_jwk["alg"], "EdDSA");
        assert_eq!(realm.key_id.len(), 43);
        assert_ne!(new_realm().unwrap().key_id, realm.key_id);
    }

    #[test]
    fn thumbprint_matches_the_rfc_8037_example() {
        // RFC 8037, appendix A.3: the thumbprint of its example Ed25519 public key.
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        assert_eq!(
            jwk_thumbprint(x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
