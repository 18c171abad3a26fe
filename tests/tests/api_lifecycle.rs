//! Lifecycle actions and the live audit feed through the HTTP API, on the whole stack: the
//! API and worker binaries with Temporal, PostgreSQL, Caddy and maildev on loopback.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use reqwest::StatusCode;
use serde_json::Value;
use tenant_domain::{LifecycleAction, TenantState};
use tenant_tests::{ProcessSignal, Stack, StackOptions, state_of};

use common::*;

const PROBLEM: &str = "https://tenant-provisioner.dev/problems/";

/// A Server-Sent Events reader over one streaming response.
struct Feed {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

/// One SSE frame that carries data: its `id`, `event` and parsed `data`.
struct Frame {
    id: i64,
    event: String,
    data: Value,
}

impl Feed {
    async fn open(stack: &Stack, slug: &str, after: i64) -> anyhow::Result<Feed> {
        let url = format!(
            "{}/api/v1/organizations/{}/tenants/{slug}/events?after={after}",
            stack.api_url, stack.org
        );
        let response = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&stack.owner_token)
            .header("accept", "text/event-stream")
            .send()
            .await?;
        ensure!(
            response.status() == StatusCode::OK,
            "opening the live feed: {}",
            response.status()
        );
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        ensure!(
            content_type == "text/event-stream",
            "content type {content_type}"
        );
        Ok(Feed {
            response,
            buffer: Vec::new(),
        })
    }

    /// The next event, skipping keep-alives; fails after `timeout`.
    async fn next(&mut self, timeout: Duration) -> anyhow::Result<Frame> {
        tokio::time::timeout(timeout, self.read())
            .await
            .context("no event in time")?
    }

    async fn read(&mut self) -> anyhow::Result<Frame> {
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block)?;
                let (mut id, mut event, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse::<i64>()?);
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str::<Value>(v)?);
                    }
                }
                if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                    return Ok(Frame { id, event, data });
                }
            }
            match self.response.chunk().await? {
                Some(bytes) => self.buffer.extend(bytes.iter().filter(|b| **b != b'\r')),
                None => bail!("the live feed ended"),
            }
        }
    }

    /// Reads events until one satisfies `wanted`; returns every event read.
    async fn until(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Frame) -> bool,
    ) -> anyhow::Result<Vec<Frame>> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self.next(left).await.with_context(|| {
                let seen: Vec<String> = frames
                    .iter()
                    .map(|f: &Frame| format!("{} {}", f.id, f.event))
                    .collect();
                format!("waiting on the live feed; saw {seen:?}")
            })?;
            let done = wanted(&frame);
            frames.push(frame);
            if done {
                return Ok(frames);
            }
        }
    }
}

/// A tenant's provisioning arrives live on the event stream, in id order and identical to
/// the JSON feed; then suspend, resume and decommission through the API answer 202 with
/// the workflow's answer and show up on the same stream with their actor, wrong-state
/// actions are 409 with the workflow's reason, a member gets 403, and a decommissioned
/// tenant refuses every action, email actions included.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_actions_through_the_api_and_the_live_feed() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let member = token_with_role(&stack, "mallory", tenant_store::access::Role::Member).await?;
    let created = stack
        .create_tenant("shop", "growth", "owner@example.com", None)
        .await?;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let tenant_id = created.body["id"].as_str().context("id")?.to_owned();
    let host = stack.tenant_host("shop");

    // Open the stream while the saga runs; everything so far comes first, the rest live.
    let backlog = events(&stack, "shop").await?.len();
    let mut feed = Feed::open(&stack, "shop", 0).await?;
    let provisioning = feed
        .until(ACTIVE_WITHIN, |f| f.data["state"] == "active")
        .await?;
    assert!(
        provisioning.len() > backlog,
        "events arrived after the stream opened"
    );
    for frame in &provisioning {
        assert_eq!(frame.data["id"], frame.id);
        assert_eq!(frame.data["kind"], frame.event.as_str());
    }
    let streamed: Vec<i64> = provisioning.iter().map(|f| f.id).collect();
    assert!(streamed.windows(2).all(|w| w[0] < w[1]), "{streamed:?}");
    let listed: Vec<i64> = events(&stack, "shop")
        .await?
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert_eq!(
        &listed[..streamed.len()],
        &streamed[..],
        "the stream is the feed"
    );
    let completed: Vec<&str> = provisioning
        .iter()
        .filter(|f| f.event == "phase_completed")
        .filter_map(|f| f.data["phase"].as_str())
        .collect();
    assert_eq!(completed, PROVISIONING_PHASES);
    let shown = stack.get_tenant("shop").await?;
    assert_eq!(shown.body["live"]["state"], "active", "{}", shown.body);

    let (status, body) = act(&stack, "shop", "suspend", &member).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["type"], format!("{PROBLEM}forbidden"));
    let (status, body) = act(&stack, "shop", "resume", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], format!("{PROBLEM}conflict"));
    assert_eq!(
        body["detail"],
        "cannot resume a tenant that is active; allowed from: suspended"
    );
    let (status, body) = act(&stack, "shop", "retry", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["detail"],
        "cannot retry a tenant that is active; allowed from: failed"
    );

    let (status, body) = act(&stack, "shop", "suspend", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["action"], "suspend");
    assert_eq!(body["accepted"], true);
    assert_eq!(body["answer"], "suspend accepted from state active");
    assert_eq!(body["tenant"]["id"], tenant_id.as_str());
    let frames = feed
        .until(Duration::from_secs(60), |f| f.event == "suspended")
        .await?;
    let suspended = frames.last().context("suspended")?;
    assert_eq!(suspended.data["actor"], "harness-owner");
    assert_eq!(suspended.data["state"], "suspended");
    assert_eq!(
        stack.tenant_get(&host, "/").await?.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, body) = act(&stack, "shop", "suspend", &stack.operator_token).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["detail"],
        "cannot suspend a tenant that is suspended; allowed from: active"
    );

    let (status, body) = act(&stack, "shop", "resume", &stack.operator_token).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let frames = feed
        .until(Duration::from_secs(60), |f| f.event == "resumed")
        .await?;
    assert_eq!(
        frames.last().context("resumed")?.data["actor"],
        "harness-operator"
    );
    assert_eq!(stack.tenant_get(&host, "/").await?.status(), StatusCode::OK);

    let (status, body) = act(&stack, "shop", "decommission", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    feed.until(Duration::from_secs(90), |f| {
        f.data["state"] == "decommissioned"
    })
    .await?;
    assert_nothing_left(&stack, "shop", &tenant_id).await?;
    for action in [
        "retry",
        "decommission",
        "suspend",
        "resume",
        "invitation/reissue",
        "emails/welcome/resend",
    ] {
        let (status, body) = act(&stack, "shop", action, &stack.owner_token).await?;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or("")
                .starts_with("tenant shop is decommissioned"),
            "{body}"
        );
    }
    Ok(())
}

/// `retry` through the API: from `failed` once the fault is repaired, and for a tenant
/// whose workflow an operator terminated, where it starts a new run that adopts what the
/// tenant already holds (after which decommission works and leaves nothing behind).
#[tokio::test(flavor = "multi_thread")]
async fn retry_through_the_api_after_a_failure_and_after_a_terminated_workflow()
-> anyhow::Result<()> {
    let stack = Stack::start_with(StackOptions {
        worker_env: vec![("TP_FAIL_PHASE".into(), "allocate_identity".into())],
        ..Default::default()
    })
    .await?;
    let created = stack
        .create_tenant("desk", "free", "d@example.com", None)
        .await?;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let tenant_id = created.body["id"].as_str().context("id")?.to_owned();
    let workflow_id = created.body["workflow_id"]
        .as_str()
        .context("workflow id")?
        .to_owned();
    stack
        .wait_for_state("desk", "failed", Duration::from_secs(150))
        .await?;

    let (status, body) = act(&stack, "desk", "suspend", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["detail"],
        "cannot suspend a tenant that is failed; allowed from: active"
    );

    stack.kill_worker(ProcessSignal::SIGTERM).await?;
    stack.remove_worker_env("TP_FAIL_PHASE");
    stack.start_worker().await?;
    let (status, body) = act(&stack, "desk", "retry", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["answer"], "retry accepted from state failed");
    stack
        .wait_for_state("desk", "active", ACTIVE_WITHIN)
        .await?;
    let feed = events(&stack, "desk").await?;
    let retry = feed
        .iter()
        .find(|e| e["kind"] == "retry_requested")
        .context("retry in the feed")?;
    assert_eq!(retry["actor"], "harness-owner");

    // An operator terminates the workflow: no update can reach it any more.
    stack
        .temporal_cli(&[
            "workflow",
            "terminate",
            "--workflow-id",
            &workflow_id,
            "--reason",
            "test",
        ])
        .await?;
    let (status, body) = act(&stack, "desk", "decommission", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("no longer running (its last run was terminated)"),
        "{detail}"
    );
    assert!(detail.contains("retry the tenant"), "{detail}");

    let (status, body) = act(&stack, "desk", "retry", &stack.operator_token).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        body["answer"]
            .as_str()
            .unwrap_or("")
            .contains("a new run was started"),
        "{body}"
    );
    let before = events(&stack, "desk")
        .await?
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .max()
        .unwrap_or(0);
    wait_for_event(&stack, "desk", ACTIVE_WITHIN, |e| {
        e["id"].as_i64().unwrap_or(0) > before
            && e["state"] == "active"
            && e["kind"] == "state_changed"
    })
    .await?;
    let tenant = stack.get_tenant("desk").await?;
    assert_eq!(state_of(&tenant.body), Some("active"), "{}", tenant.body);
    assert_eq!(
        stack
            .tenant_get(&stack.tenant_host("desk"), "/")
            .await?
            .status(),
        StatusCode::OK
    );
    let ledger = stack
        .psql(&format!(
            "SELECT count(*) FROM resources WHERE tenant_id = '{tenant_id}' AND released_at IS NULL"
        ))
        .await?;
    assert_eq!(
        ledger[0][0].as_deref(),
        Some("4"),
        "the new run adopted, not duplicated"
    );
    assert_eq!(live_workloads(&tenant_id).len(), 1, "one workload");

    let (status, body) = act(&stack, "desk", "decommission", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    stack
        .wait_for_state("desk", "decommissioned", Duration::from_secs(90))
        .await?;
    assert_nothing_left(&stack, "desk", &tenant_id).await?;
    Ok(())
}

/// Every lifecycle action the API offers, in the order a state is checked: refusals first,
/// then the email actions (which leave the state as it is).
const ACTIONS: [LifecycleAction; 6] = [
    LifecycleAction::Retry,
    LifecycleAction::Decommission,
    LifecycleAction::Suspend,
    LifecycleAction::Resume,
    LifecycleAction::ReissueInvitation,
    LifecycleAction::ResendEmail,
];

/// The states a tenant rests in long enough to be asked something. `compensating` and
/// `decommissioning` are left out: they last only while releases run, and no test switch
/// holds a release (`TP_SLOW_PHASE` holds forward phases only), so catching them would be a
/// race. The domain's own test covers every action from them; a worker switch that holds a
/// release would let this tour stop there too.
const RESTING_STATES: [TenantState; 5] = [
    TenantState::Provisioning,
    TenantState::Active,
    TenantState::Suspended,
    TenantState::Failed,
    TenantState::Decommissioned,
];

/// The route segment(s) of an action after `…/tenants/{slug}/`.
fn action_path(action: LifecycleAction) -> &'static str {
    match action {
        LifecycleAction::Retry => "retry",
        LifecycleAction::Decommission => "decommission",
        LifecycleAction::Suspend => "suspend",
        LifecycleAction::Resume => "resume",
        LifecycleAction::ReissueInvitation => "invitation/reissue",
        LifecycleAction::ResendEmail => "emails/welcome/resend",
    }
}

/// A walk of tenants through their states that sends every action from each and records
/// which (action, state) pairs it has checked against the domain's table.
struct Tour<'a> {
    stack: &'a Stack,
    checked: HashSet<(LifecycleAction, TenantState)>,
}

impl Tour<'_> {
    /// Sends, from `state`, every action the domain refuses there (409 with the domain's
    /// reason, or for a decommissioned tenant the API's own) and then every allowed email
    /// action (202, waiting for its email). Allowed state-changing actions are left to
    /// [`Tour::moves`], since sending one leaves the state.
    async fn check_state(&mut self, slug: &str, state: TenantState) -> anyhow::Result<()> {
        let shown = self.stack.get_tenant(slug).await?;
        ensure!(
            state_of(&shown.body) == Some(state.as_str()),
            "{slug} is not {state}: {}",
            shown.body
        );
        for action in ACTIONS {
            let Some(reason) = action.refusal(state) else {
                continue;
            };
            let path = action_path(action);
            let (status, body) = act(self.stack, slug, path, &self.stack.owner_token).await?;
            ensure!(
                status == StatusCode::CONFLICT,
                "{path} from {state}: {status} {body}"
            );
            ensure!(
                body["type"] == format!("{PROBLEM}conflict"),
                "{path} from {state}: {body}"
            );
            // A decommissioned tenant's workflow has ended: the API answers for it.
            let expected = if state == TenantState::Decommissioned {
                format!(
                    "tenant {slug} is decommissioned; to use the slug again, request the \
                     tenant anew"
                )
            } else {
                reason
            };
            ensure!(
                body["detail"] == expected.as_str(),
                "{path} from {state}: {body}"
            );
            self.checked.insert((action, state));
        }
        for action in ACTIONS {
            if action.changes_state() || action.refusal(state).is_some() {
                continue;
            }
            let path = action_path(action);
            let before = last_event_id(self.stack, slug).await?;
            let body = self.accepted(slug, action, state).await?;
            ensure!(body["email"].is_string() || action != LifecycleAction::ResendEmail);
            wait_for_event(self.stack, slug, Duration::from_secs(90), |e| {
                e["id"].as_i64().unwrap_or(0) > before
                    && e["kind"]
                        .as_str()
                        .is_some_and(|k| k.starts_with("operator_email"))
            })
            .await
            .with_context(|| format!("the email of {path} from {state}"))?;
        }
        Ok(())
    }

    /// Sends the allowed state-changing `action` from `from` and waits for `to`.
    async fn moves(
        &mut self,
        slug: &str,
        action: LifecycleAction,
        from: TenantState,
        to: TenantState,
        within: Duration,
    ) -> anyhow::Result<()> {
        ensure!(action.changes_state(), "{action:?} changes no state");
        self.accepted(slug, action, from).await?;
        self.stack.wait_for_state(slug, to.as_str(), within).await?;
        Ok(())
    }

    /// Sends an action the domain allows from `state`: 202 with the workflow's answer.
    async fn accepted(
        &mut self,
        slug: &str,
        action: LifecycleAction,
        state: TenantState,
    ) -> anyhow::Result<Value> {
        ensure!(
            action.refusal(state).is_none(),
            "the domain refuses {action:?} from {state}"
        );
        let path = action_path(action);
        let (status, body) = act(self.stack, slug, path, &self.stack.owner_token).await?;
        ensure!(
            status == StatusCode::ACCEPTED,
            "{path} from {state}: {status} {body}"
        );
        ensure!(
            body["action"] == action.as_str()
                && body["answer"] == format!("{} accepted from state {state}", action.as_str()),
            "{path} from {state}: {body}"
        );
        self.checked.insert((action, state));
        Ok(body)
    }
}

/// Every lifecycle action from every state a tenant rests in, through the API, with the
/// domain's table (`LifecycleAction::allowed_from` and `refusal`) as the oracle: a refused
/// action is 409 with the domain's reason, an allowed one 202 with the workflow's answer.
/// One stack: first with a failing phase (a tenant goes `failed`, is retried, fails again
/// and is decommissioned), then with a slow deploy that holds new tenants in
/// `provisioning` long enough to ask them everything. Each tenant is asked the refused and
/// the email actions first and then the one action that moves it on.
#[tokio::test(flavor = "multi_thread")]
async fn every_lifecycle_action_from_every_state() -> anyhow::Result<()> {
    use LifecycleAction::*;
    use TenantState::*;

    let stack = Stack::start_with(StackOptions {
        worker_env: vec![("TP_FAIL_PHASE".into(), "allocate_identity".into())],
        ..Default::default()
    })
    .await?;
    let mut tour = Tour {
        stack: &stack,
        checked: HashSet::new(),
    };
    let settle = Duration::from_secs(150);

    // failed: retry (which fails again, the fault being still there), then decommission.
    let created = stack
        .create_tenant("broken", "free", "b@example.com", None)
        .await?;
    ensure!(created.status == StatusCode::ACCEPTED, "{}", created.body);
    stack.wait_for_state("broken", "failed", settle).await?;
    tour.check_state("broken", Failed).await?;
    let before = last_event_id(&stack, "broken").await?;
    tour.accepted("broken", Retry, Failed).await?;
    wait_for_event(&stack, "broken", settle, |e| {
        e["id"].as_i64().unwrap_or(0) > before
            && e["kind"] == "state_changed"
            && e["state"] == "failed"
    })
    .await?;
    tour.check_state("broken", Failed).await?;
    tour.moves("broken", Decommission, Failed, Decommissioned, settle)
        .await?;
    tour.check_state("broken", Decommissioned).await?;

    // The fault repaired, deploy held long enough to ask a provisioning tenant everything.
    stack.kill_worker(ProcessSignal::SIGTERM).await?;
    stack.remove_worker_env("TP_FAIL_PHASE");
    stack.set_worker_env("TP_SLOW_PHASE", "deploy:15000");
    stack.start_worker().await?;
    for slug in ["tour", "early", "paused"] {
        let created = stack
            .create_tenant(slug, "growth", "t@example.com", None)
            .await?;
        ensure!(created.status == StatusCode::ACCEPTED, "{}", created.body);
    }

    // provisioning: refusals on one tenant, decommission on another.
    tour.check_state("tour", Provisioning).await?;
    tour.moves("early", Decommission, Provisioning, Decommissioned, settle)
        .await?;
    tour.check_state("early", Decommissioned).await?;

    // active → suspended → active → decommissioned.
    stack
        .wait_for_state("tour", "active", ACTIVE_WITHIN)
        .await?;
    tour.check_state("tour", Active).await?;
    tour.moves("tour", Suspend, Active, Suspended, settle)
        .await?;
    tour.check_state("tour", Suspended).await?;
    tour.moves("tour", Resume, Suspended, Active, settle)
        .await?;
    tour.moves("tour", Decommission, Active, Decommissioned, settle)
        .await?;
    tour.check_state("tour", Decommissioned).await?;

    // Decommission from suspended, on the third tenant.
    stack
        .wait_for_state("paused", "active", ACTIVE_WITHIN)
        .await?;
    tour.moves("paused", Suspend, Active, Suspended, settle)
        .await?;
    tour.moves("paused", Decommission, Suspended, Decommissioned, settle)
        .await?;

    let every: HashSet<(LifecycleAction, TenantState)> = ACTIONS
        .iter()
        .flat_map(|a| RESTING_STATES.iter().map(move |s| (*a, *s)))
        .collect();
    let missed: Vec<_> = every.difference(&tour.checked).collect();
    ensure!(missed.is_empty(), "never sent: {missed:?}");
    Ok(())
}
