//! A tenant's audit feed: `GET /api/v1/organizations/{org_id}/tenants/{slug}/events`.
//!
//! Without `Accept: text/event-stream` it answers one JSON page (`after`, `limit`). With it,
//! the answer is a Server-Sent Events stream that never ends on its own: first every event
//! after the resume point (`Last-Event-ID`, else `after`), then each new event as it commits.
//! Every SSE event carries `id: <audit id>`, `event: <kind>` and the event as JSON `data`.
//!
//! Why no event is ever skipped: the store assigns ids in commit order per tenant (appends
//! take a per-tenant lock), so "everything with an id above the last one sent" is exact,
//! and a stream only ever reads that. PostgreSQL `NOTIFY tenant_events` (payload: the tenant
//! id) only wakes streams up to read again; a lost or spurious wake-up costs a query, never
//! an event. One [`EventHub`] per API process holds the single `LISTEN` connection and fans
//! wake-ups out to the streams, so open streams cost no database connection of their own.
//!
//! This module only reads the feed; it must never write to it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tenant_store::{AuditEvent, EVENTS_CHANNEL, Store};
use tokio::sync::{OnceCell, broadcast};
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::tenants::{EventParams, EventView, MAX_EVENTS_PAGE, find_tenant, parse_limit};
use super::{Access, ApiError, ApiPath, ApiQuery, AppState, Caller, authorize};

/// Media type of the live feed.
pub const EVENT_STREAM: &str = "text/event-stream";
/// Events a stream reads from the database at once while catching up.
const CATCH_UP_PAGE: i64 = 500;
/// Wake-ups a slow stream may fall behind before it is told it lagged (it then re-reads,
/// which is all a wake-up asks for anyway).
const WAKE_BUFFER: usize = 1024;
/// Pause before the hub tries its `LISTEN` connection again after an error.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// `GET …/tenants/{slug}/events?after=&limit=`: any role in the organisation may read.
#[tracing::instrument(name = "tenants_events", skip_all, fields(org = %org_id, slug = %slug, caller = %caller.name, stream))]
pub async fn tenants_events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, slug)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<EventParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, &org_id, Access::Read).await?;
    let streaming = wants_event_stream(&headers);
    tracing::Span::current().record("stream", streaming);
    let after = match params.after.as_deref() {
        None | Some("") => 0,
        Some(a) => parse_event_id(a).ok_or_else(|| {
            ApiError::field(
                "after",
                "invalid",
                "after must be the id of an event (a number >= 0)",
            )
        })?,
    };
    let limit = parse_limit(params.limit.as_deref(), 100, MAX_EVENTS_PAGE)?;
    let row = find_tenant(&state, &org_id, &slug).await?;

    if !streaming {
        let events = state
            .store()
            .events(row.id, after, i64::from(limit))
            .await?;
        return Ok(
            Json(events.into_iter().map(EventView::from).collect::<Vec<_>>()).into_response(),
        );
    }

    // A reconnecting EventSource repeats the original URL (with its `after`) and adds the
    // id it saw last: that one is where to resume.
    let after = match headers.get("last-event-id") {
        None => after,
        Some(value) => value
            .to_str()
            .ok()
            .map(str::trim)
            .and_then(|v| {
                if v.is_empty() {
                    Some(after)
                } else {
                    parse_event_id(v)
                }
            })
            .ok_or_else(|| {
                ApiError::field(
                    "Last-Event-ID",
                    "invalid",
                    "Last-Event-ID must be the id of an event (a number >= 0)",
                )
            })?,
    };
    // Subscribe before reading the backlog, so an event committed in between still wakes us.
    let wakes = state
        .events()
        .subscribe()
        .await
        .map_err(|err| ApiError::Unavailable {
            detail: "the live feed is unavailable; read the feed as JSON, or retry".into(),
            cause: format!("listening for audit events: {err}"),
        })?;
    tracing::debug!(tenant = %row.id, after, "live feed opened");
    let feed = LiveFeed {
        store: state.store().clone(),
        tenant_id: row.id,
        last_sent: after,
        pending: VecDeque::new(),
        wakes,
    };
    let mut response = Sse::new(feed.into_stream())
        .keep_alive(KeepAlive::new().interval(state.config().events_keep_alive))
        .into_response();
    // Proxies that buffer responses would hold events back until the stream ends.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// True when the client asked for the live feed. A client that accepts both JSON and the
/// event stream (`*/*`) gets JSON: the stream must be asked for by name.
pub fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| range.split(';').next())
        .any(|essence| essence.trim().eq_ignore_ascii_case(EVENT_STREAM))
}

fn parse_event_id(raw: &str) -> Option<i64> {
    raw.trim().parse::<i64>().ok().filter(|id| *id >= 0)
}

/// One client's stream: what it has sent, what it read but not yet sent, and its wake-ups.
/// Dropped (with its subscription) as soon as the client goes away.
struct LiveFeed {
    store: Store,
    tenant_id: Uuid,
    last_sent: i64,
    pending: VecDeque<AuditEvent>,
    wakes: Subscription,
}

impl LiveFeed {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut feed| async move {
            let event = feed.next().await?;
            Some((Ok(sse_event(event)), feed))
        })
    }

    /// The next event after the last one sent; waits for one to commit. `None` ends the
    /// stream (the database failed, or the hub stopped): the client resumes from its last id.
    async fn next(&mut self) -> Option<AuditEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last_sent = event.id;
                return Some(event);
            }
            match self
                .store
                .events(self.tenant_id, self.last_sent, CATCH_UP_PAGE)
                .await
            {
                Ok(events) if !events.is_empty() => {
                    self.pending.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(tenant = %self.tenant_id, error = %err, "reading the audit feed failed; ending the live feed");
                    return None;
                }
            }
            // Caught up: sleep until an event of this tenant (or maybe of it) commits.
            loop {
                match self.wakes.receiver.recv().await {
                    Ok(Wake::Tenant(id)) if id != self.tenant_id => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    }
}

fn sse_event(event: AuditEvent) -> Event {
    let id = event.id.to_string();
    let kind = event.kind.clone();
    let view = EventView::from(event);
    let data = serde_json::to_string(&view).unwrap_or_else(|_| "{}".into());
    // Kinds are snake_case words written by the saga; a line break would break the framing.
    let kind = if kind.contains(['\n', '\r']) {
        "audit".to_owned()
    } else {
        kind
    };
    Event::default().id(id).event(kind).data(data)
}

/// What the hub tells the streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// An event of this tenant committed.
    Tenant(Uuid),
    /// Notifications may have been lost (the `LISTEN` connection was re-established): every
    /// stream should read again.
    All,
}

/// The process's one `LISTEN tenant_events` connection, fanning wake-ups out to streams.
/// Started by the first stream; stopped when the last [`AppState`] is dropped.
pub struct EventHub {
    pool: PgPool,
    running: OnceCell<RunningHub>,
    streams: Arc<AtomicUsize>,
}

struct RunningHub {
    wakes: broadcast::Sender<Wake>,
    relay: AbortHandle,
}

/// A stream's place in the hub; counts the open streams while it lives.
struct Subscription {
    receiver: broadcast::Receiver<Wake>,
    streams: Arc<AtomicUsize>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventHub {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            running: OnceCell::new(),
            streams: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Live streams open right now.
    pub fn open_streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// Subscribes to wake-ups; the `LISTEN` is in place when this returns.
    async fn subscribe(&self) -> Result<Subscription, sqlx::Error> {
        let hub = self.running.get_or_try_init(|| self.start()).await?;
        self.streams.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            receiver: hub.wakes.subscribe(),
            streams: self.streams.clone(),
        })
    }

    async fn start(&self) -> Result<RunningHub, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(EVENTS_CHANNEL).await?;
        let (wakes, _) = broadcast::channel(WAKE_BUFFER);
        let relay = tokio::spawn(relay(listener, wakes.clone()));
        tracing::info!(channel = EVENTS_CHANNEL, "listening for audit events");
        Ok(RunningHub {
            wakes,
            relay: relay.abort_handle(),
        })
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        if let Some(hub) = self.running.get() {
            hub.relay.abort();
        }
    }
}

/// Turns notifications into wake-ups until aborted. When the connection was lost, every
/// stream is woken once it is back, because notifications sent meanwhile are gone.
async fn relay(mut listener: PgListener, wakes: broadcast::Sender<Wake>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let wake = notification
                    .payload()
                    .parse::<Uuid>()
                    .map(Wake::Tenant)
                    .unwrap_or(Wake::All);
                // No receivers is fine: no stream is open.
                let _ = wakes.send(wake);
            }
            Ok(None) => {
                tracing::warn!("the audit events connection was lost and re-established");
                let _ = wakes.send(Wake::All);
            }
            Err(err) => {
                tracing::warn!(error = %err, "listening for audit events failed; retrying");
                tokio::time::sleep(RELISTEN_AFTER).await;
                // Any statement reconnects and re-issues LISTEN; only then is waking useful.
                if sqlx::query("SELECT 1").execute(&mut listener).await.is_ok() {
                    let _ = wakes.send(Wake::All);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_event_stream_accept_streams() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, value.parse().unwrap());
            wants_event_stream(&headers)
        };
        assert!(accept("text/event-stream"));
        assert!(accept("application/json, Text/Event-Stream; q=0.9"));
        assert!(!accept("*/*"));
        assert!(!accept("application/json"));
        assert!(!wants_event_stream(&HeaderMap::new()));
    }

    #[test]
    fn event_ids_are_non_negative_numbers() {
        assert_eq!(parse_event_id("42"), Some(42));
        assert_eq!(parse_event_id(" 0 "), Some(0));
        assert_eq!(parse_event_id("-1"), None);
        assert_eq!(parse_event_id("x"), None);
    }
}
