//! Who may act: organisations, principals, roles, API tokens and plans.
//!
//! A token is shown once, when it is issued, and only its SHA-256 is stored; nothing here
//! may log, return or print a token except [`IssuedToken::expose`] at issue time.

use chrono::{DateTime, Utc};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Store;

/// Every token starts with this, so a leaked one is recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "tp_";

/// Someone who acts through the API or the CLI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Principal {
    pub id: Uuid,
    pub name: String,
    /// Platform operators may act in every organisation.
    pub platform_operator: bool,
}

/// An organisation that owns tenants; `slug` is what paths and host names use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Organization {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A principal's role in one organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            "member" => Self::Member,
            _ => return None,
        })
    }

    /// Owners and admins may create tenants and act on them; members may only read.
    pub fn may_manage_tenants(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A freshly issued API token. The value exists only here; `Debug` never shows it.
pub struct IssuedToken {
    pub id: Uuid,
    pub principal_id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
    value: String,
}

impl IssuedToken {
    /// The token itself, to be shown to its owner once.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("principal_id", &self.principal_id)
            .field("expires_at", &self.expires_at)
            .field("value", &"..")
            .finish()
    }
}

/// Who presented a live token, and which token it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub principal: Principal,
    pub token_id: Uuid,
    /// When the presented token stops working; `None`: it works until revoked.
    pub token_expires_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct AuthenticatedRow {
    id: Uuid,
    name: String,
    platform_operator: bool,
    token_id: Uuid,
    token_expires_at: Option<DateTime<Utc>>,
}

/// Why an access change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("organisation {slug} already exists; bootstrap runs once per organisation")]
    OrganizationExists { slug: String },
    #[error("a principal named {name} already exists; choose another name")]
    PrincipalExists { name: String },
    #[error("organisation {slug} does not exist")]
    OrganizationNotFound { slug: String },
    #[error("principal {id} does not exist")]
    PrincipalNotFound { id: Uuid },
    /// The token a new token was to be made with was revoked or expired meanwhile.
    #[error("token {id} is revoked or expired; a token it creates would be too")]
    ParentTokenNotLive { id: Uuid },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Store {
    /// Names of the plans that exist.
    pub async fn plan_names(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar("SELECT name FROM plans ORDER BY name")
            .fetch_all(&self.pool)
            .await
    }

    /// Creates an organisation. The caller validates the slug (the tenant rule applies).
    pub async fn create_organization(
        &self,
        slug: &str,
        name: &str,
    ) -> Result<Organization, AccessError> {
        let mut conn = self.pool.acquire().await?;
        insert_organization(&mut conn, slug, name).await
    }

    /// Creates a principal; names are unique because audit entries name the actor.
    pub async fn create_principal(
        &self,
        name: &str,
        platform_operator: bool,
    ) -> Result<Principal, AccessError> {
        let mut conn = self.pool.acquire().await?;
        insert_principal(&mut conn, name, platform_operator).await
    }

    /// Gives a principal a role in an organisation, replacing any role it had there.
    pub async fn add_membership(
        &self,
        principal_id: Uuid,
        org_slug: &str,
        role: Role,
    ) -> Result<(), AccessError> {
        let mut conn = self.pool.acquire().await?;
        upsert_membership(&mut conn, principal_id, org_slug, role).await
    }

    /// Issues a token for a principal; `expires_at` of `None` means it never expires.
    pub async fn create_token(
        &self,
        principal_id: Uuid,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedToken, AccessError> {
        let mut conn = self.pool.acquire().await?;
        insert_token(&mut conn, principal_id, name, expires_at, None).await
    }

    /// Issues a token made with the presented token `parent`, for the same principal, and
    /// records the lineage so that revoking `parent` revokes the new token too.
    /// [`AccessError::ParentTokenNotLive`] when `parent` was revoked or expired since it
    /// was authenticated; nothing is issued then.
    pub async fn create_token_from(
        &self,
        parent: &Authenticated,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedToken, AccessError> {
        let principal_id = parent.principal.id;
        let mut tx = self.pool.begin().await?;
        // Serialises with revocations of this principal's tokens (see `revoke_lineage`):
        // either the revocation sees the new token, or this sees the parent revoked.
        lock_token_lineages(&mut tx, principal_id).await?;
        let live: Option<bool> = sqlx::query_scalar(
            "SELECT revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
             FROM api_tokens WHERE id = $1 AND principal_id = $2",
        )
        .bind(parent.token_id)
        .bind(principal_id)
        .fetch_optional(&mut *tx)
        .await?;
        if live != Some(true) {
            return Err(AccessError::ParentTokenNotLive {
                id: parent.token_id,
            });
        }
        let token = insert_token(
            &mut tx,
            principal_id,
            name,
            expires_at,
            Some(parent.token_id),
        )
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Revokes a token and every token descending from it; true when the token was live.
    pub async fn revoke_token(&self, token_id: Uuid) -> sqlx::Result<bool> {
        let revocation = self.revoke_token_by(token_id, None).await?;
        Ok(revocation.is_some_and(|r| !r.already_revoked))
    }

    /// The principal a presented token belongs to; `None` for unknown, expired or revoked
    /// tokens, which callers must not tell apart.
    pub async fn authenticate(&self, token: &str) -> sqlx::Result<Option<Principal>> {
        Ok(self.authenticate_token(token).await?.map(|a| a.principal))
    }

    /// Like [`Store::authenticate`], with the presented token's own id and expiry.
    pub async fn authenticate_token(&self, token: &str) -> sqlx::Result<Option<Authenticated>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let row: Option<AuthenticatedRow> = sqlx::query_as(
            "SELECT p.id, p.name, p.platform_operator, t.id AS token_id,
                    t.expires_at AS token_expires_at
             FROM api_tokens t JOIN principals p ON p.id = t.principal_id
             WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL
               AND (t.expires_at IS NULL OR t.expires_at > now())",
        )
        .bind(token_sha256(token))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| Authenticated {
            principal: Principal {
                id: row.id,
                name: row.name,
                platform_operator: row.platform_operator,
            },
            token_id: row.token_id,
            token_expires_at: row.token_expires_at,
        }))
    }

    /// The principal's role in the organisation, if it has one.
    pub async fn role_in(&self, principal_id: Uuid, org_slug: &str) -> sqlx::Result<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT m.role FROM memberships m JOIN organizations o ON o.id = m.org_id
             WHERE m.principal_id = $1 AND o.slug = $2",
        )
        .bind(principal_id)
        .bind(org_slug)
        .fetch_optional(&self.pool)
        .await?;
        // The schema's CHECK constraint admits only the three roles.
        Ok(role.as_deref().and_then(Role::parse))
    }

    pub async fn organization(&self, slug: &str) -> sqlx::Result<Option<Organization>> {
        sqlx::query_as("SELECT id, slug, name, created_at FROM organizations WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await
    }

    /// Creates an organisation, its owner and the owner's first token, all or nothing.
    /// Running it again for the same organisation is refused, never half-applied.
    pub async fn bootstrap(
        &self,
        org_slug: &str,
        org_name: &str,
        owner_name: &str,
    ) -> Result<(Principal, IssuedToken), AccessError> {
        let mut tx = self.pool.begin().await?;
        insert_organization(&mut tx, org_slug, org_name).await?;
        let owner = insert_principal(&mut tx, owner_name, false).await?;
        upsert_membership(&mut tx, owner.id, org_slug, Role::Owner).await?;
        let token = insert_token(&mut tx, owner.id, "bootstrap", None, None).await?;
        tx.commit().await?;
        tracing::info!(
            org = org_slug,
            principal = owner_name,
            "organisation bootstrapped"
        );
        Ok((owner, token))
    }

    /// Creates a platform operator and its first token, all or nothing.
    pub async fn bootstrap_operator(
        &self,
        name: &str,
    ) -> Result<(Principal, IssuedToken), AccessError> {
        let mut tx = self.pool.begin().await?;
        let operator = insert_principal(&mut tx, name, true).await?;
        let token = insert_token(&mut tx, operator.id, "bootstrap", None, None).await?;
        tx.commit().await?;
        tracing::info!(principal = name, "platform operator created");
        Ok((operator, token))
    }
}

/// The stored form of a token.
fn token_sha256(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_token_value() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// Holds off, until the transaction ends, every other transaction that revokes a token of
/// `principal_id` or creates one from another token: the two must not interleave, or a
/// token created while its parent is being revoked could survive the revocation.
async fn lock_token_lineages(conn: &mut PgConnection, principal_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("SELECT 1 FROM principals WHERE id = $1 FOR NO KEY UPDATE")
        .bind(principal_id)
        .execute(conn)
        .await?;
    Ok(())
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

async fn insert_organization(
    conn: &mut PgConnection,
    slug: &str,
    name: &str,
) -> Result<Organization, AccessError> {
    sqlx::query_as(
        "INSERT INTO organizations (id, slug, name) VALUES ($1, $2, $3)
         RETURNING id, slug, name, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(slug)
    .bind(name)
    .fetch_one(conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            AccessError::OrganizationExists {
                slug: slug.to_owned(),
            }
        } else {
            e.into()
        }
    })
}

async fn insert_principal(
    conn: &mut PgConnection,
    name: &str,
    platform_operator: bool,
) -> Result<Principal, AccessError> {
    sqlx::query_as(
        "INSERT INTO principals (id, name, platform_operator) VALUES ($1, $2, $3)
         RETURNING id, name, platform_operator",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(platform_operator)
    .fetch_one(conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            AccessError::PrincipalExists {
                name: name.to_owned(),
            }
        } else {
            e.into()
        }
    })
}

async fn upsert_membership(
    conn: &mut PgConnection,
    principal_id: Uuid,
    org_slug: &str,
    role: Role,
) -> Result<(), AccessError> {
    let org_id: Option<Uuid> = sqlx::query_scalar("SELECT id FROM organizations WHERE slug = $1")
        .bind(org_slug)
        .fetch_optional(&mut *conn)
        .await?;
    let org_id = org_id.ok_or_else(|| AccessError::OrganizationNotFound {
        slug: org_slug.to_owned(),
    })?;
    sqlx::query(
        "INSERT INTO memberships (principal_id, org_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (principal_id, org_id) DO UPDATE SET role = EXCLUDED.role",
    )
    .bind(principal_id)
    .bind(org_id)
    .bind(role.as_str())
    .execute(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            AccessError::PrincipalNotFound { id: principal_id }
        }
        _ => e.into(),
    })?;
    Ok(())
}

async fn insert_token(
    conn: &mut PgConnection,
    principal_id: Uuid,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
    created_by_token: Option<Uuid>,
) -> Result<IssuedToken, AccessError> {
    let value = new_token_value();
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO api_tokens (id, principal_id, name, token_sha256, expires_at, created_by_token)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(principal_id)
    .bind(name)
    .bind(token_sha256(&value))
    .bind(expires_at)
    .bind(created_by_token)
    .execute(conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => AccessError::PrincipalNotFound { id: principal_id },
        _ => e.into(),
    })?;
    Ok(IssuedToken {
        id,
        principal_id,
        expires_at,
        value,
    })
}

/// A plan tier: the sizing it gives a tenant and the tenant quota it gives an organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Plan {
    pub name: String,
    pub display_name: String,
    /// Most tenants (not decommissioned) one organisation may hold on this plan.
    pub max_tenants_per_org: i32,
    /// Connections the tenant's database role may open.
    pub db_connection_limit: i32,
    /// Connections the tenant's service may keep in its pool; at least two below
    /// `db_connection_limit` (the service's lock and the platform's writes need one each).
    pub workload_db_pool: i32,
    /// Requests the tenant's service serves at once; it answers 503 to more.
    pub workload_max_concurrent_requests: i32,
}

const PLAN_COLUMNS: &str = "name, display_name, max_tenants_per_org, db_connection_limit, \
     workload_db_pool, workload_max_concurrent_requests";

/// What is shown about an API token after it was issued: never the token or its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: Uuid,
    pub principal_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The token this one was made with; `None` for bootstrap tokens and others made
    /// without one. Revoking that token revoked or will revoke this one.
    pub created_by_token: Option<Uuid>,
}

const TOKEN_INFO_COLUMNS: &str =
    "id, principal_id, name, created_at, expires_at, revoked_at, created_by_token";

/// What revoking a token did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The token as it is now: revoked, at the time it first was.
    pub token: TokenInfo,
    /// It was already revoked before this call; its `revoked_at` was kept.
    pub already_revoked: bool,
    /// Tokens descending from it (made with it, or with those, down the chain) that this
    /// call revoked; descendants revoked before keep their own `revoked_at` and are not
    /// counted.
    pub revoked_descendants: u64,
}

impl Store {
    /// Every plan, by name.
    pub async fn plans(&self) -> sqlx::Result<Vec<Plan>> {
        sqlx::query_as(&format!("SELECT {PLAN_COLUMNS} FROM plans ORDER BY name"))
            .fetch_all(&self.pool)
            .await
    }

    /// One plan, read when it is used: an operator may change a plan's sizing at any time.
    pub async fn plan(&self, name: &str) -> sqlx::Result<Option<Plan>> {
        sqlx::query_as(&format!("SELECT {PLAN_COLUMNS} FROM plans WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
    }

    /// The tokens of a principal, live or not, oldest first.
    pub async fn tokens_of(&self, principal_id: Uuid) -> sqlx::Result<Vec<TokenInfo>> {
        sqlx::query_as(&format!(
            "SELECT {TOKEN_INFO_COLUMNS} FROM api_tokens
             WHERE principal_id = $1 ORDER BY created_at, id"
        ))
        .bind(principal_id)
        .fetch_all(&self.pool)
        .await
    }

    /// Revokes a token and every token descending from it, in one transaction, on behalf
    /// of `owner` (only that principal's tokens), or of a platform operator when `owner` is
    /// `None` (any token). A token or descendant already revoked keeps its `revoked_at`.
    /// `None` when no such token is visible, so other principals' tokens look absent.
    pub async fn revoke_token_by(
        &self,
        token_id: Uuid,
        owner: Option<Uuid>,
    ) -> sqlx::Result<Option<Revocation>> {
        let mut tx = self.pool.begin().await?;
        let principal_id: Option<Uuid> = sqlx::query_scalar(
            "SELECT principal_id FROM api_tokens
             WHERE id = $1 AND ($2::uuid IS NULL OR principal_id = $2)",
        )
        .bind(token_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(principal_id) = principal_id else {
            return Ok(None);
        };
        // Every token of a lineage belongs to one principal (a token only makes tokens
        // for its own principal), so this lock keeps new children out until we commit.
        lock_token_lineages(&mut tx, principal_id).await?;

        let already_revoked: bool =
            sqlx::query_scalar("SELECT revoked_at IS NOT NULL FROM api_tokens WHERE id = $1")
                .bind(token_id)
                .fetch_one(&mut *tx)
                .await?;
        // UNION, not UNION ALL: it would also end the walk should the lineage ever loop.
        let descendants = sqlx::query(
            "WITH RECURSIVE lineage (id) AS (
                 SELECT id FROM api_tokens WHERE created_by_token = $1
                 UNION
                 SELECT t.id FROM api_tokens t JOIN lineage l ON t.created_by_token = l.id
             )
             UPDATE api_tokens SET revoked_at = now()
             WHERE id IN (SELECT id FROM lineage) AND revoked_at IS NULL",
        )
        .bind(token_id)
        .execute(&mut *tx)
        .await?;
        let token: TokenInfo = sqlx::query_as(&format!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now())
             WHERE id = $1
             RETURNING {TOKEN_INFO_COLUMNS}"
        ))
        .bind(token_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Revocation {
            token,
            already_revoked,
            revoked_descendants: descendants.rows_affected(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = new_token_value();
        let b = new_token_value();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(token_sha256(&a).len(), 32);
        assert_eq!(token_sha256(&a), token_sha256(&a));
    }

    #[test]
    fn issued_token_debug_hides_the_value() {
        let token = IssuedToken {
            id: Uuid::nil(),
            principal_id: Uuid::nil(),
            expires_at: None,
            value: new_token_value(),
        };
        let shown = format!("{token:?}");
        assert!(!shown.contains(token.expose()));
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert!(!Role::Member.may_manage_tenants());
    }
}
