//! `tenant-service`: the workload every tenant runs, serving HTTP on a unix socket with its
//! own PostgreSQL database.
//!
//! Owns its socket, its schema in the tenant's database, and the advisory lock that keeps a
//! second copy of the same tenant's service from running: the lock is taken on a dedicated
//! connection before the socket is bound and held for the process's lifetime; a copy that
//! cannot take it exits with code 3. Configuration comes only from the environment (the
//! platform's local driver sets it). Must never log or print `DATABASE_URL`, which carries
//! the tenant's password.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::net::UnixListener;
use tokio::sync::{Mutex, watch};
use tokio::time::{Instant, timeout};
use uuid::Uuid;

/// Exit code: the environment is incomplete or malformed.
const EXIT_CONFIG: u8 = 2;
/// Exit code: another copy of this tenant's service holds the lock. The platform's driver
/// reads it as "a copy already runs".
const EXIT_LOCK_HELD: u8 = 3;
/// The advisory lock key. The database is the tenant's own, so one constant suffices.
const LOCK_KEY: i64 = 0x7465_6e61_6e74;
/// How long start-up keeps trying to reach the database.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);
/// Pool size: PostgreSQL allows 100 connections for the whole machine, and every tenant
/// also holds one for its lock.
const POOL_SIZE: u32 = 2;
/// How often the lock connection is checked.
const LOCK_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// One readiness check of a database connection.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long open connections may take to finish after a stop signal; the driver kills the
/// process 10 s after its SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

/// The service's settings, from the environment. No `Debug`: it holds the database URL.
struct Settings {
    tenant_id: Uuid,
    host: String,
    name: String,
    org: String,
    slug: String,
    socket: PathBuf,
    database: PgConnectOptions,
}

impl Settings {
    fn from_env() -> Result<Self, String> {
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
            .map_err(|_| "DATABASE_URL is not a valid PostgreSQL URL".to_owned())?;
        Ok(Self {
            tenant_id,
            host: var("TENANT_HOST")?,
            name: var("TENANT_NAME")?,
            org: var("TENANT_ORG")?,
            slug: var("TENANT_SLUG")?,
            socket: PathBuf::from(var("TENANT_SOCKET")?),
            database,
        })
    }
}

/// Why the service stopped.
#[derive(Clone, Copy)]
enum Stop {
    /// Asked to stop (SIGTERM or SIGINT).
    Requested,
    /// Another copy holds the lock.
    LockHeld,
}

struct AppState {
    tenant_id: Uuid,
    host: String,
    name: String,
    pool: PgPool,
    /// The connection holding the advisory lock; the lock lives exactly as long as it does.
    lock: Mutex<PgConnection>,
    /// False while the lock connection is being re-established.
    lock_held: AtomicBool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();

    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(problem) => {
            tracing::error!(problem = %problem, "cannot start: bad configuration");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let span =
        tracing::info_span!("tenant_service", tenant = %settings.tenant_id, host = %settings.host);
    let _entered = span.enter();

    match run(settings).await {
        Ok(Stop::Requested) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Ok(Stop::LockHeld) => ExitCode::from(EXIT_LOCK_HELD),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "tenant service failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<Stop> {
    let mut lock = connect_with_retry(&settings.database).await?;
    if !try_lock(&mut lock).await? {
        tracing::warn!("another copy of this tenant's service holds the lock; exiting");
        return Ok(Stop::LockHeld);
    }

    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(0)
        .acquire_timeout(CHECK_TIMEOUT)
        .idle_timeout(Duration::from_secs(60))
        .connect_with(settings.database.clone())
        .await
        .context("opening the connection pool")?;
    prepare_schema(&pool).await?;

    let listener = bind_socket(&settings.socket)?;
    let state = Arc::new(AppState {
        tenant_id: settings.tenant_id,
        host: settings.host.clone(),
        name: settings.name.clone(),
        pool: pool.clone(),
        lock: Mutex::new(lock),
        lock_held: AtomicBool::new(true),
    });
    tracing::info!(
        socket = %settings.socket.display(),
        org = %settings.org,
        slug = %settings.slug,
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
        axum::serve(listener, app(state))
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

fn app(state: Arc<AppState>) -> Router {
    let tenant_header = HeaderValue::from_str(&state.tenant_id.to_string())
        .expect("a UUID is a valid header value");
    Router::new()
        .route("/", get(home))
        .route("/healthz/live", get(|| async { "ok" }))
        .route("/healthz/ready", get(ready))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
        // Every answer names its tenant, so a misrouted response is visible at once.
        .layer(axum::middleware::map_response(
            move |mut response: Response| {
                let value = tenant_header.clone();
                async move {
                    response.headers_mut().insert("x-tenant-id", value);
                    response
                }
            },
        ))
}

async fn home(State(state): State<Arc<AppState>>) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{name}</title></head>\
         <body><h1>{name} is up</h1><p>Served at {host}.</p></body></html>\n",
        name = escape_html(&state.name),
        host = escape_html(&state.host),
    ))
}

/// Ready only when the database answers now and the lock connection is alive: a copy that
/// lost its lock must not take traffic, since another copy may start.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let problem = if !state.lock_held.load(Ordering::SeqCst) {
        Some("the lock connection is being re-established")
    } else if !lock_alive(&state).await {
        Some("the lock connection does not answer")
    } else if !pool_answers(&state.pool).await {
        Some("the database does not answer")
    } else {
        None
    };
    let body = |ready: bool| {
        serde_json::json!({
            "tenant_id": state.tenant_id,
            "host": state.host,
            "ready": ready,
        })
    };
    match problem {
        None => (StatusCode::OK, Json(body(true))).into_response(),
        Some(reason) => {
            let mut body = body(false);
            body["reason"] = reason.into();
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn lock_alive(state: &AppState) -> bool {
    let check = async {
        let mut conn = state.lock.lock().await;
        sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok()
    };
    timeout(CHECK_TIMEOUT, check).await.unwrap_or(false)
}

async fn pool_answers(pool: &PgPool) -> bool {
    let check = sqlx::query("SELECT 1").execute(pool);
    matches!(timeout(CHECK_TIMEOUT, check).await, Ok(Ok(_)))
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

/// Creates the service's table and records this start (one row per copy that got the lock).
async fn prepare_schema(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS service_starts (
             id bigserial PRIMARY KEY,
             started_at timestamptz NOT NULL DEFAULT now(),
             pid integer NOT NULL
         )",
    )
    .execute(pool)
    .await
    .context("creating the service_starts table")?;
    sqlx::query("INSERT INTO service_starts (pid) VALUES ($1)")
        .bind(std::process::id() as i32)
        .execute(pool)
        .await
        .context("recording this start")?;
    Ok(())
}

/// Binds the socket, replacing a stale one left by a killed copy (safe: this process holds
/// the lock, so no other copy serves it), and opens it to the edge proxy.
fn bind_socket(path: &std::path::Path) -> anyhow::Result<UnixListener> {
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
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

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape_html("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
        assert_eq!(escape_html("production-eu"), "production-eu");
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
                0o666
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
