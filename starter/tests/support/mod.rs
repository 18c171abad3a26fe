//! Shared harness of the starter's integration tests: a throwaway database per test, a
//! fake workflow engine standing in for Temporal, and the API served on a free port.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use tenant_domain::{TenantSpec, TenantState, TenantStatus};
use tenant_starter::api::{self, ApiConfig, AppState};
use tenant_starter::engine::WorkflowEngine;
use tenant_store::Store;
use tenant_store::access::Role;
use uuid::Uuid;

pub fn admin_url() -> String {
    std::env::var("TP_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test and is dropped when the test ends, even on panic.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> anyhow::Result<Self> {
        let admin = admin_url();
        let name = format!("tp_api_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .context("connecting as the test superuser")?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base)
            .context("admin URL has no database")?;
        Ok(Self {
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside the test's runtime, so the cleanup gets a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin_url()).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        });
        let _ = cleanup.join();
    }
}

/// A stand-in for Temporal: fails the first `fail_starts` starts, then hands out run ids.
#[derive(Default)]
pub struct FakeEngine {
    pub fail_starts: AtomicU32,
    pub unhealthy: bool,
    pub started: Mutex<Vec<TenantSpec>>,
}

impl FakeEngine {
    pub fn failing(times: u32) -> Self {
        Self {
            fail_starts: AtomicU32::new(times),
            ..Default::default()
        }
    }

    pub fn starts(&self) -> Vec<TenantSpec> {
        self.started.lock().unwrap().clone()
    }
}

impl WorkflowEngine for FakeEngine {
    fn start<'a>(&'a self, spec: &'a TenantSpec) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let failed = self
                .fail_starts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if failed.is_ok() {
                anyhow::bail!("connection refused (fake)");
            }
            self.started.lock().unwrap().push(spec.clone());
            Ok(format!(
                "run-{}-{}",
                spec.names.tenant_id.simple(),
                spec.incarnation
            ))
        })
    }

    fn status<'a>(
        &'a self,
        _workflow_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<TenantStatus>>> {
        Box::pin(async move {
            let started = self.started.lock().unwrap().last().cloned();
            Ok(started.map(|spec| TenantStatus {
                tenant_id: spec.names.tenant_id,
                org: spec.request.org.clone(),
                slug: spec.request.slug.clone(),
                host: spec.names.host.clone(),
                incarnation: spec.incarnation,
                state: TenantState::Provisioning,
                phase: None,
                next_stable_state: TenantState::Active,
                resources: Vec::new(),
                last_error: None,
                emails: Vec::new(),
            }))
        })
    }

    fn healthy(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { !self.unhealthy })
    }
}

pub struct TestApp {
    pub base: String,
    pub store: Store,
    pub http: reqwest::Client,
    // Last, so the database is dropped after everything that uses it.
    pub db: TestDb,
}

pub async fn spawn_app(engine: Option<Arc<dyn WorkflowEngine>>) -> TestApp {
    let db = TestDb::create().await.expect("creating the test database");
    let store = Store::connect(&db.url, 5)
        .await
        .expect("connecting and migrating");
    let state = AppState::with_engine(store.clone(), engine, ApiConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api::router(state)).await });
    TestApp {
        base,
        store,
        http: reqwest::Client::new(),
        db,
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
}
