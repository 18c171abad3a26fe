//! The tenant's storage: one PostgreSQL database and the login role its workload uses.
//!
//! Owns creating, adopting and dropping that database and role on the storage server, and
//! the connection URL handed to the workload. Both objects carry an ownership marker (a
//! `COMMENT` naming the tenant id and the control plane that made them), so a retry adopts
//! what this tenant made here and nothing ever adopts or drops an object some other tenant,
//! person or control plane made: tenant ids depend only on (organisation, slug), so two
//! control planes sharing one PostgreSQL server derive the same names. Must never put the
//! tenant's password in a log line, an error or a statement the server could log: the
//! role's password is sent as a SCRAM verifier computed here, and statement logging is off
//! on the admin pool. Recording the ledger and the audit feed is the caller's job.

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
    /// This control plane's id in ownership markers (see [`platform_id`]).
    platform: String,
}

/// Who an existing database object belongs to, judged from its ownership marker.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Claim {
    Absent,
    Ours,
    /// Marked for this very tenant by another control plane on the same server, or by one
    /// from before markers named their control plane; the string says which, for the
    /// error message.
    OtherPlatform(String),
    /// Made by someone else; the string says by whom, for the error message.
    Foreign(String),
}

/// An ownership marker read back from a `COMMENT`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Marker {
    tenant: Uuid,
    /// `None` in markers written before they named their control plane.
    platform: Option<String>,
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
        let platform = platform_id(&cfg.secret_key, &cfg.control_plane_url)?;
        tracing::info!(platform = %platform, "tenant storage marked with this control plane's id");
        Ok(Self {
            admin,
            cfg,
            store,
            platform,
        })
    }

    /// This control plane's id, as its ownership markers name it.
    pub fn platform_id(&self) -> &str {
        &self.platform
    }

    /// Creates (or adopts) the tenant's role and database.
    #[tracing::instrument(
        name = "storage.allocate",
        skip_all,
        fields(tenant = %spec.tenant_id(), database = %spec.names.database)
    )]
    pub async fn allocate(&self, spec: &TenantSpec) -> StepResult<Allocation> {
        let names = &spec.names;
        let marker = self.marker(spec);
        let connection_limit = self.plan(&spec.request.plan).await?.db_connection_limit;

        let role_adopted = match self.role_claim(spec).await? {
            Claim::Ours => true,
            Claim::OtherPlatform(holder) => {
                return Err(foreign_resource(
                    "role",
                    &names.role,
                    &holder,
                    &self.platform,
                ));
            }
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

        let db_adopted = match self.database_claim(spec).await? {
            Claim::Ours => true,
            Claim::OtherPlatform(holder) => {
                return Err(foreign_resource(
                    "database",
                    &names.database,
                    &holder,
                    &self.platform,
                ));
            }
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
    /// belongs to someone else (another control plane included), is left alone: nothing of
    /// this control plane's is there, so the release succeeds.
    #[tracing::instrument(
        name = "storage.release",
        skip_all,
        fields(tenant = %spec.tenant_id(), database = %spec.names.database)
    )]
    pub async fn release(&self, spec: &TenantSpec) -> StepResult<()> {
        let names = &spec.names;

        match self.database_claim(spec).await? {
            Claim::Absent => {}
            Claim::OtherPlatform(holder) => {
                tracing::warn!(
                    holder = %holder,
                    "database with the tenant's name belongs to another control plane on this server; left in place"
                );
            }
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

        match self.role_claim(spec).await? {
            Claim::Absent => {}
            Claim::OtherPlatform(holder) => {
                tracing::warn!(
                    holder = %holder,
                    "role with the tenant's name belongs to another control plane on this server; left in place"
                );
            }
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

    /// True if the database or the role exists, whoever made it (another control plane
    /// included): a name that is taken, not a claim of ownership.
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
    /// Connections already open stay open. A role that is not this tenant's is left alone;
    /// one that another control plane made fails the step for good.
    pub async fn apply_connection_limit(
        &self,
        spec: &TenantSpec,
        connection_limit: i32,
    ) -> StepResult<()> {
        let role = &spec.names.role;
        let found: Option<(Option<String>, i32)> = sqlx::query_as(
            "SELECT shobj_description(oid, 'pg_authid'), rolconnlimit FROM pg_roles
             WHERE rolname = $1",
        )
        .bind(role)
        .fetch_optional(&self.admin)
        .await
        .map_err(|e| classify(e, "looking up the tenant role"))?;
        let current = found.as_ref().map_or(0, |(_, current)| *current);
        let comment = found.map(|(comment, _)| comment);
        match role_claim(comment, spec.tenant_id(), &self.platform) {
            Claim::Ours => {}
            Claim::OtherPlatform(holder) => {
                return Err(foreign_resource("role", role, &holder, &self.platform));
            }
            Claim::Absent | Claim::Foreign(_) => {
                return Err(StepError::Transient(anyhow!(
                    "the tenant role {role} is missing or not this tenant's"
                )));
            }
        }
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

    /// The marker this control plane puts on the tenant's role and database.
    fn marker(&self, spec: &TenantSpec) -> String {
        ownership_marker(spec.tenant_id(), &self.platform)
    }

    async fn role_claim(&self, spec: &TenantSpec) -> StepResult<Claim> {
        let found: Option<Option<String>> = sqlx::query_scalar(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
        )
        .bind(&spec.names.role)
        .fetch_optional(&self.admin)
        .await
        .map_err(|e| classify(e, "looking up the tenant role"))?;
        Ok(role_claim(found, spec.tenant_id(), &self.platform))
    }

    async fn database_claim(&self, spec: &TenantSpec) -> StepResult<Claim> {
        let found: Option<(Option<String>, String, Option<String>)> = sqlx::query_as(
            "SELECT shobj_description(d.oid, 'pg_database'),
                    pg_get_userbyid(d.datdba)::text,
                    (SELECT shobj_description(r.oid, 'pg_authid') FROM pg_roles r WHERE r.oid = d.datdba)
             FROM pg_database d WHERE d.datname = $1",
        )
        .bind(&spec.names.database)
        .fetch_optional(&self.admin)
        .await
        .map_err(|e| classify(e, "looking up the tenant database"))?;
        Ok(database_claim(
            found,
            &spec.names.role,
            spec.tenant_id(),
            &self.platform,
        ))
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

/// This control plane's id in ownership markers: the first 16 hex digits of
/// HMAC-SHA256(platform secret, "platform:" + control-plane database name). Two control
/// planes on one server have different databases, so their ids differ; one control plane
/// keeps its id across restarts, however its URL spells host or user. Control planes on
/// different servers whose databases have the same name differ only by their secrets: two
/// of them sharing a secret too would share an id (a server identity in the input would fix
/// that, at the price of ids changing when a server is moved).
pub fn platform_id(secret_key: &[u8], control_plane_url: &str) -> anyhow::Result<String> {
    let options: PgConnectOptions = control_plane_url
        .parse()
        .context("parsing the control-plane URL")?;
    // Without a database in the URL, PostgreSQL connects to the one named like the user.
    let database = options
        .get_database()
        .unwrap_or_else(|| options.get_username());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key).expect("HMAC accepts any key length");
    mac.update(b"platform:");
    mac.update(database.as_bytes());
    Ok(hex::encode(&mac.finalize().into_bytes()[..8]))
}

/// The comment that marks a role or database as this tenant's, made by this control plane.
fn ownership_marker(tenant_id: Uuid, platform: &str) -> String {
    format!("tenant:{tenant_id} platform:{platform}")
}

/// Reads `tenant:<uuid> platform:<id>`, or the older `tenant:<uuid>`; anything else is no
/// marker of ours.
fn parse_marker(comment: &str) -> Option<Marker> {
    let rest = comment.strip_prefix("tenant:")?;
    let (tenant, platform) = match rest.split_once(' ') {
        None => (rest, None),
        Some((tenant, platform)) => {
            let platform = platform.strip_prefix("platform:")?;
            if platform.is_empty() || platform.contains(char::is_whitespace) {
                return None;
            }
            (tenant, Some(platform.to_owned()))
        }
    };
    let tenant = Uuid::try_parse(tenant).ok()?;
    Some(Marker { tenant, platform })
}

/// Judges a marked object: ours only when it names this tenant and this control plane.
fn marker_claim(comment: &str, tenant_id: Uuid, platform: &str) -> Claim {
    match parse_marker(comment) {
        Some(m) if m.tenant == tenant_id && m.platform.as_deref() == Some(platform) => Claim::Ours,
        Some(Marker {
            tenant,
            platform: Some(other),
        }) if tenant == tenant_id => Claim::OtherPlatform(format!("marked by platform {other}")),
        Some(Marker {
            tenant,
            platform: None,
        }) if tenant == tenant_id => Claim::OtherPlatform(
            "marked without a platform: made before markers named their control plane".into(),
        ),
        _ => Claim::Foreign(format!("marked {comment:?}")),
    }
}

fn role_claim(found: Option<Option<String>>, tenant_id: Uuid, platform: &str) -> Claim {
    match found {
        None => Claim::Absent,
        Some(Some(comment)) => marker_claim(&comment, tenant_id, platform),
        // Our role gets its marker in the transaction that creates it.
        Some(None) => Claim::Foreign("no tenant marker".into()),
    }
}

/// `found` is (comment, owner name, owner's comment) of the database.
fn database_claim(
    found: Option<(Option<String>, String, Option<String>)>,
    role: &str,
    tenant_id: Uuid,
    platform: &str,
) -> Claim {
    match found {
        None => Claim::Absent,
        Some((Some(comment), _, _)) => marker_claim(&comment, tenant_id, platform),
        // CREATE DATABASE cannot share a transaction with its COMMENT: an attempt that died in
        // between leaves an unmarked database owned by the tenant's own role, which judges it.
        Some((None, owner, Some(owner_comment))) if owner == role => {
            match marker_claim(&owner_comment, tenant_id, platform) {
                Claim::Foreign(_) => Claim::Foreign(format!("unmarked, owned by {owner}")),
                claim => claim,
            }
        }
        Some((None, owner, _)) => Claim::Foreign(format!("unmarked, owned by {owner}")),
    }
}

/// A tenant's role or database made by another control plane sharing this server: never
/// adopted, so its data is never mixed with ours nor dropped by our release.
fn foreign_resource(what: &str, name: &str, holder: &str, platform: &str) -> StepError {
    StepError::permanent(
        "ForeignResource",
        format!(
            "the {what} {name} was made for this tenant by another control plane on this PostgreSQL server \
             ({holder}; this one is platform {platform}), which owns it; it is left untouched: \
             manage the tenant from that control plane, or drop the database and role there if it is gone"
        ),
    )
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

    const PLATFORM: &str = "0123456789abcdef";
    const OTHER_PLATFORM: &str = "fedcba9876543210";

    fn marker(tenant: u128, platform: &str) -> String {
        ownership_marker(Uuid::from_u128(tenant), platform)
    }

    #[test]
    fn markers_name_the_tenant_and_the_platform_and_read_back() {
        let id = Uuid::parse_str("6f1c2b9e-52a4-5d0e-9b7a-0c1d2e3f4a5b").unwrap();
        let written = ownership_marker(id, PLATFORM);
        assert_eq!(
            written,
            "tenant:6f1c2b9e-52a4-5d0e-9b7a-0c1d2e3f4a5b platform:0123456789abcdef"
        );
        assert_eq!(
            parse_marker(&written),
            Some(Marker {
                tenant: id,
                platform: Some(PLATFORM.into())
            })
        );
        // The format written before markers named their control plane.
        assert_eq!(
            parse_marker(&format!("tenant:{id}")),
            Some(Marker {
                tenant: id,
                platform: None
            })
        );
        for junk in [
            "",
            "precious",
            "tenant:",
            "tenant:not-a-uuid",
            &format!("tenant:{id} "),
            &format!("tenant:{id} platform:"),
            &format!("tenant:{id} owner:{PLATFORM}"),
            &format!("tenant:{id} platform:a b"),
            &format!("Tenant:{id}"),
        ] {
            assert_eq!(parse_marker(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn platform_ids_differ_per_control_plane_database_and_secret() {
        let key = [7u8; 32];
        let id = platform_id(
            &key,
            "postgres://postgres@127.0.0.1:5432/tenant_provisioner",
        )
        .unwrap();
        assert_eq!(id.len(), 16);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // Stable for one control plane however its URL is spelled.
        for same in [
            "postgres://postgres@127.0.0.1:5432/tenant_provisioner",
            "postgres://postgres:pw@localhost/tenant_provisioner?sslmode=disable",
            "postgresql://other@[::1]:5433/tenant_provisioner",
        ] {
            assert_eq!(platform_id(&key, same).unwrap(), id, "{same}");
        }
        // Another control-plane database on the same server, or another secret, differs.
        let other_db = platform_id(&key, "postgres://postgres@127.0.0.1:5432/other").unwrap();
        let test_db = platform_id(&key, "postgres://postgres@127.0.0.1:5432/tp_test_1").unwrap();
        let other_key = platform_id(
            &[8u8; 32],
            "postgres://postgres@127.0.0.1:5432/tenant_provisioner",
        )
        .unwrap();
        assert_ne!(id, other_db);
        assert_ne!(id, test_db);
        assert_ne!(id, other_key);
        // Without a database in the URL PostgreSQL uses the user's name; so does the id.
        assert_eq!(
            platform_id(&key, "postgres://other@127.0.0.1:5432").unwrap(),
            platform_id(&key, "postgres://other@127.0.0.1:5432/other").unwrap()
        );
        assert!(platform_id(&key, "not a url").is_err());
    }

    #[test]
    fn roles_are_ours_only_with_our_tenant_and_platform() {
        let id = Uuid::from_u128(1);
        let claim = |comment: Option<Option<String>>| role_claim(comment, id, PLATFORM);
        assert_eq!(claim(None), Claim::Absent);
        assert_eq!(claim(Some(Some(marker(1, PLATFORM)))), Claim::Ours);
        assert!(matches!(claim(Some(None)), Claim::Foreign(_)));
        assert!(matches!(
            claim(Some(Some(marker(2, PLATFORM)))),
            Claim::Foreign(_)
        ));
        assert!(matches!(
            claim(Some(Some("precious".into()))),
            Claim::Foreign(_)
        ));
        // The same tenant made by another control plane, or by one from before markers
        // named their platform, is another control plane's.
        match claim(Some(Some(marker(1, OTHER_PLATFORM)))) {
            Claim::OtherPlatform(holder) => assert!(holder.contains(OTHER_PLATFORM), "{holder}"),
            other => panic!("expected OtherPlatform, got {other:?}"),
        }
        match claim(Some(Some(format!("tenant:{id}")))) {
            Claim::OtherPlatform(holder) => assert!(holder.contains("without a platform")),
            other => panic!("expected OtherPlatform, got {other:?}"),
        }
        // A legacy marker of another tenant is no claim on this tenant at all.
        assert!(matches!(
            claim(Some(Some(format!("tenant:{}", Uuid::from_u128(2))))),
            Claim::Foreign(_)
        ));
    }

    #[test]
    fn an_unmarked_database_is_judged_by_its_owner_role_when_that_is_the_tenant_role() {
        let id = Uuid::from_u128(1);
        let claim = |found| database_claim(Some(found), "t_1", id, PLATFORM);
        let m = marker(1, PLATFORM);
        assert_eq!(database_claim(None, "t_1", id, PLATFORM), Claim::Absent);
        assert_eq!(
            claim((Some(m.clone()), "postgres".into(), None)),
            Claim::Ours
        );
        assert_eq!(claim((None, "t_1".into(), Some(m.clone()))), Claim::Ours);
        for found in [
            (
                Some(marker(1, OTHER_PLATFORM)),
                "t_1".into(),
                Some(m.clone()),
            ),
            (Some(format!("tenant:{id}")), "t_1".into(), Some(m.clone())),
            (None, "t_1".into(), Some(marker(1, OTHER_PLATFORM))),
            (None, "t_1".into(), Some(format!("tenant:{id}"))),
        ] {
            assert!(
                matches!(claim(found.clone()), Claim::OtherPlatform(_)),
                "{found:?}"
            );
        }
        for found in [
            (Some(marker(2, PLATFORM)), "t_1".into(), Some(m.clone())),
            (None, "t_1".into(), Some(marker(2, PLATFORM))),
            (None, "t_1".into(), None),
            (None, "postgres".into(), None),
            (None, "postgres".into(), Some(m.clone())),
        ] {
            assert!(
                matches!(claim(found.clone()), Claim::Foreign(_)),
                "{found:?}"
            );
        }
    }

    #[test]
    fn a_foreign_resource_error_is_permanent_and_says_who_owns_it() {
        let err = foreign_resource("database", "t_abc", "marked by platform fedc", PLATFORM);
        assert_eq!(err.kind(), "ForeignResource");
        assert!(matches!(err, StepError::Permanent { .. }));
        let message = err.to_string();
        assert!(message.contains("database t_abc"), "{message}");
        assert!(
            message.contains("another control plane on this PostgreSQL server"),
            "{message}"
        );
        assert!(
            message.contains("fedc") && message.contains(PLATFORM),
            "{message}"
        );
        assert!(crate::temporal::PERMANENT_ERROR_TYPES.contains(&"ForeignResource"));
    }
}
