//! The `tenants` binary against the API served on real servers (see `support`):
//! bootstrap, local validation, reads, how refusals are shown, and — with the real worker
//! running the saga — create and the lifecycle actions following the live audit feed until
//! their stable state, failure and timeout included. Help and usage errors need no server.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use tenant_store::access::Role;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use uuid::Uuid;

use support::{TestApp, spawn_app, spawn_app_with};

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
        .env("TP_DATABASE_URL", &app.stack.database_url)
        .env("XDG_CONFIG_HOME", &config.0)
        .env_remove("TP_TOKEN");
    if let Some(token) = token {
        command.env("TP_TOKEN", token);
    }
    tokio::time::timeout(Duration::from_secs(240), command.output())
        .await
        .expect("cli finished")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Progress written for a pipe is plain lines: no spinner frames, cursor moves or colours.
fn assert_plain(stderr: &str) {
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "terminal control characters on a pipe: {stderr:?}"
    );
}

/// The binary alone, without a server: for help and usage errors.
async fn tenants_offline(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tenants"))
        .args(args)
        .env_remove("TP_TOKEN")
        .env("TP_API_URL", "http://127.0.0.1:9")
        .output()
        .await
        .unwrap()
}

/// `tenants --help` lists every exit code with examples; each command takes the slug as
/// `--slug` or alone, never both; a usage error exits 2, apart from every other failure.
#[tokio::test]
async fn help_and_usage_errors() {
    let help = tenants_offline(&["--help"]).await;
    assert!(help.status.success());
    let help = text(&help.stdout);
    for line in [
        "  0    done:",
        "  1    refused or failed:",
        "  2    usage error:",
        "  3    timed out:",
        "  130  interrupted",
        "tenants get --org acme --slug production",
    ] {
        assert!(help.contains(line), "{line:?} missing from:\n{help}");
    }

    for command in [
        "get",
        "events",
        "retry",
        "decommission",
        "suspend",
        "resume",
        "reissue-invitation",
        "resend-email",
        "create",
    ] {
        let help = tenants_offline(&[command, "--help"]).await;
        assert!(help.status.success(), "{command} --help");
        let help = text(&help.stdout);
        assert!(help.contains("--slug <SLUG>"), "{command}: {help}");
        assert!(help.contains("Example"), "{command} has no example: {help}");

        let missing = tenants_offline(&[command, "--org", "acme"]).await;
        assert_eq!(missing.status.code(), Some(2), "{command} without a slug");
        assert!(
            text(&missing.stderr).contains("--slug <SLUG>"),
            "{command}: {}",
            text(&missing.stderr)
        );
        let both = tenants_offline(&[command, "--org", "acme", "--slug", "a", "b"]).await;
        assert_eq!(both.status.code(), Some(2), "{command} with two slugs");
        assert!(
            text(&both.stderr).contains("cannot be used with"),
            "{command}: {}",
            text(&both.stderr)
        );
    }
    let unknown = tenants_offline(&["suspendd", "--org", "acme", "prod"]).await;
    assert_eq!(unknown.status.code(), Some(2));
}

/// The binary alone with the API, token and database settings in the environment, as a
/// user who sourced `.stack/env` has them: for usage lines.
async fn tenants_configured(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tenants"))
        .args(args)
        .env("TP_API_URL", "http://127.0.0.1:9")
        .env("TP_TOKEN", "tp_not_a_real_token")
        .env("TP_DATABASE_URL", "postgres://127.0.0.1:9/none")
        .output()
        .await
        .unwrap()
}

/// The `Usage:` line of a usage error.
fn usage_line(out: &Output) -> String {
    let stderr = text(&out.stderr);
    stderr
        .lines()
        .find(|l| l.starts_with("Usage: "))
        .unwrap_or_else(|| panic!("no usage line in {stderr}"))
        .to_owned()
}

/// A usage error shows only what the command requires: settings that have a default or
/// come from the environment (`--api-url`, `--token`, `--database-url`) are not listed as
/// if they were missing, and `bootstrap`, which talks to the database, takes no API
/// options at all.
#[tokio::test]
async fn usage_lines_list_only_required_arguments() {
    let out = tenants_configured(&[
        "create",
        "--org",
        "demo",
        "--plan",
        "growth",
        "--first-admin",
        "a@example.com",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        usage_line(&out),
        "Usage: tenants create --org <ORG> --plan <PLAN> --first-admin <EMAIL> <--slug <SLUG>|SLUG>"
    );
    let out = tenants_configured(&["create", "--org", "demo", "production"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        usage_line(&out),
        "Usage: tenants create --org <ORG> --plan <PLAN> --first-admin <EMAIL> <--slug <SLUG>|SLUG>"
    );
    let out = tenants_configured(&["get", "production"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        usage_line(&out),
        "Usage: tenants get --org <ORG> <--slug <SLUG>|SLUG>"
    );

    let out = tenants_configured(&["bootstrap"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        usage_line(&out),
        "Usage: tenants bootstrap <--org <ORG>|--operator <OPERATOR>>"
    );
    let help = text(&tenants_configured(&["bootstrap", "--help"]).await.stdout);
    assert!(help.contains("--database-url <URL>"), "{help}");
    assert!(
        !help.contains("--token") && !help.contains("--api-url"),
        "{help}"
    );
    for args in [
        &["bootstrap", "--operator", "ops", "--token", "x"][..],
        &["--token", "x", "bootstrap", "--operator", "ops"],
        &[
            "--api-url",
            "http://127.0.0.1:9",
            "bootstrap",
            "--operator",
            "ops",
        ],
    ] {
        let out = tenants_configured(args).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }

    // Without the environment, the missing setting is named with where it may come from.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenants"))
        .args(["bootstrap", "--operator", "ops"])
        .env_remove("TP_DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: no control-plane database URL; pass --database-url or set TP_DATABASE_URL"
    );
}

/// Runs the CLI with its stdout on a pipe nobody reads any more, as `tenants … | head`
/// leaves it once `head` has read enough.
async fn tenants_into_a_closed_pipe(app: &TestApp, token: &str, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    // `output()` would replace stdout with a pipe of its own; `spawn()` keeps ours. The
    // command, and with it our end of the pipe, is gone once the child runs.
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenants"))
        .args(args)
        .env("TP_API_URL", &app.base)
        .env("TP_TOKEN", token)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("cli finished")
        .unwrap()
}

/// Output piped into a reader that stops early (`| head`) ends the CLI the quiet way a
/// closed pipe ends `cat`: no panic, nothing on stderr, whatever the command prints.
#[tokio::test]
async fn output_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;

    let app = spawn_app().await;
    let token = app.org("acme", "alice").await;
    let created = app
        .create(
            "acme",
            &token,
            serde_json::json!({
                "slug": "prod", "plan": "growth", "first_admin_email": "a@example.com"
            }),
        )
        .await;
    assert_eq!(created.status.as_u16(), 202, "{}", created.body);

    for args in [
        &["list", "--org", "acme"][..],
        &["list", "--org", "acme", "-o", "json"],
        &["get", "--org", "acme", "prod"],
        &["events", "--org", "acme", "prod"],
        &["events", "--org", "acme", "prod", "-o", "json"],
        &["tokens", "list"],
    ] {
        let out = tenants_into_a_closed_pipe(&app, &token, args).await;
        let stderr = text(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        // Ended by SIGPIPE at its first write, as `cat` would be; a panic exits 101.
        assert_eq!(out.status.signal(), Some(13), "{args:?}: {:?}", out.status);
    }
}

/// Waits until the stored tenant is in `state`.
async fn wait_for_state(app: &TestApp, org: &str, slug: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let row = app.store.tenant(org, slug).await.unwrap();
        if row.as_ref().is_some_and(|r| r.state == state) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{org}/{slug} never became {state}: {row:?}\n{}",
            app.stack.log_tail("worker", 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `bootstrap` prints only the token on stdout, can save it, and refuses a second run.
#[tokio::test]
async fn bootstrap_prints_the_token_once_and_refuses_to_repeat() {
    let app = spawn_app().await;
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
    let app = spawn_app().await;
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

/// `create` follows the live feed until the tenant is active and prints its URL; the same
/// request again follows only the rest of the run in progress, and once the tenant is
/// active only says it exists; the reads show it; then every lifecycle action follows the
/// feed to its stable state, refusals exit 1 with the workflow's reason, and
/// `events --follow` prints events as they happen.
#[tokio::test(flavor = "multi_thread")]
async fn create_and_lifecycle_actions_follow_the_saga() {
    let app = spawn_app_with(Default::default(), false).await;
    // Deploy is held a few seconds, so that a repeated create finds the run in progress.
    app.stack.set_worker_env("TP_SLOW_PHASE", "deploy:3000");
    app.stack.start_worker().await.unwrap();
    let config = ConfigDir::new();
    let org = app.stack.org.clone();
    let token = app.org(&org, "alice").await;
    let member = app.member("mallory", &org, Role::Member).await;
    let run = |args: Vec<&str>, token: String| {
        let (app, config) = (&app, &config);
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tenants(app, config, Some(&token), &args).await
        }
    };
    let url = format!(
        "https://prod-{org}.tenants.localhost:{}",
        app.stack.ports.public_https
    );
    let create = vec![
        "create",
        "--org",
        &org,
        "--slug",
        "prod",
        "--plan",
        "growth",
        "--first-admin",
        "a@example.com",
        "--timeout",
        "180",
    ];

    let mut first = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenants"))
        .args(&create)
        .env("TP_API_URL", &app.base)
        .env("TP_TOKEN", &token)
        .env("XDG_CONFIG_HOME", &config.0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut first_stdout = first.stdout.take().unwrap();
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let deploying = line.contains("deploy started");
            seen.push(line);
            if deploying {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("deploy never started: {seen:#?}"));

    // The same request while the first run deploys: only what happens from now on.
    let again = run(create.clone(), token.clone()).await;
    let stderr = text(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "✓ tenant {org}/prod was already requested and is provisioning; following the \
             run already in progress"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("validate") && !stderr.contains("allocate_storage"),
        "the run so far is not replayed: {stderr}"
    );
    assert!(stderr.contains("✓ mark_active completed"), "{stderr}");
    assert_eq!(text(&again.stdout).trim(), url);

    let status = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line);
        }
        first.wait().await.unwrap()
    })
    .await
    .expect("the first create settles");
    let stderr = seen.join("\n");
    assert!(status.success(), "{stderr}");
    let mut stdout = String::new();
    first_stdout.read_to_string(&mut stdout).await.unwrap();
    assert_eq!(stdout.trim(), url);
    assert!(
        stderr.contains(&format!(
            "✓ request accepted: {org}/prod on plan growth (incarnation 1)"
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("request accepted").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        stderr.contains("… validate started (attempt 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("✓ allocate_storage completed"), "{stderr}");
    assert!(stderr.contains("✓ mark_active completed"), "{stderr}");
    assert!(
        stderr.contains(&format!("tenant {org}/prod is active")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("polling"),
        "the live feed was used: {stderr}"
    );

    // Once it is active, a repeat only says so, and prints the URL as the first did.
    let settled = run(create.clone(), token.clone()).await;
    let stderr = text(&settled.stderr);
    assert!(settled.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "✓ tenant {org}/prod already exists and is active at {url}; nothing new was started"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("(attempt") && !stderr.contains("completed"),
        "no phase is shown: {stderr}"
    );
    assert_eq!(text(&settled.stdout).trim(), url);

    // Reads: a table, JSON, the list and the feed.
    let got = run(vec!["get", "--org", &org, "--slug", "prod"], token.clone()).await;
    assert!(
        text(&got.stdout).contains("active"),
        "{}",
        text(&got.stdout)
    );
    let json = run(
        vec!["get", "--org", &org, "prod", "-o", "json"],
        token.clone(),
    )
    .await;
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json output");
    assert_eq!(value["state"], "active");
    let listed = run(
        vec!["list", "--org", &org, "--state", "active"],
        token.clone(),
    )
    .await;
    assert!(
        text(&listed.stdout).lines().any(|l| l.starts_with("prod ")),
        "{}",
        text(&listed.stdout)
    );
    // Both lists are shaped like the API's list answers.
    let json_of = |out: Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout).expect("json output")
    };
    let tenants = json_of(run(vec!["list", "--org", &org, "-o", "json"], token.clone()).await);
    assert_eq!(tenants["items"][0]["slug"], "prod", "{tenants}");
    let tokens = json_of(run(vec!["tokens", "list", "-o", "json"], token.clone()).await);
    assert!(tokens["items"].is_array(), "{tokens}");
    let events = run(
        vec!["events", "--org", &org, "--slug", "prod"],
        token.clone(),
    )
    .await;
    assert!(events.status.success(), "{}", text(&events.stderr));
    let missing = run(vec!["get", "--org", &org, "--slug", "nope"], token.clone()).await;
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        text(&missing.stderr).trim(),
        format!("error: tenant nope not found in organisation {org}")
    );
    assert!(
        text(&events.stdout).contains("tenant is active"),
        "{}",
        text(&events.stdout)
    );

    // A wrong-state action is refused with the workflow's reason; a member may not act.
    let refused = run(
        vec!["resume", "--org", &org, "--slug", "prod"],
        token.clone(),
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        text(&refused.stderr).trim(),
        "error: cannot resume a tenant that is active; allowed from: suspended"
    );
    let forbidden = run(vec!["suspend", "--org", &org, "prod"], member).await;
    assert_eq!(forbidden.status.code(), Some(1));
    assert!(
        text(&forbidden.stderr).contains("your role"),
        "{}",
        text(&forbidden.stderr)
    );

    // suspend, following to `suspended`.
    let suspended = run(
        vec!["suspend", "--org", &org, "--slug", "prod"],
        token.clone(),
    )
    .await;
    let stderr = text(&suspended.stderr);
    assert!(suspended.status.success(), "{stderr}");
    assert_plain(&stderr);
    assert!(
        stderr.contains("✓ suspend accepted from state active"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("✓ tenant {org}/prod is suspended")),
        "{stderr}"
    );
    assert_eq!(
        text(&suspended.stdout).trim(),
        format!("{org}/prod suspended")
    );

    // `events --follow` prints the resume as it happens.
    let last = app
        .store
        .events(
            app.store.tenant(&org, "prod").await.unwrap().unwrap().id,
            0,
            1000,
        )
        .await
        .unwrap()
        .last()
        .unwrap()
        .id;
    let mut follower = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenants"))
        .args([
            "events",
            "--follow",
            "-o",
            "json",
            "--org",
            &org,
            "--slug",
            "prod",
            "--after",
            &last.to_string(),
        ])
        .env("TP_API_URL", &app.base)
        .env("TP_TOKEN", &token)
        .env("XDG_CONFIG_HOME", &config.0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();

    let resumed = run(
        vec!["resume", "--org", &org, "--slug", "prod", "-o", "json"],
        token.clone(),
    )
    .await;
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let value: serde_json::Value = serde_json::from_slice(&resumed.stdout).expect("json output");
    assert_eq!(value["state"], "active");

    let mut followed = Vec::new();
    let seen_resume = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            followed.push(event["id"].as_i64().unwrap());
            if event["kind"] == "resumed" {
                assert_eq!(event["actor"], "alice");
                return;
            }
        }
        panic!("events --follow ended");
    })
    .await;
    assert!(seen_resume.is_ok(), "events --follow printed {followed:?}");
    assert!(followed.iter().all(|id| *id > last), "{followed:?}");
    follower.kill().await.unwrap();

    // The feed's table names who acted: the saga, or the person who asked.
    let table = text(
        &run(vec!["events", "--org", &org, "prod"], token.clone())
            .await
            .stdout,
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("  saga          • tenant is active")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("  alice         • tenant resumed")),
        "{table}"
    );

    // decommission without waiting, then with nothing left to act on.
    let accepted = run(
        vec![
            "decommission",
            "--org",
            &org,
            "prod",
            "--no-wait",
            "-o",
            "json",
        ],
        token.clone(),
    )
    .await;
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
    let value: serde_json::Value = serde_json::from_slice(&accepted.stdout).expect("json output");
    assert_eq!(value["action"], "decommission");
    assert_eq!(value["accepted"], true);
    wait_for_state(&app, &org, "prod", "decommissioned").await;
    let gone = run(
        vec!["retry", "--org", &org, "--slug", "prod"],
        token.clone(),
    )
    .await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        text(&gone.stderr).contains("tenant prod is decommissioned"),
        "{}",
        text(&gone.stderr)
    );
}

/// A saga that fails exits 1 with the reason, for `create` and for a `retry` that fails
/// again; a saga that does not settle in time exits 3 and ctrl-c exits 130, both leaving the
/// saga running; `--no-wait` returns at once.
#[tokio::test(flavor = "multi_thread")]
async fn failures_and_timeouts_are_reported() {
    let app = spawn_app_with(Default::default(), false).await;
    app.stack
        .set_worker_env("TP_FAIL_PHASE", "allocate_storage");
    app.stack.start_worker().await.unwrap();
    let config = ConfigDir::new();
    let org = app.stack.org.clone();
    let token = app.org(&org, "alice").await;
    let create = |slug: &'static str, extra: &'static [&'static str]| {
        let (app, config, token, org) = (&app, &config, &token, &org);
        async move {
            let mut args = vec![
                "create",
                "--org",
                org.as_str(),
                "--slug",
                slug,
                "--plan",
                "growth",
                "--first-admin",
                "a@example.com",
            ];
            args.extend_from_slice(extra);
            tenants(app, config, Some(token), &args).await
        }
    };

    let failed = create("doomed", &["--timeout", "180"]).await;
    let stderr = text(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert_plain(&stderr);
    assert!(
        stderr.contains("✗ allocate_storage attempt 1 failed: injected failure"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "✗ tenant {org}/doomed is failed: injected failure"
        )),
        "{stderr}"
    );
    assert!(failed.stdout.is_empty());

    // The fault is still there: the retry is accepted, provisions again and fails again.
    let retried = tenants(
        &app,
        &config,
        Some(&token),
        &["retry", "--org", &org, "doomed", "--timeout", "180"],
    )
    .await;
    let stderr = text(&retried.stderr);
    assert_eq!(retried.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("✓ retry accepted from state failed"),
        "{stderr}"
    );
    assert!(stderr.contains("provisioning round 2 started"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "✗ tenant {org}/doomed is failed: injected failure"
        )),
        "{stderr}"
    );

    let stuck = create("stuck", &["--timeout", "1"]).await;
    let stderr = text(&stuck.stderr);
    assert_eq!(stuck.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the saga carries on. Follow it with `tenants events --org {org} --slug stuck --follow`"
        )),
        "{stderr}"
    );

    let no_wait = create("stuck", &["--no-wait", "-o", "json"]).await;
    assert!(no_wait.status.success());
    let value: serde_json::Value = serde_json::from_slice(&no_wait.stdout).expect("json output");
    assert_eq!(value["slug"], "stuck");
    // Still provisioning, or already failed by now: either way it is named as a repeat.
    let stderr = text(&no_wait.stderr);
    assert!(
        stderr.contains(&format!(
            "✓ tenant {org}/stuck was already requested and is "
        )) || stderr.contains(&format!(
            "✗ tenant {org}/stuck already exists and is failed"
        )),
        "{stderr}"
    );

    // ctrl-c while following: exit 130, the saga carries on.
    let mut following = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenants"))
        .args([
            "create",
            "--org",
            &org,
            "--slug",
            "halted",
            "--plan",
            "growth",
            "--first-admin",
            "a@example.com",
        ])
        .env("TP_API_URL", &app.base)
        .env("TP_TOKEN", &token)
        .env("XDG_CONFIG_HOME", &config.0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(following.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    // An event line is printed only once the follow (and its ctrl-c handler) runs.
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let started = line.contains(" started");
            seen.push(line);
            if started {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event line: {seen:?}"));
    let pid = following.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), following.wait())
        .await
        .expect("the CLI stops at ctrl-c")
        .unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push(line);
    }
    assert_eq!(status.code(), Some(130), "{seen:#?}");
    assert!(
        seen.last().is_some_and(|l| l.starts_with(
            "… stopped following; the saga carries on. Follow it with `tenants events"
        )),
        "{seen:#?}"
    );
    let row = app.store.tenant(&org, "halted").await.unwrap().unwrap();
    assert!(
        matches!(
            row.state.as_str(),
            "provisioning" | "compensating" | "failed"
        ),
        "{row:?}"
    );
}
