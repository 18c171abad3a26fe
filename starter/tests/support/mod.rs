//! Shared harness of the starter's integration tests: every test gets its own real servers
//! on loopback from the workspace harness (`tenant_tests::Stack` without the app: a Temporal
//! dev server, Caddy, maildev and a fresh control-plane database), and serves the API router
//! in-process on the stack's API port, with a `Saga` connected to that Temporal. Nothing
//! stands in for Temporal: a test that needs it down stops the real server.
//!
//! Tests that need the saga to make progress start the real worker binary
//! ([`spawn_app_with_worker`]); it must be built first (`cargo build --workspace --bins`).
//! Such tests use the stack's own organisation slug, because tenant databases are named
//! after the tenant id and live on the PostgreSQL server every test shares.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tenant_starter::api::{self, ApiConfig, AppState};
use tenant_starter::saga::Saga;
use tenant_store::Store;
use tenant_store::access::Role;
use tenant_tests::{Stack, StackOptions};

pub struct TestApp {
    pub base: String,
    pub store: Store,
    pub state: AppState,
    pub http: reqwest::Client,
    /// Last, so the servers stop after everything that uses them.
    pub stack: Stack,
}

/// The API on real servers, without a worker: workflows start but do not run.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(ApiConfig::default(), false).await
}

/// The API on real servers with the worker running: sagas run to their end.
pub async fn spawn_app_with_worker() -> TestApp {
    spawn_app_with(ApiConfig::default(), true).await
}

/// `config`'s public port is replaced with the stack's.
pub async fn spawn_app_with(mut config: ApiConfig, worker: bool) -> TestApp {
    let stack = Stack::start_with(StackOptions {
        app: false,
        ..Default::default()
    })
    .await
    .expect("starting Temporal, Caddy, maildev and the database");
    if worker {
        stack.start_worker().await.expect("starting the worker");
    }
    let store = Store::connect(&stack.database_url, 5)
        .await
        .expect("connecting and migrating");
    let saga = Saga::connect(&stack.temporal_address, "default")
        .await
        .expect("connecting to Temporal");
    config.domain = stack.domain.clone();
    config.public_https_port = stack.ports.public_https;
    let state = AppState::new(store.clone(), saga, config);
    // The stack's API port: the worker's settings point there (console URL in the emails).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", stack.ports.api))
        .await
        .expect("binding the stack's API port");
    let router = api::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    TestApp {
        base: stack.api_url.clone(),
        store,
        state,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        stack,
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub fn tenants_url(&self, org: &str) -> String {
        format!("{}/api/v1/organizations/{org}/tenants", self.base)
    }

    pub async fn answer(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text:?}"));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn create(&self, org: &str, token: &str, body: Value) -> Answer {
        self.answer(
            self.http
                .post(self.tenants_url(org))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.answer(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn post(&self, path: &str, token: &str) -> Answer {
        self.answer(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }

    /// An organisation with its owner; the owner's token.
    pub async fn org(&self, slug: &str, owner: &str) -> String {
        let (_, token) = self.store.bootstrap(slug, slug, owner).await.unwrap();
        token.expose().to_owned()
    }

    /// A principal with `role` in `org`; its token.
    pub async fn member(&self, name: &str, org: &str, role: Role) -> String {
        let principal = self.store.create_principal(name, false).await.unwrap();
        self.store
            .add_membership(principal.id, org, role)
            .await
            .unwrap();
        self.store
            .create_token(principal.id, "test", None)
            .await
            .unwrap()
            .expose()
            .to_owned()
    }

    pub async fn operator(&self, name: &str) -> String {
        let (_, token) = self.store.bootstrap_operator(name).await.unwrap();
        token.expose().to_owned()
    }

    /// Temporal's description of a workflow (`temporal workflow describe -o json`).
    pub async fn describe_workflow(&self, workflow_id: &str) -> anyhow::Result<Value> {
        let out = self
            .stack
            .temporal_cli(&[
                "workflow",
                "describe",
                "--workflow-id",
                workflow_id,
                "-o",
                "json",
            ])
            .await?;
        Ok(serde_json::from_str(&out)?)
    }

    /// How many tenant workflows Temporal has, open or closed.
    pub async fn workflow_count(&self) -> anyhow::Result<u64> {
        let out = self
            .stack
            .temporal_cli(&[
                "workflow",
                "count",
                "--query",
                "WorkflowType = 'ProvisionTenant'",
            ])
            .await?;
        out.split_whitespace()
            .filter_map(|word| word.parse::<u64>().ok())
            .next()
            .ok_or_else(|| anyhow::anyhow!("no count in {out:?}"))
    }
}

/// One Server-Sent Events frame as sent on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    /// Comment lines (keep-alives), without the leading colon.
    pub comments: Vec<String>,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().unwrap_or("null")).unwrap()
    }
}

/// A raw reader of an event stream response, frame by frame.
pub struct SseReader {
    pub response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next frame, within `timeout`; `None` when the stream ended.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Option<Frame>> {
        tokio::time::timeout(timeout, self.next_frame())
            .await
            .map_err(|_| anyhow::anyhow!("no event within {timeout:?}"))?
    }

    /// The next frame that carries data, skipping keep-alives.
    pub async fn next_event(&mut self, timeout: Duration) -> anyhow::Result<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Some(frame) if frame.data.is_some() => return Ok(frame),
                Some(_) => continue,
                None => anyhow::bail!("the stream ended"),
            }
        }
    }

    async fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let bytes: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(bytes)?;
                let mut frame = Frame::default();
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                    match field {
                        "" => frame.comments.push(value),
                        "id" => frame.id = Some(value),
                        "event" => frame.event = Some(value),
                        "data" => frame.data = Some(value),
                        _ => {}
                    }
                }
                return Ok(Some(frame));
            }
            match self.response.chunk().await? {
                Some(bytes) => self.buffer.extend(bytes.iter().filter(|b| **b != b'\r')),
                None => return Ok(None),
            }
        }
    }
}
