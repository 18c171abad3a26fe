//! Liveness and readiness. Readiness names the dependency that failed, so an operator can
//! tell a database outage from a Temporal one; neither endpoint needs a token, and
//! neither may reveal anything beyond ok/failed.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::{PROBLEM_JSON, PROBLEM_TYPE_BASE};

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /healthz/live`: the process serves requests.
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /healthz/ready`: 200 when PostgreSQL and the workflow engine both answer, else 503
/// with the failed checks.
pub async fn ready(State(state): State<AppState>) -> Response {
    let database = tokio::time::timeout(
        CHECK_TIMEOUT,
        sqlx::query("SELECT 1").execute(state.store().pool()),
    )
    .await;
    let database_ok = match database {
        Ok(Ok(_)) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database check failed");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: database check timed out");
            false
        }
    };
    let engine_ok = tokio::time::timeout(CHECK_TIMEOUT, state.saga().healthy())
        .await
        .unwrap_or(false);

    let verdict = |ok: bool| if ok { "ok" } else { "failed" };
    let checks = json!({ "database": verdict(database_ok), "workflow_engine": verdict(engine_ok) });
    if database_ok && engine_ok {
        return Json(json!({ "status": "ready", "checks": checks })).into_response();
    }
    let failed: Vec<&str> = [("database", database_ok), ("workflow_engine", engine_ok)]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name)
        .collect();
    let body = json!({
        "type": format!("{PROBLEM_TYPE_BASE}unavailable"),
        "title": "not ready",
        "status": 503,
        "detail": format!("not ready: {} failed", failed.join(" and ")),
        "checks": checks,
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}
