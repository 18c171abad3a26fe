//! The audit feed streamed live (Server-Sent Events) from the API served on real servers
//! (see `support`): the backlog first, then events as they commit; resuming from
//! `Last-Event-ID` while events are written concurrently never skips or repeats one; a
//! stream is released when its client goes away. Events are appended through the store,
//! as the saga's activities append them.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use tenant_domain::{TenantKey, TenantRequest, validate};
use tenant_starter::api::ApiConfig;
use tenant_store::access::Role;
use tenant_store::{NewEvent, Store};
use uuid::Uuid;

use support::{SseReader, TestApp, spawn_app, spawn_app_with};

const WAIT: Duration = Duration::from_secs(10);

/// Accepts a tenant straight in the store (no saga runs here); its id.
async fn accepted_tenant(app: &TestApp, org: &str, slug: &str) -> Uuid {
    let request = validate(
        &TenantRequest {
            org: org.into(),
            slug: slug.into(),
            plan: "growth".into(),
            first_admin_email: "admin@example.com".into(),
            name: None,
        },
        &["growth"],
    )
    .unwrap();
    let names = TenantKey::new(org, slug).derive(&app.stack.domain);
    app.store
        .accept_tenant(&request, &names, "alice")
        .await
        .unwrap();
    names.tenant_id
}

/// Appends one event the way the saga's activities do.
async fn append(store: &Store, tenant_id: Uuid, key: &str) -> bool {
    store
        .append_event(&NewEvent {
            tenant_id,
            incarnation: 1,
            run_id: "run-test".into(),
            event_key: key.into(),
            kind: "phase_started".into(),
            phase: Some("deploy".into()),
            attempt: Some(1),
            state: Some("provisioning".into()),
            actor: "saga".into(),
            message: format!("event {key}"),
            detail: None,
        })
        .await
        .unwrap()
}

fn events_url(app: &TestApp, org: &str, slug: &str) -> String {
    format!("{}/events", tenant_url(app, org, slug))
}

fn tenant_url(app: &TestApp, org: &str, slug: &str) -> String {
    format!("{}/{slug}", app.tenants_url(org))
}

async fn open(
    app: &TestApp,
    url: &str,
    token: &str,
    last_event_id: Option<i64>,
) -> reqwest::Response {
    let mut request = app
        .http
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    request.send().await.unwrap()
}

async fn stored_ids(store: &Store, tenant_id: Uuid) -> Vec<i64> {
    store
        .events(tenant_id, 0, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect()
}

/// With `Accept: text/event-stream` the feed is a stream: the backlog, then each event as
/// it commits, with its id and kind on the wire. Without it, the JSON page as before.
/// Reading the stream needs a role in the organisation, like reading the JSON feed.
#[tokio::test]
async fn the_live_feed_sends_the_backlog_then_events_as_they_commit() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let member = app.member("mallory", "acme", Role::Member).await;
    let outsider = app.org("other", "bob").await;
    let tenant = accepted_tenant(&app, "acme", "prod").await;
    let url = events_url(&app, "acme", "prod");

    let response = open(&app, &url, &member, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let mut feed = SseReader::new(response);
    let accepted = feed.next_event(WAIT).await.unwrap();
    assert_eq!(accepted.event.as_deref(), Some("request_accepted"));
    let first_id: i64 = accepted.id.as_deref().unwrap().parse().unwrap();
    assert_eq!(accepted.json()["id"], first_id);
    assert_eq!(accepted.json()["actor"], "alice");

    // Nothing more yet; an event committed now arrives promptly.
    assert!(feed.next_event(Duration::from_millis(300)).await.is_err());
    assert!(append(&app.store, tenant, "live-1").await);
    let live = feed.next_event(WAIT).await.unwrap();
    assert_eq!(live.event.as_deref(), Some("phase_started"));
    assert_eq!(live.json()["message"], "event live-1");
    assert!(live.id.as_deref().unwrap().parse::<i64>().unwrap() > first_id);

    // `after` skips what the client has; JSON stays the default.
    let resumed = open(&app, &format!("{url}?after={first_id}"), &owner, None).await;
    let mut resumed = SseReader::new(resumed);
    assert_eq!(resumed.next_event(WAIT).await.unwrap().id, live.id);
    let page = app
        .get("/api/v1/organizations/acme/tenants/prod/events", &owner)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.as_array().unwrap().len(), 2);

    let bad = app
        .answer(
            app.http
                .get(&url)
                .bearer_auth(&owner)
                .header("accept", "text/event-stream")
                .header("last-event-id", "yesterday"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["errors"][0]["field"], "Last-Event-ID");
    let hidden = app
        .answer(
            app.http
                .get(&url)
                .bearer_auth(&outsider)
                .header("accept", "text/event-stream"),
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let missing = app
        .answer(
            app.http
                .get(events_url(&app, "acme", "nope"))
                .bearer_auth(&owner)
                .header("accept", "text/event-stream"),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body["type"],
        "https://tenant-provisioner.dev/problems/not-found"
    );
}

/// Several writers append to the tenant's feed (and to another tenant's) while a client
/// reads the stream, drops the connection twice and reconnects with `Last-Event-ID` (its
/// URL still saying `after=0`, as an EventSource's would). The client ends up with exactly
/// the tenant's events, in id order: none skipped, none twice.
#[tokio::test(flavor = "multi_thread")]
async fn resuming_from_last_event_id_never_skips_or_repeats_under_concurrent_writes() {
    let app = spawn_app().await;
    let owner = app.org("acme", "alice").await;
    let tenant = accepted_tenant(&app, "acme", "prod").await;
    let other = accepted_tenant(&app, "acme", "other").await;
    const PER_WRITER: usize = 60;

    let writers: Vec<_> = [(tenant, "a"), (tenant, "b"), (tenant, "c"), (other, "x")]
        .into_iter()
        .map(|(id, name)| {
            let store = app.store.clone();
            tokio::spawn(async move {
                for n in 0..PER_WRITER {
                    append(&store, id, &format!("{name}-{n}")).await;
                    if n % 7 == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect();

    let url = format!("{}?after=0", events_url(&app, "acme", "prod"));
    let expected_total = 1 + 3 * PER_WRITER;
    let mut received: Vec<i64> = Vec::new();
    let mut reconnects = 0;
    let mut feed = SseReader::new(open(&app, &url, &owner, None).await);
    while received.len() < expected_total {
        let frame = feed.next_event(WAIT).await.unwrap();
        let id: i64 = frame.id.as_deref().unwrap().parse().unwrap();
        assert_eq!(frame.json()["id"], id);
        received.push(id);
        // Drop the connection mid-stream twice, while the writers are still busy.
        if (received.len() == 25 || received.len() == 70) && reconnects < 2 {
            reconnects += 1;
            drop(feed);
            feed = SseReader::new(open(&app, &url, &owner, Some(id)).await);
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }

    assert_eq!(reconnects, 2);
    assert_eq!(received, stored_ids(&app.store, tenant).await);
    assert!(received.windows(2).all(|w| w[0] < w[1]), "{received:?}");
    // Nothing of the other tenant, and nothing more to come.
    assert!(feed.next_event(Duration::from_millis(300)).await.is_err());
}

/// An idle stream sends keep-alive comments, and the server lets go of a stream as soon
/// as its client disconnects.
#[tokio::test]
async fn a_stream_is_released_when_its_client_goes_away() {
    let config = ApiConfig {
        events_keep_alive: Duration::from_millis(200),
        ..Default::default()
    };
    let app = spawn_app_with(config, false).await;
    let owner = app.org("acme", "alice").await;
    accepted_tenant(&app, "acme", "prod").await;
    let url = events_url(&app, "acme", "prod");
    assert_eq!(app.state.events().open_streams(), 0);

    let mut feed = SseReader::new(open(&app, &url, &owner, None).await);
    feed.next_event(WAIT).await.unwrap();
    let idle = feed.next(WAIT).await.unwrap().expect("the stream is open");
    assert!(idle.data.is_none() && !idle.comments.is_empty(), "{idle:?}");
    assert_eq!(app.state.events().open_streams(), 1);
    let second = SseReader::new(open(&app, &url, &owner, None).await);
    assert_eq!(app.state.events().open_streams(), 2);

    drop(feed);
    drop(second);
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.state.events().open_streams() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} streams still open after their clients left",
            app.state.events().open_streams()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The JSON feed is unaffected.
    let page = app
        .get(
            "/api/v1/organizations/acme/tenants/prod/events?limit=1",
            &owner,
        )
        .await;
    assert_eq!(page.body.as_array().map(Vec::len), Some(1), "{}", page.body);
}
