//! Lifecycle endpoints (`POST …/tenants/{slug}/{retry|decommission|suspend|resume}`) and the
//! email actions (`…/invitation/reissue`, `…/emails/{kind}/resend`) on real servers without
//! a worker (see `support`): who may act, unknown and decommissioned tenants, bad email
//! kinds, a workflow that does not answer, and one that no longer runs. Actions carried
//! out by a running saga are tested with the whole stack in the workspace's
//! `tests/tests/api_lifecycle.rs` and in `cli.rs`.

mod support;

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tenant_domain::{TenantKey, TenantRequest, TenantState, validate};
use tenant_store::NewEvent;
use tenant_store::access::Role;

use support::{Answer, spawn_app};

const ACTIONS: [&str; 6] = [
    "retry",
    "decommission",
    "suspend",
    "resume",
    "invitation/reissue",
    "emails/onboarding/resend",
];
/// The email actions, as paths below the tenant.
const EMAIL_ACTIONS: [&str; 2] = ["invitation/reissue", "emails/welcome/resend"];
const PROBLEM: &str = "https://tenant-provisioner.dev/problems/";

fn request(slug: &str) -> Value {
    json!({ "slug": slug, "plan": "growth", "first_admin_email": "admin@example.com" })
}

fn assert_problem(answer: &Answer, status: StatusCode, kind: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(
        answer.headers["content-type"], "application/problem+json",
        "{}",
        answer.body
    );
    assert_eq!(
        answer.body["type"],
        format!("{PROBLEM}{kind}"),
        "{}",
        answer.body
    );
}

fn detail(answer: &Answer) -> &str {
    answer.body["detail"].as_str().unwrap_or_default()
}

/// Members may not act (403), outsiders learn nothing (404), unknown tenants are 404, a
/// decommissioned tenant is 409 for every action, and the action routes take only POST.
#[tokio::test]
async fn lifecycle_actions_are_refused_to_those_who_may_not_act() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let member = app.member("mallory", "acme", Role::Member).await;
    let outsider = app.org("other", "bob").await;
    let created = app.create("acme", &owner, request("prod")).await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let events_before = app.count("audit_events").await;

    for action in ACTIONS {
        let path = format!("/api/v1/organizations/acme/tenants/prod/{action}");
        let forbidden = app.post(&path, &member).await;
        assert_problem(&forbidden, StatusCode::FORBIDDEN, "forbidden");
        assert!(detail(&forbidden).contains("member"), "{}", forbidden.body);

        let hidden = app.post(&path, &outsider).await;
        assert_problem(&hidden, StatusCode::NOT_FOUND, "not-found");
        assert_eq!(detail(&hidden), "organisation acme not found");

        let unknown = app
            .post(
                &format!("/api/v1/organizations/acme/tenants/nope/{action}"),
                &owner,
            )
            .await;
        assert_problem(&unknown, StatusCode::NOT_FOUND, "not-found");
        assert_eq!(
            detail(&unknown),
            "tenant nope not found in organisation acme"
        );

        let get = app.get(&path, &owner).await;
        assert_problem(&get, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    }
    let explode = app
        .post("/api/v1/organizations/acme/tenants/prod/explode", &owner)
        .await;
    assert_problem(&explode, StatusCode::NOT_FOUND, "not-found");

    // An email kind is checked after the caller's access, so it tells outsiders nothing.
    for kind in ["invoice", "Welcome", "console-url"] {
        let path = format!("/api/v1/organizations/acme/tenants/prod/emails/{kind}/resend");
        let bad = app.post(&path, &owner).await;
        assert_problem(&bad, StatusCode::BAD_REQUEST, "validation");
        assert_eq!(bad.body["errors"][0]["field"], "kind", "{}", bad.body);
        assert_eq!(
            bad.body["errors"][0]["code"], "unknown_email",
            "{}",
            bad.body
        );
        let message = bad.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            message.contains("welcome, console_url, onboarding"),
            "{message}"
        );
        assert_problem(
            &app.post(&path, &member).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
        assert_problem(
            &app.post(&path, &outsider).await,
            StatusCode::NOT_FOUND,
            "not-found",
        );
    }
    assert_eq!(
        app.count("audit_events").await,
        events_before,
        "a refused action leaves no trace"
    );

    // A decommissioned tenant: its workflow has ended, so nothing can be asked of it.
    let valid = validate(
        &TenantRequest {
            org: "acme".into(),
            slug: "gone".into(),
            plan: "growth".into(),
            first_admin_email: "admin@example.com".into(),
            name: None,
        },
        &["growth"],
    )
    .unwrap();
    let names = TenantKey::new("acme", "gone").derive(&app.stack.domain);
    app.store
        .accept_tenant(&valid, &names, "alice")
        .await
        .unwrap();
    let event = NewEvent {
        tenant_id: names.tenant_id,
        incarnation: 1,
        run_id: "run-test".into(),
        event_key: "gone".into(),
        kind: "state_changed".into(),
        state: Some("decommissioned".into()),
        actor: "saga".into(),
        message: "tenant decommissioned".into(),
        ..Default::default()
    };
    app.store
        .record_state(1, TenantState::Decommissioned, None, None, &event)
        .await
        .unwrap();
    for action in ACTIONS {
        let answer = app
            .post(
                &format!("/api/v1/organizations/acme/tenants/gone/{action}"),
                &owner,
            )
            .await;
        assert_problem(&answer, StatusCode::CONFLICT, "conflict");
        assert!(
            detail(&answer).starts_with("tenant gone is decommissioned"),
            "{}",
            answer.body
        );
    }
}

/// A running workflow that no worker serves cannot validate an action: 503 within the
/// engine's deadline. Once the workflow is terminated, `suspend`, `decommission` and the
/// email actions are refused with a hint to retry (and start no run), and `retry` starts a
/// new run of the saga from the stored request, recorded in the audit feed with its actor.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_whose_workflow_no_longer_runs_is_re_driven_by_retry() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let operator = app.operator("ops").await;
    let created = app.create("acme", &owner, request("prod")).await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let first_run = created.body["run_id"].as_str().unwrap().to_owned();
    let path = |action: &str| format!("/api/v1/organizations/acme/tenants/prod/{action}");

    let started = Instant::now();
    let silent = app.post(&path("suspend"), &owner).await;
    assert_problem(&silent, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(
        detail(&silent).contains("the tenant's workflow did not answer"),
        "{}",
        silent.body
    );
    assert!(started.elapsed() < tenant_starter::engine::ENGINE_TIMEOUT * 2);

    app.stack
        .temporal_cli(&[
            "workflow",
            "terminate",
            "--workflow-id",
            "tenant/acme/prod",
            "--reason",
            "test",
        ])
        .await
        .unwrap();
    for action in ["suspend", "decommission", "resume"] {
        let refused = app.post(&path(action), &owner).await;
        assert_problem(&refused, StatusCode::CONFLICT, "conflict");
        let text = detail(&refused);
        assert!(text.contains("no longer running"), "{text}");
        assert!(text.contains("was terminated"), "{text}");
        assert!(
            text.contains(&format!(
                "retry the tenant to start a new run of its saga, then {action} it"
            )),
            "{text}"
        );
    }
    for action in EMAIL_ACTIONS {
        let refused = app.post(&path(action), &operator).await;
        assert_problem(&refused, StatusCode::CONFLICT, "conflict");
        let text = detail(&refused);
        assert!(text.contains("no longer running"), "{text}");
        assert!(text.contains("retry the tenant"), "{text}");
        assert!(text.contains("again"), "{text}");
    }
    let workflow = app.describe_workflow("tenant/acme/prod").await.unwrap();
    assert_eq!(
        workflow["workflowExecutionInfo"]["execution"]["runId"],
        first_run.as_str(),
        "an email action never starts a run: {workflow}"
    );

    let retried = app.post(&path("retry"), &operator).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    assert_eq!(retried.body["action"], "retry");
    assert_eq!(retried.body["accepted"], true);
    assert!(
        retried.body["answer"]
            .as_str()
            .unwrap()
            .contains("last run was terminated, so a new run was started"),
        "{}",
        retried.body
    );
    let new_run = retried.body["tenant"]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_run, first_run);
    assert_eq!(retried.body["tenant"]["slug"], "prod");
    let workflow = app.describe_workflow("tenant/acme/prod").await.unwrap();
    let info = &workflow["workflowExecutionInfo"];
    assert_eq!(info["execution"]["runId"], new_run.as_str(), "{workflow}");
    assert!(
        info["status"]
            .as_str()
            .unwrap_or_default()
            .to_uppercase()
            .contains("RUNNING"),
        "{workflow}"
    );

    let feed = app
        .get("/api/v1/organizations/acme/tenants/prod/events", &owner)
        .await;
    let retry = feed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "retry_requested")
        .cloned()
        .expect("the retry is in the audit feed");
    assert_eq!(retry["actor"], "ops");
    assert_eq!(retry["run_id"], new_run.as_str());
}
