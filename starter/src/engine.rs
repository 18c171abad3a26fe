//! How the API calls the saga on Temporal: every call is bounded by a deadline, so an outage
//! turns into a prompt 503 rather than a hung request, and a failure's cause is kept for the
//! log, never for a response body.
//!
//! These functions only forward to [`Saga`] and time the call; they must never decide
//! anything about a tenant, or the API would behave differently from the saga it fronts.

use std::future::Future;
use std::time::Duration;

use tenant_domain::{LifecycleRequest, TenantSpec, TenantStatus};

use crate::saga::{ActionOutcome, Saga, WorkflowRun};

/// How long a request waits for Temporal before answering 503. A lifecycle update waits for
/// the worker to run the workflow's validator, so this also bounds a worker outage.
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);

/// A read that the caller can do without (the live status) gives up sooner.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Why Temporal gave no usable answer. For the log: the text may name internal addresses.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no answer from Temporal within {0:?}")]
    TimedOut(Duration),
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = anyhow::Result<T>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(EngineError::Failed(err)),
        Err(_) => Err(EngineError::TimedOut(limit)),
    }
}

/// Starts the tenant's workflow, or finds the run serving this incarnation; its run id.
pub async fn start(saga: &Saga, spec: &TenantSpec) -> Result<String, EngineError> {
    bounded(ENGINE_TIMEOUT, saga.start(spec)).await
}

/// The workflow's own view of the tenant; `None` when no workflow has the id.
pub async fn status(saga: &Saga, workflow_id: &str) -> Result<Option<TenantStatus>, EngineError> {
    bounded(STATUS_TIMEOUT, saga.status(workflow_id)).await
}

/// Sends a lifecycle action as an update and returns whether the workflow accepted it.
pub async fn lifecycle(
    saga: &Saga,
    workflow_id: &str,
    request: LifecycleRequest,
) -> Result<ActionOutcome, EngineError> {
    bounded(ENGINE_TIMEOUT, saga.request_lifecycle(workflow_id, request)).await
}

/// Whether the workflow's latest run is open, closed or unknown.
pub async fn run(saga: &Saga, workflow_id: &str) -> Result<WorkflowRun, EngineError> {
    bounded(STATUS_TIMEOUT, saga.run(workflow_id)).await
}
