//! Provisioning a tenant end to end on a real stack: Temporal, PostgreSQL, Caddy, maildev,
//! the worker and the API, all on loopback.

use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tenant_tests::{ProcessSignal, Stack, StackOptions};

mod common;

use common::{ACTIVE_WITHIN, PROVISIONING_PHASES, events, live_workloads, wait_for_feed};

/// A request becomes an active tenant whose host serves its workload over HTTPS, its first
/// admin gets three emails in order, the audit feed shows every phase in order, and the
/// Web UI's filter `TenantState = 'active'` finds its workflow.
#[tokio::test(flavor = "multi_thread")]
async fn request_becomes_an_active_tenant() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let email = format!("admin-{}@example.com", stack.id);

    let created = stack
        .create_tenant("production", "growth", &email, Some("production-eu"))
        .await?;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let tenant_id = created.body["id"].as_str().context("tenant id")?.to_owned();
    assert_eq!(created.body["state"], "provisioning");

    let tenant = stack
        .wait_for_state("production", "active", ACTIVE_WITHIN)
        .await?;
    assert_eq!(tenant["id"], tenant_id.as_str());
    let host = stack.tenant_host("production");
    assert_eq!(tenant["host"], host.as_str());

    // The public route reaches this tenant's own workload over HTTPS with Caddy's CA.
    let page = stack.tenant_get(&host, "/").await?;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["x-tenant-id"].to_str()?, tenant_id);
    assert!(page.text().await?.contains("production-eu"));

    // Three emails to the first admin, in order.
    let mails = stack
        .wait_for_emails(&email, 3, Duration::from_secs(30))
        .await?;
    let subjects: Vec<&str> = mails.iter().filter_map(|m| m["subject"].as_str()).collect();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    assert!(
        subjects[0].to_lowercase().contains("welcome"),
        "{subjects:?}"
    );
    assert!(
        subjects[1].to_lowercase().contains("console"),
        "{subjects:?}"
    );
    assert!(
        subjects[2].to_lowercase().contains("getting started"),
        "{subjects:?}"
    );

    // The audit feed: every phase started and completed, in order, then active, then emails.
    // A message can reach the mailbox a moment before its `email_sent` event commits.
    let feed = wait_for_feed(&stack, "production", Duration::from_secs(30), |feed| {
        feed.iter().filter(|e| e["kind"] == "email_sent").count() >= 3
    })
    .await?;
    let completed: Vec<&str> = feed
        .iter()
        .filter(|e| e["kind"] == "phase_completed")
        .filter_map(|e| e["phase"].as_str())
        .collect();
    assert_eq!(completed, PROVISIONING_PHASES);
    let kinds: Vec<&str> = feed.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"request_accepted"), "{kinds:?}");
    let active_at = feed
        .iter()
        .position(|e| e["state"] == "active")
        .context("no active event")?;
    let mark_active_at = feed
        .iter()
        .position(|e| e["kind"] == "phase_completed" && e["phase"] == "mark_active")
        .context("no mark_active event")?;
    assert!(mark_active_at < active_at);
    assert_eq!(
        kinds.iter().filter(|k| **k == "email_sent").count(),
        3,
        "{kinds:?}"
    );
    let ids: Vec<i64> = feed.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "event ids in order");

    // The ledger holds one live allocation of each kind.
    let ledger = stack
        .psql(&format!(
            "SELECT kind FROM resources WHERE tenant_id = '{tenant_id}' AND released_at IS NULL ORDER BY id"
        ))
        .await?;
    let kinds: Vec<String> = ledger
        .into_iter()
        .filter_map(|row| row[0].clone())
        .collect();
    assert_eq!(kinds, ["storage", "identity", "traffic", "workload"]);

    // The Web UI's filter finds it (visibility is eventually consistent: poll).
    let workflow_id = tenant["workflow_id"]
        .as_str()
        .context("workflow id")?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = stack
            .temporal_cli(&[
                "workflow",
                "list",
                "--query",
                "TenantState = 'active'",
                "--output",
                "json",
            ])
            .await?;
        if listed.contains(&workflow_id) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "TenantState = 'active' did not find {workflow_id}: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Before `active` the public route answers 503 while the platform route already reaches
/// the workload; a phase that keeps failing unwinds everything and ends `failed`.
#[tokio::test(flavor = "multi_thread")]
async fn public_route_answers_503_until_active() -> anyhow::Result<()> {
    let options = StackOptions {
        worker_env: vec![("TP_FAIL_PHASE".into(), "mark_active".into())],
        ..Default::default()
    };
    let stack = Stack::start_with(options).await?;
    let created = stack
        .create_tenant("staging", "free", "owner@example.com", None)
        .await?;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let host = stack.tenant_host("staging");

    // Wait until mark_active is being retried: the route and the workload exist.
    let deadline = Instant::now() + ACTIVE_WITHIN;
    loop {
        let feed = events(&stack, "staging").await?;
        if feed
            .iter()
            .any(|e| e["kind"] == "phase_failed" && e["phase"] == "mark_active")
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "mark_active never failed: {feed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let public = stack.tenant_get(&host, "/").await?;
    assert_eq!(public.status(), StatusCode::SERVICE_UNAVAILABLE);
    let platform = stack.platform_get(&host, "/healthz/ready").await?;
    assert_eq!(platform.status(), StatusCode::OK);

    // After its retries the phase fails and everything is released, newest first.
    let tenant = stack
        .wait_for_state("staging", "failed", Duration::from_secs(120))
        .await?;
    assert_eq!(tenant["last_error"]["phase"], "mark_active");
    assert!(
        tenant["last_error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("injected failure"),
        "{tenant}"
    );
    let tenant_id = tenant["id"].as_str().context("id")?;
    let live = stack
        .psql(&format!(
            "SELECT count(*) FROM resources WHERE tenant_id = '{tenant_id}' AND released_at IS NULL"
        ))
        .await?;
    assert_eq!(live[0][0].as_deref(), Some("0"));
    let released: Vec<String> = events(&stack, "staging")
        .await?
        .iter()
        .filter(|e| e["kind"] == "resource_released")
        .filter_map(|e| e["phase"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        released,
        [
            "deploy",
            "allocate_traffic",
            "allocate_identity",
            "allocate_storage"
        ]
    );
    assert_eq!(
        stack.tenant_get(&host, "/").await?.status(),
        StatusCode::NOT_FOUND
    );
    assert!(live_workloads(tenant_id).is_empty());
    let databases = stack
        .psql(&format!(
            "SELECT count(*) FROM pg_database WHERE datname = 't_{}'",
            tenant_id.replace('-', "")
        ))
        .await?;
    assert_eq!(databases[0][0].as_deref(), Some("0"));
    Ok(())
}

/// `name: "Production"` and an uppercase slug are refused field by field, and nothing is
/// written, allocated or started.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_names_are_refused_before_anything_happens() -> anyhow::Result<()> {
    let stack = Stack::start().await?;

    let answer = stack
        .create_tenant("production", "growth", "a@example.com", Some("Production"))
        .await?;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let errors = answer.body["errors"].as_array().context("field errors")?;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["field"], "name");
    assert_eq!(errors[0]["code"], "pattern");

    let answer = stack
        .create_tenant("Production", "growth", "a@example.com", None)
        .await?;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(answer.body["errors"][0]["field"], "slug");

    let rows = stack
        .psql("SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM audit_events), (SELECT count(*) FROM resources)")
        .await?;
    assert_eq!(
        rows[0],
        [Some("0".into()), Some("0".into()), Some("0".into())]
    );
    let listed = stack
        .temporal_cli(&[
            "workflow",
            "count",
            "--query",
            "WorkflowType = 'ProvisionTenant'",
        ])
        .await?;
    assert!(
        listed.contains("Total: 0") || listed.trim().ends_with(": 0") || listed.trim() == "0",
        "{listed}"
    );
    assert!(
        std::fs::read_dir(stack.runtime_dir.join("routes"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
    Ok(())
}

/// The same create request twice yields one tenant and one workflow run; a different
/// request for the held slot is refused.
#[tokio::test(flavor = "multi_thread")]
async fn identical_requests_are_one_tenant() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (first, second) = tokio::join!(
        stack.create_tenant("shop", "free", "ops@example.com", None),
        stack.create_tenant("shop", "free", "ops@example.com", None),
    );
    let (first, second) = (first?, second?);
    for answer in [&first, &second] {
        assert!(
            answer.status.is_success(),
            "{} {}",
            answer.status,
            answer.body
        );
    }
    assert_eq!(first.body["id"], second.body["id"]);

    let tenant = stack
        .wait_for_state("shop", "active", ACTIVE_WITHIN)
        .await?;
    let again = stack
        .create_tenant("shop", "free", "ops@example.com", None)
        .await?;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["id"], tenant["id"]);
    assert_eq!(again.body["run_id"], tenant["run_id"]);

    let different = stack
        .create_tenant("shop", "growth", "ops@example.com", None)
        .await?;
    assert_eq!(different.status, StatusCode::CONFLICT, "{}", different.body);

    let workflow_id = tenant["workflow_id"].as_str().context("workflow id")?;
    let runs = stack
        .temporal_cli(&[
            "workflow",
            "list",
            "--query",
            &format!("WorkflowId = '{workflow_id}'"),
            "--output",
            "json",
        ])
        .await?;
    let runs: Value = serde_json::from_str(&runs).unwrap_or(json!([]));
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    let rows = stack.psql("SELECT count(*) FROM tenants").await?;
    assert_eq!(rows[0][0].as_deref(), Some("1"));
    Ok(())
}

/// SIGKILL the worker while the deploy phase holds (its workload already started), start
/// it again: the tenant becomes active, nothing is allocated twice and one workload runs.
#[tokio::test(flavor = "multi_thread")]
async fn worker_killed_during_deploy_recovers() -> anyhow::Result<()> {
    let options = StackOptions {
        worker_env: vec![("TP_SLOW_PHASE".into(), "deploy:6000".into())],
        ..Default::default()
    };
    let stack = Stack::start_with(options).await?;
    let created = stack
        .create_tenant("crm", "growth", "it@example.com", None)
        .await?;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let tenant_id = created.body["id"].as_str().context("id")?.to_owned();

    // Wait until the deploy attempt has started the workload, then kill the worker.
    let deadline = Instant::now() + ACTIVE_WITHIN;
    loop {
        let started = !live_workloads(&tenant_id).is_empty();
        let ready = stack
            .platform_get(&stack.tenant_host("crm"), "/healthz/ready")
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if started && ready {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the workload never started\n{}",
            stack.log_tail("worker", 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let feed = events(&stack, "crm").await?;
    assert!(
        !feed
            .iter()
            .any(|e| e["kind"] == "phase_completed" && e["phase"] == "deploy"),
        "the kill must land inside the deploy phase"
    );
    stack.kill_worker(ProcessSignal::SIGKILL).await?;
    let survivor = live_workloads(&tenant_id);
    assert_eq!(survivor.len(), 1, "the workload survives its worker");
    stack.start_worker().await?;

    stack
        .wait_for_state("crm", "active", Duration::from_secs(180))
        .await?;
    assert_eq!(
        live_workloads(&tenant_id),
        survivor,
        "the same single workload serves the tenant"
    );
    let allocations = stack
        .psql(&format!("SELECT kind, count(*) FROM resources WHERE tenant_id = '{tenant_id}' GROUP BY kind ORDER BY kind"))
        .await?;
    assert_eq!(allocations.len(), 4, "{allocations:?}");
    assert!(
        allocations.iter().all(|row| row[1].as_deref() == Some("1")),
        "{allocations:?}"
    );
    let database = format!("t_{}", tenant_id.replace('-', ""));
    let starts = stack
        .psql_on(&database, "SELECT count(*) FROM service_starts")
        .await?;
    assert_eq!(
        starts[0][0].as_deref(),
        Some("1"),
        "the workload was started once"
    );
    let feed = events(&stack, "crm").await?;
    assert!(
        feed.iter()
            .any(|e| e["kind"] == "phase_started" && e["phase"] == "deploy" && e["attempt"] == 2),
        "deploy was retried"
    );
    Ok(())
}

/// Concurrent requests cannot overrun the plan's tenant quota; malformed slugs and a
/// doubled Authorization header are refused cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn quota_holds_under_concurrent_requests() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let requests: Vec<_> = (1..=6)
        .map(|i| {
            let stack = &stack;
            async move {
                stack
                    .create_tenant(&format!("q{i}"), "free", "q@example.com", None)
                    .await
            }
        })
        .collect();
    let answers = futures_join_all(requests).await?;
    let accepted = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.status == StatusCode::CONFLICT)
        .count();
    assert_eq!(
        (accepted, refused),
        (3, 3),
        "the free plan allows 3 tenants per organisation"
    );
    let rows = stack.psql("SELECT count(*) FROM tenants").await?;
    assert_eq!(rows[0][0].as_deref(), Some("3"));

    let path = format!("/api/v1/organizations/{}/tenants/a%00b", stack.org);
    let answer = stack
        .api(reqwest::Method::GET, &path, Some(&stack.owner_token), None)
        .await?;
    // A slug that breaks the naming rule (here a NUL byte) is refused as the path's `slug`.
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(answer.body["errors"][0]["field"], "slug", "{}", answer.body);

    let answer = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/organizations/{}/tenants",
            stack.api_url, stack.org
        ))
        .header("Authorization", format!("Bearer {}", stack.owner_token))
        .header("Authorization", format!("Bearer {}", stack.operator_token))
        .send()
        .await?;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

async fn futures_join_all<F, T>(futures: Vec<F>) -> anyhow::Result<Vec<T>>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut out = Vec::new();
    let results = futures::future::join_all(futures).await;
    for r in results {
        out.push(r?);
    }
    Ok(out)
}
