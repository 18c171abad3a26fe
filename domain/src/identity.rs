//! A tenant's identity: everything derived from its key (organisation, slug).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for tenant ids (UUIDv5). Changing it would give every tenant a new id.
const TENANT_NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_7a0d_93b4_4e8f_a2d1_6b0f_4c3e_9a17);

/// Limits of the systems a derived name lands in.
pub struct NameLimits;

impl NameLimits {
    /// One DNS label (RFC 1035).
    pub const DNS_LABEL: usize = 63;
    /// A whole host name (RFC 1035).
    pub const HOST_NAME: usize = 253;
    /// PostgreSQL identifiers (NAMEDATALEN - 1), in bytes.
    pub const POSTGRES_IDENTIFIER: usize = 63;
    /// Temporal workflow ids are limited by the server (default 1000 bytes); we stay far below.
    pub const WORKFLOW_ID: usize = 255;
}

/// The key of a tenant. Only a validated request should be turned into a key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantKey {
    pub org: String,
    pub slug: String,
}

impl TenantKey {
    pub fn new(org: impl Into<String>, slug: impl Into<String>) -> Self {
        Self {
            org: org.into(),
            slug: slug.into(),
        }
    }

    /// The tenant id: a UUIDv5 of the key. `/` cannot appear in a slug, so the joined form
    /// is unambiguous.
    pub fn tenant_id(&self) -> Uuid {
        Uuid::new_v5(
            &TENANT_NAMESPACE,
            format!("{}/{}", self.org, self.slug).as_bytes(),
        )
    }

    /// One workflow id per key; every incarnation of the tenant is a run of it.
    pub fn workflow_id(&self) -> String {
        format!("tenant/{}/{}", self.org, self.slug)
    }

    /// The host name label `<slug>-<org>`. Two keys can share it (`a-b`/`c` and `a`/`b-c`),
    /// which is why the label is reserved in the store and a clash refused.
    pub fn host_label(&self) -> String {
        format!("{}-{}", self.slug, self.org)
    }

    /// Every resource name of this tenant, for a platform serving `*.<domain>`.
    pub fn derive(&self, domain: &str) -> DerivedNames {
        let id = self.tenant_id();
        let compact = id.simple().to_string();
        let label = self.host_label();
        DerivedNames {
            tenant_id: id,
            workflow_id: self.workflow_id(),
            host: format!("{label}.{domain}"),
            label,
            database: format!("t_{compact}"),
            role: format!("t_{compact}"),
            route_id: format!("tenant-{id}"),
            workload: format!("tenant-{id}"),
        }
    }
}

/// The names a tenant's resources go by, all pure functions of its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedNames {
    pub tenant_id: Uuid,
    pub workflow_id: String,
    /// `<slug>-<org>`: the reserved host name label.
    pub label: String,
    /// `<slug>-<org>.<domain>`.
    pub host: String,
    /// PostgreSQL database of the tenant.
    pub database: String,
    /// PostgreSQL login role of the tenant's workload.
    pub role: String,
    /// The traffic boundary's route id at the edge.
    pub route_id: String,
    /// The workload's name (process, socket and lock).
    pub workload: String,
}

impl DerivedNames {
    /// Checks every name against the limits of the system it is used in; the list is empty
    /// when all fit. With slugs of at most 30 characters only an overlong domain can fail.
    pub fn limit_violations(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.label.len() > NameLimits::DNS_LABEL {
            problems.push(format!("host label {} is longer than 63 bytes", self.label));
        }
        if self.host.len() > NameLimits::HOST_NAME {
            problems.push(format!("host name {} is longer than 253 bytes", self.host));
        }
        if let Some(long) = self
            .host
            .split('.')
            .find(|l| l.is_empty() || l.len() > NameLimits::DNS_LABEL)
        {
            problems.push(format!("host name has an empty or overlong label {long:?}"));
        }
        for (what, name) in [("database", &self.database), ("role", &self.role)] {
            if name.len() > NameLimits::POSTGRES_IDENTIFIER {
                problems.push(format!("{what} name {name} is longer than 63 bytes"));
            }
        }
        if self.workflow_id.len() > NameLimits::WORKFLOW_ID {
            problems.push("workflow id is too long".to_string());
        }
        problems
    }
}

/// Checks a platform domain (e.g. `tenants.example.com`) once at start-up, so that every
/// accepted key derives a valid host name under it.
pub fn check_domain(domain: &str) -> Result<(), String> {
    // The longest label is 30 + 1 + 30 characters, plus the dot.
    let longest_host = 61 + 1 + domain.len();
    if longest_host > NameLimits::HOST_NAME {
        return Err(format!(
            "domain {domain:?} is too long: tenant host names would exceed 253 bytes"
        ));
    }
    let labels_ok = domain.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= NameLimits::DNS_LABEL
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    });
    if !labels_ok {
        return Err(format!("domain {domain:?} is not a lowercase DNS name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::{MAX_SLUG_LEN, matches_name_pattern};
    use proptest::prelude::*;

    fn slug() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,6}){0,3}".prop_filter("within the slug limit", |s| {
            s.len() <= MAX_SLUG_LEN && matches_name_pattern(s)
        })
    }

    #[test]
    fn the_same_key_always_derives_the_same_names() {
        let a = TenantKey::new("acme", "production").derive("tenants.example.com");
        let b = TenantKey::new("acme", "production").derive("tenants.example.com");
        assert_eq!(a, b);
        assert_eq!(a.host, "production-acme.tenants.example.com");
        assert_eq!(a.workflow_id, "tenant/acme/production");
    }

    #[test]
    fn ambiguous_labels_get_distinct_ids() {
        let one = TenantKey::new("c", "a-b");
        let two = TenantKey::new("b-c", "a");
        assert_eq!(one.host_label(), two.host_label());
        assert_ne!(one.tenant_id(), two.tenant_id());
        assert_ne!(one.derive("x.io").database, two.derive("x.io").database);
    }

    #[test]
    fn longest_key_fits_every_system() {
        let key = TenantKey::new("o".repeat(30), "s".repeat(30));
        assert!(
            key.derive("tenants.example.com")
                .limit_violations()
                .is_empty()
        );
        let long_domain = format!(
            "{}.{}.{}.example.com",
            "d".repeat(63),
            "d".repeat(63),
            "d".repeat(63)
        );
        assert!(check_domain(&long_domain).is_err());
    }

    #[test]
    fn domains_are_checked() {
        assert!(check_domain("tenants.localhost").is_ok());
        assert!(check_domain("Tenants.localhost").is_err());
        assert!(check_domain("tenants..localhost").is_err());
    }

    proptest! {
        #[test]
        fn accepted_keys_derive_valid_names(org in slug(), s in slug()) {
            let names = TenantKey::new(org, s).derive("tenants.example.com");
            prop_assert!(names.limit_violations().is_empty(), "{:?}", names.limit_violations());
            prop_assert!(names.database.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }

        #[test]
        fn different_keys_never_share_a_resource_name(a in (slug(), slug()), b in (slug(), slug())) {
            prop_assume!(a != b);
            let x = TenantKey::new(a.0, a.1).derive("t.io");
            let y = TenantKey::new(b.0, b.1).derive("t.io");
            prop_assert_ne!(x.tenant_id, y.tenant_id);
            prop_assert_ne!(x.database, y.database);
            prop_assert_ne!(x.route_id, y.route_id);
            prop_assert_ne!(x.workflow_id, y.workflow_id);
        }
    }
}
