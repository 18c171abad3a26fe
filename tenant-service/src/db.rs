//! The tenant's own database: its schema, and what the platform hands over into it.
//!
//! Owns the migrations in `tenant-service/migrations/` and every query against the tenant's
//! database, for the service (reading the realm, redeeming invitations, users) and for the
//! platform's activities (installing the realm and an invitation, the suspended flag),
//! which link this module so that the schema has one author. Must never log or return the
//! realm's private key or a database URL; errors name the step, never the values.

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::postgres::PgPool;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use anyhow::Context;

/// The tenant database's schema, applied by the service at start-up and by the platform
/// before it writes into the database (either may come first; sqlx serialises them).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The realm's signing key as the control plane holds it.
#[derive(Clone)]
pub struct RealmKey {
    /// The RFC 7638 thumbprint of the public key, also the JWK's `kid`.
    pub key_id: String,
    /// PKCS#8 PEM of the Ed25519 private key.
    pub private_key_pem: Zeroizing<String>,
    /// The public key as a JWK (`kty`, `crv`, `x`, `kid`, `alg`, `use`).
    pub public_jwk: Value,
}

impl std::fmt::Debug for RealmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealmKey")
            .field("key_id", &self.key_id)
            .field("private_key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// An invitation as the platform grants it: only the code's SHA-256 travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvitationGrant {
    pub email: String,
    pub code_sha256: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

/// One invitation row of the tenant database.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct InvitationRow {
    pub code_sha256: Vec<u8>,
    pub email: String,
    pub expires_at: DateTime<Utc>,
    pub redeemed_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A user of the tenant.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    /// PHC string (argon2id); never logged.
    pub password_hash: String,
    pub role: String,
}

/// Connects to a tenant database with the tenant's own credentials and brings its schema
/// up to date. Statement logging is off: the realm's key travels as a bind parameter.
pub async fn open(options: &PgConnectOptions) -> anyhow::Result<PgConnection> {
    let options = options.clone().disable_statement_logging();
    let mut conn = PgConnection::connect_with(&options)
        .await
        .context("connecting to the tenant database")?;
    // `run_direct` rather than `run`: the latter's generic acquire makes callers' futures
    // fail the `Send` check of Temporal's activity macro.
    MIGRATOR
        .run_direct(&mut conn)
        .await
        .context("migrating the tenant database")?;
    Ok(conn)
}

/// Writes the realm's key and, when given, the invitation, in one transaction. Idempotent:
/// the same input leaves the database as it was, a redemption included. Unredeemed codes
/// other than `invitation`'s are revoked, so a re-issued invitation replaces the old one.
pub async fn install(
    conn: &mut PgConnection,
    realm: &RealmKey,
    invitation: Option<&InvitationGrant>,
) -> anyhow::Result<()> {
    let mut tx = conn
        .begin()
        .await
        .context("starting the realm installation")?;
    sqlx::query(
        "INSERT INTO realm (singleton, key_id, private_key, public_jwk) VALUES (true, $1, $2, $3)
         ON CONFLICT (singleton) DO UPDATE SET
             key_id = EXCLUDED.key_id, private_key = EXCLUDED.private_key,
             public_jwk = EXCLUDED.public_jwk, installed_at = now()
         WHERE realm.key_id IS DISTINCT FROM EXCLUDED.key_id
            OR realm.public_jwk IS DISTINCT FROM EXCLUDED.public_jwk",
    )
    .bind(&realm.key_id)
    .bind(realm.private_key_pem.as_str())
    .bind(&realm.public_jwk)
    .execute(&mut *tx)
    .await
    .context("writing the realm's key")?;

    if let Some(grant) = invitation {
        // The grant (who, until when) is the platform's; the redemption is the tenant's.
        sqlx::query(
            "INSERT INTO invitations (code_sha256, email, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (code_sha256) DO UPDATE SET
                 email = EXCLUDED.email, expires_at = EXCLUDED.expires_at, revoked_at = NULL",
        )
        .bind(&grant.code_sha256)
        .bind(&grant.email)
        .bind(grant.expires_at)
        .execute(&mut *tx)
        .await
        .context("writing the invitation")?;
        sqlx::query(
            "UPDATE invitations SET revoked_at = now()
             WHERE code_sha256 <> $1 AND redeemed_at IS NULL AND revoked_at IS NULL",
        )
        .bind(&grant.code_sha256)
        .execute(&mut *tx)
        .await
        .context("revoking older invitations")?;
    }
    tx.commit()
        .await
        .context("committing the realm installation")?;
    Ok(())
}

/// Sets the flag that refuses sign-in and invitation redemption while the tenant is
/// suspended.
pub async fn set_suspended(conn: &mut PgConnection, suspended: bool) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO tenant_settings (singleton, suspended) VALUES (true, $1)
         ON CONFLICT (singleton) DO UPDATE SET suspended = EXCLUDED.suspended, updated_at = now()",
    )
    .bind(suspended)
    .execute(conn)
    .await
    .context("writing the suspended flag")?;
    Ok(())
}

/// True while the platform has the tenant suspended.
pub async fn suspended(conn: &PgPool) -> anyhow::Result<bool> {
    let flag: Option<bool> =
        sqlx::query_scalar("SELECT suspended FROM tenant_settings WHERE singleton")
            .fetch_optional(conn)
            .await
            .context("reading the suspended flag")?;
    Ok(flag.unwrap_or(false))
}

/// The installed realm key, if any.
pub async fn realm(conn: &PgPool) -> anyhow::Result<Option<RealmKey>> {
    let row: Option<(String, String, Value)> =
        sqlx::query_as("SELECT key_id, private_key, public_jwk FROM realm WHERE singleton")
            .fetch_optional(conn)
            .await
            .context("reading the realm's key")?;
    Ok(row.map(|(key_id, pem, public_jwk)| RealmKey {
        key_id,
        private_key_pem: Zeroizing::new(pem),
        public_jwk,
    }))
}

/// Every invitation (a tenant has one, or a few after re-issues). Codes are matched in
/// memory in constant time rather than looked up by hash in SQL.
pub async fn invitations(conn: &PgPool) -> anyhow::Result<Vec<InvitationRow>> {
    sqlx::query_as(
        "SELECT code_sha256, email, expires_at, redeemed_at, revoked_at FROM invitations
         ORDER BY created_at",
    )
    .fetch_all(conn)
    .await
    .context("reading the invitations")
}

pub async fn user_by_email(conn: &PgPool, email: &str) -> anyhow::Result<Option<UserRow>> {
    sqlx::query_as(
        "SELECT id, email, password_hash, role FROM users WHERE lower(email) = lower($1)",
    )
    .bind(email)
    .fetch_optional(conn)
    .await
    .context("looking up the user")
}

pub async fn user_by_id(conn: &PgPool, id: Uuid) -> anyhow::Result<Option<UserRow>> {
    sqlx::query_as("SELECT id, email, password_hash, role FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .context("looking up the user")
}

/// Why an invitation cannot be redeemed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unredeemable {
    Unknown,
    Expired,
    Redeemed,
    Revoked,
}

/// Redeems the invitation whose hash is `code_sha256`: marks it redeemed and creates the
/// admin user with `password_hash` (or sets the password of the user the invitation names,
/// when a re-issued invitation reaches an existing account). One transaction, the
/// invitation row locked, so a code is redeemed at most once.
pub async fn redeem(
    conn: &mut PgConnection,
    code_sha256: &[u8],
    password_hash: &str,
) -> anyhow::Result<Result<UserRow, Unredeemable>> {
    let mut tx = conn.begin().await.context("starting the redemption")?;
    let row: Option<InvitationRow> = sqlx::query_as(
        "SELECT code_sha256, email, expires_at, redeemed_at, revoked_at FROM invitations
         WHERE code_sha256 = $1 FOR UPDATE",
    )
    .bind(code_sha256)
    .fetch_optional(&mut *tx)
    .await
    .context("locking the invitation")?;
    let Some(invitation) = row else {
        return Ok(Err(Unredeemable::Unknown));
    };
    if let Err(why) = redeemable(&invitation, Utc::now()) {
        return Ok(Err(why));
    }
    let user: UserRow = sqlx::query_as(
        "INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, $3, 'admin')
         ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash, updated_at = now()
         RETURNING id, email, password_hash, role",
    )
    .bind(Uuid::new_v4())
    .bind(&invitation.email)
    .bind(password_hash)
    .fetch_one(&mut *tx)
    .await
    .context("creating the admin user")?;
    sqlx::query("UPDATE invitations SET redeemed_at = now() WHERE code_sha256 = $1")
        .bind(code_sha256)
        .execute(&mut *tx)
        .await
        .context("marking the invitation redeemed")?;
    tx.commit().await.context("committing the redemption")?;
    Ok(Ok(user))
}

/// Whether `invitation` can be redeemed at `now`.
pub fn redeemable(invitation: &InvitationRow, now: DateTime<Utc>) -> Result<(), Unredeemable> {
    if invitation.redeemed_at.is_some() {
        Err(Unredeemable::Redeemed)
    } else if invitation.revoked_at.is_some() {
        Err(Unredeemable::Revoked)
    } else if invitation.expires_at <= now {
        Err(Unredeemable::Expired)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> InvitationRow {
        InvitationRow {
            code_sha256: vec![1; 32],
            email: "a@example.com".into(),
            expires_at: Utc::now() + chrono::Duration::days(7),
            redeemed_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn redeemability_checks_every_reason() {
        let now = Utc::now();
        assert_eq!(redeemable(&row(), now), Ok(()));
        let expired = InvitationRow {
            expires_at: now - chrono::Duration::seconds(1),
            ..row()
        };
        assert_eq!(redeemable(&expired, now), Err(Unredeemable::Expired));
        let used = InvitationRow {
            redeemed_at: Some(now),
            ..expired.clone()
        };
        assert_eq!(
            redeemable(&used, now),
            Err(Unredeemable::Redeemed),
            "redeemed wins"
        );
        let revoked = InvitationRow {
            revoked_at: Some(now),
            ..row()
        };
        assert_eq!(redeemable(&revoked, now), Err(Unredeemable::Revoked));
    }

    #[test]
    fn realm_keys_never_print_the_private_key() {
        let key = RealmKey {
            key_id: "kid".into(),
            private_key_pem: Zeroizing::new("-----BEGIN PRIVATE KEY-----secret".into()),
            public_jwk: serde_json::json!({}),
        };
        assert!(!format!("{key:?}").contains("secret"));
    }
}
