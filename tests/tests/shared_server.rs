//! Two control planes on one PostgreSQL server derive the same tenant names from the same
//! organisation and slug: a stack must neither adopt nor drop the other's tenant storage.

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use tenant_domain::TenantKey;
use tenant_tests::Stack;

use common::*;

/// The tenant's database and role as another control plane left them: their markers and
/// the tables in the database.
async fn footprint(stack: &Stack, name: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let mut rows = stack
        .psql_on(
            "postgres",
            &format!(
                "SELECT shobj_description(d.oid, 'pg_database'), shobj_description(r.oid, 'pg_authid'), r.rolconnlimit::text
                 FROM pg_database d, pg_roles r WHERE d.datname = '{name}' AND r.rolname = '{name}'"
            ),
        )
        .await?;
    rows.extend(
        stack
            .psql_on(
                name,
                "SELECT tablename::text FROM pg_tables
                 WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            )
            .await?,
    );
    Ok(rows)
}

/// A tenant database made by another control plane (or by one from before markers named
/// their control plane) fails `allocate_storage` at once with `ForeignResource`; the saga
/// unwinds to `failed` and a decommission ends `decommissioned`, and the other control
/// plane's database, role and data are untouched throughout.
#[tokio::test(flavor = "multi_thread")]
async fn another_control_planes_tenant_database_is_neither_adopted_nor_dropped()
-> anyhow::Result<()> {
    let stack = Stack::start().await?;
    for (slug, marker_of) in [
        (
            "shared",
            (|id| format!("tenant:{id} platform:0011223344556677")) as fn(uuid::Uuid) -> String,
        ),
        ("legacy", |id| format!("tenant:{id}")),
    ] {
        let key = TenantKey::new(stack.org.clone(), slug);
        let name = key.derive(&stack.domain).database;
        let marker = marker_of(key.tenant_id());
        stack
            .psql_on(
                "postgres",
                &format!(
                    "CREATE ROLE \"{name}\" LOGIN CONNECTION LIMIT 7; COMMENT ON ROLE \"{name}\" IS '{marker}'"
                ),
            )
            .await?;
        stack
            .psql_on(
                "postgres",
                &format!("CREATE DATABASE \"{name}\" OWNER \"{name}\""),
            )
            .await?;
        stack
            .psql_on(
                "postgres",
                &format!("COMMENT ON DATABASE \"{name}\" IS '{marker}'"),
            )
            .await?;
        stack
            .psql_on(
                &name,
                "CREATE TABLE precious (id int); INSERT INTO precious VALUES (42)",
            )
            .await?;
        let before = footprint(&stack, &name).await?;

        let created = stack
            .create_tenant(slug, "free", "owner@example.com", None)
            .await?;
        assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
        let failed = stack
            .wait_for_state(slug, "failed", Duration::from_secs(120))
            .await?;
        assert_eq!(
            failed["last_error"]["phase"], "allocate_storage",
            "{failed}"
        );
        assert_eq!(
            failed["last_error"]["error_type"], "ForeignResource",
            "{failed}"
        );
        let reason = failed["last_error"]["message"].as_str().unwrap_or_default();
        assert!(reason.contains(&name), "{reason}");
        assert!(
            reason.contains("another control plane on this PostgreSQL server"),
            "{reason}"
        );
        let feed = events(&stack, slug).await?;
        let attempts = feed
            .iter()
            .filter(|e| e["kind"] == "phase_failed" && e["phase"] == "allocate_storage")
            .count();
        assert_eq!(attempts, 1, "a foreign resource is not retried");
        assert_eq!(
            footprint(&stack, &name).await?,
            before,
            "{slug} after failing"
        );

        let (status, body) = act(&stack, slug, "decommission", &stack.owner_token).await?;
        assert!(status.is_success(), "{status} {body}");
        stack
            .wait_for_state(slug, "decommissioned", Duration::from_secs(60))
            .await?;
        assert_eq!(
            footprint(&stack, &name).await?,
            before,
            "{slug} after decommission"
        );
        let kept = stack
            .psql_on(&name, "SELECT id::text FROM precious")
            .await?;
        assert_eq!(kept, [[Some("42".to_string())]]);
    }
    // Dropping the stack drops the databases and roles named after its tenants: these too.
    Ok(())
}
