//! The verify phase: checks from outside the tenant, over HTTPS with the real certificate
//! and before the public can reach it, that the tenant's host serves this tenant's
//! identity endpoint.
//!
//! How the check reaches the workload first: the edge's platform listener (loopback only,
//! `TP_PLATFORM_HTTP_PORT`) serves HTTPS with the same wildcard certificate as the public
//! listener and proxies to the tenant's upstream as soon as its route file exists, whether
//! or not the public marker does. The verifier takes Caddy's root certificate from the
//! admin API, trusts only that root (no system roots, never an "accept invalid
//! certificates" switch), pins the tenant's host name to `127.0.0.1:<platform port>` and
//! asks, by name, exactly what a client of `https://<host>` would ask:
//! 1. discovery (`/.well-known/openid-configuration`): its `issuer` must be this tenant's
//!    public URL — a route to another tenant's workload answers with that tenant's issuer;
//! 2. the JWKS (`/.well-known/jwks.json`): exactly one key, equal to the realm's public JWK
//!    in the control-plane store;
//! 3. the first admin's invitation (`/invitations/<code>/check`): redeemable, asked without
//!    redeeming it.
//!
//! A check that answers and disagrees fails the phase with the permanent
//! `VerificationFailed`, naming the check (never the other tenant, never the code); the
//! saga then unwinds as after any failed phase. A check that cannot get an answer (edge or
//! workload unreachable, 5xx) is transient and retried. Must never put the invitation
//! code in an error or a log: reqwest errors are stripped of their URL.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use reqwest::StatusCode;
use serde_json::Value;
use tenant_domain::TenantSpec;
use tenant_store::Store;
use tracing::{info, instrument};

use crate::identity::Identity;
use crate::traffic::Edge;
use crate::{ActivitiesConfig, StepError, StepResult};

/// One request of the verifier.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Verifier {
    cfg: Arc<ActivitiesConfig>,
    edge: Edge,
    identity: Identity,
}

impl Verifier {
    pub fn new(cfg: Arc<ActivitiesConfig>, store: Store) -> Self {
        Self {
            edge: Edge::new(cfg.clone()),
            identity: Identity::new(cfg.clone(), store),
            cfg,
        }
    }

    /// Fails with `VerificationFailed` when the host does not serve this tenant's identity.
    #[instrument(name = "verify", skip_all, fields(tenant = %spec.names.host))]
    pub async fn verify(&self, spec: &TenantSpec) -> StepResult<()> {
        let host = &spec.names.host;
        let root = self.edge.root_certificate_pem().await?;
        let client = https_client(&root, host, self.cfg.platform_http_port)?;
        let base = format!("https://{host}:{}", self.cfg.platform_http_port);

        let expected_issuer = self.cfg.public_url(host);
        let discovery = get_json(
            &client,
            &format!("{base}/.well-known/openid-configuration"),
            "discovery",
        )
        .await?;
        if discovery["issuer"].as_str() != Some(expected_issuer.as_str()) {
            return Err(failed(format!(
                "issuer check failed: discovery at {host} does not name this tenant's issuer {expected_issuer}"
            )));
        }
        let expected_jwks_uri = format!("{expected_issuer}/.well-known/jwks.json");
        if discovery["jwks_uri"].as_str() != Some(expected_jwks_uri.as_str()) {
            return Err(failed(format!(
                "issuer check failed: discovery at {host} does not point at {expected_jwks_uri}"
            )));
        }

        let jwk = self.identity.public_jwk(spec).await?;
        let jwks = get_json(&client, &format!("{base}/.well-known/jwks.json"), "JWKS").await?;
        if !jwks_is_exactly(&jwks, &jwk) {
            return Err(failed(format!(
                "JWKS check failed: the keys served at {host} are not exactly the realm's key {}",
                jwk["kid"].as_str().unwrap_or("?")
            )));
        }

        let code = self.identity.current_invitation_code(spec).await?;
        let check = client
            .get(format!("{base}/invitations/{}/check", code.expose()))
            .send()
            .await
            .map_err(|e| unreachable("invitation", e))?;
        let status = check.status();
        let answer: Value = check.json().await.unwrap_or_default();
        if status.is_server_error() {
            return Err(StepError::Transient(anyhow!(
                "invitation check at {host} answered {status}"
            )));
        }
        if status != StatusCode::OK || answer["redeemable"] != Value::Bool(true) {
            let reason = answer["error"].as_str().unwrap_or("no reason given");
            return Err(failed(format!(
                "invitation check failed: the first admin's invitation is not redeemable at {host} ({status}, {reason})"
            )));
        }

        info!("verified: issuer, keys and invitation");
        Ok(())
    }
}

/// A client that trusts only Caddy's root and reaches `host` at the platform listener.
fn https_client(root_pem: &str, host: &str, platform_port: u16) -> StepResult<reqwest::Client> {
    let root = reqwest::Certificate::from_pem(root_pem.as_bytes())
        .context("parsing Caddy's root certificate")?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .https_only(true)
        .resolve(host, SocketAddr::from((Ipv4Addr::LOCALHOST, platform_port)))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the verification client")?;
    Ok(client)
}

/// GETs a JSON document; no answer or a 5xx is transient, any other non-200 a failed check.
async fn get_json(client: &reqwest::Client, url: &str, what: &str) -> StepResult<Value> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| unreachable(what, e))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(StepError::Transient(anyhow!(
            "{what} at {url} answered {status}"
        )));
    }
    if status != StatusCode::OK {
        return Err(failed(format!(
            "{what} check failed: {url} answered {status}"
        )));
    }
    response.json().await.map_err(|_| {
        failed(format!(
            "{what} check failed: {url} did not answer with JSON"
        ))
    })
}

/// True when `jwks` holds exactly one key and it is `jwk`.
fn jwks_is_exactly(jwks: &Value, jwk: &Value) -> bool {
    matches!(jwks["keys"].as_array().map(Vec::as_slice), Some([only]) if only == jwk)
}

fn failed(message: String) -> StepError {
    StepError::permanent("VerificationFailed", message)
}

/// A request that got no answer: retried. The URL is dropped, since it may hold the code.
fn unreachable(what: &str, e: reqwest::Error) -> StepError {
    StepError::Transient(anyhow!(e.without_url()).context(format!("asking for the {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_jwks_must_be_exactly_the_realm_key() {
        let key = json!({"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": "k1"});
        let other = json!({"kty": "OKP", "crv": "Ed25519", "x": "xyz", "kid": "k2"});
        assert!(jwks_is_exactly(&json!({"keys": [key.clone()]}), &key));
        assert!(!jwks_is_exactly(&json!({"keys": [other.clone()]}), &key));
        assert!(!jwks_is_exactly(
            &json!({"keys": [key.clone(), other]}),
            &key
        ));
        assert!(!jwks_is_exactly(&json!({"keys": []}), &key));
        assert!(!jwks_is_exactly(&json!({}), &key));
    }
}
