//! `tenant-service` binary: reads its settings from the environment (the platform's local
//! driver sets them) and serves until stopped. Exit codes: 0 stopped, 1 failed,
//! [`EXIT_CONFIG`] bad settings, [`EXIT_LOCK_HELD`] another copy runs.

use std::process::ExitCode;

use tenant_service::server::{self, Settings, Stop};
use tenant_service::{EXIT_CONFIG, EXIT_LOCK_HELD};

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

    match server::run(settings).await {
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
