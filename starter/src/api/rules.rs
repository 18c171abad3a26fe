//! `GET /api/v1/rules`: the one validation rule as data, so a console form checks exactly
//! what the API and the saga check and cannot drift from them.
//!
//! Everything here is read from `tenant_domain` (pattern and lengths), the store (plans)
//! and the API's configuration (domain); nothing is retyped. The endpoint needs no token:
//! a form may load it before anyone signs in, and it says nothing about any organisation.
//! It must never grow anything that is not public (tenants, principals, quotas in use).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tenant_domain::identity::NameLimits;
use tenant_domain::validation::{MAX_EMAIL_LEN, MAX_NAME_LEN, MAX_SLUG_LEN, NAME_PATTERN};

use super::{ApiError, AppState};

/// The template every tenant host name follows.
pub const HOST_TEMPLATE: &str = "<slug>-<org>.<domain>";

/// The validation rule of a tenant request, as a form needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// The pattern slug, organisation slug and tenant name must match (ECMAScript syntax,
    /// the same as the OpenAPI document's `pattern`).
    pub name_pattern: String,
    /// One entry per field of the "new tenant" form.
    pub fields: RuleFields,
    /// The plans a request may name.
    pub plans: Vec<PlanRule>,
    /// Where a tenant is served.
    pub host: HostRule,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFields {
    /// The organisation slug (the `{org_id}` path segment).
    pub org: FieldRule,
    pub slug: FieldRule,
    pub name: FieldRule,
    pub first_admin_email: FieldRule,
    pub plan: FieldRule,
}

/// What one field must satisfy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldRule {
    pub required: bool,
    /// Longest accepted value, in characters (all accepted values are ASCII).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `email` for plain `local@domain` addresses; `plan` for a name from `plans`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// What an absent optional field means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// One plan tier and what it sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRule {
    pub name: String,
    pub display_name: String,
    /// Most tenants an organisation may hold on this plan (decommissioned ones not counted).
    pub max_tenants_per_org: i32,
    /// Connections the tenant's database accepts.
    pub db_connection_limit: i32,
    /// Connections the tenant's service keeps in its pool at most.
    pub workload_db_pool: i32,
    /// Requests the tenant's service serves at once.
    pub workload_max_concurrent_requests: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRule {
    /// `<slug>-<org>.<domain>`.
    pub template: String,
    pub domain: String,
    /// A DNS label: `<slug>-<org>` fits it by construction.
    pub max_label_length: usize,
    pub max_host_length: usize,
}

/// `GET /api/v1/rules`: no token needed.
#[tracing::instrument(name = "rules_show", skip_all)]
pub async fn rules_show(State(state): State<AppState>) -> Result<Response, ApiError> {
    let plans = state
        .store()
        .plans()
        .await?
        .into_iter()
        .map(|p| PlanRule {
            name: p.name,
            display_name: p.display_name,
            max_tenants_per_org: p.max_tenants_per_org,
            db_connection_limit: p.db_connection_limit,
            workload_db_pool: p.workload_db_pool,
            workload_max_concurrent_requests: p.workload_max_concurrent_requests,
        })
        .collect();
    let rules = rules(&state.config().domain, plans);

    let mut response = Json(rules).into_response();
    // Plans change rarely; a form may keep the rule for a minute.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}

/// The rule for a platform serving `*.<domain>` with these plans.
pub fn rules(domain: &str, plans: Vec<PlanRule>) -> Rules {
    let named = |max_length: usize, required: bool| FieldRule {
        required,
        max_length: Some(max_length),
        pattern: Some(NAME_PATTERN.to_owned()),
        format: None,
        default: None,
    };
    Rules {
        name_pattern: NAME_PATTERN.to_owned(),
        fields: RuleFields {
            org: named(MAX_SLUG_LEN, true),
            slug: named(MAX_SLUG_LEN, true),
            name: FieldRule {
                default: Some("the slug".to_owned()),
                ..named(MAX_NAME_LEN, false)
            },
            first_admin_email: FieldRule {
                required: true,
                max_length: Some(MAX_EMAIL_LEN),
                pattern: None,
                format: Some("email".to_owned()),
                default: None,
            },
            plan: FieldRule {
                required: true,
                max_length: None,
                pattern: None,
                format: Some("plan".to_owned()),
                default: None,
            },
        },
        plans,
        host: HostRule {
            template: HOST_TEMPLATE.to_owned(),
            domain: domain.to_owned(),
            max_label_length: NameLimits::DNS_LABEL,
            max_host_length: NameLimits::HOST_NAME,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_slug_and_org_fit_one_label() {
        let rules = rules("tenants.localhost", Vec::new());
        let longest =
            rules.fields.slug.max_length.unwrap() + 1 + rules.fields.org.max_length.unwrap();
        assert!(longest <= rules.host.max_label_length);
        assert_eq!(rules.fields.name.pattern.as_deref(), Some(NAME_PATTERN));
    }
}
