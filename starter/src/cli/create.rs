//! `tenants create`: check locally, send, then follow the saga through the audit feed.
//!
//! The local check is the domain's own `validate`, so the CLI refuses exactly what the
//! API would, before anything is sent. Following (see `follow`) only reads: stopping
//! (timeout, ctrl-c) never affects the saga.

use std::time::Duration;

use reqwest::StatusCode;
use tenant_domain::{TenantRequest, validate};
use tokio::time::Instant;

use super::follow::{Followed, Goal, follow, provisioned};
use super::output::{eprintln_printable, print_json, println_printable};
use super::{ApiClient, CreateArgs, Outcome, OutputFormat, report};
use crate::api::tenants::{CreateTenantBody, TenantDetail, TenantResource};

pub(super) async fn create(client: &ApiClient, args: CreateArgs, format: OutputFormat) -> Outcome {
    let slug = args.tenant.slug().to_owned();
    let request = TenantRequest {
        org: args.org.clone(),
        slug: slug.clone(),
        plan: args.plan.clone(),
        first_admin_email: args.first_admin.clone(),
        name: args.name.clone(),
    };
    // Plans live on the server: any non-empty plan passes here and the API checks it.
    if let Err(errors) = validate(&request, &[args.plan.as_str()]) {
        eprintln_printable!("error: invalid request; nothing was sent");
        for field in errors {
            eprintln_printable!("  {}: {}", cli_flag(&field.field), field.message);
        }
        return Outcome::Failure;
    }

    let body = CreateTenantBody {
        slug: slug.clone(),
        plan: args.plan,
        first_admin_email: args.first_admin,
        name: args.name,
    };
    let (status, raw, tenant) = match client.create_tenant(&args.org, &body).await {
        Ok(answer) => answer,
        Err(err) => return report(err),
    };
    let fresh = status == StatusCode::ACCEPTED;
    let workflow_line = format!(
        "  workflow {}  {}",
        tenant.workflow_id, tenant.links.temporal_ui
    );

    if args.no_wait {
        if fresh {
            eprintln_printable!("{}", accepted_line(&tenant));
        } else if in_progress(&tenant.state) {
            eprintln_printable!(
                "✓ tenant {}/{} was already requested and is {}",
                tenant.org,
                tenant.slug,
                tenant.state
            );
        } else {
            eprintln_printable!("{}", exists_line(&tenant));
        }
        eprintln_printable!("{workflow_line}");
        match format {
            OutputFormat::Json => print_json(&raw),
            OutputFormat::Table => println_printable!("{}", tenant.url),
        }
        return Outcome::Success;
    }

    // A repeat of a request whose run is still going is followed from now on; one whose
    // tenant has settled is only reported. The feed's position is read before the state, so
    // a run that settles in between still shows its last events.
    let after = if fresh {
        eprintln_printable!("{}", accepted_line(&tenant));
        0
    } else {
        let now = async {
            let after = client.last_event_id(&args.org, &slug).await?;
            let (raw, detail) = client.tenant(&args.org, &slug, false).await?;
            Ok((after, raw, detail))
        };
        let (after, raw, detail) = match now.await {
            Ok(now) => now,
            Err(err) => return report(err),
        };
        if !in_progress(&detail.tenant.state) {
            eprintln_printable!("{}", exists_line(&detail.tenant));
            eprintln_printable!("{workflow_line}");
            return already_settled(raw, detail, format);
        }
        eprintln_printable!(
            "✓ tenant {}/{} was already requested and is {}; following the run already in \
             progress",
            tenant.org,
            tenant.slug,
            detail.tenant.state
        );
        after
    };
    eprintln_printable!("{workflow_line}");

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let goal = Goal::Provisioned {
        incarnation: tenant.incarnation,
    };
    match follow(client, &args.org, &slug, after, goal, deadline).await {
        Ok(Followed::Settled {
            reached,
            raw,
            detail,
            ..
        }) => finish(reached, raw, detail, format),
        Ok(Followed::TimedOut) => {
            eprintln_printable!(
                "… not settled after {} s; the saga carries on. {}",
                args.timeout,
                follow_hint(&args.org, &slug)
            );
            Outcome::TimedOut
        }
        Ok(Followed::Interrupted) => {
            eprintln_printable!(
                "… stopped following; the saga carries on. {}",
                follow_hint(&args.org, &slug)
            );
            Outcome::Interrupted
        }
        Err(err) => report(err),
    }
}

/// The one line that says a new request was taken. The feed's own `request_accepted`
/// event says the same and is not shown (see `Goal::Provisioned`).
fn accepted_line(tenant: &TenantResource) -> String {
    format!(
        "✓ request accepted: {}/{} on plan {} (incarnation {})",
        tenant.org, tenant.slug, tenant.plan, tenant.incarnation
    )
}

/// Whether the provisioning run of a repeated request is still going, so there is
/// something to follow.
fn in_progress(state: &str) -> bool {
    matches!(state, "provisioning" | "compensating")
}

/// What a repeated request finds when its tenant is no longer being provisioned: that it
/// exists, its state, and what to do next when that is not a serving state.
fn exists_line(tenant: &TenantResource) -> String {
    let (org, slug) = (&tenant.org, &tenant.slug);
    let what = format!("tenant {org}/{slug} already exists");
    match tenant.state.as_str() {
        "active" => format!(
            "✓ {what} and is active at {}; nothing new was started",
            tenant.url
        ),
        "suspended" => format!(
            "✓ {what} and is suspended: {} serves no traffic until \
             `tenants resume --org {org} --slug {slug}`; nothing new was started",
            tenant.url
        ),
        "failed" => format!(
            "✗ {what} and is failed{}; nothing new was started. \
             `tenants retry --org {org} --slug {slug}` provisions it again",
            failure_reason(tenant)
        ),
        "decommissioning" => format!(
            "✗ {what} and is being decommissioned; request it again once it is decommissioned"
        ),
        state => format!("✗ {what} and is {state}; nothing new was started"),
    }
}

/// A repeated request for a tenant that has settled: its answer, as `finish` gives it,
/// without a line of its own on stderr (`exists_line` said it all).
fn already_settled(raw: serde_json::Value, detail: TenantDetail, format: OutputFormat) -> Outcome {
    let outcome = if provisioned(&detail.tenant.state) {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    match format {
        OutputFormat::Json => print_json(&raw),
        OutputFormat::Table if outcome == Outcome::Success => {
            println_printable!("{}", detail.tenant.url)
        }
        OutputFormat::Table => {}
    }
    outcome
}

fn finish(
    reached: bool,
    raw: serde_json::Value,
    detail: Box<TenantDetail>,
    format: OutputFormat,
) -> Outcome {
    let tenant = &detail.tenant;
    let outcome = if reached {
        eprintln_printable!(
            "✓ tenant {}/{} is {}",
            tenant.org,
            tenant.slug,
            tenant.state
        );
        Outcome::Success
    } else {
        eprintln_printable!(
            "✗ tenant {}/{} is {}{}",
            tenant.org,
            tenant.slug,
            tenant.state,
            failure_reason(tenant)
        );
        Outcome::Failure
    };
    match format {
        OutputFormat::Json => print_json(&raw),
        OutputFormat::Table if outcome == Outcome::Success => println_printable!("{}", tenant.url),
        OutputFormat::Table => {}
    }
    outcome
}

/// `: <message>` of the tenant's last error, or nothing.
pub(super) fn failure_reason(tenant: &TenantResource) -> String {
    tenant
        .last_error
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

/// How to pick up following a saga that the command stopped following.
pub(super) fn follow_hint(org: &str, slug: &str) -> String {
    format!("Follow it with `tenants events --org {org} --slug {slug} --follow`")
}

/// The command-line flag a request field comes from, so errors point at what to retype.
fn cli_flag(field: &str) -> &str {
    match field {
        "org" => "--org",
        "slug" => "--slug",
        "plan" => "--plan",
        "first_admin_email" => "--first-admin",
        "name" => "--name",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(state: &str, last_error: Option<&str>) -> TenantResource {
        serde_json::from_value(serde_json::json!({
            "id": "6f1c1c4e-0000-5000-8000-000000000000",
            "org": "demo", "slug": "production", "name": "production", "plan": "growth",
            "first_admin_email": "admin@example.com",
            "host": "production-demo.tenants.localhost",
            "url": "https://production-demo.tenants.localhost:8443",
            "state": state, "phase": null, "incarnation": 1,
            "workflow_id": "tenant/demo/production", "run_id": null,
            "last_error": last_error.map(|m| serde_json::json!({ "message": m })),
            "created_at": "2026-12-03T16:00:00Z", "updated_at": "2026-12-03T16:00:00Z",
            "links": { "self": "s", "events": "e", "temporal_ui": "t" }
        }))
        .unwrap()
    }

    #[test]
    fn a_repeat_says_what_exists_and_what_to_do_next() {
        assert_eq!(
            exists_line(&tenant("active", None)),
            "✓ tenant demo/production already exists and is active at \
             https://production-demo.tenants.localhost:8443; nothing new was started"
        );
        assert_eq!(
            exists_line(&tenant("failed", Some("deploy gave up"))),
            "✗ tenant demo/production already exists and is failed: deploy gave up; nothing new \
             was started. `tenants retry --org demo --slug production` provisions it again"
        );
        assert!(
            exists_line(&tenant("suspended", None))
                .contains("`tenants resume --org demo --slug production`")
        );
        assert!(
            exists_line(&tenant("decommissioning", None))
                .contains("request it again once it is decommissioned")
        );
        assert!(in_progress("provisioning") && in_progress("compensating"));
        assert!(!in_progress("active") && !in_progress("decommissioning"));
    }
}
