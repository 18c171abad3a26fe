//! The `ProvisionTenant` workflow: one saga per tenant key, from request to `active`, and
//! the tenant's lifecycle after that.
//!
//! Deterministic code only: no I/O, clock, randomness or tokio here — everything that
//! touches the world is an activity of `tenant_activities::temporal`. The workflow keeps a
//! compensation stack (each allocation is pushed *before* it runs, so a half-run step is
//! undone too), unwinds it newest first on a cancellation token detached from the
//! workflow's, and accepts lifecycle actions as updates (validated) or signals.

use std::{collections::VecDeque, time::Duration};

use temporalio_common::{
    ActivityDefinition, RetryPolicy,
    data_converters::RawValue,
    error::{ActivityExecutionError, IncomingError},
    protos::{ENCODING_PAYLOAD_KEY, JSON_ENCODING_VAL},
    search_attributes::SearchAttributeKey,
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityCancellationType, ActivityOptions, SyncWorkflowContext, WorkflowCancellationToken,
    WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination,
};
use tenant_activities::temporal::{
    DEPLOY_HEARTBEAT_TIMEOUT, PERMANENT_ERROR_TYPES, TenantActivities,
};
use tenant_domain::{
    EmailInput, EmailKind, EmailOutcome, LifecycleAction, LifecycleRequest, Phase, PhaseFailure,
    PhaseInput, RecordInput, ReleaseInput, ResourceKind, ResourceStatus, TenantSpec, TenantState,
    TenantStatus, search_attributes as sa,
};

const ORG_KEY: SearchAttributeKey<String> = SearchAttributeKey::keyword(sa::ORG);
const SLUG_KEY: SearchAttributeKey<String> = SearchAttributeKey::keyword(sa::SLUG);
const STATE_KEY: SearchAttributeKey<String> = SearchAttributeKey::keyword(sa::STATE);
const PHASE_KEY: SearchAttributeKey<String> = SearchAttributeKey::keyword(sa::PHASE);

/// Why provisioning stopped before `active`.
enum Interrupted {
    /// A phase failed after its retries.
    Failed(PhaseFailure),
    /// The workflow was cancelled (e.g. from the Temporal CLI or Web UI).
    Cancelled(PhaseFailure),
    /// An operator asked to decommission while provisioning.
    Decommission(LifecycleRequest),
}

#[workflow]
pub struct ProvisionTenant {
    spec: Option<TenantSpec>,
    state: TenantState,
    phase: Option<Phase>,
    /// Provisioning rounds in this run: 1, then +1 per `retry`.
    round: u32,
    /// The compensation stack: every resource this run may hold, in allocation order.
    resources: Vec<ResourceStatus>,
    last_error: Option<PhaseFailure>,
    emails: Vec<EmailOutcome>,
    /// Accepted lifecycle actions not yet carried out.
    pending: VecDeque<LifecycleRequest>,
    /// Signals refused (unreadable, or not fitting the tenant's state), to be written to
    /// the audit feed.
    refused_signals: VecDeque<RefusedSignal>,
    /// Numbers workflow-level audit entries, so a retried write lands once.
    event_seq: u32,
    /// A worker asked that the tenant's service be brought back if it is not running.
    ensure_running: bool,
}

impl Default for ProvisionTenant {
    fn default() -> Self {
        Self {
            spec: None,
            state: TenantState::Provisioning,
            phase: None,
            round: 0,
            resources: Vec::new(),
            last_error: None,
            emails: Vec::new(),
            pending: VecDeque::new(),
            refused_signals: VecDeque::new(),
            event_seq: 0,
            ensure_running: false,
        }
    }
}

#[workflow_methods]
impl ProvisionTenant {
    #[run(name = "ProvisionTenant")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        spec: TenantSpec,
    ) -> WorkflowResult<TenantStatus> {
        ctx.state_mut(|s| s.spec = Some(spec.clone()));
        ctx.upsert_search_attributes([
            ORG_KEY.value_set(spec.request.org.clone()),
            SLUG_KEY.value_set(spec.request.slug.clone()),
        ]);

        loop {
            let round = ctx.state_mut(|s| {
                s.round += 1;
                s.round
            });
            let actor = if round == 1 {
                spec.requested_by.clone()
            } else {
                "saga".to_owned()
            };
            Self::transition(
                ctx,
                &spec,
                TenantState::Provisioning,
                None,
                "provisioning_started",
                format!("provisioning round {round} started"),
                &actor,
            )
            .await;

            match Self::provision(ctx, &spec, round).await {
                Ok(()) => {
                    Self::transition(
                        ctx,
                        &spec,
                        TenantState::Active,
                        None,
                        "state_changed",
                        "tenant is active: public traffic is served".into(),
                        "saga",
                    )
                    .await;
                    Self::send_welcome_emails(ctx, &spec, round).await;
                }
                Err(Interrupted::Decommission(request)) => {
                    Self::decommission(ctx, &spec, round, &request.actor).await;
                    return Ok(ctx.state(Self::snapshot));
                }
                Err(Interrupted::Failed(failure)) => {
                    Self::unwind(ctx, &spec, round, failure).await;
                }
                Err(Interrupted::Cancelled(failure)) => {
                    Self::unwind(ctx, &spec, round, failure).await;
                    return Err(WorkflowTermination::cancelled());
                }
            }

            // Stable state: wait for lifecycle actions until one asks for a new round.
            loop {
                let request = next_action(ctx).await;
                let Some(request) = request else {
                    // Cancelled while stable. Releasing would destroy a live tenant's data on
                    // one click, so the tenant is left as it is; an identical create request
                    // starts a new run, which adopts everything and resumes managing it.
                    let state = ctx.state(|s| s.state);
                    let message = format!(
                        "workflow cancelled while {state}; the tenant was left as it is (repeat the create request to resume managing it)"
                    );
                    Self::record_event(ctx, &spec, "workflow_cancelled", message, "temporal").await;
                    return Err(WorkflowTermination::cancelled());
                };
                match request.action {
                    LifecycleAction::Suspend => {
                        Self::lifecycle_step(
                            ctx,
                            &spec,
                            round,
                            TenantActivities::close_public_traffic,
                            "close public traffic",
                        )
                        .await;
                        Self::transition(
                            ctx,
                            &spec,
                            TenantState::Suspended,
                            None,
                            "suspended",
                            "tenant suspended: public traffic refused".into(),
                            &request.actor,
                        )
                        .await;
                    }
                    LifecycleAction::Resume => {
                        Self::lifecycle_step(
                            ctx,
                            &spec,
                            round,
                            TenantActivities::open_public_traffic,
                            "open public traffic",
                        )
                        .await;
                        Self::transition(
                            ctx,
                            &spec,
                            TenantState::Active,
                            None,
                            "resumed",
                            "tenant resumed: public traffic served".into(),
                            &request.actor,
                        )
                        .await;
                    }
                    LifecycleAction::Decommission => {
                        Self::decommission(ctx, &spec, round, &request.actor).await;
                        return Ok(ctx.state(Self::snapshot));
                    }
                    LifecycleAction::ReissueInvitation | LifecycleAction::ResendEmail => {
                        Self::email_action(ctx, &spec, round, &request).await;
                    }
                    LifecycleAction::Retry => {
                        Self::record_event(
                            ctx,
                            &spec,
                            "retry_requested",
                            format!("retry requested by {}", request.actor),
                            &request.actor,
                        )
                        .await;
                        break;
                    }
                }
            }
        }
    }

    /// The tenant as the workflow sees it.
    #[query]
    pub fn status(&self, _ctx: &WorkflowContextView) -> TenantStatus {
        self.snapshot()
    }

    #[update_validator(request_lifecycle)]
    fn validate_lifecycle(
        &self,
        _ctx: &WorkflowContextView,
        request: &LifecycleRequest,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.refusal(request).map_or(Ok(()), |why| Err(why.into()))
    }

    /// A lifecycle action with an answer: refused by the validator in the wrong state,
    /// otherwise queued and carried out by the main loop.
    #[update]
    pub fn request_lifecycle(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        request: LifecycleRequest,
    ) -> String {
        let answer = format!(
            "{} accepted from state {}",
            request.action.as_str(),
            self.state
        );
        self.pending.push_back(request);
        answer
    }

    /// Sent by a worker at start-up for every active or suspended tenant: brings the
    /// tenant's service back if the host lost it. Harmless when it runs.
    #[signal(name = "ensure_running")]
    pub fn ensure_running_signal(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        // Whatever was sent along is ignored; a typed input that failed to decode would
        // fail every workflow task from then on.
        _input: RawValue,
    ) {
        if matches!(self.state, TenantState::Active | TenantState::Suspended) {
            self.ensure_running = true;
        }
    }

    /// The same actions as a signal, for the Web UI and the Temporal CLI. A signal cannot be
    /// refused, so one that does not fit the state, or whose input is not a lifecycle
    /// request at all, is recorded in the audit feed and ignored. The input is read here
    /// rather than by the SDK: a typed input that failed to decode would fail every workflow
    /// task from then on (the signal stays in the history), and no action could reach the
    /// tenant again.
    #[signal(name = "lifecycle")]
    pub fn lifecycle_signal(&mut self, _ctx: &mut SyncWorkflowContext<Self>, input: RawValue) {
        let request = match read_lifecycle_request(&input) {
            Ok(request) => request,
            Err(why) => {
                self.refused_signals.push_back(RefusedSignal {
                    action: "unreadable lifecycle".into(),
                    actor: "unknown".into(),
                    why,
                });
                return;
            }
        };
        match self.refusal(&request) {
            None => self.pending.push_back(request),
            Some(why) => self.refused_signals.push_back(RefusedSignal {
                action: request.action.as_str().to_owned(),
                actor: request.actor,
                why,
            }),
        }
    }
}

/// A lifecycle signal the workflow did not carry out, for the audit feed.
struct RefusedSignal {
    /// The action asked for, or what the signal was when it could not be read.
    action: String,
    actor: String,
    why: String,
}

/// Longest serde message quoted back in the audit feed: it may echo part of the input.
const MAX_SIGNAL_ERROR: usize = 200;

/// Reads a `lifecycle` signal's input: one JSON payload holding a [`LifecycleRequest`].
fn read_lifecycle_request(input: &RawValue) -> Result<LifecycleRequest, String> {
    const EXAMPLE: &str = r#"send JSON like {"action": "suspend", "actor": "<your name>"}"#;
    let Some(payload) = input.payloads.first().filter(|p| !p.data.is_empty()) else {
        return Err(format!("the signal carried no input; {EXAMPLE}"));
    };
    let encoding = payload
        .metadata
        .get(ENCODING_PAYLOAD_KEY)
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .unwrap_or_default();
    if encoding != JSON_ENCODING_VAL {
        return Err(format!(
            "its input is encoded as {encoding:?}, not JSON; {EXAMPLE}"
        ));
    }
    serde_json::from_slice::<LifecycleRequest>(&payload.data).map_err(|e| {
        let mut reason = e.to_string();
        if reason.len() > MAX_SIGNAL_ERROR {
            let mut cut = MAX_SIGNAL_ERROR;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            reason.push('…');
        }
        format!("its input is not a lifecycle request ({reason}); {EXAMPLE}")
    })
}

/// Waits for the next lifecycle action; `None` when the workflow is cancelled.
async fn next_action(ctx: &mut WorkflowContext<ProvisionTenant>) -> Option<LifecycleRequest> {
    loop {
        if ctx
            .wait_condition(|s| {
                !s.pending.is_empty() || !s.refused_signals.is_empty() || s.ensure_running
            })
            .await
            .is_err()
        {
            return None;
        }
        if ctx.state_mut(|s| std::mem::take(&mut s.ensure_running)) {
            let spec = ctx
                .state(|s| s.spec.clone())
                .expect("spec is set before any wait");
            ProvisionTenant::ensure_workload(ctx, &spec).await;
            continue;
        }
        if let Some(refused) = ctx.state_mut(|s| s.refused_signals.pop_front()) {
            let spec = ctx
                .state(|s| s.spec.clone())
                .expect("spec is set before any wait");
            ProvisionTenant::record_event(
                ctx,
                &spec,
                "action_refused",
                format!(
                    "{} signal from {} ignored: {}",
                    refused.action, refused.actor, refused.why
                ),
                &refused.actor,
            )
            .await;
            continue;
        }
        return ctx.state_mut(|s| s.pending.pop_front());
    }
}

impl ProvisionTenant {
    fn snapshot(&self) -> TenantStatus {
        let spec = self.spec.as_ref();
        TenantStatus {
            tenant_id: spec.map(|s| s.names.tenant_id).unwrap_or_default(),
            org: spec.map(|s| s.request.org.clone()).unwrap_or_default(),
            slug: spec.map(|s| s.request.slug.clone()).unwrap_or_default(),
            host: spec.map(|s| s.names.host.clone()).unwrap_or_default(),
            incarnation: spec.map(|s| s.incarnation).unwrap_or_default(),
            state: self.state,
            phase: self.phase,
            next_stable_state: self.state.next_stable(),
            resources: self.resources.clone(),
            last_error: self.last_error.clone(),
            emails: self.emails.clone(),
        }
    }

    /// Why `request` cannot run now, if it cannot. Actions queue one at a time.
    fn refusal(&self, request: &LifecycleRequest) -> Option<String> {
        if let Some(malformed) = request.shape_error() {
            return Some(malformed);
        }
        if let Some(busy) = self.pending.front() {
            return Some(format!(
                "another action ({}) is in progress; try again when it completes",
                busy.action.as_str()
            ));
        }
        request.action.refusal(self.state)
    }

    /// Allocate, deploy, verify readiness and open the route; `Err` says why it stopped.
    async fn provision(
        ctx: &mut WorkflowContext<Self>,
        spec: &TenantSpec,
        round: u32,
    ) -> Result<(), Interrupted> {
        Self::phase(
            ctx,
            spec,
            round,
            Phase::Validate,
            TenantActivities::validate,
            None,
        )
        .await?;
        Self::phase(
            ctx,
            spec,
            round,
            Phase::AllocateStorage,
            TenantActivities::allocate_storage,
            Some(ResourceKind::Storage),
        )
        .await?;
        Self::phase(
            ctx,
            spec,
            round,
            Phase::AllocateIdentity,
            TenantActivities::allocate_identity,
            Some(ResourceKind::Identity),
        )
        .await?;
        Self::phase(
            ctx,
            spec,
            round,
            Phase::AllocateTraffic,
            TenantActivities::allocate_traffic,
            Some(ResourceKind::Traffic),
        )
        .await?;
        Self::phase(
            ctx,
            spec,
            round,
            Phase::Deploy,
            TenantActivities::deploy_workload,
            Some(ResourceKind::Workload),
        )
        .await?;
        Self::phase(
            ctx,
            spec,
            round,
            Phase::Verify,
            TenantActivities::verify,
            None,
        )
        .await?;
        Self::phase(
            ctx,
            spec,
            round,
            Phase::MarkActive,
            TenantActivities::mark_active,
            None,
        )
        .await?;
        Ok(())
    }

    /// Runs one phase. When it allocates, its release is on the stack before it starts.
    async fn phase<A>(
        ctx: &mut WorkflowContext<Self>,
        spec: &TenantSpec,
        round: u32,
        phase: Phase,
        activity: A,
        allocates: Option<ResourceKind>,
    ) -> Result<(), Interrupted>
    where
        A: ActivityDefinition<Input = PhaseInput>,
    {
        if let Some(request) = ctx.state_mut(|s| take_decommission(&mut s.pending)) {
            return Err(Interrupted::Decommission(request));
        }
        if ctx.cancellation_token().is_cancelled() {
            return Err(Interrupted::Cancelled(cancelled_failure(phase)));
        }
        ctx.state_mut(|s| {
            s.phase = Some(phase);
            if let Some(kind) = allocates
                && !s.resources.iter().any(|r| r.kind == kind)
            {
                s.resources.push(ResourceStatus {
                    kind,
                    name: resource_name(spec, kind),
                    allocated: false,
                });
            }
        });
        ctx.upsert_search_attributes([PHASE_KEY.value_set(phase.as_str().to_owned())]);

        let input = PhaseInput {
            tenant: spec.clone(),
            round,
        };
        let options = phase_options(phase, spec);
        match ctx.execute_activity(activity, input, options).await {
            Ok(_) => {
                if let Some(kind) = allocates {
                    ctx.state_mut(|s| mark(&mut s.resources, kind, true));
                }
                Ok(())
            }
            Err(err) => {
                let failure = describe_failure(phase, &err);
                if matches!(err, ActivityExecutionError::Cancelled(_))
                    || ctx.cancellation_token().is_cancelled()
                {
                    Err(Interrupted::Cancelled(failure))
                } else {
                    Err(Interrupted::Failed(failure))
                }
            }
        }
    }

    /// Compensates a failed round: `compensating` until every release succeeded, then `failed`.
    async fn unwind(
        ctx: &mut WorkflowContext<Self>,
        spec: &TenantSpec,
        round: u32,
        failure: PhaseFailure,
    ) {
        ctx.state_mut(|s| s.last_error = Some(failure.clone()));
        let message = format!(
            "{} failed: {} ({}); releasing what was allocated",
            failure.phase, failure.message, failure.error_type
        );
        Self::transition(
            ctx,
            spec,
            TenantState::Compensating,
            Some(failure.phase),
            "compensation_started",
            message,
            "saga",
        )
        .await;
        Self::release_all(ctx, spec, round, "compensation").await;
        let message = format!(
            "provisioning failed in {}; everything allocated was released",
            failure.phase
        );
        Self::transition(
            ctx,
            spec,
            TenantState::Failed,
            Some(failure.phase),
            "state_changed",
            message,
            "saga",
        )
        .await;
    }

    async fn decommission(
        ctx: &mut WorkflowContext<Self>,
        spec: &TenantSpec,
        round: u32,
        actor: &str,
    ) {
        Self::transition(
            ctx,
            spec,
            TenantState::Decommissioning,
            None,
            "decommission_started",
            format!("decommission requested by {actor}"),
            actor,
        )
        .await;
        Self::release_all(ctx, spec, round, "decommission").await;
        Self::transition(
            ctx,
            spec,
            TenantState::Decommissioned,
            None,
            "state_changed",
            "tenant decommissioned: everything released, slot freed".into(),
            actor,
        )
        .await;
    }

    /// Releases the stack newest first. Each release retries until it succeeds, so the
    /// tenant stays visibly in `compensating`/`decommissioning` while one keeps failing.
    async fn release_all(
        ctx: &mut WorkflowContext<Self>,
        spec: &TenantSpec,
        round: u32,
        reason: &str,
    ) {
        let stack: Vec<ResourceKind> =
            ctx.state(|s| s.resources.iter().rev().map(|r| r.kind).collect());
        for kind in stack {
            let input = ReleaseInput {
                tenant: spec.clone(),
                kind,
                reason: reason.to_owned(),
                round,
            };
            let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
                .retry_policy(forever())
                .cancellation_token(WorkflowCancellationToken::new())
                .summary(format!("release {kind} of {} ({reason})", spec.names.host))
                .build();
            // With an unlimited retry policy and a detached token this only returns Ok.
            if ctx
                .execute_activity(TenantActivities::release_resource, input, options)
                .await
                .is_ok()
            {
                ctx.state_mut(|s| mark(&mut s.resources, kind, false));
            }
        }
        ctx.state_mut(|s| s.resources.clear());
    }

    /// Best effort: a failed email is recorded, never fails or rolls back the tenant.
    async fn send_welcome_emails(ctx: &mut WorkflowContext<Self>, spec: &TenantSpec, round: u32) {
        for kind in EmailKind::ALL {
            let input = EmailInput {
                tenant: spec.clone(),
                kind,
                round,
            };
            let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                .retry_policy(
                    RetryPolicy::builder()
                        .initial_interval(Duration::from_secs(1))
                        .backoff_coefficient(2.0)
                        .maximum_attempts(4)
                        .build(),
                )
                .summary(format!(
                    "send the {} email to the first admin of {}",
                    kind.as_str(),
                    spec.names.host
                ))
                .build();
            let outcome = match ctx
                .execute_activity(TenantActivities::send_email, input, options)
                .await
            {
                Ok(outcome) => outcome,
                Err(err) => {
                    let failure = describe_failure(Phase::WelcomeEmails, &err);
                    EmailOutcome {
                        kind,
                        delivered: false,
                        message_id: String::new(),
                        error: Some(failure.message),
                    }
                }
            };
            let message = match &outcome.error {
                None => format!("{} email sent to the first admin", kind.as_str()),
                Some(error) => format!("{} email not delivered: {error}", kind.as_str()),
            };
            let event = if outcome.delivered {
                "email_sent"
            } else {
                "email_failed"
            };
            ctx.state_mut(|s| s.emails.push(outcome));
            Self::record_event(ctx, spec, event, message, "saga").await;
        }
        ctx.upsert_search_attributes([PHASE_KEY.value_set(String::new())]);
    }

    /// Starts the tenant's service again when it is not running; records it when it had to.
    async fn ensure_workload(ctx: &mut WorkflowContext<Self>, spec: &TenantSpec) {
        let round = ctx.state(|s| s.round);
        let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(120))
            .heartbeat_timeout(DEPLOY_HEARTBEAT_TIMEOUT)
            .retry_policy(
                RetryPolicy::builder()
                    .initial_interval(Duration::from_secs(1))
                    .backoff_coefficient(2.0)
                    .maximum_interval(Duration::from_secs(30))
                    .maximum_attempts(10)
                    .build(),
            )
            .summary(format!("make sure the service of {} runs", spec.names.host))
            .build();
        let input = PhaseInput {
            tenant: spec.clone(),
            round,
        };
        match ctx
            .execute_activity(TenantActivities::ensure_workload, input, options)
            .await
        {
            Ok(allocation) if allocation.adopted => {}
            Ok(_) => {
                Self::record_event(
                    ctx,
                    spec,
                    "workload_restarted",
                    "the tenant's service was not running and was started again".into(),
                    "saga",
                )
                .await;
            }
            Err(err) => {
                let failure = describe_failure(Phase::Deploy, &err);
                let message = format!(
                    "the tenant's service could not be started again: {}",
                    failure.message
                );
                Self::record_event(ctx, spec, "workload_restart_failed", message, "saga").await;
            }
        }
    }

    /// Re-issues the invitation or resends an email for an operator. Each attempt of a
    /// re-issue makes a new code, so it is tried a few times only; the outcome is recorded.
    async fn email_action(
        ctx: &mut WorkflowContext<Self>,
        spec: &TenantSpec,
        round: u32,
        request: &LifecycleRequest,
    ) {
        let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
            .retry_policy(
                RetryPolicy::builder()
                    .initial_interval(Duration::from_secs(1))
                    .backoff_coefficient(2.0)
                    .maximum_attempts(3)
                    .non_retryable_error_types(PERMANENT_ERROR_TYPES.iter().copied())
                    .build(),
            )
            .summary(format!(
                "{} for {} (asked by {})",
                request.action.as_str(),
                spec.names.host,
                request.actor
            ))
            .build();
        let (what, outcome) = match (request.action, request.email) {
            (LifecycleAction::ResendEmail, Some(kind)) => {
                let input = EmailInput {
                    tenant: spec.clone(),
                    kind,
                    round,
                };
                (
                    format!("{} email resent", kind.as_str()),
                    ctx.execute_activity(TenantActivities::resend_email, input, options)
                        .await,
                )
            }
            _ => {
                let input = PhaseInput {
                    tenant: spec.clone(),
                    round,
                };
                (
                    "invitation re-issued and sent".to_owned(),
                    ctx.execute_activity(TenantActivities::reissue_invitation, input, options)
                        .await,
                )
            }
        };
        let (kind, message) = match outcome {
            Ok(outcome) if outcome.delivered => {
                ("operator_email_sent", format!("{what} to the first admin"))
            }
            Ok(outcome) => (
                "operator_email_failed",
                format!(
                    "{what}, but not delivered: {}",
                    outcome.error.unwrap_or_default()
                ),
            ),
            Err(err) => {
                let failure = describe_failure(Phase::WelcomeEmails, &err);
                (
                    "operator_email_failed",
                    format!("{} failed: {}", request.action.as_str(), failure.message),
                )
            }
        };
        Self::record_event(ctx, spec, kind, message, &request.actor).await;
    }

    /// A lifecycle step that must complete: retried until it does.
    async fn lifecycle_step<A>(
        ctx: &mut WorkflowContext<Self>,
        spec: &TenantSpec,
        round: u32,
        activity: A,
        what: &str,
    ) where
        A: ActivityDefinition<Input = PhaseInput>,
    {
        let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
            .retry_policy(forever())
            .cancellation_token(WorkflowCancellationToken::new())
            .summary(format!("{what} for {}", spec.names.host))
            .build();
        let _ = ctx
            .execute_activity(
                activity,
                PhaseInput {
                    tenant: spec.clone(),
                    round,
                },
                options,
            )
            .await;
    }

    /// Moves to `state`, keeps search attributes current and writes the state with its
    /// audit entry to the control-plane store.
    async fn transition(
        ctx: &mut WorkflowContext<Self>,
        spec: &TenantSpec,
        state: TenantState,
        phase: Option<Phase>,
        kind: &str,
        message: String,
        actor: &str,
    ) {
        ctx.state_mut(|s| {
            s.state = state;
            if phase.is_some() {
                s.phase = phase;
            } else if matches!(
                state,
                TenantState::Active | TenantState::Suspended | TenantState::Decommissioned
            ) {
                // A stable state has no phase in progress.
                s.phase = None;
            }
        });
        let phase = ctx.state(|s| s.phase);
        ctx.upsert_search_attributes([
            STATE_KEY.value_set(state.as_str().to_owned()),
            PHASE_KEY.value_set(phase.map(|p| p.as_str().to_owned()).unwrap_or_default()),
        ]);
        let last_error = ctx
            .state(|s| s.last_error.clone())
            .filter(|_| matches!(state, TenantState::Compensating | TenantState::Failed));
        Self::record(ctx, spec, state, phase, kind, message, actor, last_error).await;
    }

    async fn record_event(
        ctx: &mut WorkflowContext<Self>,
        spec: &TenantSpec,
        kind: &str,
        message: String,
        actor: &str,
    ) {
        let (state, phase) = ctx.state(|s| (s.state, s.phase));
        Self::record(ctx, spec, state, phase, kind, message, actor, None).await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        ctx: &mut WorkflowContext<Self>,
        spec: &TenantSpec,
        state: TenantState,
        phase: Option<Phase>,
        kind: &str,
        message: String,
        actor: &str,
        last_error: Option<PhaseFailure>,
    ) {
        let seq = ctx.state_mut(|s| {
            s.event_seq += 1;
            s.event_seq
        });
        let input = RecordInput {
            tenant: spec.clone(),
            event_key: format!("wf:{seq}"),
            state,
            phase,
            kind: kind.to_owned(),
            message,
            actor: actor.to_owned(),
            last_error,
        };
        let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(15))
            .retry_policy(forever())
            .cancellation_token(WorkflowCancellationToken::new())
            .summary(format!("record {} for {}", state.as_str(), spec.names.host))
            .build();
        // Retried until the store accepts it; the detached token keeps it alive through a cancel.
        let _ = ctx
            .execute_activity(TenantActivities::record_state, input, options)
            .await;
    }
}

fn take_decommission(pending: &mut VecDeque<LifecycleRequest>) -> Option<LifecycleRequest> {
    let index = pending
        .iter()
        .position(|r| r.action == LifecycleAction::Decommission)?;
    pending.remove(index)
}

fn mark(resources: &mut [ResourceStatus], kind: ResourceKind, allocated: bool) {
    if let Some(r) = resources.iter_mut().find(|r| r.kind == kind) {
        r.allocated = allocated;
    }
}

fn resource_name(spec: &TenantSpec, kind: ResourceKind) -> String {
    match kind {
        ResourceKind::Storage => spec.names.database.clone(),
        ResourceKind::Identity => format!("realm-{}", spec.names.tenant_id),
        ResourceKind::Traffic => spec.names.route_id.clone(),
        ResourceKind::Workload => spec.names.workload.clone(),
    }
}

/// Retries with backoff and never gives up: for releases and bookkeeping, which must
/// eventually succeed.
fn forever() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(30))
        .build()
}

/// The retry policy and timeouts of each provisioning phase.
fn phase_options(phase: Phase, spec: &TenantSpec) -> ActivityOptions {
    let retry = RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(10))
        .maximum_attempts(if phase == Phase::Validate { 3 } else { 5 })
        .non_retryable_error_types(PERMANENT_ERROR_TYPES.iter().copied())
        .build();
    let host = &spec.names.host;
    let (timeout, summary) = match phase {
        Phase::Validate => (
            30,
            format!("re-check the request for {host}: slot, plan, caller's role"),
        ),
        Phase::AllocateStorage => (
            60,
            format!("create database and login role {}", spec.names.database),
        ),
        Phase::AllocateIdentity => (
            30,
            format!("create the realm (signing key, first admin invitation) of {host}"),
        ),
        Phase::AllocateTraffic => (
            30,
            format!("create the edge route for {host} (503 until active)"),
        ),
        Phase::Deploy => (
            120,
            format!(
                "start the tenant service {} and wait until it is ready",
                spec.names.workload
            ),
        ),
        Phase::Verify => (
            60,
            format!("verify over HTTPS that {host} serves this tenant's identity endpoint"),
        ),
        Phase::MarkActive => (30, format!("open public traffic to {host}")),
        Phase::WelcomeEmails => (30, format!("send the welcome emails for {host}")),
    };
    // On a workflow cancel, wait until the running step has stopped before unwinding, so
    // a release can never run while its own allocation is still half-way through.
    let builder = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(timeout))
        .retry_policy(retry)
        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
        .summary(summary);
    if phase == Phase::Deploy {
        builder.heartbeat_timeout(DEPLOY_HEARTBEAT_TIMEOUT).build()
    } else {
        builder.build()
    }
}

fn cancelled_failure(phase: Phase) -> PhaseFailure {
    PhaseFailure {
        phase,
        error_type: "Cancelled".into(),
        message: "the workflow was cancelled".into(),
        attempt: 0,
    }
}

/// The real reason of an activity failure: the SDK's own message is generic.
fn describe_failure(phase: Phase, err: &ActivityExecutionError) -> PhaseFailure {
    let (error_type, message) = match err.cause() {
        Some(IncomingError::Application(app)) => (
            app.type_name().unwrap_or("ApplicationError").to_owned(),
            app.failure()
                .map(|f| f.message.clone())
                .unwrap_or_else(|| app.source_error().to_string()),
        ),
        Some(IncomingError::Timeout(timeout)) => (
            "Timeout".to_owned(),
            format!("activity timed out ({:?})", timeout.timeout_type()),
        ),
        Some(IncomingError::Cancelled(_)) => (
            "Cancelled".to_owned(),
            "the activity was cancelled".to_owned(),
        ),
        Some(other) => ("ActivityFailed".to_owned(), other.failure().message.clone()),
        None => (
            "ActivityFailed".to_owned(),
            err.failure()
                .map(|f| f.message.clone())
                .unwrap_or_else(|| err.to_string()),
        ),
    };
    PhaseFailure {
        phase,
        error_type,
        message,
        attempt: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use temporalio_common::protos::temporal::api::common::v1::Payload;

    use super::*;

    fn signal(encoding: &str, data: &str) -> RawValue {
        RawValue {
            payloads: vec![Payload {
                metadata: HashMap::from([("encoding".to_owned(), encoding.as_bytes().to_vec())]),
                data: data.as_bytes().to_vec(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_lifecycle_signal_is_read_from_its_json_input() {
        let request = read_lifecycle_request(&signal(
            "json/plain",
            r#"{"action":"suspend","actor":"alice"}"#,
        ))
        .unwrap();
        assert_eq!(
            request,
            LifecycleRequest::new(LifecycleAction::Suspend, "alice")
        );
    }

    #[test]
    fn an_unreadable_lifecycle_signal_says_why_and_what_to_send() {
        for (encoding, data, says) in [
            (
                "json/plain",
                r#"{"action":"Resume"}"#,
                "unknown variant `Resume`",
            ),
            ("json/plain", r#""garbage""#, "not a lifecycle request"),
            ("json/plain", "{", "not a lifecycle request"),
            ("binary/plain", "suspend", "encoded as \"binary/plain\""),
            ("json/plain", "", "carried no input"),
        ] {
            let why = read_lifecycle_request(&signal(encoding, data)).unwrap_err();
            assert!(why.contains(says), "{data}: {why}");
            assert!(why.contains(r#"{"action": "suspend""#), "{why}");
        }
        let why = read_lifecycle_request(&RawValue { payloads: vec![] }).unwrap_err();
        assert!(why.contains("carried no input"), "{why}");
        let long = format!(r#"{{"action":"{}"}}"#, "x".repeat(5000));
        let why = read_lifecycle_request(&signal("json/plain", &long)).unwrap_err();
        assert!(why.len() < 400, "{}", why.len());
    }
}
