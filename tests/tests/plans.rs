//! Plans size the tenant's workload on a real stack: the service's pool and concurrency
//! limit come from the tenant's plan, and a running service whose settings no longer match
//! is restarted when a worker starts, while one with unchanged settings is kept.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::Value;
use tenant_tests::{ProcessSignal, Stack};

use common::{ACTIVE_WITHIN, events, live_workloads, wait_for_event};

/// A plan's sizing as the control plane holds it.
#[derive(Debug, PartialEq, Eq)]
struct Sizing {
    db_connection_limit: i64,
    workload_db_pool: i64,
    workload_max_concurrent_requests: i64,
}

async fn plan_sizing(stack: &Stack, plan: &str) -> anyhow::Result<Sizing> {
    let rows = stack
        .psql(&format!(
            "SELECT db_connection_limit, workload_db_pool, workload_max_concurrent_requests \
             FROM plans WHERE name = '{plan}'"
        ))
        .await?;
    let row = rows.first().with_context(|| format!("plan {plan}"))?;
    let number = |i: usize| -> anyhow::Result<i64> {
        Ok(row[i].as_deref().context("a plan column")?.parse()?)
    };
    Ok(Sizing {
        db_connection_limit: number(0)?,
        workload_db_pool: number(1)?,
        workload_max_concurrent_requests: number(2)?,
    })
}

/// The one live service of the tenant and its environment, read from /proc.
fn service_process(tenant_id: &str) -> anyhow::Result<(i32, HashMap<String, String>)> {
    let pids = live_workloads(tenant_id);
    let [pid] = pids.as_slice() else {
        bail!("expected one service process of {tenant_id}, found {pids:?}");
    };
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let env = environ
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    Ok((*pid, env))
}

/// The service's readiness answer, through the platform listener.
async fn readiness(stack: &Stack, slug: &str) -> anyhow::Result<Value> {
    let answer = stack
        .platform_get(&stack.tenant_host(slug), "/healthz/ready")
        .await?;
    anyhow::ensure!(
        answer.status() == StatusCode::OK,
        "not ready: {}",
        answer.status()
    );
    Ok(answer.json().await?)
}

/// The tenant's role's connection limit on the storage server.
async fn role_connection_limit(stack: &Stack, tenant_id: &str) -> anyhow::Result<i64> {
    let role = common::database_of(tenant_id);
    let rows = stack
        .psql_on(
            "postgres",
            &format!("SELECT rolconnlimit FROM pg_roles WHERE rolname = '{role}'"),
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|row| row[0].as_deref())
        .context("the tenant role")?
        .parse()?)
}

/// Checks that every place the sizing shows agrees with the plan: the tenant as the API
/// shows it, the service's environment and readiness answer, and the role's limit.
/// Returns the service's pid.
async fn assert_sized_by_plan(
    stack: &Stack,
    slug: &str,
    plan: &str,
    tenant_id: &str,
) -> anyhow::Result<i32> {
    let wanted = plan_sizing(stack, plan).await?;

    let tenant = stack.get_tenant(slug).await?.body;
    let sizing = &tenant["sizing"];
    assert_eq!(sizing["plan"], plan, "{tenant}");
    assert_eq!(
        Sizing {
            db_connection_limit: sizing["db_connection_limit"].as_i64().context("limit")?,
            workload_db_pool: sizing["workload_db_pool"].as_i64().context("pool")?,
            workload_max_concurrent_requests: sizing["workload_max_concurrent_requests"]
                .as_i64()
                .context("concurrency")?,
        },
        wanted,
        "the API shows the plan's sizing"
    );

    let (pid, env) = service_process(tenant_id)?;
    assert_eq!(
        env.get("TENANT_DB_POOL"),
        Some(&wanted.workload_db_pool.to_string())
    );
    assert_eq!(
        env.get("TENANT_MAX_CONCURRENT_REQUESTS"),
        Some(&wanted.workload_max_concurrent_requests.to_string())
    );
    let digest = env
        .get("TENANT_SETTINGS_DIGEST")
        .context("the service has a settings digest")?;
    assert_eq!(digest.len(), 64, "{digest}");

    let ready = readiness(stack, slug).await?;
    assert_eq!(ready["tenant_id"], tenant_id);
    assert_eq!(ready["settings_digest"], digest.as_str(), "{ready}");
    assert_eq!(
        ready["sizing"]["db_pool"], wanted.workload_db_pool,
        "{ready}"
    );
    assert_eq!(
        ready["sizing"]["max_concurrent_requests"], wanted.workload_max_concurrent_requests,
        "{ready}"
    );
    let shown = ready.to_string();
    assert!(
        !shown.contains("postgres") && !shown.contains(&env["DATABASE_URL"]),
        "the readiness answer shows no database URL: {shown}"
    );

    assert_eq!(
        role_connection_limit(stack, tenant_id).await?,
        wanted.db_connection_limit
    );
    Ok(pid)
}

/// How many `ensure_workload` activities of the workflow have completed, from its history.
async fn ensures_completed(stack: &Stack, workflow_id: &str) -> anyhow::Result<usize> {
    let out = stack
        .temporal_cli(&[
            "workflow",
            "show",
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
        ])
        .await?;
    let history: Value = serde_json::from_str(&out).context("the history as JSON")?;
    let events = history["events"]
        .as_array()
        .or_else(|| history["history"]["events"].as_array())
        .context("history events")?;
    let kind = |event: &Value| {
        event["eventType"]
            .as_str()
            .unwrap_or_default()
            .replace(['_'], "")
            .to_ascii_lowercase()
    };
    let id = |value: &Value| match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let ensures: Vec<String> = events
        .iter()
        .filter(|e| kind(e).ends_with("activitytaskscheduled"))
        .filter(|e| {
            e["activityTaskScheduledEventAttributes"]["activityType"]["name"] == "ensure_workload"
        })
        .map(|e| id(&e["eventId"]))
        .collect();
    Ok(events
        .iter()
        .filter(|e| kind(e).ends_with("activitytaskcompleted"))
        .filter(|e| {
            ensures.contains(&id(
                &e["activityTaskCompletedEventAttributes"]["scheduledEventId"],
            ))
        })
        .count())
}

/// Restarts the worker (SIGTERM, then a fresh start) and waits until the tenant's saga has
/// completed one more `ensure_workload` than before.
async fn restart_worker_and_wait_for_ensure(
    stack: &Stack,
    workflow_id: &str,
) -> anyhow::Result<()> {
    let before = ensures_completed(stack, workflow_id).await?;
    stack.kill_worker(ProcessSignal::SIGTERM).await?;
    stack.start_worker().await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if ensures_completed(stack, workflow_id).await? > before {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the worker never made sure the service runs\n{}",
            stack.log_tail("worker", 30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A free and an enterprise tenant each get their own plan's sizing: in the API, in the
/// service's environment and readiness answer, and in the role's connection limit.
#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_gets_its_plans_sizing() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    for (slug, plan) in [("lite", "free"), ("bigco", "enterprise")] {
        let created = stack
            .create_tenant(slug, plan, &format!("{slug}@example.com"), None)
            .await?;
        assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    }

    let mut digests = Vec::new();
    for (slug, plan) in [("lite", "free"), ("bigco", "enterprise")] {
        let tenant = stack.wait_for_state(slug, "active", ACTIVE_WITHIN).await?;
        let tenant_id = tenant["id"].as_str().context("tenant id")?.to_owned();
        assert_sized_by_plan(&stack, slug, plan, &tenant_id).await?;
        digests.push(service_process(&tenant_id)?.1["TENANT_SETTINGS_DIGEST"].clone());
    }

    // The seeded plans differ, and the larger one is larger.
    let free = plan_sizing(&stack, "free").await?;
    let enterprise = plan_sizing(&stack, "enterprise").await?;
    assert!(enterprise.workload_db_pool > free.workload_db_pool);
    assert!(enterprise.workload_max_concurrent_requests > free.workload_max_concurrent_requests);
    assert_ne!(digests[0], digests[1]);

    // A pool that would not leave room for the lock and the platform is refused.
    let refused = stack
        .psql("UPDATE plans SET workload_db_pool = db_connection_limit - 1 WHERE name = 'free'")
        .await;
    let refusal = format!(
        "{:#}",
        refused.expect_err("the CHECK constraint refuses it")
    );
    assert!(
        refusal.contains("plans_workload_db_pool_fits_connection_limit"),
        "{refusal}"
    );
    assert_eq!(plan_sizing(&stack, "free").await?, free);
    Ok(())
}

/// After an operator changes a plan's sizing, a worker start restarts the tenant's service
/// with the new settings (a new process; the tenant stays active and served over HTTPS) and
/// says so in the audit feed; a worker start with unchanged settings keeps the process.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_plan_restarts_the_service_when_a_worker_starts() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack
        .create_tenant("elastic", "free", "e@example.com", None)
        .await?;
    let tenant = stack
        .wait_for_state("elastic", "active", ACTIVE_WITHIN)
        .await?;
    let tenant_id = tenant["id"].as_str().context("tenant id")?.to_owned();
    let workflow_id = tenant["workflow_id"]
        .as_str()
        .context("workflow id")?
        .to_owned();
    let host = stack.tenant_host("elastic");
    let first = assert_sized_by_plan(&stack, "elastic", "free", &tenant_id).await?;

    // Unchanged settings: the running service is adopted as it is.
    restart_worker_and_wait_for_ensure(&stack, &workflow_id).await?;
    assert_eq!(
        service_process(&tenant_id)?.0,
        first,
        "the service was restarted"
    );
    let feed = events(&stack, "elastic").await?;
    assert!(
        !feed
            .iter()
            .any(|e| e["kind"] == "workload_settings_changed" || e["kind"] == "workload_restarted"),
        "nothing was restarted: {feed:#?}"
    );

    stack
        .psql(
            "UPDATE plans SET db_connection_limit = 7, workload_db_pool = 4, \
             workload_max_concurrent_requests = 40 WHERE name = 'free'",
        )
        .await?;
    // The API shows the plan as it reads now, before the service picks it up.
    assert_eq!(
        stack.get_tenant("elastic").await?.body["sizing"]["workload_db_pool"],
        4
    );

    restart_worker_and_wait_for_ensure(&stack, &workflow_id).await?;
    let feed = wait_for_event(&stack, "elastic", Duration::from_secs(30), |e| {
        e["kind"] == "workload_settings_changed"
    })
    .await?;
    let restart = feed
        .iter()
        .find(|e| e["kind"] == "workload_settings_changed")
        .context("the restart's entry")?;
    let message = restart["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("restarting tenant service: settings changed"),
        "{message}"
    );
    assert_eq!(restart["detail"]["workload_db_pool"], 4, "{restart}");
    assert_eq!(restart["detail"]["workload_max_concurrent_requests"], 40);
    assert_ne!(
        restart["detail"]["previous_settings_digest"], restart["detail"]["settings_digest"],
        "{restart}"
    );
    assert!(
        !feed.iter().any(|e| e["kind"] == "workload_restarted"),
        "a restart for changed settings is not reported as a lost service"
    );

    let second = assert_sized_by_plan(&stack, "elastic", "free", &tenant_id).await?;
    assert_ne!(second, first, "the service runs as a new process");
    assert_eq!(
        restart["detail"]["settings_digest"],
        service_process(&tenant_id)?.1["TENANT_SETTINGS_DIGEST"].as_str()
    );
    assert_eq!(stack.get_tenant("elastic").await?.body["state"], "active");
    let page = stack.tenant_get(&host, "/").await?;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["x-tenant-id"].to_str()?, tenant_id);

    // Unchanged again: kept.
    restart_worker_and_wait_for_ensure(&stack, &workflow_id).await?;
    assert_eq!(service_process(&tenant_id)?.0, second);
    let restarts = events(&stack, "elastic")
        .await?
        .iter()
        .filter(|e| e["kind"] == "workload_settings_changed")
        .count();
    assert_eq!(restarts, 1);
    Ok(())
}
