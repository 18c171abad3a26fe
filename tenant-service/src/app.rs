//! The tenant's HTTP interface: its console, its identity endpoint (OpenID Connect
//! discovery, JWKS, sign-in, userinfo), the first admin's invitation, and health checks.
//!
//! Owns request handling and the answers' shape: JSON for API clients, HTML for browsers
//! (chosen by the request's content type, or the route). Must never log a request path
//! (invitation codes travel in it), a password, a token or a database URL; 5xx bodies are
//! generic and the detail goes to the log. While the platform has the tenant suspended,
//! nobody signs in, redeems an invitation or uses a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use sqlx::postgres::PgPool;
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::timeout;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};
use uuid::Uuid;

use crate::db::{self, InvitationRow, Unredeemable};
use crate::server::Sizing;
use crate::token::{Claims, TOKEN_TTL_SECONDS, TokenSigner, TokenVerifier};
use crate::{pages, password};

/// One readiness check of a database connection.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The console's session cookie: the access token, kept from scripts.
const SESSION_COOKIE: &str = "tenant_session";
/// Longest invitation code looked at; real ones are 64 hex characters.
const MAX_CODE_LEN: usize = 256;

/// What every handler shares.
pub struct AppState {
    pub tenant_id: Uuid,
    pub host: String,
    pub name: String,
    /// The tenant's public URL, e.g. `https://<host>:<port>`: the tokens' `iss`.
    pub issuer: String,
    pub pool: PgPool,
    /// The connection holding the service's advisory lock; the lock lives as long as it does.
    pub lock: Mutex<PgConnection>,
    /// False while the lock connection is being re-established.
    pub lock_held: AtomicBool,
    /// A hash to verify against when the email is unknown, so that a refused sign-in takes
    /// as long whether or not the account exists.
    decoy_hash: OnceCell<String>,
    /// What the platform's plan gives the service; reported on readiness.
    pub sizing: Sizing,
    /// The digest of the settings the platform started the service with; reported on
    /// readiness so the platform can tell whether this copy runs the current settings.
    pub settings_digest: Option<String>,
}

impl AppState {
    pub fn new(
        tenant_id: Uuid,
        host: String,
        name: String,
        issuer: String,
        pool: PgPool,
        lock: PgConnection,
    ) -> Self {
        Self {
            tenant_id,
            host,
            name,
            issuer,
            pool,
            lock: Mutex::new(lock),
            lock_held: AtomicBool::new(true),
            decoy_hash: OnceCell::new(),
            sizing: Sizing::default(),
            settings_digest: None,
        }
    }

    /// The sizing the service runs with and the digest of its settings, for readiness.
    pub fn with_settings(mut self, sizing: Sizing, settings_digest: Option<String>) -> Self {
        self.sizing = sizing;
        self.settings_digest = settings_digest;
        self
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let tenant_header = HeaderValue::from_str(&state.tenant_id.to_string())
        .expect("a UUID is a valid header value");
    let tenant_routes = Router::new()
        .route("/", get(console))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/invitations/{code}",
            get(invitation_page).post(invitation_accept),
        )
        .route("/invitations/{code}/check", get(invitation_check))
        .route("/signin", post(sign_in))
        .route("/userinfo", get(userinfo))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") });
    // Health checks stay outside the limit: a busy service is still alive and ready, and
    // the platform must be able to tell which copy answers.
    limit_in_flight(tenant_routes, state.sizing.max_concurrent_requests)
        .route("/healthz/live", get(|| async { "ok" }))
        .route("/healthz/ready", get(ready))
        .with_state(state)
        // Every answer names its tenant, so a misrouted response is visible at once; none
        // is cached, since tokens and invitation state change under the same URLs.
        .layer(axum::middleware::map_response(
            move |mut response: Response| {
                let value = tenant_header.clone();
                async move {
                    let headers = response.headers_mut();
                    headers.insert("x-tenant-id", value);
                    headers
                        .entry(CACHE_CONTROL)
                        .or_insert(HeaderValue::from_static("no-store"));
                    response
                }
            },
        ))
}

/// Serves at most `max` requests of `routes` at once and answers 503 (with `Retry-After`)
/// to the rest at once, rather than queueing them: a tenant at its plan's limit sheds load
/// instead of piling up work and connections. One limit covers every route of `routes`.
pub fn limit_in_flight<S>(routes: Router<S>, max: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |_: BoxError| async move {
                let mut response = Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    format!(
                        "the tenant's service is serving its limit of {max} requests at once; \
                         try again shortly"
                    ),
                )
                .respond(Format::Json);
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }))
            .load_shed()
            // Global: `Router::layer` wraps each route on its own, and a plain concurrency
            // limit would give every route a limit of its own.
            .layer(GlobalConcurrencyLimitLayer::new(max)),
    )
}

// ---- answers ----------------------------------------------------------------------------

/// How the client wants its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
}

/// A refusal (4xx) with a stable code and a message for the person, or an internal error
/// whose detail is logged and never shown.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn suspended() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "tenant_suspended",
            "tenant suspended",
        )
    }

    fn internal(error: anyhow::Error) -> Self {
        tracing::error!(error = %format!("{error:#}"), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    fn unredeemable(why: Unredeemable) -> Self {
        match why {
            Unredeemable::Unknown => Self::new(
                StatusCode::NOT_FOUND,
                "invitation_unknown",
                "this invitation link is not valid for this tenant",
            ),
            Unredeemable::Expired => Self::new(
                StatusCode::GONE,
                "invitation_expired",
                "this invitation has expired; ask the platform operator to send a new one",
            ),
            Unredeemable::Redeemed => Self::new(
                StatusCode::GONE,
                "invitation_redeemed",
                "this invitation was already accepted; sign in instead",
            ),
            Unredeemable::Revoked => Self::new(
                StatusCode::GONE,
                "invitation_revoked",
                "this invitation was replaced by a newer one; use the link from the latest email",
            ),
        }
    }

    fn respond(self, format: Format) -> Response {
        match format {
            Format::Json => (
                self.status,
                Json(json!({"error": self.code, "message": self.message})),
            )
                .into_response(),
            Format::Html => {
                let title = self.status.canonical_reason().unwrap_or("Refused");
                let link = (self.code == "invitation_redeemed").then_some(("/", "Sign in"));
                (
                    self.status,
                    Html(pages::message(title, &self.message, link)),
                )
                    .into_response()
            }
        }
    }
}

/// A request body from a JSON client or an HTML form.
struct Input<T> {
    value: T,
    format: Format,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Input<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match content_type.as_str() {
            "application/json" => match Json::<T>::from_request(req, state).await {
                Ok(Json(value)) => Ok(Self {
                    value,
                    format: Format::Json,
                }),
                Err(e) => Err(
                    Refusal::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text())
                        .respond(Format::Json),
                ),
            },
            "application/x-www-form-urlencoded" => {
                match Form::<T>::from_request(req, state).await {
                    Ok(Form(value)) => Ok(Self {
                        value,
                        format: Format::Html,
                    }),
                    Err(e) => {
                        Err(
                            Refusal::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text())
                                .respond(Format::Html),
                        )
                    }
                }
            }
            _ => Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json or an HTML form",
            )
            .respond(Format::Json)),
        }
    }
}

// ---- shared checks ----------------------------------------------------------------------

impl AppState {
    async fn refuse_if_suspended(&self) -> Result<(), Refusal> {
        match db::suspended(&self.pool).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(Refusal::suspended()),
            Err(e) => Err(Refusal::internal(e)),
        }
    }

    /// The invitation whose code is `code`. Every stored hash is compared, in constant time,
    /// so the answer's timing says nothing about how close a guess came.
    async fn invitation(&self, code: &str) -> Result<InvitationRow, Refusal> {
        if code.is_empty() || code.len() > MAX_CODE_LEN {
            return Err(Refusal::unredeemable(Unredeemable::Unknown));
        }
        let wanted = Sha256::digest(code.as_bytes());
        let rows = db::invitations(&self.pool)
            .await
            .map_err(Refusal::internal)?;
        let mut found = None;
        for row in rows {
            if bool::from(row.code_sha256.as_slice().ct_eq(wanted.as_slice())) {
                found = Some(row);
            }
        }
        found.ok_or_else(|| Refusal::unredeemable(Unredeemable::Unknown))
    }

    async fn redeemable_invitation(&self, code: &str) -> Result<InvitationRow, Refusal> {
        let invitation = self.invitation(code).await?;
        db::redeemable(&invitation, chrono::Utc::now()).map_err(Refusal::unredeemable)?;
        Ok(invitation)
    }

    async fn verifier(&self) -> Result<TokenVerifier, Refusal> {
        let realm = db::realm(&self.pool)
            .await
            .map_err(Refusal::internal)?
            .ok_or_else(no_realm)?;
        TokenVerifier::from_jwk(&realm.public_jwk).map_err(|e| Refusal::internal(e.into()))
    }

    /// The claims of a valid token for this tenant.
    async fn check_token(&self, token: &str) -> Result<Claims, Refusal> {
        let now = chrono::Utc::now().timestamp();
        self.verifier()
            .await?
            .verify(token, &self.issuer, &self.tenant_id.to_string(), now)
            .map_err(|e| {
                tracing::info!(reason = %e, "token refused");
                Refusal::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
            })
    }

    async fn decoy_hash(&self) -> String {
        self.decoy_hash
            .get_or_init(|| async {
                blocking(|| password::hash("decoy password never used"))
                    .await
                    .unwrap_or_default()
            })
            .await
            .clone()
    }
}

fn no_realm() -> Refusal {
    tracing::error!("the realm's key is not installed");
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "the tenant's identity is not ready",
    )
}

/// Runs slow work (password hashing) off the single-threaded executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow::anyhow!("blocking task failed: {e}"))?
}

// ---- console and health -----------------------------------------------------------------

async fn console(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Html<String> {
    let mut signed_in = None;
    if let Some(token) = session_cookie(&headers)
        && state.refuse_if_suspended().await.is_ok()
        && let Ok(claims) = state.check_token(&token).await
    {
        signed_in = Some(claims.email);
    }
    Html(pages::console(
        &state.name,
        &state.host,
        signed_in.as_deref(),
    ))
}

/// Ready only when the database answers now, the lock connection is alive, and the realm's
/// key is installed and whole: a copy without its key could not sign anybody in.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let mut key_id = None;
    let problem = if !state.lock_held.load(Ordering::SeqCst) {
        Some("the lock connection is being re-established")
    } else if !lock_alive(&state).await {
        Some("the lock connection does not answer")
    } else {
        match timeout(CHECK_TIMEOUT, db::realm(&state.pool)).await {
            Err(_) | Ok(Err(_)) => Some("the database does not answer"),
            Ok(Ok(None)) => Some("the realm's key is not installed"),
            Ok(Ok(Some(realm))) => match TokenSigner::from_realm(&realm) {
                Ok(_) => {
                    key_id = Some(realm.key_id);
                    None
                }
                Err(_) => Some("the realm's key is unusable"),
            },
        }
    };
    let mut body = json!({
        "tenant_id": state.tenant_id,
        "host": state.host,
        "ready": problem.is_none(),
        "settings_digest": state.settings_digest,
        "sizing": {
            "db_pool": state.sizing.db_pool,
            "max_concurrent_requests": state.sizing.max_concurrent_requests,
        },
    });
    match problem {
        None => {
            body["key_id"] = key_id.into();
            (StatusCode::OK, Json(body)).into_response()
        }
        Some(reason) => {
            body["reason"] = reason.into();
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn lock_alive(state: &AppState) -> bool {
    let check = async {
        let mut conn = state.lock.lock().await;
        sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok()
    };
    timeout(CHECK_TIMEOUT, check).await.unwrap_or(false)
}

// ---- identity endpoint ------------------------------------------------------------------

async fn discovery(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let issuer = &state.issuer;
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "sign_in_endpoint": format!("{issuer}/signin"),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "email"],
    }))
}

async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    match db::realm(&state.pool).await {
        Ok(Some(realm)) => Json(json!({"keys": [realm.public_jwk]})).into_response(),
        Ok(None) => no_realm().respond(Format::Json),
        Err(e) => Refusal::internal(e).respond(Format::Json),
    }
}

#[derive(Deserialize)]
struct SignIn {
    email: String,
    password: String,
}

async fn sign_in(State(state): State<Arc<AppState>>, input: Input<SignIn>) -> Response {
    let format = input.format;
    match sign_in_inner(&state, input.value).await {
        Ok(token) => match format {
            Format::Json => Json(json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": TOKEN_TTL_SECONDS,
            }))
            .into_response(),
            // A browser keeps the token in a cookie scripts cannot read and goes to the console.
            Format::Html => {
                let cookie = format!(
                    "{SESSION_COOKIE}={token}; Path=/; Max-Age={TOKEN_TTL_SECONDS}; HttpOnly; Secure; SameSite=Strict"
                );
                let mut response = StatusCode::SEE_OTHER.into_response();
                let headers = response.headers_mut();
                headers.insert(LOCATION, HeaderValue::from_static("/"));
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    headers.insert(SET_COOKIE, value);
                }
                response
            }
        },
        Err(refusal) => refusal.respond(format),
    }
}

async fn sign_in_inner(state: &AppState, form: SignIn) -> Result<String, Refusal> {
    state.refuse_if_suspended().await?;
    let user = db::user_by_email(&state.pool, form.email.trim())
        .await
        .map_err(Refusal::internal)?;
    let phc = match &user {
        Some(user) => user.password_hash.clone(),
        None => state.decoy_hash().await,
    };
    let password = form.password;
    let matches = blocking(move || Ok(password::verify(&password, &phc)))
        .await
        .map_err(Refusal::internal)?;
    let Some(user) = user.filter(|_| matches) else {
        tracing::info!("sign-in refused: wrong email or password");
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong email or password",
        ));
    };

    let realm = db::realm(&state.pool)
        .await
        .map_err(Refusal::internal)?
        .ok_or_else(no_realm)?;
    let signer = TokenSigner::from_realm(&realm).map_err(|e| Refusal::internal(e.into()))?;
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        iss: state.issuer.clone(),
        sub: user.id.to_string(),
        aud: state.tenant_id.to_string(),
        exp: now + TOKEN_TTL_SECONDS,
        iat: now,
        email: user.email.clone(),
    };
    tracing::info!(user = %user.id, "signed in");
    Ok(signer.sign(&claims))
}

async fn userinfo(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let answer = async {
        state.refuse_if_suspended().await?;
        let token = bearer(&headers).ok_or_else(|| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "send Authorization: Bearer <access token>",
            )
        })?;
        let claims = state.check_token(token).await?;
        let id: Uuid = claims.sub.parse().map_err(|_| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the token names no user",
            )
        })?;
        let user = db::user_by_id(&state.pool, id)
            .await
            .map_err(Refusal::internal)?
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the token's user no longer exists",
                )
            })?;
        Ok::<_, Refusal>(Json(json!({
            "sub": user.id,
            "email": user.email,
            "email_verified": true,
            "role": user.role,
            "tenant_id": state.tenant_id,
        })))
    };
    match answer.await {
        Ok(body) => body.into_response(),
        Err(refusal) => {
            let unauthorized = refusal.status == StatusCode::UNAUTHORIZED;
            let mut response = refusal.respond(Format::Json);
            if unauthorized {
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            response
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

// ---- invitations ------------------------------------------------------------------------

async fn invitation_page(State(state): State<Arc<AppState>>, Path(code): Path<String>) -> Response {
    let answer = async {
        state.refuse_if_suspended().await?;
        state.redeemable_invitation(&code).await
    };
    match answer.await {
        Ok(invitation) => Html(pages::invitation_form(
            &state.name,
            &invitation.email,
            password::MIN_CHARS,
        ))
        .into_response(),
        Err(refusal) => refusal.respond(Format::Html),
    }
}

/// Whether the code could be redeemed now, without redeeming it: the platform's verify
/// phase asks this before the tenant goes active.
async fn invitation_check(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
) -> Response {
    let answer = async {
        state.refuse_if_suspended().await?;
        state.redeemable_invitation(&code).await
    };
    match answer.await {
        Ok(invitation) => {
            Json(json!({"redeemable": true, "expires_at": invitation.expires_at})).into_response()
        }
        Err(refusal) => (
            refusal.status,
            Json(json!({"redeemable": false, "error": refusal.code, "message": refusal.message})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct Accept {
    password: String,
}

async fn invitation_accept(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    input: Input<Accept>,
) -> Response {
    let format = input.format;
    let answer = async {
        state.refuse_if_suspended().await?;
        let invitation = state.redeemable_invitation(&code).await?;
        password::check_policy(&input.value.password)
            .map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, "weak_password", why))?;
        let password = input.value.password;
        let phc = blocking(move || password::hash(&password))
            .await
            .map_err(Refusal::internal)?;
        let mut conn = state
            .pool
            .acquire()
            .await
            .map_err(|e| Refusal::internal(e.into()))?;
        match db::redeem(&mut conn, &invitation.code_sha256, &phc)
            .await
            .map_err(Refusal::internal)?
        {
            Ok(user) => Ok(user),
            Err(why) => Err(Refusal::unredeemable(why)),
        }
    };
    match answer.await {
        Ok(user) => {
            tracing::info!(user = %user.id, "invitation redeemed; admin account ready");
            match format {
                Format::Json => (
                    StatusCode::CREATED,
                    Json(json!({
                        "user_id": user.id,
                        "email": user.email,
                        "role": user.role,
                        "sign_in_url": format!("{}/", state.issuer),
                    })),
                )
                    .into_response(),
                Format::Html => Html(pages::message(
                    "Your account is ready",
                    &format!("You can now sign in to {} as {}.", state.name, user.email),
                    Some(("/", "Sign in")),
                ))
                .into_response(),
            }
        }
        Err(refusal) => refusal.respond(format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_and_cookies_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer abc.def.ghi"),
        );
        headers.insert(
            "cookie",
            HeaderValue::from_static("a=1; tenant_session=tok; b=2"),
        );
        assert_eq!(bearer(&headers), Some("abc.def.ghi"));
        assert_eq!(session_cookie(&headers).as_deref(), Some("tok"));
        headers.insert("authorization", HeaderValue::from_static("Basic xyz"));
        assert_eq!(bearer(&headers), None);
    }

    /// Past the limit, every limited route answers 503 at once while health checks still
    /// answer; once the requests in flight finish, requests are served again.
    #[tokio::test]
    async fn requests_beyond_the_limit_are_shed_with_503() {
        use std::sync::atomic::AtomicUsize;

        use axum::body::Body;
        use tower::ServiceExt;

        let (release, released) = tokio::sync::watch::channel(false);
        let entered = Arc::new(AtomicUsize::new(0));
        let seen = entered.clone();
        let routes = Router::new()
            .route(
                "/slow",
                get(move || {
                    let mut released = released.clone();
                    let entered = seen.clone();
                    async move {
                        entered.fetch_add(1, Ordering::SeqCst);
                        let _ = released.wait_for(|done| *done).await;
                        "slow"
                    }
                }),
            )
            .route("/fast", get(|| async { "fast" }));
        let app = limit_in_flight(routes, 2).route("/healthz/live", get(|| async { "ok" }));
        let call = |path: &'static str| {
            let app = app.clone();
            async move {
                let request = Request::get(path).body(Body::empty()).unwrap();
                app.oneshot(request).await.unwrap()
            }
        };

        let held: Vec<_> = (0..2).map(|_| tokio::spawn(call("/slow"))).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while entered.load(Ordering::SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "slow requests never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let shed = call("/fast").await;
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[RETRY_AFTER], "1");
        let body = axum::body::to_bytes(shed.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "overloaded", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("limit of 2"),
            "{body}"
        );
        assert_eq!(
            call("/slow").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(call("/healthz/live").await.status(), StatusCode::OK);

        release.send_replace(true);
        for request in held {
            assert_eq!(request.await.unwrap().status(), StatusCode::OK);
        }
        assert_eq!(call("/fast").await.status(), StatusCode::OK);
    }
}
