//! The tenant's storage: one PostgreSQL database and the login role its workload uses.
//!
//! Owns creating, adopting and dropping that database and role on the storage server, and
//! the connection URL handed to the workload. Both objects carry an ownership marker (a
//! `COMMENT` naming the tenant id), so a retry adopts what this tenant made and nothing ever
//! adopts or drops an object some other tenant or person made. Must never put the tenant's
//! password in a log line, an error or a statement the server could log: the role's
//! password is sent as a SCRAM verifier computed here, and statement logging is off on the
//! admin pool. Recording the ledger and the audit feed is the caller's job.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tenant_domain::{Allocation, ResourceKind, TenantSpec};
use uuid::Uuid;

use crate::secrets::{self, Purpose, Secret};
use crate::{ActivitiesConfig, StepError, StepResult};

/// Iterations of the SCRAM-SHA-256 verifier; PostgreSQL's own default.
const SCRAM_ITERATIONS: u32 = 4096;

/// Allocates and releases tenant databases and roles.
pub struct Storage {
    admin: PgPool,
    cfg: Arc<ActivitiesConfig>,
    store: tenant_store::Store,
}

/// Who an existing database object belongs to, judged from its ownership marker.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Claim {
    Absent,
    Ours,
    /// Made by someone else; the string says by whom, for the error message.
    Foreign(String),
}

impl Storage {
    /// Builds the admin pool lazily, so a worker starts while the storage server is down and
    /// the first allocation reports the outage as a retryable failure.
    pub async fn new(
        cfg: Arc<ActivitiesConfig>,
        store: tenant_store::Store,
    ) -> anyhow::Result<Self> {
        let options: PgConnectOptions = cfg
            .storage_admin_url
            .parse()
            .context("parsing the storage admin URL")?;
        // The DDL below carries password verifiers; sqlx would log statements at debug level.
        let options = options
            .disable_statement_logging()
            // A tenant's own session may hold a lock DDL needs (its role can reach shared
            // databases such as `postgres`): fail fast and retry, visibly, rather than
            // hold one of the pool's connections for as long as the tenant likes.
            .options([("lock_timeout", "10s"), ("statement_timeout", "60s")]);
        let admin = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options);
        Ok(Self { admin, cfg, store })
    }

    /// Creates (or adopts) the tenant's role and database.
    #[tracing::instrument(
        name = "storage.allocate",
        skip_all,
        fields(tenant = %spec.tenant_id(), database = %spec.names.database)
    )]
    pub async fn allocate(&self, spec: &TenantSpec) -> StepResult<Allocation> {
        let names = &spec.names;
        let marker = ownership_marker(spec.tenant_id());
        let connection_limit = self.plan(&spec.request.plan).await?.db_connection_limit;

        let role_adopted = match self.role_claim(&names.role, &marker).await? {
            Claim::Ours => true,
            Claim::Foreign(holder) => return Err(name_taken("role", &names.role, &holder)),
            Claim::Absent => {
                // One simple query is one transaction: the role never exists without its marker,
                // so a concurrent attempt cannot mistake it for someone else's.
                let sql = format!(
                    "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS; \
                     COMMENT ON ROLE {role} IS {marker}",
                    role = quote_ident(&names.role),
                    marker = quote_literal(&marker),
                );
                self.ddl(&sql, "creating the tenant role").await?;
                false
            }
        };
        self.set_role_password(spec, connection_limit).await?;

        let db_adopted = match self
            .database_claim(&names.database, &names.role, &marker)
            .await?
        {
            Claim::Ours => true,
            Claim::Foreign(holder) => return Err(name_taken("database", &names.database, &holder)),
            Claim::Absent => {
                // template0 cannot be busy, unlike template1 when someone is connected to it.
                let sql = format!(
                    "CREATE DATABASE {db} OWNER {role} TEMPLATE template0",
                    db = quote_ident(&names.database),
                    role = quote_ident(&names.role),
                );
                self.ddl(&sql, "creating the tenant database").await?;
                false
            }
        };
        self.secure_database(spec, &marker).await?;

        let adopted = role_adopted && db_adopted;
        tracing::info!(adopted, connection_limit, "tenant storage ready");
        Ok(Allocation {
            kind: ResourceKind::Storage,
            name: names.database.clone(),
            adopted,
        })
    }

    /// Drops the tenant's database (ending its sessions) and role; what is already gone, or
    /// belongs to someone else, is left alone.
    #[tracing::instrument(
        name = "storage.release",
        skip_all,
        fields(tenant = %spec.tenant_id(), database = %spec.names.database)
    )]
    pub async fn release(&self, spec: &TenantSpec) -> StepResult<()> {
        let names = &spec.names;
        let marker = ownership_marker(spec.tenant_id());

        match self
            .database_claim(&names.database, &names.role, &marker)
            .await?
        {
            Claim::Absent => {}
            Claim::Foreign(holder) => {
                tracing::warn!(
                    holder = %holder,
                    "database with the tenant's name belongs to someone else; left in place"
                );
            }
            Claim::Ours => {
                let sql = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&names.database)
                );
                self.ddl(&sql, "dropping the tenant database").await?;
            }
        }

        match self.role_claim(&names.role, &marker).await? {
            Claim::Absent => {}
            Claim::Foreign(holder) => {
                tracing::warn!(
                    holder = %holder,
                    "role with the tenant's name belongs to someone else; left in place"
                );
            }
            Claim::Ours => {
                // The role is going away: end its sessions in every database first, so a
                // session it holds elsewhere cannot block the drop.
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE usename = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&names.role)
                .execute(&self.admin)
                .await?;
                let sql = format!("DROP ROLE IF EXISTS {}", quote_ident(&names.role));
                self.ddl(&sql, "dropping the tenant role").await?;
            }
        }
        tracing::info!("tenant storage released");
        Ok(())
    }

    /// `postgres://role:password@host:port/database`, for the workload's environment only.
    pub fn connection_url(&self, spec: &TenantSpec) -> Secret {
        let password = self.password(spec);
        let host = if self.cfg.storage_host.contains(':') {
            format!("[{}]", self.cfg.storage_host)
        } else {
            self.cfg.storage_host.clone()
        };
        Secret::new(format!(
            "postgres://{}:{}@{}:{}/{}",
            spec.names.role,
            password.expose(),
            host,
            self.cfg.storage_port,
            spec.names.database
        ))
    }

    /// True if the database or the role exists, whoever made it.
    pub async fn exists(&self, spec: &TenantSpec) -> StepResult<bool> {
        let found: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)
                 OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2)",
        )
        .bind(&spec.names.database)
        .bind(&spec.names.role)
        .fetch_one(&self.admin)
        .await
        .map_err(|e| classify(e, "looking up the tenant database and role"))?;
        Ok(found)
    }

    fn password(&self, spec: &TenantSpec) -> Secret {
        secrets::derive(
            &self.cfg.secret_key,
            spec.tenant_id(),
            spec.incarnation,
            Purpose::DatabasePassword,
        )
    }

    /// The plan as the control plane holds it now: an operator may change a plan's limits
    /// at any time, so it is read where it is used, never kept.
    pub async fn plan(&self, plan: &str) -> StepResult<tenant_store::access::Plan> {
        self.store
            .plan(plan)
            .await
            .map_err(|e| classify(e, "reading the tenant's plan"))?
            .ok_or_else(|| {
                StepError::permanent("UnknownPlan", format!("plan {plan} does not exist"))
            })
    }

    /// Sets the tenant role's connection limit to `connection_limit` when it differs, so a
    /// plan changed since the storage was allocated applies from the next deploy on.
    /// Connections already open stay open. A role that is not this tenant's is left alone.
    pub async fn apply_connection_limit(
        &self,
        spec: &TenantSpec,
        connection_limit: i32,
    ) -> StepResult<()> {
        let marker = ownership_marker(spec.tenant_id());
        let role = &spec.names.role;
        let found: Option<(Option<String>, i32)> = sqlx::query_as(
            "SELECT shobj_description(oid, 'pg_authid'), rolconnlimit FROM pg_roles
             WHERE rolname = $1",
        )
        .bind(role)
        .fetch_optional(&self.admin)
        .await
        .map_err(|e| classify(e, "looking up the tenant role"))?;
        let current = match found {
            Some((comment, current)) if comment.as_deref() == Some(marker.as_str()) => current,
            _ => {
                return Err(StepError::Transient(anyhow!(
                    "the tenant role {role} is missing or not this tenant's"
                )));
            }
        };
        if current == connection_limit {
            return Ok(());
        }
        let sql = format!(
            "ALTER ROLE {} CONNECTION LIMIT {connection_limit}",
            quote_ident(role)
        );
        self.ddl(&sql, "setting the tenant role's connection limit")
            .await?;
        tracing::info!(
            tenant = %spec.tenant_id(),
            previous = current,
            connection_limit,
            "tenant role's connection limit set to its plan's"
        );
        Ok(())
    }

    /// Sets password and connection limit on every allocation: a new incarnation derives a
    /// new password, and a plan's limit may have changed.
    async fn set_role_password(&self, spec: &TenantSpec, connection_limit: i32) -> StepResult<()> {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let verifier = scram_verifier(self.password(spec).expose(), &salt, SCRAM_ITERATIONS);
        let sql = format!(
            "ALTER ROLE {} WITH LOGIN PASSWORD {} CONNECTION LIMIT {}",
            quote_ident(&spec.names.role),
            quote_literal(&verifier),
            connection_limit
        );
        // The statement text is never part of the error: only its SQLSTATE is kept.
        sqlx::raw_sql(&sql)
            .execute(&self.admin)
            .await
            .map_err(|e| {
                let code = sqlstate(&e).unwrap_or_else(|| "none".into());
                match classify(e, "") {
                    StepError::Permanent { kind, .. } => StepError::permanent(
                        kind,
                        format!("setting the tenant role's password failed (sqlstate {code})"),
                    ),
                    StepError::Transient(_) => StepError::Transient(anyhow!(
                        "setting the tenant role's password failed (sqlstate {code})"
                    )),
                }
            })?;
        Ok(())
    }

    /// Marks the database as the tenant's and lets only its role (and the platform) in.
    async fn secure_database(&self, spec: &TenantSpec, marker: &str) -> StepResult<()> {
        let db = quote_ident(&spec.names.database);
        let role = quote_ident(&spec.names.role);
        let statements = [
            format!("COMMENT ON DATABASE {db} IS {}", quote_literal(marker)),
            format!("ALTER DATABASE {db} OWNER TO {role}"),
            format!("REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC"),
            format!("GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}"),
        ];
        for sql in &statements {
            self.ddl(sql, "securing the tenant database").await?;
        }
        Ok(())
    }

    async fn role_claim(&self, role: &str, marker: &str) -> StepResult<Claim> {
        let found: Option<Option<String>> = sqlx::query_scalar(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .fetch_optional(&self.admin)
        .await
        .map_err(|e| classify(e, "looking up the tenant role"))?;
        Ok(role_claim(found, marker))
    }

    async fn database_claim(&self, database: &str, role: &str, marker: &str) -> StepResult<Claim> {
        let found: Option<(Option<String>, String, Option<String>)> = sqlx::query_as(
            "SELECT shobj_description(d.oid, 'pg_database'),
                    pg_get_userbyid(d.datdba)::text,
                    (SELECT shobj_description(r.oid, 'pg_authid') FROM pg_roles r WHERE r.oid = d.datdba)
             FROM pg_database d WHERE d.datname = $1",
        )
        .bind(database)
        .fetch_optional(&self.admin)
        .await
        .map_err(|e| classify(e, "looking up the tenant database"))?;
        Ok(database_claim(found, role, marker))
    }

    /// Runs one DDL statement over the simple protocol, so it is never kept as a prepared
    /// statement.
    async fn ddl(&self, sql: &str, what: &str) -> StepResult<()> {
        sqlx::raw_sql(sql)
            .execute(&self.admin)
            .await
            .map_err(|e| classify(e, what))?;
        Ok(())
    }
}

/// The comment that marks a role or database as this tenant's.
fn ownership_marker(tenant_id: Uuid) -> String {
    format!("tenant:{tenant_id}")
}

fn role_claim(found: Option<Option<String>>, marker: &str) -> Claim {
    match found {
        None => Claim::Absent,
        Some(Some(comment)) if comment == marker => Claim::Ours,
        Some(Some(comment)) => Claim::Foreign(format!("marked {comment:?}")),
        // Our role gets its marker in the transaction that creates it.
        Some(None) => Claim::Foreign("no tenant marker".into()),
    }
}

/// `found` is (comment, owner name, owner's comment) of the database.
fn database_claim(
    found: Option<(Option<String>, String, Option<String>)>,
    role: &str,
    marker: &str,
) -> Claim {
    match found {
        None => Claim::Absent,
        Some((Some(comment), _, _)) if comment == marker => Claim::Ours,
        Some((Some(comment), _, _)) => Claim::Foreign(format!("marked {comment:?}")),
        // CREATE DATABASE cannot share a transaction with its COMMENT: an attempt that died in
        // between leaves an unmarked database owned by the tenant's own (marked) role.
        Some((None, owner, owner_comment))
            if owner == role && owner_comment.as_deref() == Some(marker) =>
        {
            Claim::Ours
        }
        Some((None, owner, _)) => Claim::Foreign(format!("unmarked, owned by {owner}")),
    }
}

fn name_taken(what: &str, name: &str, holder: &str) -> StepError {
    StepError::permanent(
        "NameTaken",
        format!(
            "a {what} named {name} already exists and is not this tenant's ({holder}); remove or rename it"
        ),
    )
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// Maps a storage server error to retryable or not. Lost connections, busy servers and
/// creation races (the retry adopts what the other attempt made) are retryable; a missing
/// privilege is not.
fn classify(e: sqlx::Error, what: &str) -> StepError {
    let code = sqlstate(&e);
    if code.as_deref() == Some("42501") {
        return StepError::permanent(
            "StoragePermissionDenied",
            format!("{what}: the storage admin account lacks a privilege: {e}"),
        );
    }
    StepError::Transient(anyhow::Error::new(e).context(what.to_owned()))
}

/// A PostgreSQL identifier in double quotes.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A PostgreSQL string literal (standard_conforming_strings is on since 9.1).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A SCRAM-SHA-256 verifier as PostgreSQL stores it (RFC 5802/7677), so the server stores the
/// password without ever seeing it. `password` must be ASCII (SASLprep leaves it unchanged).
fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let salted = pbkdf2_sha256(password.as_bytes(), salt, iterations);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac_sha256(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA256 for one 32-byte block, which is all SCRAM needs.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac_sha256(password, &first);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha256(password, &u);
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("t_abc"), "\"t_abc\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn pbkdf2_matches_the_published_vector() {
        // RFC 7914 section 11, first PBKDF2-HMAC-SHA256 vector (c = 1), first 32 bytes.
        let out = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(
            hex::encode(out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn scram_verifier_matches_the_rfc_7677_example() {
        // RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = scram_verifier("pencil", &salt, 4096);
        let salted = pbkdf2_sha256(b"pencil", &salt, 4096);
        let server_key = hmac_sha256(&salted, b"Server Key");
        // The example's server signature is HMAC(ServerKey, AuthMessage).
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac_sha256(&server_key, auth_message.as_bytes());
        assert_eq!(
            BASE64.encode(signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        assert!(!verifier.contains("pencil"));
    }

    #[test]
    fn roles_are_ours_only_with_our_marker() {
        let m = ownership_marker(Uuid::from_u128(1));
        assert_eq!(role_claim(None, &m), Claim::Absent);
        assert_eq!(role_claim(Some(Some(m.clone())), &m), Claim::Ours);
        assert!(matches!(role_claim(Some(None), &m), Claim::Foreign(_)));
        let other = ownership_marker(Uuid::from_u128(2));
        assert!(matches!(
            role_claim(Some(Some(other)), &m),
            Claim::Foreign(_)
        ));
    }

    #[test]
    fn an_unmarked_database_is_ours_only_when_our_marked_role_owns_it() {
        let m = ownership_marker(Uuid::from_u128(1));
        let other = ownership_marker(Uuid::from_u128(2));
        assert_eq!(database_claim(None, "t_1", &m), Claim::Absent);
        assert_eq!(
            database_claim(Some((Some(m.clone()), "postgres".into(), None)), "t_1", &m),
            Claim::Ours
        );
        assert_eq!(
            database_claim(Some((None, "t_1".into(), Some(m.clone()))), "t_1", &m),
            Claim::Ours
        );
        for found in [
            (Some(other.clone()), "t_1".into(), Some(m.clone())),
            (None, "t_1".into(), Some(other)),
            (None, "t_1".into(), None),
            (None, "postgres".into(), None),
        ] {
            assert!(
                matches!(
                    database_claim(Some(found.clone()), "t_1", &m),
                    Claim::Foreign(_)
                ),
                "{found:?}"
            );
        }
    }
}
