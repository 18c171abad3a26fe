//! `tenants retry|decommission|suspend|resume`: ask the tenant's workflow for a lifecycle
//! action through the API, then follow the audit feed until the action's stable state.
//! `tenants reissue-invitation|resend-email`: the same for an email action, followed until
//! the feed shows whether the email went out.
//!
//! The API answers whether the workflow accepted the action; a refusal (wrong state,
//! another action in progress) is printed with the workflow's reason and exits 1. Following
//! only reads: stopping it never affects the action.

use std::time::Duration;

use tenant_domain::{EmailKind, LifecycleAction};
use tokio::time::Instant;

use super::create::{failure_reason, follow_hint};
use super::follow::{Followed, Goal, OPERATOR_EMAIL_FAILED, OPERATOR_EMAIL_SENT, follow};
use super::output::{eprintln_printable, print_json, println_printable};
use super::{ActionArgs, ApiClient, Outcome, OutputFormat, report};
use crate::api::tenants::TenantDetail;

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
    let (org, slug) = (args.org.as_str(), args.tenant.slug());
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

    if let Some(done) = send(client, org, slug, action, None, args.no_wait, format).await {
        return done;
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
            ..
        }) => {
            let tenant = &detail.tenant;
            if reached {
                eprintln_printable!("✓ tenant {org}/{slug} is {state}");
            } else {
                eprintln_printable!("✗ tenant {org}/{slug} is {state}{}", failure_reason(tenant));
            }
            match format {
                OutputFormat::Json => print_json(&raw),
                OutputFormat::Table => println_printable!("{org}/{slug} {state}"),
            }
            if reached {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        }
        Ok(Followed::TimedOut) => {
            eprintln_printable!(
                "… not {} after {} s; the saga carries on. {}",
                target(action),
                args.timeout,
                follow_hint(org, slug)
            );
            Outcome::TimedOut
        }
        Ok(Followed::Interrupted) => interrupted(org, slug),
        Err(err) => report(err),
    }
}

/// `tenants reissue-invitation` (`email` is `None`) and `tenants resend-email`: sends the
/// action, prints the workflow's answer, then follows the feed until the action's
/// `operator_email_sent` (exit 0) or `operator_email_failed` (exit 1) event.
pub(super) async fn run_email(
    client: &ApiClient,
    action: LifecycleAction,
    email: Option<EmailKind>,
    args: ActionArgs,
    format: OutputFormat,
) -> Outcome {
    let (org, slug) = (args.org.as_str(), args.tenant.slug());
    // Read first, so the action's events are all after `after`.
    let after = if args.no_wait {
        0
    } else {
        match client.last_event_id(org, slug).await {
            Ok(after) => after,
            Err(err) => return report(err),
        }
    };

    if let Some(done) = send(client, org, slug, action, email, args.no_wait, format).await {
        return done;
    }

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    // The email a re-issue sends is the welcome email, which carries the invitation.
    let kind = email.unwrap_or(EmailKind::Welcome);
    match follow(client, org, slug, after, Goal::OperatorEmail, deadline).await {
        Ok(Followed::Settled {
            reached,
            state,
            raw,
            detail,
            event,
        }) => {
            // The operator event's own line is already on stderr; without one, say why.
            let answered = event.is_some_and(|e| {
                matches!(e.kind.as_str(), OPERATOR_EMAIL_SENT | OPERATOR_EMAIL_FAILED)
            });
            if !answered {
                eprintln_printable!(
                    "✗ tenant {org}/{slug} is {state}: the {} was not carried out",
                    action.as_str()
                );
            }
            match format {
                OutputFormat::Json => print_json(&raw),
                OutputFormat::Table => {
                    println_printable!("{org}/{slug} {}", delivery_line(&detail, kind))
                }
            }
            if reached {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        }
        Ok(Followed::TimedOut) => {
            eprintln_printable!(
                "… no outcome of the {} after {} s; the saga carries on. {}",
                action.as_str(),
                args.timeout,
                follow_hint(org, slug)
            );
            Outcome::TimedOut
        }
        Ok(Followed::Interrupted) => interrupted(org, slug),
        Err(err) => report(err),
    }
}

fn interrupted(org: &str, slug: &str) -> Outcome {
    eprintln_printable!(
        "… stopped following; the action carries on. {}",
        follow_hint(org, slug)
    );
    Outcome::Interrupted
}

/// `welcome sent (2 sends)` for the tenant's email of `kind`.
fn delivery_line(detail: &TenantDetail, kind: EmailKind) -> String {
    match detail.emails.iter().find(|e| e.kind == kind.as_str()) {
        Some(email) => {
            let sends = match email.attempts {
                1 => "1 send".to_owned(),
                n => format!("{n} sends"),
            };
            match &email.error {
                Some(error) => format!("{} {} ({sends}): {error}", email.kind, email.status),
                None => format!("{} {} ({sends})", email.kind, email.status),
            }
        }
        None => format!("{} unknown", kind.as_str()),
    }
}

/// Sends the action and prints the workflow's answer. `Some` ends the command: the request
/// failed, or `--no-wait` was given and the answer is the output.
async fn send(
    client: &ApiClient,
    org: &str,
    slug: &str,
    action: LifecycleAction,
    email: Option<EmailKind>,
    no_wait: bool,
    format: OutputFormat,
) -> Option<Outcome> {
    let (raw, answer) = match client.lifecycle(org, slug, action, email).await {
        Ok(answer) => answer,
        Err(err) => return Some(report(err)),
    };
    eprintln_printable!("✓ {}", answer.answer);
    if !no_wait {
        return None;
    }
    match format {
        OutputFormat::Json => print_json(&raw),
        OutputFormat::Table => println_printable!("{}", answer.answer),
    }
    Some(Outcome::Success)
}
