//! The saga's failure paths and lifecycle actions on a real stack: compensation, retry,
//! decommission, suspend and resume, a refused email and a cancelled workflow.

mod common;

use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::Value;
use tenant_tests::{ProcessSignal, Stack, StackOptions};

use common::*;

fn id_of(tenant: &Value) -> anyhow::Result<String> {
    Ok(tenant["id"].as_str().context("tenant id")?.to_owned())
}

fn workflow_of(tenant: &Value) -> anyhow::Result<String> {
    Ok(tenant["workflow_id"]
        .as_str()
        .context("workflow id")?
        .to_owned())
}

/// A failing phase ends `failed` with every allocated resource released newest first and
/// the history intact; once the fault is gone, `retry` reaches `active`.
async fn failing_phase_unwinds_then_retry_succeeds(
    phase: &str,
    allocated_before: &[&str],
) -> anyhow::Result<()> {
    let stack = Stack::start_with(StackOptions {
        worker_env: vec![("TP_FAIL_PHASE".into(), phase.into())],
        ..Default::default()
    })
    .await?;
    let created = stack
        .create_tenant("billing", "growth", "boss@example.com", None)
        .await?;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let tenant = stack
        .wait_for_state("billing", "failed", Duration::from_secs(150))
        .await?;
    let tenant_id = id_of(&tenant)?;

    assert_eq!(tenant["last_error"]["phase"], phase, "{tenant}");
    let reason = tenant["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        reason.contains("injected failure"),
        "the real reason is kept: {reason}"
    );
    assert_nothing_left(&stack, "billing", &tenant_id).await?;

    let feed = events(&stack, "billing").await?;
    let attempts = feed
        .iter()
        .filter(|e| e["kind"] == "phase_failed" && e["phase"] == phase)
        .count();
    assert_eq!(attempts, 5, "every attempt is in the feed");
    let mut expected: Vec<String> = allocated_before
        .iter()
        .rev()
        .map(|p| p.to_string())
        .collect();
    expected.insert(0, phase.to_string());
    if phase == "verify" {
        expected.remove(0);
    }
    assert_eq!(
        released_in_order(&feed, 0),
        expected,
        "released newest first"
    );
    let states: Vec<&str> = feed.iter().filter_map(|e| e["state"].as_str()).collect();
    let compensating = states
        .iter()
        .position(|s| *s == "compensating")
        .context("compensating state")?;
    assert_eq!(states.last(), Some(&"failed"));
    assert!(compensating < states.len() - 1);

    // The fault is repaired: restart the worker without the switch and retry.
    stack.kill_worker(ProcessSignal::SIGTERM).await?;
    stack.remove_worker_env("TP_FAIL_PHASE");
    stack.start_worker().await?;
    temporal_update(&stack, &workflow_of(&tenant)?, "retry").await?;
    stack
        .wait_for_state("billing", "active", ACTIVE_WITHIN)
        .await?;
    let page = stack.tenant_get(&stack.tenant_host("billing"), "/").await?;
    assert_eq!(page.status(), StatusCode::OK);
    let feed = events(&stack, "billing").await?;
    assert!(feed.len() > attempts, "the earlier history is still there");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_failure_unwinds_and_retries() -> anyhow::Result<()> {
    failing_phase_unwinds_then_retry_succeeds("allocate_storage", &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_failure_unwinds_and_retries() -> anyhow::Result<()> {
    failing_phase_unwinds_then_retry_succeeds("allocate_identity", &["allocate_storage"]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn traffic_failure_unwinds_and_retries() -> anyhow::Result<()> {
    failing_phase_unwinds_then_retry_succeeds(
        "allocate_traffic",
        &["allocate_storage", "allocate_identity"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_failure_unwinds_and_retries() -> anyhow::Result<()> {
    failing_phase_unwinds_then_retry_succeeds(
        "deploy",
        &["allocate_storage", "allocate_identity", "allocate_traffic"],
    )
    .await
}

/// Suspend and resume, seen through the tenant's host name; wrong-state actions are refused
/// with a reason; decommission releases everything and frees the slot, and provisioning the
/// same slug again gets the same tenant id with the earlier history still readable.
#[tokio::test(flavor = "multi_thread")]
async fn suspend_resume_decommission_and_provision_again() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack
        .create_tenant("portal", "free", "chief@example.com", None)
        .await?;
    let tenant = stack
        .wait_for_state("portal", "active", ACTIVE_WITHIN)
        .await?;
    let (tenant_id, workflow_id) = (id_of(&tenant)?, workflow_of(&tenant)?);
    let host = stack.tenant_host("portal");

    let refused = temporal_update(&stack, &workflow_id, "resume")
        .await
        .expect_err("resume of an active tenant");
    assert!(
        format!("{refused:#}").contains("cannot resume a tenant that is active"),
        "{refused:#}"
    );

    // Signals whose input is no lifecycle request are recorded and ignored; the workflow
    // goes on taking actions.
    for input in [r#"{"action":"Resume","actor":"alice"}"#, r#""garbage""#] {
        stack
            .temporal_cli(&[
                "workflow",
                "signal",
                "--workflow-id",
                &workflow_id,
                "--name",
                "lifecycle",
                "--input",
                input,
            ])
            .await?;
    }
    let feed = wait_for_feed(&stack, "portal", Duration::from_secs(30), |feed| {
        feed.iter()
            .filter(|e| e["kind"] == "action_refused")
            .count()
            >= 2
    })
    .await?;
    let refused: Vec<&str> = feed
        .iter()
        .filter(|e| e["kind"] == "action_refused")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        refused[0].contains("unknown variant `Resume`"),
        "{refused:?}"
    );
    assert!(
        refused[1].contains("not a lifecycle request"),
        "{refused:?}"
    );

    temporal_update(&stack, &workflow_id, "suspend").await?;
    stack
        .wait_for_state("portal", "suspended", Duration::from_secs(30))
        .await?;
    assert_eq!(
        stack.tenant_get(&host, "/").await?.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The same action as a signal, as the Web UI sends it.
    temporal_signal(&stack, &workflow_id, "resume").await?;
    stack
        .wait_for_state("portal", "active", Duration::from_secs(30))
        .await?;
    assert_eq!(stack.tenant_get(&host, "/").await?.status(), StatusCode::OK);

    let feed = events(&stack, "portal").await?;
    let actors: Vec<(&str, &str)> = feed
        .iter()
        .filter(|e| e["kind"] == "suspended" || e["kind"] == "resumed")
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or(""),
                e["actor"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(actors, [("suspended", "ops-test"), ("resumed", "ops-ui")]);

    let before = feed
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .max()
        .unwrap_or(0);
    temporal_update(&stack, &workflow_id, "decommission").await?;
    stack
        .wait_for_state("portal", "decommissioned", Duration::from_secs(60))
        .await?;
    assert_nothing_left(&stack, "portal", &tenant_id).await?;
    let feed = events(&stack, "portal").await?;
    assert_eq!(
        released_in_order(&feed, before),
        [
            "deploy",
            "allocate_traffic",
            "allocate_identity",
            "allocate_storage"
        ],
        "decommission releases newest first"
    );
    assert_eq!(
        stack.tenant_get(&host, "/").await?.status(),
        StatusCode::NOT_FOUND
    );

    // The slot is free again: same key, same tenant id, a new incarnation.
    let again = stack
        .create_tenant("portal", "free", "chief@example.com", None)
        .await?;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(again.body["id"], tenant_id.as_str());
    let reborn = stack
        .wait_for_state("portal", "active", ACTIVE_WITHIN)
        .await?;
    assert_eq!(reborn["incarnation"], 2);
    let feed = events(&stack, "portal").await?;
    let incarnations: std::collections::BTreeSet<i64> = feed
        .iter()
        .filter_map(|e| e["incarnation"].as_i64())
        .collect();
    assert_eq!(
        incarnations.into_iter().collect::<Vec<_>>(),
        [1, 2],
        "both incarnations' history is readable"
    );
    let runs: std::collections::BTreeSet<&str> = feed
        .iter()
        .filter_map(|e| e["run_id"].as_str())
        .filter(|r| !r.starts_with("request-"))
        .collect();
    assert_eq!(
        runs.len(),
        2,
        "each event names the workflow run it belongs to"
    );
    Ok(())
}

/// Decommission while provisioning, and from `failed`: both end with nothing left.
#[tokio::test(flavor = "multi_thread")]
async fn decommission_from_provisioning_and_failed() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackOptions {
        worker_env: vec![("TP_SLOW_PHASE".into(), "allocate_traffic:4000".into())],
        ..Default::default()
    })
    .await?;
    let created = stack
        .create_tenant("early", "free", "e@example.com", None)
        .await?;
    let tenant_id = id_of(&created.body)?;
    wait_for_event(&stack, "early", ACTIVE_WITHIN, |e| {
        e["kind"] == "phase_started" && e["phase"] == "allocate_traffic"
    })
    .await?;
    temporal_update(&stack, &workflow_of(&created.body)?, "decommission").await?;
    stack
        .wait_for_state("early", "decommissioned", Duration::from_secs(60))
        .await?;
    assert_nothing_left(&stack, "early", &tenant_id).await?;

    stack.kill_worker(ProcessSignal::SIGTERM).await?;
    stack.remove_worker_env("TP_SLOW_PHASE");
    stack.set_worker_env("TP_FAIL_PHASE", "allocate_identity");
    stack.start_worker().await?;
    let created = stack
        .create_tenant("doomed", "free", "d@example.com", None)
        .await?;
    let failed = stack
        .wait_for_state("doomed", "failed", Duration::from_secs(150))
        .await?;
    let refused = temporal_update(&stack, &workflow_of(&failed)?, "suspend")
        .await
        .expect_err("suspend of a failed tenant");
    assert!(
        format!("{refused:#}").contains("cannot suspend a tenant that is failed"),
        "{refused:#}"
    );
    temporal_update(&stack, &workflow_of(&failed)?, "decommission").await?;
    stack
        .wait_for_state("doomed", "decommissioned", Duration::from_secs(60))
        .await?;
    assert_nothing_left(&stack, "doomed", &id_of(&created.body)?).await?;
    Ok(())
}

/// An SMTP server that refuses one of the three emails: the tenant stays `active` and the
/// refusal is in the audit feed.
#[tokio::test(flavor = "multi_thread")]
async fn refused_email_keeps_the_tenant_active() -> anyhow::Result<()> {
    let smtp_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let script = format!(
        r#"
import asyncio
from aiosmtpd.controller import Controller
class Handler:
    async def handle_DATA(self, server, session, envelope):
        if b"Your console" in envelope.content:
            return "550 5.7.1 console mail refused by policy"
        return "250 OK"
controller = Controller(Handler(), hostname="127.0.0.1", port={smtp_port})
controller.start()
asyncio.get_event_loop().run_forever()
"#
    );
    let python = std::env::var("TP_AIOSMTPD_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let mut smtp = tokio::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .kill_on_drop(true)
        .spawn()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stack = Stack::start_with(StackOptions {
        worker_env: vec![("TP_SMTP_PORT".into(), smtp_port.to_string())],
        ..Default::default()
    })
    .await?;
    stack
        .create_tenant("mailer", "free", "m@example.com", None)
        .await?;
    stack
        .wait_for_state("mailer", "active", ACTIVE_WITHIN)
        .await?;
    let feed = wait_for_event(&stack, "mailer", Duration::from_secs(60), |e| {
        e["kind"] == "email_failed"
    })
    .await?;
    let failed: Vec<&str> = feed
        .iter()
        .filter(|e| e["kind"] == "email_failed")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("console_url") && failed[0].contains("550"),
        "{failed:?}"
    );
    wait_for_event(&stack, "mailer", Duration::from_secs(30), |e| {
        e["kind"] == "email_sent" && e["message"].as_str().unwrap_or("").contains("onboarding")
    })
    .await?;
    let tenant = stack.get_tenant("mailer").await?;
    assert_eq!(tenant.body["state"], "active");
    let refused = &tenant.body["emails"][1];
    assert_eq!(refused["kind"], "console_url", "{refused}");
    assert_eq!(refused["status"], "refused", "{refused}");

    // With no SMTP server at all, each email is retried, then shown as failed with the
    // transport's error rather than pending for ever; the tenant is active all the same.
    smtp.kill().await.ok();
    smtp.wait().await.ok();
    stack
        .create_tenant("unsent", "free", "u@example.com", None)
        .await?;
    stack
        .wait_for_state("unsent", "active", ACTIVE_WITHIN)
        .await?;
    wait_for_feed(&stack, "unsent", Duration::from_secs(120), |feed| {
        feed.iter().filter(|e| e["kind"] == "email_failed").count() == 3
    })
    .await?;
    let tenant = stack.get_tenant("unsent").await?;
    assert_eq!(tenant.body["state"], "active");
    for email in tenant.body["emails"].as_array().context("emails")? {
        assert_eq!(email["status"], "failed", "{email}");
        assert!(
            email["error"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("email through 127.0.0.1:{smtp_port}")),
            "{email}"
        );
        assert!(email["attempts"].as_i64().unwrap_or(0) >= 1, "{email}");
    }
    Ok(())
}

/// Cancelling the workflow from the Temporal CLI during deploy still releases everything.
#[tokio::test(flavor = "multi_thread")]
async fn cancelled_workflow_releases_everything() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackOptions {
        worker_env: vec![("TP_SLOW_PHASE".into(), "deploy:8000".into())],
        ..Default::default()
    })
    .await?;
    let created = stack
        .create_tenant("cancelme", "free", "c@example.com", None)
        .await?;
    let tenant_id = id_of(&created.body)?;
    let workflow_id = workflow_of(&created.body)?;
    wait_for_event(&stack, "cancelme", ACTIVE_WITHIN, |e| {
        e["kind"] == "phase_started" && e["phase"] == "deploy"
    })
    .await?;
    for _ in 0..100 {
        if !live_workloads(&tenant_id).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        live_workloads(&tenant_id).len(),
        1,
        "the workload runs when the cancel lands"
    );
    stack
        .temporal_cli(&["workflow", "cancel", "--workflow-id", &workflow_id])
        .await?;
    stack
        .wait_for_state("cancelme", "failed", Duration::from_secs(90))
        .await?;
    assert_nothing_left(&stack, "cancelme", &tenant_id).await?;
    let feed = events(&stack, "cancelme").await?;
    assert_eq!(
        released_in_order(&feed, 0),
        [
            "deploy",
            "allocate_traffic",
            "allocate_identity",
            "allocate_storage"
        ]
    );
    Ok(())
}

/// A tenant whose service died with its host (here: SIGKILL) gets it back when a worker
/// starts: the worker asks every active tenant's saga to make sure its service runs.
#[tokio::test(flavor = "multi_thread")]
async fn worker_start_brings_lost_services_back() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack
        .create_tenant("phoenix", "free", "p@example.com", None)
        .await?;
    let tenant = stack
        .wait_for_state("phoenix", "active", ACTIVE_WITHIN)
        .await?;
    let tenant_id = id_of(&tenant)?;
    let host = stack.tenant_host("phoenix");

    stack.kill_worker(ProcessSignal::SIGTERM).await?;
    for pid in live_workloads(&tenant_id) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), ProcessSignal::SIGKILL)?;
    }
    for _ in 0..50 {
        if live_workloads(&tenant_id).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stack
            .tenant_get(&host, "/")
            .await?
            .status()
            .is_server_error(),
        "the service is gone"
    );

    stack.start_worker().await?;
    wait_for_event(&stack, "phoenix", Duration::from_secs(60), |e| {
        e["kind"] == "workload_restarted"
    })
    .await?;
    assert_eq!(stack.tenant_get(&host, "/").await?.status(), StatusCode::OK);
    assert_eq!(live_workloads(&tenant_id).len(), 1);
    assert_eq!(stack.get_tenant("phoenix").await?.body["state"], "active");
    Ok(())
}

/// A decommission whose release keeps failing stays `decommissioning`, retrying, with the
/// reason on the tenant; once the cause is gone it finishes and the error is cleared.
#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_decommission_shows_why_and_finishes_when_the_cause_is_gone() -> anyhow::Result<()>
{
    let stack = Stack::start().await?;
    stack
        .create_tenant("sticky", "free", "s@example.com", None)
        .await?;
    let tenant = stack
        .wait_for_state("sticky", "active", ACTIVE_WITHIN)
        .await?;
    let tenant_id = id_of(&tenant)?;
    let role = database_of(&tenant_id);

    // A privilege granted on another database keeps the tenant's role from being dropped.
    let grant = format!("GRANT CONNECT ON DATABASE \"{}\" TO {role}", stack.database);
    stack.psql(&grant).await?;
    let (status, body) = act(&stack, "sticky", "decommission", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_for_event(&stack, "sticky", Duration::from_secs(60), |e| {
        e["kind"] == "release_failed" && e["phase"] == "allocate_storage"
    })
    .await?;
    let shown = stack.get_tenant("sticky").await?.body;
    assert_eq!(shown["state"], "decommissioning", "{shown}");
    assert_eq!(
        shown["last_error"]["error_type"], "ReleaseFailed",
        "{shown}"
    );
    assert!(
        shown["last_error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("releasing storage failed"),
        "{shown}"
    );

    let revoke = format!(
        "REVOKE CONNECT ON DATABASE \"{}\" FROM {role}",
        stack.database
    );
    stack.psql(&revoke).await?;
    let done = stack
        .wait_for_state("sticky", "decommissioned", Duration::from_secs(90))
        .await?;
    assert_eq!(done["last_error"], Value::Null, "{done}");
    assert_nothing_left(&stack, "sticky", &tenant_id).await?;
    Ok(())
}
