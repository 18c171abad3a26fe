//! The `Idempotency-Key` header: a client that is unsure whether its request arrived may send
//! it again with the same key and gets the first answer back, without the API acting again.
//!
//! A key belongs to the principal that sent it and lives 24 hours from its first use. The
//! first request with a key claims it (a row without an answer), acts, and stores its
//! answer (status, `Location`, JSON body). Later requests with the key:
//! - the same request (method, path and body, compared as canonical JSON): the stored
//!   answer, marked `Idempotent-Replayed: true`;
//! - a different request: 422 `idempotency-key-reused`;
//! - while the first is still being handled: 409 `idempotency-key-in-use`, retry shortly.
//!
//! Only answers that acted are stored (2xx). A refusal releases the key, since it changed
//! nothing: repeating the request evaluates it afresh. A claim whose request died without
//! answering is taken over after [`ABANDONED_AFTER`].
//!
//! Handlers call [`replay_or_record`] after checking the caller's access, so a stored answer
//! is only ever shown to a caller who may still see it. Nothing here logs a key's answer or a
//! request body.

use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tenant_domain::FieldError;
use tenant_store::access::Principal;
use uuid::Uuid;

use super::error::{PROBLEM_JSON, PROBLEM_TYPE_BASE};
use super::{ApiError, AppState, JsonBody, Problem};

/// The request header, as registered with IANA (draft-ietf-httpapi-idempotency-key-header).
pub const HEADER: &str = "idempotency-key";
/// Set to `true` on an answer that was replayed from a stored one.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;
/// How long a key and its answer are kept, from the key's first use.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// A claim older than this without an answer belongs to a request that died; requests
/// answer (or give up on the workflow engine) well within it.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// The request's `Idempotency-Key`, if it sent one, with what the request asks (method and
/// path), which the key's fingerprint covers together with the body.
pub struct IdempotencyKey {
    key: Option<String>,
    target: String,
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let target = format!("{} {}", parts.method, parts.uri.path());
        let mut values = parts.headers.get_all(HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(Self { key: None, target });
        };
        let invalid = |message: &str| ApiError::field("Idempotency-Key", "invalid", message);
        if values.next().is_some() {
            return Err(invalid("send one Idempotency-Key header, not several"));
        }
        let key = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
            .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                invalid("Idempotency-Key must be 1 to 255 visible ASCII characters, e.g. a UUID")
            })?;
        Ok(Self {
            key: Some(key.to_owned()),
            target,
        })
    }
}

/// A key's record: what it was first sent with and, once answered, the answer.
#[derive(sqlx::FromRow)]
struct StoredKey {
    request_sha256: Vec<u8>,
    /// `None` while the first request is still being handled.
    status: Option<i32>,
    location: Option<String>,
    body: Option<serde_json::Value>,
}

/// What the handler does next.
pub enum Begin {
    /// Answer with this and do nothing else: a stored answer, or a refusal of the key.
    Answered(Response),
    /// Act, then pass the answer through [`Recording::finish`].
    Proceed(Recording),
}

/// A claimed key waiting for the request's answer. Dropped without [`Recording::finish`]
/// (the handler returned an error), it releases the key.
pub struct Recording {
    claim: Option<Claim>,
}

struct Claim {
    pool: PgPool,
    principal_id: Uuid,
    key: String,
    settled: bool,
}

/// Replays the stored answer for a key seen before, refuses a reused or busy key, or claims
/// a new key for this request. Without a key, the request simply proceeds.
pub async fn replay_or_record(
    state: &AppState,
    caller: &Principal,
    key: IdempotencyKey,
    body: &JsonBody,
) -> Result<Begin, ApiError> {
    let Some(key_value) = key.key else {
        return Ok(Begin::Proceed(Recording { claim: None }));
    };
    // The fingerprint reads the body as JSON, where a repeated key keeps its last value: a
    // body with one must be refused before it can match (and replay) another request.
    if let Some(refusal) = body.duplicate_key_problem() {
        return Err(refusal);
    }
    let pool = state.store().pool();
    let fingerprint = fingerprint(&key.target, body.bytes());

    // Expired keys of every principal go here, so the table never outgrows a day of keys.
    sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= now()")
        .execute(pool)
        .await?;

    // A claim or a stored answer can vanish between the two statements (it expired, or its
    // request released it): then the claim is tried once more.
    for _ in 0..2 {
        let claimed: Option<bool> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (principal_id, key, request_sha256, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             ON CONFLICT (principal_id, key) DO UPDATE
                 SET request_sha256 = EXCLUDED.request_sha256, status = NULL, location = NULL,
                     body = NULL, created_at = now(), expires_at = EXCLUDED.expires_at
                 WHERE idempotency_keys.expires_at <= now()
                    OR (idempotency_keys.status IS NULL
                        AND idempotency_keys.created_at < now() - make_interval(secs => $5)
                        AND idempotency_keys.request_sha256 = EXCLUDED.request_sha256)
             RETURNING true",
        )
        .bind(caller.id)
        .bind(&key_value)
        .bind(&fingerprint)
        .bind(KEY_LIFETIME.as_secs_f64())
        .bind(ABANDONED_AFTER.as_secs_f64())
        .fetch_optional(pool)
        .await?;
        if claimed.is_some() {
            return Ok(Begin::Proceed(Recording {
                claim: Some(Claim {
                    pool: pool.clone(),
                    principal_id: caller.id,
                    key: key_value,
                    settled: false,
                }),
            }));
        }

        let stored: Option<StoredKey> = sqlx::query_as(
            "SELECT request_sha256, status, location, body FROM idempotency_keys
             WHERE principal_id = $1 AND key = $2 AND expires_at > now()",
        )
        .bind(caller.id)
        .bind(&key_value)
        .fetch_optional(pool)
        .await?;
        let Some(StoredKey {
            request_sha256: stored_fingerprint,
            status,
            location,
            body: stored_body,
        }) = stored
        else {
            continue;
        };
        if stored_fingerprint != fingerprint {
            tracing::info!(caller = %caller.name, "idempotency key reused for another request");
            return Ok(Begin::Answered(key_reused()));
        }
        let Some(status) = status else {
            return Ok(Begin::Answered(key_in_use()));
        };
        tracing::info!(caller = %caller.name, status, "answer replayed for an idempotency key");
        return Ok(Begin::Answered(replay(status, location, stored_body)));
    }
    Ok(Begin::Answered(key_in_use()))
}

impl Recording {
    /// Stores a successful answer under the claimed key and returns it unchanged; any other
    /// answer releases the key. A failure to store is logged, not shown: the answer is
    /// still right, and a repeat without the stored answer meets the handler's own
    /// idempotence.
    pub async fn finish(mut self, response: Response) -> Response {
        let Some(claim) = self.claim.as_mut() else {
            return response;
        };
        if !response.status().is_success() {
            return response;
        }
        let (parts, body) = response.into_parts();
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::error!(error = %err, "reading an answer to record it failed");
                return ApiError::Internal(anyhow::anyhow!("unreadable answer body"))
                    .into_response();
            }
        };
        let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let location = parts
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok());
        let stored = sqlx::query(
            "UPDATE idempotency_keys SET status = $3, location = $4, body = $5
             WHERE principal_id = $1 AND key = $2 AND status IS NULL",
        )
        .bind(claim.principal_id)
        .bind(&claim.key)
        .bind(i32::from(parts.status.as_u16()))
        .bind(location)
        .bind(&json)
        .execute(&claim.pool)
        .await;
        match stored {
            Ok(_) => claim.settled = true,
            Err(err) => {
                tracing::warn!(error = %err, "storing the answer of an idempotency key failed")
            }
        }
        Response::from_parts(parts, Body::from(bytes))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (pool, principal_id, key) = (self.pool.clone(), self.principal_id, self.key.clone());
        // Dropped inside a request, which must not wait: the release runs on its own. If it
        // never runs, the claim is taken over after ABANDONED_AFTER.
        runtime.spawn(async move {
            let released = sqlx::query(
                "DELETE FROM idempotency_keys
                 WHERE principal_id = $1 AND key = $2 AND status IS NULL",
            )
            .bind(principal_id)
            .bind(key)
            .execute(&pool)
            .await;
            if let Err(err) = released {
                tracing::warn!(error = %err, "releasing an idempotency key failed");
            }
        });
    }
}

/// SHA-256 of the method, path and body. A JSON body is taken in canonical form (keys
/// sorted, no whitespace), so a client that re-serialises the same request still matches.
fn fingerprint(target: &str, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(target.as_bytes());
    hasher.update(b"\n");
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => {
            let mut canonical = String::new();
            write_canonical(&value, &mut canonical);
            hasher.update(canonical.as_bytes());
        }
        Err(_) => hasher.update(body),
    }
    hasher.finalize().to_vec()
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn replay(status: i32, location: Option<String>, body: Option<serde_json::Value>) -> Response {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static(REPLAYED_HEADER),
        HeaderValue::from_static("true"),
    );
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

fn key_reused() -> Response {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
        "idempotency key reused",
        "this Idempotency-Key was sent with a different request in the last 24 hours; \
         use a new key for a new request",
        vec![FieldError {
            field: "Idempotency-Key".into(),
            code: "reused".into(),
            message: "the key belongs to another request".into(),
        }],
    )
}

fn key_in_use() -> Response {
    let mut response = problem(
        StatusCode::CONFLICT,
        "idempotency-key-in-use",
        "request in progress",
        "a request with this Idempotency-Key is still being handled; retry in a moment",
        Vec::new(),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A problem document for the two refusals that belong to this module alone.
fn problem(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
    errors: Vec<FieldError>,
) -> Response {
    let problem = Problem {
        kind: format!("{PROBLEM_TYPE_BASE}{slug}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail: detail.to_owned(),
        errors,
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        serde_json::to_vec(&problem).unwrap_or_default(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_json_layout_but_not_content() {
        let target = "POST /api/v1/organizations/acme/tenants";
        let a = fingerprint(target, br#"{"slug":"prod","plan":"free"}"#);
        let b = fingerprint(target, b"{ \"plan\": \"free\",\n  \"slug\": \"prod\" }");
        let c = fingerprint(target, br#"{"slug":"prod","plan":"growth"}"#);
        let d = fingerprint(
            "POST /api/v1/organizations/other/tenants",
            br#"{"slug":"prod","plan":"free"}"#,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn canonical_json_sorts_nested_keys() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"b":[{"y":1,"x":"é"}],"a":null}"#).unwrap();
        let mut out = String::new();
        write_canonical(&value, &mut out);
        assert_eq!(out, r#"{"a":null,"b":[{"x":"é","y":1}]}"#);
    }
}
