//! The `tenants` CLI; see `tenant_starter::cli`.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tenant_starter::cli::main().await
}
