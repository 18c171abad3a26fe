//! The front door, black-box: the API served in-process on a free port against a fresh
//! control-plane database and a real Temporal dev server from the harness (no worker, so
//! accepted tenants stay `provisioning`; nothing here needs the saga to run).
//!
//! Covers every refusal of a create request (status, problem type, field) and that none
//! of them wrote anything; who may do what in which organisation; API tokens (create,
//! list, revoke with every token descending from it, expiry) through the API and the CLI;
//! `Idempotency-Key`; the rules endpoint; and the OpenAPI document against the router, in
//! both directions.
//!
//! Needs PostgreSQL (TP_TEST_PG) and the Temporal, Caddy and maildev binaries the harness
//! finds (scripts/test.sh sets them); the application binaries are not needed.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenant_domain::validation::{MAX_EMAIL_LEN, MAX_NAME_LEN, MAX_SLUG_LEN, NAME_PATTERN};
use tenant_starter::api::{self, ApiConfig, AppState};
use tenant_starter::saga::Saga;
use tenant_store::Store;
use tenant_store::access::Role;
use tenant_tests::{Stack, StackOptions};
use uuid::Uuid;

const PROBLEM: &str = "https://tenant-provisioner.dev/problems/";

/// The API under test, its database and the servers behind it.
struct FrontDoor {
    base: String,
    http: reqwest::Client,
    store: Store,
    state: AppState,
    domain: String,
    // Last, so the servers and the database go after everything that uses them.
    stack: Stack,
}

/// An answer: status, headers and the body as JSON.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with this status and problem type.
    fn assert_problem(&self, status: StatusCode, kind: &str, context: &str) {
        assert_eq!(self.status, status, "{context}: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{context}: {}",
            self.body
        );
        assert_eq!(
            self.body["type"],
            format!("{PROBLEM}{kind}"),
            "{context}: {}",
            self.body
        );
        assert_eq!(self.body["status"], status.as_u16(), "{context}");
    }

    /// `(field, code)` of every field error.
    fn fields(&self) -> Vec<(String, String)> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                        (text("field"), text("code"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl FrontDoor {
    async fn start() -> Self {
        let stack = Stack::start_with(StackOptions {
            app: false,
            ..Default::default()
        })
        .await
        .expect("starting Temporal and a fresh control-plane database");
        let store = Store::connect(&stack.database_url, 5)
            .await
            .expect("connecting to and migrating the control-plane database");
        let saga = Saga::connect(&stack.temporal_address, "default")
            .await
            .expect("connecting to the stack's Temporal");
        let config = ApiConfig {
            domain: stack.domain.clone(),
            ..ApiConfig::default()
        };
        let state = AppState::new(store.clone(), saga, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = api::router(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            base,
            http,
            store,
            state,
            domain: stack.domain.clone(),
            stack,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text:?}"))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    async fn create(&self, org: &str, token: &str, body: &Value) -> Answer {
        let path = format!("/api/v1/organizations/{org}/tenants");
        self.call(Method::POST, &path, Some(token), Some(body))
            .await
    }

    async fn create_with_key(&self, org: &str, token: &str, key: &str, body: &str) -> Answer {
        let request = self
            .http
            .post(self.url(&format!("/api/v1/organizations/{org}/tenants")))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_owned());
        self.send(request).await
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A new organisation and its owner's token.
    async fn org(&self, slug: &str, owner: &str) -> String {
        let (_, token) = self.store.bootstrap(slug, slug, owner).await.unwrap();
        token.expose().to_owned()
    }

    /// A principal with `role` in `org`, and its token.
    async fn member(&self, name: &str, org: &str, role: Role) -> String {
        let principal = self.store.create_principal(name, false).await.unwrap();
        self.store
            .add_membership(principal.id, org, role)
            .await
            .unwrap();
        let token = self
            .store
            .create_token(principal.id, "test", None)
            .await
            .unwrap();
        token.expose().to_owned()
    }

    async fn operator(&self, name: &str) -> String {
        let (_, token) = self.store.bootstrap_operator(name).await.unwrap();
        token.expose().to_owned()
    }

    /// The OpenAPI document, as served.
    async fn document(&self) -> Value {
        let answer = self
            .call(Method::GET, "/api/v1/openapi.json", None, None)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body
    }

    /// Runs the `tenants` CLI against this API with `token`, isolated from the caller's
    /// environment and token file.
    async fn cli(&self, token: &str, args: &[&str]) -> std::process::Output {
        let home = self.stack.temp_dir.join("cli-home");
        std::fs::create_dir_all(&home).unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenants"));
        command
            .args(["--api-url", &self.base, "--token", token])
            .args(args)
            .env_remove("TP_TOKEN")
            .env_remove("TP_API_URL")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home);
        command.output().await.expect("running the tenants CLI")
    }
}

fn tenant_body(slug: &str) -> Value {
    json!({ "slug": slug, "plan": "growth", "first_admin_email": "admin@example.com" })
}

/// A concrete path for a route template: `{org_id}` → `org`, `{slug}` → `prod`, `{id}` →
/// a random uuid.
fn concrete(path: &str, org: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{org_id}" => org.to_owned(),
            "{slug}" => "prod".to_owned(),
            "{id}" => Uuid::new_v4().to_string(),
            s if s.starts_with('{') => "x".to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The documented routes that need a token, from the served document.
fn authenticated_routes(doc: &Value) -> Vec<(Method, String)> {
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("security") != Some(&json!([])) {
                routes.push((method.to_uppercase().parse().unwrap(), path.clone()));
            }
        }
    }
    assert!(!routes.is_empty());
    routes
}

/// Every create request the front door must refuse, with the status, problem type and
/// field error (`None` where the refusal is not about one field) it must answer with.
#[tokio::test]
async fn every_bad_create_request_is_refused_field_by_field_and_writes_nothing() {
    let app = FrontDoor::start().await;
    let owner = app.org("acme", "alice").await;

    let with = |field: &str, value: Value| {
        let mut body = tenant_body("prod");
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = tenant_body("prod");
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let pattern =
        |field: &str, value: &str| (with(field, json!(value)), field.to_owned(), "pattern");
    let long_email = format!("{}@example.com", "a".repeat(MAX_EMAIL_LEN));

    let mut cases: Vec<(String, Value, String, &str)> = Vec::new();
    let mut add = |what: &str, (body, field, code): (Value, String, &'static str)| {
        cases.push((what.to_owned(), body, field, code));
    };
    add("uppercase first", pattern("slug", "Prod"));
    add("uppercase inside", pattern("slug", "prOd"));
    add("uppercase last", pattern("slug", "prod-eU"));
    add("uppercase name", pattern("name", "Production"));
    add("leading digit", pattern("slug", "1prod"));
    add("leading dash", pattern("slug", "-prod"));
    add("trailing dash", pattern("slug", "prod-"));
    add("double dash", pattern("slug", "pro--d"));
    add("name with a double dash", pattern("name", "my--tenant"));
    add("Cyrillic a", pattern("slug", "\u{0430}cme"));
    add("Cyrillic o inside", pattern("slug", "pr\u{043e}d"));
    add("Greek omicron in the name", pattern("name", "pr\u{03bf}d"));
    add("fullwidth letter", pattern("slug", "\u{ff50}rod"));
    add("accented letter", pattern("slug", "pr\u{00f6}d"));
    add("underscore", pattern("slug", "prod_eu"));
    add("dot", pattern("slug", "prod.eu"));
    add("leading space", pattern("slug", " prod"));
    add("trailing space", pattern("slug", "prod "));
    add("inner space", pattern("slug", "pr od"));
    add("tab", pattern("slug", "prod\t"));
    add("newline", pattern("slug", "prod\n"));
    add("non-breaking space", pattern("slug", "prod\u{00a0}"));
    add(
        "empty slug",
        (with("slug", json!("")), "slug".into(), "required"),
    );
    add(
        "empty name",
        (with("name", json!("")), "name".into(), "required"),
    );
    add(
        "empty plan",
        (with("plan", json!("")), "plan".into(), "required"),
    );
    add(
        "empty email",
        (
            with("first_admin_email", json!("")),
            "first_admin_email".into(),
            "required",
        ),
    );
    add(
        "slug one too long",
        (
            with("slug", json!("a".repeat(MAX_SLUG_LEN + 1))),
            "slug".into(),
            "too_long",
        ),
    );
    add(
        "name one too long",
        (
            with("name", json!("a".repeat(MAX_NAME_LEN + 1))),
            "name".into(),
            "too_long",
        ),
    );
    add(
        "email too long",
        (
            with("first_admin_email", json!(long_email)),
            "first_admin_email".into(),
            "too_long",
        ),
    );
    add(
        "unknown plan",
        (
            with("plan", json!("platinum")),
            "plan".into(),
            "unknown_plan",
        ),
    );
    add(
        "plan in capitals",
        (with("plan", json!("GROWTH")), "plan".into(), "unknown_plan"),
    );
    for bad in [
        "not-an-email",
        "admin@",
        "@example.com",
        "admin@localhost",
        "Admin <admin@example.com>",
        "adm in@example.com",
        "admin@ex ample.com",
        "\u{00e4}dmin@example.com",
        "admin@[127.0.0.1]",
        "admin@example.com\n",
    ] {
        add(
            &format!("email {bad:?}"),
            (
                with("first_admin_email", json!(bad)),
                "first_admin_email".into(),
                "invalid_email",
            ),
        );
    }
    add("missing slug", (without("slug"), "slug".into(), "required"));
    add("missing plan", (without("plan"), "plan".into(), "required"));
    add(
        "missing email",
        (
            without("first_admin_email"),
            "first_admin_email".into(),
            "required",
        ),
    );
    add(
        "unknown field",
        (
            with("colour", json!("red")),
            "colour".into(),
            "unknown_field",
        ),
    );
    add(
        "org in the body",
        (with("org", json!("acme")), "org".into(), "unknown_field"),
    );
    add(
        "slug as a number",
        (with("slug", json!(42)), "slug".into(), "invalid_type"),
    );
    add(
        "slug as null",
        (with("slug", Value::Null), "slug".into(), "invalid_type"),
    );
    add(
        "body as an array",
        (json!(["prod"]), "body".into(), "invalid_type"),
    );

    for (what, body, field, code) in &cases {
        let answer = app.create("acme", &owner, body).await;
        answer.assert_problem(StatusCode::BAD_REQUEST, "validation", what);
        assert!(
            answer
                .fields()
                .contains(&(field.clone(), (*code).to_owned())),
            "{what}: expected {field}/{code} in {}",
            answer.body
        );
        assert!(
            answer.body["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{what}"
        );
    }

    // Bodies that are not JSON objects at all.
    let raw = |body: &'static str, content_type: &'static str| {
        app.http
            .post(app.url("/api/v1/organizations/acme/tenants"))
            .bearer_auth(&owner)
            .header("content-type", content_type)
            .body(body)
    };
    let malformed = app
        .send(raw(r#"{"slug":"prod","#, "application/json"))
        .await;
    malformed.assert_problem(StatusCode::BAD_REQUEST, "validation", "malformed JSON");
    assert_eq!(
        malformed.fields(),
        vec![("body".into(), "malformed_json".into())]
    );
    let empty = app.send(raw("", "application/json")).await;
    empty.assert_problem(StatusCode::BAD_REQUEST, "validation", "empty body");
    assert_eq!(empty.fields(), vec![("body".into(), "required".into())]);
    let form = app
        .send(raw("slug=prod", "application/x-www-form-urlencoded"))
        .await;
    form.assert_problem(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "form body",
    );

    // A huge body is refused before it is read in full.
    let huge = with("name", json!("a".repeat(api::MAX_BODY_BYTES + 1)));
    let answer = app.create("acme", &owner, &huge).await;
    answer.assert_problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        "huge body",
    );

    // An organisation slug that breaks the rule cannot exist: refused as the path's
    // `org_id`, for operators too.
    let operator = app.operator("ops").await;
    for org in ["Acme", "ACME", "1acme", "acme-", "\u{0430}cme"] {
        let path = format!(
            "/api/v1/organizations/{}/tenants",
            percent_encoding::utf8_percent_encode(org, percent_encoding::NON_ALPHANUMERIC)
        );
        let answer = app
            .call(
                Method::POST,
                &path,
                Some(&operator),
                Some(&tenant_body("prod")),
            )
            .await;
        answer.assert_problem(StatusCode::BAD_REQUEST, "validation", org);
        assert_eq!(answer.fields(), vec![("org_id".into(), "pattern".into())]);
    }

    // Nothing was written by any refusal: no tenant, no audit entry.
    assert_eq!(app.count("SELECT count(*) FROM tenants").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM audit_events").await, 0);

    // The same requests made valid are accepted, so the refusals were about the fields.
    let accepted = app.create("acme", &owner, &tenant_body("prod")).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let longest = with("slug", json!("a".repeat(MAX_SLUG_LEN)));
    let accepted = app.create("acme", &owner, &longest).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    assert_eq!(app.count("SELECT count(*) FROM tenants").await, 2);
}

/// Owner, admin and operator may create; a member may only read; an outsider learns
/// nothing, not even whether a slug exists; no token at all is 401.
#[tokio::test]
async fn roles_decide_who_may_create_and_read_in_which_organisation() {
    let app = FrontDoor::start().await;
    let owner = app.org("acme", "alice").await;
    let admin = app.member("adam", "acme", Role::Admin).await;
    let member = app.member("mia", "acme", Role::Member).await;
    let outsider = app.org("globex", "olga").await;
    let operator = app.operator("ops").await;
    let doc = app.document().await;

    // Create: who may, and what the others get.
    for (who, token, slug) in [
        ("owner", &owner, "by-owner"),
        ("admin", &admin, "by-admin"),
        ("operator", &operator, "by-operator"),
    ] {
        let answer = app.create("acme", token, &tenant_body(slug)).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{who}: {}",
            answer.body
        );
        assert_eq!(answer.body["state"], "provisioning", "{who}");
        assert_eq!(
            answer.body["host"],
            format!("{slug}-acme.{}", app.domain),
            "{who}"
        );
    }
    let refused = app.create("acme", &member, &tenant_body("by-member")).await;
    refused.assert_problem(StatusCode::FORBIDDEN, "forbidden", "member creates");
    let hidden = app
        .create("acme", &outsider, &tenant_body("by-outsider"))
        .await;
    hidden.assert_problem(StatusCode::NOT_FOUND, "not-found", "outsider creates");
    let anonymous = app
        .call(
            Method::POST,
            "/api/v1/organizations/acme/tenants",
            None,
            Some(&tenant_body("x")),
        )
        .await;
    anonymous.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized", "no token");
    assert!(anonymous.header("www-authenticate").is_some());
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE org_slug = 'acme'")
            .await,
        3,
        "only owner, admin and operator created"
    );

    // Read: every role of the organisation and the operator; nobody else.
    let reads = [
        "/api/v1/organizations/acme/tenants",
        "/api/v1/organizations/acme/tenants/by-owner?live=false",
        "/api/v1/organizations/acme/tenants/by-owner/events",
    ];
    for path in reads {
        for (who, token) in [
            ("owner", &owner),
            ("admin", &admin),
            ("member", &member),
            ("operator", &operator),
        ] {
            let answer = app.get(path, token).await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{who} reads {path}: {}",
                answer.body
            );
        }
        app.get(path, &outsider).await.assert_problem(
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("outsider reads {path}"),
        );
    }

    // The outsider's answers are identical whether the slug exists in acme or not, and
    // whatever the action: nothing tells it acme has a tenant `by-owner`.
    let ask = |method: Method, path: String| {
        let body = (method == Method::POST).then(|| tenant_body("by-owner"));
        let app = &app;
        let outsider = &outsider;
        async move {
            let answer = app.call(method, &path, Some(outsider), body.as_ref()).await;
            (answer.status, answer.body)
        }
    };
    for (method, path) in authenticated_routes(&doc) {
        if !path.contains("{slug}") {
            continue;
        }
        let existing = path
            .replace("{org_id}", "acme")
            .replace("{slug}", "by-owner");
        let missing = path
            .replace("{org_id}", "acme")
            .replace("{slug}", "never-was");
        let seen = ask(method.clone(), existing).await;
        let unseen = ask(method.clone(), missing).await;
        assert_eq!(seen.0, StatusCode::NOT_FOUND, "{method} {path}: {}", seen.1);
        assert_eq!(
            seen, unseen,
            "{method} {path}: the outsider can tell the slug exists"
        );
    }
    // Nor can it tell acme from an organisation that does not exist, beyond the name it sent.
    let (status, body) = ask(
        Method::GET,
        "/api/v1/organizations/acme/tenants/by-owner".into(),
    )
    .await;
    let (ghost_status, ghost_body) = ask(
        Method::GET,
        "/api/v1/organizations/nosuch/tenants/by-owner".into(),
    )
    .await;
    assert_eq!(status, ghost_status);
    assert_eq!(
        body.to_string().replace("acme", "ORG"),
        ghost_body.to_string().replace("nosuch", "ORG")
    );

    // A member is refused every action that changes a tenant, with 403 naming its role.
    for (method, path) in authenticated_routes(&doc) {
        if method != Method::POST || !path.starts_with("/api/v1/organizations/") {
            continue;
        }
        let path = path
            .replace("{org_id}", "acme")
            .replace("{slug}", "by-owner");
        let answer = app
            .call(
                Method::POST,
                &path,
                Some(&member),
                Some(&tenant_body("by-member")),
            )
            .await;
        answer.assert_problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("member POST {path}"),
        );
        assert!(
            answer.body["detail"].as_str().unwrap().contains("member"),
            "{}",
            answer.body
        );
    }

    // The operator may act in an organisation it has no role in, but not in one that
    // does not exist.
    let answer = app
        .create("globex", &operator, &tenant_body("ops-made"))
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    app.create("nosuch", &operator, &tenant_body("prod"))
        .await
        .assert_problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "operator in a missing organisation",
        );

    // Each organisation sees only its own tenants.
    let globex = app
        .get("/api/v1/organizations/globex/tenants", &outsider)
        .await;
    let slugs: Vec<&str> = globex.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, vec!["ops-made"]);
}

/// Tokens: issued once through the API or the CLI, listed without their values, revoked
/// by their owner or an operator; a revoked or expired token is refused everywhere.
#[tokio::test]
async fn tokens_are_issued_listed_revoked_and_expire() {
    let app = FrontDoor::start().await;
    let owner = app.org("acme", "alice").await;
    let member = app.member("mia", "acme", Role::Member).await;
    let operator = app.operator("ops").await;
    let doc = app.document().await;

    // Issue.
    let created = app
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&owner),
            Some(&json!({ "name": "ci-deploy", "expires_in_days": 7 })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    assert_keys(&created.body, &["id", "name", "token", "expires_at"]);
    conforms(&doc, "TokenCreated", &created.body);
    let token = created.body["token"].as_str().unwrap().to_owned();
    let token_id = created.body["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tp_"));
    assert_eq!(created.body["name"], "ci-deploy");
    let expires_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(created.body["expires_at"].clone()).unwrap();
    let lifetime = expires_at - chrono::Utc::now();
    assert!(
        lifetime > chrono::Duration::days(7) - chrono::Duration::minutes(5),
        "{lifetime}"
    );
    assert!(lifetime <= chrono::Duration::days(7));

    // The new token acts as its owner.
    let listed = app.get("/api/v1/tokens", &token).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    conforms(&doc, "TokenList", &listed.body);
    let items = listed.body["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["bootstrap", "ci-deploy"]);
    for item in items {
        assert_keys(
            item,
            &[
                "id",
                "name",
                "state",
                "created_at",
                "expires_at",
                "revoked_at",
                "created_by_token",
            ],
        );
        assert_eq!(item["state"], "active");
    }
    assert_eq!(items[0]["created_by_token"], Value::Null, "bootstrap");
    assert_eq!(items[1]["created_by_token"], items[0]["id"], "made with it");
    // Never a token's value or hash, nor another principal's token.
    let text = listed.body.to_string();
    assert!(!text.contains(&token) && !text.contains(&owner[3..]) && !text.contains("sha"));
    let theirs = app.get("/api/v1/tokens", &member).await;
    assert_eq!(theirs.body["items"].as_array().unwrap().len(), 1);

    // Refusals, field by field.
    for (body, field, code) in [
        (json!({}), "name", "required"),
        (json!({ "name": "   " }), "name", "required"),
        (json!({ "name": "x".repeat(65) }), "name", "too_long"),
        (json!({ "name": "a\u{0007}b" }), "name", "invalid"),
        (
            json!({ "name": "ci", "expires_in_days": 0 }),
            "expires_in_days",
            "out_of_range",
        ),
        (
            json!({ "name": "ci", "expires_in_days": 3651 }),
            "expires_in_days",
            "out_of_range",
        ),
        (
            json!({ "name": "ci", "expires_in_days": -1 }),
            "expires_in_days",
            "invalid_type",
        ),
        (
            json!({ "name": "ci", "expires_in_days": "7" }),
            "expires_in_days",
            "invalid_type",
        ),
        (
            json!({ "name": "ci", "scope": "all" }),
            "scope",
            "unknown_field",
        ),
    ] {
        let answer = app
            .call(Method::POST, "/api/v1/tokens", Some(&owner), Some(&body))
            .await;
        answer.assert_problem(StatusCode::BAD_REQUEST, "validation", &body.to_string());
        assert_eq!(
            answer.fields(),
            vec![(field.to_owned(), code.to_owned())],
            "{body}"
        );
    }
    app.call(
        Method::POST,
        "/api/v1/tokens",
        None,
        Some(&json!({ "name": "x" })),
    )
    .await
    .assert_problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "anonymous token request",
    );
    assert_eq!(
        app.count("SELECT count(*) FROM api_tokens").await,
        4,
        "no refusal issued a token"
    );

    // Revoke: not someone else's (which looks like no token at all), but one's own.
    let foreign = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{token_id}"),
            Some(&member),
            None,
        )
        .await;
    foreign.assert_problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "member revokes the owner's token",
    );
    let no_such = Uuid::new_v4().to_string();
    let nothing = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{no_such}"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(foreign.status, nothing.status);
    assert_eq!(
        foreign.body.to_string().replace(&token_id, "ID"),
        nothing.body.to_string().replace(&no_such, "ID"),
        "another principal's token looks like no token at all"
    );
    let malformed = app
        .call(
            Method::DELETE,
            "/api/v1/tokens/not-a-uuid",
            Some(&owner),
            None,
        )
        .await;
    malformed.assert_problem(StatusCode::BAD_REQUEST, "validation", "malformed token id");
    assert_eq!(
        malformed.fields(),
        vec![("token_id".to_owned(), "invalid".to_owned())]
    );
    assert_eq!(
        app.get("/api/v1/tokens", &token).await.status,
        StatusCode::OK,
        "still live"
    );

    let revoked = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{token_id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    conforms(&doc, "TokenRevoked", &revoked.body);
    assert_eq!(revoked.body["state"], "revoked");
    assert_eq!(revoked.body["already_revoked"], false);
    assert_eq!(revoked.body["revoked_descendants"], 0);
    let again = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{token_id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.body["revoked_at"], revoked.body["revoked_at"],
        "revoking twice changes nothing"
    );
    assert_eq!(again.body["already_revoked"], true);

    // An operator may revoke anyone's token.
    let members_id = app.get("/api/v1/tokens", &member).await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cut = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{members_id}"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(cut.status, StatusCode::OK, "{}", cut.body);

    // Revoked, expired, unknown or missing: 401 on every endpoint that needs a token.
    let alice = app.store.authenticate(&owner).await.unwrap().unwrap();
    let expired = app
        .store
        .create_token(
            alice.id,
            "old",
            Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .await
        .unwrap();
    let unknown = format!("tp_{}", "0".repeat(64));
    for (method, path) in authenticated_routes(&doc) {
        let path = concrete(&path, "acme");
        let body = json!({ "name": "x" });
        for (what, token) in [
            ("revoked", Some(token.as_str())),
            ("revoked by an operator", Some(member.as_str())),
            ("expired", Some(expired.expose())),
            ("unknown", Some(unknown.as_str())),
            ("missing", None),
        ] {
            let answer = app.call(method.clone(), &path, token, Some(&body)).await;
            answer.assert_problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                &format!("{what} token, {method} {path}"),
            );
            assert!(!answer.body.to_string().contains("tp_"), "{}", answer.body);
        }
    }
    let states: Vec<String> = app.get("/api/v1/tokens", &owner).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, vec!["active", "revoked", "expired"]);

    // The CLI: create prints only the token on stdout, list shows it, revoke cuts it off.
    let out = app
        .cli(
            &owner,
            &[
                "tokens",
                "create",
                "--name",
                "from-cli",
                "--expires-in-days",
                "3",
            ],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        cli_token.starts_with("tp_") && !cli_token.contains(char::is_whitespace),
        "{cli_token:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("from-cli") && stderr.contains("shown only this once"),
        "{stderr}"
    );
    assert!(!stderr.contains(&cli_token));
    assert_eq!(
        app.get("/api/v1/tokens", &cli_token).await.status,
        StatusCode::OK
    );

    let out = app.cli(&cli_token, &["tokens", "list"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.starts_with("ID") && table.contains("from-cli") && table.contains("revoked"),
        "{table}"
    );
    assert!(!table.contains("tp_"), "{table}");

    let out = app
        .cli(&owner, &["--output", "json", "tokens", "list"])
        .await;
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cli_id = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "from-cli")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = app.cli(&owner, &["tokens", "revoke", &cli_id]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&cli_id));
    app.get("/api/v1/tokens", &cli_token).await.assert_problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "token revoked by the CLI",
    );

    // The CLI refuses what the API would, before sending; and reports the API's refusals.
    let before = app.count("SELECT count(*) FROM api_tokens").await;
    let out = app.cli(&owner, &["tokens", "create", "--name", "  "]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was sent"));
    let out = app
        .cli(
            &owner,
            &["tokens", "create", "--name", "x", "--expires-in-days", "0"],
        )
        .await;
    assert!(!out.status.success());
    assert_eq!(app.count("SELECT count(*) FROM api_tokens").await, before);
    let out = app.cli(&member, &["tokens", "list"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid, expired or revoked"));
    let out = app
        .cli(&owner, &["tokens", "revoke", &Uuid::new_v4().to_string()])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

/// A token never outlives the token that creates it: made with an expiring token, a new
/// token expires with it by default (down a chain, too), a shorter lifetime is kept, and a
/// longer one is refused on `expires_in_days` without issuing anything. A token that never
/// expires may still make one that never expires.
#[tokio::test]
async fn tokens_never_outlive_the_token_that_creates_them() {
    let started = FrontDoor::start().await;
    let app = &started;
    let owner = app.org("acme", "alice").await;
    let doc = app.document().await;
    let issue = |token: String, body: Value| async move {
        app.call(Method::POST, "/api/v1/tokens", Some(&token), Some(&body))
            .await
    };
    let at = |value: &Value| -> chrono::DateTime<chrono::Utc> {
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{value}: {e}"))
    };

    // The owner's token never expires: neither need the tokens it makes.
    let forever = issue(owner.clone(), json!({ "name": "forever" })).await;
    assert_eq!(forever.status, StatusCode::CREATED, "{}", forever.body);
    assert_eq!(forever.body["expires_at"], Value::Null);
    let long = issue(
        owner.clone(),
        json!({ "name": "long", "expires_in_days": 3650 }),
    )
    .await;
    assert_eq!(long.status, StatusCode::CREATED, "{}", long.body);

    let three = issue(
        owner.clone(),
        json!({ "name": "three", "expires_in_days": 3 }),
    )
    .await;
    assert_eq!(three.status, StatusCode::CREATED, "{}", three.body);
    let three_token = three.body["token"].as_str().unwrap().to_owned();
    // As stored (the database keeps microseconds).
    let listed = app.get("/api/v1/tokens", &owner).await;
    let three_expires = at(&listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "three")
        .unwrap()["expires_at"]);

    // No lifetime asked: the new token expires with the caller's, and so does the next.
    let child = issue(three_token.clone(), json!({ "name": "child" })).await;
    assert_eq!(child.status, StatusCode::CREATED, "{}", child.body);
    conforms(&doc, "TokenCreated", &child.body);
    assert_eq!(at(&child.body["expires_at"]), three_expires);
    let child_token = child.body["token"].as_str().unwrap().to_owned();
    let grandchild = issue(child_token.clone(), json!({ "name": "grandchild" })).await;
    assert_eq!(
        grandchild.status,
        StatusCode::CREATED,
        "{}",
        grandchild.body
    );
    assert_eq!(at(&grandchild.body["expires_at"]), three_expires);

    // A shorter lifetime is kept.
    let short = issue(
        three_token.clone(),
        json!({ "name": "short", "expires_in_days": 2 }),
    )
    .await;
    assert_eq!(short.status, StatusCode::CREATED, "{}", short.body);
    let short_expires = at(&short.body["expires_at"]);
    assert!(
        short_expires < three_expires,
        "{short_expires} {three_expires}"
    );
    assert!(
        short_expires
            > chrono::Utc::now() + chrono::Duration::days(2) - chrono::Duration::minutes(5)
    );

    // A longer one is refused, saying how long the caller may ask for; nothing is issued.
    let before = app.count("SELECT count(*) FROM api_tokens").await;
    // The caller's token has three days less the moments since it was made: two whole days.
    let expiry_text = three_expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (token, days) in [(&three_token, 3), (&three_token, 3650), (&child_token, 4)] {
        let refused = issue(
            token.clone(),
            json!({ "name": "longer", "expires_in_days": days }),
        )
        .await;
        refused.assert_problem(
            StatusCode::BAD_REQUEST,
            "validation",
            &format!("{days} days"),
        );
        assert_eq!(
            refused.fields(),
            vec![(
                "expires_in_days".to_owned(),
                "exceeds_caller_token".to_owned()
            )]
        );
        let message = refused.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(&expiry_text), "{message}");
        assert!(message.contains("at most 2 days"), "{message}");
        assert!(message.contains("omit expires_in_days"), "{message}");
        assert!(
            !refused.body.to_string().contains("tp_"),
            "{}",
            refused.body
        );
    }
    // The range check still comes first.
    let zero = issue(
        three_token.clone(),
        json!({ "name": "zero", "expires_in_days": 0 }),
    )
    .await;
    assert_eq!(
        zero.fields(),
        vec![("expires_in_days".to_owned(), "out_of_range".to_owned())]
    );

    // A token with less than a day left may only hand on its own expiry.
    let alice = app.store.authenticate(&owner).await.unwrap().unwrap();
    let hour = app
        .store
        .create_token(
            alice.id,
            "hour",
            Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        )
        .await
        .unwrap();
    let refused = issue(
        hour.expose().to_owned(),
        json!({ "name": "day", "expires_in_days": 1 }),
    )
    .await;
    assert_eq!(
        refused.fields(),
        vec![(
            "expires_in_days".to_owned(),
            "exceeds_caller_token".to_owned()
        )]
    );
    let message = refused.body["errors"][0]["message"].as_str().unwrap();
    assert!(!message.contains("at most"), "{message}");
    assert!(message.contains("omit expires_in_days"), "{message}");
    assert_eq!(
        app.count("SELECT count(*) FROM api_tokens").await,
        before + 1
    );
    let inherited = issue(hour.expose().to_owned(), json!({ "name": "same-hour" })).await;
    assert_eq!(inherited.status, StatusCode::CREATED, "{}", inherited.body);
    let hour_expires = at(&app.get("/api/v1/tokens", &owner).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "hour")
        .unwrap()["expires_at"]);
    assert_eq!(at(&inherited.body["expires_at"]), hour_expires);

    // The document says so.
    let described = doc["paths"]["/api/v1/tokens"]["post"]["description"]
        .as_str()
        .unwrap();
    assert!(described.contains("exceeds_caller_token"), "{described}");
}

/// Nor does a token survive the token that creates it: revoking a token revokes every token
/// descending from it, all at once, and the answer says how many and whether the token was
/// revoked already. Tokens made otherwise (a sibling from the bootstrap token, another
/// principal's) are untouched; revoking a child leaves its parent working; descendants
/// revoked before keep their `revoked_at`. A token created while its parent is being revoked
/// is revoked too, or never issued.
#[tokio::test]
async fn revoking_a_token_revokes_every_token_it_created() {
    let started = FrontDoor::start().await;
    let app = &started;
    let owner = app.org("acme", "alice").await;
    let member = app.member("mia", "acme", Role::Member).await;
    let operator = app.operator("ops").await;
    let document = app.document().await;
    let doc = &document;
    let issue = |token: String, name: &'static str| async move {
        let answer = app
            .call(
                Method::POST,
                "/api/v1/tokens",
                Some(&token),
                Some(&json!({ "name": name })),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{name}: {}",
            answer.body
        );
        let text = |k: &str| answer.body[k].as_str().unwrap().to_owned();
        (text("token"), text("id"))
    };
    let revoke = |token: String, id: String| async move {
        let answer = app
            .call(
                Method::DELETE,
                &format!("/api/v1/tokens/{id}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        conforms(doc, "TokenRevoked", &answer.body);
        assert_eq!(answer.body["state"], "revoked");
        answer.body
    };
    let works = |token: String| async move {
        app.get("/api/v1/tokens", &token).await.status == StatusCode::OK
    };
    let listed = |token: String| async move {
        let answer = app.get("/api/v1/tokens", &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body["items"].as_array().unwrap().clone()
    };
    let find = |items: &[Value], id: &str| -> Value {
        items
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed"))
            .clone()
    };

    // alice's bootstrap token makes `parent` and `sibling`; parent → child → grandchild,
    // and parent → spare → spare-child.
    let (parent, parent_id) = issue(owner.clone(), "parent").await;
    let (sibling, _) = issue(owner.clone(), "sibling").await;
    let (child, child_id) = issue(parent.clone(), "child").await;
    let (grandchild, grandchild_id) = issue(child.clone(), "grandchild").await;
    let (spare, spare_id) = issue(parent.clone(), "spare").await;
    let (spare_child, _) = issue(spare.clone(), "spare-child").await;
    let (mias, _) = issue(member.clone(), "mias").await;

    // Each lists the token it was made with.
    let items = listed(owner.clone()).await;
    let bootstrap_id = items[0]["id"].as_str().unwrap();
    assert_eq!(items[0]["created_by_token"], Value::Null);
    for (id, made_with) in [
        (&parent_id, bootstrap_id),
        (&child_id, &parent_id),
        (&grandchild_id, &child_id),
        (&spare_id, &parent_id),
    ] {
        assert_eq!(find(&items, id)["created_by_token"], *made_with);
    }

    // Revoking a child takes its own descendants, not its parent or its siblings.
    let body = revoke(owner.clone(), spare_id.clone()).await;
    assert_eq!(body["already_revoked"], false);
    assert_eq!(body["revoked_descendants"], 1);
    assert!(!works(spare.clone()).await && !works(spare_child.clone()).await);
    for token in [&parent, &child, &grandchild] {
        assert!(
            works(token.clone()).await,
            "a child's revocation reached up"
        );
    }
    let spare_revoked_at = body["revoked_at"].clone();
    let spare_child_revoked_at = listed(owner.clone())
        .await
        .iter()
        .find(|t| t["name"] == "spare-child")
        .unwrap()["revoked_at"]
        .clone();

    // Revoking the parent (here with another of alice's tokens) takes child and
    // grandchild, and counts only those this call revoked.
    let body = revoke(sibling.clone(), parent_id.clone()).await;
    assert_eq!(body["already_revoked"], false, "{body}");
    assert_eq!(body["revoked_descendants"], 2, "{body}");
    for (what, token) in [
        ("parent", &parent),
        ("child", &child),
        ("grandchild", &grandchild),
    ] {
        for (method, body) in [
            (Method::GET, None),
            (Method::POST, Some(json!({ "name": "more" }))),
        ] {
            app.call(method.clone(), "/api/v1/tokens", Some(token), body.as_ref())
                .await
                .assert_problem(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    &format!("{what} after its lineage was revoked, {method}"),
                );
        }
    }
    for (what, token) in [("owner", &owner), ("sibling", &sibling), ("mia's", &mias)] {
        assert!(works(token.clone()).await, "{what} token was revoked too");
    }
    let items = listed(owner.clone()).await;
    for id in [&child_id, &grandchild_id] {
        let token = find(&items, id);
        assert_eq!(token["state"], "revoked");
        assert_eq!(
            token["revoked_at"], body["revoked_at"],
            "revoked in the same transaction as the parent"
        );
    }
    assert_eq!(find(&items, &spare_id)["revoked_at"], spare_revoked_at);
    let spare_child_now = items.iter().find(|t| t["name"] == "spare-child").unwrap();
    assert_eq!(spare_child_now["revoked_at"], spare_child_revoked_at);

    // Again: nothing changes, and the answer says so.
    let again = revoke(owner.clone(), parent_id.clone()).await;
    assert_eq!(again["already_revoked"], true);
    assert_eq!(again["revoked_descendants"], 0);
    assert_eq!(again["revoked_at"], body["revoked_at"]);

    // An operator's revocation takes the lineage too.
    let (mias_child, _) = issue(mias.clone(), "mias-child").await;
    let mias_id = listed(member.clone())
        .await
        .iter()
        .find(|t| t["name"] == "mias")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = revoke(operator.clone(), mias_id).await;
    assert_eq!(body["revoked_descendants"], 1, "{body}");
    assert!(!works(mias_child).await);
    assert!(works(member.clone()).await);

    // The CLI says what it revoked, and that a revoked token was already revoked.
    let (cli_parent, cli_parent_id) = issue(owner.clone(), "cli-parent").await;
    let (cli_child, _) = issue(cli_parent.clone(), "cli-child").await;
    issue(cli_child.clone(), "cli-grandchild").await;
    let out = app.cli(&owner, &["tokens", "revoke", &cli_parent_id]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("revoked token {cli_parent_id} (cli-parent) and 2 tokens it created")
    );
    assert!(!works(cli_child).await);
    let out = app.cli(&owner, &["tokens", "revoke", &cli_parent_id]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("token {cli_parent_id} (cli-parent) was already revoked")
    );
    let out = app
        .cli(
            &owner,
            &["--output", "json", "tokens", "revoke", &cli_parent_id],
        )
        .await;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["already_revoked"], true);
    assert_eq!(json["revoked_descendants"], 0);

    // Tokens created while their parent is revoked: each one is refused, or revoked with
    // it; none outlives the revocation.
    let (racer, racer_id) = issue(owner.clone(), "racer").await;
    let raced = json!({ "name": "raced" });
    let racer_path = format!("/api/v1/tokens/{racer_id}");
    let creates =
        (0..12).map(|_| app.call(Method::POST, "/api/v1/tokens", Some(&racer), Some(&raced)));
    let revocation = app.call(Method::DELETE, &racer_path, Some(&owner), None);
    let (answers, revoked) = tokio::join!(futures::future::join_all(creates), revocation);
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let mut issued = 0;
    for answer in answers {
        if answer.status == StatusCode::CREATED {
            issued += 1;
            let token = answer.body["token"].as_str().unwrap().to_owned();
            assert!(
                !works(token).await,
                "a token made during the revocation lives"
            );
        } else {
            answer.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized", "raced create");
        }
    }
    assert_eq!(
        revoked.body["revoked_descendants"], issued,
        "{}",
        revoked.body
    );
}

/// `Idempotency-Key`: the same request with the same key is answered from the record
/// without acting; the key with another request is refused; keys are per caller, released
/// by refusals and forgotten after 24 hours.
#[tokio::test]
async fn idempotency_keys_replay_the_first_answer_and_refuse_reuse() {
    let app = FrontDoor::start().await;
    let owner = app.org("acme", "alice").await;
    let admin = app.member("adam", "acme", Role::Admin).await;
    let events = "SELECT count(*) FROM audit_events";

    let body = r#"{"slug":"idem","plan":"growth","first_admin_email":"admin@example.com"}"#;
    let first = app.create_with_key("acme", &owner, "key-1", body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(app.count(events).await, 1);

    // The same request, written differently, with the same key: the first answer again.
    let same = "{ \"first_admin_email\": \"admin@example.com\",\n  \
                \"plan\": \"growth\", \"slug\": \"idem\" }";
    let replayed = app.create_with_key("acme", &owner, "key-1", same).await;
    assert_eq!(replayed.status, StatusCode::ACCEPTED);
    assert_eq!(replayed.body, first.body);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.header("location"), first.header("location"));
    assert_eq!(app.count("SELECT count(*) FROM tenants").await, 1);
    assert_eq!(app.count(events).await, 1, "a replay acts no further");

    // Without the key, a repeat is the API's own idempotent repeat: 200, the same tenant.
    let repeat = app
        .create("acme", &owner, &serde_json::from_str(body).unwrap())
        .await;
    assert_eq!(repeat.status, StatusCode::OK, "{}", repeat.body);
    assert_eq!(repeat.body["id"], first.body["id"]);

    // The key with another request is refused, and nothing happens.
    let other = r#"{"slug":"idem","plan":"free","first_admin_email":"admin@example.com"}"#;
    let reused = app.create_with_key("acme", &owner, "key-1", other).await;
    reused.assert_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
        "reused key",
    );
    assert_eq!(
        reused.fields(),
        vec![("Idempotency-Key".into(), "reused".into())]
    );
    let elsewhere =
        r#"{"slug":"idem-two","plan":"growth","first_admin_email":"admin@example.com"}"#;
    app.create_with_key("acme", &owner, "key-1", elsewhere)
        .await
        .assert_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "reused key, other slug",
        );
    assert_eq!(app.count("SELECT count(*) FROM tenants").await, 1);

    // Keys belong to their caller: the admin's "key-1" is a key of its own.
    let admins = app
        .create_with_key("acme", &admin, "key-1", elsewhere)
        .await;
    assert_eq!(admins.status, StatusCode::ACCEPTED, "{}", admins.body);
    assert_eq!(admins.header("idempotent-replayed"), None);

    // A refusal changes nothing and so does not hold the key.
    let refused = app
        .create_with_key(
            "acme",
            &owner,
            "key-2",
            r#"{"slug":"Bad","plan":"growth","first_admin_email":"admin@example.com"}"#,
        )
        .await;
    refused.assert_problem(StatusCode::BAD_REQUEST, "validation", "bad slug with a key");
    let fixed = r#"{"slug":"good","plan":"growth","first_admin_email":"admin@example.com"}"#;
    let accepted = app.create_with_key("acme", &owner, "key-2", fixed).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);

    // Malformed keys are refused before anything else.
    for bad in [
        "x".repeat(256),
        "has space".to_owned(),
        "caf\u{e9}".to_owned(),
    ] {
        let request = app
            .http
            .post(app.url("/api/v1/organizations/acme/tenants"))
            .bearer_auth(&owner)
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
            )
            .json(&tenant_body("never"));
        let answer = app.send(request).await;
        answer.assert_problem(
            StatusCode::BAD_REQUEST,
            "validation",
            &format!("key {bad:?}"),
        );
        assert_eq!(
            answer.fields(),
            vec![("Idempotency-Key".into(), "invalid".into())]
        );
    }

    // Kept for 24 hours, then forgotten: the key may then name a new request.
    let kept = app
        .count(
            "SELECT extract(epoch FROM expires_at - created_at)::bigint FROM idempotency_keys
             WHERE key = 'key-1' AND status IS NOT NULL ORDER BY created_at LIMIT 1",
        )
        .await;
    assert_eq!(kept, 24 * 60 * 60);
    sqlx::query(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'key-1'",
    )
    .execute(app.store.pool())
    .await
    .unwrap();
    let renewed =
        r#"{"slug":"idem-three","plan":"growth","first_admin_email":"admin@example.com"}"#;
    let fresh = app.create_with_key("acme", &owner, "key-1", renewed).await;
    assert_eq!(fresh.status, StatusCode::ACCEPTED, "{}", fresh.body);
    assert_eq!(fresh.header("idempotent-replayed"), None);

    // Concurrent requests with one key act once: one 202, the others replays or 409.
    let racing = r#"{"slug":"race","plan":"growth","first_admin_email":"admin@example.com"}"#;
    let answers = futures::future::join_all(
        (0..6).map(|_| app.create_with_key("acme", &owner, "key-race", racing)),
    )
    .await;
    let mut acted = 0;
    for answer in &answers {
        match (answer.status, answer.header("idempotent-replayed")) {
            (StatusCode::ACCEPTED, None) => acted += 1,
            (StatusCode::ACCEPTED, Some("true")) => {}
            (StatusCode::CONFLICT, _) => {
                answer.assert_problem(StatusCode::CONFLICT, "idempotency-key-in-use", "racing key");
                assert_eq!(answer.header("retry-after"), Some("1"));
            }
            (status, _) => panic!("unexpected {status}: {}", answer.body),
        }
    }
    assert_eq!(acted, 1);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_events e JOIN tenants t ON t.id = e.tenant_id
             WHERE t.slug = 'race'"
        )
        .await,
        1
    );
}

/// The rules endpoint publishes exactly the domain's rule and the stored plans.
#[tokio::test]
async fn rules_publish_the_domain_rule_and_the_plans() {
    let app = FrontDoor::start().await;
    let doc = app.document().await;

    let answer = app.call(Method::GET, "/api/v1/rules", None, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    conforms(&doc, "Rules", &answer.body);
    let rules = &answer.body;
    assert_eq!(rules["name_pattern"], NAME_PATTERN);
    for (field, max) in [
        ("org", MAX_SLUG_LEN),
        ("slug", MAX_SLUG_LEN),
        ("name", MAX_NAME_LEN),
    ] {
        assert_eq!(rules["fields"][field]["pattern"], NAME_PATTERN, "{field}");
        assert_eq!(rules["fields"][field]["max_length"], max, "{field}");
    }
    assert_eq!(rules["fields"]["name"]["required"], false);
    assert_eq!(rules["fields"]["slug"]["required"], true);
    assert_eq!(
        rules["fields"]["first_admin_email"]["max_length"],
        MAX_EMAIL_LEN
    );
    assert_eq!(rules["fields"]["first_admin_email"]["format"], "email");
    assert_eq!(rules["host"]["template"], "<slug>-<org>.<domain>");
    assert_eq!(rules["host"]["domain"], app.domain);

    let stored: Vec<(String, String, i32, i32, i32, i32)> = sqlx::query_as(
        "SELECT name, display_name, max_tenants_per_org, db_connection_limit,
                workload_db_pool, workload_max_concurrent_requests
         FROM plans ORDER BY name",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert!(!stored.is_empty());
    let published: Vec<(String, String, i32, i32, i32, i32)> = rules["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["display_name"].as_str().unwrap().to_owned(),
                p["max_tenants_per_org"].as_i64().unwrap() as i32,
                p["db_connection_limit"].as_i64().unwrap() as i32,
                p["workload_db_pool"].as_i64().unwrap() as i32,
                p["workload_max_concurrent_requests"].as_i64().unwrap() as i32,
            )
        })
        .collect();
    assert_eq!(published, stored);

    // No token needed, and a token changes nothing.
    let owner = app.org("acme", "alice").await;
    let with_token = app.get("/api/v1/rules", &owner).await;
    assert_eq!(with_token.body, answer.body);

    // What the rule accepts, the API accepts: the longest slug and org fit one host label.
    let longest_org = "o".repeat(MAX_SLUG_LEN);
    let token = app.org(&longest_org, "olga").await;
    let created = app
        .create(
            &longest_org,
            &token,
            &tenant_body(&"s".repeat(MAX_SLUG_LEN)),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    conforms(&doc, "TenantResource", &created.body);
    let label = created.body["host"]
        .as_str()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .len();
    assert!(label <= rules["host"]["max_label_length"].as_u64().unwrap() as usize);
}

/// The OpenAPI document describes exactly the routes the router serves, with the domain's
/// limits on every name and problem+json errors everywhere.
#[tokio::test]
async fn openapi_document_matches_the_router_and_the_domain_rule() {
    let app = FrontDoor::start().await;
    let doc = app.document().await;
    let owner = app.org("acme", "alice").await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    // Both directions: every route of the router is documented with exactly its methods.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let served = served_routes(&app).await;
    assert_eq!(
        served,
        documented,
        "router and OpenAPI document differ; \
         served minus documented: {:?}; documented minus served: {:?}",
        served.difference(&documented).collect::<Vec<_>>(),
        documented.difference(&served).collect::<Vec<_>>()
    );
    let listed: BTreeSet<(String, String)> = api::openapi::routes()
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(listed, documented);

    // Every name field carries the domain's pattern and length, wherever it appears.
    let create = &doc["paths"]["/api/v1/organizations/{org_id}/tenants"]["post"];
    let body = resolve(
        &doc,
        &create["requestBody"]["content"]["application/json"]["schema"],
    );
    for (field, max) in [("slug", MAX_SLUG_LEN), ("name", MAX_NAME_LEN)] {
        assert_eq!(
            body["properties"][field]["pattern"], NAME_PATTERN,
            "{field}"
        );
        assert_eq!(body["properties"][field]["maxLength"], max, "{field}");
    }
    assert_eq!(
        body["properties"]["first_admin_email"]["maxLength"],
        MAX_EMAIL_LEN
    );
    assert_eq!(body["properties"]["first_admin_email"]["format"], "email");
    assert_eq!(body["additionalProperties"], false);
    let mut required: Vec<&str> = body["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, vec!["first_admin_email", "plan", "slug"]);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["name"] == "org_id" || param["name"] == "slug" {
                    assert_eq!(param["schema"]["pattern"], NAME_PATTERN, "{method} {path}");
                    assert_eq!(
                        param["schema"]["maxLength"], MAX_SLUG_LEN,
                        "{method} {path}"
                    );
                }
            }
            // Errors are problem+json; a route that needs a token documents its 401.
            let responses = op["responses"].as_object().unwrap();
            let mut errors = 0;
            for (status, response) in responses {
                let response = resolve(&doc, response);
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}"
                );
                if status.starts_with('4') || status.starts_with('5') {
                    errors += 1;
                    let is_problem = response["content"]
                        .get("application/problem+json")
                        .is_some();
                    assert!(is_problem, "{method} {path} {status} is not problem+json");
                }
            }
            assert!(errors > 0, "{method} {path} documents no error");
            if op.get("security") != Some(&json!([])) {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} needs a token but has no 401"
                );
            }
        }
    }

    // The document describes what the API sends.
    let created = app.create("acme", &owner, &tenant_body("prod")).await;
    conforms(&doc, "TenantResource", &created.body);
    let page = app.get("/api/v1/organizations/acme/tenants", &owner).await;
    conforms(&doc, "TenantPage", &page.body);
    let detail = app
        .get("/api/v1/organizations/acme/tenants/prod?live=false", &owner)
        .await;
    conforms(&doc, "TenantDetail", &detail.body);
    let refused = app.create("acme", &owner, &tenant_body("Prod")).await;
    conforms(&doc, "Problem", &refused.body);
}

/// The `(METHOD, path template)` pairs the router serves: the templates from the router
/// itself (its `Debug` lists them; the test fails loudly should that ever change), the
/// methods by asking the running server which ones it does not answer with 405.
async fn served_routes(app: &FrontDoor) -> BTreeSet<(String, String)> {
    let router = api::router(app.state.clone());
    let debug = format!("{router:?}");
    let templates: HashSet<String> = debug
        .split('"')
        .filter(|s| s.starts_with('/') && !s.contains("__private__"))
        .map(str::to_owned)
        .collect();
    assert!(
        templates.len() >= 5 && templates.contains("/healthz/live"),
        "cannot read the route templates from the router's Debug output: {debug}"
    );
    let mut served = BTreeSet::new();
    for template in templates {
        let path = concrete(&template, "acme");
        let mut fell_through = 0;
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            // No token: every route that needs one answers 401 without acting.
            let answer = app.call(method.clone(), &path, None, None).await;
            if answer.body["detail"] == "no such endpoint" {
                fell_through += 1;
            } else if answer.status != StatusCode::METHOD_NOT_ALLOWED {
                served.insert((method.to_string(), template.clone()));
            }
        }
        // The router's fallback registers `/` itself; any other template is a real route.
        assert!(
            fell_through == 0 || template == "/",
            "{template} is in the router but falls through to the fallback"
        );
    }
    served
}

/// Follows a `$ref` within the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let target = doc
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{reference} does not resolve"));
            resolve(doc, target)
        }
        None => value,
    }
}

fn assert_keys(value: &Value, expected: &[&str]) {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{value}");
}

/// Asserts that `value` matches the named schema as far as objects go: every required
/// property present, no property the schema does not declare, recursively.
fn conforms(doc: &Value, schema: &str, value: &Value) {
    let schema = json!({ "$ref": format!("#/components/schemas/{schema}") });
    if let Err(problem) = check(doc, &schema, value, "$") {
        panic!("answer does not match the OpenAPI document: {problem}\n{value:#}");
    }
}

fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    // allOf: the union of the parts' properties and required lists.
    let parts: Vec<&Value> = match schema["allOf"].as_array() {
        Some(parts) => parts.iter().map(|p| resolve(doc, p)).collect(),
        None => vec![schema],
    };
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for part in &parts {
        if let Some(props) = part["properties"].as_object() {
            properties.extend(props.clone());
        }
        required.extend(part["required"].as_array().into_iter().flatten().cloned());
    }
    match value {
        Value::Object(object) if !properties.is_empty() => {
            for name in &required {
                let name = name.as_str().unwrap();
                if !object.contains_key(name) {
                    return Err(format!("{at}.{name} is required but missing"));
                }
            }
            for (name, item) in object {
                let Some(property) = properties.get(name) else {
                    return Err(format!("{at}.{name} is not in the schema"));
                };
                check(doc, property, item, &format!("{at}.{name}"))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(item_schema) = parts.iter().find_map(|p| p.get("items")) {
                    check(doc, item_schema, item, &format!("{at}[{i}]"))?;
                }
            }
            Ok(())
        }
        Value::String(text) => {
            if let Some(pattern) = schema["pattern"].as_str()
                && pattern == NAME_PATTERN
                && !tenant_domain::validation::matches_name_pattern(text)
            {
                return Err(format!("{at} = {text:?} breaks the pattern"));
            }
            if let Some(max) = schema["maxLength"].as_u64()
                && text.chars().count() as u64 > max
            {
                return Err(format!("{at} is longer than {max}"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
