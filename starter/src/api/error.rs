//! The API's one error type and its rendering as RFC 9457 problem+json.
//!
//! Every refusal the API makes, including those of the extractors (malformed JSON, wrong
//! content type, oversized bodies, bad paths and queries; see [`super::extract`]), leaves
//! through [`ApiError`] in our own words, so clients see one body shape with a stable
//! `type` URI and never the web framework's rejection text. 4xx details are specific; 5xx
//! bodies are generic and their cause goes to the log. Nothing here may put a token, an
//! Authorization header or a request body into a response or a log line.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tenant_domain::FieldError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Problem `type` URIs are this plus a stable slug, e.g. `.../problems/validation`.
pub const PROBLEM_TYPE_BASE: &str = "https://tenant-provisioner.dev/problems/";

/// An RFC 9457 problem document, as sent and as the CLI reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    /// Field-level refusals; only validation problems carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or breaks the validation rule; nothing was written.
    #[error("{detail}")]
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// No usable credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller can see the organisation but its role does not allow the action.
    #[error("{0}")]
    Forbidden(String),
    /// Also used for organisations the caller may not see, so their existence stays hidden.
    #[error("{0}")]
    NotFound(String),
    /// The tenant's slot (key or host name label) is held.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A dependency is down; `detail` is safe to show, `cause` goes to the log only.
    #[error("{detail}: {cause}")]
    Unavailable { detail: String, cause: String },
    /// A bug or an unexpected failure; the body says nothing about it.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A validation problem about a single field.
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Validation {
            detail: format!("invalid request: {message}"),
            errors: vec![FieldError {
                field: field.to_owned(),
                code: code.to_owned(),
                message,
            }],
        }
    }

    /// A validation problem from the domain's rule, listing every refused field.
    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        Self::Validation {
            detail: format!("invalid request: check {}", fields.join(", ")),
            errors,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::QuotaExceeded(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable slug of the problem type.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "validation",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::Conflict(_) => "conflict",
            Self::QuotaExceeded(_) => "quota-exceeded",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::MethodNotAllowed(_) => "method-not-allowed",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "invalid request",
            Self::Unauthorized(_) => "authentication required",
            Self::Forbidden(_) => "not allowed",
            Self::NotFound(_) => "not found",
            Self::Conflict(_) => "conflict",
            Self::QuotaExceeded(_) => "tenant quota reached",
            Self::PayloadTooLarge(_) => "request body too large",
            Self::UnsupportedMediaType(_) => "unsupported media type",
            Self::MethodNotAllowed(_) => "method not allowed",
            Self::Unavailable { .. } => "service unavailable",
            Self::Internal(_) => "internal error",
        }
    }

    /// The problem document this error is sent as. Logs 5xx causes, which the body omits.
    pub fn to_problem(self) -> Problem {
        let status = self.status().as_u16();
        let kind = format!("{PROBLEM_TYPE_BASE}{}", self.kind());
        let title = self.title().to_owned();
        let (detail, errors) = match self {
            Self::Validation { detail, errors } => (detail, errors),
            Self::Unavailable { detail, cause } => {
                tracing::error!(status, %cause, "{detail}");
                (detail, Vec::new())
            }
            Self::Internal(err) => {
                tracing::error!(status, error = format!("{err:#}"), "request failed");
                (
                    "the server could not handle the request; the error has been logged".into(),
                    Vec::new(),
                )
            }
            other => (other.to_string(), Vec::new()),
        };
        Problem {
            kind,
            title,
            status,
            detail,
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let unauthorized = matches!(self, Self::Unauthorized(_));
        let mut response = problem_response(status, &self.to_problem());
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tenant-provisioner\""),
            );
        }
        response
    }
}

fn problem_response(status: StatusCode, problem: &Problem) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(err).context("control-plane database"))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge(format!(
                "the request body is larger than {} bytes",
                super::MAX_BODY_BYTES
            ))
        } else {
            Self::field("body", "unreadable", "the request body could not be read")
        }
    }
}

/// Turns error responses that did not come from [`ApiError`] (tower-http's early 413, the
/// router's 405) into problem documents, so clients never see a bare text body.
pub async fn bare_errors_as_problems(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("json") {
        return response;
    }
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
            "the request body is larger than {} bytes",
            super::MAX_BODY_BYTES
        )),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::MethodNotAllowed("this endpoint does not accept that method".into())
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("send the body as application/json".into())
        }
        StatusCode::NOT_FOUND => ApiError::NotFound("no such endpoint".into()),
        s if s.is_server_error() => {
            ApiError::Internal(anyhow::anyhow!("{s} without a problem body"))
        }
        s => {
            let detail = s
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_lowercase();
            let problem = Problem {
                kind: "about:blank".into(),
                title: detail.clone(),
                status: s.as_u16(),
                detail,
                errors: Vec::new(),
            };
            return problem_response(s, &problem);
        }
    };
    let mut replaced = error.into_response();
    // Keep headers such as Allow on 405.
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    replaced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_show_their_cause() {
        let problem = ApiError::Internal(anyhow::anyhow!("password=hunter2 in connection string"))
            .to_problem();
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("hunter2"));
        assert_eq!(
            problem.kind,
            "https://tenant-provisioner.dev/problems/internal"
        );
    }

    #[test]
    fn validation_problems_list_fields() {
        let problem = ApiError::field("slug", "pattern", "slug must be lowercase").to_problem();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.errors.len(), 1);
        assert_eq!(problem.errors[0].field, "slug");
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(
            json["type"],
            "https://tenant-provisioner.dev/problems/validation"
        );
    }
}
