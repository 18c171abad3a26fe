//! `tenant-worker`: hosts the `ProvisionTenant` workflow and its activities.
//!
//! Wiring only: reads settings from the environment, connects to Temporal (its standard
//! environment config: `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, ...) and to the
//! control-plane store, installs the edge config, and runs until SIGTERM or Ctrl-C, when
//! it finishes its current tasks and stops. Any number of workers may run against one
//! Temporal cluster; the local workload driver is the exception (see the README).

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use temporalio_client::{
    Client, ClientOptions, Connection, WorkflowSignalOptions,
    envconfig::LoadClientConfigProfileOptions,
};
use temporalio_common::data_converters::RawValue;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tenant_activities::{ActivitiesConfig, temporal::TenantActivities};
use tenant_domain::{TASK_QUEUE, TenantState};
use tenant_store::Store;
use tenant_workflows::ProvisionTenant;
use tracing::{info, warn};

/// Hosts the tenant provisioning saga. Every setting can come from the environment.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The control-plane database.
    #[arg(long, env = "TP_DATABASE_URL")]
    database_url: String,
    /// A PostgreSQL URL allowed to create databases and roles (tenant storage).
    #[arg(long, env = "TP_STORAGE_ADMIN_URL")]
    storage_admin_url: String,
    /// Where tenant workloads reach PostgreSQL.
    #[arg(long, env = "TP_STORAGE_HOST", default_value = "127.0.0.1")]
    storage_host: String,
    #[arg(long, env = "TP_STORAGE_PORT", default_value_t = 5432)]
    storage_port: u16,
    /// Tenants are served at `<slug>-<org>.<domain>`.
    #[arg(long, env = "TP_DOMAIN", default_value = "tenants.localhost")]
    domain: String,
    #[arg(long, env = "TP_PUBLIC_HTTPS_PORT", default_value_t = 8443)]
    public_https_port: u16,
    #[arg(long, env = "TP_PLATFORM_HTTP_PORT", default_value_t = 8444)]
    platform_http_port: u16,
    #[arg(
        long,
        env = "TP_CADDY_ADMIN_URL",
        default_value = "http://127.0.0.1:2019"
    )]
    caddy_admin_url: String,
    /// Short directory for edge routes and workload sockets (at most 30 bytes).
    #[arg(
        long,
        env = "TP_RUNTIME_DIR",
        default_value = "/tmp/tenant-provisioner"
    )]
    runtime_dir: PathBuf,
    /// The tenant service binary; defaults to `tenant-service` next to this binary.
    #[arg(long, env = "TP_TENANT_SERVICE_BIN")]
    tenant_service_bin: Option<PathBuf>,
    #[arg(long, env = "TP_SMTP_HOST", default_value = "127.0.0.1")]
    smtp_host: String,
    #[arg(long, env = "TP_SMTP_PORT", default_value_t = 1025)]
    smtp_port: u16,
    #[arg(
        long,
        env = "TP_MAIL_FROM",
        default_value = "Tenant Provisioner <no-reply@tenants.localhost>"
    )]
    mail_from: String,
    /// The platform console where organisations manage their tenants, linked from the
    /// welcome emails; without it the emails do not mention a platform console.
    #[arg(long, env = "TP_CONSOLE_URL")]
    console_url: Option<String>,
    /// Secret from which per-tenant credentials are derived (at least 32 bytes).
    #[arg(long, env = "TP_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// Test-only failure switch: the named phase fails on every attempt.
    #[arg(long, env = "TP_FAIL_PHASE")]
    fail_phase: Option<String>,
    /// Test-only: `<phase>:<milliseconds>` holds the phase that long after its work is done.
    #[arg(long, env = "TP_SLOW_PHASE")]
    slow_phase: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();

    let tenant_service_bin = match args.tenant_service_bin.clone() {
        Some(path) => path,
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("tenant-service"),
    };
    let cfg = Arc::new(ActivitiesConfig {
        control_plane_url: args.database_url.clone(),
        storage_admin_url: args.storage_admin_url,
        storage_host: args.storage_host,
        storage_port: args.storage_port,
        domain: args.domain,
        public_https_port: args.public_https_port,
        platform_http_port: args.platform_http_port,
        caddy_admin_url: args.caddy_admin_url,
        runtime_dir: args.runtime_dir,
        tenant_service_bin,
        smtp_host: args.smtp_host,
        smtp_port: args.smtp_port,
        mail_from: args.mail_from,
        console_url: args.console_url,
        secret_key: args.secret_key.into_bytes(),
        fail_phase: args.fail_phase.filter(|p| !p.is_empty()),
        slow_phase: match args.slow_phase.as_deref().filter(|s| !s.is_empty()) {
            Some(value) => Some(
                tenant_activities::config::parse_slow_phase(value)
                    .map_err(anyhow::Error::msg)
                    .context("reading TP_SLOW_PHASE")?,
            ),
            None => None,
        },
    });
    cfg.check()
        .map_err(anyhow::Error::msg)
        .context("checking the worker settings")?;
    if let Some(phase) = &cfg.fail_phase {
        if tenant_domain::Phase::parse(phase).is_none() {
            anyhow::bail!("TP_FAIL_PHASE names no phase: {phase:?}");
        }
        warn!(phase = %phase, "failure switch is set: this phase will fail on every attempt");
    }

    let store = Store::connect(&args.database_url, 10).await?;
    let activities = TenantActivities::new(cfg.clone(), store.clone()).await?;
    activities
        .edge()
        .ensure_config()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("installing the edge config through Caddy's admin API")?;

    let runtime = Runtime::from_current_tokio(Default::default())?;
    let (conn_opts, client_opts) =
        ClientOptions::load_from_config(LoadClientConfigProfileOptions::default())
            .map_err(|e| anyhow::anyhow!("reading Temporal client settings: {e}"))?;
    let connection = Connection::connect(conn_opts)
        .await
        .context("connecting to Temporal")?;
    let client = Client::new(connection, client_opts)?;

    tokio::spawn(reconcile_workloads(client.clone(), store));

    let options = WorkerOptions::new(TASK_QUEUE)
        .register_workflow::<ProvisionTenant>()?
        .register_activities(activities)
        .build();
    let mut worker = Worker::new(&runtime, client, options)?;

    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        info!("stop requested: finishing current tasks");
        shutdown();
    });

    info!(task_queue = TASK_QUEUE, "worker started");
    worker.run().await?;
    info!("worker stopped");
    Ok(())
}

/// Asks every active or suspended tenant's workflow to make sure its service runs: after a
/// host restart the services are gone, and only the saga may start them again. Idempotent,
/// so any number of workers starting at once is harmless.
async fn reconcile_workloads(client: Client, store: Store) {
    let ids = match store
        .workflow_ids_in_states(&[TenantState::Active, TenantState::Suspended])
        .await
    {
        Ok(ids) => ids,
        Err(err) => {
            warn!(error = %err, "could not list tenants to reconcile their services");
            return;
        }
    };
    let mut asked = 0;
    for workflow_id in &ids {
        let handle = client.get_workflow_handle::<ProvisionTenant>(workflow_id.as_str());
        match handle
            .signal(
                ProvisionTenant::ensure_running_signal,
                RawValue::empty(),
                WorkflowSignalOptions::default(),
            )
            .await
        {
            Ok(()) => asked += 1,
            Err(err) => {
                warn!(workflow_id = %workflow_id, error = %err, "could not ask a tenant to reconcile its service")
            }
        }
    }
    info!(
        tenants = asked,
        "asked active and suspended tenants to make sure their services run"
    );
}

async fn wait_for_stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn init_tracing() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if std::env::var("TP_LOG_FORMAT").as_deref() == Ok("json") {
        fmt().with_env_filter(filter).json().init();
    } else {
        // Colour only on a terminal: logs usually go to files.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        fmt().with_env_filter(filter).with_ansi(ansi).init();
    }
}
