//! The `tenant-api` server: connects the store and Temporal, then serves the API until
//! SIGTERM or ctrl-c. All behaviour lives in `tenant_starter::api`; this file is wiring.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tenant_starter::api::{self, ApiConfig, AppState};
use tenant_starter::saga::Saga;
use tenant_store::Store;
use tracing_subscriber::EnvFilter;

/// How long start-up waits for Temporal before giving up.
const SAGA_CONNECT_DEADLINE: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();

    let database_url = std::env::var("TP_DATABASE_URL").context("TP_DATABASE_URL must be set")?;
    let listen: SocketAddr = std::env::var("TP_API_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()
        .context("TP_API_LISTEN must be an address like 127.0.0.1:8080")?;
    let config = ApiConfig::from_env()?;

    let store = Store::connect(&database_url, 10).await?;
    let saga = connect_saga().await?;
    let state = AppState::new(store, saga, config.clone());

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, domain = %config.domain, "tenant API listening");
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving the API")?;
    tracing::info!("tenant API stopped");
    Ok(())
}

/// Temporal may still be starting next to us: retry every second, then give up so a
/// supervisor notices.
async fn connect_saga() -> anyhow::Result<Saga> {
    let started = tokio::time::Instant::now();
    loop {
        match Saga::connect_from_env().await {
            Ok(saga) => return Ok(saga),
            Err(err) if started.elapsed() < SAGA_CONNECT_DEADLINE => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "cannot reach Temporal yet; retrying in 1 s"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => {
                return Err(err).context(format!(
                    "no connection to Temporal within {SAGA_CONNECT_DEADLINE:?}"
                ));
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// RUST_LOG picks the levels; TP_LOG_FORMAT=json switches to one JSON object per line.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info,sqlx=warn"));
    // Colour only on a terminal: logs usually go to files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("TP_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}
