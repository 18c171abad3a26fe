//! How `create` and the lifecycle actions show a saga's progress on stderr while they
//! follow it.
//!
//! On a terminal: a line per finished phase with its outcome, and a spinner on the running
//! phase that shows, while the phase is retried, its attempt and the last error. Anywhere
//! else (a pipe, a file, CI), or with `NO_COLOR` set or `TERM=dumb`: one plain line per
//! audit event, exactly as `event_line` writes it, because scripts and tests read those
//! lines. Only stderr is written here; data stays on stdout. Everything shown passes through
//! `printable`: event messages and errors come from the server.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::output::{event_line, printable};
use crate::api::tenants::EventView;

const TICK: Duration = Duration::from_millis(120);

/// The progress display of one follow. Dropping it clears the spinner, so whatever the
/// command prints next starts on a clean line.
pub(super) struct Progress {
    live: Option<Live>,
}

struct Live {
    bar: ProgressBar,
    board: Board,
}

impl Progress {
    /// A spinner when stderr is a terminal that wants one, plain lines otherwise.
    pub(super) fn new() -> Self {
        let wanted = spinner_wanted(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        );
        if !wanted {
            return Self { live: None };
        }
        let bar = ProgressBar::new_spinner();
        // `wide_msg` cuts the text at the terminal's width: a long error never wraps.
        if let Ok(style) = ProgressStyle::with_template("{spinner} {wide_msg} {elapsed}") {
            bar.set_style(style);
        }
        let board = Board::default();
        bar.set_message(printable(&board.running_line()).into_owned());
        bar.enable_steady_tick(TICK);
        Self {
            live: Some(Live { bar, board }),
        }
    }

    /// Shows one audit event of the saga being followed.
    pub(super) fn event(&mut self, event: &EventView) {
        let Some(live) = &mut self.live else {
            eprintln!("{}", event_line(event));
            return;
        };
        let before = live.board.running_what().map(str::to_owned);
        if let Some(line) = live.board.observe(event) {
            live.bar.println(printable(&line));
        }
        // The clock on the right counts the time spent on the current step.
        if live.board.running_what() != before.as_deref() {
            live.bar.reset_elapsed();
        }
        // The running line carries the last error, the server's text.
        let running = printable(&live.board.running_line()).into_owned();
        live.bar.set_message(running);
    }

    /// A line about the follow itself (the live feed broke, polling instead); it may quote
    /// the server's error.
    pub(super) fn note(&self, line: &str) {
        let line = printable(line);
        match &self.live {
            Some(live) => live.bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(live) = &self.live {
            live.bar.finish_and_clear();
        }
    }
}

/// Whether to draw a spinner: only on a terminal, and not when the user asked for plain
/// output (`NO_COLOR` set to anything but the empty string, see no-color.org, or
/// `TERM=dumb`).
fn spinner_wanted(
    stderr_is_terminal: bool,
    no_color: Option<&OsStr>,
    term: Option<&OsStr>,
) -> bool {
    let no_color = no_color.is_some_and(|v| !v.is_empty());
    let dumb = term.is_some_and(|t| t == "dumb");
    stderr_is_terminal && !no_color && !dumb
}

/// What the terminal display shows for a sequence of audit events: the lines that stay,
/// and the text of the running line under the spinner. Pure, so it is tested on its own.
#[derive(Debug, Default)]
struct Board {
    running: Option<Running>,
    /// The tenant's state as the last event carrying one said.
    state: Option<String>,
}

/// The step the saga is on: a phase, or the release of one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Running {
    /// `deploy`, or `releasing storage`.
    what: String,
    attempt: i32,
    /// The retry policy's limit, when the failed attempt's message named it.
    of: Option<i32>,
    last_error: Option<String>,
}

impl Board {
    /// Takes the next event; returns the line to keep above the running line, if any.
    fn observe(&mut self, event: &EventView) -> Option<String> {
        if let Some(state) = &event.state {
            self.state = Some(state.clone());
        }
        let phase = event.phase.as_deref().unwrap_or("phase");
        let attempt = event.attempt.unwrap_or(1);
        match event.kind.as_str() {
            "phase_started" => {
                match &mut self.running {
                    // A retry of the running phase keeps the error that caused it.
                    Some(running) if running.what == phase => running.attempt = attempt,
                    _ => {
                        self.running = Some(Running {
                            what: phase.to_owned(),
                            attempt,
                            of: None,
                            last_error: None,
                        })
                    }
                }
                None
            }
            "phase_completed" => {
                self.running = None;
                Some(if attempt > 1 {
                    format!("✓ {phase} completed on attempt {attempt}")
                } else {
                    format!("✓ {phase} completed")
                })
            }
            "phase_failed" if event.message.contains("; retrying") => {
                self.running = Some(Running {
                    what: phase.to_owned(),
                    attempt: attempt + 1,
                    of: attempt_limit(&event.message),
                    last_error: Some(phase_error(event)),
                });
                None
            }
            "release_failed" => {
                let (what, error) = release_failure(&event.message, phase);
                self.running = Some(Running {
                    what,
                    attempt: attempt + 1,
                    of: None,
                    last_error: Some(error),
                });
                None
            }
            // The phase gave up (the line says what happens next), or a resource was
            // released: either way the step is over.
            "phase_failed" | "resource_released" => {
                self.running = None;
                Some(event_line(event))
            }
            _ => Some(event_line(event)),
        }
    }

    fn running_what(&self) -> Option<&str> {
        self.running.as_ref().map(|r| r.what.as_str())
    }

    /// The text beside the spinner, e.g. `deploy · attempt 2 of 5 · last error: …`.
    fn running_line(&self) -> String {
        let Some(running) = &self.running else {
            return match self.state.as_deref() {
                Some("compensating") => "unwinding: releasing what was allocated, newest first",
                Some("decommissioning") => "releasing everything the tenant holds",
                Some("provisioning") => "provisioning: on to the next phase",
                _ => "waiting for the saga",
            }
            .to_owned();
        };
        let mut line = running.what.clone();
        if running.attempt > 1 || running.last_error.is_some() {
            line.push_str(&format!(" · attempt {}", running.attempt));
            if let Some(of) = running.of {
                line.push_str(&format!(" of {of}"));
            }
        }
        if let Some(error) = &running.last_error {
            line.push_str(&format!(" · last error: {error}"));
        }
        line
    }
}

/// The reason a phase attempt failed: the `reason` the saga records in the event's detail,
/// else the part of its message between `failed: ` and `; retrying`.
fn phase_error(event: &EventView) -> String {
    if let Some(reason) = event
        .detail
        .as_ref()
        .and_then(|d| d.get("reason"))
        .and_then(|r| r.as_str())
    {
        return reason.to_owned();
    }
    let message = event.message.as_str();
    let rest = message
        .split_once("failed: ")
        .map_or(message, |(_, rest)| rest);
    rest.split_once("; retrying")
        .map_or(rest, |(reason, _)| reason)
        .to_owned()
}

/// `M` of the `(attempt N of M)` in a failed attempt's message.
fn attempt_limit(message: &str) -> Option<i32> {
    let (_, rest) = message.split_once("(attempt ")?;
    let (_, rest) = rest.split_once(" of ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What is being released and why its attempt failed, from the saga's message
/// `releasing storage failed (attempt 2): <error>; retrying until it succeeds: …`.
fn release_failure(message: &str, phase: &str) -> (String, String) {
    let what = message
        .split_once(" failed (attempt")
        .map(|(what, _)| what.to_owned())
        .unwrap_or_else(|| format!("releasing what {phase} allocated"));
    let rest = message.split_once("): ").map_or(message, |(_, rest)| rest);
    let error = rest
        .split_once("; retrying")
        .map_or(rest, |(error, _)| error);
    (what, error.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::output::test_event as event;
    use super::*;

    fn state(state: &str, message: &str) -> EventView {
        let mut event = event("state_changed", None, None, message);
        event.state = Some(state.into());
        event
    }

    #[test]
    fn spinner_only_on_a_terminal_that_wants_one() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert!(spinner_wanted(true, None, os("xterm-256color")));
        assert!(spinner_wanted(true, None, None));
        assert!(!spinner_wanted(false, None, os("xterm-256color")));
        assert!(!spinner_wanted(true, os("1"), os("xterm")));
        assert!(!spinner_wanted(true, None, os("dumb")));
        // An empty NO_COLOR does not count, as no-color.org says.
        assert!(spinner_wanted(true, os(""), os("xterm")));
    }

    #[test]
    fn a_phase_is_one_line_with_its_outcome() {
        let mut board = Board::default();
        assert_eq!(board.running_line(), "waiting for the saga");
        let mut round = event(
            "provisioning_started",
            None,
            None,
            "provisioning round 1 started",
        );
        round.state = Some("provisioning".into());
        assert_eq!(
            board.observe(&round).as_deref(),
            Some("… provisioning round 1 started")
        );
        assert_eq!(board.running_line(), "provisioning: on to the next phase");
        let started = event("phase_started", Some("allocate_storage"), Some(1), "");
        assert_eq!(board.observe(&started), None);
        assert_eq!(board.running_line(), "allocate_storage");
        let completed = event("phase_completed", Some("allocate_storage"), Some(1), "");
        assert_eq!(
            board.observe(&completed).as_deref(),
            Some("✓ allocate_storage completed")
        );
        assert_eq!(board.running, None);
        // Events that are not phase steps keep their line, as in plain output.
        assert_eq!(
            board
                .observe(&state(
                    "active",
                    "tenant is active: public traffic is served"
                ))
                .as_deref(),
            Some("• tenant is active: public traffic is served")
        );
    }

    #[test]
    fn a_retried_phase_shows_its_attempt_and_last_error() {
        let mut board = Board::default();
        board.observe(&event("phase_started", Some("deploy"), Some(1), ""));
        let failed = event(
            "phase_failed",
            Some("deploy"),
            Some(1),
            "deploy attempt 1 failed: socket not ready; retrying (attempt 1 of 5); the tenant \
             stays provisioning, next stable state active",
        );
        assert_eq!(
            board.observe(&failed),
            None,
            "a retry is not a line of its own"
        );
        assert_eq!(
            board.running_line(),
            "deploy · attempt 2 of 5 · last error: socket not ready"
        );
        // The next attempt starts: the error that caused it stays in view.
        let again = event(
            "phase_started",
            Some("deploy"),
            Some(2),
            "deploy started (attempt 2; attempt 1 failed or its worker was lost)",
        );
        assert_eq!(board.observe(&again), None);
        assert_eq!(
            board.running_line(),
            "deploy · attempt 2 of 5 · last error: socket not ready"
        );
        let completed = event("phase_completed", Some("deploy"), Some(2), "");
        assert_eq!(
            board.observe(&completed).as_deref(),
            Some("✓ deploy completed on attempt 2")
        );
    }

    #[test]
    fn the_recorded_reason_is_preferred_to_the_message() {
        let mut failed = event(
            "phase_failed",
            Some("verify"),
            Some(3),
            "verify attempt 3 failed: a: b; retrying",
        );
        assert_eq!(phase_error(&failed), "a: b");
        failed.detail = Some(serde_json::json!({ "error_type": "x", "reason": "the reason" }));
        assert_eq!(phase_error(&failed), "the reason");
        assert_eq!(attempt_limit(&failed.message), None);
        let mut board = Board::default();
        board.observe(&failed);
        assert_eq!(
            board.running_line(),
            "verify · attempt 4 · last error: the reason"
        );
    }

    #[test]
    fn a_phase_that_gives_up_ends_with_the_sagas_line() {
        let mut board = Board::default();
        board.observe(&event("phase_started", Some("deploy"), Some(3), ""));
        let message = "deploy attempt 3 failed: boom; giving up: the tenant unwinds what it \
                       allocated (compensating, then failed)";
        let gave_up = event("phase_failed", Some("deploy"), Some(3), message);
        assert_eq!(
            board.observe(&gave_up).as_deref(),
            Some(format!("✗ {message}").as_str())
        );
        assert_eq!(board.running, None);
    }

    #[test]
    fn compensation_shows_the_release_being_retried() {
        let mut board = Board::default();
        let mut unwinding = event(
            "compensation_started",
            Some("deploy"),
            None,
            "deploy failed; unwinding",
        );
        unwinding.state = Some("compensating".into());
        assert_eq!(
            board.observe(&unwinding).as_deref(),
            Some("… deploy failed; unwinding")
        );
        assert_eq!(
            board.running_line(),
            "unwinding: releasing what was allocated, newest first"
        );
        let failed = event(
            "release_failed",
            Some("allocate_storage"),
            Some(2),
            "releasing storage failed (attempt 2): database is in use; retrying until it \
             succeeds: the tenant stays compensating, next stable state failed",
        );
        assert_eq!(board.observe(&failed), None);
        assert_eq!(
            board.running_line(),
            "releasing storage · attempt 3 · last error: database is in use"
        );
        let released = event(
            "resource_released",
            Some("allocate_storage"),
            Some(3),
            "storage released (compensation)",
        );
        assert_eq!(
            board.observe(&released).as_deref(),
            Some("• storage released (compensation)")
        );
        assert_eq!(
            board.running_line(),
            "unwinding: releasing what was allocated, newest first"
        );
    }

    #[test]
    fn the_running_line_keeps_the_servers_error_printable() {
        let mut board = Board::default();
        board.observe(&event("phase_started", Some("deploy"), Some(1), ""));
        let mut failed = event(
            "phase_failed",
            Some("deploy"),
            Some(1),
            "deploy attempt 1 failed: x; retrying",
        );
        failed.detail = Some(serde_json::json!({ "reason": "no\u{1b}[2Kway\r" }));
        board.observe(&failed);
        assert_eq!(
            printable(&board.running_line()),
            "deploy · attempt 2 · last error: no\\u{1b}[2Kway\\r"
        );
        // Lines the board keeps are event lines, escaped already.
        let refused = event("email_failed", None, None, "welcome refused: 550 \u{1b}[5m");
        assert_eq!(
            board.observe(&refused).as_deref(),
            Some("✗ welcome refused: 550 \\u{1b}[5m")
        );
    }

    #[test]
    fn an_unexpected_release_message_still_reads() {
        assert_eq!(
            release_failure("something odd", "allocate_traffic"),
            (
                "releasing what allocate_traffic allocated".to_owned(),
                "something odd".to_owned()
            )
        );
    }
}
