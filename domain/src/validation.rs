//! The single validation rule for a tenant request.

use serde::{Deserialize, Serialize};

/// Longest slug and organisation slug: keeps `<slug>-<org>` within one 63-byte DNS label.
pub const MAX_SLUG_LEN: usize = 30;
/// Longest tenant name: a DNS label.
pub const MAX_NAME_LEN: usize = 63;
/// Longest email address accepted (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// The pattern every slug, organisation slug and name must match, published to clients.
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9]*(-[a-z0-9]+)*$";

/// A "new tenant" request as it arrives from any front door.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRequest {
    pub org: String,
    pub slug: String,
    pub plan: String,
    pub first_admin_email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A request that passed [`validate`]; `name` is filled in (it defaults to the slug).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidRequest {
    pub org: String,
    pub slug: String,
    pub plan: String,
    pub first_admin_email: String,
    pub name: String,
}

/// One refused field, in the shape the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The request field, as named in the HTTP body (`org` is the path's organisation).
    pub field: String,
    /// A stable machine-readable code, e.g. `pattern`, `too_long`, `unknown_plan`.
    pub code: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    fn new(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Checks a request against the one rule; `known_plans` are the plan names that exist.
///
/// Returns every refused field at once, so a form can show all of them together.
pub fn validate(
    request: &TenantRequest,
    known_plans: &[&str],
) -> Result<ValidRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    check_slug("org", &request.org, MAX_SLUG_LEN, &mut errors);
    check_slug("slug", &request.slug, MAX_SLUG_LEN, &mut errors);
    if let Some(name) = &request.name {
        check_slug("name", name, MAX_NAME_LEN, &mut errors);
    }
    if request.plan.is_empty() {
        errors.push(FieldError::new("plan", "required", "plan is required"));
    } else if !known_plans.contains(&request.plan.as_str()) {
        let mut plans: Vec<&str> = known_plans.to_vec();
        plans.sort_unstable();
        errors.push(FieldError::new(
            "plan",
            "unknown_plan",
            format!("unknown plan; choose one of: {}", plans.join(", ")),
        ));
    }
    check_email(&request.first_admin_email, &mut errors);

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ValidRequest {
        org: request.org.clone(),
        slug: request.slug.clone(),
        plan: request.plan.clone(),
        first_admin_email: request.first_admin_email.clone(),
        name: request.name.clone().unwrap_or_else(|| request.slug.clone()),
    })
}

/// True when `value` matches [`NAME_PATTERN`]; written out by hand so the workflow needs no
/// regex engine, and proven equal to the published pattern by a property test.
pub fn matches_name_pattern(value: &str) -> bool {
    let bytes = value.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    if !first.is_ascii_lowercase() {
        return false;
    }
    let mut previous_dash = false;
    for &b in &bytes[1..] {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => previous_dash = false,
            b'-' if !previous_dash => previous_dash = true,
            _ => return false,
        }
    }
    !previous_dash
}

fn check_slug(field: &str, value: &str, max_len: usize, errors: &mut Vec<FieldError>) {
    if value.is_empty() {
        errors.push(FieldError::new(
            field,
            "required",
            format!("{field} is required"),
        ));
        return;
    }
    if value.len() > max_len {
        errors.push(FieldError::new(
            field,
            "too_long",
            format!(
                "{field} is {} characters; at most {max_len} are allowed",
                value.chars().count()
            ),
        ));
        return;
    }
    if !matches_name_pattern(value) {
        errors.push(FieldError::new(
            field,
            "pattern",
            pattern_hint(field, value),
        ));
    }
}

/// Names the first thing wrong with a value, so the caller knows what to change.
fn pattern_hint(field: &str, value: &str) -> String {
    let reason = if value.chars().any(|c| c.is_uppercase()) {
        "must be lowercase"
    } else if value.chars().any(|c| c.is_whitespace()) {
        "must not contain spaces"
    } else if !value.is_ascii() {
        "must use only ASCII letters a-z, digits and dashes"
    } else if value.starts_with(|c: char| c.is_ascii_digit()) {
        "must start with a letter"
    } else if value.starts_with('-') || value.ends_with('-') {
        "must not start or end with a dash"
    } else if value.contains("--") {
        "must not contain two dashes in a row"
    } else {
        "may contain only lowercase letters, digits and single dashes"
    };
    format!("{field} {reason} (pattern {NAME_PATTERN}, e.g. production-eu)")
}

fn check_email(value: &str, errors: &mut Vec<FieldError>) {
    const FIELD: &str = "first_admin_email";
    if value.is_empty() {
        errors.push(FieldError::new(
            FIELD,
            "required",
            "first_admin_email is required",
        ));
        return;
    }
    if value.len() > MAX_EMAIL_LEN {
        errors.push(FieldError::new(
            FIELD,
            "too_long",
            format!("first_admin_email is longer than {MAX_EMAIL_LEN} characters"),
        ));
        return;
    }
    // Only plain `local@domain` addresses: no display names, comments or quoted parts, and
    // ASCII only, so the address is the same byte string in every system it reaches.
    let plain = value.is_ascii()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == '"')
        && value.parse::<email_address::EmailAddress>().is_ok();
    let has_dotted_domain = value
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain.split('.').count() >= 2 && !domain.starts_with('['));
    if !plain || !has_dotted_domain {
        errors.push(FieldError::new(
            FIELD,
            "invalid_email",
            "first_admin_email must be a plain address like admin@example.com",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PLANS: &[&str] = &["free", "growth", "enterprise"];

    fn request(org: &str, slug: &str, name: Option<&str>) -> TenantRequest {
        TenantRequest {
            org: org.into(),
            slug: slug.into(),
            plan: "growth".into(),
            first_admin_email: "admin@example.com".into(),
            name: name.map(Into::into),
        }
    }

    fn refused_fields(r: &TenantRequest) -> Vec<(String, String)> {
        validate(r, PLANS)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn accepts_the_documented_examples() {
        for name in ["production", "production-eu", "customer-uat"] {
            let valid = validate(&request("acme", name, Some(name)), PLANS).unwrap();
            assert_eq!(valid.name, name);
        }
    }

    #[test]
    fn name_defaults_to_the_slug() {
        let valid = validate(&request("acme", "prod", None), PLANS).unwrap();
        assert_eq!(valid.name, "prod");
    }

    #[test]
    fn refuses_uppercase_name_with_a_field_error() {
        let refused = refused_fields(&request("acme", "prod", Some("Production")));
        assert_eq!(refused, vec![("name".to_string(), "pattern".to_string())]);
    }

    #[test]
    fn refuses_each_malformed_slug() {
        for bad in [
            "Prod", "1prod", "-prod", "prod-", "pro--d", "pröd", "pr od", " prod", "prod_1", "р",
        ] {
            let refused = refused_fields(&request("acme", bad, None));
            assert_eq!(refused, vec![("slug".into(), "pattern".into())], "{bad:?}");
        }
        let refused = refused_fields(&request("acme", "", None));
        assert_eq!(refused, vec![("slug".into(), "required".into())]);
        let refused = refused_fields(&request("acme", &"a".repeat(31), None));
        assert_eq!(refused, vec![("slug".into(), "too_long".into())]);
    }

    #[test]
    fn refuses_unknown_plan_and_bad_email_together() {
        let mut r = request("acme", "prod", None);
        r.plan = "platinum".into();
        r.first_admin_email = "not-an-email".into();
        let refused = refused_fields(&r);
        assert_eq!(
            refused,
            vec![
                ("plan".into(), "unknown_plan".into()),
                ("first_admin_email".into(), "invalid_email".into())
            ]
        );
    }

    #[test]
    fn refuses_display_names_and_non_ascii_emails() {
        for bad in [
            "Admin <a@example.com>",
            "a@localhost",
            "ä@example.com",
            "a b@example.com",
            "a@[127.0.0.1]",
        ] {
            let mut r = request("acme", "prod", None);
            r.first_admin_email = bad.into();
            assert_eq!(
                refused_fields(&r),
                vec![("first_admin_email".into(), "invalid_email".into())],
                "{bad:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn hand_written_matcher_equals_the_published_pattern(s in "[a-zA-Z0-9_ -]{0,12}") {
            let re = regex_lite_match(&s);
            prop_assert_eq!(matches_name_pattern(&s), re);
        }

        #[test]
        fn every_accepted_slug_matches_the_pattern(s in "\\PC{0,40}") {
            if validate(&request("acme", &s, None), PLANS).is_ok() {
                prop_assert!(matches_name_pattern(&s));
                prop_assert!(s.len() <= MAX_SLUG_LEN);
            }
        }
    }

    /// An independent reading of `^[a-z][a-z0-9]*(-[a-z0-9]+)*$` to test the matcher against.
    fn regex_lite_match(s: &str) -> bool {
        let mut parts = s.split('-');
        let Some(head) = parts.next() else {
            return false;
        };
        let head_ok = head.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && head
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        head_ok
            && parts.all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            })
    }
}
