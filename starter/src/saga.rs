//! The starter's view of the saga on Temporal: start a tenant's workflow, ask its status,
//! send lifecycle actions. Never allocates anything itself.

use anyhow::Context;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, WorkflowCountOptions,
    WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy,
    WorkflowQueryOptions, WorkflowStartOptions, envconfig::LoadClientConfigProfileOptions,
    errors::WorkflowQueryError,
};
use temporalio_common::{
    MemoValues,
    search_attributes::{SearchAttributeKey, SearchAttributes},
};
use tenant_domain::{
    LifecycleRequest, TASK_QUEUE, TenantSpec, TenantState, TenantStatus, search_attributes as sa,
};
use tenant_workflows::ProvisionTenant;

/// A connection to Temporal for the API.
#[derive(Clone)]
pub struct Saga {
    client: Client,
}

/// What a lifecycle request came to.
#[derive(Debug)]
pub enum ActionOutcome {
    /// The workflow accepted the action; its answer.
    Accepted(String),
    /// The workflow's validator refused it; why.
    Refused(String),
}

impl Saga {
    /// Connects using Temporal's environment config (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`).
    pub async fn connect_from_env() -> anyhow::Result<Self> {
        let (conn_opts, client_opts) =
            ClientOptions::load_from_config(LoadClientConfigProfileOptions::default())
                .map_err(|e| anyhow::anyhow!("reading Temporal client settings: {e}"))?;
        let connection = Connection::connect(conn_opts)
            .await
            .context("connecting to Temporal")?;
        let client = Client::new(connection, client_opts)?;
        Ok(Self { client })
    }

    /// Connects to the Temporal frontend at `address` (`host:port`, plain gRPC) and uses
    /// `namespace`; for callers that must not depend on the process environment, such as
    /// tests that each run their own Temporal.
    pub async fn connect(address: &str, namespace: &str) -> anyhow::Result<Self> {
        let target = temporalio_client::Url::parse(&format!("http://{address}"))
            .with_context(|| format!("{address:?} is not a Temporal address (host:port)"))?;
        let connection = Connection::connect(ConnectionOptions::new(target).build())
            .await
            .context("connecting to Temporal")?;
        let client = Client::new(connection, ClientOptions::new(namespace).build())?;
        Ok(Self { client })
    }

    /// Starts the tenant's workflow, or returns the run already serving this incarnation:
    /// a running workflow with the id is used as it is; a closed one (the tenant was
    /// decommissioned) is followed by a new run. Returns the run id.
    pub async fn start(&self, spec: &TenantSpec) -> anyhow::Result<String> {
        let mut memo = MemoValues::new();
        memo.insert("request", spec.request.clone());
        memo.insert("incarnation", spec.incarnation);
        memo.insert("requested_by", spec.requested_by.clone());
        let search_attributes = SearchAttributes::new([
            SearchAttributeKey::<String>::keyword(sa::ORG).value_set(spec.request.org.clone()),
            SearchAttributeKey::<String>::keyword(sa::SLUG).value_set(spec.request.slug.clone()),
            SearchAttributeKey::<String>::keyword(sa::STATE)
                .value_set(TenantState::Provisioning.as_str().to_owned()),
            SearchAttributeKey::<String>::keyword(sa::PHASE).value_set(String::new()),
        ]);
        let options = WorkflowStartOptions::new(TASK_QUEUE, spec.names.workflow_id.clone())
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicate)
            .memo(memo)
            .search_attributes(search_attributes)
            .static_summary(format!(
                "tenant {}/{} at {} (incarnation {})",
                spec.request.org, spec.request.slug, spec.names.host, spec.incarnation
            ))
            .build();
        let handle = self
            .client
            .start_workflow(ProvisionTenant::run, spec.clone(), options)
            .await
            .context("starting the tenant's workflow")?;
        Ok(handle.run_id().unwrap_or_default().to_owned())
    }

    /// The workflow's `status` query; `None` when no workflow exists for the id.
    pub async fn status(&self, workflow_id: &str) -> anyhow::Result<Option<TenantStatus>> {
        let handle = self
            .client
            .get_workflow_handle::<ProvisionTenant>(workflow_id);
        match handle
            .query(ProvisionTenant::status, (), WorkflowQueryOptions::default())
            .await
        {
            Ok(status) => Ok(Some(status)),
            Err(WorkflowQueryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e).context("querying the tenant's workflow"),
        }
    }

    /// Sends a lifecycle action as an update, so the caller learns whether it was accepted.
    pub async fn request_lifecycle(
        &self,
        workflow_id: &str,
        request: LifecycleRequest,
    ) -> anyhow::Result<ActionOutcome> {
        use temporalio_client::errors::WorkflowUpdateError;
        let handle = self
            .client
            .get_workflow_handle::<ProvisionTenant>(workflow_id);
        match handle
            .execute_update(
                ProvisionTenant::request_lifecycle,
                request,
                WorkflowExecuteUpdateOptions::default(),
            )
            .await
        {
            Ok(answer) => Ok(ActionOutcome::Accepted(answer)),
            Err(WorkflowUpdateError::Failed(failure)) => {
                Ok(ActionOutcome::Refused(failure.message.clone()))
            }
            Err(e) => Err(e).context("sending the lifecycle action to the tenant's workflow"),
        }
    }

    /// True when Temporal answers.
    pub async fn healthy(&self) -> bool {
        self.client
            .count_workflows(
                format!("WorkflowType = '{}'", tenant_domain::WORKFLOW_TYPE),
                WorkflowCountOptions::default(),
            )
            .await
            .is_ok()
    }

    /// Whether the latest run of the workflow is still open, so a caller can tell a
    /// workflow that cannot take an action (closed, or unknown to Temporal) from an outage.
    pub async fn run(&self, workflow_id: &str) -> anyhow::Result<WorkflowRun> {
        use temporalio_client::{
            WorkflowDescribeOptions, WorkflowExecutionStatus, errors::WorkflowInteractionError,
        };
        let handle = self
            .client
            .get_workflow_handle::<ProvisionTenant>(workflow_id);
        match handle.describe(WorkflowDescribeOptions::default()).await {
            Ok(description) => {
                let run_id = description.run_id().to_owned();
                Ok(match description.status() {
                    WorkflowExecutionStatus::Running | WorkflowExecutionStatus::Paused => {
                        WorkflowRun::Open { run_id }
                    }
                    status => WorkflowRun::Closed {
                        run_id,
                        status: format!("{status:?}").to_lowercase(),
                    },
                })
            }
            Err(WorkflowInteractionError::NotFound(_)) => Ok(WorkflowRun::Missing),
            Err(e) => Err(e).context("describing the tenant's workflow"),
        }
    }
}

/// The latest run of a tenant's workflow, as [`Saga::run`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkflowRun {
    /// Running (or paused): it takes lifecycle actions.
    Open { run_id: String },
    /// Completed, failed, cancelled, terminated or timed out; `status` says which.
    Closed { run_id: String, status: String },
    /// Temporal knows no workflow with the id (never started, or its history expired).
    Missing,
}
