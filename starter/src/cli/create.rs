//! `tenants create`: check locally, send, then follow the saga through the audit feed.
//!
//! The local check is the domain's own `validate`, so the CLI refuses exactly what the
//! API would, before anything is sent. Following only reads: stopping (timeout, ctrl-c)
//! never affects the saga.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tenant_domain::{TenantRequest, validate};

use super::output::{event_line, print_json};
use super::{ApiClient, ClientError, CreateArgs, Outcome, OutputFormat, report};
use crate::api::tenants::{CreateTenantBody, TenantDetail};

const POLL_INTERVAL: Duration = Duration::from_millis(500);
const EVENTS_PAGE: u32 = 500;

pub(super) async fn create(client: &ApiClient, args: CreateArgs, format: OutputFormat) -> Outcome {
    let request = TenantRequest {
        org: args.org.clone(),
        slug: args.slug.clone(),
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
        slug: args.slug.clone(),
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
    match follow(client, &args.org, &args.slug, tenant.incarnation, deadline).await {
        Ok(Followed::Settled(raw, detail)) => finish(raw, detail, format),
        Ok(Followed::TimedOut) => {
            eprintln!(
                "… still {} after {} s; the saga carries on. Follow it with `tenants events --org {} {}`",
                tenant.state, args.timeout, args.org, args.slug
            );
            Outcome::TimedOut
        }
        Err(err) => report(err),
    }
}

enum Followed {
    Settled(serde_json::Value, Box<TenantDetail>),
    TimedOut,
}

/// Prints the current incarnation's events as they arrive until the tenant leaves
/// `provisioning`/`compensating`, or the deadline passes.
async fn follow(
    client: &ApiClient,
    org: &str,
    slug: &str,
    incarnation: i32,
    deadline: Instant,
) -> Result<Followed, ClientError> {
    let mut after = 0;
    let mut warned = false;
    loop {
        let polled = async {
            print_new_events(client, org, slug, incarnation, &mut after).await?;
            client.tenant(org, slug, false).await
        }
        .await;
        match polled {
            Ok((raw, detail)) if settled(&detail.tenant.state) => {
                // Events committed with the final state change may land after the last read.
                print_new_events(client, org, slug, incarnation, &mut after).await?;
                return Ok(Followed::Settled(raw, Box::new(detail)));
            }
            Ok(_) => warned = false,
            Err(err) if err.is_transient() => {
                if !warned {
                    eprintln!("… {err}; still trying");
                    warned = true;
                }
            }
            Err(err) => return Err(err),
        }
        if Instant::now() >= deadline {
            return Ok(Followed::TimedOut);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn print_new_events(
    client: &ApiClient,
    org: &str,
    slug: &str,
    incarnation: i32,
    after: &mut i64,
) -> Result<(), ClientError> {
    loop {
        let events = client.events(org, slug, *after, EVENTS_PAGE).await?;
        for event in &events {
            *after = event.id;
            if event.incarnation == incarnation {
                eprintln!("{}", event_line(event));
            }
        }
        if events.len() < EVENTS_PAGE as usize {
            return Ok(());
        }
    }
}

/// A state the create command stops following at.
fn settled(state: &str) -> bool {
    !matches!(state, "provisioning" | "compensating")
}

fn finish(raw: serde_json::Value, detail: Box<TenantDetail>, format: OutputFormat) -> Outcome {
    let tenant = &detail.tenant;
    let outcome = match tenant.state.as_str() {
        "active" | "suspended" => {
            eprintln!(
                "✓ tenant {}/{} is {}",
                tenant.org, tenant.slug, tenant.state
            );
            Outcome::Success
        }
        state => {
            let reason = tenant
                .last_error
                .as_ref()
                .and_then(|e| e.get("message"))
                .and_then(|m| m.as_str())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            eprintln!("✗ tenant {}/{} is {state}{reason}", tenant.org, tenant.slug);
            Outcome::Failure
        }
    };
    match format {
        OutputFormat::Json => print_json(&raw),
        OutputFormat::Table if outcome == Outcome::Success => println!("{}", tenant.url),
        OutputFormat::Table => {}
    }
    outcome
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

    #[test]
    fn follows_until_a_stable_state() {
        assert!(!settled("provisioning"));
        assert!(!settled("compensating"));
        for state in [
            "active",
            "failed",
            "suspended",
            "decommissioning",
            "decommissioned",
        ] {
            assert!(settled(state), "{state}");
        }
    }
}
