//! The tenant's running service, driven on this host (the local single-host driver).
//!
//! Owns starting, adopting and stopping the `tenant-service` process of each tenant, and
//! its pid file, socket and log under `RT/workloads/`. The service is started in its own
//! session so it outlives a killed worker, and a second copy cannot run: the service holds
//! an advisory lock in its database and exits with [`EXIT_LOCK_HELD`] when another copy has
//! it. Readiness is asked of the workload itself, on its own socket: whether the path
//! through the edge reaches it is the verify phase's question. The service is started with
//! its plan's sizing and a digest of every setting it gets (secrets only as hashes), which
//! it reports on readiness: a running copy is adopted only when its digest is the current
//! one, and is otherwise stopped and started again with the current settings. Also writes
//! the settings the platform keeps in the tenant's database (the suspended flag). Must
//! never put the database URL on a command line, in a log line, in an error or in the
//! digest unhashed; recording the ledger and the audit feed is the caller's job.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use tenant_domain::{Allocation, ResourceKind, TenantSpec};
use tenant_service::server::{
    DEFAULT_DB_POOL, DEFAULT_MAX_CONCURRENT_REQUESTS, ENV_DB_POOL, ENV_MAX_CONCURRENT_REQUESTS,
    ENV_SETTINGS_DIGEST,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::secrets::Secret;
use crate::{ActivitiesConfig, StepError, StepResult};

/// The service's exit code when another copy of the same tenant's service holds the lock.
pub const EXIT_LOCK_HELD: i32 = 3;
/// How long a started service may take to answer its readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping service gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// One readiness probe; with the poll interval it keeps heartbeats under 2 s apart.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How much of the service's log an error quotes.
const LOG_TAIL_BYTES: u64 = 2048;
const LOG_TAIL_LINES: usize = 20;

/// Settings whose values never enter the digest: only their SHA-256 does.
const SECRET_SETTINGS: &[&str] = &["DATABASE_URL"];
/// How often one deploy attempt stops copies running with other settings.
const MAX_SETTINGS_RESTARTS: u32 = 3;
/// Tells this digest's layout from any later one, so a change of layout reads as a change.
const DIGEST_CONTEXT: &[u8] = b"tenant-service settings v1";

/// Starts, adopts and stops tenant services.
pub struct Workloads {
    cfg: Arc<ActivitiesConfig>,
}

/// What the tenant's plan gives its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadSizing {
    /// Connections the service's pool may hold.
    pub db_pool: u32,
    /// Requests the service serves at once; it answers 503 to more.
    pub max_concurrent_requests: u32,
}

impl WorkloadSizing {
    /// The plan's sizing. The store's CHECK constraints keep both values positive.
    pub fn of_plan(plan: &tenant_store::access::Plan) -> Self {
        let positive = |v: i32| u32::try_from(v).unwrap_or(0).max(1);
        Self {
            db_pool: positive(plan.workload_db_pool),
            max_concurrent_requests: positive(plan.workload_max_concurrent_requests),
        }
    }
}

impl Default for WorkloadSizing {
    /// The service's own defaults, which are the smallest plan's.
    fn default() -> Self {
        Self {
            db_pool: DEFAULT_DB_POOL,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS as u32,
        }
    }
}

/// What a deploy did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    pub allocation: Allocation,
    /// Set when a running copy was stopped because it ran with other settings.
    pub settings_changed: Option<SettingsChange>,
}

/// A running copy's settings digest and the one it was replaced with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsChange {
    /// `None` when the copy reported no digest (started before digests existed).
    pub previous: Option<String>,
    pub current: String,
}

/// The environment a service is started with, and its digest. No `Debug`: it holds the
/// database URL.
struct ServiceSettings {
    env: Vec<(&'static str, String)>,
    digest: String,
}

/// What a service answering on the tenant's socket says about itself.
struct Answer {
    ready: bool,
    settings_digest: Option<String>,
}

/// Where one tenant's service keeps its files.
struct WorkloadPaths {
    dir: PathBuf,
    socket: PathBuf,
    pid: PathBuf,
    log: PathBuf,
}

/// A service process this attempt started.
struct Started {
    pid: i32,
    /// Where this start's output begins in the log.
    log_offset: u64,
    exit: oneshot::Receiver<std::io::Result<ExitStatus>>,
}

impl Workloads {
    pub fn new(cfg: Arc<ActivitiesConfig>) -> Self {
        Self { cfg }
    }

    /// [`Self::deploy_sized`] with the service's default sizing, for tests and tools that
    /// have no plan at hand. The saga always deploys with the tenant's plan.
    pub async fn deploy(
        &self,
        spec: &TenantSpec,
        database_url: &Secret,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> StepResult<Allocation> {
        self.deploy_sized(spec, database_url, &WorkloadSizing::default(), heartbeat)
            .await
            .map(|deployed| deployed.allocation)
    }

    /// Starts (or adopts) the tenant's service with `sizing` and waits until it answers its
    /// readiness check on its own socket. A running copy is adopted only when it reports the
    /// current settings digest; one started with other settings is stopped first.
    #[tracing::instrument(
        name = "workload.deploy",
        skip_all,
        fields(tenant = %spec.tenant_id(), workload = %spec.names.workload)
    )]
    pub async fn deploy_sized(
        &self,
        spec: &TenantSpec,
        database_url: &Secret,
        sizing: &WorkloadSizing,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> StepResult<Deployed> {
        let paths = self.paths(spec);
        std::fs::create_dir_all(&paths.dir)
            .with_context(|| format!("creating the workloads directory {}", paths.dir.display()))?;
        let settings = self.settings(spec, database_url, &paths, sizing)?;
        let probe = socket_client(&paths.socket, PROBE_TIMEOUT)?;
        let mut settings_changed = None;
        let mut restarts = 0;
        let deployed = |adopted, settings_changed| Deployed {
            allocation: Allocation {
                kind: ResourceKind::Workload,
                name: spec.names.workload.clone(),
                adopted,
            },
            settings_changed,
        };

        let current = |answer: &Answer| answer.settings_digest.as_deref() == Some(&settings.digest);

        heartbeat();
        match ask(&probe, spec).await {
            Some(answer) if current(&answer) && answer.ready => {
                tracing::info!("tenant service already running and ready; adopted");
                return Ok(deployed(true, None));
            }
            Some(answer) if !current(&answer) => {
                settings_changed = Some(
                    self.stop_for_settings(spec, answer.settings_digest, &settings, sizing)
                        .await?,
                );
                restarts += 1;
            }
            // Nothing answers, or a copy with the current settings is not ready yet: the
            // loop below starts one or waits for it.
            _ => {}
        }

        let deadline = Instant::now() + READY_TIMEOUT;
        let mut started: Option<Started> = None;
        let mut log_offset: Option<u64> = None;
        // The digest of a copy with other settings that this attempt gave up restarting.
        let mut other_copy: Option<String> = None;
        loop {
            heartbeat();
            if let Some(run) = started.as_mut() {
                match run.exit.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    Ok(Ok(status)) if status.code() == Some(EXIT_LOCK_HELD) => {
                        tracing::info!(
                            pid = run.pid,
                            "another copy of the service holds the lock; waiting for it"
                        );
                        let exited = run.pid;
                        started = None;
                        self.repoint_pid_file(spec, &paths, exited);
                    }
                    outcome => {
                        let pid = run.pid;
                        let offset = run.log_offset;
                        remove_pid_file_if(&paths.pid, pid);
                        let how = match outcome {
                            Ok(Ok(status)) => describe_exit(status),
                            Ok(Err(e)) => format!("could not be waited for ({e})"),
                            Err(_) => "was lost by its waiter".to_owned(),
                        };
                        return Err(StepError::Transient(anyhow!(
                            "tenant service (pid {pid}) {how}; log tail: {}",
                            log_tail(&paths.log, offset, database_url)
                        )));
                    }
                }
            } else if self.running_pids(spec).is_empty() {
                let run = self.spawn(&settings, &paths)?;
                tracing::info!(pid = run.pid, "tenant service started");
                log_offset = Some(run.log_offset);
                started = Some(run);
            }

            match ask(&probe, spec).await {
                Some(answer) if current(&answer) && answer.ready => {
                    // Adopted unless the copy now serving is the one this attempt started.
                    let adopted = started.is_none() && settings_changed.is_none();
                    tracing::info!(adopted, "tenant service ready");
                    return Ok(deployed(adopted, settings_changed));
                }
                // A copy with other settings won the lock: one that was still starting when
                // this attempt began, or one another worker started meanwhile. It is stopped
                // too, a few times at most: two workers configured differently would stop
                // each other's copies for ever, so past that this attempt waits and, at its
                // deadline, says so.
                Some(answer) if !current(&answer) => {
                    if restarts < MAX_SETTINGS_RESTARTS {
                        let change = self
                            .stop_for_settings(spec, answer.settings_digest, &settings, sizing)
                            .await?;
                        settings_changed.get_or_insert(change);
                        restarts += 1;
                        // Whatever this attempt started was stopped with it.
                        started = None;
                    } else {
                        other_copy = Some(answer.settings_digest.unwrap_or_default());
                    }
                }
                _ => {}
            }
            heartbeat();
            if Instant::now() >= deadline {
                if let Some(digest) = other_copy {
                    return Err(StepError::Transient(anyhow!(
                        "a copy of the tenant service started with other settings (digest \
                         {digest:?}) came back after {MAX_SETTINGS_RESTARTS} restarts: is \
                         another worker configured differently?"
                    )));
                }
                return Err(StepError::Transient(anyhow!(
                    "tenant service was not ready within {} s; log tail: {}",
                    READY_TIMEOUT.as_secs(),
                    log_tail(&paths.log, log_offset.unwrap_or(0), database_url)
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Stops the tenant's service (SIGTERM, then SIGKILL after the grace period) and removes
    /// its pid file and socket. Nothing running is not an error.
    #[tracing::instrument(
        name = "workload.release",
        skip_all,
        fields(tenant = %spec.tenant_id(), workload = %spec.names.workload)
    )]
    pub async fn release(&self, spec: &TenantSpec) -> StepResult<()> {
        let paths = self.paths(spec);
        let pids = self.running_pids(spec);
        signal_all(&pids, Signal::SIGTERM)?;
        let mut left = self.wait_for_exit(spec, &pids, STOP_GRACE).await;
        if !left.is_empty() {
            tracing::warn!(pids = ?left, "tenant service ignored SIGTERM; killing it");
            signal_all(&left, Signal::SIGKILL)?;
            left = self
                .wait_for_exit(spec, &left, Duration::from_secs(5))
                .await;
        }
        if !left.is_empty() {
            return Err(StepError::Transient(anyhow!(
                "tenant service processes {left:?} survived SIGKILL"
            )));
        }
        for path in [&paths.pid, &paths.socket] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("removing {}", path.display()))
                        .into());
                }
            }
        }
        tracing::info!(stopped = pids.len(), "tenant service released");
        Ok(())
    }

    /// Pids of this tenant's running service processes: the pid file's process and any
    /// process started with this tenant's `TENANT_ID`, zombies excluded.
    pub fn running_pids(&self, spec: &TenantSpec) -> Vec<i32> {
        let paths = self.paths(spec);
        let needle = tenant_env_entry(spec);
        let binary_name = self.binary_comm();
        let mut pids = BTreeSet::new();

        if let Some(pid) = read_pid_file(&paths.pid) {
            let matches = match proc_environ(pid) {
                Some(environ) => environ_has(&environ, &needle),
                // Environment unreadable: fall back to the process name.
                None => is_live(pid) && proc_comm(pid).as_deref() == Some(binary_name.as_str()),
            };
            if matches {
                pids.insert(pid);
            }
        }

        let own = std::process::id() as i32;
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<i32>().ok())
                else {
                    continue;
                };
                if pid != own && proc_environ(pid).is_some_and(|env| environ_has(&env, &needle)) {
                    pids.insert(pid);
                }
            }
        }
        pids.into_iter().collect()
    }

    /// GET `http://<host><path>` on the workload's own socket, bypassing the edge: for
    /// operators and tests that ask the service itself.
    pub async fn workload_get(
        &self,
        spec: &TenantSpec,
        path: &str,
    ) -> StepResult<reqwest::Response> {
        let client = socket_client(&self.paths(spec).socket, Duration::from_secs(10))?;
        let url = format!("http://{}{path}", spec.names.host);
        Ok(client.get(url).send().await?)
    }

    /// Writes the tenant's suspended flag into its own database (`database_url` is the
    /// tenant's): while it is set, the service lets nobody sign in or redeem an invitation.
    /// Suspend sets it before the public route closes; resume clears it.
    #[tracing::instrument(
        name = "workload.set_suspended",
        skip_all,
        fields(tenant = %spec.tenant_id(), suspended)
    )]
    pub async fn set_suspended(
        &self,
        spec: &TenantSpec,
        database_url: &Secret,
        suspended: bool,
    ) -> StepResult<()> {
        let mut conn = crate::identity::open_tenant_db(database_url).await?;
        tenant_service::db::set_suspended(&mut conn, suspended)
            .await
            .map_err(StepError::Transient)?;
        let _ = sqlx::Connection::close(conn).await;
        tracing::info!(suspended, "tenant suspended flag written");
        Ok(())
    }

    /// Stops the tenant's running copy because it runs with settings other than `settings`.
    async fn stop_for_settings(
        &self,
        spec: &TenantSpec,
        running: Option<String>,
        settings: &ServiceSettings,
        sizing: &WorkloadSizing,
    ) -> StepResult<SettingsChange> {
        tracing::info!(
            running = running.as_deref().unwrap_or("none"),
            current = %settings.digest,
            db_pool = sizing.db_pool,
            max_concurrent_requests = sizing.max_concurrent_requests,
            "restarting tenant service: settings changed"
        );
        // Stopping first lets the fresh copy take the single-copy lock.
        self.release(spec).await.map_err(|e| {
            StepError::Transient(anyhow!(
                "stopping the tenant service to restart it with changed settings: {e}"
            ))
        })?;
        Ok(SettingsChange {
            previous: running,
            current: settings.digest.clone(),
        })
    }

    /// The environment the driver starts the tenant's service with, settings digest
    /// included, for tools and tests that start a copy by hand. It holds the database URL.
    pub fn service_environment(
        &self,
        spec: &TenantSpec,
        database_url: &Secret,
        sizing: &WorkloadSizing,
    ) -> StepResult<Vec<(String, String)>> {
        let settings = self.settings(spec, database_url, &self.paths(spec), sizing)?;
        let mut env: Vec<(String, String)> = settings
            .env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        env.push((ENV_SETTINGS_DIGEST.to_owned(), settings.digest));
        Ok(env)
    }

    /// Every setting the service is started with, and their digest.
    fn settings(
        &self,
        spec: &TenantSpec,
        database_url: &Secret,
        paths: &WorkloadPaths,
        sizing: &WorkloadSizing,
    ) -> StepResult<ServiceSettings> {
        let socket = paths.socket.to_str().with_context(|| {
            format!(
                "the socket path {} is not UTF-8; choose another runtime dir",
                paths.socket.display()
            )
        })?;
        let env = vec![
            ("TENANT_ID", spec.tenant_id().to_string()),
            ("TENANT_HOST", spec.names.host.clone()),
            ("TENANT_NAME", spec.request.name.clone()),
            ("TENANT_ORG", spec.request.org.clone()),
            ("TENANT_SLUG", spec.request.slug.clone()),
            ("TENANT_SOCKET", socket.to_owned()),
            // The tenant's public URL: the issuer its identity endpoint announces and signs.
            ("TENANT_ISSUER", self.cfg.public_url(&spec.names.host)),
            ("DATABASE_URL", database_url.expose().to_owned()),
            (ENV_DB_POOL, sizing.db_pool.to_string()),
            (
                ENV_MAX_CONCURRENT_REQUESTS,
                sizing.max_concurrent_requests.to_string(),
            ),
        ];
        let digest = settings_digest(&env, SECRET_SETTINGS);
        Ok(ServiceSettings { env, digest })
    }

    fn spawn(&self, settings: &ServiceSettings, paths: &WorkloadPaths) -> StepResult<Started> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&paths.log)
            .with_context(|| format!("opening the service log {}", paths.log.display()))?;
        let log_offset = log
            .seek(SeekFrom::End(0))
            .context("reading the service log's length")?;
        let stderr = log
            .try_clone()
            .context("duplicating the service log handle")?;

        let mut command = tokio::process::Command::new(&self.cfg.tenant_service_bin);
        // A clean environment: the worker's own settings (control-plane URL, platform secret)
        // must not leak into a tenant's process. The database URL travels only here, never in
        // argv, which every local user can read.
        command
            .env_clear()
            .envs(settings.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(ENV_SETTINGS_DIGEST, &settings.digest)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .kill_on_drop(false);
        // The log filter is not a setting of the tenant: it stays out of the digest, so a
        // worker started with another filter does not restart every service.
        if let Ok(filter) = std::env::var("RUST_LOG") {
            command.env("RUST_LOG", filter);
        }
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent. A session of
        // its own keeps the service out of the worker's process group and terminal, so signals
        // aimed at the worker (Ctrl-C, a hangup, a group kill) do not reach it.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().with_context(|| {
            format!(
                "starting the tenant service {}",
                self.cfg.tenant_service_bin.display()
            )
        })?;
        let pid = child.id().context("the started service has no pid")? as i32;
        write_pid_file(&paths.pid, pid)?;

        // Reaps the child while this worker lives; after a worker crash init adopts it.
        let (tx, exit) = oneshot::channel();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send(status);
        });
        Ok(Started {
            pid,
            log_offset,
            exit,
        })
    }

    /// After a start lost the lock race, points the pid file at the copy that won (or removes
    /// it when that copy cannot be identified).
    fn repoint_pid_file(&self, spec: &TenantSpec, paths: &WorkloadPaths, exited: i32) {
        let others: Vec<i32> = self
            .running_pids(spec)
            .into_iter()
            .filter(|p| *p != exited)
            .collect();
        match others.as_slice() {
            [winner] => {
                if let Err(e) = write_pid_file(&paths.pid, *winner) {
                    tracing::warn!(error = %e, "could not rewrite the pid file");
                }
            }
            _ => remove_pid_file_if(&paths.pid, exited),
        }
    }

    /// Waits until none of `pids` is a live service of this tenant; returns those still alive.
    async fn wait_for_exit(&self, spec: &TenantSpec, pids: &[i32], limit: Duration) -> Vec<i32> {
        let needle = tenant_env_entry(spec);
        let deadline = Instant::now() + limit;
        loop {
            let left: Vec<i32> = pids
                .iter()
                .copied()
                .filter(|pid| proc_environ(*pid).is_some_and(|env| environ_has(&env, &needle)))
                .collect();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn paths(&self, spec: &TenantSpec) -> WorkloadPaths {
        let dir = self.cfg.runtime_dir.join("workloads");
        let stem = spec.tenant_id().simple().to_string();
        WorkloadPaths {
            socket: dir.join(format!("{stem}.sock")),
            pid: dir.join(format!("{stem}.pid")),
            log: dir.join(format!("{stem}.log")),
            dir,
        }
    }

    /// The service binary's name as /proc/<pid>/comm shows it (at most 15 bytes).
    fn binary_comm(&self) -> String {
        let name = self
            .cfg
            .tenant_service_bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.chars().take(15).collect()
    }
}

/// An HTTP client whose every connection goes to the unix socket at `socket`.
fn socket_client(socket: &Path, timeout: Duration) -> StepResult<reqwest::Client> {
    reqwest::Client::builder()
        .unix_socket(socket)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StepError::Transient(anyhow!(e).context("building the workload probe")))
}

/// What the service on the socket says about itself, when it says it is this tenant's
/// (ready or not); `None` when nothing answers, or something that is not this tenant's.
async fn ask(probe: &reqwest::Client, spec: &TenantSpec) -> Option<Answer> {
    let url = format!("http://{}/healthz/ready", spec.names.host);
    let response = match probe.get(url).send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "readiness probe failed");
            return None;
        }
    };
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        tracing::debug!(status = %status, "readiness probe not ready");
    }
    let body = response.json::<serde_json::Value>().await.ok()?;
    answer_of(&body, status == reqwest::StatusCode::OK, spec)
}

/// Reads a readiness answer. It must name this tenant: a socket answered by another
/// tenant's service must never count as this tenant's service, ready or not.
fn answer_of(body: &serde_json::Value, status_ok: bool, spec: &TenantSpec) -> Option<Answer> {
    let tenant = spec.tenant_id().to_string();
    if body.get("tenant_id").and_then(|v| v.as_str()) != Some(tenant.as_str()) {
        return None;
    }
    Some(Answer {
        ready: status_ok && body.get("ready").and_then(|v| v.as_bool()) != Some(false),
        settings_digest: body
            .get("settings_digest")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    })
}

/// SHA-256 over every setting, in key order, each key and value length-prefixed; a secret
/// setting contributes the SHA-256 of its value, never the value. Lowercase hex.
pub fn settings_digest(settings: &[(&str, String)], secret: &[&str]) -> String {
    let ordered: BTreeMap<&str, &str> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut hasher = Sha256::new();
    hasher.update(DIGEST_CONTEXT);
    for (key, value) in ordered {
        let hashed;
        let value = if secret.contains(&key) {
            hashed = format!("sha256:{}", hex::encode(Sha256::digest(value.as_bytes())));
            hashed.as_str()
        } else {
            value
        };
        for part in [key, value] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hex::encode(hasher.finalize())
}

fn tenant_env_entry(spec: &TenantSpec) -> String {
    format!("TENANT_ID={}", spec.tenant_id())
}

fn signal_all(pids: &[i32], signal: Signal) -> StepResult<()> {
    for &pid in pids {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                return Err(StepError::Transient(anyhow!(
                    "sending {signal} to tenant service pid {pid}: {e}"
                )));
            }
        }
    }
    Ok(())
}

/// The process's initial environment; `None` when it is gone, a zombie, or unreadable.
fn proc_environ(pid: i32) -> Option<Vec<u8>> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    // A zombie's environment reads empty.
    (!environ.is_empty()).then_some(environ)
}

fn environ_has(environ: &[u8], entry: &str) -> bool {
    environ.split(|b| *b == 0).any(|kv| kv == entry.as_bytes())
}

fn proc_comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// Alive and not a zombie.
fn is_live(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| process_state(&stat))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The state letter of a /proc/<pid>/stat line; the command name may contain spaces and
/// parentheses, so the state is read after the last `)`.
fn process_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn read_pid_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}

/// Written beside and renamed, so a reader never sees a half-written pid.
fn write_pid_file(path: &Path, pid: i32) -> StepResult<()> {
    let staging = path.with_extension("pid.tmp");
    std::fs::write(&staging, format!("{pid}\n"))
        .with_context(|| format!("writing {}", staging.display()))?;
    std::fs::rename(&staging, path).with_context(|| format!("renaming {}", staging.display()))?;
    Ok(())
}

fn remove_pid_file_if(path: &Path, pid: i32) {
    if read_pid_file(path) == Some(pid) {
        let _ = std::fs::remove_file(path);
    }
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended ({status})"),
    }
}

/// The end of the service's log from `offset` on, with anything resembling a database URL or
/// the tenant's credentials removed.
fn log_tail(path: &Path, offset: u64, database_url: &Secret) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = offset.max(len.saturating_sub(LOG_TAIL_BYTES)).min(len);
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(start)).is_ok() && file.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    if tail.is_empty() {
        return "(empty)".to_owned();
    }
    redact(&tail, database_url.expose())
}

/// Removes the URL, its password, and every `postgres://`/`postgresql://` URL from `text`.
fn redact(text: &str, database_url: &str) -> String {
    let mut out = text.to_owned();
    let mut secrets = vec![database_url.to_owned()];
    if let Some(password) = url_password(database_url) {
        secrets.push(password.to_owned());
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), "[redacted]");
    }
    for scheme in ["postgresql://", "postgres://"] {
        let mut redacted = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(scheme) {
            redacted.push_str(&rest[..at]);
            redacted.push_str(scheme);
            redacted.push_str("[redacted]");
            let after = &rest[at + scheme.len()..];
            let end = after
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .unwrap_or(after.len());
            rest = &after[end..];
        }
        redacted.push_str(rest);
        out = redacted;
    }
    out
}

/// The password of `scheme://user:password@host/...`.
fn url_password(url: &str) -> Option<&str> {
    let authority = url.split_once("://")?.1;
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, password)| password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Vec<(&'static str, String)> {
        vec![
            ("TENANT_ID", "0b5c9ef4-6f57-5d1b-9d52-0f4c3f6a1c2e".into()),
            ("TENANT_HOST", "shop-acme.tenants.localhost".into()),
            (
                "DATABASE_URL",
                "postgres://t_ab:pw1@127.0.0.1:5432/t_ab".into(),
            ),
            (ENV_DB_POOL, "2".into()),
            (ENV_MAX_CONCURRENT_REQUESTS, "16".into()),
        ]
    }

    fn with(key: &str, value: &str) -> Vec<(&'static str, String)> {
        let mut changed = settings();
        changed.iter_mut().find(|(k, _)| *k == key).unwrap().1 = value.into();
        changed
    }

    #[test]
    fn settings_digest_is_stable_and_ignores_order() {
        let digest = settings_digest(&settings(), SECRET_SETTINGS);
        assert_eq!(digest.len(), 64);
        assert!(
            digest
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(settings_digest(&settings(), SECRET_SETTINGS), digest);
        let mut reversed = settings();
        reversed.reverse();
        assert_eq!(settings_digest(&reversed, SECRET_SETTINGS), digest);
    }

    #[test]
    fn settings_digest_changes_with_every_setting() {
        let digest = settings_digest(&settings(), SECRET_SETTINGS);
        for (key, value) in [
            (ENV_DB_POOL, "3"),
            (ENV_MAX_CONCURRENT_REQUESTS, "64"),
            ("TENANT_HOST", "shop-acme.tenants.example"),
            ("DATABASE_URL", "postgres://t_ab:pw2@127.0.0.1:5432/t_ab"),
        ] {
            assert_ne!(
                settings_digest(&with(key, value), SECRET_SETTINGS),
                digest,
                "{key}"
            );
        }
        let mut more = settings();
        more.push(("TENANT_EXTRA", String::new()));
        assert_ne!(
            settings_digest(&more, SECRET_SETTINGS),
            digest,
            "a new setting"
        );
        // Length prefixes: moving bytes between a key and its value is a change.
        let a = settings_digest(&[("AB", "C".into())], &[]);
        let b = settings_digest(&[("A", "BC".into())], &[]);
        assert_ne!(a, b);
    }

    #[test]
    fn secret_settings_enter_the_digest_only_as_hashes() {
        let url = "postgres://t_ab:pw1@127.0.0.1:5432/t_ab";
        let hashed = format!("sha256:{}", hex::encode(Sha256::digest(url.as_bytes())));
        // Hashing the secret is exactly what the digest does with it, and nothing else.
        assert_eq!(
            settings_digest(&settings(), SECRET_SETTINGS),
            settings_digest(&with("DATABASE_URL", &hashed), &[])
        );
        assert_ne!(
            settings_digest(&settings(), SECRET_SETTINGS),
            settings_digest(&settings(), &[])
        );
    }

    #[test]
    fn readiness_answers_count_only_for_this_tenant() {
        let request = tenant_domain::TenantRequest {
            org: "acme".into(),
            slug: "shop".into(),
            plan: "free".into(),
            first_admin_email: "a@example.com".into(),
            name: None,
        };
        let spec = TenantSpec {
            request: tenant_domain::validate(&request, &["free"]).unwrap(),
            names: tenant_domain::TenantKey::new("acme", "shop").derive("tenants.localhost"),
            incarnation: 1,
            requested_by: "test".into(),
        };
        let id = spec.tenant_id().to_string();

        let ready = serde_json::json!({"tenant_id": id, "ready": true, "settings_digest": "ab"});
        let answer = answer_of(&ready, true, &spec).unwrap();
        assert!(answer.ready);
        assert_eq!(answer.settings_digest.as_deref(), Some("ab"));
        // A 503 still tells which copy answers, and that it is not ready.
        let answer = answer_of(&ready, false, &spec).unwrap();
        assert!(!answer.ready);
        let old = serde_json::json!({"tenant_id": id, "ready": true});
        assert_eq!(answer_of(&old, true, &spec).unwrap().settings_digest, None);
        let not_ready = serde_json::json!({"tenant_id": id, "ready": false});
        assert!(!answer_of(&not_ready, true, &spec).unwrap().ready);
        let other = serde_json::json!({"tenant_id": uuid::Uuid::nil(), "ready": true});
        assert!(answer_of(&other, true, &spec).is_none());
    }

    #[test]
    fn redaction_removes_urls_and_passwords() {
        let url = "postgres://t_ab:s3cretpw@127.0.0.1:5432/t_ab";
        let text = format!(
            "connecting to {url} failed\npassword s3cretpw rejected\nsee postgresql://x:y@h/d\"; done"
        );
        let out = redact(&text, url);
        assert!(!out.contains("s3cretpw"), "{out}");
        assert!(!out.contains("x:y@h"), "{out}");
        assert!(out.contains("connecting to [redacted] failed"), "{out}");
        assert!(out.contains("postgresql://[redacted]\"; done"), "{out}");
    }

    #[test]
    fn url_password_is_found() {
        assert_eq!(url_password("postgres://u:p@h:1/d"), Some("p"));
        assert_eq!(url_password("postgres://u@h/d"), None);
        assert_eq!(url_password("not a url"), None);
    }

    #[test]
    fn environ_entries_match_exactly() {
        let environ = b"PATH=/bin\0TENANT_ID=abc\0TENANT_IDX=abd\0";
        assert!(environ_has(environ, "TENANT_ID=abc"));
        assert!(!environ_has(environ, "TENANT_ID=ab"));
        assert!(!environ_has(environ, "TENANT_ID=abd"));
    }

    #[test]
    fn process_state_survives_odd_command_names() {
        assert_eq!(process_state("42 (a) b) S 1 42"), Some('S'));
        assert_eq!(process_state("7 (tenant-service) Z 1"), Some('Z'));
        assert_eq!(process_state("garbage"), None);
    }

    #[test]
    fn log_tail_reads_only_this_start_and_redacts() {
        let dir = std::env::temp_dir().join(format!("tp-logtail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.log");
        std::fs::write(&path, "old run line\n").unwrap();
        let offset = std::fs::metadata(&path).unwrap().len();
        let url = Secret::new("postgres://r:pw123@h:5432/d".into());
        std::fs::write(
            &path,
            "old run line\nnew: using postgres://r:pw123@h:5432/d\nbye\n",
        )
        .unwrap();
        let tail = log_tail(&path, offset, &url);
        assert!(!tail.contains("old run"), "{tail}");
        assert!(tail.contains("bye"), "{tail}");
        assert!(!tail.contains("pw123"), "{tail}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
