//! The CLI's HTTP client for the API. Turns problem+json answers into [`ClientError::Problem`]
//! so every command reports refusals the same way. The token is sent only in the
//! Authorization header and never formatted into an error.

use percent_encoding::utf8_percent_encode;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::api::Problem;
use crate::api::tenants::{
    CreateTenantBody, EventView, PATH_SEGMENT, TenantDetail, TenantPage, TenantResource,
};

/// Why a call to the API did not give the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused or failed and said why.
    #[error("{}", .0.detail)]
    Problem(Problem),
    #[error("cannot reach the API at {url}: {source}")]
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

/// A client of one API, acting with one token.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

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
        Ok(Self { http, base, token })
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
