//! Checks shared by the saga's integration tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tenant_tests::Stack;

pub const ACTIVE_WITHIN: Duration = Duration::from_secs(120);

/// The phases a provisioning round completes, in order, up to `active`.
pub const PROVISIONING_PHASES: [&str; 7] = [
    "validate",
    "allocate_storage",
    "allocate_identity",
    "allocate_traffic",
    "deploy",
    "verify",
    "mark_active",
];

/// The tenant's audit feed, oldest first, across incarnations.
pub async fn events(stack: &Stack, slug: &str) -> anyhow::Result<Vec<Value>> {
    let path = format!(
        "/api/v1/organizations/{}/tenants/{slug}/events?limit=1000",
        stack.org
    );
    let answer = stack
        .api(Method::GET, &path, Some(&stack.owner_token), None)
        .await?;
    anyhow::ensure!(
        answer.status == StatusCode::OK,
        "events: {} {}",
        answer.status,
        answer.body
    );
    let list = answer.body.get("events").cloned().unwrap_or(answer.body);
    Ok(list.as_array().cloned().unwrap_or_default())
}

/// The id of the newest event in the tenant's feed (0 when it has none).
pub async fn last_event_id(stack: &Stack, slug: &str) -> anyhow::Result<i64> {
    Ok(events(stack, slug)
        .await?
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .max()
        .unwrap_or(0))
}

/// Waits until the feed holds an event for which `wanted` is true; returns the feed.
pub async fn wait_for_event(
    stack: &Stack,
    slug: &str,
    timeout: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> anyhow::Result<Vec<Value>> {
    wait_for_feed(stack, slug, timeout, |feed| feed.iter().any(&wanted)).await
}

/// Waits until `wanted` is true of the whole feed; returns the feed.
pub async fn wait_for_feed(
    stack: &Stack,
    slug: &str,
    timeout: Duration,
    wanted: impl Fn(&[Value]) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + timeout;
    loop {
        let feed = events(stack, slug).await?;
        if wanted(&feed) {
            return Ok(feed);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the awaited event never came; feed: {}\n{}",
            serde_json::to_string_pretty(&feed).unwrap_or_default(),
            stack.log_tail("worker", 30)
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Pids of live `tenant-service` processes serving `tenant_id`, found through /proc.
pub fn live_workloads(tenant_id: &str) -> Vec<i32> {
    let wanted = format!("TENANT_ID={tenant_id}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let is_tenant = environ
            .split(|b| *b == 0)
            .any(|var| var == wanted.as_bytes());
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if is_tenant && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// The tenant's database name, derived from its id.
pub fn database_of(tenant_id: &str) -> String {
    format!("t_{}", tenant_id.replace('-', ""))
}

/// Asserts that the ledger and the real systems agree that nothing of the tenant is left:
/// no live ledger row, no database, no role, no route, no workload process.
pub async fn assert_nothing_left(stack: &Stack, slug: &str, tenant_id: &str) -> anyhow::Result<()> {
    let live = stack
        .psql(&format!(
            "SELECT kind FROM resources WHERE tenant_id = '{tenant_id}' AND released_at IS NULL"
        ))
        .await?;
    assert!(live.is_empty(), "live ledger rows: {live:?}");
    let name = database_of(tenant_id);
    let found = stack
        .psql_on(
            "postgres",
            &format!(
                "SELECT (SELECT count(*) FROM pg_database WHERE datname = '{name}'), (SELECT count(*) FROM pg_roles WHERE rolname = '{name}')"
            ),
        )
        .await?;
    assert_eq!(
        found[0],
        [Some("0".to_string()), Some("0".to_string())],
        "database or role left"
    );
    let label = stack
        .tenant_host(slug)
        .split('.')
        .next()
        .context("label")?
        .to_owned();
    for dir in ["routes", "public"] {
        assert!(
            !stack.runtime_dir.join(dir).join(&label).exists(),
            "{dir}/{label} left"
        );
    }
    assert!(
        live_workloads(tenant_id).is_empty(),
        "workload process left"
    );
    let identity = stack
        .psql(&format!(
            "SELECT (SELECT count(*) FROM realms WHERE tenant_id = '{tenant_id}'), (SELECT count(*) FROM invitations WHERE tenant_id = '{tenant_id}')"
        ))
        .await?;
    assert_eq!(
        identity[0],
        [Some("0".to_string()), Some("0".to_string())],
        "realm or invitation left"
    );
    Ok(())
}

/// The kinds released, in the order the feed shows them, for one reason.
pub fn released_in_order(feed: &[Value], since_id: i64) -> Vec<String> {
    feed.iter()
        .filter(|e| e["id"].as_i64().unwrap_or(0) > since_id && e["kind"] == "resource_released")
        .filter_map(|e| e["phase"].as_str().map(str::to_owned))
        .collect()
}

/// Sends a lifecycle action as a Temporal update, as an operator could with the Temporal
/// CLI; returns the CLI's output, or its error (a refusal by the workflow's validator).
pub async fn temporal_update(
    stack: &Stack,
    workflow_id: &str,
    action: &str,
) -> anyhow::Result<String> {
    let input = format!(r#"{{"action":"{action}","actor":"ops-test"}}"#);
    stack
        .temporal_cli(&[
            "workflow",
            "update",
            "execute",
            "--workflow-id",
            workflow_id,
            "--name",
            "request_lifecycle",
            "--input",
            &input,
        ])
        .await
}

/// Sends a lifecycle action as a Temporal signal (what the Web UI does).
pub async fn temporal_signal(
    stack: &Stack,
    workflow_id: &str,
    action: &str,
) -> anyhow::Result<String> {
    let input = format!(r#"{{"action":"{action}","actor":"ops-ui"}}"#);
    stack
        .temporal_cli(&[
            "workflow",
            "signal",
            "--workflow-id",
            workflow_id,
            "--name",
            "lifecycle",
            "--input",
            &input,
        ])
        .await
}

/// `POST …/tenants/{slug}/<action>` with `token`; `action` may span segments.
pub async fn act(
    stack: &Stack,
    slug: &str,
    action: &str,
    token: &str,
) -> anyhow::Result<(StatusCode, Value)> {
    let path = format!(
        "/api/v1/organizations/{}/tenants/{slug}/{action}",
        stack.org
    );
    let answer = stack.api(Method::POST, &path, Some(token), None).await?;
    Ok((answer.status, answer.body))
}

/// A token of a new principal holding `role` in the stack's organisation.
pub async fn token_with_role(
    stack: &Stack,
    name: &str,
    role: tenant_store::access::Role,
) -> anyhow::Result<String> {
    let store = stack.store().await?;
    let principal = store.create_principal(name, false).await?;
    store.add_membership(principal.id, &stack.org, role).await?;
    Ok(store
        .create_token(principal.id, "test", None)
        .await?
        .expose()
        .to_owned())
}
