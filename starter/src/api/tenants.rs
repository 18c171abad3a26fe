//! The tenant resource: create (accept and start the saga), show (with the delivery status
//! of its welcome emails), list, and the actions sent to its workflow: the lifecycle actions
//! (retry, decommission, suspend, resume) and the operator's email actions (re-issue the
//! invitation, resend one welcome email). The audit feed's endpoint is in `events`; its JSON
//! shape, [`EventView`], is here with the other resources.
//!
//! Creating follows one order: authenticate, check the caller's role, validate with the
//! domain's rule, reserve the slot in the store, start the saga. Nothing is written before
//! validation passes, and nothing is allocated here at all: the saga owns allocation and
//! carries out every lifecycle action; these handlers only ask it and report its answer.
//! The resource types are shared with the CLI, which reads what these handlers write.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use tenant_domain::{
    EmailKind, LifecycleAction, LifecycleRequest, TenantKey, TenantRequest, TenantSpec,
    TenantState, TenantStatus, validate,
};
use tenant_store::access::Principal;
use tenant_store::tenants::EmailDeliveryRow;
use tenant_store::{AcceptError, AcceptOutcome, AuditEvent, NewEvent, ResourceRow, TenantRow};
use uuid::Uuid;

use super::{
    Access, ApiConfig, ApiError, ApiPath, ApiQuery, AppState, Caller, JsonBody, authorize,
};
use crate::engine;
use crate::saga::{ActionOutcome, WorkflowRun};

/// Most tenants one list page returns.
pub const MAX_PAGE: u32 = 100;
/// Most audit events one request returns.
pub const MAX_EVENTS_PAGE: u32 = 1000;

/// What the console and the CLI send to create a tenant; the organisation is in the path.
///
/// Missing fields default to empty so the domain rule reports every one of them at once,
/// with the same codes the saga would use.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreateTenantBody {
    pub slug: String,
    pub plan: String,
    pub first_admin_email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A tenant as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantResource {
    pub id: Uuid,
    pub org: String,
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub first_admin_email: String,
    pub host: String,
    /// Where the tenant is served once active.
    pub url: String,
    pub state: String,
    pub phase: Option<String>,
    pub incarnation: i32,
    pub workflow_id: String,
    pub run_id: Option<String>,
    pub last_error: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub links: TenantLinks,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantLinks {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    /// The tenant's workflow in the Temporal Web UI, for inspecting a stuck saga.
    pub temporal_ui: String,
}

/// One tenant with its resource ledger, its welcome emails and, when Temporal answers, the
/// workflow's view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantDetail {
    #[serde(flatten)]
    pub tenant: TenantResource,
    #[serde(default)]
    pub resources: Vec<ResourceView>,
    /// The three welcome emails of the current incarnation, in the order they are sent.
    #[serde(default)]
    pub emails: Vec<EmailDeliveryView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<TenantStatus>,
    /// What the tenant's plan gives it, as the plan reads now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizing: Option<TenantSizing>,
}

/// The tenant's plan and the sizing it gives the tenant. A changed plan applies to the
/// tenant's service when it is next deployed or a worker starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSizing {
    pub plan: String,
    /// Connections the tenant's database role may open.
    pub db_connection_limit: i32,
    /// Connections the tenant's service keeps in its pool at most.
    pub workload_db_pool: i32,
    /// Requests the tenant's service serves at once; it answers 503 to more.
    pub workload_max_concurrent_requests: i32,
}

/// One allocation from the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceView {
    pub kind: String,
    pub name: String,
    pub incarnation: i32,
    pub allocated_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
}

/// What became of one welcome email of the tenant's current incarnation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailDeliveryView {
    /// `welcome`, `console_url` or `onboarding`.
    pub kind: String,
    /// `pending` (not tried yet), `sent` (the SMTP server took it), `refused` (by the
    /// server) or `failed` (the server could not be reached; the saga retries a few times,
    /// an operator can resend).
    pub status: String,
    /// The SMTP server's answer when it refused, or the transport's error when it failed.
    pub error: Option<String>,
    /// How many times it was tried: the saga's tries, +1 per operator resend (and per
    /// re-issue, for `welcome`); 0 while pending.
    pub attempts: i32,
    /// The same for every send of this email, so mail clients fold duplicates.
    pub message_id: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// One view per welcome email, in sending order; a kind without a recorded delivery is
/// `pending`.
pub fn email_views(rows: Vec<EmailDeliveryRow>) -> Vec<EmailDeliveryView> {
    EmailKind::ALL
        .into_iter()
        .map(|kind| match rows.iter().find(|r| r.kind == kind.as_str()) {
            Some(row) => EmailDeliveryView {
                kind: row.kind.clone(),
                status: row.status.clone(),
                error: row.error.clone(),
                attempts: row.attempts,
                message_id: Some(row.message_id.clone()),
                updated_at: Some(row.updated_at),
            },
            None => EmailDeliveryView {
                kind: kind.as_str().to_owned(),
                status: "pending".to_owned(),
                error: None,
                attempts: 0,
                message_id: None,
                updated_at: None,
            },
        })
        .collect()
}

/// The email a `{kind}` path segment names.
pub fn parse_email_kind(raw: &str) -> Result<EmailKind, ApiError> {
    EmailKind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == raw)
        .ok_or_else(|| {
            let allowed: Vec<&str> = EmailKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::field(
                "kind",
                "unknown_email",
                format!("kind must be one of {}", allowed.join(", ")),
            )
        })
}

/// A page of tenants; pass `next_after` as `after` to get the next one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantPage {
    pub items: Vec<TenantResource>,
    pub next_after: Option<String>,
}

/// One audit event. `id` orders the feed: pass the last one seen as `after` to resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub id: i64,
    pub incarnation: i32,
    pub run_id: String,
    pub kind: String,
    pub phase: Option<String>,
    pub attempt: Option<i32>,
    pub state: Option<String>,
    pub actor: String,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub at: DateTime<Utc>,
}

/// Query of the list endpoint; parsed by hand so each bad value is a field error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub state: Option<String>,
    pub limit: Option<String>,
    pub after: Option<String>,
}

/// Query of the show endpoint: `live=false` skips asking the workflow, for pollers that
/// only need the stored state.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowParams {
    pub live: Option<String>,
}

/// Query of the events endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    pub after: Option<String>,
    pub limit: Option<String>,
}

/// Characters escaped in one URL path segment (org, slug, workflow id).
pub const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl TenantResource {
    pub fn from_row(row: &TenantRow, config: &ApiConfig) -> Self {
        let self_link = format!(
            "/api/v1/organizations/{}/tenants/{}",
            row.org_slug, row.slug
        );
        let url = match config.public_https_port {
            443 => format!("https://{}", row.host),
            port => format!("https://{}:{port}", row.host),
        };
        let temporal_ui = format!(
            "{}/namespaces/{}/workflows/{}",
            config.temporal_ui_url,
            utf8_percent_encode(&config.temporal_namespace, PATH_SEGMENT),
            utf8_percent_encode(&row.workflow_id, PATH_SEGMENT),
        );
        Self {
            id: row.id,
            org: row.org_slug.clone(),
            slug: row.slug.clone(),
            name: row.name.clone(),
            plan: row.plan.clone(),
            first_admin_email: row.first_admin_email.clone(),
            host: row.host.clone(),
            url,
            state: row.state.clone(),
            phase: row.phase.clone(),
            incarnation: row.incarnation,
            workflow_id: row.workflow_id.clone(),
            run_id: row.run_id.clone(),
            last_error: row.last_error.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            links: TenantLinks {
                events: format!("{self_link}/events"),
                self_: self_link,
                temporal_ui,
            },
        }
    }
}

impl From<ResourceRow> for ResourceView {
    fn from(row: ResourceRow) -> Self {
        Self {
            kind: row.kind,
            name: row.name,
            incarnation: row.incarnation,
            allocated_at: row.allocated_at,
            released_at: row.released_at,
        }
    }
}

impl From<AuditEvent> for EventView {
    fn from(event: AuditEvent) -> Self {
        Self {
            id: event.id,
            incarnation: event.incarnation,
            run_id: event.run_id,
            kind: event.kind,
            phase: event.phase,
            attempt: event.attempt,
            state: event.state,
            actor: event.actor,
            message: event.message,
            detail: event.detail,
            at: event.at,
        }
    }
}

/// `POST /api/v1/organizations/{org_id}/tenants`: 202 for a new tenant (or incarnation),
/// 200 for an identical repeat, 409 for a held slot or a full quota.
#[tracing::instrument(name = "tenants_create", skip_all, fields(org = %org_id, caller = %caller.name, slug))]
pub async fn tenants_create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<String>,
    idempotency_key: super::idempotency::IdempotencyKey,
    body: JsonBody,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, &org_id, Access::Manage).await?;
    // A repeated Idempotency-Key is answered from its record and acts no further.
    let begun = super::idempotency::replay_or_record(&state, &caller, idempotency_key, &body);
    let recording = match begun.await? {
        super::idempotency::Begin::Answered(answer) => return Ok(answer),
        super::idempotency::Begin::Proceed(recording) => recording,
    };

    let body: CreateTenantBody = body.parse()?;
    tracing::Span::current().record("slug", body.slug.as_str());
    let request = TenantRequest {
        org: org_id.clone(),
        slug: body.slug,
        plan: body.plan,
        first_admin_email: body.first_admin_email,
        name: body.name,
    };
    let plans = state.store().plan_names().await?;
    let plans: Vec<&str> = plans.iter().map(String::as_str).collect();
    let valid = validate(&request, &plans).map_err(ApiError::invalid_fields)?;

    let names = TenantKey::new(&valid.org, &valid.slug).derive(&state.config().domain);
    let violations = names.limit_violations();
    if !violations.is_empty() {
        // The domain is checked at start-up, so this is a configuration bug, not bad input.
        return Err(ApiError::Internal(anyhow::anyhow!(
            "derived names break system limits: {}",
            violations.join("; ")
        )));
    }

    let (row, created) = match state
        .store()
        .accept_tenant(&valid, &names, &caller.name)
        .await
    {
        Ok(AcceptOutcome::Accepted(row)) => (row, true),
        Ok(AcceptOutcome::Existing(row)) => (row, false),
        Err(refused) => return Err(refusal(&state, &caller, refused).await),
    };
    let spec = TenantSpec {
        request: valid,
        names,
        incarnation: row.incarnation,
        // The original requester, so a repeat starts the very same workflow input.
        requested_by: row.requested_by.clone(),
    };
    let row = start_saga(&state, row, &spec, created).await?;

    let resource = TenantResource::from_row(&row, state.config());
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let location = HeaderValue::from_str(&resource.links.self_).ok();
    let mut response = (status, Json(resource)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(recording.finish(response).await)
}

/// Starts (or finds) the tenant's workflow and records its run id. A failure leaves the
/// accepted row in place: an identical retry finds it and starts the workflow then.
async fn start_saga(
    state: &AppState,
    mut row: TenantRow,
    spec: &TenantSpec,
    created: bool,
) -> Result<TenantRow, ApiError> {
    let started = engine::start(state.saga(), spec).await;
    match started {
        Ok(run_id) => {
            if row.run_id.as_deref() != Some(run_id.as_str()) {
                state
                    .store()
                    .set_run_id(row.id, row.incarnation, &run_id)
                    .await?;
                row.run_id = Some(run_id);
            }
            tracing::info!(
                tenant = %row.id,
                workflow_id = %row.workflow_id,
                run_id = row.run_id.as_deref(),
                incarnation = row.incarnation,
                created,
                "tenant saga started"
            );
            Ok(row)
        }
        // A repeat of a request whose workflow is known to run needs no engine to answer.
        Err(cause) if !created && row.run_id.is_some() => {
            tracing::warn!(tenant = %row.id, %cause, "workflow engine unavailable; answering a repeat from the store");
            Ok(row)
        }
        Err(cause) => Err(ApiError::Unavailable {
            detail: "workflow engine unavailable, retry the request; it is idempotent".into(),
            cause: cause.to_string(),
        }),
    }
}

/// Turns a refused slot into a 409, naming another organisation's tenant only to callers
/// who may see that organisation.
async fn refusal(state: &AppState, caller: &Principal, refused: AcceptError) -> ApiError {
    match refused {
        AcceptError::KeyHeld { org, slug } => ApiError::Conflict(format!(
            "tenant {slug} already exists in organisation {org} with a different request; \
             repeat the original request, or choose another slug"
        )),
        AcceptError::LabelHeld {
            label,
            holder_org,
            holder_slug,
        } => {
            let visible = caller.platform_operator
                || match state.store().role_in(caller.id, &holder_org).await {
                    Ok(role) => role.is_some(),
                    Err(err) => return err.into(),
                };
            if visible {
                ApiError::Conflict(format!(
                    "host name label {label} taken by tenant {holder_slug} of organisation {holder_org}; \
                     choose another slug"
                ))
            } else {
                ApiError::Conflict(format!(
                    "host name label {label} taken; choose another slug"
                ))
            }
        }
        refused @ AcceptError::QuotaReached { .. } => ApiError::QuotaExceeded(refused.to_string()),
        AcceptError::Database(err) => err.into(),
    }
}

/// What a lifecycle or email action came to, when the tenant's workflow accepted it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionAnswer {
    /// `retry`, `decommission`, `suspend`, `resume`, `reissue_invitation` or `resend_email`.
    pub action: String,
    /// Always true: a refusal is a 409 problem instead.
    pub accepted: bool,
    /// The workflow's own answer, e.g. `suspend accepted from state active`.
    pub answer: String,
    /// For `resend_email`: which email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailKind>,
    /// The tenant as stored right after acceptance: the workflow carries the action out
    /// afterwards, so its state changes later (follow the audit feed).
    pub tenant: TenantResource,
}

/// `POST …/tenants/{slug}/retry`: provision a `failed` tenant again. See [`tenants_action`].
pub async fn tenants_retry(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, slug)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    tenants_action(
        &state,
        &caller,
        &org_id,
        &slug,
        LifecycleAction::Retry,
        None,
    )
    .await
}

/// `POST …/tenants/{slug}/decommission`: release everything and free the slot. See
/// [`tenants_action`].
pub async fn tenants_decommission(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, slug)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    tenants_action(
        &state,
        &caller,
        &org_id,
        &slug,
        LifecycleAction::Decommission,
        None,
    )
    .await
}

/// `POST …/tenants/{slug}/invitation/reissue`: a new invitation for the first admin (the old
/// code stops working), sent in a new welcome email. See [`tenants_action`].
pub async fn tenants_reissue_invitation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, slug)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    tenants_action(
        &state,
        &caller,
        &org_id,
        &slug,
        LifecycleAction::ReissueInvitation,
        None,
    )
    .await
}

/// `POST …/tenants/{slug}/emails/{kind}/resend`: send one welcome email again, with the same
/// Message-ID and the current invitation. See [`tenants_action`].
pub async fn tenants_resend_email(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, slug, kind)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    tenants_action(
        &state,
        &caller,
        &org_id,
        &slug,
        LifecycleAction::ResendEmail,
        Some(&kind),
    )
    .await
}

/// `POST …/tenants/{slug}/suspend`: refuse public traffic and sign-in. See [`tenants_action`].
pub async fn tenants_suspend(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, slug)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    tenants_action(
        &state,
        &caller,
        &org_id,
        &slug,
        LifecycleAction::Suspend,
        None,
    )
    .await
}

/// `POST …/tenants/{slug}/resume`: serve a suspended tenant again. See [`tenants_action`].
pub async fn tenants_resume(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, slug)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    tenants_action(
        &state,
        &caller,
        &org_id,
        &slug,
        LifecycleAction::Resume,
        None,
    )
    .await
}

/// Sends a lifecycle or email action to the tenant's workflow as a Temporal update, acting
/// as the caller (the actor in the audit feed), and answers with what the workflow said.
/// `email` is the raw `{kind}` segment of a resend; it is checked only after the caller's
/// access, so an outsider or a member learns nothing from it.
///
/// - 202 [`ActionAnswer`]: accepted; the workflow carries the action out and the audit feed
///   shows its progress up to the next stable state (for an email action, up to its
///   `operator_email_sent` or `operator_email_failed` event).
/// - 400 `validation` (field `kind`): a resend naming no welcome email.
/// - 409 `conflict`: the workflow's validator refused the action in the tenant's current
///   state (the detail is its reason), another action is still in progress, or the tenant
///   is `decommissioned` (its workflow has ended; request the tenant again instead).
/// - 403 for a member, 404 for an organisation the caller cannot see or an unknown tenant.
/// - 503: Temporal, or the worker that runs the validator, gave no answer in time. The
///   update may still be delivered later, so check the tenant before repeating the action.
///
/// When the tenant's workflow no longer runs although the tenant is not decommissioned (an
/// operator terminated it, or Temporal lost its history), no update can reach it:
/// - `retry` re-drives the saga: a new run starts from the stored request (same incarnation
///   and requester, so every phase adopts what already exists instead of allocating twice),
///   whatever state the row was left in, and the retry is recorded with its actor. A tenant
///   that was suspended is active again afterwards.
/// - every other action is refused with 409 and told to retry first: a new run holds
///   nothing on its compensation stack until its phases have run again, so decommissioning
///   through it could claim `decommissioned` while resources remain; and the email actions
///   change no state, so they never start a run.
#[tracing::instrument(name = "tenants_action", skip_all, fields(org = %org_id, slug = %slug, caller = %caller.name, action = action.as_str()))]
pub async fn tenants_action(
    state: &AppState,
    caller: &Principal,
    org_id: &str,
    slug: &str,
    action: LifecycleAction,
    email: Option<&str>,
) -> Result<Response, ApiError> {
    authorize(state, caller, org_id, Access::Manage).await?;
    let email = email.map(parse_email_kind).transpose()?;
    let row = find_tenant(state, org_id, slug).await?;
    if row.state() == TenantState::Decommissioned {
        return Err(ApiError::Conflict(format!(
            "tenant {slug} is decommissioned; to use the slug again, request the tenant anew"
        )));
    }

    let request = LifecycleRequest {
        email,
        ..LifecycleRequest::new(action, caller.name.clone())
    };
    if let Some(malformed) = request.shape_error() {
        // The routes pair each action with its `email`; a mismatch is a bug here.
        return Err(ApiError::Internal(anyhow::anyhow!(
            "malformed lifecycle request: {malformed}"
        )));
    }
    let answer = match engine::lifecycle(state.saga(), &row.workflow_id, request).await {
        Ok(ActionOutcome::Accepted(answer)) => answer,
        Ok(ActionOutcome::Refused(reason)) => {
            tracing::info!(%reason, "lifecycle action refused by the workflow");
            return Err(ApiError::Conflict(reason));
        }
        Err(err) => match engine::run(state.saga(), &row.workflow_id).await {
            Ok(WorkflowRun::Closed { status, .. }) => {
                redrive(state, caller, row.clone(), action, &format!("was {status}")).await?
            }
            Ok(WorkflowRun::Missing) => {
                redrive(state, caller, row.clone(), action, "is unknown to Temporal").await?
            }
            Ok(WorkflowRun::Open { .. }) | Err(_) => {
                return Err(ApiError::Unavailable {
                    detail: format!(
                        "the tenant's workflow did not answer; check tenant {slug} before repeating the {} action",
                        action.as_str()
                    ),
                    cause: err.to_string(),
                });
            }
        },
    };
    tracing::info!(tenant = %row.id, workflow_id = %row.workflow_id, %answer, "lifecycle action accepted");

    let row = find_tenant(state, org_id, slug).await?;
    let body = ActionAnswer {
        action: action.as_str().to_owned(),
        accepted: true,
        answer,
        email,
        tenant: TenantResource::from_row(&row, state.config()),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Handles an action for a tenant whose workflow no longer runs (see [`tenants_action`]):
/// `retry` starts a new run from the stored request; anything else is a 409.
async fn redrive(
    state: &AppState,
    caller: &Principal,
    row: TenantRow,
    action: LifecycleAction,
    why: &str,
) -> Result<String, ApiError> {
    // Only `retry` may start a run; the email actions change no state and never do.
    if action != LifecycleAction::Retry {
        let then = if action.changes_state() {
            format!("then {} it", action.as_str())
        } else {
            format!("then ask for {} again", action.as_str())
        };
        return Err(ApiError::Conflict(format!(
            "tenant {}'s workflow is no longer running (its last run {why}); retry the tenant to \
             start a new run of its saga, {then}",
            row.slug
        )));
    }
    let spec = stored_spec(state, &row)?;
    let run_id = engine::start(state.saga(), &spec)
        .await
        .map_err(|err| ApiError::Unavailable {
            detail: "workflow engine unavailable, retry the request".into(),
            cause: err.to_string(),
        })?;
    state
        .store()
        .set_run_id(row.id, row.incarnation, &run_id)
        .await?;
    // The new run records its own progress; who asked for it is only known here.
    state
        .store()
        .append_event(&NewEvent {
            tenant_id: row.id,
            incarnation: row.incarnation,
            run_id: run_id.clone(),
            event_key: format!("redrive:{run_id}"),
            kind: "retry_requested".into(),
            state: Some(row.state.clone()),
            actor: caller.name.clone(),
            message: format!(
                "retry requested by {}: the saga's last run {why}, so a new run was started",
                caller.name
            ),
            ..Default::default()
        })
        .await?;
    tracing::warn!(tenant = %row.id, workflow_id = %row.workflow_id, %run_id, why, "re-drove a tenant whose workflow no longer ran");
    Ok(format!(
        "retry accepted: the saga's last run {why}, so a new run was started from state {}",
        row.state
    ))
}

/// The workflow input of the tenant's current incarnation, rebuilt from its stored row: the
/// same input `tenants_create` starts it with.
fn stored_spec(state: &AppState, row: &TenantRow) -> Result<TenantSpec, ApiError> {
    let request = TenantRequest {
        org: row.org_slug.clone(),
        slug: row.slug.clone(),
        plan: row.plan.clone(),
        first_admin_email: row.first_admin_email.clone(),
        name: Some(row.name.clone()),
    };
    let valid = validate(&request, &[row.plan.as_str()]).map_err(|errors| {
        let fields: Vec<String> = errors.into_iter().map(|e| e.field).collect();
        ApiError::Internal(anyhow::anyhow!(
            "stored tenant {} fails validation in {}",
            row.id,
            fields.join(", ")
        ))
    })?;
    let names = TenantKey::new(&valid.org, &valid.slug).derive(&state.config().domain);
    Ok(TenantSpec {
        request: valid,
        names,
        incarnation: row.incarnation,
        requested_by: row.requested_by.clone(),
    })
}

/// `GET /api/v1/organizations/{org_id}/tenants/{slug}?live=`: any role may read.
#[tracing::instrument(name = "tenants_show", skip_all, fields(org = %org_id, slug = %slug, caller = %caller.name))]
pub async fn tenants_show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, slug)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<ShowParams>,
) -> Result<Json<TenantDetail>, ApiError> {
    authorize(&state, &caller, &org_id, Access::Read).await?;
    let with_live = match params.live.as_deref() {
        None | Some("" | "true" | "1") => true,
        Some("false" | "0") => false,
        Some(_) => {
            return Err(ApiError::field(
                "live",
                "invalid",
                "live must be true or false",
            ));
        }
    };
    let row = find_tenant(&state, &org_id, &slug).await?;

    let resources = state
        .store()
        .resources(row.id)
        .await?
        .into_iter()
        .map(ResourceView::from)
        .collect();
    let emails = email_views(
        state
            .store()
            .email_deliveries(row.id, row.incarnation)
            .await?,
    );
    let live = if with_live {
        live_status(&state, &row.workflow_id).await
    } else {
        None
    };
    let sizing = state
        .store()
        .plan(&row.plan)
        .await?
        .map(|plan| TenantSizing {
            plan: plan.name,
            db_connection_limit: plan.db_connection_limit,
            workload_db_pool: plan.workload_db_pool,
            workload_max_concurrent_requests: plan.workload_max_concurrent_requests,
        });

    Ok(Json(TenantDetail {
        tenant: TenantResource::from_row(&row, state.config()),
        resources,
        emails,
        live,
        sizing,
    }))
}

/// The workflow's own view; absent when Temporal does not answer, which a read tolerates.
async fn live_status(state: &AppState, workflow_id: &str) -> Option<TenantStatus> {
    match engine::status(state.saga(), workflow_id).await {
        Ok(status) => status,
        Err(err) => {
            tracing::warn!(workflow_id, error = %err, "workflow status query failed");
            None
        }
    }
}

/// `GET /api/v1/organizations/{org_id}/tenants?state=&limit=&after=`, ordered by slug.
#[tracing::instrument(name = "tenants_list", skip_all, fields(org = %org_id, caller = %caller.name))]
pub async fn tenants_list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<TenantPage>, ApiError> {
    authorize(&state, &caller, &org_id, Access::Read).await?;
    let filter = match params.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(TenantState::parse(s).ok_or_else(|| {
            ApiError::field(
                "state",
                "unknown_state",
                "state must be one of provisioning, active, suspended, compensating, failed, \
                 decommissioning, decommissioned",
            )
        })?),
    };
    let limit = parse_limit(params.limit.as_deref(), 50, MAX_PAGE)?;
    if let Some(after) = params.after.as_deref().filter(|a| !a.is_empty())
        && !tenant_domain::validation::matches_name_pattern(after)
    {
        return Err(ApiError::Validation {
            detail: "invalid request: after must be a tenant slug".into(),
            errors: vec![tenant_domain::FieldError {
                field: "after".into(),
                code: "pattern".into(),
                message: "after must be a tenant slug (the next_after of the previous page)".into(),
            }],
        });
    }

    // One extra row tells whether another page follows.
    let mut rows = state
        .store()
        .list_tenants(
            &org_id,
            filter,
            params.after.as_deref().filter(|a| !a.is_empty()),
            i64::from(limit) + 1,
        )
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_after = if more {
        rows.last().map(|r| r.slug.clone())
    } else {
        None
    };
    let items = rows
        .iter()
        .map(|r| TenantResource::from_row(r, state.config()))
        .collect();
    Ok(Json(TenantPage { items, next_after }))
}

pub(super) async fn find_tenant(
    state: &AppState,
    org: &str,
    slug: &str,
) -> Result<TenantRow, ApiError> {
    // `ApiPath` refuses such names with a 400 first; this keeps any other caller's bytes that
    // PostgreSQL cannot store (NUL) away from the query, and its detail short.
    let max = tenant_domain::validation::MAX_SLUG_LEN;
    let well_formed =
        |s: &str| s.len() <= max && tenant_domain::validation::matches_name_pattern(s);
    if !well_formed(org) || !well_formed(slug) {
        return Err(ApiError::NotFound(format!(
            "tenant {} not found in organisation {}",
            super::extract::echo(slug, max),
            super::extract::echo(org, max)
        )));
    }
    state
        .store()
        .tenant(org, slug)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("tenant {slug} not found in organisation {org}")))
}

pub(super) fn parse_limit(raw: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    match raw {
        None | Some("") => Ok(default),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| {
                ApiError::field(
                    "limit",
                    "out_of_range",
                    format!("limit must be a number from 1 to {max}"),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> TenantRow {
        let names = TenantKey::new("acme", "prod").derive("tenants.localhost");
        TenantRow {
            id: names.tenant_id,
            org_slug: "acme".into(),
            slug: "prod".into(),
            label: names.label,
            host: names.host,
            name: "prod".into(),
            plan: "growth".into(),
            first_admin_email: "a@example.com".into(),
            state: "provisioning".into(),
            phase: None,
            incarnation: 1,
            workflow_id: names.workflow_id,
            run_id: None,
            requested_by: "alice".into(),
            last_error: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn resource_links_and_url() {
        let resource = TenantResource::from_row(&row(), &ApiConfig::default());
        assert_eq!(resource.url, "https://prod-acme.tenants.localhost:8443");
        assert_eq!(
            resource.links.self_,
            "/api/v1/organizations/acme/tenants/prod"
        );
        assert_eq!(
            resource.links.events,
            "/api/v1/organizations/acme/tenants/prod/events"
        );
        assert_eq!(
            resource.links.temporal_ui,
            "http://127.0.0.1:8233/namespaces/default/workflows/tenant%2Facme%2Fprod"
        );
        let json = serde_json::to_value(&resource).unwrap();
        assert!(json["links"]["self"].is_string());
    }

    #[test]
    fn every_email_is_shown_and_missing_ones_are_pending() {
        let now = Utc::now();
        let sent = EmailDeliveryRow {
            kind: "onboarding".into(),
            status: "sent".into(),
            error: None,
            attempts: 2,
            message_id: "<onboarding.1.x@tenants.localhost>".into(),
            updated_at: now,
        };
        let refused = EmailDeliveryRow {
            kind: "welcome".into(),
            status: "refused".into(),
            error: Some("550 no such mailbox".into()),
            attempts: 1,
            message_id: "<welcome.1.x@tenants.localhost>".into(),
            updated_at: now,
        };
        let views = email_views(vec![sent, refused]);
        let kinds: Vec<&str> = views.iter().map(|v| v.kind.as_str()).collect();
        assert_eq!(kinds, ["welcome", "console_url", "onboarding"]);
        assert_eq!(views[0].status, "refused");
        assert_eq!(views[0].error.as_deref(), Some("550 no such mailbox"));
        assert_eq!(views[1].status, "pending");
        assert_eq!(
            (views[1].attempts, views[1].message_id.as_deref()),
            (0, None)
        );
        assert_eq!((views[2].status.as_str(), views[2].attempts), ("sent", 2));
        assert_eq!(views[2].updated_at, Some(now));
    }

    #[test]
    fn email_kinds_are_parsed_strictly() {
        assert_eq!(
            parse_email_kind("console_url").unwrap(),
            EmailKind::ConsoleUrl
        );
        for bad in ["", "Welcome", "console-url", "invoice"] {
            let Err(ApiError::Validation { errors, .. }) = parse_email_kind(bad) else {
                panic!("{bad:?} accepted")
            };
            assert_eq!(errors[0].field, "kind");
            assert!(
                errors[0]
                    .message
                    .contains("welcome, console_url, onboarding"),
                "{}",
                errors[0].message
            );
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(parse_limit(None, 50, 100).unwrap(), 50);
        assert_eq!(parse_limit(Some("100"), 50, 100).unwrap(), 100);
        assert!(parse_limit(Some("101"), 50, 100).is_err());
        assert!(parse_limit(Some("0"), 50, 100).is_err());
        assert!(parse_limit(Some("x"), 50, 100).is_err());
    }
}
