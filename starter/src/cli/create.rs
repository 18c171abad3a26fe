//! `tenants create`: check locally, send, then follow the saga through the audit feed.
//!
//! The local check is the domain's own `validate`, so the CLI refuses exactly what the
//! API would, before anything is sent. Following (see `follow`) only reads: stopping
//! (timeout, ctrl-c) never affects the saga.

use std::time::Duration;

use reqwest::StatusCode;
use tenant_domain::{TenantRequest, validate};
use tokio::time::Instant;

use super::follow::{Followed, Goal, follow};
use super::output::print_json;
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
        eprintln!("error: invalid request; nothing was sent");
        for field in errors {
            eprintln!("  {}: {}", cli_flag(&field.field), field.message);
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
    if status == StatusCode::ACCEPTED {
        eprintln!(
            "✓ request accepted: {}/{} (incarnation {})",
            tenant.org, tenant.slug, tenant.incarnation
        );
    } else {
        eprintln!(
            "✓ {}/{} was already requested; following it ({})",
            tenant.org, tenant.slug, tenant.state
        );
    }
    eprintln!(
        "  workflow {}  {}",
        tenant.workflow_id, tenant.links.temporal_ui
    );

    if args.no_wait {
        match format {
            OutputFormat::Json => print_json(&raw),
            OutputFormat::Table => println!("{}", tenant.url),
        }
        return Outcome::Success;
    }

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let goal = Goal::Provisioned {
        incarnation: tenant.incarnation,
    };
    match follow(client, &args.org, &slug, 0, goal, deadline).await {
        Ok(Followed::Settled {
            reached,
            raw,
            detail,
            ..
        }) => finish(reached, raw, detail, format),
        Ok(Followed::TimedOut) => {
            eprintln!(
                "… not settled after {} s; the saga carries on. {}",
                args.timeout,
                follow_hint(&args.org, &slug)
            );
            Outcome::TimedOut
        }
        Ok(Followed::Interrupted) => {
            eprintln!(
                "… stopped following; the saga carries on. {}",
                follow_hint(&args.org, &slug)
            );
            Outcome::Interrupted
        }
        Err(err) => report(err),
    }
}

fn finish(
    reached: bool,
    raw: serde_json::Value,
    detail: Box<TenantDetail>,
    format: OutputFormat,
) -> Outcome {
    let tenant = &detail.tenant;
    let outcome = if reached {
        eprintln!(
            "✓ tenant {}/{} is {}",
            tenant.org, tenant.slug, tenant.state
        );
        Outcome::Success
    } else {
        eprintln!(
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
        OutputFormat::Table if outcome == Outcome::Success => println!("{}", tenant.url),
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
