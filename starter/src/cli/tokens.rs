//! `tenants tokens create|list|revoke`: the caller's own API tokens, over the API.
//!
//! `create` prints the new token to stdout and nothing else (so `$(tenants tokens create
//! …)` captures it), with what it is on stderr; it is the only command besides `bootstrap`
//! that ever prints a token, and it does so once. Refusals read like every other command's.
//! The token used to authenticate goes only into the Authorization header.

use clap::{Args, Subcommand};
use percent_encoding::utf8_percent_encode;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::output::{eprintln_printable, print_json, println_printable};
use super::{ClientError, Outcome, OutputFormat, report};
use crate::api::Problem;
use crate::api::tenants::PATH_SEGMENT;
use crate::api::tokens::{
    CreateTokenBody, MAX_EXPIRES_IN_DAYS, TokenCreated, TokenList, TokenRevoked, TokenView,
    check_token_request,
};

#[derive(Args)]
pub(super) struct TokensArgs {
    #[command(subcommand)]
    command: TokensCommand,

    #[command(flatten)]
    pub(super) api: super::ApiOptions,
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Issue a new token for yourself and print it once
    ///
    /// Only the token goes to stdout; store it now, it cannot be shown again.
    Create {
        /// What the token is for, e.g. ci-deploy
        #[arg(long)]
        name: String,

        /// Days until the token stops working [default: never; revoke it instead]
        #[arg(
            long,
            value_name = "DAYS",
            value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_EXPIRES_IN_DAYS))
        )]
        expires_in_days: Option<u32>,
    },
    /// List your tokens: id, name, state and dates, never the token itself
    List,
    /// Revoke a token by id, and every token created with it (operators may revoke anyone's)
    ///
    /// The token, the tokens created with it, the tokens created with those and so on are
    /// refused from then on. Revoking a revoked token succeeds and says so.
    Revoke {
        /// The token's id, as `tenants tokens list` shows it
        id: Uuid,
    },
}

pub(super) async fn tokens(
    api_url: &str,
    token: String,
    args: TokensArgs,
    format: OutputFormat,
) -> Outcome {
    let client = match TokensClient::new(api_url, token) {
        Ok(client) => client,
        Err(err) => return report(err),
    };
    let result = match args.command {
        TokensCommand::Create {
            name,
            expires_in_days,
        } => create(&client, name, expires_in_days, format).await,
        TokensCommand::List => list(&client, format).await,
        TokensCommand::Revoke { id } => revoke(&client, id, format).await,
    };
    match result {
        Ok(outcome) => outcome,
        Err(err) => report(err),
    }
}

async fn create(
    client: &TokensClient,
    name: String,
    expires_in_days: Option<u32>,
    format: OutputFormat,
) -> Result<Outcome, ClientError> {
    let body = CreateTokenBody {
        name,
        expires_in_days,
    };
    // The API's own check, so a bad name is refused before anything is sent.
    if let Err(errors) = check_token_request(&body) {
        eprintln!("error: invalid token request; nothing was sent");
        for field in errors {
            eprintln_printable!("  --{}: {}", field.field.replace('_', "-"), field.message);
        }
        return Ok(Outcome::Failure);
    }

    let (raw, created): (_, TokenCreated) = client.call(Method::POST, "", Some(&body)).await?;
    match format {
        OutputFormat::Json => print_json(&raw),
        OutputFormat::Table => {
            println!("{}", created.token);
            let expires = created
                .expires_at
                .map(|at| format!("expires {}", at.format("%Y-%m-%d %H:%M:%S UTC")))
                .unwrap_or_else(|| "never expires".to_owned());
            eprintln_printable!(
                "token {} issued (id {}, {expires}); it is shown only this once",
                created.name,
                created.id
            );
        }
    }
    Ok(Outcome::Success)
}

async fn list(client: &TokensClient, format: OutputFormat) -> Result<Outcome, ClientError> {
    let (raw, list): (_, TokenList) = client.call::<(), _>(Method::GET, "", None).await?;
    match format {
        OutputFormat::Json => print_json(&raw),
        OutputFormat::Table => print_tokens(&list.items),
    }
    Ok(Outcome::Success)
}

async fn revoke(
    client: &TokensClient,
    id: Uuid,
    format: OutputFormat,
) -> Result<Outcome, ClientError> {
    let path = format!("/{}", utf8_percent_encode(&id.to_string(), PATH_SEGMENT));
    let (raw, revoked): (_, TokenRevoked) =
        client.call::<(), _>(Method::DELETE, &path, None).await?;
    match format {
        OutputFormat::Json => print_json(&raw),
        OutputFormat::Table => println_printable!("{}", revocation_line(&revoked)),
    }
    Ok(Outcome::Success)
}

/// What a revocation did, in one line. "Tokens it created" counts the whole lineage:
/// tokens created with it, with those, and so on.
fn revocation_line(revoked: &TokenRevoked) -> String {
    let token = format!("token {} ({})", revoked.token.id, revoked.token.name);
    let descendants = match revoked.revoked_descendants {
        0 => None,
        1 => Some("1 token it created".to_owned()),
        n => Some(format!("{n} tokens it created")),
    };
    match (revoked.already_revoked, descendants) {
        (false, None) => format!("revoked {token}"),
        (false, Some(descendants)) => format!("revoked {token} and {descendants}"),
        (true, None) => format!("{token} was already revoked"),
        // Only tokens somehow left live under a revoked one, e.g. made while the lineage
        // was not yet recorded and linked later by hand.
        (true, Some(descendants)) => {
            format!("{token} was already revoked; revoked {descendants} now")
        }
    }
}

fn print_tokens(tokens: &[TokenView]) {
    let when = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map(|at| at.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "-".to_owned())
    };
    let rows: Vec<[String; 6]> = tokens
        .iter()
        .map(|t| {
            [
                t.id.to_string(),
                t.name.clone(),
                t.state.clone(),
                when(Some(t.created_at)),
                when(t.expires_at),
                when(t.revoked_at),
            ]
        })
        .collect();
    let headers = ["ID", "NAME", "STATE", "CREATED", "EXPIRES", "REVOKED"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println_printable!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The tokens endpoints of one API, called with one token.
struct TokensClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl TokensClient {
    fn new(api_url: &str, token: String) -> Result<Self, ClientError> {
        let api_url = api_url.trim_end_matches('/');
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "the API URL {api_url:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("tenants-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: format!("{api_url}/api/v1/tokens"),
            token,
        })
    }

    /// Sends a request to `/api/v1/tokens<path>`; the raw JSON answer and its decoded form.
    async fn call<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(serde_json::Value, T), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |source| ClientError::Transport {
            url: url.clone(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        let value: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let unexpected =
            |status: StatusCode, body: String| ClientError::Unexpected { status, body };
        if !status.is_success() {
            return Err(
                match value.and_then(|v| serde_json::from_value::<Problem>(v).ok()) {
                    Some(problem) => ClientError::Problem(problem),
                    None => unexpected(status, text.chars().take(200).collect()),
                },
            );
        }
        let value = value.ok_or_else(|| unexpected(status, text.chars().take(200).collect()))?;
        let decoded = serde_json::from_value(value.clone())
            .map_err(|e| unexpected(status, format!("a body this CLI cannot read ({e})")))?;
        Ok((value, decoded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_lines_say_what_was_revoked() {
        let id = Uuid::nil();
        let line = |already_revoked, revoked_descendants| {
            revocation_line(&TokenRevoked {
                token: TokenView {
                    id,
                    name: "ci".into(),
                    state: "revoked".into(),
                    created_at: chrono::Utc::now(),
                    expires_at: None,
                    revoked_at: Some(chrono::Utc::now()),
                    created_by_token: None,
                },
                already_revoked,
                revoked_descendants,
            })
        };
        assert_eq!(line(false, 0), format!("revoked token {id} (ci)"));
        assert_eq!(
            line(false, 1),
            format!("revoked token {id} (ci) and 1 token it created")
        );
        assert_eq!(
            line(false, 2),
            format!("revoked token {id} (ci) and 2 tokens it created")
        );
        assert_eq!(
            line(true, 0),
            format!("token {id} (ci) was already revoked")
        );
        assert_eq!(
            line(true, 3),
            format!("token {id} (ci) was already revoked; revoked 3 tokens it created now")
        );
    }
}
