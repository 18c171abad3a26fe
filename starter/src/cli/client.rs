//! The CLI's HTTP client for the API. Turns problem+json answers into [`ClientError::Problem`]
//! so every command reports refusals the same way. The token is sent only in the
//! Authorization header and never formatted into an error.

use percent_encoding::utf8_percent_encode;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use tenant_domain::{EmailKind, LifecycleAction};

use crate::api::Problem;
use crate::api::events::EVENT_STREAM;
use crate::api::tenants::{
    ActionAnswer, CreateTenantBody, EventView, PATH_SEGMENT, TenantDetail, TenantPage,
    TenantResource,
};

/// Why a call to the API did not give the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused or failed and said why.
    #[error("{}", .0.detail)]
    Problem(Problem),
    #[error("cannot reach the API at {url}: {}", transport_reason(.source))]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("unexpected answer from the API ({status}): {body}")]
    Unexpected { status: StatusCode, body: String },
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// True for failures worth retrying while following a saga (network, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Problem(p) => p.status >= 500,
            Self::Unexpected { status, .. } => status.is_server_error(),
            Self::Config(_) => false,
        }
    }
}

/// The innermost cause of a transport failure (`Connection refused (os error 111)`), which
/// reqwest's own message (`error sending request for url …`) leaves out, and what to check.
fn transport_reason(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if err.is_connect() {
        format!("{cause}; is the API running there? (--api-url or TP_API_URL)")
    } else {
        cause.to_string()
    }
}

/// A client of one API, acting with one token.
pub struct ApiClient {
    http: reqwest::Client,
    /// For live feeds: no overall deadline, only one between reads (keep-alives arrive
    /// every 15 s, so a longer silence means the connection is gone).
    streaming: reqwest::Client,
    base: String,
    token: String,
}

/// Longest silence tolerated on a live feed before it counts as broken.
const STREAM_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl ApiClient {
    pub fn new(base: &str, token: String) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "the API URL {base:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("tenants-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build an HTTP client: {e}")))?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(STREAM_READ_TIMEOUT)
            .user_agent(concat!("tenants-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            streaming,
            base,
            token,
        })
    }

    fn tenants_url(&self, org: &str) -> String {
        format!(
            "{}/api/v1/organizations/{}/tenants",
            self.base,
            utf8_percent_encode(org, PATH_SEGMENT)
        )
    }

    fn tenant_url(&self, org: &str, slug: &str) -> String {
        format!(
            "{}/{}",
            self.tenants_url(org),
            utf8_percent_encode(slug, PATH_SEGMENT)
        )
    }

    /// `POST .../tenants`; the status tells a new tenant (202) from a repeat (200).
    pub async fn create_tenant(
        &self,
        org: &str,
        body: &CreateTenantBody,
    ) -> Result<(StatusCode, serde_json::Value, TenantResource), ClientError> {
        let url = self.tenants_url(org);
        let (status, raw) = self.send(&url, self.http.post(&url).json(body)).await?;
        let resource = decode(status, &raw)?;
        Ok((status, raw, resource))
    }

    /// One tenant; `live` also asks the workflow for its view (slower, and not needed by
    /// a poller that only waits for the stored state to settle).
    pub async fn tenant(
        &self,
        org: &str,
        slug: &str,
        live: bool,
    ) -> Result<(serde_json::Value, TenantDetail), ClientError> {
        let url = self.tenant_url(org, slug);
        let request = self.http.get(&url).query(&[("live", live.to_string())]);
        let (status, raw) = self.send(&url, request).await?;
        let detail = decode(status, &raw)?;
        Ok((raw, detail))
    }

    pub async fn tenants(
        &self,
        org: &str,
        state: Option<&str>,
        after: Option<&str>,
    ) -> Result<(serde_json::Value, TenantPage), ClientError> {
        let url = self.tenants_url(org);
        let mut query: Vec<(&str, &str)> = vec![("limit", "100")];
        query.extend(state.map(|s| ("state", s)));
        query.extend(after.map(|a| ("after", a)));
        let (status, raw) = self.send(&url, self.http.get(&url).query(&query)).await?;
        let page = decode(status, &raw)?;
        Ok((raw, page))
    }

    pub async fn events(
        &self,
        org: &str,
        slug: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventView>, ClientError> {
        let url = format!("{}/events", self.tenant_url(org, slug));
        let request = self
            .http
            .get(&url)
            .query(&[("after", after.to_string()), ("limit", limit.to_string())]);
        let (status, raw) = self.send(&url, request).await?;
        decode(status, &raw)
    }

    /// The id of the newest event in the tenant's feed (0 when it is empty).
    pub async fn last_event_id(&self, org: &str, slug: &str) -> Result<i64, ClientError> {
        const PAGE: u32 = 1000;
        let mut last = 0;
        loop {
            let page = self.events(org, slug, last, PAGE).await?;
            if let Some(event) = page.last() {
                last = event.id;
            }
            if page.len() < PAGE as usize {
                return Ok(last);
            }
        }
    }

    /// `POST .../tenants/{slug}/<action>`: the workflow's answer when it accepted the action.
    /// `email` names the email of a `resend_email`.
    pub async fn lifecycle(
        &self,
        org: &str,
        slug: &str,
        action: LifecycleAction,
        email: Option<EmailKind>,
    ) -> Result<(serde_json::Value, ActionAnswer), ClientError> {
        let url = format!(
            "{}/{}",
            self.tenant_url(org, slug),
            action_path(action, email)?
        );
        let (status, raw) = self.send(&url, self.http.post(&url)).await?;
        let answer = decode(status, &raw)?;
        Ok((raw, answer))
    }

    /// Opens the tenant's live audit feed (Server-Sent Events) after event `after`.
    pub async fn event_stream(
        &self,
        org: &str,
        slug: &str,
        after: i64,
    ) -> Result<EventStream, ClientError> {
        let url = format!("{}/events", self.tenant_url(org, slug));
        let transport = |source| ClientError::Transport {
            url: url.clone(),
            source,
        };
        let response = self
            .streaming
            .get(&url)
            .query(&[("after", after.to_string())])
            .header(reqwest::header::ACCEPT, EVENT_STREAM)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !status.is_success() || !content_type.starts_with(EVENT_STREAM) {
            let text = response.text().await.map_err(transport)?;
            return Err(
                match serde_json::from_str::<Problem>(&text)
                    .ok()
                    .filter(|_| !status.is_success())
                {
                    Some(problem) => ClientError::Problem(problem),
                    None => ClientError::Unexpected {
                        status,
                        body: shorten(&text),
                    },
                },
            );
        }
        Ok(EventStream {
            url,
            response,
            buffer: Vec::new(),
        })
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, serde_json::Value), ClientError> {
        let transport = |source| ClientError::Transport {
            url: url.to_owned(),
            source,
        };
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        let value: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        if !status.is_success() {
            return Err(
                match value.and_then(|v| serde_json::from_value::<Problem>(v).ok()) {
                    Some(problem) => ClientError::Problem(problem),
                    None => ClientError::Unexpected {
                        status,
                        body: shorten(&text),
                    },
                },
            );
        }
        match value {
            Some(value) => Ok((status, value)),
            None => Err(ClientError::Unexpected {
                status,
                body: shorten(&text),
            }),
        }
    }
}

/// The path of an action below the tenant's URL.
fn action_path(action: LifecycleAction, email: Option<EmailKind>) -> Result<String, ClientError> {
    Ok(match (action, email) {
        (LifecycleAction::ReissueInvitation, None) => "invitation/reissue".to_owned(),
        (LifecycleAction::ResendEmail, Some(kind)) => format!("emails/{}/resend", kind.as_str()),
        (LifecycleAction::ResendEmail, None) => {
            return Err(ClientError::Config("resend needs the email to send".into()));
        }
        (action, None) => action.as_str().to_owned(),
        (action, Some(_)) => {
            return Err(ClientError::Config(format!(
                "{} takes no email",
                action.as_str()
            )));
        }
    })
}

fn decode<T: DeserializeOwned>(
    status: StatusCode,
    raw: &serde_json::Value,
) -> Result<T, ClientError> {
    serde_json::from_value(raw.clone()).map_err(|e| ClientError::Unexpected {
        status,
        body: format!("a body this CLI cannot read ({e})"),
    })
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A live audit feed being read: Server-Sent Events, one [`EventView`] each.
pub struct EventStream {
    url: String,
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event, waiting for it to happen; `Ok(None)` when the server ended the feed.
    /// Keep-alive comments are skipped.
    pub async fn next(&mut self) -> Result<Option<EventView>, ClientError> {
        loop {
            while let Some(block) = take_block(&mut self.buffer) {
                if let Some(event) = parse_block(&block, &self.url)? {
                    return Ok(Some(event));
                }
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => {
                    // SSE allows CR LF line ends; the JSON payloads never hold a raw CR.
                    self.buffer.extend(bytes.iter().filter(|b| **b != b'\r'));
                }
                Ok(None) => return Ok(None),
                Err(source) => {
                    return Err(ClientError::Transport {
                        url: self.url.clone(),
                        source,
                    });
                }
            }
        }
    }
}

/// Removes and returns the first complete event block (up to a blank line), if any.
fn take_block(buffer: &mut Vec<u8>) -> Option<String> {
    let end = buffer.windows(2).position(|w| w == b"\n\n")?;
    let block: Vec<u8> = buffer.drain(..end + 2).collect();
    Some(String::from_utf8_lossy(&block[..end]).into_owned())
}

/// Reads one event block: its `data` lines, joined, are the event's JSON. A block without
/// data (a keep-alive comment, a `retry:` hint) gives `None`.
fn parse_block(block: &str, url: &str) -> Result<Option<EventView>, ClientError> {
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if data.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&data.join("\n"))
        .map(Some)
        .map_err(|e| ClientError::Unexpected {
            status: StatusCode::OK,
            body: format!("an event from {url} this CLI cannot read ({e})"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_api_is_named_with_the_real_reason() {
        // A port nothing listens on: bound, then closed again.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = ApiClient::new(&format!("http://127.0.0.1:{port}"), "t".into()).unwrap();
        let err = client.last_event_id("acme", "prod").await.unwrap_err();
        assert!(err.is_transient());
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot reach the API at http://127.0.0.1:{port}/")),
            "{text}"
        );
        assert!(text.contains("refused"), "{text}");
        assert!(text.contains("TP_API_URL"), "{text}");
        assert!(!text.contains("error sending request"), "{text}");
    }

    #[test]
    fn actions_have_their_paths() {
        assert_eq!(
            action_path(LifecycleAction::Suspend, None).unwrap(),
            "suspend"
        );
        assert_eq!(
            action_path(LifecycleAction::ReissueInvitation, None).unwrap(),
            "invitation/reissue"
        );
        assert_eq!(
            action_path(LifecycleAction::ResendEmail, Some(EmailKind::ConsoleUrl)).unwrap(),
            "emails/console_url/resend"
        );
        assert!(action_path(LifecycleAction::ResendEmail, None).is_err());
        assert!(action_path(LifecycleAction::Retry, Some(EmailKind::Welcome)).is_err());
    }

    #[test]
    fn event_blocks_are_split_at_blank_lines() {
        let mut buffer =
            b": keep-alive\n\nid: 7\nevent: phase_started\ndata: {\"a\":1}\n\nid: 8".to_vec();
        assert_eq!(take_block(&mut buffer).as_deref(), Some(": keep-alive"));
        assert_eq!(
            take_block(&mut buffer).as_deref(),
            Some("id: 7\nevent: phase_started\ndata: {\"a\":1}")
        );
        assert_eq!(take_block(&mut buffer), None);
        assert_eq!(buffer, b"id: 8");
    }

    #[test]
    fn blocks_without_data_are_skipped() {
        assert!(parse_block(": keep-alive", "u").unwrap().is_none());
        let event = r#"{"id":7,"incarnation":1,"run_id":"r","kind":"phase_started","phase":"deploy","attempt":1,"state":"provisioning","actor":"saga","message":"m","detail":null,"at":"2026-01-01T00:00:00Z"}"#;
        let parsed = parse_block(&format!("id: 7\nevent: phase_started\ndata: {event}"), "u")
            .unwrap()
            .unwrap();
        assert_eq!(parsed.id, 7);
        assert_eq!(parsed.phase.as_deref(), Some("deploy"));
        assert!(parse_block("data: {", "u").is_err());
    }
}
