//! The starter's view of the saga on Temporal: start a tenant's workflow, ask its status,
//! send lifecycle actions. Never allocates anything itself.

use anyhow::Context;
use temporalio_client::{
    Client, ClientOptions, Connection, WorkflowCountOptions, WorkflowExecuteUpdateOptions,
    WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowStartOptions,
    envconfig::LoadClientConfigProfileOptions, errors::WorkflowQueryError,
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
        let connection = Connection::connect(conn_opts).await.context("connecting to Temporal")?;
        let client = Client::new(connection, client_opts)?;
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
        let handle = self.client.get_workflow_handle::<ProvisionTenant>(workflow_id);
        match handle.query(ProvisionTenant::status, (), WorkflowQueryOptions::default()).await {
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
        let handle = self.client.get_workflow_handle::<ProvisionTenant>(workflow_id);
        match handle
            .execute_update(
                ProvisionTenant::request_lifecycle,
                request,
                WorkflowExecuteUpdateOptions::default(),
            )
            .await
        {
            Ok(answer) => Ok(ActionOutcome::Accepted(answer)),
            Err(WorkflowUpdateError::Failed(failure)) => Ok(ActionOutcome::Refused(failure.message.clone())),
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
}
