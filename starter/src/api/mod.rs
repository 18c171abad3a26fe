//! The HTTP API: router, shared state, configuration and the extractors every handler uses.
//!
//! Routes (JSON; errors are problem+json, see [`error`]):
//! - `POST /api/v1/organizations/{org_id}/tenants` — accept a tenant and start its saga
//! - `GET  /api/v1/organizations/{org_id}/tenants` — list (`state`, `limit`, `after`)
//! - `GET  /api/v1/organizations/{org_id}/tenants/{slug}` — one tenant, ledger, welcome
//!   email delivery, live status (`live=false` skips asking the workflow)
//! - `GET  /api/v1/organizations/{org_id}/tenants/{slug}/events` — the audit feed, as JSON
//!   or, with `Accept: text/event-stream`, live as Server-Sent Events (see [`events`])
//! - `POST /api/v1/organizations/{org_id}/tenants/{slug}/{retry|decommission|suspend|resume}`
//!   — a lifecycle action, answered with whether the tenant's workflow accepted it
//! - `POST …/tenants/{slug}/invitation/reissue`, `POST …/tenants/{slug}/emails/{kind}/resend`
//!   — an operator's email action (a new invitation; one welcome email again), answered
//!   the same way
//! - `POST /api/v1/tokens`, `GET /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` — the
//!   caller's own API tokens (see [`tokens`])
//! - `GET  /api/v1/rules` — the validation rule as data; `GET /api/v1/openapi.json` — the
//!   OpenAPI document (see [`openapi`]); neither needs a token
//! - `GET  /healthz/live`, `GET /healthz/ready`
//!
//! Handlers authenticate first, then check the caller's role in the organisation, then
//! validate, and only then write. This module must never log a token, an Authorization
//! header or a request body.

pub mod error;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod openapi;
pub mod rules;
pub mod tenants;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::routing::{delete, get, post};
use serde::de::DeserializeOwned;
use tenant_store::Store;
use tenant_store::access::{Principal, Role};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::saga::Saga;

pub use error::{ApiError, Problem};
pub use events::EventHub;

/// Largest request body accepted; a tenant request is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Settings the API reads from the environment.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Tenants are served at `<slug>-<org>.<domain>` (TP_DOMAIN).
    pub domain: String,
    /// The public HTTPS port of the edge proxy (TP_PUBLIC_HTTPS_PORT).
    pub public_https_port: u16,
    /// Base URL of the Temporal Web UI, for links (TP_TEMPORAL_UI_URL).
    pub temporal_ui_url: String,
    /// Temporal namespace of the tenants' workflows (TEMPORAL_NAMESPACE).
    pub temporal_namespace: String,
    /// How often an idle live audit feed sends a keep-alive comment, so proxies and clients
    /// can tell a quiet stream from a dead one.
    pub events_keep_alive: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            domain: "tenants.localhost".into(),
            public_https_port: 8443,
            temporal_ui_url: "http://127.0.0.1:8233".into(),
            temporal_namespace: "default".into(),
            events_keep_alive: Duration::from_secs(15),
        }
    }
}

impl ApiConfig {
    /// Reads the settings, refusing a domain under which tenant host names would be invalid.
    pub fn from_env() -> anyhow::Result<Self> {
        let defaults = Self::default();
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let config = Self {
            domain: var("TP_DOMAIN").unwrap_or(defaults.domain),
            public_https_port: match var("TP_PUBLIC_HTTPS_PORT") {
                Some(port) => port
                    .parse()
                    .with_context(|| format!("TP_PUBLIC_HTTPS_PORT={port:?} is not a port"))?,
                None => defaults.public_https_port,
            },
            temporal_ui_url: var("TP_TEMPORAL_UI_URL")
                .map(|u| u.trim_end_matches('/').to_owned())
                .unwrap_or(defaults.temporal_ui_url),
            temporal_namespace: var("TEMPORAL_NAMESPACE").unwrap_or(defaults.temporal_namespace),
            events_keep_alive: defaults.events_keep_alive,
        };
        tenant_domain::identity::check_domain(&config.domain)
            .map_err(anyhow::Error::msg)
            .context("TP_DOMAIN")?;
        Ok(config)
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    saga: Saga,
    events: EventHub,
    config: ApiConfig,
}

impl AppState {
    /// State for the server. `saga` may point at a Temporal that is down: calls that need it
    /// then answer 503 and readiness fails, and they work again once it is back.
    pub fn new(store: Store, saga: Saga, config: ApiConfig) -> Self {
        let events = EventHub::new(store.pool().clone());
        Self {
            inner: Arc::new(Inner {
                store,
                saga,
                events,
                config,
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn saga(&self) -> &Saga {
        &self.inner.saga
    }

    /// The wake-ups of the live audit feeds.
    pub fn events(&self) -> &EventHub {
        &self.inner.events
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }
}

/// The whole API, ready to serve.
pub fn router(state: AppState) -> Router {
    let tenants_path = "/api/v1/organizations/{org_id}/tenants";
    Router::new()
        .route(
            tenants_path,
            get(tenants::tenants_list).post(tenants::tenants_create),
        )
        .route(
            &format!("{tenants_path}/{{slug}}"),
            get(tenants::tenants_show),
        )
        .route(
            &format!("{tenants_path}/{{slug}}/events"),
            get(events::tenants_events),
        )
        .route(
            &format!("{tenants_path}/{{slug}}/retry"),
            post(tenants::tenants_retry),
        )
        .route(
            &format!("{tenants_path}/{{slug}}/decommission"),
            post(tenants::tenants_decommission),
        )
        .route(
            &format!("{tenants_path}/{{slug}}/suspend"),
            post(tenants::tenants_suspend),
        )
        .route(
            &format!("{tenants_path}/{{slug}}/resume"),
            post(tenants::tenants_resume),
        )
        .route(
            &format!("{tenants_path}/{{slug}}/invitation/reissue"),
            post(tenants::tenants_reissue_invitation),
        )
        .route(
            &format!("{tenants_path}/{{slug}}/emails/{{kind}}/resend"),
            post(tenants::tenants_resend_email),
        )
        .route(
            "/api/v1/tokens",
            get(tokens::tokens_list).post(tokens::tokens_create),
        )
        .route("/api/v1/tokens/{id}", delete(tokens::tokens_revoke))
        .route("/api/v1/rules", get(rules::rules_show))
        .route(openapi::PATH, get(openapi::openapi_json))
        .route("/healthz/live", get(health::live))
        .route("/healthz/ready", get(health::ready))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(
            error::bare_errors_as_problems,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    // Method and path only: headers (Authorization) and query strings stay out.
                    let matched = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map(|m| m.as_str().to_owned());
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        route = matched.as_deref(),
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}

/// The authenticated caller, from `Authorization: Bearer <token>`.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        let principal = state.store().authenticate(token).await?.ok_or_else(|| {
            ApiError::Unauthorized("the token is invalid, expired or revoked".into())
        })?;
        Ok(Self(principal))
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let missing =
        || ApiError::Unauthorized("send an API token as Authorization: Bearer <token>".into());
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err(ApiError::Unauthorized(
            "send exactly one Authorization header".into(),
        ));
    }
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(missing());
    }
    Ok(token)
}

/// A path extractor whose rejections are problem documents.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A query extractor whose rejections are problem documents.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A JSON request body, read (content type and size checked) but not yet parsed, so a
/// handler can check the caller's access before saying anything about the body.
pub struct JsonBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json".into(),
            ));
        }
        Ok(Self(Bytes::from_request(request, state).await?))
    }
}

impl JsonBody {
    /// Parses the body, naming the offending field when the JSON is well-formed but wrong.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::field(
                "body",
                "required",
                "the request body is empty; send a JSON object",
            ));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&self.0).map_err(|e| body_error(".".into(), e))?;
        // serde would also read a struct from an array, positionally; only objects are meant.
        if !value.is_object() {
            return Err(ApiError::field(
                "body",
                "invalid_type",
                "the request body must be a JSON object",
            ));
        }
        serde_path_to_error::deserialize(value)
            .map_err(|e| body_error(e.path().to_string(), e.into_inner()))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Maps a serde error to a field-level validation problem. serde reports unknown and
/// missing fields only in its message, so the field name is read from the backticks there.
fn body_error(path: String, err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;

    let full = err.to_string();
    let message = full.split(" at line ").next().unwrap_or(&full).to_owned();
    if matches!(
        err.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return ApiError::field(
            "body",
            "malformed_json",
            format!("the body is not valid JSON: {message}"),
        );
    }
    let quoted = message.split('`').nth(1).map(str::to_owned);
    let prefixed = |name: &str| {
        if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let (Some(name), true) = (&quoted, message.starts_with("unknown field")) {
        let allowed = message
            .split_once("expected ")
            .map(|(_, rest)| rest.replace('`', ""))
            .unwrap_or_default();
        let hint = if allowed.is_empty() {
            String::new()
        } else {
            format!("; expected {allowed}")
        };
        // serde_path_to_error's path already ends at the unknown field.
        let field = if path == "." {
            name.clone()
        } else {
            path.clone()
        };
        return ApiError::field(
            &field,
            "unknown_field",
            format!("unknown field {name}{hint}"),
        );
    }
    if let (Some(name), true) = (&quoted, message.starts_with("missing field")) {
        return ApiError::field(&prefixed(name), "required", format!("{name} is required"));
    }
    let field = if path == "." { "body".to_owned() } else { path };
    ApiError::field(&field, "invalid_type", message)
}

/// What a handler needs to be allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any role in the organisation.
    Read,
    /// Owner or admin.
    Manage,
}

/// Checks that `caller` may act in the organisation. An organisation the caller has no
/// role in answers exactly like one that does not exist, so outsiders learn nothing.
pub async fn authorize(
    state: &AppState,
    caller: &Principal,
    org_slug: &str,
    need: Access,
) -> Result<(), ApiError> {
    let not_found = || ApiError::NotFound(format!("organisation {org_slug} not found"));
    // Slugs that break the rule cannot exist; skip the database for them.
    if !tenant_domain::validation::matches_name_pattern(org_slug) {
        return Err(not_found());
    }
    if caller.platform_operator {
        return match state.store().organization(org_slug).await? {
            Some(_) => Ok(()),
            None => Err(not_found()),
        };
    }
    let role = state.store().role_in(caller.id, org_slug).await?;
    match (role, need) {
        (None, _) => Err(not_found()),
        (Some(_), Access::Read) => Ok(()),
        (Some(role), Access::Manage) if role.may_manage_tenants() => Ok(()),
        (Some(role), Access::Manage) => Err(ApiError::Forbidden(format!(
            "your role in organisation {org_slug} is {role}; creating and changing tenants needs {} or {}",
            Role::Owner,
            Role::Admin
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    #[allow(dead_code)]
    struct Body {
        slug: String,
        name: Option<String>,
    }

    fn refused(json: &str) -> (String, String) {
        let err = JsonBody(Bytes::from(json.to_owned()))
            .parse::<Body>()
            .unwrap_err();
        let ApiError::Validation { errors, .. } = err else {
            panic!("not a validation error: {err:?}")
        };
        (errors[0].field.clone(), errors[0].code.clone())
    }

    #[test]
    fn body_errors_name_the_field() {
        assert_eq!(
            refused(r#"{"slug":"a","nmae":"x"}"#),
            ("nmae".into(), "unknown_field".into())
        );
        assert_eq!(
            refused(r#"{"slug":3}"#),
            ("slug".into(), "invalid_type".into())
        );
        assert_eq!(
            refused(r#"{"slug":"a""#),
            ("body".into(), "malformed_json".into())
        );
        assert_eq!(
            refused(r#"{"slug":"a"} x"#),
            ("body".into(), "malformed_json".into())
        );
        assert_eq!(refused("[]"), ("body".into(), "invalid_type".into()));
        assert_eq!(refused(""), ("body".into(), "required".into()));
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&headers));
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&headers));
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let mut headers = HeaderMap::new();
        assert!(bearer_token(&headers).is_err());
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(bearer_token(&headers).is_err());
        headers.insert(header::AUTHORIZATION, "bearer tp_abc".parse().unwrap());
        assert_eq!(bearer_token(&headers).unwrap(), "tp_abc");
    }
}
