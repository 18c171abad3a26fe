//! The `tenants` binary against the real API (fake workflow engine) and a throwaway
//! database: bootstrap, local validation, create with and without following, reads, and
//! how refusals are shown. Saga progress is simulated by writing to the store the way the
//! workflow's record activity does.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use tenant_domain::{Phase, PhaseFailure, TenantState};
use tenant_starter::engine::WorkflowEngine;
use tenant_store::{NewEvent, Store};
use uuid::Uuid;

use support::{FakeEngine, TestApp, spawn_app};

/// A config directory of its own, so no real saved token is read or overwritten.
struct ConfigDir(PathBuf);

impl ConfigDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tp-cli-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn tenants(app: &TestApp, config: &ConfigDir, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenants"));
    command
        .args(args)
        .env("TP_API_URL", &app.base)
        .env("TP_DATABASE_URL", &app.db.url)
        .env("XDG_CONFIG_HOME", &config.0)
        .env_remove("TP_TOKEN");
    if let Some(token) = token {
        command.env("TP_TOKEN", token);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("cli finished")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn engine() -> Option<Arc<dyn WorkflowEngine>> {
    Some(Arc::new(FakeEngine::default()) as Arc<dyn WorkflowEngine>)
}

/// Plays the saga's part: once the tenant's workflow is started, record a phase and a
/// final state, as the workflow's record activity would.
fn simulate_saga(store: Store, org: &'static str, slug: &'static str, outcome: TenantState) {
    tokio::spawn(async move {
        let row = loop {
            match store.tenant(org, slug).await.unwrap() {
                Some(row) if row.run_id.is_some() => break row,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let run_id = row.run_id.clone().unwrap();
        let event =
            |key: &str, kind: &str, phase: Option<Phase>, state: TenantState, message: &str| {
                NewEvent {
                    tenant_id: row.id,
                    incarnation: row.incarnation,
                    run_id: run_id.clone(),
                    event_key: key.into(),
                    kind: kind.into(),
                    phase: phase.map(|p| p.as_str().into()),
                    attempt: phase.map(|_| 1),
                    state: Some(state.as_str().into()),
                    actor: "worker".into(),
                    message: message.into(),
                    detail: None,
                }
            };
        let storage = Some(Phase::AllocateStorage);
        let provisioning = TenantState::Provisioning;
        let started = event(
            "s1",
            "phase_started",
            storage,
            provisioning,
            "allocate_storage started",
        );
        store
            .record_state(row.incarnation, provisioning, storage, None, &started)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let failure = PhaseFailure {
            phase: Phase::AllocateStorage,
            error_type: "StorageError".into(),
            message: "disk full".into(),
            attempt: 3,
        };
        let (done, last_error) = match outcome {
            TenantState::Active => (
                event(
                    "s2",
                    "phase_completed",
                    storage,
                    provisioning,
                    "allocate_storage completed",
                ),
                None,
            ),
            _ => (
                event("s2", "phase_failed", storage, provisioning, "disk full"),
                Some(&failure),
            ),
        };
        store
            .record_state(row.incarnation, provisioning, storage, last_error, &done)
            .await
            .unwrap();
        let settled = event(
            "s3",
            "state_changed",
            None,
            outcome,
            &format!("tenant is {outcome}"),
        );
        store
            .record_state(row.incarnation, outcome, None, last_error, &settled)
            .await
            .unwrap();
    });
}

/// `bootstrap` prints only the token on stdout, can save it, and refuses a second run.
#[tokio::test]
async fn bootstrap_prints_the_token_once_and_refuses_to_repeat() {
    let app = spawn_app(None).await;
    let config = ConfigDir::new();

    let out = tenants(
        &app,
        &config,
        None,
        &[
            "bootstrap",
            "--org",
            "acme",
            "--owner",
            "alice",
            "--save-token",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert!(
        token.starts_with("tp_") && !token.contains('\n'),
        "{token:?}"
    );
    assert!(
        !text(&out.stderr).contains(&token),
        "the token is on stdout only"
    );
    assert_eq!(
        app.store.authenticate(&token).await.unwrap().unwrap().name,
        "alice"
    );
    let saved = config.0.join("tenant-provisioner/token");
    assert_eq!(std::fs::read_to_string(&saved).unwrap().trim(), token);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let again = tenants(
        &app,
        &config,
        None,
        &["bootstrap", "--org", "acme", "--owner", "bob"],
    )
    .await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert!(again.stdout.is_empty());

    let bad = tenants(
        &app,
        &config,
        None,
        &["bootstrap", "--org", "Acme-EU", "--owner", "carol"],
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("lowercase"),
        "{}",
        text(&bad.stderr)
    );
    assert!(app.store.organization("Acme-EU").await.unwrap().is_none());

    let ops = tenants(&app, &config, None, &["bootstrap", "--operator", "ops"]).await;
    assert!(ops.status.success(), "{}", text(&ops.stderr));
    let ops_token = text(&ops.stdout).trim().to_owned();
    assert!(
        app.store
            .authenticate(&ops_token)
            .await
            .unwrap()
            .unwrap()
            .platform_operator
    );

    // The saved token is used when neither --token nor TP_TOKEN is given.
    let listed = tenants(&app, &config, None, &["list", "--org", "acme"]).await;
    assert!(listed.status.success(), "{}", text(&listed.stderr));
}

/// Bad input is refused locally, field by field, before anything is sent.
#[tokio::test]
async fn create_refuses_bad_input_locally() {
    let app = spawn_app(engine()).await;
    let config = ConfigDir::new();
    let token = app.org("acme", "alice").await;

    let out = tenants(
        &app,
        &config,
        Some(&token),
        &[
            "create",
            "--org",
            "acme",
            "--slug",
            "Prod",
            "--plan",
            "growth",
            "--first-admin",
            "nope",
            "--name",
            "Production",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--slug: slug must be lowercase"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--name: name must be lowercase"),
        "{stderr}"
    );
    assert!(stderr.contains("--first-admin:"), "{stderr}");
    assert_eq!(app.count("tenants").await, 0);

    // The plan is the API's to check; its problem is shown the same way.
    let out = tenants(
        &app,
        &config,
        Some(&token),
        &[
            "create",
            "--org",
            "acme",
            "--slug",
            "prod",
            "--plan",
            "platinum",
            "--first-admin",
            "a@example.com",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: invalid request"), "{stderr}");
    assert!(
        stderr.contains("  plan: unknown plan; choose one of: enterprise, free, growth"),
        "{stderr}"
    );

    let no_token = tenants(&app, &config, None, &["list", "--org", "acme"]).await;
    assert_eq!(no_token.status.code(), Some(1));
    assert!(text(&no_token.stderr).contains("no API token"));
}

/// `create` follows the audit feed until the tenant is active, then prints its URL.
#[tokio::test]
async fn create_follows_the_saga_until_active() {
    let app = spawn_app(engine()).await;
    let config = ConfigDir::new();
    let token = app.org("acme", "alice").await;
    simulate_saga(app.store.clone(), "acme", "prod", TenantState::Active);

    let out = tenants(
        &app,
        &config,
        Some(&token),
        &[
            "create",
            "--org",
            "acme",
            "--slug",
            "prod",
            "--plan",
            "growth",
            "--first-admin",
            "a@example.com",
            "--timeout",
            "30",
        ],
    )
    .await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        text(&out.stdout).trim(),
        "https://prod-acme.tenants.localhost:8443"
    );
    assert!(stderr.contains("✓ request accepted: acme/prod"), "{stderr}");
    assert!(
        stderr.contains("… allocate_storage started (attempt 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("✓ allocate_storage completed"), "{stderr}");
    assert!(stderr.contains("tenant acme/prod is active"), "{stderr}");

    // Reads: a table, JSON, the list and the feed.
    let got = tenants(
        &app,
        &config,
        Some(&token),
        &["get", "--org", "acme", "prod"],
    )
    .await;
    assert!(
        text(&got.stdout).contains("active"),
        "{}",
        text(&got.stdout)
    );
    let json = tenants(
        &app,
        &config,
        Some(&token),
        &["get", "--org", "acme", "prod", "-o", "json"],
    )
    .await;
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json output");
    assert_eq!(value["state"], "active");
    let listed = tenants(
        &app,
        &config,
        Some(&token),
        &["list", "--org", "acme", "--state", "active"],
    )
    .await;
    assert!(
        text(&listed.stdout).lines().any(|l| l.starts_with("prod ")),
        "{}",
        text(&listed.stdout)
    );
    let events = tenants(
        &app,
        &config,
        Some(&token),
        &["events", "--org", "acme", "prod"],
    )
    .await;
    assert_eq!(
        text(&events.stdout).lines().count(),
        4,
        "{}",
        text(&events.stdout)
    );
}

/// A failed saga exits 1 with the reason; a saga that does not settle in time exits 2.
#[tokio::test]
async fn create_reports_failure_and_timeout() {
    let app = spawn_app(engine()).await;
    let config = ConfigDir::new();
    let token = app.org("acme", "alice").await;
    simulate_saga(app.store.clone(), "acme", "doomed", TenantState::Failed);

    let create = |slug: &'static str, timeout: &'static str| {
        let args = [
            "create",
            "--org",
            "acme",
            "--slug",
            slug,
            "--plan",
            "growth",
            "--first-admin",
            "a@example.com",
            "--timeout",
            timeout,
        ];
        let (app, config, token) = (&app, &config, &token);
        async move { tenants(app, config, Some(token), &args).await }
    };
    let failed = create("doomed", "30").await;
    let stderr = text(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("✗ allocate_storage attempt 1 failed: disk full"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tenant acme/doomed is failed: disk full"),
        "{stderr}"
    );

    let stuck = create("stuck", "1").await;
    assert_eq!(stuck.status.code(), Some(2), "{}", text(&stuck.stderr));
    assert!(text(&stuck.stderr).contains("the saga carries on"));

    let no_wait = tenants(
        &app,
        &config,
        Some(&token),
        &[
            "create",
            "--org",
            "acme",
            "--slug",
            "stuck",
            "--plan",
            "growth",
            "--first-admin",
            "a@example.com",
            "--no-wait",
            "-o",
            "json",
        ],
    )
    .await;
    assert!(no_wait.status.success());
    let value: serde_json::Value = serde_json::from_slice(&no_wait.stdout).expect("json output");
    assert_eq!(value["slug"], "stuck");
    assert!(text(&no_wait.stderr).contains("already requested"));
}
