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
    errors.extend(slug_error("org", &request.org, MAX_SLUG_LEN));
    errors.extend(slug_error("slug", &request.slug, MAX_SLUG_LEN));
    if let Some(name) = &request.name {
        errors.extend(slug_error("name", name, MAX_NAME_LEN));
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

/// Checks one tenant slug or organisation slug on its own (a URL path segment, say) with
/// the rule [`validate`] applies, naming it `field` in the refusal.
pub fn check_slug(field: &str, value: &str) -> Result<(), FieldError> {
    match slug_error(field, value, MAX_SLUG_LEN) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn slug_error(field: &str, value: &str, max_len: usize) -> Option<FieldError> {
    if value.is_empty() {
        // `name` is the one optional field: empty is not "missing" there.
        let message = if field == "name" {
            "name must not be empty; leave it out to use the slug".to_owned()
        } else {
            format!("{field} is required")
        };
        return Some(FieldError::new(field, "required", message));
    }
    if value.len() > max_len {
        // The limit is in bytes (a DNS label); only ASCII counts one byte per character.
        let message = if value.is_ascii() {
            format!(
                "{field} is {} characters; at most {max_len} are allowed",
                value.len()
            )
        } else {
            format!(
                "{field} is {} bytes long; at most {max_len} are allowed, of lowercase letters \
                 a-z, digits and dashes",
                value.len()
            )
        };
        return Some(FieldError::new(field, "too_long", message));
    }
    if !matches_name_pattern(value) {
        return Some(FieldError::new(
            field,
            "pattern",
            pattern_hint(field, value),
        ));
    }
    None
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
        errors.push(FieldError::new(FIELD, "invalid_email", email_hint(value)));
    }
}

/// Longest local part (before the `@`) of an address, RFC 5321.
pub const MAX_EMAIL_LOCAL_LEN: usize = 64;
/// Longest label (between dots) of an address's domain: a DNS label.
pub const MAX_EMAIL_LABEL_LEN: usize = 63;

/// Why a refused address is refused, when a length limit is the reason; the general shape
/// otherwise. The values are measured here only to explain; the refusal itself is decided
/// above.
fn email_hint(value: &str) -> String {
    const SHAPE: &str = "first_admin_email must be a plain address like admin@example.com";
    if !value.is_ascii() {
        return "first_admin_email must use only ASCII characters, like admin@example.com".into();
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return SHAPE.to_owned();
    };
    if local.len() > MAX_EMAIL_LOCAL_LEN {
        return format!(
            "first_admin_email's local part (before the @) is {} characters; at most \
             {MAX_EMAIL_LOCAL_LEN} are allowed",
            local.len()
        );
    }
    if let Some(label) = domain
        .split('.')
        .find(|label| label.len() > MAX_EMAIL_LABEL_LEN)
    {
        return format!(
            "first_admin_email's domain has a label (a part between dots) of {} characters; \
             each may have at most {MAX_EMAIL_LABEL_LEN}",
            label.len()
        );
    }
    SHAPE.to_owned()
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

    fn messages(r: &TenantRequest) -> Vec<String> {
        validate(r, PLANS)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn an_empty_name_is_told_to_be_left_out() {
        let r = request("acme", "prod", Some(""));
        assert_eq!(refused_fields(&r), vec![("name".into(), "required".into())]);
        assert_eq!(
            messages(&r),
            vec!["name must not be empty; leave it out to use the slug"]
        );
        // The required fields still say so.
        assert_eq!(
            messages(&request("acme", "", None)),
            vec!["slug is required"]
        );
    }

    #[test]
    fn too_long_counts_what_the_limit_counts() {
        let ascii = request("acme", &"a".repeat(31), None);
        assert_eq!(
            messages(&ascii),
            vec!["slug is 31 characters; at most 30 are allowed"]
        );
        // 20 characters but 40 bytes: the message must not say 20 is too many.
        let wide = request("acme", &"é".repeat(20), None);
        assert_eq!(
            refused_fields(&wide),
            vec![("slug".into(), "too_long".into())]
        );
        assert_eq!(
            messages(&wide),
            vec![
                "slug is 40 bytes long; at most 30 are allowed, of lowercase letters a-z, \
                 digits and dashes"
            ]
        );
    }

    #[test]
    fn email_length_limits_are_named_when_they_are_the_reason() {
        let with_email = |email: String| {
            let mut r = request("acme", "prod", None);
            r.first_admin_email = email;
            r
        };
        let long_local = with_email(format!("{}@example.com", "a".repeat(100)));
        assert_eq!(
            refused_fields(&long_local),
            vec![("first_admin_email".into(), "invalid_email".into())]
        );
        assert_eq!(
            messages(&long_local),
            vec![
                "first_admin_email's local part (before the @) is 100 characters; at most 64 \
                 are allowed"
            ]
        );
        let long_label = with_email(format!("admin@{}.example.com", "b".repeat(70)));
        assert_eq!(
            refused_fields(&long_label),
            vec![("first_admin_email".into(), "invalid_email".into())]
        );
        assert_eq!(
            messages(&long_label),
            vec![
                "first_admin_email's domain has a label (a part between dots) of 70 \
                 characters; each may have at most 63"
            ]
        );
        // At the limits the address passes: the hints explain the rule, they add none.
        let at_limits = with_email(format!("{}@{}.example.com", "a".repeat(64), "b".repeat(63)));
        assert!(validate(&at_limits, PLANS).is_ok());
        assert_eq!(
            messages(&with_email("not-an-email".into())),
            vec!["first_admin_email must be a plain address like admin@example.com"]
        );
        assert_eq!(
            messages(&with_email("ä@example.com".into())),
            vec!["first_admin_email must use only ASCII characters, like admin@example.com"]
        );
    }

    #[test]
    fn one_slug_is_checked_like_the_request_checks_it() {
        assert_eq!(check_slug("org_id", "acme"), Ok(()));
        let refused = check_slug("org_id", "ORGA").unwrap_err();
        assert_eq!(
            (refused.field.as_str(), refused.code.as_str()),
            ("org_id", "pattern")
        );
        assert_eq!(
            refused.message,
            format!("org_id must be lowercase (pattern {NAME_PATTERN}, e.g. production-eu)")
        );
        let refused = check_slug("slug", &"a".repeat(5000)).unwrap_err();
        assert_eq!(refused.code, "too_long");
        assert!(refused.message.len() < 100, "{}", refused.message);
    }

    proptest! {
        #[test]
        fn a_single_slug_check_agrees_with_validate(s in "\\PC{0,40}") {
            let whole = validate(&request("acme", &s, None), PLANS).err().unwrap_or_default();
            let one = check_slug("slug", &s).err();
            prop_assert_eq!(whole.first(), one.as_ref());
        }

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
