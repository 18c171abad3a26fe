//! Settings of the activities, read once by the worker.

use std::path::PathBuf;

/// Everything the activities need to reach the systems they drive.
#[derive(Clone, Debug)]
pub struct ActivitiesConfig {
    /// The control-plane store (PostgreSQL URL).
    pub control_plane_url: String,
    /// A PostgreSQL URL with the right to create databases and roles, for tenant storage.
    pub storage_admin_url: String,
    /// Host and port the tenant workloads use to reach their databases.
    pub storage_host: String,
    pub storage_port: u16,
    /// The platform domain: tenants are served at `<slug>-<org>.<domain>`.
    pub domain: String,
    /// Port of the public HTTPS listener (443 in production; 8443 locally).
    pub public_https_port: u16,
    /// Port of the platform-only HTTP listener on loopback, which reaches a workload before
    /// (and regardless of) public activation.
    pub platform_http_port: u16,
    /// Caddy's admin API, e.g. `http://127.0.0.1:2019`.
    pub caddy_admin_url: String,
    /// A short directory shared by the edge and the workloads on this host (unix socket
    /// paths are limited to 107 bytes, so at most 30 bytes long).
    pub runtime_dir: PathBuf,
    /// The tenant service binary the local workload driver starts.
    pub tenant_service_bin: PathBuf,
    /// SMTP relay for the welcome emails.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// The From address of the welcome emails.
    pub mail_from: String,
    /// Where organisations manage their tenants on the platform, linked from the emails
    /// when set; without it the emails leave the platform console out.
    pub console_url: Option<String>,
    /// Secret from which per-tenant credentials (database password, invitation code) are
    /// derived, so a retried allocation derives the same value and no secret ever enters
    /// the workflow history. At least 32 bytes.
    pub secret_key: Vec<u8>,
    /// Test-only: the phase named here fails on every attempt. Inert unless set.
    pub fail_phase: Option<String>,
    /// Test-only: `(phase, delay)` — the named phase waits this long after its work is
    /// done and before it reports success, to give fault tests a window. Inert unless set.
    pub slow_phase: Option<(String, std::time::Duration)>,
}

/// Parses `<phase>:<milliseconds>` (the `TP_SLOW_PHASE` setting).
pub fn parse_slow_phase(value: &str) -> Result<(String, std::time::Duration), String> {
    let (phase, millis) = value
        .split_once(':')
        .ok_or_else(|| format!("expected <phase>:<milliseconds>, got {value:?}"))?;
    if tenant_domain::Phase::parse(phase).is_none() {
        return Err(format!("unknown phase {phase:?}"));
    }
    let millis: u64 = millis
        .parse()
        .map_err(|_| format!("{millis:?} is not a number of milliseconds"))?;
    Ok((phase.to_owned(), std::time::Duration::from_millis(millis)))
}

/// Longest runtime directory that keeps every unix socket path within the kernel's limit.
pub const MAX_RUNTIME_DIR_LEN: usize = 30;

impl ActivitiesConfig {
    /// The public URL of a tenant host.
    pub fn public_url(&self, host: &str) -> String {
        if self.public_https_port == 443 {
            format!("https://{host}")
        } else {
            format!("https://{host}:{}", self.public_https_port)
        }
    }

    /// Refuses settings that would derive invalid names or paths later.
    pub fn check(&self) -> Result<(), String> {
        tenant_domain::identity::check_domain(&self.domain)?;
        if !self.runtime_dir.is_absolute() {
            return Err(format!(
                "runtime dir {} must be an absolute path (Caddy resolves paths from its own working directory)",
                self.runtime_dir.display()
            ));
        }
        let dir_len = self.runtime_dir.as_os_str().len();
        if dir_len > MAX_RUNTIME_DIR_LEN {
            return Err(format!(
                "runtime dir {} is {dir_len} bytes; at most {MAX_RUNTIME_DIR_LEN} keep unix socket paths valid",
                self.runtime_dir.display()
            ));
        }
        if self.secret_key.len() < 32 {
            return Err("secret key must be at least 32 bytes".into());
        }
        if let Some(console) = &self.console_url
            && !(console.starts_with("https://") || console.starts_with("http://"))
        {
            return Err(format!(
                "console URL {console:?} must be an http:// or https:// URL (it is a link in the welcome emails)"
            ));
        }
        Ok(())
    }
}
