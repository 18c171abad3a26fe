//! The saga's activities as Temporal sees them.
//!
//! Each activity wraps one module call, records its progress in the audit feed (keyed so a
//! retried attempt writes each entry once), keeps the resource ledger, and turns a
//! [`StepError`] into a retryable or non-retryable Temporal failure whose type is the
//! error's kind. Activity names are explicit so other tools can call them.

use std::{future::Future, sync::Arc, time::Duration};

use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tenant_domain::{
    Allocation, EmailInput, EmailOutcome, Phase, PhaseFailure, PhaseInput, RecordInput,
    ReleaseInput, ResourceKind, TenantSpec, TenantState, validate,
};
use tenant_store::access::Plan;
use tenant_store::{NewEvent, Store};
use tracing::{Instrument, info, info_span, warn};

use crate::workload::{Deployed, SettingsChange, WorkloadSizing};
use crate::{
    ActivitiesConfig, StepError, StepResult, email::Mailer, identity::Identity, storage::Storage,
    traffic::Edge, verify::Verifier, workload::Workloads,
};

/// Error types that no retry can fix; retry policies list them as non-retryable.
pub const PERMANENT_ERROR_TYPES: &[&str] = &[
    "ValidationFailed",
    "SlotTaken",
    "NotAuthorized",
    "NameTaken",
    "RouteTaken",
    "UnknownPlan",
    "StoragePermissionDenied",
    "RouteMissing",
    "TenantMissing",
    "StaleIncarnation",
    "InvalidRecipient",
    "VerificationFailed",
    "RealmMissing",
    "InvitationMissing",
    "QuotaExceeded",
    "ForeignResource",
];

/// Everything the activities drive, shared by all of them.
pub struct TenantActivities {
    cfg: Arc<ActivitiesConfig>,
    store: Store,
    storage: Storage,
    identity: Identity,
    edge: Edge,
    workloads: Workloads,
    mailer: Mailer,
    verifier: Verifier,
}

impl TenantActivities {
    pub async fn new(cfg: Arc<ActivitiesConfig>, store: Store) -> anyhow::Result<Self> {
        Ok(Self {
            storage: Storage::new(cfg.clone(), store.clone()).await?,
            identity: Identity::new(cfg.clone(), store.clone()),
            edge: Edge::new(cfg.clone()),
            workloads: Workloads::new(cfg.clone()),
            mailer: Mailer::new(cfg.clone(), store.clone())?,
            verifier: Verifier::new(cfg.clone(), store.clone()),
            cfg,
            store,
        })
    }

    pub fn edge(&self) -> &Edge {
        &self.edge
    }

    /// Runs one attempt of a phase with its audit entries: started, then completed or
    /// failed (with the attempt and the real reason).
    async fn phase<T, F>(
        &self,
        ctx: &ActivityContext,
        input: &PhaseInput,
        phase: Phase,
        step: F,
    ) -> Result<T, ActivityError>
    where
        F: Future<Output = StepResult<T>>,
    {
        let attempt = ctx.info().attempt;
        let spec = &input.tenant;
        let span = info_span!("phase", tenant = %spec.names.workflow_id, phase = %phase, attempt);
        async {
            let key = |what: &str| format!("r{}:{phase}:{what}", input.round);
            self.audit(ctx, spec, &key(&format!("started:{attempt}")), "phase_started", Some(phase), Some(attempt), if attempt > 1 {
                    format!(
                        "{phase} started (attempt {attempt}; attempt {} failed or its worker was lost)",
                        attempt - 1
                    )
                } else {
                    format!("{phase} started (attempt {attempt})")
                }, None)
                .await?;

            let outcome = match self.injected_failure(phase) {
                Some(err) => Err(err),
                None => step.await,
            };
            if let (Ok(_), Some((slow, delay))) = (&outcome, &self.cfg.slow_phase)
                && slow == phase.as_str()
            {
                warn!(delay_ms = delay.as_millis() as u64, "slow-phase switch is set: holding before reporting success");
                self.hold(ctx, *delay).await;
            }
            match outcome {
                Ok(value) => {
                    self.audit(ctx, spec, &key("completed"), "phase_completed", Some(phase), Some(attempt), format!("{phase} completed"), None)
                        .await?;
                    info!("phase completed");
                    Ok(value)
                }
                Err(err) => {
                    let detail = serde_json::json!({ "error_type": err.kind(), "reason": err.to_string() });
                    let max = ctx.info().retry_policy.as_ref().map(|p| p.maximum_attempts()).unwrap_or(0);
                    let last = matches!(err, StepError::Permanent { .. }) || (max > 0 && attempt >= max);
                    let next = if last {
                        "giving up: the tenant unwinds what it allocated (compensating, then failed)".to_owned()
                    } else if max > 0 {
                        format!("retrying (attempt {attempt} of {max}); the tenant stays provisioning, next stable state active")
                    } else {
                        "retrying; the tenant stays provisioning, next stable state active".to_owned()
                    };
                    let message = format!("{phase} attempt {attempt} failed: {err}; {next}");
                    warn!(error_type = err.kind(), error = %err, "phase attempt failed");
                    self.audit(ctx, spec, &key(&format!("failed:{attempt}")), "phase_failed", Some(phase), Some(attempt), message, Some(detail))
                        .await?;
                    Err(to_activity_error(err))
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Waits, heartbeating, so the hold does not look like a lost worker.
    async fn hold(&self, ctx: &ActivityContext, delay: Duration) {
        let until = tokio::time::Instant::now() + delay;
        while tokio::time::Instant::now() < until && !ctx.is_cancelled() {
            let _ = ctx.record_heartbeat(()).await;
            tokio::time::sleep(Duration::from_millis(500).min(until - tokio::time::Instant::now()))
                .await;
        }
    }

    /// Hands the realm to the tenant's database, then starts (or adopts) its service with
    /// its plan's sizing as the plan reads now, and waits for readiness, heartbeating
    /// meanwhile so a lost worker is noticed quickly. A running copy started with other
    /// settings is restarted, and the audit feed says so.
    async fn start_workload(
        &self,
        ctx: &ActivityContext,
        spec: &TenantSpec,
    ) -> StepResult<Deployed> {
        let database_url = self.storage.connection_url(spec);
        let deploy = async {
            let plan = self.storage.plan(&spec.request.plan).await?;
            // The service serves its realm from its own database: hand it over first.
            self.identity.install(spec, &database_url).await?;
            self.storage
                .apply_connection_limit(spec, plan.db_connection_limit)
                .await?;
            let sizing = WorkloadSizing::of_plan(&plan);
            let deployed = self
                .workloads
                .deploy_sized(spec, &database_url, &sizing, &|| {})
                .await?;
            if let Some(change) = &deployed.settings_changed {
                self.settings_changed(ctx, spec, &plan, change).await?;
            }
            self.allocated(spec, Ok(deployed.allocation.clone()))
                .await?;
            Ok(deployed)
        };
        let beat = async {
            loop {
                if ctx.is_cancelled() {
                    return;
                }
                // A failed heartbeat only matters if it keeps failing: the timeout says so.
                let _ = ctx.record_heartbeat(()).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        };
        tokio::select! {
            outcome = deploy => outcome,
            () = beat => Err(StepError::Transient(anyhow::anyhow!("deploy cancelled"))),
        }
    }

    /// Records that a running service was restarted because its settings had changed.
    async fn settings_changed(
        &self,
        ctx: &ActivityContext,
        spec: &TenantSpec,
        plan: &Plan,
        change: &SettingsChange,
    ) -> StepResult<()> {
        let info = ctx.info();
        let message = format!(
            "restarting tenant service: settings changed; it now runs with plan {}'s sizing \
             ({} database connections in its pool, {} requests at once)",
            plan.name, plan.workload_db_pool, plan.workload_max_concurrent_requests
        );
        let detail = serde_json::json!({
            "plan": plan.name,
            "db_connection_limit": plan.db_connection_limit,
            "workload_db_pool": plan.workload_db_pool,
            "workload_max_concurrent_requests": plan.workload_max_concurrent_requests,
            "previous_settings_digest": change.previous,
            "settings_digest": change.current,
        });
        let event = NewEvent {
            tenant_id: spec.tenant_id(),
            incarnation: spec.incarnation,
            run_id: run_id(ctx),
            // One entry per attempt of this activity, however often the attempt's write is
            // retried.
            event_key: format!(
                "workload_settings_changed:{}:{}",
                info.activity_id, info.attempt
            ),
            kind: "workload_settings_changed".into(),
            phase: Some(Phase::Deploy.as_str().to_owned()),
            attempt: Some(info.attempt as i32),
            state: None,
            actor: "saga".into(),
            message,
            detail: Some(detail),
        };
        self.store.append_event(&event).await.map_err(|e| {
            StepError::Transient(anyhow::Error::new(e).context("writing the audit feed"))
        })?;
        info!(tenant = %spec.names.workflow_id, "tenant service restarted: settings changed");
        Ok(())
    }

    /// The test-only failure switch: inert unless the worker was started with it.
    fn injected_failure(&self, phase: Phase) -> Option<StepError> {
        let wanted = self.cfg.fail_phase.as_deref()?;
        (wanted == phase.as_str()).then(|| {
            StepError::Transient(anyhow::anyhow!(
                "injected failure in {phase} (TP_FAIL_PHASE is set on the worker)"
            ))
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        ctx: &ActivityContext,
        spec: &TenantSpec,
        event_key: &str,
        kind: &str,
        phase: Option<Phase>,
        attempt: Option<u32>,
        message: String,
        detail: Option<serde_json::Value>,
    ) -> Result<(), ActivityError> {
        let event = NewEvent {
            tenant_id: spec.tenant_id(),
            incarnation: spec.incarnation,
            run_id: run_id(ctx),
            event_key: event_key.to_owned(),
            kind: kind.to_owned(),
            phase: phase.map(|p| p.as_str().to_owned()),
            attempt: attempt.map(|a| a as i32),
            state: None,
            actor: "saga".into(),
            message,
            detail,
        };
        self.store.append_event(&event).await.map_err(|e| {
            to_activity_error(StepError::Transient(
                anyhow::Error::new(e).context("writing the audit feed"),
            ))
        })?;
        Ok(())
    }

    async fn allocated(
        &self,
        spec: &TenantSpec,
        allocation: StepResult<Allocation>,
    ) -> StepResult<Allocation> {
        let allocation = allocation?;
        self.store
            .record_allocation(
                spec.tenant_id(),
                spec.incarnation,
                allocation.kind,
                &allocation.name,
            )
            .await?;
        Ok(allocation)
    }

    /// Releases one kind of resource, retried by its policy until it succeeds.
    async fn release(
        &self,
        ctx: &ActivityContext,
        input: &ReleaseInput,
    ) -> Result<(), ActivityError> {
        let spec = &input.tenant;
        let kind = input.kind;
        let attempt = ctx.info().attempt;
        let span = info_span!("release", tenant = %spec.names.workflow_id, kind = %kind, attempt);
        async {
            let key = |what: &str| format!("r{}:release:{}:{kind}:{what}", input.round, input.reason);
            let outcome = match kind {
                ResourceKind::Storage => self.storage.release(spec).await,
                ResourceKind::Identity => self.identity.release(spec).await,
                ResourceKind::Traffic => self.edge.release(spec).await,
                ResourceKind::Workload => self.workloads.release(spec).await,
            };
            match outcome {
                Ok(()) => {
                    self.store.record_release(spec.tenant_id(), kind).await.map_err(|e| to_activity_error(e.into()))?;
                    if input.reason == "decommission" {
                        self.store.set_release_error(spec.tenant_id(), spec.incarnation, None).await.map_err(|e| to_activity_error(e.into()))?;
                    }
                    let message = format!("{kind} released ({})", input.reason);
                    self.audit(ctx, spec, &key("done"), "resource_released", Some(kind.phase()), Some(attempt), message, None).await?;
                    info!("released");
                    Ok(())
                }
                Err(err) => {
                    warn!(error = %err, "release attempt failed; it will be retried");
                    let (state, stable) = match input.reason.as_str() {
                        "decommission" => ("decommissioning", "decommissioned"),
                        _ => ("compensating", "failed"),
                    };
                    let message = format!(
                        "releasing {kind} failed (attempt {attempt}): {err}; retrying until it succeeds: the tenant stays {state}, next stable state {stable}"
                    );
                    self.audit(ctx, spec, &key(&format!("failed:{attempt}")), "release_failed", Some(kind.phase()), Some(attempt), message.clone(), None)
                        .await?;
                    // A decommission has no other error to show; during compensation the
                    // tenant's last error stays the failure that started it.
                    if input.reason == "decommission" {
                        let failure = PhaseFailure {
                            phase: kind.phase(),
                            error_type: tenant_store::tenants::RELEASE_FAILED.to_owned(),
                            message,
                            attempt,
                        };
                        self.store.set_release_error(spec.tenant_id(), spec.incarnation, Some(&failure)).await.map_err(|e| to_activity_error(e.into()))?;
                    }
                    // Releases never give up: they are always retryable.
                    Err(to_activity_error(StepError::Transient(anyhow::anyhow!("{err}"))))
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Re-checks, at run time, what the API checked at the door: the request is valid, the
    /// slot is still this tenant's, and the requester may still create tenants in the org.
    async fn check_request(&self, spec: &TenantSpec) -> StepResult<()> {
        let plans = self.store.plan_names().await?;
        let plan_refs: Vec<&str> = plans.iter().map(String::as_str).collect();
        let request = tenant_domain::TenantRequest {
            org: spec.request.org.clone(),
            slug: spec.request.slug.clone(),
            plan: spec.request.plan.clone(),
            first_admin_email: spec.request.first_admin_email.clone(),
            name: Some(spec.request.name.clone()),
        };
        if let Err(errors) = validate(&request, &plan_refs) {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(StepError::permanent("ValidationFailed", text.join("; ")));
        }
        let problems = spec.names.limit_violations();
        if !problems.is_empty() {
            return Err(StepError::permanent(
                "ValidationFailed",
                problems.join("; "),
            ));
        }

        let holder: Option<(uuid::Uuid, String, String)> = sqlx::query_as(
            "SELECT id, org_slug, slug FROM tenants WHERE label = $1 AND state <> 'decommissioned' AND id <> $2",
        )
        .bind(&spec.names.label)
        .bind(spec.tenant_id())
        .fetch_optional(self.store.pool())
        .await?;
        if holder.is_some() {
            return Err(StepError::permanent(
                "SlotTaken",
                format!(
                    "host name label {} is held by another tenant",
                    spec.names.label
                ),
            ));
        }

        // The quota, again: the plan or the organisation's tenants may have changed since
        // the request was accepted. This tenant's own row is not counted.
        let (others, max): (i64, Option<i32>) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM tenants
                     WHERE org_slug = $1 AND plan = $3 AND state <> 'decommissioned' AND id <> $2),
                    (SELECT max_tenants_per_org FROM plans WHERE name = $3)",
        )
        .bind(&spec.request.org)
        .bind(spec.tenant_id())
        .bind(&spec.request.plan)
        .fetch_one(self.store.pool())
        .await?;
        if max.is_some_and(|max| others >= i64::from(max)) {
            return Err(StepError::permanent(
                "QuotaExceeded",
                format!(
                    "organisation {} already has {others} other tenants on plan {}, the most that plan allows per organisation",
                    spec.request.org, spec.request.plan
                ),
            ));
        }

        let allowed: Option<bool> = sqlx::query_scalar(
            "SELECT p.platform_operator OR EXISTS (
                 SELECT 1 FROM memberships m JOIN organizations o ON o.id = m.org_id
                 WHERE m.principal_id = p.id AND o.slug = $2 AND m.role IN ('owner', 'admin'))
             FROM principals p WHERE p.name = $1",
        )
        .bind(&spec.requested_by)
        .bind(&spec.request.org)
        .fetch_optional(self.store.pool())
        .await?;
        if allowed != Some(true) {
            return Err(StepError::permanent(
                "NotAuthorized",
                format!(
                    "{} may not create tenants in organisation {}",
                    spec.requested_by, spec.request.org
                ),
            ));
        }
        Ok(())
    }
}

#[activities]
impl TenantActivities {
    /// Writes the tenant's state and phase with the audit entry that explains the change.
    #[activity(name = "record_state")]
    pub async fn record_state(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: RecordInput,
    ) -> Result<(), ActivityError> {
        let spec = &input.tenant;
        let event = NewEvent {
            tenant_id: spec.tenant_id(),
            incarnation: spec.incarnation,
            run_id: run_id(&ctx),
            event_key: input.event_key.clone(),
            kind: input.kind.clone(),
            phase: input.phase.map(|p| p.as_str().to_owned()),
            attempt: input.last_error.as_ref().map(|e| e.attempt as i32),
            state: Some(input.state.as_str().to_owned()),
            actor: input.actor.clone(),
            message: input.message.clone(),
            detail: input
                .last_error
                .as_ref()
                .map(|e| serde_json::to_value(e).unwrap_or_default()),
        };
        self.store
            .record_state(
                spec.incarnation,
                input.state,
                input.phase,
                input.last_error.as_ref(),
                &event,
            )
            .await
            .map_err(|e| to_activity_error(e.into()))?;
        if matches!(
            input.state,
            TenantState::Active
                | TenantState::Failed
                | TenantState::Decommissioned
                | TenantState::Suspended
        ) {
            info!(tenant = %spec.names.workflow_id, state = %input.state, "tenant state changed");
        }
        Ok(())
    }

    #[activity(name = "validate")]
    pub async fn validate(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<(), ActivityError> {
        self.phase(
            &ctx,
            &input,
            Phase::Validate,
            self.check_request(&input.tenant),
        )
        .await
    }

    #[activity(name = "allocate_storage")]
    pub async fn allocate_storage(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<Allocation, ActivityError> {
        let spec = &input.tenant;
        self.phase(&ctx, &input, Phase::AllocateStorage, async {
            self.allocated(spec, self.storage.allocate(spec).await)
                .await
        })
        .await
    }

    #[activity(name = "allocate_identity")]
    pub async fn allocate_identity(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<Allocation, ActivityError> {
        let spec = &input.tenant;
        self.phase(&ctx, &input, Phase::AllocateIdentity, async {
            self.allocated(spec, self.identity.allocate(spec).await)
                .await
        })
        .await
    }

    #[activity(name = "allocate_traffic")]
    pub async fn allocate_traffic(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<Allocation, ActivityError> {
        let spec = &input.tenant;
        self.phase(&ctx, &input, Phase::AllocateTraffic, async {
            self.allocated(spec, self.edge.allocate(spec).await).await
        })
        .await
    }

    /// Starts the tenant's service and waits for its readiness, heartbeating meanwhile so a
    /// lost worker is noticed within the heartbeat timeout.
    #[activity(name = "deploy_workload")]
    pub async fn deploy_workload(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<Allocation, ActivityError> {
        let spec = &input.tenant;
        self.phase(&ctx, &input, Phase::Deploy, async {
            self.start_workload(&ctx, spec)
                .await
                .map(|deployed| deployed.allocation)
        })
        .await
    }

    /// Brings an active or suspended tenant's service back if it is not running (after a
    /// host restart, say); adopts it when it runs with the current settings and restarts it
    /// when not. The workflow writes the audit entry when the service had to be started;
    /// this activity writes the one for a restart with changed settings.
    #[activity(name = "ensure_workload")]
    pub async fn ensure_workload(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<Allocation, ActivityError> {
        let deployed = self
            .start_workload(&ctx, &input.tenant)
            .await
            .map_err(to_activity_error)?;
        let mut allocation = deployed.allocation;
        // The workflow reads a fresh start as "the service was not running", which a restart
        // for changed settings is not; its own audit entry is already written.
        if deployed.settings_changed.is_some() {
            allocation.adopted = true;
        }
        Ok(allocation)
    }

    /// Checks from outside that the host serves this tenant, before the public may reach it.
    #[activity(name = "verify")]
    pub async fn verify(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<(), ActivityError> {
        self.phase(
            &ctx,
            &input,
            Phase::Verify,
            self.verifier.verify(&input.tenant),
        )
        .await
    }

    /// Lets public traffic reach the tenant.
    #[activity(name = "mark_active")]
    pub async fn mark_active(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<(), ActivityError> {
        self.phase(
            &ctx,
            &input,
            Phase::MarkActive,
            self.edge.open_public(&input.tenant),
        )
        .await
    }

    /// Sends one welcome email. A refusal is an outcome; only transient failures are errors.
    #[activity(name = "send_email")]
    pub async fn send_email(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: EmailInput,
    ) -> Result<EmailOutcome, ActivityError> {
        let spec = &input.tenant;
        let code = self.identity.invitation_code(spec);
        match self.mailer.send(spec, input.kind, &code).await {
            Ok(outcome) => Ok(outcome),
            Err(err) => {
                warn!(tenant = %spec.names.workflow_id, email = input.kind.as_str(), attempt = ctx.info().attempt, error = %err, "email attempt failed");
                Err(to_activity_error(err))
            }
        }
    }

    /// A new invitation for the first admin (the old code stops working), sent by email.
    #[activity(name = "reissue_invitation")]
    pub async fn reissue_invitation(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<EmailOutcome, ActivityError> {
        let spec = &input.tenant;
        let database_url = self.storage.connection_url(spec);
        let code = self
            .identity
            .reissue_invitation(spec, &database_url)
            .await
            .map_err(to_activity_error)?;
        self.mailer
            .resend(spec, tenant_domain::EmailKind::Welcome, &code)
            .await
            .map_err(to_activity_error)
    }

    /// Sends one welcome email again, with the current invitation.
    #[activity(name = "resend_email")]
    pub async fn resend_email(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: EmailInput,
    ) -> Result<EmailOutcome, ActivityError> {
        let spec = &input.tenant;
        let code = self
            .identity
            .current_invitation_code(spec)
            .await
            .map_err(to_activity_error)?;
        self.mailer
            .resend(spec, input.kind, &code)
            .await
            .map_err(to_activity_error)
    }

    #[activity(name = "release_resource")]
    pub async fn release_resource(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ReleaseInput,
    ) -> Result<(), ActivityError> {
        self.release(&ctx, &input).await
    }

    /// Suspend: nobody signs in (the flag in the tenant's database), then the public route
    /// answers 503 again.
    #[activity(name = "close_public_traffic")]
    pub async fn close_public_traffic(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<(), ActivityError> {
        let spec = &input.tenant;
        let database_url = self.storage.connection_url(spec);
        self.workloads
            .set_suspended(spec, &database_url, true)
            .await
            .map_err(to_activity_error)?;
        self.edge
            .close_public(spec)
            .await
            .map_err(to_activity_error)
    }

    /// Resume: sign-in works again, then public traffic flows again.
    #[activity(name = "open_public_traffic")]
    pub async fn open_public_traffic(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PhaseInput,
    ) -> Result<(), ActivityError> {
        let spec = &input.tenant;
        let database_url = self.storage.connection_url(spec);
        self.workloads
            .set_suspended(spec, &database_url, false)
            .await
            .map_err(to_activity_error)?;
        self.edge.open_public(spec).await.map_err(to_activity_error)
    }
}

fn run_id(ctx: &ActivityContext) -> String {
    ctx.info().workflow_run_id.clone().unwrap_or_default()
}

/// A Temporal failure carrying the real message and a stable type.
pub fn to_activity_error(err: StepError) -> ActivityError {
    let kind = err.kind();
    let permanent = matches!(err, StepError::Permanent { .. });
    let failure = ApplicationFailure::builder(err.to_string())
        .type_name(kind.to_owned())
        .non_retryable(permanent)
        .build();
    ActivityError::application(failure)
}

/// How long a heartbeat may be missing before Temporal retries the deploy elsewhere.
pub const DEPLOY_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);
