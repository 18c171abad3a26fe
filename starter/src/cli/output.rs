//! What the read commands print: tables and event lines for people, the API's JSON for
//! scripts. Only data goes to stdout.
//!
//! Every string in the human output may come from the server (tenant fields, event and error
//! messages, an SMTP server's reply), so it passes through [`printable`] first: a hostile or
//! broken server must not be able to colour, move or rewrite the operator's terminal. The
//! JSON output is exact (JSON escapes control characters itself).

use std::borrow::Cow;

use crate::api::tenants::{EventView, TenantDetail, TenantResource};

use super::{ApiClient, ClientError, OutputFormat};

/// `text` made safe to show on a terminal as one line: control characters (ESC, CR, LF,
/// tab, NUL, DEL, the C1 set) and the characters that reorder bidirectional text are
/// written as visible escapes (`\u{1b}`, `\n`, `\u{202e}`), everything else as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || reorders_text(c);
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if unsafe_char(c) => shown.extend(c.escape_unicode()),
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// The invisible marks and overrides that change the order text is displayed in, so a line
/// could show something other than what it holds.
fn reorders_text(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `eprintln!` for lines that may hold server-provided text: the line goes through
/// [`printable`].
macro_rules! eprintln_printable {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::cli::output::printable(&format!($($arg)*)))
    };
}

/// `println!` for human output that may hold server-provided text; see [`printable`].
macro_rules! println_printable {
    ($($arg:tt)*) => {
        println!("{}", $crate::cli::output::printable(&format!($($arg)*)))
    };
}

pub(super) use {eprintln_printable, println_printable};

pub(super) fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// One line per audit event, e.g. `✓ allocate_storage completed`,
/// `… deploy started (attempt 1)`, `✗ deploy attempt 2 failed: socket not ready`; the
/// event's own text is made [`printable`].
pub fn event_line(event: &EventView) -> String {
    printable(&raw_event_line(event)).into_owned()
}

fn raw_event_line(event: &EventView) -> String {
    let kind = event.kind.as_str();
    let outcome = if kind.ends_with("failed") || kind.ends_with("refused") {
        Some("failed")
    } else if kind.ends_with("completed") || kind.ends_with("succeeded") || kind.ends_with("_sent")
    {
        Some("completed")
    } else if kind.ends_with("started") {
        Some("started")
    } else {
        None
    };
    let symbol = match outcome {
        Some("failed") => "✗",
        Some("completed") => "✓",
        Some("started") => "…",
        _ => "•",
    };
    // Phase events read best as "<phase> <outcome>"; others carry their own message.
    match (kind.starts_with("phase"), event.phase.as_deref(), outcome) {
        (true, Some(phase), Some("completed")) => format!("{symbol} {phase} completed"),
        (true, Some(phase), Some("started")) => match event.attempt {
            Some(attempt) => format!("{symbol} {phase} started (attempt {attempt})"),
            None => format!("{symbol} {phase} started"),
        },
        // The saga's own failure messages name the phase; only bare reasons get a prefix.
        (true, Some(phase), Some("failed")) if !event.message.starts_with(phase) => {
            match event.attempt {
                Some(attempt) => format!(
                    "{symbol} {phase} attempt {attempt} failed: {}",
                    event.message
                ),
                None => format!("{symbol} {phase} failed: {}", event.message),
            }
        }
        _ if event.message.is_empty() => format!("{symbol} {kind}"),
        _ => format!("{symbol} {}", event.message),
    }
}

pub(super) async fn get(
    client: &ApiClient,
    org: &str,
    slug: &str,
    format: OutputFormat,
) -> Result<(), ClientError> {
    let (raw, detail) = client.tenant(org, slug, true).await?;
    match format {
        OutputFormat::Json => print_json(&raw),
        OutputFormat::Table => print_detail(&detail),
    }
    Ok(())
}

fn print_detail(detail: &TenantDetail) {
    let t = &detail.tenant;
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let mut rows: Vec<(&str, String)> = vec![
        ("tenant", format!("{}/{}", t.org, t.slug)),
        ("id", t.id.to_string()),
        ("name", t.name.clone()),
        ("state", t.state.clone()),
        ("phase", or_dash(t.phase.as_deref())),
        ("plan", t.plan.clone()),
        ("url", t.url.clone()),
        ("first admin", t.first_admin_email.clone()),
        ("incarnation", t.incarnation.to_string()),
        ("workflow", t.workflow_id.clone()),
        ("run", or_dash(t.run_id.as_deref())),
        ("temporal ui", t.links.temporal_ui.clone()),
        (
            "updated",
            t.updated_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ),
    ];
    if let Some(error) = &t.last_error {
        rows.push((
            "last error",
            error
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("-")
                .to_owned(),
        ));
    }
    if let Some(live) = &detail.live {
        let phase = live.phase.map(|p| p.as_str()).unwrap_or("-");
        rows.push((
            "live",
            format!(
                "{} (phase {phase}, heading for {})",
                live.state, live.next_stable_state
            ),
        ));
    }
    for (key, value) in rows {
        println_printable!("{key:<12} {value}");
    }
    if !detail.resources.is_empty() {
        println!("resources:");
        for r in &detail.resources {
            let released = match r.released_at {
                Some(at) => format!("released {}", at.format("%Y-%m-%d %H:%M:%S")),
                None => "live".to_owned(),
            };
            println_printable!(
                "  {:<10} {:<40} #{:<3} {released}",
                r.kind,
                r.name,
                r.incarnation
            );
        }
    }
    if !detail.emails.is_empty() {
        println!("emails:");
        for email in &detail.emails {
            let when = email
                .updated_at
                .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into());
            let error = email
                .error
                .as_deref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default();
            // The error is the SMTP server's reply: text from outside the platform.
            println_printable!(
                "  {:<11} {:<8} sends {:<3} {when}{error}",
                email.kind,
                email.status,
                email.attempts
            );
        }
    }
}

pub(super) async fn list(
    client: &ApiClient,
    org: &str,
    state: Option<&str>,
    format: OutputFormat,
) -> Result<(), ClientError> {
    let mut items: Vec<TenantResource> = Vec::new();
    let mut raw_items: Vec<serde_json::Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (raw, page) = client.tenants(org, state, after.as_deref()).await?;
        if let Some(list) = raw.get("items").and_then(|i| i.as_array()) {
            raw_items.extend(list.iter().cloned());
        }
        items.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    match format {
        // Shaped like the API's list answers (`{"items": [...]}`, as `tokens list` prints
        // them), with every page in one list.
        OutputFormat::Json => print_json(&serde_json::json!({ "items": raw_items })),
        OutputFormat::Table => print_table(
            &["SLUG", "STATE", "PHASE", "PLAN", "URL", "UPDATED"],
            items
                .iter()
                .map(|t| {
                    vec![
                        t.slug.clone(),
                        t.state.clone(),
                        t.phase.clone().unwrap_or_else(|| "-".into()),
                        t.plan.clone(),
                        t.url.clone(),
                        t.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    ]
                })
                .collect(),
        ),
    }
    Ok(())
}

pub(super) async fn events(
    client: &ApiClient,
    org: &str,
    slug: &str,
    mut after: i64,
    format: OutputFormat,
) -> Result<(), ClientError> {
    const PAGE: u32 = 1000;
    let mut all = Vec::new();
    loop {
        let page = client.events(org, slug, after, PAGE).await?;
        let full = page.len() == PAGE as usize;
        if let Some(last) = page.last() {
            after = last.id;
        }
        all.extend(page);
        if !full {
            break;
        }
    }
    match format {
        OutputFormat::Json => print_json(&serde_json::to_value(&all).unwrap_or_default()),
        OutputFormat::Table => {
            for event in &all {
                print_event(event, format);
            }
        }
    }
    Ok(())
}

/// `tenants events --follow`: the feed after `after`, then every new event as it happens,
/// until interrupted. A broken live feed is reopened from the last event printed, so
/// nothing is printed twice or skipped.
pub(super) async fn follow_events(
    client: &ApiClient,
    org: &str,
    slug: &str,
    mut after: i64,
    format: OutputFormat,
) -> Result<(), ClientError> {
    let mut failures = 0u32;
    loop {
        let mut stream = match client.event_stream(org, slug, after).await {
            Ok(stream) => stream,
            // Refusals (no such tenant, no access) will not go away by waiting.
            Err(err) if !err.is_transient() => return Err(err),
            Err(err) => {
                reconnect_pause(&mut failures, &err.to_string()).await;
                continue;
            }
        };
        loop {
            match stream.next().await {
                Ok(Some(event)) => {
                    failures = 0;
                    after = event.id;
                    print_event(&event, format);
                }
                Ok(None) => {
                    reconnect_pause(&mut failures, "the server ended the live feed").await;
                    break;
                }
                Err(err) => {
                    reconnect_pause(&mut failures, &err.to_string()).await;
                    break;
                }
            }
        }
    }
}

/// Waits before reopening a live feed, longer after each failure in a row; says why once.
async fn reconnect_pause(failures: &mut u32, why: &str) {
    if *failures == 0 {
        eprintln_printable!("… {why}; reconnecting");
    }
    *failures += 1;
    let seconds = 1u64 << (*failures - 1).min(4);
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
}

fn print_event(event: &EventView, format: OutputFormat) {
    match format {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
        }
        OutputFormat::Table => println!("{}", event_row(event)),
    }
}

/// Widest actor shown in the feed's table; longer names are cut with `…`. Wide enough for
/// `saga` and most principal names, narrow enough to keep the event line on screen.
const ACTOR_WIDTH: usize = 12;

/// One row of `tenants events`: id, time, incarnation, who acted, what happened. Rows are
/// printed as they arrive (`--follow`), so the columns have fixed widths.
fn event_row(event: &EventView) -> String {
    let actor = printable(&event.actor);
    let actor = if actor.chars().count() > ACTOR_WIDTH {
        let cut: String = actor.chars().take(ACTOR_WIDTH - 1).collect();
        format!("{cut}…")
    } else {
        actor.into_owned()
    };
    format!(
        "{:>6}  {}  #{}  {actor:<ACTOR_WIDTH$}  {}",
        event.id,
        event.at.format("%Y-%m-%d %H:%M:%S"),
        event.incarnation,
        event_line(event)
    )
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    // Escaped before measuring, so the columns line up with what is shown.
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| row.iter().map(|c| printable(c).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

/// An audit event as the feed would send it, for the CLI's unit tests.
#[cfg(test)]
pub(super) fn test_event(
    kind: &str,
    phase: Option<&str>,
    attempt: Option<i32>,
    message: &str,
) -> EventView {
    EventView {
        id: 1,
        incarnation: 1,
        run_id: "r".into(),
        kind: kind.into(),
        phase: phase.map(Into::into),
        attempt,
        state: None,
        actor: "saga".into(),
        message: message.into(),
        detail: None,
        at: chrono::Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::test_event as event;
    use super::*;

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        assert!(matches!(
            printable("plain text, ünïcode ✓"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("550 \u{1b}[31mred\u{1b}[0m\r\nrewritten\tline\0\u{7f}\u{9b}2J"),
            "550 \\u{1b}[31mred\\u{1b}[0m\\r\\nrewritten\\tline\\u{0}\\u{7f}\\u{9b}2J"
        );
        // Right-to-left override: would display `txt.exe` as `exe.txt`.
        assert_eq!(printable("a\u{202e}b\u{2066}"), "a\\u{202e}b\\u{2066}");
        // Escaping twice changes nothing: the escapes are plain text.
        let once = printable("x\u{1b}y").into_owned();
        assert_eq!(printable(&once), once);
    }

    #[test]
    fn event_output_escapes_what_the_server_sent() {
        let mut hostile = event(
            "operator_email_failed",
            None,
            None,
            "welcome refused: 550 \u{1b}]0;owned\u{7}\u{1b}[2J",
        );
        hostile.actor = "al\u{1b}[8mice".into();
        let line = event_line(&hostile);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert_eq!(
            line,
            "✗ welcome refused: 550 \\u{1b}]0;owned\\u{7}\\u{1b}[2J"
        );
        let row = event_row(&hostile);
        assert!(!row.chars().any(char::is_control), "{row:?}");
        assert!(row.contains("al\\u{1b}[8m…"), "{row}");
        let failed = event(
            "phase_failed",
            Some("deploy"),
            Some(1),
            "boom\nforged: ✓ tenant is active",
        );
        assert_eq!(
            event_line(&failed),
            "✗ deploy attempt 1 failed: boom\\nforged: ✓ tenant is active"
        );
    }

    #[test]
    fn event_rows_name_the_actor_in_a_narrow_column() {
        let mut resumed = event("resumed", None, None, "resume requested by alice");
        resumed.id = 42;
        resumed.actor = "alice".into();
        resumed.at = "2026-12-03T16:30:00Z".parse().unwrap();
        assert_eq!(
            event_row(&resumed),
            "    42  2026-12-03 16:30:00  #1  alice         • resume requested by alice"
        );
        resumed.actor = "operations-team-on-call".into();
        assert!(
            event_row(&resumed).contains("  #1  operations-…  • resume"),
            "{}",
            event_row(&resumed)
        );
        resumed.actor = "saga".into();
        assert!(event_row(&resumed).contains("  #1  saga          • resume"));
    }

    #[test]
    fn event_lines_read_like_progress() {
        assert_eq!(
            event_line(&event(
                "phase_completed",
                Some("allocate_storage"),
                Some(1),
                ""
            )),
            "✓ allocate_storage completed"
        );
        assert_eq!(
            event_line(&event("phase_started", Some("deploy"), Some(1), "")),
            "… deploy started (attempt 1)"
        );
        assert_eq!(
            event_line(&event(
                "phase_failed",
                Some("deploy"),
                Some(2),
                "socket not ready"
            )),
            "✗ deploy attempt 2 failed: socket not ready"
        );
        assert_eq!(
            event_line(&event(
                "phase_failed",
                Some("deploy"),
                Some(2),
                "deploy attempt 2 failed: socket not ready; retrying"
            )),
            "✗ deploy attempt 2 failed: socket not ready; retrying"
        );
        assert_eq!(
            event_line(&event("request_accepted", None, None, "request accepted")),
            "• request accepted"
        );
        assert_eq!(
            event_line(&event("email_failed", None, None, "welcome refused")),
            "✗ welcome refused"
        );
        assert_eq!(
            event_line(&event(
                "operator_email_sent",
                None,
                None,
                "onboarding email resent to the first admin"
            )),
            "✓ onboarding email resent to the first admin"
        );
    }
}
