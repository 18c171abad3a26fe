//! Running the service: settings from the environment, the single-copy lock, the schema,
//! the unix socket, and a clean stop.
//!
//! Owns the advisory lock that keeps a second copy of the same tenant's service from
//! running: it is taken on a dedicated connection before the socket is bound and held for
//! the process's lifetime; a copy that cannot take it stops with [`Stop::LockHeld`]. Must
//! never log or print `DATABASE_URL`, which carries the tenant's password.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, anyhow};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};
use uuid::Uuid;

use crate::app::{AppState, router};
use crate::db;

/// The advisory lock key. The database is the tenant's own, so one constant suffices.
const LOCK_KEY: i64 = 0x7465_6e61_6e74;
/// How long start-up keeps trying to reach the database.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);
/// Pool size when `TENANT_DB_POOL` is not set: the smallest plan's. PostgreSQL allows 100
/// connections for the whole machine, and every tenant also holds one for its lock.
pub const DEFAULT_DB_POOL: u32 = 2;
/// Requests served at once when `TENANT_MAX_CONCURRENT_REQUESTS` is not set.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16;
/// The largest values accepted, so a typo cannot ask for a million connections.
const MAX_DB_POOL: u32 = 1000;
const MAX_CONCURRENT_REQUESTS: usize = 100_000;

/// The sizing the platform's plan gives the service.
pub const ENV_DB_POOL: &str = "TENANT_DB_POOL";
pub const ENV_MAX_CONCURRENT_REQUESTS: &str = "TENANT_MAX_CONCURRENT_REQUESTS";
/// The digest of every setting the platform started the service with (secrets only as
/// hashes), reported on `/healthz/ready` so the platform can tell a copy started with
/// other settings from a current one.
pub const ENV_SETTINGS_DIGEST: &str = "TENANT_SETTINGS_DIGEST";
/// How often the lock connection is checked.
const LOCK_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long open connections may take to finish after a stop signal; the driver kills the
/// process 10 s after its SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

/// The service's settings, from the environment. No `Debug`: it holds the database URL.
pub struct Settings {
    pub tenant_id: Uuid,
    pub host: String,
    pub name: String,
    pub org: String,
    pub slug: String,
    /// The tenant's public URL (`TENANT_ISSUER`), the `iss` of its tokens; defaults to
    /// `https://<host>`.
    pub issuer: String,
    pub socket: PathBuf,
    pub database: PgConnectOptions,
    pub sizing: Sizing,
    /// `TENANT_SETTINGS_DIGEST`, reported as it was given; `None` when not set.
    pub settings_digest: Option<String>,
}

/// How much of the database and of the machine the service may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    /// Most connections in the pool (the lock's own connection is not counted).
    pub db_pool: u32,
    /// Most requests served at once; more are answered 503 at once.
    pub max_concurrent_requests: usize,
}

impl Default for Sizing {
    fn default() -> Self {
        Self {
            db_pool: DEFAULT_DB_POOL,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("environment variable {name} is required"))
        };
        let tenant_id = var("TENANT_ID")?
            .parse()
            .map_err(|_| "TENANT_ID is not a UUID".to_owned())?;
        // The parse error is replaced: it could quote the URL, password included.
        let database = var("DATABASE_URL")?
            .parse::<PgConnectOptions>()
            .map_err(|_| "DATABASE_URL is not a valid PostgreSQL URL".to_owned())?
            .disable_statement_logging();
        let host = var("TENANT_HOST")?;
        let issuer = match var("TENANT_ISSUER") {
            Ok(issuer) => issuer.trim_end_matches('/').to_owned(),
            Err(_) => format!("https://{host}"),
        };
        if !issuer.starts_with("https://") {
            return Err("TENANT_ISSUER must be an https:// URL".to_owned());
        }
        let sizing = Sizing {
            db_pool: bounded(
                ENV_DB_POOL,
                var(ENV_DB_POOL).ok(),
                DEFAULT_DB_POOL,
                MAX_DB_POOL,
            )?,
            max_concurrent_requests: bounded(
                ENV_MAX_CONCURRENT_REQUESTS,
                var(ENV_MAX_CONCURRENT_REQUESTS).ok(),
                DEFAULT_MAX_CONCURRENT_REQUESTS,
                MAX_CONCURRENT_REQUESTS,
            )?,
        };
        Ok(Self {
            tenant_id,
            name: var("TENANT_NAME")?,
            org: var("TENANT_ORG")?,
            slug: var("TENANT_SLUG")?,
            socket: PathBuf::from(var("TENANT_SOCKET")?),
            host,
            issuer,
            database,
            sizing,
            settings_digest: var(ENV_SETTINGS_DIGEST).ok(),
        })
    }
}

/// A positive whole number of at most `max` from the variable `name`, or `default` when it
/// is not set.
fn bounded<T>(name: &str, raw: Option<String>, default: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8> + std::fmt::Display,
{
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(value) if value >= T::from(1) && value <= max => Ok(value),
        _ => Err(format!(
            "{name} must be a whole number from 1 to {max}, not {raw:?}"
        )),
    }
}

/// Why the service stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Asked to stop (SIGTERM or SIGINT).
    Requested,
    /// Another copy holds the lock.
    LockHeld,
}

/// Serves until asked to stop, or until another copy holds the lock.
pub async fn run(settings: Settings) -> anyhow::Result<Stop> {
    let mut lock = connect_with_retry(&settings.database).await?;
    if !try_lock(&mut lock).await? {
        tracing::warn!("another copy of this tenant's service holds the lock; exiting");
        return Ok(Stop::LockHeld);
    }

    let pool = PgPoolOptions::new()
        .max_connections(settings.sizing.db_pool)
        .min_connections(0)
        .acquire_timeout(CHECK_TIMEOUT)
        .idle_timeout(Duration::from_secs(60))
        .connect_with(settings.database.clone())
        .await
        .context("opening the connection pool")?;
    db::MIGRATOR
        .run(&pool)
        .await
        .context("migrating the tenant database")?;
    sqlx::query("INSERT INTO service_starts (pid) VALUES ($1)")
        .bind(std::process::id() as i32)
        .execute(&pool)
        .await
        .context("recording this start")?;

    let listener = bind_socket(&settings.socket)?;
    let state = Arc::new(
        AppState::new(
            settings.tenant_id,
            settings.host.clone(),
            settings.name.clone(),
            settings.issuer.clone(),
            pool.clone(),
            lock,
        )
        .with_settings(settings.sizing, settings.settings_digest.clone()),
    );
    tracing::info!(
        socket = %settings.socket.display(),
        org = %settings.org,
        slug = %settings.slug,
        issuer = %settings.issuer,
        db_pool = settings.sizing.db_pool,
        max_concurrent_requests = settings.sizing.max_concurrent_requests,
        settings_digest = settings.settings_digest.as_deref().unwrap_or("none"),
        "serving"
    );

    let (stop_tx, stop_rx) = watch::channel(None::<Stop>);
    let stop_tx = Arc::new(stop_tx);
    tokio::spawn(watch_signals(stop_tx.clone()));
    tokio::spawn(guard_lock(
        state.clone(),
        settings.database.clone(),
        stop_tx.clone(),
    ));

    let mut server_rx = stop_rx.clone();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move {
                let _ = server_rx.wait_for(Option::is_some).await;
            })
            .await
    });

    let mut stop_rx = stop_rx;
    let outcome = tokio::select! {
        // A stop makes the server finish too: the stop must win when both are ready.
        biased;
        stopped = stop_rx.wait_for(Option::is_some) => {
            let stop = stopped.ok().and_then(|seen| *seen).unwrap_or(Stop::Requested);
            if timeout(DRAIN_TIMEOUT, &mut server).await.is_err() {
                tracing::warn!("open connections did not finish in time; closing them");
                server.abort();
            }
            Ok(stop)
        }
        served = &mut server => Err(match served {
            Ok(Ok(())) => anyhow!("the server stopped on its own"),
            Ok(Err(e)) => anyhow::Error::new(e).context("serving"),
            Err(e) => anyhow::Error::new(e).context("the server task failed"),
        }),
    };

    if let Err(e) = std::fs::remove_file(&settings.socket)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, "could not remove the socket");
    }
    let _ = timeout(CHECK_TIMEOUT, pool.close()).await;
    outcome
}

async fn connect_with_retry(options: &PgConnectOptions) -> anyhow::Result<PgConnection> {
    let deadline = Instant::now() + CONNECT_PATIENCE;
    loop {
        match PgConnection::connect_with(options).await {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("connecting to the tenant database"),
        }
    }
}

async fn try_lock(conn: &mut PgConnection) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(conn)
        .await
        .context("taking the service lock")
}

/// Binds the socket, replacing a stale one left by a killed copy (safe: this process holds
/// the lock, so no other copy serves it), and opens it to the edge proxy: to this user and
/// group only, so other local users cannot reach the tenant around the edge (Caddy runs as
/// the same user, in the same group, or as root).
pub fn bind_socket(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        Ok(_) => {
            return Err(anyhow!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("opening the permissions of {}", path.display()))?;
    Ok(listener)
}

async fn watch_signals(stop: Arc<watch::Sender<Option<Stop>>>) {
    use tokio::signal::unix::{SignalKind, signal};

    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for stop signals");
        return;
    };
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = which, "stopping");
    stop.send_replace(Some(Stop::Requested));
}

/// Checks the lock connection; when it is lost, reconnects and takes the lock again, or stops
/// the service if another copy took it meanwhile.
async fn guard_lock(
    state: Arc<AppState>,
    options: PgConnectOptions,
    stop: Arc<watch::Sender<Option<Stop>>>,
) {
    let mut ticker = tokio::time::interval(LOCK_CHECK_INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let mut conn = state.lock.lock().await;
        let alive = timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&mut *conn))
            .await
            .is_ok_and(|r| r.is_ok());
        if alive {
            continue;
        }
        state.lock_held.store(false, Ordering::SeqCst);
        tracing::warn!("lost the lock connection; reconnecting");
        let Ok(Ok(mut fresh)) = timeout(CHECK_TIMEOUT, PgConnection::connect_with(&options)).await
        else {
            continue;
        };
        match try_lock(&mut fresh).await {
            Ok(true) => {
                *conn = fresh;
                state.lock_held.store(true, Ordering::SeqCst);
                tracing::info!("lock taken again");
            }
            Ok(false) => {
                tracing::error!("another copy of this tenant's service took the lock; stopping");
                stop.send_replace(Some(Stop::LockHeld));
                return;
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not take the lock again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing_variables_are_bounded_and_default_when_absent() {
        assert_eq!(bounded("X", None, 2u32, 10), Ok(2));
        assert_eq!(bounded("X", Some(" 7 ".into()), 2u32, 10), Ok(7));
        assert_eq!(bounded("X", Some("10".into()), 2u32, 10), Ok(10));
        for bad in ["0", "11", "-1", "two", ""] {
            let err = bounded("X", Some(bad.into()), 2u32, 10).unwrap_err();
            assert!(
                err.contains("X must be a whole number from 1 to 10"),
                "{err}"
            );
        }
        assert_eq!(bounded("Y", Some("300".into()), 16usize, 100_000), Ok(300));
    }

    #[test]
    fn socket_binding_replaces_only_stale_sockets() {
        let dir = std::env::temp_dir().join(format!("ts-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let socket = dir.join("s.sock");
            drop(bind_socket(&socket).unwrap());
            // The first listener is gone but its file stays: the second bind replaces it.
            let listener = bind_socket(&socket).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
                0o660
            );
            drop(listener);

            let plain = dir.join("plain");
            std::fs::write(&plain, "keep me").unwrap();
            assert!(bind_socket(&plain).is_err());
            assert_eq!(std::fs::read_to_string(&plain).unwrap(), "keep me");
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
