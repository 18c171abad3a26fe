//! Following a saga from the CLI: print the tenant's audit feed on stderr as it happens and
//! stop at the state (or, for an email action, the event) the command waits for.
//!
//! The feed is read live (Server-Sent Events); when the live feed cannot be opened or breaks
//! twice, the rest is polled. Either way events are read strictly after the last one seen,
//! so nothing is printed twice or skipped. How the events look on stderr (plain lines, or a
//! spinner on a terminal) is `progress`'s business. Following only reads: stopping
//! (timeout, ctrl-c) never affects the saga.

use std::time::Duration;

use tokio::time::Instant;

use super::progress::Progress;
use super::{ApiClient, ClientError};
use crate::api::tenants::{EventView, TenantDetail};
use crate::cli::client::EventStream;

const POLL_INTERVAL: Duration = Duration::from_millis(500);
const POLL_PAGE: u32 = 500;

/// What a follow waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Goal {
    /// `create`: until the stored state of the tenant leaves `provisioning`/`compensating`.
    /// Only events of `incarnation` are printed, and not its `request_accepted`: `create`
    /// has said that already, from the API's answer.
    Provisioned { incarnation: i32 },
    /// An action accepted while the tenant was `from`: until an event after it shows
    /// `target`, or shows `failed` (or `decommissioned`, when that is not the target) after
    /// the tenant moved away from `from`.
    Action { from: String, target: &'static str },
    /// An email action (re-issue, resend), which changes no state: until the feed shows
    /// its `operator_email_sent` or `operator_email_failed` event, or the tenant is being
    /// decommissioned (its workflow then ends without carrying the action out).
    ///
    /// The workflow takes one action at a time, but accepts the next while the current one
    /// runs; so should two operators ask at once, the first outcome after the request is
    /// taken as this one's. The events do not say which request they answer.
    OperatorEmail,
}

/// The audit event kinds that end an email action.
pub(super) const OPERATOR_EMAIL_SENT: &str = "operator_email_sent";
pub(super) const OPERATOR_EMAIL_FAILED: &str = "operator_email_failed";

/// How a follow ended.
pub(super) enum Followed {
    /// The goal's stable state was reached (`reached` says whether it was the one wanted);
    /// the tenant as it was read then.
    Settled {
        reached: bool,
        state: String,
        raw: serde_json::Value,
        detail: Box<TenantDetail>,
        /// The event that settled it, when one did.
        event: Option<Box<EventView>>,
    },
    TimedOut,
    /// The user pressed ctrl-c.
    Interrupted,
}

/// Decides, event by event, whether the goal is met.
struct Tracker {
    goal: Goal,
    moved: bool,
}

/// What one event means for the goal.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Continue,
    /// Read the stored tenant: it may have settled.
    CheckStored,
    /// Settled in this state; true when it is the state wanted.
    Settled(bool, String),
}

impl Tracker {
    fn new(goal: Goal) -> Self {
        Self { goal, moved: false }
    }

    fn shows(&self, event: &EventView) -> bool {
        match &self.goal {
            Goal::Provisioned { incarnation } => {
                event.incarnation == *incarnation && event.kind != "request_accepted"
            }
            Goal::Action { .. } | Goal::OperatorEmail => true,
        }
    }

    fn observe(&mut self, event: &EventView) -> Verdict {
        let state = event.state.as_deref();
        match (&self.goal, state) {
            // Decided by the event's kind; these events carry the state the tenant stays in.
            (Goal::OperatorEmail, _) => {
                let state = state.unwrap_or_default().to_owned();
                match event.kind.as_str() {
                    OPERATOR_EMAIL_SENT => Verdict::Settled(true, state),
                    OPERATOR_EMAIL_FAILED => Verdict::Settled(false, state),
                    _ if matches!(state.as_str(), "decommissioning" | "decommissioned") => {
                        Verdict::Settled(false, state)
                    }
                    _ => Verdict::Continue,
                }
            }
            (_, None) => Verdict::Continue,
            (Goal::Provisioned { incarnation }, Some(state)) => {
                if event.incarnation == *incarnation && !in_flight(state) {
                    Verdict::CheckStored
                } else {
                    Verdict::Continue
                }
            }
            (Goal::Action { from, target }, Some(state)) => {
                self.moved |= state != from;
                if state == *target {
                    Verdict::Settled(true, state.to_owned())
                } else if self.moved && (state == "failed" || state == "decommissioned") {
                    Verdict::Settled(false, state.to_owned())
                } else {
                    Verdict::Continue
                }
            }
        }
    }

    /// For [`Goal::Provisioned`]: whether the stored tenant has settled, and how.
    fn stored(&self, detail: &TenantDetail) -> Option<bool> {
        match &self.goal {
            Goal::Provisioned { .. } if !in_flight(&detail.tenant.state) => {
                Some(provisioned(&detail.tenant.state))
            }
            _ => None,
        }
    }
}

/// Whether a tenant that has settled in `state` counts as provisioned: it exists and can
/// serve (a suspended tenant serves again once resumed).
pub(super) fn provisioned(state: &str) -> bool {
    matches!(state, "active" | "suspended")
}

/// States the saga passes through on its way to a stable one.
fn in_flight(state: &str) -> bool {
    matches!(state, "provisioning" | "compensating" | "decommissioning")
}

/// Where events come from: the live feed, or polling once it failed.
enum Source {
    Live(EventStream),
    Polling { warned: bool },
}

/// Shows the feed after event `after` until `goal` is met, `deadline` passes or the user
/// presses ctrl-c.
pub(super) async fn follow(
    client: &ApiClient,
    org: &str,
    slug: &str,
    after: i64,
    goal: Goal,
    deadline: Instant,
) -> Result<Followed, ClientError> {
    let mut progress = Progress::new();
    let followed = tokio::select! {
        followed = follow_feed(client, org, slug, after, goal, deadline, &mut progress) => followed,
        // Without a handler (it could not be installed) ctrl-c ends the process as usual.
        Ok(()) = tokio::signal::ctrl_c() => Ok(Followed::Interrupted),
    };
    // The spinner goes before the caller prints its summary.
    drop(progress);
    followed
}

async fn follow_feed(
    client: &ApiClient,
    org: &str,
    slug: &str,
    after: i64,
    goal: Goal,
    deadline: Instant,
    progress: &mut Progress,
) -> Result<Followed, ClientError> {
    let mut tracker = Tracker::new(goal);
    let mut last = after;
    let mut source = open(client, org, slug, last, None, progress).await;
    let mut live_failures = 0;

    loop {
        let batch = match &mut source {
            Source::Live(stream) => match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => return Ok(Followed::TimedOut),
                Ok(Ok(Some(event))) => vec![event],
                Ok(result) => {
                    let reason = match result {
                        Err(err) => format!("the live feed broke ({err})"),
                        _ => "the live feed ended".to_owned(),
                    };
                    live_failures += 1;
                    source = if live_failures < 2 {
                        open(client, org, slug, last, Some(&reason), progress).await
                    } else {
                        progress.note(&format!("… {reason} again; polling instead"));
                        Source::Polling { warned: false }
                    };
                    continue;
                }
            },
            Source::Polling { warned } => {
                if Instant::now() >= deadline {
                    return Ok(Followed::TimedOut);
                }
                tokio::time::sleep_until((Instant::now() + POLL_INTERVAL).min(deadline)).await;
                match client.events(org, slug, last, POLL_PAGE).await {
                    Ok(events) => {
                        *warned = false;
                        events
                    }
                    Err(err) if err.is_transient() => {
                        if !*warned {
                            progress.note(&format!("… {err}; still trying"));
                            *warned = true;
                        }
                        continue;
                    }
                    Err(err) => return Err(err),
                }
            }
        };

        let polling = matches!(source, Source::Polling { .. });
        let mut check = polling;
        for event in &batch {
            last = last.max(event.id);
            if tracker.shows(event) {
                progress.event(event);
            }
            match tracker.observe(event) {
                Verdict::Continue => {}
                Verdict::CheckStored => check = true,
                Verdict::Settled(reached, state) => {
                    let (raw, detail) = client.tenant(org, slug, false).await?;
                    return Ok(Followed::Settled {
                        reached,
                        state,
                        raw,
                        detail: Box::new(detail),
                        event: Some(Box::new(event.clone())),
                    });
                }
            }
        }
        if check && let Some(settled) = check_stored(client, org, slug, &tracker).await? {
            // Events committed with the final state may not have been read yet.
            if polling {
                let _ = print_backlog(client, org, slug, &mut last, &tracker, progress).await;
            }
            return Ok(settled);
        }
        if Instant::now() >= deadline {
            return Ok(Followed::TimedOut);
        }
    }
}

/// Opens the live feed, or falls back to polling (saying why on stderr).
async fn open(
    client: &ApiClient,
    org: &str,
    slug: &str,
    after: i64,
    reconnecting_because: Option<&str>,
    progress: &Progress,
) -> Source {
    match client.event_stream(org, slug, after).await {
        Ok(stream) => Source::Live(stream),
        Err(err) => {
            progress.note(&match reconnecting_because {
                Some(reason) => format!("… {reason} and could not be reopened ({err}); polling"),
                None => format!("… live feed unavailable ({err}); polling"),
            });
            Source::Polling { warned: false }
        }
    }
}

/// For [`Goal::Provisioned`]: the stored tenant when it has settled.
async fn check_stored(
    client: &ApiClient,
    org: &str,
    slug: &str,
    tracker: &Tracker,
) -> Result<Option<Followed>, ClientError> {
    if !matches!(tracker.goal, Goal::Provisioned { .. }) {
        return Ok(None);
    }
    let (raw, detail) = match client.tenant(org, slug, false).await {
        Ok(answer) => answer,
        Err(err) if err.is_transient() => return Ok(None),
        Err(err) => return Err(err),
    };
    Ok(tracker.stored(&detail).map(|reached| Followed::Settled {
        reached,
        state: detail.tenant.state.clone(),
        raw,
        detail: Box::new(detail),
        event: None,
    }))
}

/// Prints, without waiting, every event after `last` that the goal shows.
async fn print_backlog(
    client: &ApiClient,
    org: &str,
    slug: &str,
    last: &mut i64,
    tracker: &Tracker,
    progress: &mut Progress,
) -> Result<(), ClientError> {
    loop {
        let events = client.events(org, slug, *last, POLL_PAGE).await?;
        for event in &events {
            *last = event.id;
            if tracker.shows(event) {
                progress.event(event);
            }
        }
        if events.len() < POLL_PAGE as usize {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::output::test_event;
    use super::*;

    fn event(state: &str) -> EventView {
        let mut event = test_event("state_changed", None, None, "");
        event.state = Some(state.into());
        event
    }

    fn action(from: &str, target: &'static str) -> Tracker {
        Tracker::new(Goal::Action {
            from: from.into(),
            target,
        })
    }

    #[test]
    fn a_retry_ignores_the_failed_state_it_starts_from() {
        let mut retry = action("failed", "active");
        assert_eq!(retry.observe(&event("failed")), Verdict::Continue);
        assert_eq!(retry.observe(&event("provisioning")), Verdict::Continue);
        assert_eq!(
            retry.observe(&event("failed")),
            Verdict::Settled(false, "failed".into())
        );
        let mut retry = action("failed", "active");
        retry.observe(&event("provisioning"));
        assert_eq!(
            retry.observe(&event("active")),
            Verdict::Settled(true, "active".into())
        );
    }

    #[test]
    fn actions_settle_at_their_target() {
        let mut suspend = action("active", "suspended");
        assert_eq!(suspend.observe(&event("active")), Verdict::Continue);
        assert_eq!(
            suspend.observe(&event("suspended")),
            Verdict::Settled(true, "suspended".into())
        );
        let mut decommission = action("provisioning", "decommissioned");
        assert_eq!(decommission.observe(&event("active")), Verdict::Continue);
        assert_eq!(
            decommission.observe(&event("decommissioning")),
            Verdict::Continue
        );
        assert_eq!(
            decommission.observe(&event("decommissioned")),
            Verdict::Settled(true, "decommissioned".into())
        );
    }

    #[test]
    fn email_actions_settle_at_their_operator_event() {
        let mut resend = Tracker::new(Goal::OperatorEmail);
        assert_eq!(resend.observe(&event("active")), Verdict::Continue);
        let mut sent = event("active");
        sent.kind = OPERATOR_EMAIL_SENT.into();
        assert_eq!(
            resend.observe(&sent),
            Verdict::Settled(true, "active".into())
        );
        let mut failed = event("suspended");
        failed.kind = OPERATOR_EMAIL_FAILED.into();
        assert_eq!(
            resend.observe(&failed),
            Verdict::Settled(false, "suspended".into())
        );
        // Decommission jumps the queue; the email action is then never carried out.
        assert_eq!(
            resend.observe(&event("decommissioning")),
            Verdict::Settled(false, "decommissioning".into())
        );
    }

    #[test]
    fn create_checks_the_stored_state_once_an_event_leaves_provisioning() {
        let mut create = Tracker::new(Goal::Provisioned { incarnation: 1 });
        assert_eq!(create.observe(&event("provisioning")), Verdict::Continue);
        assert_eq!(create.observe(&event("compensating")), Verdict::Continue);
        assert_eq!(create.observe(&event("failed")), Verdict::CheckStored);
        let mut other = event("active");
        other.incarnation = 2;
        assert_eq!(create.observe(&other), Verdict::Continue);
        assert!(!create.shows(&other));
    }

    #[test]
    fn create_shows_the_request_accepted_once() {
        let create = Tracker::new(Goal::Provisioned { incarnation: 1 });
        let mut accepted = event("provisioning");
        accepted.kind = "request_accepted".into();
        assert!(
            !create.shows(&accepted),
            "create prints its own acceptance line"
        );
        assert!(create.shows(&event("provisioning")));
        // A retry's feed is not create's: its lines all show.
        assert!(action("failed", "active").shows(&accepted));
    }
}
