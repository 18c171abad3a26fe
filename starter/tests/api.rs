//! Black-box tests of the HTTP API: the router served in-process on a free port, against a
//! real Temporal dev server and a throwaway control-plane database per test (see
//! `support`). No worker runs here, so a started saga stays at its start: these tests cover
//! everything up to and around starting it. Sagas that run are in `lifecycle.rs`, `cli.rs`
//! and the workspace's `tests/`.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 with a trusted `postgres` superuser (or `TP_TEST_PG`)
//! and the Temporal CLI, Caddy and maildev the harness finds (see `tenant_tests`).

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tenant_domain::{TenantKey, TenantRequest, validate};
use tenant_starter::api::ApiConfig;
use tenant_store::access::{AccessError, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tenant_tests::ProcessSignal;

use support::{Answer, spawn_app};

const PROBLEM: &str = "https://tenant-provisioner.dev/problems/";

fn request(slug: &str) -> Value {
    json!({ "slug": slug, "plan": "growth", "first_admin_email": "admin@example.com" })
}

fn assert_problem(answer: &Answer, status: StatusCode, kind: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let content_type = answer
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(content_type, "application/problem+json", "{}", answer.body);
    assert_eq!(
        answer.body["type"],
        format!("{PROBLEM}{kind}"),
        "{}",
        answer.body
    );
    assert_eq!(answer.body["status"], status.as_u16());
    assert!(answer.body["title"].is_string());
}

fn field_errors(answer: &Answer) -> Vec<(String, String)> {
    answer.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap().to_owned(),
                        e["code"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Without a token, with a garbage one, an expired one or a revoked one, the answer is 401.
#[tokio::test]
async fn requests_without_a_valid_token_are_unauthorized() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;

    let anonymous = app
        .answer(
            app.http
                .post(app.tenants_url("acme"))
                .json(&request("prod")),
        )
        .await;
    assert_problem(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(anonymous.headers.get("www-authenticate").is_some());

    let garbage = app.create("acme", "tp_0000", request("prod")).await;
    assert_problem(&garbage, StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong_scheme = app
        .answer(
            app.http
                .get(app.tenants_url("acme"))
                .header("authorization", format!("Basic {owner}")),
        )
        .await;
    assert_problem(&wrong_scheme, StatusCode::UNAUTHORIZED, "unauthorized");

    let alice = app
        .store
        .authenticate(&owner)
        .await
        .unwrap()
        .expect("the owner's token works");
    let expired = app
        .store
        .create_token(
            alice.id,
            "old",
            Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
        )
        .await
        .unwrap();
    assert_problem(
        &app.get("/api/v1/organizations/acme/tenants", expired.expose())
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let revoked = app
        .store
        .create_token(alice.id, "revoked", None)
        .await
        .unwrap();
    assert!(app.store.revoke_token(revoked.id).await.unwrap());
    assert_problem(
        &app.get("/api/v1/organizations/acme/tenants", revoked.expose())
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // The token never comes back in an error body.
    assert!(!garbage.body.to_string().contains("tp_0000"));
    assert_eq!(app.count("tenants").await, 0);
}

/// An organisation the caller has no role in looks exactly like one that does not exist.
#[tokio::test]
async fn organisations_the_caller_cannot_see_are_not_found() {
    let app = spawn_app().await;
    app.org("acme", "alice").await;
    let outsider = app.org("other", "bob").await;

    let hidden = app.create("acme", &outsider, request("prod")).await;
    assert_problem(&hidden, StatusCode::NOT_FOUND, "not-found");
    let missing = app.create("ghost", &outsider, request("prod")).await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "not-found");
    assert_eq!(hidden.body["detail"], "organisation acme not found");
    assert_eq!(missing.body["detail"], "organisation ghost not found");

    // Reads too, and a bad body does not get past the access check either.
    assert_problem(
        &app.get("/api/v1/organizations/acme/tenants", &outsider)
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    assert_problem(
        &app.get("/api/v1/organizations/acme/tenants/prod", &outsider)
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    let bad_body = app.create("acme", &outsider, json!({ "nope": 1 })).await;
    assert_problem(&bad_body, StatusCode::NOT_FOUND, "not-found");
    assert_eq!(app.count("tenants").await, 0);
}

/// A member may read the organisation's tenants but not create one.
#[tokio::test]
async fn members_may_read_but_not_create() {
    let app = spawn_app().await;
    app.org("acme", "alice").await;
    let member = app.member("mallory", "acme", Role::Member).await;

    let refused = app.create("acme", &member, request("prod")).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert!(refused.body["detail"].as_str().unwrap().contains("member"));

    let listed = app.get("/api/v1/organizations/acme/tenants", &member).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["items"], json!([]));
    assert_eq!(app.count("tenants").await, 0);
}

/// `name: "Production"` and an uppercase slug are refused field by field, before anything
/// is written: no tenant row, no audit entry.
#[tokio::test]
async fn invalid_fields_are_refused_before_anything_is_written() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;

    let mut body = request("production");
    body["name"] = json!("Production");
    let bad_name = app.create("acme", &owner, body).await;
    assert_problem(&bad_name, StatusCode::BAD_REQUEST, "validation");
    assert_eq!(
        field_errors(&bad_name),
        vec![("name".into(), "pattern".into())]
    );

    let bad_slug = app.create("acme", &owner, request("Production")).await;
    assert_problem(&bad_slug, StatusCode::BAD_REQUEST, "validation");
    assert_eq!(
        field_errors(&bad_slug),
        vec![("slug".into(), "pattern".into())]
    );
    assert!(
        bad_slug.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("lowercase")
    );

    // Every missing field is reported at once, with the domain's codes.
    let empty = app.create("acme", &owner, json!({})).await;
    assert_problem(&empty, StatusCode::BAD_REQUEST, "validation");
    assert_eq!(
        field_errors(&empty),
        vec![
            ("slug".into(), "required".into()),
            ("plan".into(), "required".into()),
            ("first_admin_email".into(), "required".into()),
        ]
    );

    let mut unknown_plan = request("prod");
    unknown_plan["plan"] = json!("platinum");
    let refused = app.create("acme", &owner, unknown_plan).await;
    assert_eq!(
        field_errors(&refused),
        vec![("plan".into(), "unknown_plan".into())]
    );

    assert_eq!(app.count("tenants").await, 0);
    assert_eq!(app.count("audit_events").await, 0);
    assert_eq!(app.workflow_count().await.unwrap(), 0, "no saga started");
}

/// The API refuses exactly what the domain rule refuses (the rule the saga applies).
#[tokio::test]
async fn the_api_applies_the_domain_rule() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    for slug in [
        "prod_1",
        "-prod",
        "pro--d",
        "pröd",
        "1prod",
        &"a".repeat(31),
    ] {
        let expected: Vec<(String, String)> = validate(
            &TenantRequest {
                org: "acme".into(),
                slug: slug.into(),
                plan: "growth".into(),
                first_admin_email: "admin@example.com".into(),
                name: None,
            },
            &["growth"],
        )
        .unwrap_err()
        .into_iter()
        .map(|e| (e.field, e.code))
        .collect();
        let answer = app.create("acme", &owner, request(slug)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{slug}");
        assert_eq!(field_errors(&answer), expected, "{slug}");
    }
}

/// Unknown JSON fields and malformed JSON are 400 with a field-level error, never 422/500.
#[tokio::test]
async fn malformed_bodies_are_refused_field_by_field() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;

    let mut body = request("prod");
    body["colour"] = json!("red");
    let unknown = app.create("acme", &owner, body).await;
    assert_problem(&unknown, StatusCode::BAD_REQUEST, "validation");
    assert_eq!(
        field_errors(&unknown),
        vec![("colour".into(), "unknown_field".into())]
    );

    let wrong_type = app
        .create(
            "acme",
            &owner,
            json!({ "slug": 7, "plan": "growth", "first_admin_email": "a@b.io" }),
        )
        .await;
    assert_eq!(
        field_errors(&wrong_type),
        vec![("slug".into(), "invalid_type".into())]
    );

    let syntax = app
        .answer(
            app.http
                .post(app.tenants_url("acme"))
                .bearer_auth(&owner)
                .header("content-type", "application/json")
                .body("{\"slug\": \"prod\","),
        )
        .await;
    assert_problem(&syntax, StatusCode::BAD_REQUEST, "validation");
    assert_eq!(
        field_errors(&syntax),
        vec![("body".into(), "malformed_json".into())]
    );
    assert_eq!(app.count("tenants").await, 0);
}

/// Bodies over 64 KiB get 413 as problem+json, announced or streamed.
#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;

    let mut body = request("prod");
    body["name"] = json!("x".repeat(100 * 1024));
    let huge = app.create("acme", &owner, body).await;
    assert_problem(&huge, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");

    // Chunked, so the size is only known while reading.
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let chunk = "a".repeat(16 * 1024);
    let mut raw = format!(
        "POST /api/v1/organizations/acme/tenants HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {owner}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..6 {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{response}"
    );
    assert_eq!(app.count("tenants").await, 0);
}

/// A body that is not declared as JSON gets 415.
#[tokio::test]
async fn wrong_content_type_is_refused() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let body = request("prod").to_string();

    let text = app
        .answer(
            app.http
                .post(app.tenants_url("acme"))
                .bearer_auth(&owner)
                .header("content-type", "text/plain")
                .body(body.clone()),
        )
        .await;
    assert_problem(
        &text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    let none = app
        .answer(
            app.http
                .post(app.tenants_url("acme"))
                .bearer_auth(&owner)
                .body(body),
        )
        .await;
    assert_problem(
        &none,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    assert_eq!(app.count("tenants").await, 0);
}

/// Slug `a-b` in org `c` and slug `a` in org `b-c` share the label `a-b-c`: the second is
/// refused, and only callers who may see org `c` learn who holds it.
#[tokio::test]
async fn a_held_host_label_is_a_conflict_naming_the_holder_only_to_those_who_may_see_it() {
    let app = spawn_app().await;
    app.org("c", "carol").await;
    let bc_owner = app.org("b-c", "bruno").await;
    let both = app.member("dana", "b-c", Role::Admin).await;
    let dana = app.store.authenticate(&both).await.unwrap().unwrap();
    app.store
        .add_membership(dana.id, "c", Role::Member)
        .await
        .unwrap();
    let operator = app.operator("ops").await;

    let held = validate(
        &TenantRequest {
            org: "c".into(),
            slug: "a-b".into(),
            plan: "growth".into(),
            first_admin_email: "admin@example.com".into(),
            name: None,
        },
        &["growth"],
    )
    .unwrap();
    let names = TenantKey::new("c", "a-b").derive(&ApiConfig::default().domain);
    app.store
        .accept_tenant(&held, &names, "carol")
        .await
        .unwrap();

    let hidden = app.create("b-c", &bc_owner, request("a")).await;
    assert_problem(&hidden, StatusCode::CONFLICT, "conflict");
    let detail = hidden.body["detail"].as_str().unwrap();
    assert!(detail.contains("host name label a-b-c taken"), "{detail}");
    assert!(!detail.contains("organisation c"), "{detail}");

    for token in [&both, &operator] {
        let named = app.create("b-c", token, request("a")).await;
        assert_problem(&named, StatusCode::CONFLICT, "conflict");
        let detail = named.body["detail"].as_str().unwrap();
        assert!(detail.contains("tenant a-b of organisation c"), "{detail}");
    }
    assert_eq!(app.count("tenants").await, 1);
}

/// While Temporal is down, a request is accepted but answered 503 (the cause stays in the
/// log) and readiness fails; the row stays `provisioning` without a run. Once Temporal is
/// back, an identical retry finds the row and starts the saga, and readiness passes again.
#[tokio::test]
async fn a_temporal_outage_is_503_and_an_identical_retry_recovers() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    app.stack
        .stop_process("temporal", ProcessSignal::SIGTERM, Duration::from_secs(30))
        .await
        .unwrap();

    let first = app.create("acme", &owner, request("prod")).await;
    assert_problem(&first, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(
        first.body["detail"],
        "workflow engine unavailable, retry the request; it is idempotent"
    );
    assert!(
        !first.body.to_string().contains("127.0.0.1"),
        "the cause stays in the log: {}",
        first.body
    );
    let row = app
        .store
        .tenant("acme", "prod")
        .await
        .unwrap()
        .expect("the accepted row stays");
    assert_eq!(row.state, "provisioning");
    assert_eq!(row.run_id, None);

    let live = app
        .answer(app.http.get(format!("{}/healthz/live", app.base)))
        .await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = app
        .answer(app.http.get(format!("{}/healthz/ready", app.base)))
        .await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.body["checks"],
        json!({ "database": "ok", "workflow_engine": "failed" })
    );

    app.stack.start_process("temporal").await.unwrap();
    let retry = app.create("acme", &owner, request("prod")).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(retry.body["id"], row.id.to_string());
    assert_eq!(retry.body["state"], "provisioning");
    let run_id = retry.body["run_id"]
        .as_str()
        .expect("the retry started the saga")
        .to_owned();
    assert_eq!(
        app.store
            .tenant("acme", "prod")
            .await
            .unwrap()
            .unwrap()
            .run_id
            .as_deref(),
        Some(run_id.as_str())
    );
    let workflow = app.describe_workflow("tenant/acme/prod").await.unwrap();
    assert_eq!(
        workflow["workflowExecutionInfo"]["execution"]["runId"], run_id,
        "{workflow}"
    );
    let ready = app
        .answer(app.http.get(format!("{}/healthz/ready", app.base)))
        .await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);

    // A different request for the held key is a conflict, not a repeat.
    let mut other = request("prod");
    other["plan"] = json!("enterprise");
    assert_problem(
        &app.create("acme", &owner, other).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_eq!(app.count("audit_events").await, 1);
}

/// The happy path up to the saga: 202 with the resource, then readable by members, and an
/// identical repeat is 200 with the same tenant.
#[tokio::test]
async fn an_accepted_tenant_is_202_and_readable() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let member = app.member("mallory", "acme", Role::Member).await;

    let mut body = request("production-eu");
    body["name"] = json!("production-eu");
    let created = app.create("acme", &owner, body.clone()).await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let t = &created.body;
    let key = TenantKey::new("acme", "production-eu");
    assert_eq!(t["id"], key.tenant_id().to_string());
    assert_eq!(t["host"], "production-eu-acme.tenants.localhost");
    assert_eq!(
        t["url"],
        format!(
            "https://production-eu-acme.tenants.localhost:{}",
            app.stack.ports.public_https
        )
    );
    assert_eq!(t["state"], "provisioning");
    assert_eq!(t["incarnation"], 1);
    assert_eq!(t["workflow_id"], "tenant/acme/production-eu");
    assert!(t["run_id"].is_string());
    assert_eq!(
        t["links"]["self"],
        "/api/v1/organizations/acme/tenants/production-eu"
    );
    assert_eq!(
        t["links"]["temporal_ui"],
        "http://127.0.0.1:8233/namespaces/default/workflows/tenant%2Facme%2Fproduction-eu"
    );
    assert_eq!(
        created.headers.get("location").unwrap(),
        "/api/v1/organizations/acme/tenants/production-eu"
    );
    // The saga runs under the derived workflow id, as the run the answer names.
    let workflow = app
        .describe_workflow("tenant/acme/production-eu")
        .await
        .unwrap();
    assert_eq!(
        workflow["workflowExecutionInfo"]["execution"]["runId"], t["run_id"],
        "{workflow}"
    );

    let repeat = app.create("acme", &owner, body).await;
    assert_eq!(repeat.status, StatusCode::OK, "{}", repeat.body);
    assert_eq!(repeat.body["id"], t["id"]);
    assert_eq!(repeat.body["run_id"], t["run_id"]);

    let shown = app
        .get("/api/v1/organizations/acme/tenants/production-eu", &member)
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    // No worker has run the workflow, so it cannot answer a query yet; reads do without.
    assert!(shown.body.get("live").is_none(), "{}", shown.body);
    assert_eq!(shown.body["resources"], json!([]));
    let stored = app
        .get(
            "/api/v1/organizations/acme/tenants/production-eu?live=false",
            &member,
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    assert!(stored.body.get("live").is_none(), "{}", stored.body);

    let events = app
        .get(
            "/api/v1/organizations/acme/tenants/production-eu/events",
            &member,
        )
        .await;
    assert_eq!(events.status, StatusCode::OK, "{}", events.body);
    let events = events.body.as_array().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "request_accepted");
    let after = events[0]["id"].as_i64().unwrap();
    let none = app
        .get(
            &format!("/api/v1/organizations/acme/tenants/production-eu/events?after={after}"),
            &member,
        )
        .await;
    assert_eq!(none.body, json!([]));

    let missing = app
        .get("/api/v1/organizations/acme/tenants/nope", &member)
        .await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "not-found");

    let ready = app
        .answer(app.http.get(format!("{}/healthz/ready", app.base)))
        .await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
}

/// Listing pages by slug, filters by state, and refuses bad parameters field by field.
#[tokio::test]
async fn listing_pages_and_filters() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    for slug in ["alpha", "beta", "gamma"] {
        assert_eq!(
            app.create("acme", &owner, request(slug)).await.status,
            StatusCode::ACCEPTED
        );
    }

    let page = app
        .get("/api/v1/organizations/acme/tenants?limit=2", &owner)
        .await;
    let slugs: Vec<&str> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["alpha", "beta"]);
    assert_eq!(page.body["next_after"], "beta");
    let rest = app
        .get(
            "/api/v1/organizations/acme/tenants?limit=2&after=beta",
            &owner,
        )
        .await;
    assert_eq!(rest.body["items"][0]["slug"], "gamma");
    assert_eq!(rest.body["next_after"], Value::Null);

    let active = app
        .get("/api/v1/organizations/acme/tenants?state=active", &owner)
        .await;
    assert_eq!(active.body["items"], json!([]));
    let bad_state = app
        .get("/api/v1/organizations/acme/tenants?state=running", &owner)
        .await;
    assert_eq!(
        field_errors(&bad_state),
        vec![("state".into(), "unknown_state".into())]
    );
    let bad_limit = app
        .get("/api/v1/organizations/acme/tenants?limit=101", &owner)
        .await;
    assert_eq!(
        field_errors(&bad_limit),
        vec![("limit".into(), "out_of_range".into())]
    );
    let bad_after = app
        .get(
            "/api/v1/organizations/acme/tenants/alpha/events?after=x",
            &owner,
        )
        .await;
    assert_eq!(
        field_errors(&bad_after),
        vec![("after".into(), "invalid".into())]
    );
}

/// The plan's tenant quota is a 409 of its own type.
#[tokio::test]
async fn the_plan_quota_is_enforced() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let free = |slug: &str| json!({ "slug": slug, "plan": "free", "first_admin_email": "admin@example.com" });
    for slug in ["one", "two", "three"] {
        assert_eq!(
            app.create("acme", &owner, free(slug)).await.status,
            StatusCode::ACCEPTED
        );
    }
    let fourth = app.create("acme", &owner, free("four")).await;
    assert_problem(&fourth, StatusCode::CONFLICT, "quota-exceeded");
    assert_eq!(
        fourth.body["detail"],
        "organisation acme already has 3 tenants on plan free, the most that plan allows per organisation"
    );
    // The quota counts the tenants on the plan asked for, not those on other plans.
    let growth =
        json!({ "slug": "four", "plan": "growth", "first_admin_email": "admin@example.com" });
    assert_eq!(
        app.create("acme", &owner, growth).await.status,
        StatusCode::ACCEPTED
    );
    let fifth = app.create("acme", &owner, free("five")).await;
    assert_problem(&fifth, StatusCode::CONFLICT, "quota-exceeded");
}

/// Unknown endpoints and methods answer with problem documents too.
#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let nowhere = app.get("/api/v1/nowhere", &owner).await;
    assert_problem(&nowhere, StatusCode::NOT_FOUND, "not-found");
    let method = app
        .answer(app.http.delete(app.tenants_url("acme")).bearer_auth(&owner))
        .await;
    assert_problem(
        &method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    );
}

/// Bootstrap is all or nothing, and refuses to run twice for one organisation.
#[tokio::test]
async fn bootstrap_is_all_or_nothing() {
    let app = spawn_app().await;
    let token = app.org("acme", "alice").await;
    let alice = app
        .store
        .authenticate(&token)
        .await
        .unwrap()
        .expect("bootstrap token works");
    assert_eq!(alice.name, "alice");
    assert!(!alice.platform_operator);
    assert_eq!(
        app.store.role_in(alice.id, "acme").await.unwrap(),
        Some(Role::Owner)
    );
    assert!(app.store.organization("acme").await.unwrap().is_some());

    let again = app
        .store
        .bootstrap("acme", "Acme", "someone-else")
        .await
        .unwrap_err();
    assert!(
        matches!(again, AccessError::OrganizationExists { .. }),
        "{again:?}"
    );
    assert!(again.to_string().contains("already exists"));
    let principals: i64 = app.count("principals").await;
    assert_eq!(principals, 1, "nothing of the refused bootstrap remains");

    let taken = app
        .store
        .bootstrap("beta", "Beta", "alice")
        .await
        .unwrap_err();
    assert!(
        matches!(taken, AccessError::PrincipalExists { .. }),
        "{taken:?}"
    );
    assert!(app.store.organization("beta").await.unwrap().is_none());

    let (ops, ops_token) = app.store.bootstrap_operator("ops").await.unwrap();
    assert!(ops.platform_operator);
    assert_eq!(
        app.store
            .authenticate(ops_token.expose())
            .await
            .unwrap()
            .unwrap()
            .id,
        ops.id
    );
    assert_eq!(app.store.role_in(ops.id, "acme").await.unwrap(), None);
}

/// A JSON object that names a key twice is refused (which value the sender meant is
/// ambiguous), with the key as the field, before anything is written: no tenant row, no
/// audit entry, no saga, no token, no idempotency record; and a key given twice never
/// replays the answer of the request its last values would spell.
#[tokio::test]
async fn a_json_key_given_twice_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let send = |path: &str, body: &str, key: Option<&str>| {
        let mut request = app
            .http
            .post(format!("{}{path}", app.base))
            .bearer_auth(&owner)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request
    };
    let tenants = "/api/v1/organizations/acme/tenants";

    for (body, key) in [
        (
            r#"{"slug":"prod","plan":"growth","first_admin_email":"a@example.com","slug":"other"}"#,
            "slug",
        ),
        (
            r#"{"slug":"prod","slug":"prod","plan":"growth","first_admin_email":"a@example.com"}"#,
            "slug",
        ),
        (
            r#"{"plan":"free","slug":"prod","first_admin_email":"a@example.com","plan":"growth"}"#,
            "plan",
        ),
    ] {
        for idempotency_key in [None, Some("dup-1")] {
            let answer = app.answer(send(tenants, body, idempotency_key)).await;
            assert_problem(&answer, StatusCode::BAD_REQUEST, "validation");
            assert_eq!(
                field_errors(&answer),
                vec![(key.to_owned(), "duplicate_key".to_owned())],
                "{body}"
            );
            assert_eq!(
                answer.body["errors"][0]["message"],
                format!("duplicate key `{key}`")
            );
            assert_eq!(
                answer.body["detail"],
                format!("invalid request: duplicate key `{key}`")
            );
        }
    }
    for table in ["tenants", "audit_events", "idempotency_keys"] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
    for slug in ["prod", "other"] {
        let names = TenantKey::new("acme", slug).derive(&app.stack.domain);
        assert!(
            app.describe_workflow(&names.workflow_id).await.is_err(),
            "no saga for {slug}"
        );
    }

    // A request with a key, then the same request with one key doubled under the same
    // Idempotency-Key: read last-value-wins it would be the same request and replay.
    let valid = r#"{"slug":"prod","plan":"growth","first_admin_email":"a@example.com"}"#;
    let accepted = app.answer(send(tenants, valid, Some("k-1"))).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let prod = TenantKey::new("acme", "prod").derive(&app.stack.domain);
    app.describe_workflow(&prod.workflow_id)
        .await
        .expect("an accepted request has its saga (so the checks above could fail)");
    let doubled =
        r#"{"slug":"qa","plan":"growth","first_admin_email":"a@example.com","slug":"prod"}"#;
    let refused = app.answer(send(tenants, doubled, Some("k-1"))).await;
    assert_problem(&refused, StatusCode::BAD_REQUEST, "validation");
    assert_eq!(
        field_errors(&refused),
        vec![("slug".into(), "duplicate_key".into())]
    );
    assert!(refused.headers.get("idempotent-replayed").is_none());
    assert_eq!(app.count("tenants").await, 1);
    let replayed = app.answer(send(tenants, valid, Some("k-1"))).await;
    assert_eq!(
        replayed.status,
        StatusCode::ACCEPTED,
        "the key still replays"
    );

    // The tokens endpoint reads its body the same way.
    let tokens_before = app.count("api_tokens").await;
    let token = app
        .answer(send(
            "/api/v1/tokens",
            r#"{"name":"ci","expires_in_days":7,"name":"deploy"}"#,
            None,
        ))
        .await;
    assert_problem(&token, StatusCode::BAD_REQUEST, "validation");
    assert_eq!(
        field_errors(&token),
        vec![("name".into(), "duplicate_key".into())]
    );
    assert_eq!(app.count("api_tokens").await, tokens_before);
}

/// Malformed path segments and query parameters are 400 problems in our own words that
/// name the parameter, never the web framework's rejection text; the token is checked
/// before any of them.
#[tokio::test]
async fn malformed_paths_and_queries_are_refused_naming_the_parameter() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let tenants = "/api/v1/organizations/acme/tenants";
    let events = format!("{tenants}/prod/events");
    let uuid = uuid::Uuid::new_v4();

    let cases: Vec<(reqwest::Method, String, &str, &str)> = vec![
        // Path segments that are not UTF-8 once percent-decoded.
        (
            reqwest::Method::GET,
            "/api/v1/organizations/%FF/tenants".into(),
            "org_id",
            "invalid_utf8",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}/%C3%28"),
            "slug",
            "invalid_utf8",
        ),
        (
            reqwest::Method::POST,
            format!("{tenants}/prod/emails/%FF/resend"),
            "kind",
            "invalid_utf8",
        ),
        // Token ids.
        (
            reqwest::Method::DELETE,
            "/api/v1/tokens/not-a-uuid".into(),
            "token_id",
            "invalid",
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/tokens/{uuid}0"),
            "token_id",
            "invalid",
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/tokens/%FF".into(),
            "token_id",
            "invalid",
        ),
        // Query parameters of the list.
        (
            reqwest::Method::GET,
            format!("{tenants}?stat=active"),
            "stat",
            "unknown_parameter",
        ),
        (
            reqwest::Method::GET,
            format!("{events}?after=0&since=3"),
            "since",
            "unknown_parameter",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}/prod?lve=false"),
            "lve",
            "unknown_parameter",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}?limit=abc"),
            "limit",
            "out_of_range",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}?limit=1&limit=2"),
            "limit",
            "duplicate",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}?after=%FF"),
            "after",
            "invalid_utf8",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}?after=Not-A-Slug"),
            "after",
            "pattern",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}?state=running"),
            "state",
            "unknown_state",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}?state=active&state=failed"),
            "state",
            "duplicate",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}?%FF=1"),
            "query",
            "invalid_utf8",
        ),
        // Of the feed and of one tenant.
        (
            reqwest::Method::GET,
            format!("{events}?after=x"),
            "after",
            "invalid",
        ),
        (
            reqwest::Method::GET,
            format!("{events}?limit=1.5"),
            "limit",
            "out_of_range",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}/prod?live=maybe"),
            "live",
            "invalid",
        ),
        (
            reqwest::Method::GET,
            format!("{tenants}/prod?live=true&live=false"),
            "live",
            "duplicate",
        ),
    ];
    // axum's own rejection texts start with these.
    let framework_words = [
        "Invalid URL",
        "Failed to deserialize",
        "Cannot parse",
        "Invalid UTF-8",
        "no such resource",
    ];
    for (method, path, field, code) in cases {
        let context = format!("{method} {path}");
        let answer = app
            .answer(
                app.http
                    .request(method.clone(), format!("{}{path}", app.base))
                    .bearer_auth(&owner),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{context}: {}",
            answer.body
        );
        assert_problem(&answer, StatusCode::BAD_REQUEST, "validation");
        assert_eq!(
            field_errors(&answer),
            vec![(field.to_owned(), code.to_owned())],
            "{context}: {}",
            answer.body
        );
        let text = answer.body.to_string();
        for words in framework_words {
            assert!(!text.contains(words), "{context}: {text}");
        }
        let message = answer.body["errors"][0]["message"].as_str().unwrap();
        let named = if field == "token_id" {
            "token id"
        } else {
            field
        };
        assert!(
            message.contains(named) || field == "query",
            "{context}: {message}"
        );

        // Without a token, the answer is 401 whatever the path or query holds.
        let anonymous = app
            .answer(app.http.request(method, format!("{}{path}", app.base)))
            .await;
        assert_problem(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let malformed_id = app
        .answer(
            app.http
                .delete(format!("{}/api/v1/tokens/not-a-uuid", app.base))
                .bearer_auth(&owner),
        )
        .await;
    assert_eq!(
        malformed_id.body["errors"][0]["message"],
        "token id must be a UUID, as GET /api/v1/tokens lists them"
    );
    assert_eq!(app.count("tenants").await, 0);
}

/// Organisation and tenant path segments are checked with the domain's naming rule, as body
/// fields are: one that breaks it is a 400 naming the segment (`org_id`, `slug`) with the
/// rule's own message, for every role alike, and never repeats more of the name than the
/// rule allows. Such a name cannot exist, so the 400 tells nobody anything about an
/// organisation; the token is still checked first, and a well-formed name is answered as
/// before (404 for what the caller cannot see, 403 for a member's action).
#[tokio::test]
async fn path_segments_are_checked_with_the_naming_rule() {
    use reqwest::Method;
    use tenant_domain::validation::{MAX_SLUG_LEN, check_slug};

    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let member = app.member("mia", "acme", Role::Member).await;
    let outsider = app.org("globex", "olga").await;
    let operator = app.operator("ops").await;
    let tenants = "/api/v1/organizations/acme/tenants";
    let long = "a".repeat(5000);

    /// A refused segment: its parameter, its decoded value, the code.
    type Refused<'a> = (&'a str, &'a str, &'a str);
    let cases: Vec<(Method, String, Vec<Refused>)> = vec![
        (
            Method::GET,
            "/api/v1/organizations/ORGA/tenants".into(),
            vec![("org_id", "ORGA", "pattern")],
        ),
        (
            Method::POST,
            "/api/v1/organizations/ORGA/tenants".into(),
            vec![("org_id", "ORGA", "pattern")],
        ),
        (
            Method::GET,
            format!("{tenants}/Prod"),
            vec![("slug", "Prod", "pattern")],
        ),
        (
            Method::GET,
            format!("{tenants}/{long}"),
            vec![("slug", &long, "too_long")],
        ),
        (
            Method::GET,
            format!("/api/v1/organizations/{long}/tenants/{long}/events"),
            vec![("org_id", &long, "too_long"), ("slug", &long, "too_long")],
        ),
        (
            Method::GET,
            format!("{tenants}/a%00b"),
            vec![("slug", "a\0b", "pattern")],
        ),
        (
            Method::POST,
            format!("{tenants}/prod--x/suspend"),
            vec![("slug", "prod--x", "pattern")],
        ),
        (
            Method::POST,
            "/api/v1/organizations/1acme/tenants/-x/emails/welcome/resend".into(),
            vec![("org_id", "1acme", "pattern"), ("slug", "-x", "pattern")],
        ),
    ];
    for (method, path, refused) in &cases {
        let shown: String = path.chars().take(80).collect();
        for (who, token) in [
            ("owner", &owner),
            ("member", &member),
            ("outsider", &outsider),
            ("operator", &operator),
        ] {
            let context = format!("{who}: {method} {shown}");
            let mut call = app
                .http
                .request(method.clone(), format!("{}{path}", app.base))
                .bearer_auth(token);
            if *method == Method::POST {
                call = call.json(&request("prod"));
            }
            let answer = app.answer(call).await;
            assert_problem(&answer, StatusCode::BAD_REQUEST, "validation");
            let expected: Vec<(String, String)> = refused
                .iter()
                .map(|(field, _, code)| (field.to_string(), code.to_string()))
                .collect();
            assert_eq!(
                field_errors(&answer),
                expected,
                "{context}: {}",
                answer.body
            );
            for (i, (field, value, _)) in refused.iter().enumerate() {
                // The very message a body field gets from the rule.
                assert_eq!(
                    answer.body["errors"][i]["message"],
                    check_slug(field, value).unwrap_err().message,
                    "{context}"
                );
            }
            let text = answer.body.to_string();
            assert!(
                !text.contains(&"a".repeat(MAX_SLUG_LEN + 1)),
                "{context}: the problem repeats the long name: {} bytes",
                text.len()
            );
        }

        // Without a token the answer is 401, whatever the path holds.
        let anonymous = app
            .answer(
                app.http
                    .request(method.clone(), format!("{}{path}", app.base)),
            )
            .await;
        assert_problem(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
    }

    // Well-formed names are answered as before.
    assert_problem(
        &app.get(&format!("{tenants}/prod"), &outsider).await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    assert_problem(
        &app.get("/api/v1/organizations/ghost/tenants", &operator)
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    assert_problem(
        &app.post(&format!("{tenants}/prod/suspend"), &member).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let missing = app.get(&format!("{tenants}/prod"), &owner).await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "not-found");
    assert_eq!(
        missing.body["detail"],
        "tenant prod not found in organisation acme"
    );
    // The longest names the rule allows are names, not refusals.
    let longest = "a".repeat(MAX_SLUG_LEN);
    assert_problem(
        &app.get(&format!("{tenants}/{longest}"), &owner).await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    assert_eq!(app.count("tenants").await, 0);
}

/// Refused fields say what is wrong in our words: an empty optional name, an address over
/// one of its length limits, and a number of the wrong type in any JSON body.
#[tokio::test]
async fn field_messages_say_what_to_change() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let message = |answer: &Answer| {
        answer.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    let mut body = request("prod");
    body["name"] = json!("");
    let answer = app.create("acme", &owner, body).await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, "validation");
    assert_eq!(
        field_errors(&answer),
        vec![("name".into(), "required".into())]
    );
    assert_eq!(
        message(&answer),
        "name must not be empty; leave it out to use the slug"
    );

    let mut body = request("prod");
    body["first_admin_email"] = json!(format!("{}@example.com", "a".repeat(100)));
    let answer = app.create("acme", &owner, body).await;
    assert_eq!(
        field_errors(&answer),
        vec![("first_admin_email".into(), "invalid_email".into())]
    );
    assert!(message(&answer).contains("at most 64"), "{}", answer.body);

    let mut body = request("prod");
    body["first_admin_email"] = json!(format!("admin@{}.example.com", "b".repeat(70)));
    let answer = app.create("acme", &owner, body).await;
    assert!(message(&answer).contains("at most 63"), "{}", answer.body);

    let mut body = request("prod");
    body["slug"] = json!(7);
    let answer = app.create("acme", &owner, body).await;
    assert_eq!(
        field_errors(&answer),
        vec![("slug".into(), "invalid_type".into())]
    );
    assert_eq!(
        message(&answer),
        "slug must be a string; got a whole number"
    );

    // The token body is parsed by the same extractor: serde's wording never reaches a client.
    for days in [json!(1e20), json!(2.5), json!("30"), json!(-1)] {
        let answer = app
            .answer(
                app.http
                    .post(format!("{}/api/v1/tokens", app.base))
                    .bearer_auth(&owner)
                    .json(&json!({ "name": "ci", "expires_in_days": days })),
            )
            .await;
        assert_problem(&answer, StatusCode::BAD_REQUEST, "validation");
        assert_eq!(
            field_errors(&answer),
            vec![("expires_in_days".into(), "invalid_type".into())],
            "{days}"
        );
        let text = message(&answer);
        assert!(
            text.starts_with("expires_in_days must be a whole number"),
            "{days}: {text}"
        );
        for serde_words in [
            "invalid type",
            "invalid value",
            "expected u32",
            "floating point",
        ] {
            assert!(!text.contains(serde_words), "{days}: {text}");
        }
    }
    assert_eq!(app.count("tenants").await, 0);
}
