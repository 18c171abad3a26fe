//! The HTTP API: router, shared state, configuration and who the caller is; the path,
//! query and body extractors are in [`extract`].
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
pub mod extract;
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
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::routing::{delete, get, post};
use tenant_store::Store;
use tenant_store::access::{Authenticated, Principal, Role};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::saga::Saga;

pub use error::{ApiError, Problem};
pub use events::EventHub;
pub use extract::{ApiPath, ApiQuery, JsonBody};

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
        let CallerToken(authenticated) = CallerToken::from_request_parts(parts, state).await?;
        Ok(Self(authenticated.principal))
    }
}

/// The authenticated caller with the token it presented (its id and expiry), for handlers
/// whose answer depends on the token itself.
pub struct CallerToken(pub Authenticated);

impl FromRequestParts<AppState> for CallerToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        let authenticated = state
            .store()
            .authenticate_token(token)
            .await?
            .ok_or_else(|| {
                ApiError::Unauthorized("the token is invalid, expired or revoked".into())
            })?;
        Ok(Self(authenticated))
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
