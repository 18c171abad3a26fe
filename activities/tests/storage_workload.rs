//! The storage and workload drivers against the real PostgreSQL on 127.0.0.1:5432 and the
//! real `tenant-service` binary.
//!
//! Each test makes its own control-plane database, tenant names and runtime directory, and
//! drops what it made when it ends, passed or not. The binary is taken from
//! `TP_TENANT_SERVICE_BIN`, or built with `cargo build -p tenant-service` next to this test.
//! Tests run one at a time: the machine's PostgreSQL allows 100 connections in all.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tenant_activities::identity::Identity;
use tenant_activities::secrets::{self, Purpose, Secret};
use tenant_activities::storage::Storage;
use tenant_activities::workload::{WorkloadSizing, Workloads};
use tenant_activities::{ActivitiesConfig, StepError};
use tenant_domain::{ResourceKind, TenantKey, TenantRequest, TenantSpec, validate};
use tenant_store::{AcceptOutcome, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio::time::Instant;

const PG: &str = "postgres://postgres@127.0.0.1:5432";
const PLANS: &[&str] = &["free", "growth", "enterprise"];

/// Serialises the tests of this file (see the module comment). A tokio mutex: each test has
/// its own runtime, and a failed test must not poison the others.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

fn random_word(len: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..len].to_owned()
}

/// What one test made, dropped when the test ends.
struct Harness {
    cfg: Arc<ActivitiesConfig>,
    store: Store,
    admin: PgPool,
    databases: Mutex<Vec<String>>,
    roles: Mutex<Vec<String>>,
    pids: Mutex<Vec<i32>>,
}

impl Harness {
    async fn new() -> anyhow::Result<Self> {
        Self::with_service_bin(service_bin().clone()).await
    }

    async fn with_service_bin(tenant_service_bin: PathBuf) -> anyhow::Result<Self> {
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect(&format!("{PG}/postgres"))
            .await
            .context("connecting to PostgreSQL on 127.0.0.1:5432")?;
        let control_db = format!("tp_it_{}", random_word(10));
        sqlx::raw_sql(&format!("CREATE DATABASE {control_db}"))
            .execute(&admin)
            .await?;
        let control_plane_url = format!("{PG}/{control_db}");
        let harness_databases = vec![control_db];
        let store = match Store::connect(&control_plane_url, 2).await {
            Ok(store) => store,
            Err(e) => {
                drop_all(&admin, &harness_databases, &[]).await;
                return Err(e);
            }
        };

        let runtime_dir = PathBuf::from(format!("/tmp/tpw-{}", random_word(6)));
        std::fs::create_dir_all(&runtime_dir)?;
        let mut secret_key = [0u8; 32];
        secret_key.copy_from_slice(&uuid::Uuid::new_v4().as_bytes().repeat(2));
        let cfg = ActivitiesConfig {
            control_plane_url,
            storage_admin_url: format!("{PG}/postgres"),
            storage_host: "127.0.0.1".into(),
            storage_port: 5432,
            domain: "tenants.localhost".into(),
            public_https_port: 8443,
            platform_http_port: unused_port().await,
            caddy_admin_url: "http://127.0.0.1:2019".into(),
            runtime_dir,
            tenant_service_bin,
            smtp_host: "127.0.0.1".into(),
            smtp_port: 1025,
            mail_from: "platform@example.com".into(),
            console_url: None,
            secret_key: secret_key.to_vec(),
            fail_phase: None,
            slow_phase: None,
        };
        cfg.check().map_err(anyhow::Error::msg)?;
        Ok(Self {
            cfg: Arc::new(cfg),
            store,
            admin,
            databases: Mutex::new(harness_databases),
            roles: Mutex::new(Vec::new()),
            pids: Mutex::new(Vec::new()),
        })
    }

    /// A tenant with fresh random names; its storage is dropped at the end in any case.
    fn tenant(&self, plan: &str) -> TenantSpec {
        let (org, slug) = (
            format!("o{}", random_word(8)),
            format!("s{}", random_word(8)),
        );
        let request = TenantRequest {
            org: org.clone(),
            slug: slug.clone(),
            plan: plan.into(),
            first_admin_email: "admin@example.com".into(),
            name: Some(format!("shop-{}", random_word(4))),
        };
        let request = validate(&request, PLANS).expect("a valid request");
        let names = TenantKey::new(org, slug).derive(&self.cfg.domain);
        self.databases.lock().unwrap().push(names.database.clone());
        self.roles.lock().unwrap().push(names.role.clone());
        TenantSpec {
            request,
            names,
            incarnation: 1,
            requested_by: "storage-workload-test".into(),
        }
    }

    async fn storage(&self) -> Storage {
        Storage::new(self.cfg.clone(), self.store.clone())
            .await
            .expect("storage driver")
    }

    /// A login role that is not the tenant's, dropped at the end.
    async fn other_role(&self) -> String {
        let role = format!("t_other_{}", random_word(8));
        self.roles.lock().unwrap().push(role.clone());
        sqlx::raw_sql(&format!("CREATE ROLE {role} LOGIN"))
            .execute(&self.admin)
            .await
            .unwrap();
        role
    }

    fn track_pid(&self, pid: i32) {
        self.pids.lock().unwrap().push(pid);
    }
}

/// Puts a fresh realm key into the tenant database at `url`, as the deploy step does from
/// the control plane: the service is ready only once it has one.
async fn install_test_realm(url: &Secret) {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;

    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let realm = tenant_service::db::RealmKey {
        key_id: format!("test-{}", &x[..8]),
        private_key_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap(),
        public_jwk: serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": x, "kid": format!("test-{}", &x[..8]),
            "alg": "EdDSA", "use": "sig",
        }),
    };
    let options: sqlx::postgres::PgConnectOptions = url.expose().parse().unwrap();
    let mut conn = tenant_service::db::open(&options).await.unwrap();
    tenant_service::db::install(&mut conn, &realm, None)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

impl Drop for Harness {
    fn drop(&mut self) {
        for pid in self.pids.lock().unwrap().drain(..) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
        let databases = std::mem::take(&mut *self.databases.lock().unwrap());
        let roles = std::mem::take(&mut *self.roles.lock().unwrap());
        // Drop runs inside the test's runtime, which cannot block on itself.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = PgPool::connect(&format!("{PG}/postgres")).await {
                    drop_all(&admin, &databases, &roles).await;
                    admin.close().await;
                }
            });
        })
        .join()
        .ok();
        let _ = std::fs::remove_dir_all(&self.cfg.runtime_dir);
    }
}

async fn drop_all(admin: &PgPool, databases: &[String], roles: &[String]) {
    for db in databases {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
            .execute(admin)
            .await;
    }
    for role in roles {
        let _ = sqlx::raw_sql(&format!("DROP ROLE IF EXISTS \"{role}\""))
            .execute(admin)
            .await;
    }
}

/// The tenant-service binary, built once per test run unless given.
fn service_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("TP_TENANT_SERVICE_BIN") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "tenant-service"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build -p tenant-service");
        assert!(status.success(), "cargo build -p tenant-service failed");
        // This test runs from <target>/debug/deps; the binary lands in <target>/debug.
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join("tenant-service");
        assert!(
            bin.exists(),
            "no tenant-service binary at {}",
            bin.display()
        );
        bin
    })
}

/// A loopback port nothing listens on (bound once, then released).
async fn unused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn socket_path(cfg: &ActivitiesConfig, spec: &TenantSpec) -> PathBuf {
    cfg.runtime_dir
        .join("workloads")
        .join(format!("{}.sock", spec.tenant_id().simple()))
}

fn pid_path(cfg: &ActivitiesConfig, spec: &TenantSpec) -> PathBuf {
    cfg.runtime_dir
        .join("workloads")
        .join(format!("{}.pid", spec.tenant_id().simple()))
}

/// One HTTP/1.1 GET over a unix socket: (status, lower-cased head, body).
async fn unix_get(socket: &Path, path: &str) -> Option<(u16, String, String)> {
    let mut stream = UnixStream::connect(socket).await.ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: test.tenants.localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_ascii_lowercase(), body.to_owned()))
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// True when `verifier` (PostgreSQL's stored SCRAM-SHA-256 secret) was made from `password`.
/// Written independently of the driver, and itself checked against PostgreSQL below.
fn scram_matches(verifier: &str, password: &str) -> bool {
    let Some(rest) = verifier.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((params, keys)) = rest.split_once('$') else {
        return false;
    };
    let Some((iterations, salt)) = params.split_once(':') else {
        return false;
    };
    let Some((stored_key, _server_key)) = keys.split_once(':') else {
        return false;
    };
    let (Ok(iterations), Ok(salt)) = (iterations.parse::<u32>(), BASE64.decode(salt)) else {
        return false;
    };
    let hmac = |key: &[u8], data: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    };
    let mut block = salt.clone();
    block.extend_from_slice(&[0, 0, 0, 1]);
    let mut u = hmac(password.as_bytes(), &block);
    let mut salted = u.clone();
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        for (s, x) in salted.iter_mut().zip(&u) {
            *s ^= x;
        }
    }
    let client_key = hmac(&salted, b"Client Key");
    BASE64.encode(Sha256::digest(&client_key)) == stored_key
}

async fn stored_verifier(admin: &PgPool, role: &str) -> String {
    sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(role)
        .fetch_one(admin)
        .await
        .unwrap()
}

/// Allocating twice adopts, the role has the derived password and the plan's connection
/// limit, only the tenant's role may connect, and releasing twice leaves nothing behind.
#[tokio::test]
async fn storage_allocates_adopts_isolates_and_releases() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let spec = h.tenant("free");
    let storage = h.storage().await;
    assert!(!storage.exists(&spec).await.unwrap());

    let first = storage.allocate(&spec).await.unwrap();
    assert_eq!(first.kind, ResourceKind::Storage);
    assert_eq!(first.name, spec.names.database);
    assert!(!first.adopted);
    let second = storage.allocate(&spec).await.unwrap();
    assert!(
        second.adopted,
        "the second allocation must adopt what the first made"
    );
    assert!(storage.exists(&spec).await.unwrap());

    // Ownership markers, owner and the free plan's connection limit.
    let marker = format!(
        "tenant:{} platform:{}",
        spec.tenant_id(),
        storage.platform_id()
    );
    let (db_comment, owner): (Option<String>, String) = sqlx::query_as(
        "SELECT shobj_description(oid, 'pg_database'), pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
    )
    .bind(&spec.names.database)
    .fetch_one(&h.admin)
    .await
    .unwrap();
    assert_eq!(db_comment.as_deref(), Some(marker.as_str()));
    assert_eq!(owner, spec.names.role);
    let (role_comment, limit, superuser): (Option<String>, i32, bool) = sqlx::query_as(
        "SELECT shobj_description(oid, 'pg_authid'), rolconnlimit, rolsuper FROM pg_roles WHERE rolname = $1",
    )
    .bind(&spec.names.role)
    .fetch_one(&h.admin)
    .await
    .unwrap();
    assert_eq!(role_comment.as_deref(), Some(marker.as_str()));
    assert_eq!(limit, 5, "the free plan's db_connection_limit");
    assert!(!superuser);

    // The server trusts loopback here, so a login proves nothing about the password: check
    // the stored verifier instead, with a checker that PostgreSQL's own verifier validates.
    let password = secrets::derive(
        &h.cfg.secret_key,
        spec.tenant_id(),
        1,
        Purpose::DatabasePassword,
    );
    let verifier = stored_verifier(&h.admin, &spec.names.role).await;
    assert!(
        scram_matches(&verifier, password.expose()),
        "stored verifier does not match the derived password"
    );
    let next_incarnation = secrets::derive(
        &h.cfg.secret_key,
        spec.tenant_id(),
        2,
        Purpose::DatabasePassword,
    );
    assert!(!scram_matches(&verifier, next_incarnation.expose()));
    let probe_role = h.other_role().await;
    sqlx::raw_sql(&format!(
        "SET password_encryption = 'scram-sha-256'; ALTER ROLE {probe_role} PASSWORD 'pencil-probe'"
    ))
    .execute(&h.admin)
    .await
    .unwrap();
    let native = stored_verifier(&h.admin, &probe_role).await;
    assert!(scram_matches(&native, "pencil-probe") && !scram_matches(&native, "pencil-probf"));

    // The workload's URL reaches the tenant's database as the tenant's role.
    let url = storage.connection_url(&spec);
    assert_eq!(
        url.expose(),
        format!(
            "postgres://{}:{}@127.0.0.1:5432/{}",
            spec.names.role,
            password.expose(),
            spec.names.database
        )
    );
    assert_eq!(format!("{url:?}"), "Secret(..)");
    let mut tenant_conn = PgConnection::connect(url.expose()).await.unwrap();
    let (user, db): (String, String) =
        sqlx::query_as("SELECT current_user::text, current_database()::text")
            .fetch_one(&mut tenant_conn)
            .await
            .unwrap();
    assert_eq!(
        (user.as_str(), db.as_str()),
        (spec.names.role.as_str(), spec.names.database.as_str())
    );
    sqlx::query("CREATE TABLE owned_by_tenant (id int)")
        .execute(&mut tenant_conn)
        .await
        .unwrap();

    // Any other role is refused at connect time.
    let other = h.other_role().await;
    let refused = PgConnection::connect(&format!(
        "postgres://{other}@127.0.0.1:5432/{}",
        spec.names.database
    ))
    .await
    .expect_err("a role that is not the tenant's must not connect");
    let code = refused
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("42501"), "{refused}");
    // ...while the same role can connect where PUBLIC still may, so the refusal is the grant.
    PgConnection::connect(&format!("postgres://{other}@127.0.0.1:5432/postgres"))
        .await
        .unwrap();

    // Release ends the open session, and is idempotent.
    storage.release(&spec).await.unwrap();
    assert!(!storage.exists(&spec).await.unwrap());
    assert!(
        sqlx::query("SELECT 1")
            .execute(&mut tenant_conn)
            .await
            .is_err(),
        "session survived the drop"
    );
    storage.release(&spec).await.unwrap();
    assert!(!storage.exists(&spec).await.unwrap());
}

/// A role or database of the tenant's name that is not marked as this tenant's is neither
/// adopted nor dropped.
#[tokio::test]
async fn storage_refuses_and_keeps_objects_it_does_not_own() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let storage = h.storage().await;

    // A role marked for another tenant.
    let spec = h.tenant("growth");
    sqlx::raw_sql(&format!(
        "CREATE ROLE \"{role}\" LOGIN; COMMENT ON ROLE \"{role}\" IS 'tenant:00000000-0000-0000-0000-000000000001'",
        role = spec.names.role
    ))
    .execute(&h.admin)
    .await
    .unwrap();
    match storage.allocate(&spec).await {
        Err(StepError::Permanent { kind, message }) => {
            assert_eq!(kind, "NameTaken");
            assert!(message.contains(&spec.names.role), "{message}");
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    storage.release(&spec).await.unwrap();
    let role_left: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(&spec.names.role)
            .fetch_one(&h.admin)
            .await
            .unwrap();
    assert!(
        role_left,
        "release dropped a role that belongs to someone else"
    );

    // An unmarked database someone made by hand: the role is created (and is ours), the
    // database is refused; release drops our role and leaves the database.
    let spec = h.tenant("growth");
    sqlx::raw_sql(&format!("CREATE DATABASE \"{}\"", spec.names.database))
        .execute(&h.admin)
        .await
        .unwrap();
    let err = storage
        .allocate(&spec)
        .await
        .expect_err("an unmarked database must not be adopted");
    assert_eq!(err.kind(), "NameTaken", "{err}");
    let limit: i32 = sqlx::query_scalar("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1")
        .bind(&spec.names.role)
        .fetch_one(&h.admin)
        .await
        .unwrap();
    assert_eq!(limit, 20, "the growth plan's db_connection_limit");
    storage.release(&spec).await.unwrap();
    let (db_left, role_left): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1), EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2)",
    )
    .bind(&spec.names.database)
    .bind(&spec.names.role)
    .fetch_one(&h.admin)
    .await
    .unwrap();
    assert!(
        db_left,
        "release dropped a database that belongs to someone else"
    );
    assert!(!role_left, "release left the tenant's own role behind");
}

/// What a tenant's role and database look like from the outside: their comments, the role's
/// stored password verifier and connection limit, and the tables in the database.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    role_comment: Option<String>,
    role_password: Option<String>,
    role_limit: i32,
    db_comment: Option<String>,
    tables: Vec<String>,
}

async fn snapshot(admin: &PgPool, spec: &TenantSpec) -> Snapshot {
    let (role_comment, role_password, role_limit): (Option<String>, Option<String>, i32) =
        sqlx::query_as(
            "SELECT shobj_description(oid, 'pg_authid'), rolpassword, rolconnlimit
             FROM pg_authid WHERE rolname = $1",
        )
        .bind(&spec.names.role)
        .fetch_one(admin)
        .await
        .expect("the role is still there");
    let db_comment: Option<String> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(&spec.names.database)
    .fetch_one(admin)
    .await
    .expect("the database is still there");
    let mut conn = PgConnection::connect(&format!("{PG}/{}", spec.names.database))
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT schemaname || '.' || tablename FROM pg_tables
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    Snapshot {
        role_comment,
        role_password,
        role_limit,
        db_comment,
        tables,
    }
}

/// Makes the tenant's role and database by hand, as another control plane on this server
/// would, marked `marker`, with a table `precious` holding one row.
async fn make_elsewhere(admin: &PgPool, spec: &TenantSpec, marker: &str) {
    let (role, db) = (&spec.names.role, &spec.names.database);
    sqlx::raw_sql(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD 'the-other-stacks-password' CONNECTION LIMIT 7; \
         COMMENT ON ROLE \"{role}\" IS '{marker}'"
    ))
    .execute(admin)
    .await
    .unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE \"{db}\" OWNER \"{role}\""))
        .execute(admin)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("COMMENT ON DATABASE \"{db}\" IS '{marker}'"))
        .execute(admin)
        .await
        .unwrap();
    let mut conn = PgConnection::connect(&format!("{PG}/{db}")).await.unwrap();
    sqlx::raw_sql("CREATE TABLE precious (id int); INSERT INTO precious VALUES (42)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// Asserts that `err` is the permanent refusal of another control plane's resource, naming
/// the tenant's database (the role has the same name) and never its password.
fn assert_foreign(err: StepError, spec: &TenantSpec, cfg: &ActivitiesConfig, holder: &str) {
    let password = secrets::derive(
        &cfg.secret_key,
        spec.tenant_id(),
        spec.incarnation,
        Purpose::DatabasePassword,
    );
    match err {
        StepError::Permanent { kind, message } => {
            assert_eq!(kind, "ForeignResource", "{message}");
            assert!(message.contains(&spec.names.database), "{message}");
            assert!(
                message.contains("another control plane on this PostgreSQL server"),
                "{message}"
            );
            assert!(message.contains(holder), "{message}");
            assert!(!message.contains(password.expose()), "{message}");
            assert!(!message.contains("the-other-stacks-password"), "{message}");
        }
        other => panic!("expected a permanent ForeignResource error, got {other:?}"),
    }
}

/// A tenant's database and role made by another control plane sharing this server (the same
/// organisation and slug give the same names), or by one from before markers named their
/// control plane, are refused for good and left exactly as they were: not adopted, no
/// password or limit changed, nothing installed next to their tables, and never dropped by
/// a release or by a deploy's connection limit.
#[tokio::test]
async fn storage_never_adopts_or_drops_another_control_planes_tenant() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let storage = h.storage().await;

    for (marker_of, holder) in [
        (
            Box::new(|id: uuid::Uuid| format!("tenant:{id} platform:00112233aabbccdd"))
                as Box<dyn Fn(uuid::Uuid) -> String>,
            "00112233aabbccdd",
        ),
        (
            Box::new(|id: uuid::Uuid| format!("tenant:{id}")),
            "without a platform",
        ),
    ] {
        let spec = h.tenant("growth");
        let marker = marker_of(spec.tenant_id());
        make_elsewhere(&h.admin, &spec, &marker).await;
        let before = snapshot(&h.admin, &spec).await;
        assert_eq!(before.tables, ["public.precious"]);

        let err = storage
            .allocate(&spec)
            .await
            .expect_err("another control plane's storage must not be adopted");
        assert_foreign(err, &spec, &h.cfg, holder);
        assert_eq!(snapshot(&h.admin, &spec).await, before, "{marker}");

        let err = storage
            .apply_connection_limit(&spec, 20)
            .await
            .expect_err("another control plane's role must keep its limit");
        assert_foreign(err, &spec, &h.cfg, holder);
        assert_eq!(snapshot(&h.admin, &spec).await, before, "{marker}");

        storage
            .release(&spec)
            .await
            .expect("releasing what is not ours succeeds: nothing of ours is there");
        assert_eq!(snapshot(&h.admin, &spec).await, before, "{marker}");
        let mut conn = PgConnection::connect(&format!("{PG}/{}", spec.names.database))
            .await
            .unwrap();
        let kept: i32 = sqlx::query_scalar("SELECT id FROM precious")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(kept, 42);
        conn.close().await.unwrap();
    }
}

/// Two control planes on one server (same secret, different control-plane databases) derive
/// the same tenant names: the second refuses and keeps the first's storage, which the first
/// still adopts and releases.
#[tokio::test]
async fn two_control_planes_on_one_server_keep_to_their_own_storage() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let ours = h.storage().await;
    let mut other_cfg = (*h.cfg).clone();
    other_cfg.control_plane_url = format!("{PG}/tp_other_{}", random_word(8));
    let theirs = Storage::new(Arc::new(other_cfg.clone()), h.store.clone())
        .await
        .unwrap();
    assert_ne!(ours.platform_id(), theirs.platform_id());
    // One control plane keeps its id across restarts.
    assert_eq!(ours.platform_id(), h.storage().await.platform_id());

    let spec = h.tenant("free");
    assert!(!ours.allocate(&spec).await.unwrap().adopted);
    let mut conn = PgConnection::connect(ours.connection_url(&spec).expose())
        .await
        .unwrap();
    sqlx::query("CREATE TABLE orders (id int)")
        .execute(&mut conn)
        .await
        .unwrap();
    let before = snapshot(&h.admin, &spec).await;

    let err = theirs.allocate(&spec).await.unwrap_err();
    assert_foreign(err, &spec, &other_cfg, ours.platform_id());
    theirs.release(&spec).await.unwrap();
    assert_eq!(snapshot(&h.admin, &spec).await, before);
    sqlx::query("SELECT count(*) FROM orders")
        .execute(&mut conn)
        .await
        .expect("the other control plane's release ended our session");

    assert!(ours.allocate(&spec).await.unwrap().adopted);
    ours.release(&spec).await.unwrap();
    assert!(!ours.exists(&spec).await.unwrap());
}

/// The same control plane adopts its own storage on every retry, allocates afresh after a
/// release, and adopts a database whose creation was cut off before it was marked.
#[tokio::test]
async fn storage_adopts_its_own_after_release_and_after_a_cut_off_creation() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let storage = h.storage().await;
    let spec = h.tenant("free");

    assert!(!storage.allocate(&spec).await.unwrap().adopted);
    assert!(storage.allocate(&spec).await.unwrap().adopted);
    storage.release(&spec).await.unwrap();
    assert!(!storage.exists(&spec).await.unwrap());
    assert!(!storage.allocate(&spec).await.unwrap().adopted);
    assert!(storage.allocate(&spec).await.unwrap().adopted);
    storage.apply_connection_limit(&spec, 9).await.unwrap();

    // The database's marker is written after CREATE DATABASE: without it, the database is
    // still ours when our marked role owns it, and allocation marks it.
    sqlx::raw_sql(&format!(
        "COMMENT ON DATABASE \"{}\" IS NULL",
        spec.names.database
    ))
    .execute(&h.admin)
    .await
    .unwrap();
    assert!(storage.allocate(&spec).await.unwrap().adopted);
    let expected = format!(
        "tenant:{} platform:{}",
        spec.tenant_id(),
        storage.platform_id()
    );
    let after = snapshot(&h.admin, &spec).await;
    assert_eq!(after.db_comment.as_deref(), Some(expected.as_str()));
    assert_eq!(after.role_comment.as_deref(), Some(expected.as_str()));
    assert_eq!(
        after.role_limit, 5,
        "allocation applies the free plan's limit"
    );

    storage.release(&spec).await.unwrap();
    assert!(!storage.exists(&spec).await.unwrap());
}

/// Two allocations racing for the same tenant never fail permanently, and a retry after the
/// race adopts the one role and database that exist.
#[tokio::test]
async fn concurrent_allocations_converge() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let (a, b) = (h.storage().await, h.storage().await);
    for _ in 0..3 {
        let spec = h.tenant("enterprise");
        let (ra, rb) = tokio::join!(a.allocate(&spec), b.allocate(&spec));
        for result in [&ra, &rb] {
            if let Err(e) = result {
                assert!(
                    matches!(e, StepError::Transient(_)),
                    "a race must be retryable: {e}"
                );
            }
        }
        assert!(
            ra.is_ok() || rb.is_ok(),
            "one of two racing allocations must succeed"
        );
        let retry = a.allocate(&spec).await.unwrap();
        assert!(retry.adopted);
        a.release(&spec).await.unwrap();
        assert!(!a.exists(&spec).await.unwrap());
    }
}

/// The service answers on its socket, names its tenant on every response, holds the lock so
/// a second copy exits with code 3, and removes its socket on SIGTERM.
#[tokio::test]
async fn tenant_service_serves_and_a_second_copy_exits_3() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let spec = h.tenant("free");
    let storage = h.storage().await;
    storage.allocate(&spec).await.unwrap();
    let url = storage.connection_url(&spec);
    install_test_realm(&url).await;
    let dir = h.cfg.runtime_dir.join("workloads");
    std::fs::create_dir_all(&dir).unwrap();

    let start = |socket: &Path, log: &str| {
        let log = std::fs::File::create(dir.join(log)).unwrap();
        let child = std::process::Command::new(service_bin())
            .env_clear()
            .env("TENANT_ID", spec.tenant_id().to_string())
            .env("TENANT_HOST", &spec.names.host)
            .env("TENANT_NAME", &spec.request.name)
            .env("TENANT_ORG", &spec.request.org)
            .env("TENANT_SLUG", &spec.request.slug)
            .env("TENANT_SOCKET", socket)
            .env("DATABASE_URL", url.expose())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        h.track_pid(child.id() as i32);
        child
    };

    let socket = dir.join("first.sock");
    let mut first = start(&socket, "first.log");
    wait_until(
        "the first copy is ready",
        Duration::from_secs(30),
        || async { matches!(unix_get(&socket, "/healthz/ready").await, Some((200, _, _))) },
    )
    .await;
    let (_, head, body) = unix_get(&socket, "/healthz/ready").await.unwrap();
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["tenant_id"], spec.tenant_id().to_string());
    assert_eq!(ready["host"], spec.names.host);
    assert_eq!(ready["ready"], true);
    assert!(
        head.contains(&format!("x-tenant-id: {}", spec.tenant_id())),
        "{head}"
    );
    let (status, head, body) = unix_get(&socket, "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!("{} is up", spec.request.name)),
        "{body}"
    );
    assert!(body.contains(&spec.names.host), "{body}");
    assert!(
        head.contains(&format!("x-tenant-id: {}", spec.tenant_id())),
        "{head}"
    );
    let (status, head, _) = unix_get(&socket, "/nowhere").await.unwrap();
    assert_eq!(status, 404);
    assert!(head.contains("x-tenant-id"), "{head}");
    assert_eq!(unix_get(&socket, "/healthz/live").await.unwrap().2, "ok");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o660,
        "open to the edge's user and group, nobody else"
    );

    // The second copy must give up on the lock before binding anything.
    let second_socket = dir.join("second.sock");
    let mut second = start(&second_socket, "second.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the second copy did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(3), "second copy: {status}");
    assert!(!second_socket.exists(), "the second copy bound its socket");
    let second_log = std::fs::read_to_string(dir.join("second.log")).unwrap();
    assert!(second_log.contains("another copy"), "{second_log}");
    assert!(first.try_wait().unwrap().is_none(), "the first copy died");
    assert!(matches!(
        unix_get(&socket, "/healthz/ready").await,
        Some((200, _, _))
    ));

    // One recorded start, within the connection budget, and no password in the logs.
    let mut conn = PgConnection::connect(url.expose()).await.unwrap();
    let starts: i64 = sqlx::query_scalar("SELECT count(*) FROM service_starts")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(starts, 1);
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&spec.names.role)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        (1..=3).contains(&sessions),
        "the service holds {sessions} connections"
    );
    conn.close().await.unwrap();
    let password = url_password(&url);
    for log in ["first.log", "second.log"] {
        let text = std::fs::read_to_string(dir.join(log)).unwrap();
        assert!(
            !text.contains(password),
            "{log} contains the database password"
        );
    }

    // SIGTERM: a clean exit that removes the socket.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the service ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "the socket outlived the service");

    storage.release(&spec).await.unwrap();
}

fn url_password(url: &Secret) -> &str {
    let userinfo = url
        .expose()
        .split_once("://")
        .unwrap()
        .1
        .split_once('@')
        .unwrap()
        .0;
    userinfo.split_once(':').unwrap().1
}

/// Deploy starts one service in a session of its own with only the tenant's environment,
/// adopts it when it is already ready, replaces it after a crash, and release stops it.
#[tokio::test]
async fn deploy_adopts_restarts_and_release_stops() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let spec = h.tenant("free");
    let storage = h.storage().await;
    storage.allocate(&spec).await.unwrap();
    let url = storage.connection_url(&spec);
    install_test_realm(&url).await;
    let workloads = Workloads::new(h.cfg.clone());
    assert!(workloads.running_pids(&spec).is_empty());

    let beats = AtomicUsize::new(0);
    let heartbeat = || {
        beats.fetch_add(1, Ordering::SeqCst);
    };
    let first = workloads.deploy(&spec, &url, &heartbeat).await.unwrap();
    assert_eq!(first.kind, ResourceKind::Workload);
    assert_eq!(first.name, spec.names.workload);
    assert!(!first.adopted);
    assert!(beats.load(Ordering::SeqCst) >= 2);
    let pids = workloads.running_pids(&spec);
    assert_eq!(pids.len(), 1, "{pids:?}");
    let pid = pids[0];
    h.track_pid(pid);
    let recorded: i32 = std::fs::read_to_string(pid_path(&h.cfg, &spec))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(recorded, pid);

    // Its own session, so killing the worker's group or terminal does not reach it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], pid.to_string(), "session id");
    assert_eq!(fields[2], pid.to_string(), "process group");
    // The database URL is in the environment only, and nothing of the worker's leaks in.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(url_password(&url)));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let mut keys: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            String::from_utf8_lossy(kv)
                .split('=')
                .next()
                .unwrap()
                .to_owned()
        })
        .filter(|k| k != "RUST_LOG")
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "DATABASE_URL",
            "TENANT_DB_POOL",
            "TENANT_HOST",
            "TENANT_ID",
            "TENANT_ISSUER",
            "TENANT_MAX_CONCURRENT_REQUESTS",
            "TENANT_NAME",
            "TENANT_ORG",
            "TENANT_SETTINGS_DIGEST",
            "TENANT_SLUG",
            "TENANT_SOCKET"
        ]
    );

    let again = workloads.deploy(&spec, &url, &heartbeat).await.unwrap();
    assert!(again.adopted, "a ready service must be adopted");
    assert_eq!(
        workloads.running_pids(&spec),
        vec![pid],
        "deploy started a second copy"
    );

    let home = workloads.workload_get(&spec, "/").await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(
        home.headers()["x-tenant-id"],
        spec.tenant_id().to_string().as_str()
    );
    assert!(home.text().await.unwrap().contains("is up"));

    // A crashed service (stale socket and pid file left behind) is replaced.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    wait_until(
        "the killed service is gone",
        Duration::from_secs(10),
        || async { workloads.running_pids(&spec).is_empty() },
    )
    .await;
    assert!(
        socket_path(&h.cfg, &spec).exists(),
        "a killed service leaves its socket"
    );
    let replaced = workloads.deploy(&spec, &url, &heartbeat).await.unwrap();
    assert!(!replaced.adopted);
    let pids = workloads.running_pids(&spec);
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert_ne!(pids[0], pid);
    h.track_pid(pids[0]);

    workloads.release(&spec).await.unwrap();
    assert!(workloads.running_pids(&spec).is_empty());
    assert!(!socket_path(&h.cfg, &spec).exists());
    assert!(!pid_path(&h.cfg, &spec).exists());
    workloads.release(&spec).await.unwrap();
    assert!(
        workloads
            .workload_get(&spec, "/healthz/ready")
            .await
            .is_err()
    );

    let mut conn = PgConnection::connect(url.expose()).await.unwrap();
    let starts: i64 = sqlx::query_scalar("SELECT count(*) FROM service_starts")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(starts, 2, "one start per deploy that was not adopted");
    conn.close().await.unwrap();
    storage.release(&spec).await.unwrap();
}

/// A copy that is still starting (named by the pid file, not yet ready) is waited for, not
/// duplicated.
#[tokio::test]
async fn deploy_waits_for_a_copy_that_is_still_starting() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let spec = h.tenant("free");
    let storage = h.storage().await;
    storage.allocate(&spec).await.unwrap();
    let url = storage.connection_url(&spec);
    install_test_realm(&url).await;
    let socket = socket_path(&h.cfg, &spec);
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();

    // A copy started by an earlier (now dead) worker attempt, with the same settings.
    let workloads = Workloads::new(h.cfg.clone());
    let environment = workloads
        .service_environment(&spec, &url, &WorkloadSizing::default())
        .unwrap();
    let mut child = std::process::Command::new(service_bin())
        .env_clear()
        .envs(environment)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    h.track_pid(pid);
    std::fs::write(pid_path(&h.cfg, &spec), format!("{pid}\n")).unwrap();

    let allocation = workloads.deploy(&spec, &url, &|| {}).await.unwrap();
    assert!(
        allocation.adopted,
        "deploy must wait for the starting copy, not start its own"
    );
    assert_eq!(workloads.running_pids(&spec), vec![pid]);

    workloads.release(&spec).await.unwrap();
    assert!(workloads.running_pids(&spec).is_empty());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the adopted copy did not stop cleanly on SIGTERM: {status}"
    );
    storage.release(&spec).await.unwrap();
}

/// A running copy is adopted only while it runs with the current settings: after a change
/// of sizing it is stopped and a fresh copy starts with the new settings, once.
#[tokio::test]
async fn deploy_restarts_a_copy_running_with_other_settings() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let spec = h.tenant("free");
    let storage = h.storage().await;
    storage.allocate(&spec).await.unwrap();
    let url = storage.connection_url(&spec);
    install_test_realm(&url).await;
    let workloads = Workloads::new(h.cfg.clone());
    let small = WorkloadSizing {
        db_pool: 2,
        max_concurrent_requests: 16,
    };
    let larger = WorkloadSizing {
        db_pool: 3,
        max_concurrent_requests: 40,
    };
    let ready_answer = || async {
        let answer = workloads
            .workload_get(&spec, "/healthz/ready")
            .await
            .unwrap();
        answer.json::<serde_json::Value>().await.unwrap()
    };

    let first = workloads
        .deploy_sized(&spec, &url, &small, &|| {})
        .await
        .unwrap();
    assert!(!first.allocation.adopted);
    assert_eq!(first.settings_changed, None);
    let pids = workloads.running_pids(&spec);
    assert_eq!(pids.len(), 1, "{pids:?}");
    h.track_pid(pids[0]);
    let before = ready_answer().await;
    assert_eq!(before["sizing"]["db_pool"], 2, "{before}");
    let first_digest = before["settings_digest"].as_str().unwrap().to_owned();
    assert_eq!(first_digest.len(), 64);

    let same = workloads
        .deploy_sized(&spec, &url, &small, &|| {})
        .await
        .unwrap();
    assert!(same.allocation.adopted);
    assert_eq!(same.settings_changed, None);
    assert_eq!(
        workloads.running_pids(&spec),
        pids,
        "unchanged settings keep the copy"
    );

    let changed = workloads
        .deploy_sized(&spec, &url, &larger, &|| {})
        .await
        .unwrap();
    assert!(!changed.allocation.adopted);
    let change = changed.settings_changed.expect("the settings changed");
    assert_eq!(change.previous.as_deref(), Some(first_digest.as_str()));
    assert_ne!(change.current, first_digest);
    let now = workloads.running_pids(&spec);
    assert_eq!(now.len(), 1, "{now:?}");
    h.track_pid(now[0]);
    assert_ne!(now, pids, "the copy with the old settings was replaced");
    let environ = std::fs::read(format!("/proc/{}/environ", now[0])).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.split('\0').any(|kv| kv == "TENANT_DB_POOL=3"));
    assert!(
        environ
            .split('\0')
            .any(|kv| kv == "TENANT_MAX_CONCURRENT_REQUESTS=40")
    );
    assert!(
        !change.current.contains(url_password(&url)),
        "the digest is not the secret"
    );
    let after = ready_answer().await;
    assert_eq!(after["sizing"]["db_pool"], 3, "{after}");
    assert_eq!(after["sizing"]["max_concurrent_requests"], 40, "{after}");
    assert_eq!(after["settings_digest"], change.current.as_str());
    assert!(!after.to_string().contains(url_password(&url)));

    workloads.release(&spec).await.unwrap();
    storage.release(&spec).await.unwrap();
}

/// A service that exits at once fails the deploy as retryable, quoting its log without the
/// database URL or password.
#[tokio::test]
async fn deploy_reports_a_crashing_service_without_its_secrets() {
    let _serial = one_at_a_time().await;
    let script_dir = std::env::temp_dir().join(format!("tpw-crash-{}", random_word(6)));
    std::fs::create_dir_all(&script_dir).unwrap();
    let script = script_dir.join("crashing-service");
    let mut file = std::fs::File::create(&script).unwrap();
    writeln!(
        file,
        "#!/bin/sh\necho \"cannot reach $DATABASE_URL: gave up\" >&2\nexit 7"
    )
    .unwrap();
    drop(file);
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let h = Harness::with_service_bin(script.clone()).await.unwrap();
    let spec = h.tenant("free");
    let workloads = Workloads::new(h.cfg.clone());
    let url = Secret::new(format!(
        "postgres://{}:hunter2secret@127.0.0.1:5432/{}",
        spec.names.role, spec.names.database
    ));
    let err = workloads
        .deploy(&spec, &url, &|| {})
        .await
        .expect_err("a crashing service cannot be ready");
    let message = err.to_string();
    assert!(matches!(err, StepError::Transient(_)), "{message}");
    assert!(message.contains("exited with code 7"), "{message}");
    assert!(message.contains("gave up"), "{message}");
    assert!(!message.contains("hunter2secret"), "{message}");
    assert!(
        !message.contains(&format!("{}:", spec.names.role)),
        "{message}"
    );
    assert!(workloads.running_pids(&spec).is_empty());
    assert!(
        !pid_path(&h.cfg, &spec).exists(),
        "the pid file outlived the crash"
    );
    let _ = std::fs::remove_dir_all(&script_dir);
}

/// The realm goes from the control plane into the tenant database before the service
/// starts; the service then announces its issuer and serves exactly the realm's key, lets
/// the first admin accept the invitation once and sign in, honours a re-issued invitation
/// (the replaced code stops working), refuses sign-in while suspended and expired
/// invitations always; identity release leaves no realm behind in the control plane.
#[tokio::test]
async fn the_realm_is_handed_over_and_the_first_admin_signs_in() {
    let _serial = one_at_a_time().await;
    let h = Harness::new().await.unwrap();
    let mut spec = h.tenant("free");
    let row = match h
        .store
        .accept_tenant(&spec.request, &spec.names, "test")
        .await
        .unwrap()
    {
        AcceptOutcome::Accepted(row) | AcceptOutcome::Existing(row) => row,
    };
    spec.incarnation = row.incarnation;
    let identity = Identity::new(h.cfg.clone(), h.store.clone());
    identity.allocate(&spec).await.unwrap();
    let storage = h.storage().await;
    storage.allocate(&spec).await.unwrap();
    let url = storage.connection_url(&spec);
    let workloads = Workloads::new(h.cfg.clone());

    identity.install(&spec, &url).await.unwrap();
    identity.install(&spec, &url).await.unwrap();
    workloads.deploy(&spec, &url, &|| {}).await.unwrap();
    for pid in workloads.running_pids(&spec) {
        h.track_pid(pid);
    }
    let client = reqwest::Client::builder()
        .unix_socket(socket_path(&h.cfg, &spec))
        .build()
        .unwrap();
    let base = format!("http://{}", spec.names.host);
    let get = |path: String| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move {
            let response = client.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let post = |path: String, body: serde_json::Value| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        }
    };
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();

    // Discovery names this tenant's public URL; the JWKS is exactly the realm's key.
    let (status, discovery) = get("/.well-known/openid-configuration".into()).await;
    assert_eq!(status, 200);
    let issuer = h.cfg.public_url(&spec.names.host);
    assert_eq!(json(&discovery)["issuer"], issuer.as_str());
    let (_, jwks) = get("/.well-known/jwks.json".into()).await;
    assert_eq!(
        json(&jwks)["keys"],
        serde_json::json!([identity.public_jwk(&spec).await.unwrap()])
    );

    // The invitation: checked without being used, refused with a short password, accepted
    // once.
    let code = identity.current_invitation_code(&spec).await.unwrap();
    assert_eq!(code, identity.invitation_code(&spec));
    let check = |code: &Secret| get(format!("/invitations/{}/check", code.expose()));
    assert_eq!(check(&code).await.0, 200);
    assert_eq!(
        check(&code).await.0,
        200,
        "checking does not use the invitation up"
    );
    let (status, page) = get(format!("/invitations/{}", code.expose())).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("admin@example.com") && page.contains("type=\"password\""),
        "{page}"
    );
    let accept = |code: &Secret, password: &str| {
        post(
            format!("/invitations/{}", code.expose()),
            serde_json::json!({"password": password}),
        )
    };
    let (status, body) = accept(&code, "too short").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("weak_password"))
    );
    let (status, body) = accept(&code, "first password 1").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["email"], "admin@example.com");
    let (status, body) = accept(&code, "second password 2").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (410, Some("invitation_redeemed"))
    );
    identity.install(&spec, &url).await.unwrap();
    assert_eq!(
        check(&code).await.0,
        410,
        "a repeated hand-over keeps the redemption"
    );

    let sign_in = |password: &str| {
        post(
            "/signin".into(),
            serde_json::json!({"email": "Admin@example.com", "password": password}),
        )
    };
    assert_eq!(sign_in("wrong password 1").await.0, 401);
    let (status, token) = sign_in("first password 1").await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    let access_token = token["access_token"].as_str().unwrap().to_owned();
    let me = client
        .get(format!("{base}/userinfo"))
        .bearer_auth(&access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.json::<serde_json::Value>().await.unwrap()["email"],
        "admin@example.com"
    );

    // A re-issue makes a new code each time; the one it replaces stops working.
    let second = identity.reissue_invitation(&spec, &url).await.unwrap();
    assert_ne!(second, code);
    assert_eq!(
        identity.current_invitation_code(&spec).await.unwrap(),
        second
    );
    assert_eq!(check(&second).await.0, 200);
    let third = identity.reissue_invitation(&spec, &url).await.unwrap();
    assert_ne!(third, second);
    let (status, body) = check(&second).await;
    assert_eq!(
        (status, json(&body)["error"].as_str()),
        (410, Some("invitation_revoked"))
    );
    assert_eq!(check(&third).await.0, 200);
    // Accepting a re-issued invitation sets the existing admin's password.
    assert_eq!(accept(&third, "third password 3").await.0, 201);
    assert_eq!(sign_in("first password 1").await.0, 401);
    assert_eq!(sign_in("third password 3").await.0, 200);

    // Suspended: nobody signs in, no invitation is redeemable, no token is honoured.
    workloads.set_suspended(&spec, &url, true).await.unwrap();
    let (status, body) = sign_in("third password 3").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("tenant_suspended"))
    );
    assert_eq!(check(&third).await.0, 403);
    let me = client
        .get(format!("{base}/userinfo"))
        .bearer_auth(&access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 403);
    workloads.set_suspended(&spec, &url, false).await.unwrap();
    assert_eq!(sign_in("third password 3").await.0, 200);

    // An expired invitation is refused.
    let fourth = identity.reissue_invitation(&spec, &url).await.unwrap();
    let mut tenant_db = PgConnection::connect(&format!("{PG}/{}", spec.names.database))
        .await
        .unwrap();
    sqlx::query("UPDATE invitations SET expires_at = now() - interval '1 second'")
        .execute(&mut tenant_db)
        .await
        .unwrap();
    tenant_db.close().await.unwrap();
    let (status, body) = check(&fourth).await;
    assert_eq!(
        (status, json(&body)["error"].as_str()),
        (410, Some("invitation_expired"))
    );
    assert_eq!(accept(&fourth, "fourth password 4").await.0, 410);

    workloads.release(&spec).await.unwrap();
    identity.release(&spec).await.unwrap();
    assert!(!identity.exists(&spec).await.unwrap());
    assert_eq!(
        identity.install(&spec, &url).await.unwrap_err().kind(),
        "RealmMissing"
    );
    storage.release(&spec).await.unwrap();
}
