//! `tenants retry|decommission|suspend|resume`: ask the tenant's workflow for a lifecycle
//! action through the API, then follow the audit feed until the action's stable state.
//!
//! The API answers whether the workflow accepted the action; a refusal (wrong state,
//! another action in progress) is printed with the workflow's reason and exits 1. Following
//! only reads: stopping it never affects the action.

use std::time::Duration;

use tenant_domain::LifecycleAction;
use tokio::time::Instant;

use super::create::failure_reason;
use super::follow::{Followed, Goal, follow};
use super::output::print_json;
use super::{ActionArgs, ApiClient, Outcome, OutputFormat, report};

/// The state an accepted action ends in when it succeeds.
pub(super) fn target(action: LifecycleAction) -> &'static str {
    match action {
        LifecycleAction::Retry | LifecycleAction::Resume => "active",
        // These act on the tenant without moving it: it stays active (or suspended).
        LifecycleAction::ReissueInvitation | LifecycleAction::ResendEmail => "active",
        LifecycleAction::Decommission => "decommissioned",
        LifecycleAction::Suspend => "suspended",
    }
}

pub(super) async fn run(
    client: &ApiClient,
    action: LifecycleAction,
    args: ActionArgs,
    format: OutputFormat,
) -> Outcome {
    let (org, slug) = (args.org.as_str(), args.slug.as_str());
    // Where the feed stands and what state the action starts from, read before sending it,
    // so every event the action causes is after `after` and a move away from `from` is seen.
    let (after, from) = if args.no_wait {
        (0, String::new())
    } else {
        let before = async {
            let after = client.last_event_id(org, slug).await?;
            let (_, detail) = client.tenant(org, slug, false).await?;
            Ok((after, detail.tenant.state))
        };
        match before.await {
            Ok(before) => before,
            Err(err) => return report(err),
        }
    };

    let (raw, answer) = match client.lifecycle(org, slug, action).await {
        Ok(answer) => answer,
        Err(err) => return report(err),
    };
    eprintln!("✓ {}", answer.answer);
    if args.no_wait {
        match format {
            OutputFormat::Json => print_json(&raw),
            OutputFormat::Table => println!("{}", answer.answer),
        }
        return Outcome::Success;
    }

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let goal = Goal::Action {
        from,
        target: target(action),
    };
    match follow(client, org, slug, after, goal, deadline).await {
        Ok(Followed::Settled {
            reached,
            state,
            raw,
            detail,
        }) => {
            let tenant = &detail.tenant;
            if reached {
                eprintln!("✓ tenant {org}/{slug} is {state}");
            } else {
                eprintln!("✗ tenant {org}/{slug} is {state}{}", failure_reason(tenant));
            }
            match format {
                OutputFormat::Json => print_json(&raw),
                OutputFormat::Table => println!("{org}/{slug} {state}"),
            }
            if reached {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        }
        Ok(Followed::TimedOut) => {
            eprintln!(
                "… not {} after {} s; the saga carries on. Follow it with `tenants events --follow --org {org} {slug}`",
                target(action),
                args.timeout
            );
            Outcome::TimedOut
        }
        Err(err) => report(err),
    }
}
