//! The caller's own API tokens: issue (shown once), list, revoke.
//!
//! A token never outlives the token that created it: a caller whose own token expires gets
//! a new token that expires no later (by default exactly when the caller's does), so an
//! expiring token cannot be turned into a permanent one.
//!
//! A principal manages only its own tokens; a platform operator may also revoke anyone's
//! (to cut off a leaked token). Another principal's token answers exactly like one that
//! does not exist. The token value leaves this module once, in the body of the `POST`
//! answer; it is never logged, never listed, and `Debug` never shows it.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tenant_domain::FieldError;
use tenant_store::access::{AccessError, Authenticated, Revocation, TokenInfo};
use uuid::Uuid;

use super::{ApiError, ApiPath, AppState, Caller, CallerToken, JsonBody};

/// Longest token name, in characters.
pub const MAX_TOKEN_NAME_LEN: usize = 64;
/// Longest lifetime a token may be given, in days (ten years).
pub const MAX_EXPIRES_IN_DAYS: u32 = 3650;

/// `POST /api/v1/tokens` body.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    /// What the token is for, e.g. `ci-deploy`; shown in listings.
    #[serde(default)]
    pub name: String,
    /// Days until the token stops working; absent: it works until revoked, or, when the
    /// caller's own token expires, until the caller's token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// A newly issued token: the only answer that ever carries the token itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub id: Uuid,
    pub name: String,
    pub token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for TokenCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCreated")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("token", &"..")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token as listed: never its value or hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    /// `active`, `expired` or `revoked`, as of the answer.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The id of the token this one was made with; `None` for bootstrap tokens.
    pub created_by_token: Option<Uuid>,
}

/// The answer to a revocation: the token as it now is, and what the call did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    #[serde(flatten)]
    pub token: TokenView,
    /// The token was revoked before this call, which changed nothing about it.
    pub already_revoked: bool,
    /// Tokens descending from it (made with it, or with those) revoked by this call.
    pub revoked_descendants: u64,
}

/// The caller's tokens, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    pub items: Vec<TokenView>,
}

impl TokenView {
    fn from_info(info: TokenInfo, now: DateTime<Utc>) -> Self {
        let state = if info.revoked_at.is_some() {
            "revoked"
        } else if info.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: info.id,
            name: info.name,
            state: state.to_owned(),
            created_at: info.created_at,
            expires_at: info.expires_at,
            revoked_at: info.revoked_at,
            created_by_token: info.created_by_token,
        }
    }
}

/// `POST /api/v1/tokens`: 201 with the token, shown this once; 400 for a lifetime beyond
/// the caller's own token (see [`new_token_expiry`]).
#[tracing::instrument(
    name = "tokens_create",
    skip_all,
    fields(caller = %caller.principal.name, caller_token = %caller.token_id)
)]
pub async fn tokens_create(
    State(state): State<AppState>,
    CallerToken(caller): CallerToken,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let body: CreateTokenBody = body.parse()?;
    let name = check_token_request(&body).map_err(ApiError::invalid_fields)?;
    let expires_at = new_token_expiry(body.expires_in_days, &caller, Utc::now())
        .map_err(|e| ApiError::invalid_fields(vec![e]))?;

    let issued = state
        .store()
        .create_token_from(&caller, &name, expires_at)
        .await
        .map_err(|err| match err {
            AccessError::Database(err) => ApiError::from(err),
            // Revoked (or expired) since it was authenticated: as if it had been before.
            AccessError::ParentTokenNotLive { .. } => {
                ApiError::Unauthorized("the token is invalid, expired or revoked".into())
            }
            // The caller was authenticated a moment ago; its principal cannot be missing.
            other => ApiError::Internal(anyhow::Error::new(other).context("issuing a token")),
        })?;
    tracing::info!(token_id = %issued.id, expires_at = ?issued.expires_at, "api token issued");

    let created = TokenCreated {
        id: issued.id,
        name,
        token: issued.expose().to_owned(),
        expires_at: issued.expires_at,
    };
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    // The body holds a credential: no cache may keep it.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Refuses a bad name or lifetime field by field; the trimmed name. The CLI applies the
/// same check before it sends.
pub fn check_token_request(body: &CreateTokenBody) -> Result<String, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = body.name.trim();
    if name.is_empty() {
        errors.push(field_error(
            "name",
            "required",
            "name is required, e.g. ci-deploy",
        ));
    } else if name.chars().count() > MAX_TOKEN_NAME_LEN {
        errors.push(field_error(
            "name",
            "too_long",
            format!("name is longer than {MAX_TOKEN_NAME_LEN} characters"),
        ));
    } else if name.chars().any(char::is_control) {
        errors.push(field_error(
            "name",
            "invalid",
            "name must not contain control characters",
        ));
    }
    if let Some(days) = body.expires_in_days
        && !(1..=MAX_EXPIRES_IN_DAYS).contains(&days)
    {
        errors.push(field_error(
            "expires_in_days",
            "out_of_range",
            format!(
                "expires_in_days must be from 1 to {MAX_EXPIRES_IN_DAYS}; \
                 omit it for a token that works until revoked"
            ),
        ));
    }
    if errors.is_empty() {
        Ok(name.to_owned())
    } else {
        Err(errors)
    }
}

/// When a new token expires: `days` days from `now`, or never; but never after the token
/// the caller presented. Without `days`, a caller whose token expires gets a token that
/// expires at the same moment; asking for more days than the caller's token has left is
/// refused, naming how many it may ask for.
pub fn new_token_expiry(
    days: Option<u32>,
    caller: &Authenticated,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    let asked = days.map(|d| now + chrono::Duration::days(i64::from(d)));
    let Some(cap) = caller.token_expires_at else {
        return Ok(asked);
    };
    match asked {
        None => Ok(Some(cap)),
        Some(at) if at <= cap => Ok(Some(at)),
        Some(_) => {
            let until = cap.to_rfc3339_opts(SecondsFormat::Secs, true);
            let left = (cap - now).num_days();
            let allowed = if left >= 1 {
                format!("ask for at most {left} days, or ")
            } else {
                String::new()
            };
            Err(field_error(
                "expires_in_days",
                "exceeds_caller_token",
                format!(
                    "the token you are using expires at {until} and a token it creates may not \
                     outlive it: {allowed}omit expires_in_days to expire with it"
                ),
            ))
        }
    }
}

fn field_error(field: &str, code: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        code: code.to_owned(),
        message: message.into(),
    }
}

/// `GET /api/v1/tokens`: the caller's tokens, including expired and revoked ones.
#[tracing::instrument(name = "tokens_list", skip_all, fields(caller = %caller.name))]
pub async fn tokens_list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<TokenList>, ApiError> {
    let now = Utc::now();
    let items = state
        .store()
        .tokens_of(caller.id)
        .await?
        .into_iter()
        .map(|info| TokenView::from_info(info, now))
        .collect();
    Ok(Json(TokenList { items }))
}

/// The `{id}` of `/api/v1/tokens/{id}`; anything but a UUID is a 400 naming `token_id`.
pub struct TokenId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for TokenId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_a_uuid = || {
            ApiError::field(
                "token_id",
                "invalid",
                "token id must be a UUID, as GET /api/v1/tokens lists them",
            )
        };
        let raw = match ApiPath::<String>::from_request_parts(parts, state).await {
            Ok(ApiPath(raw)) => raw,
            Err(ApiError::Validation { .. }) => return Err(not_a_uuid()),
            Err(other) => return Err(other),
        };
        Uuid::try_parse(&raw).map(Self).map_err(|_| not_a_uuid())
    }
}

/// `DELETE /api/v1/tokens/{id}`: 200 with the revoked token, revoking with it every token
/// descending from it. Revoking a revoked token answers the same token, with
/// `already_revoked`; a token that is not the caller's (unless the caller is an operator)
/// is not found.
#[tracing::instrument(
    name = "tokens_revoke",
    skip_all,
    fields(caller = %caller.name, token_id = %id)
)]
pub async fn tokens_revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TokenId(id): TokenId,
) -> Result<Json<TokenRevoked>, ApiError> {
    let owner = (!caller.platform_operator).then_some(caller.id);
    let Revocation {
        token,
        already_revoked,
        revoked_descendants,
    } = state
        .store()
        .revoke_token_by(id, owner)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("token {id} not found")))?;
    tracing::info!(
        owner = %token.principal_id,
        already_revoked,
        revoked_descendants,
        "api token revoked"
    );
    Ok(Json(TokenRevoked {
        token: TokenView::from_info(token, Utc::now()),
        already_revoked,
        revoked_descendants,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: CreateTokenBody) -> Vec<(String, String)> {
        match check_token_request(&body) {
            Err(errors) => errors.into_iter().map(|e| (e.field, e.code)).collect(),
            Ok(name) => panic!("not refused: {name}"),
        }
    }

    #[test]
    fn names_and_lifetimes_are_checked() {
        let body = |name: &str, days: Option<u32>| CreateTokenBody {
            name: name.into(),
            expires_in_days: days,
        };
        assert_eq!(check_token_request(&body(" ci ", Some(30))).unwrap(), "ci");
        assert_eq!(
            refused(body("  ", None)),
            vec![("name".into(), "required".into())]
        );
        assert_eq!(
            refused(body(&"x".repeat(65), Some(0))),
            vec![
                ("name".into(), "too_long".into()),
                ("expires_in_days".into(), "out_of_range".into())
            ]
        );
        assert_eq!(
            refused(body("a\u{7}b", None)),
            vec![("name".into(), "invalid".into())]
        );
    }

    #[test]
    fn new_tokens_never_outlive_the_callers_token() {
        let now = Utc::now();
        let caller = |expires_at| Authenticated {
            principal: tenant_store::access::Principal {
                id: Uuid::nil(),
                name: "ci".into(),
                platform_operator: false,
            },
            token_id: Uuid::nil(),
            token_expires_at: expires_at,
        };
        let days = |d: i64| now + chrono::Duration::days(d);
        let forever = caller(None);
        assert_eq!(new_token_expiry(None, &forever, now), Ok(None));
        assert_eq!(new_token_expiry(Some(7), &forever, now), Ok(Some(days(7))));

        let for_a_week = caller(Some(days(7) + chrono::Duration::hours(3)));
        assert_eq!(
            new_token_expiry(None, &for_a_week, now),
            Ok(for_a_week.token_expires_at),
            "by default the new token expires with the caller's"
        );
        assert_eq!(
            new_token_expiry(Some(7), &for_a_week, now),
            Ok(Some(days(7)))
        );
        let refused = new_token_expiry(Some(8), &for_a_week, now).unwrap_err();
        assert_eq!(
            (refused.field.as_str(), refused.code.as_str()),
            ("expires_in_days", "exceeds_caller_token")
        );
        assert!(
            refused.message.contains("at most 7 days"),
            "{}",
            refused.message
        );

        let for_an_hour = caller(Some(now + chrono::Duration::hours(1)));
        let refused = new_token_expiry(Some(1), &for_an_hour, now).unwrap_err();
        assert!(!refused.message.contains("at most"), "{}", refused.message);
        assert!(refused.message.contains("omit expires_in_days"));
    }

    #[test]
    fn created_token_debug_hides_the_value() {
        let created = TokenCreated {
            id: Uuid::nil(),
            name: "ci".into(),
            token: "tp_secret".into(),
            expires_at: None,
        };
        assert!(!format!("{created:?}").contains("tp_secret"));
    }

    #[test]
    fn a_revocation_is_the_token_with_two_more_fields() {
        let now = Utc::now();
        let revoked = TokenRevoked {
            token: TokenView {
                id: Uuid::nil(),
                name: "ci".into(),
                state: "revoked".into(),
                created_at: now,
                expires_at: None,
                revoked_at: Some(now),
                created_by_token: Some(Uuid::nil()),
            },
            already_revoked: false,
            revoked_descendants: 2,
        };
        let json = serde_json::to_value(&revoked).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "already_revoked",
                "created_at",
                "created_by_token",
                "expires_at",
                "id",
                "name",
                "revoked_at",
                "revoked_descendants",
                "state"
            ]
        );
        assert_eq!(json["revoked_descendants"], 2);
        assert_eq!(
            serde_json::from_value::<TokenRevoked>(json).unwrap(),
            revoked
        );
    }

    #[test]
    fn states_follow_revocation_and_expiry() {
        let now = Utc::now();
        let info = |expires_at, revoked_at| TokenInfo {
            id: Uuid::nil(),
            principal_id: Uuid::nil(),
            name: "t".into(),
            created_at: now,
            expires_at,
            revoked_at,
            created_by_token: None,
        };
        let state = |i| TokenView::from_info(i, now).state;
        assert_eq!(state(info(None, None)), "active");
        assert_eq!(
            state(info(Some(now - chrono::Duration::seconds(1)), None)),
            "expired"
        );
        assert_eq!(state(info(None, Some(now))), "revoked");
    }
}
