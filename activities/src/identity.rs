//! The tenant's realm in the control-plane store: its Ed25519 signing key pair and the
//! first admin's invitation; and its hand-over into the tenant's own database.
//!
//! Owns the `realms` and `invitations` rows of a tenant, and copying them into the tenant
//! database (through `tenant_service::db`, the schema's one author) before the workload
//! starts, since the tenant's service never reaches the control plane. The invitation code
//! itself is derived from the platform secret whenever it is needed and never stored,
//! logged or put in an error: only its SHA-256 is kept. The first code of an incarnation
//! is derived from the tenant id and incarnation; a re-issued one also from the row's
//! `created_at`, which each re-issue moves forward, so every issue gets a new code and the
//! current one can always be derived again (for a resent email). Must never touch another
//! tenant's rows, write a realm for an incarnation that is not the tenant's current one,
//! or let the private key reach a log, an error or the workflow history.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Postgres, Transaction};
use tenant_domain::{Allocation, ResourceKind, TenantSpec};
use tenant_service::db::{InvitationGrant, RealmKey};
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
        lock_current_incarnation(&mut tx, spec).await?;

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

    /// Copies the realm's key and the current invitation from the control plane into the
    /// tenant's own database (`database_url` is the tenant's, from `Storage::connection_url`),
    /// bringing the tenant schema up to date first. Idempotent: an invitation already
    /// redeemed stays redeemed. Runs before the workload starts or is adopted.
    #[instrument(
        name = "identity.install",
        skip_all,
        fields(tenant = %spec.names.host, incarnation = spec.incarnation)
    )]
    pub async fn install(&self, spec: &TenantSpec, database_url: &Secret) -> StepResult<()> {
        let realm = self.realm_key(spec).await?;
        let grant = self.invitation_grant(spec).await?;
        let mut conn = open_tenant_db(database_url).await?;
        tenant_service::db::install(&mut conn, &realm, grant.as_ref())
            .await
            .map_err(StepError::Transient)?;
        let _ = conn.close().await;
        info!(key_id = %realm.key_id, invitation = grant.is_some(), "realm installed in the tenant database");
        Ok(())
    }

    /// Issues the first admin a new invitation, valid for 7 days from now: a new code (the
    /// previous one stops working) recorded in the control plane and copied into the tenant
    /// database. Returns the code, for the welcome email that carries it.
    #[instrument(
        name = "identity.reissue_invitation",
        skip_all,
        fields(tenant = %spec.names.host, incarnation = spec.incarnation)
    )]
    pub async fn reissue_invitation(
        &self,
        spec: &TenantSpec,
        database_url: &Secret,
    ) -> StepResult<Secret> {
        let tenant_id = spec.tenant_id();
        let mut tx = self.store.pool().begin().await?;
        lock_current_incarnation(&mut tx, spec).await?;
        // The nonce only ever moves forward, even when two re-issues share a clock tick.
        let nonce: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT greatest(clock_timestamp(), created_at + interval '1 microsecond')
             FROM invitations WHERE tenant_id = $1 AND incarnation = $2 FOR UPDATE",
        )
        .bind(tenant_id)
        .bind(spec.incarnation)
        .fetch_optional(&mut *tx)
        .await?;
        let nonce = nonce.ok_or_else(|| missing("invitation", spec))?;
        let code = self.reissued_code(spec, nonce);
        sqlx::query(&format!(
            "UPDATE invitations SET code_sha256 = $2, created_at = $3,
                 expires_at = $3 + interval '{INVITATION_VALIDITY}', redeemed_at = NULL
             WHERE tenant_id = $1"
        ))
        .bind(tenant_id)
        .bind(Sha256::digest(code.expose().as_bytes()).to_vec())
        .bind(nonce)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        self.install(spec, database_url).await?;
        info!("invitation re-issued");
        Ok(code)
    }

    /// The code of the tenant's current invitation: the first one, or the latest re-issue.
    pub async fn current_invitation_code(&self, spec: &TenantSpec) -> StepResult<Secret> {
        let row: Option<(Vec<u8>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT code_sha256, created_at FROM invitations WHERE tenant_id = $1 AND incarnation = $2",
        )
        .bind(spec.tenant_id())
        .bind(spec.incarnation)
        .fetch_optional(self.store.pool())
        .await?;
        let (stored, created_at) = row.ok_or_else(|| missing("invitation", spec))?;
        [
            self.invitation_code(spec),
            self.reissued_code(spec, created_at),
        ]
        .into_iter()
        .find(|code| Sha256::digest(code.expose().as_bytes()).as_slice() == stored.as_slice())
        .ok_or_else(|| {
            StepError::permanent(
                "InvitationMissing",
                format!(
                    "the invitation of {} was not made with this platform's secret; re-issue it",
                    spec.names.host
                ),
            )
        })
    }

    /// The realm's public JWK as the control plane holds it.
    pub async fn public_jwk(&self, spec: &TenantSpec) -> StepResult<Value> {
        Ok(self.realm_key(spec).await?.public_jwk)
    }

    /// A re-issued invitation's code: derived from the platform secret, the tenant, the
    /// incarnation and the issue's nonce, so it differs per issue and never needs storing.
    fn reissued_code(&self, spec: &TenantSpec, nonce: DateTime<Utc>) -> Secret {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.cfg.secret_key)
            .expect("HMAC accepts any key length");
        mac.update(b"invitation-code-reissue\0");
        mac.update(spec.tenant_id().as_bytes());
        mac.update(&spec.incarnation.to_be_bytes());
        mac.update(&nonce.timestamp_micros().to_be_bytes());
        Secret::new(hex::encode(mac.finalize().into_bytes()))
    }

    async fn realm_key(&self, spec: &TenantSpec) -> StepResult<RealmKey> {
        let row: Option<(String, String, Value)> = sqlx::query_as(
            "SELECT key_id, private_key, public_jwk FROM realms WHERE tenant_id = $1 AND incarnation = $2",
        )
        .bind(spec.tenant_id())
        .bind(spec.incarnation)
        .fetch_optional(self.store.pool())
        .await?;
        let (key_id, pem, public_jwk) = row.ok_or_else(|| missing("realm", spec))?;
        Ok(RealmKey {
            key_id,
            private_key_pem: Zeroizing::new(pem),
            public_jwk,
        })
    }

    async fn invitation_grant(&self, spec: &TenantSpec) -> StepResult<Option<InvitationGrant>> {
        let row: Option<(String, Vec<u8>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT email, code_sha256, expires_at FROM invitations WHERE tenant_id = $1 AND incarnation = $2",
        )
        .bind(spec.tenant_id())
        .bind(spec.incarnation)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.map(|(email, code_sha256, expires_at)| InvitationGrant {
            email,
            code_sha256,
            expires_at,
        }))
    }
}

/// Locks the tenant row, which serialises concurrent attempts for the same tenant, and
/// proves the incarnation asked for is the current one.
async fn lock_current_incarnation(
    tx: &mut Transaction<'_, Postgres>,
    spec: &TenantSpec,
) -> StepResult<()> {
    let tenant_id = spec.tenant_id();
    let current: Option<i32> =
        sqlx::query_scalar("SELECT incarnation FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(tenant_id)
            .fetch_optional(&mut **tx)
            .await?;
    match current {
        None => Err(StepError::permanent(
            "TenantMissing",
            format!("tenant {tenant_id} is not in the control-plane store"),
        )),
        Some(current) if current != spec.incarnation => Err(StepError::permanent(
            "StaleIncarnation",
            format!(
                "tenant {tenant_id} is in incarnation {current}, not {}: refusing to change its realm",
                spec.incarnation
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn missing(what: &str, spec: &TenantSpec) -> StepError {
    StepError::permanent(
        "RealmMissing",
        format!(
            "{} has no {what} for incarnation {} in the control plane: allocate identity first",
            spec.names.host, spec.incarnation
        ),
    )
}

/// Connects to the tenant's database with its own credentials and brings its schema up to
/// date. The URL never reaches an error: a parse failure is described, not quoted.
pub(crate) async fn open_tenant_db(database_url: &Secret) -> StepResult<sqlx::PgConnection> {
    let options: PgConnectOptions = database_url.expose().parse().map_err(|_| {
        StepError::Transient(anyhow!(
            "the tenant database URL is not a valid PostgreSQL URL"
        ))
    })?;
    tenant_service::db::open(&options)
        .await
        .map_err(StepError::Transient)
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
