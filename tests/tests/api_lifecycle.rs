//! Lifecycle actions and the live audit feed through the HTTP API, on the whole stack: the
//! API and worker binaries with Temporal, PostgreSQL, Caddy and maildev on loopback.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use reqwest::StatusCode;
use serde_json::Value;
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
    assert_eq!(
        completed,
        [
            "validate",
            "allocate_storage",
            "allocate_identity",
            "allocate_traffic",
            "deploy",
            "verify",
            "mark_active"
        ]
    );
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
