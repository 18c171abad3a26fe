//! The API's port to the saga: start a tenant's workflow, ask its status, check health.
//!
//! The router depends on this trait rather than on [`Saga`] directly so that tests can
//! stand in for Temporal (an engine that is down, or one that fails once). The
//! implementation for [`Saga`] only forwards to its methods; nothing here may add
//! behaviour of its own, or the API would act differently in tests and in production.

use futures::future::BoxFuture;
use tenant_domain::{TenantSpec, TenantStatus};

use crate::saga::Saga;

/// What the API needs from the workflow engine.
pub trait WorkflowEngine: Send + Sync + 'static {
    /// Starts the tenant's workflow (or finds the run serving this incarnation); the run id.
    fn start<'a>(&'a self, spec: &'a TenantSpec) -> BoxFuture<'a, anyhow::Result<String>>;

    /// The workflow's live status; `None` when no workflow exists for the id.
    fn status<'a>(
        &'a self,
        workflow_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<TenantStatus>>>;

    /// True when the engine answers.
    fn healthy(&self) -> BoxFuture<'_, bool>;
}

impl WorkflowEngine for Saga {
    fn start<'a>(&'a self, spec: &'a TenantSpec) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(Saga::start(self, spec))
    }

    fn status<'a>(
        &'a self,
        workflow_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<TenantStatus>>> {
        Box::pin(Saga::status(self, workflow_id))
    }

    fn healthy(&self) -> BoxFuture<'_, bool> {
        Box::pin(Saga::healthy(self))
    }
}
