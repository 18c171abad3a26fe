//! The verify phase: checks from outside the tenant, before public traffic is opened, that
//! its host serves this tenant. (A first version: reachability of the tenant's readiness
//! endpoint through the platform listener; the full identity check is being added.)

use std::sync::Arc;

use tenant_domain::TenantSpec;
use tenant_store::Store;

use crate::{ActivitiesConfig, StepError, StepResult};

pub struct Verifier {
    cfg: Arc<ActivitiesConfig>,
    #[allow(dead_code)]
    store: Store,
    http: reqwest::Client,
}

impl Verifier {
    pub fn new(cfg: Arc<ActivitiesConfig>, store: Store) -> Self {
        Self { cfg, store, http: reqwest::Client::new() }
    }

    /// Fails with `VerificationFailed` when the host does not serve this tenant.
    pub async fn verify(&self, spec: &TenantSpec) -> StepResult<()> {
        let url = format!("http://127.0.0.1:{}/healthz/ready", self.cfg.platform_http_port);
        let response = self.http.get(&url).header(reqwest::header::HOST, &spec.names.host).send().await?;
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if body["tenant_id"] != spec.tenant_id().to_string() {
            return Err(StepError::permanent(
                "VerificationFailed",
                format!("{} does not serve tenant {}", spec.names.host, spec.tenant_id()),
            ));
        }
        Ok(())
    }
}
