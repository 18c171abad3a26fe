//! The tenant's identity endpoint end to end on a real stack: the first admin follows the
//! links in the emails over HTTPS, sets a password, signs in and gets a token that checks
//! out against the tenant's JWKS; tenants cannot use each other's invitations or tokens;
//! suspend, resume and decommission reach sign-in; a tenant whose route leads to another
//! tenant's workload fails verification and never becomes active.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use reqwest::{Method, StatusCode, redirect};
use serde_json::{Value, json};
use tenant_tests::{Stack, StackOptions};

use common::*;

/// An HTTPS client for `host` that trusts only Caddy's CA, reaches `port` on loopback and
/// does not follow redirects (so a sign-in's cookie can be seen).
async fn tenant_client(stack: &Stack, host: &str, port: u16) -> anyhow::Result<reqwest::Client> {
    let pem = stack.caddy_root_certificate().await?;
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?)
        .resolve(host, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .redirect(redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .context("building the tenant client")
}

/// Status and JSON body (`Null` when the body is not JSON).
async fn json_of(response: reqwest::Response) -> anyhow::Result<(StatusCode, Value)> {
    let status = response.status();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// The one email of `mails` whose subject contains `word`.
fn mail_with<'a>(mails: &'a [Value], word: &str) -> anyhow::Result<&'a Value> {
    let found: Vec<&Value> = mails
        .iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.to_lowercase().contains(word))
        })
        .collect();
    ensure!(
        found.len() == 1,
        "expected one email about {word:?}, got {}",
        found.len()
    );
    Ok(found[0])
}

/// Every `https://…` link in a text, up to whitespace or a quote.
fn links(text: &str) -> Vec<String> {
    text.match_indices("https://")
        .map(|(at, _)| {
            text[at..]
                .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The raw message maildev received, and its header block with lower-cased names.
async fn raw_headers(stack: &Stack, mail: &Value) -> anyhow::Result<Vec<(String, String)>> {
    let id = mail["id"].as_str().context("maildev id")?;
    let maildev = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("{}/api/email/{id}/source", stack.maildev_web_url);
    let source = maildev
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let head = source
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    Ok(head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Base64url (no padding) to bytes; written out because this test crate has no base64 dependency.
fn base64url_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let value = |c: u8| -> anyhow::Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => bail!("not base64url: {c:?}"),
        } as u32)
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let acc = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(acc >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Checks an EdDSA JWS with `openssl` (independent of the service's own code), given the
/// Ed25519 public key's `x` from the JWKS.
fn openssl_verifies(token: &str, x: &str, dir: &Path) -> anyhow::Result<bool> {
    let (signed, signature) = token.rsplit_once('.').context("a compact JWS")?;
    // The SubjectPublicKeyInfo of an Ed25519 key: a fixed prefix, then the 32 key bytes.
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend(base64url_decode(x)?);
    std::fs::create_dir_all(dir)?;
    let (key, message, sig) = (
        dir.join("key.pem"),
        dir.join("message"),
        dir.join("signature"),
    );
    std::fs::write(
        &key,
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64_encode(&spki)
        ),
    )?;
    std::fs::write(&message, signed)?;
    std::fs::write(&sig, base64url_decode(signature)?)?;
    let out = std::process::Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(&key)
        .arg("-rawin")
        .arg("-in")
        .arg(&message)
        .arg("-sigfile")
        .arg(&sig)
        .output()
        .context("running openssl (Debian's openssl package)")?;
    Ok(out.status.success())
}

fn code_of(link: &str) -> anyhow::Result<String> {
    Ok(link
        .rsplit('/')
        .next()
        .context("invitation code")?
        .to_owned())
}

/// The first admin takes the invitation link and the console URL from the emails, follows
/// them over HTTPS, sets a password, signs in, and gets a token whose issuer, audience and
/// signature check out against the tenant's own discovery and JWKS. Tenant A's invitation
/// and token are refused at tenant B; an expired invitation is refused.
#[tokio::test(flavor = "multi_thread")]
async fn first_admin_signs_in_from_the_emails() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let (email_a, email_b) = (
        format!("first-{}@example.com", stack.id),
        format!("other-{}@example.com", stack.id),
    );
    let (a, b) = tokio::join!(
        stack.create_tenant("alpha", "growth", &email_a, None),
        stack.create_tenant("beta", "free", &email_b, None),
    );
    let (a, b) = (a?, b?);
    assert_eq!(
        (a.status, b.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED),
        "{} {}",
        a.body,
        b.body
    );
    let tenant_a = stack
        .wait_for_state("alpha", "active", ACTIVE_WITHIN)
        .await?;
    stack
        .wait_for_state("beta", "active", ACTIVE_WITHIN)
        .await?;
    let id_a = tenant_a["id"].as_str().context("id")?.to_owned();
    let (host_a, host_b) = (stack.tenant_host("alpha"), stack.tenant_host("beta"));
    let (url_a, url_b) = (stack.tenant_url("alpha"), stack.tenant_url("beta"));

    // The emails: real messages with every header, a stable Message-ID and both parts.
    let mails = stack
        .wait_for_emails(&email_a, 3, Duration::from_secs(30))
        .await?;
    let welcome = mail_with(&mails, "welcome")?;
    let console = mail_with(&mails, "console")?;
    for (mail, kind) in [
        (welcome, "welcome"),
        (console, "console_url"),
        (mail_with(&mails, "getting started")?, "onboarding"),
    ] {
        let headers = raw_headers(&stack, mail).await?;
        for name in [
            "date",
            "from",
            "to",
            "subject",
            "message-id",
            "mime-version",
            "content-type",
        ] {
            ensure!(
                header(&headers, name).is_some(),
                "{kind} email lacks {name}: {headers:?}"
            );
        }
        assert_eq!(
            header(&headers, "message-id"),
            Some(format!("<{kind}.1.{id_a}@{}>", stack.domain).as_str())
        );
        assert!(
            header(&headers, "to")
                .unwrap_or_default()
                .contains(&email_a)
        );
        assert!(
            header(&headers, "content-type")
                .unwrap_or_default()
                .starts_with("multipart/alternative")
        );
        assert!(
            mail["text"].as_str().is_some_and(|t| !t.is_empty())
                && mail["html"].as_str().is_some_and(|h| !h.is_empty())
        );
    }
    let invitation_links: Vec<String> = links(welcome["text"].as_str().unwrap_or_default())
        .into_iter()
        .filter(|l| l.contains("/invitations/"))
        .collect();
    ensure!(
        invitation_links.len() == 1,
        "welcome text links: {invitation_links:?}"
    );
    let invitation = invitation_links[0].clone();
    assert!(
        invitation.starts_with(&format!("{url_a}/invitations/")),
        "{invitation}"
    );
    assert!(
        welcome["html"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("href=\"{invitation}\""))
    );
    let console_url = format!("{url_a}/");
    assert!(
        links(console["text"].as_str().unwrap_or_default()).contains(&console_url),
        "{}",
        console["text"]
    );
    let code_a = code_of(&invitation)?;

    // Follow both links over HTTPS with Caddy's certificate.
    let client_a = tenant_client(&stack, &host_a, stack.ports.public_https).await?;
    let page = client_a.get(&console_url).send().await?;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await?.contains("action=\"/signin\""));
    let form = client_a.get(&invitation).send().await?;
    assert_eq!(form.status(), StatusCode::OK);
    assert!(form.text().await?.contains(&email_a));

    // Tenant A's invitation means nothing at tenant B.
    let client_b = tenant_client(&stack, &host_b, stack.ports.public_https).await?;
    let foreign = client_b
        .get(format!("{url_b}/invitations/{code_a}"))
        .send()
        .await?;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    let foreign = client_b
        .post(format!("{url_b}/invitations/{code_a}"))
        .json(&json!({"password": "a long password 1"}))
        .send()
        .await?;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);

    // Set a password the way the browser form does: too short first, then accepted once.
    let short = client_a
        .post(&invitation)
        .form(&[("password", "short")])
        .send()
        .await?;
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    let accepted = client_a
        .post(&invitation)
        .form(&[("password", "a long password 1")])
        .send()
        .await?;
    assert_eq!(accepted.status(), StatusCode::OK);
    assert!(accepted.text().await?.contains("Your account is ready"));
    let again = client_a
        .post(&invitation)
        .form(&[("password", "another password 2")])
        .send()
        .await?;
    assert_eq!(again.status(), StatusCode::GONE);

    // Sign in: JSON for an API client, a cookie for the console.
    let (status, wrong) = json_of(
        client_a
            .post(format!("{url_a}/signin"))
            .json(&json!({"email": email_a, "password": "not my password"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, wrong["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    let (status, token) = json_of(
        client_a
            .post(format!("{url_a}/signin"))
            .json(&json!({"email": email_a, "password": "a long password 1"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    let access_token = token["access_token"]
        .as_str()
        .context("access token")?
        .to_owned();
    let browser = client_a
        .post(format!("{url_a}/signin"))
        .form(&[
            ("email", email_a.as_str()),
            ("password", "a long password 1"),
        ])
        .send()
        .await?;
    assert_eq!(browser.status(), StatusCode::SEE_OTHER);
    let cookie = browser.headers()["set-cookie"]
        .to_str()?
        .split(';')
        .next()
        .context("cookie")?
        .to_owned();
    assert!(
        browser.headers()["set-cookie"]
            .to_str()?
            .contains("HttpOnly")
    );
    let console_page = client_a
        .get(&console_url)
        .header("cookie", &cookie)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        console_page.contains(&format!("Signed in as <strong>{email_a}</strong>")),
        "{console_page}"
    );

    // The token against the tenant's own discovery and JWKS, and an independent verifier.
    let (_, discovery) = json_of(
        client_a
            .get(format!("{url_a}/.well-known/openid-configuration"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(discovery["issuer"], url_a.as_str());
    let jwks_uri = discovery["jwks_uri"].as_str().context("jwks_uri")?;
    let (_, jwks) = json_of(client_a.get(jwks_uri).send().await?).await?;
    let stored = stack
        .psql(&format!(
            "SELECT public_jwk::text FROM realms WHERE tenant_id = '{id_a}'"
        ))
        .await?;
    let stored: Value = serde_json::from_str(stored[0][0].as_deref().context("realm")?)?;
    assert_eq!(
        jwks["keys"],
        json!([stored]),
        "the JWKS is the realm's key from the control plane"
    );
    let parts: Vec<&str> = access_token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let head: Value = serde_json::from_slice(&base64url_decode(parts[0])?)?;
    let claims: Value = serde_json::from_slice(&base64url_decode(parts[1])?)?;
    assert_eq!(head["alg"], "EdDSA");
    assert_eq!(head["kid"], jwks["keys"][0]["kid"]);
    assert_eq!(claims["iss"], url_a.as_str());
    assert_eq!(claims["aud"], id_a.as_str());
    assert_eq!(claims["email"], email_a.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0),
        3600
    );
    let x = jwks["keys"][0]["x"].as_str().context("x")?;
    let scratch = stack.runtime_dir.join("jws");
    assert!(
        openssl_verifies(&access_token, x, &scratch)?,
        "openssl rejects the token's signature"
    );
    let mut forged = access_token.clone();
    forged.replace_range(
        parts[0].len() + 2..parts[0].len() + 3,
        if &access_token[parts[0].len() + 2..parts[0].len() + 3] == "A" {
            "B"
        } else {
            "A"
        },
    );
    assert!(
        !openssl_verifies(&forged, x, &scratch)?,
        "openssl accepts a tampered token"
    );

    let (status, me) = json_of(
        client_a
            .get(format!("{url_a}/userinfo"))
            .bearer_auth(&access_token)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, me["email"].as_str()),
        (StatusCode::OK, Some(email_a.as_str()))
    );

    // Tenant A's token and credentials are useless at tenant B.
    let at_b = client_b
        .get(format!("{url_b}/userinfo"))
        .bearer_auth(&access_token)
        .send()
        .await?;
    assert_eq!(at_b.status(), StatusCode::UNAUTHORIZED);
    let at_b = client_b
        .post(format!("{url_b}/signin"))
        .json(&json!({"email": email_a, "password": "a long password 1"}))
        .send()
        .await?;
    assert_eq!(at_b.status(), StatusCode::UNAUTHORIZED);

    // An expired invitation is refused (tenant B's, expired in its own database).
    let mails_b = stack
        .wait_for_emails(&email_b, 1, Duration::from_secs(30))
        .await?;
    let link_b = links(
        mail_with(&mails_b, "welcome")?["text"]
            .as_str()
            .unwrap_or_default(),
    )
    .into_iter()
    .find(|l| l.contains("/invitations/"))
    .context("B's invitation link")?;
    let tenant_b = stack.get_tenant("beta").await?.body;
    let database_b = database_of(tenant_b["id"].as_str().context("id")?);
    stack
        .psql_on(
            &database_b,
            "UPDATE invitations SET expires_at = now() - interval '1 minute'",
        )
        .await?;
    let expired = client_b.get(&link_b).send().await?;
    assert_eq!(expired.status(), StatusCode::GONE);
    assert!(expired.text().await?.contains("expired"));
    let (status, body) = json_of(
        client_b
            .post(&link_b)
            .json(&json!({"password": "a long password 1"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::GONE, Some("invitation_expired"))
    );
    Ok(())
}

async fn lifecycle(stack: &Stack, slug: &str, action: &str) -> anyhow::Result<()> {
    let path = format!(
        "/api/v1/organizations/{}/tenants/{slug}/{action}",
        stack.org
    );
    let answer = stack
        .api(Method::POST, &path, Some(&stack.owner_token), None)
        .await?;
    ensure!(
        answer.status == StatusCode::ACCEPTED,
        "{action}: {} {}",
        answer.status,
        answer.body
    );
    Ok(())
}

/// Suspend: the public route answers 503 and nobody signs in, even by the platform route.
/// Resume: both work again. Decommission: the host is no longer served, and the realm's keys
/// and the invitation are gone with everything else.
#[tokio::test(flavor = "multi_thread")]
async fn suspend_resume_and_decommission_reach_sign_in() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let email = format!("admin-{}@example.com", stack.id);
    let created = stack.create_tenant("gamma", "free", &email, None).await?;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let tenant = stack
        .wait_for_state("gamma", "active", ACTIVE_WITHIN)
        .await?;
    let tenant_id = tenant["id"].as_str().context("id")?.to_owned();
    let (host, url) = (stack.tenant_host("gamma"), stack.tenant_url("gamma"));
    let public = tenant_client(&stack, &host, stack.ports.public_https).await?;
    let platform = tenant_client(&stack, &host, stack.ports.platform_http).await?;
    let platform_url = format!("https://{host}:{}", stack.ports.platform_http);

    let mails = stack
        .wait_for_emails(&email, 1, Duration::from_secs(30))
        .await?;
    let link = links(
        mail_with(&mails, "welcome")?["text"]
            .as_str()
            .unwrap_or_default(),
    )
    .into_iter()
    .find(|l| l.contains("/invitations/"))
    .context("invitation link")?;
    let accepted = public
        .post(&link)
        .json(&json!({"password": "gamma password 1"}))
        .send()
        .await?;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let credentials = json!({"email": email, "password": "gamma password 1"});
    let sign_in = |client: &reqwest::Client, base: &str| {
        client
            .post(format!("{base}/signin"))
            .json(&credentials)
            .send()
    };
    assert_eq!(sign_in(&public, &url).await?.status(), StatusCode::OK);

    lifecycle(&stack, "gamma", "suspend").await?;
    stack
        .wait_for_state("gamma", "suspended", Duration::from_secs(30))
        .await?;
    assert_eq!(
        sign_in(&public, &url).await?.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "route blocked"
    );
    let (status, body) = json_of(sign_in(&platform, &platform_url).await?).await?;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::FORBIDDEN, Some("tenant suspended"))
    );

    lifecycle(&stack, "gamma", "resume").await?;
    stack
        .wait_for_state("gamma", "active", Duration::from_secs(30))
        .await?;
    assert_eq!(sign_in(&public, &url).await?.status(), StatusCode::OK);

    lifecycle(&stack, "gamma", "decommission").await?;
    stack
        .wait_for_state("gamma", "decommissioned", Duration::from_secs(60))
        .await?;
    assert_eq!(
        public.get(format!("{url}/")).send().await?.status(),
        StatusCode::NOT_FOUND
    );
    assert_nothing_left(&stack, "gamma", &tenant_id).await?;
    Ok(())
}

/// Tenant `two`'s route is pointed at tenant `one`'s workload after its deploy and before
/// its verification: the verify phase sees `one`'s issuer, fails, and the saga releases
/// everything `two` allocated; `two` is never active, and `one` keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_route_to_another_tenants_workload_fails_verification() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackOptions {
        worker_env: vec![("TP_SLOW_PHASE".into(), "deploy:8000".into())],
        ..Default::default()
    })
    .await?;
    let one = stack
        .create_tenant("one", "free", "one@example.com", None)
        .await?;
    assert_eq!(one.status, StatusCode::ACCEPTED, "{}", one.body);
    let one = stack
        .wait_for_state("one", "active", Duration::from_secs(180))
        .await?;
    let one_id = one["id"].as_str().context("id")?.to_owned();

    let two = stack
        .create_tenant("two", "free", "two@example.com", None)
        .await?;
    assert_eq!(two.status, StatusCode::ACCEPTED, "{}", two.body);
    let two_id = two.body["id"].as_str().context("id")?.to_owned();
    let host_two = stack.tenant_host("two");

    // Wait until two's workload is up and its deploy is holding (the slow-phase window).
    let deadline = Instant::now() + ACTIVE_WITHIN;
    loop {
        let ready = match stack.platform_get(&host_two, "/healthz/ready").await {
            Ok(r) if r.status().is_success() => r
                .json::<Value>()
                .await
                .map(|b| b["tenant_id"] == two_id.as_str())
                .unwrap_or(false),
            _ => false,
        };
        if ready {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "two's workload never came up\n{}",
            stack.log_tail("worker", 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let label = host_two.split('.').next().context("label")?;
    let link = stack
        .runtime_dir
        .join("upstreams")
        .join(format!("{label}.sock"));
    let staged = stack
        .runtime_dir
        .join("upstreams")
        .join(format!(".{label}.swap"));
    std::os::unix::fs::symlink(
        format!("../workloads/{}.sock", one_id.replace('-', "")),
        &staged,
    )?;
    std::fs::rename(&staged, &link)?;
    let feed = events(&stack, "two").await?;
    assert!(
        !feed
            .iter()
            .any(|e| e["kind"] == "phase_started" && e["phase"] == "verify"),
        "the swap must land before verification starts"
    );
    let routed: Value = stack
        .platform_get(&host_two, "/healthz/ready")
        .await?
        .json()
        .await?;
    assert_eq!(
        routed["tenant_id"],
        one_id.as_str(),
        "two's route now leads to one's workload"
    );

    let failed = stack
        .wait_for_state("two", "failed", Duration::from_secs(120))
        .await?;
    assert_eq!(failed["last_error"]["phase"], "verify", "{failed}");
    assert_eq!(
        failed["last_error"]["error_type"], "VerificationFailed",
        "{failed}"
    );
    let reason = failed["last_error"]["message"].as_str().unwrap_or_default();
    assert!(reason.contains("issuer check failed"), "{reason}");
    assert!(
        !reason.contains("one-"),
        "the other tenant is not named: {reason}"
    );
    let feed = events(&stack, "two").await?;
    assert!(
        !feed.iter().any(|e| e["state"] == "active"),
        "two was never active"
    );
    assert_nothing_left(&stack, "two", &two_id).await?;

    // One is untouched: still active, and its host still serves its own issuer.
    assert_eq!(stack.get_tenant("one").await?.body["state"], "active");
    let client = tenant_client(&stack, &stack.tenant_host("one"), stack.ports.public_https).await?;
    let (_, discovery) = json_of(
        client
            .get(format!(
                "{}/.well-known/openid-configuration",
                stack.tenant_url("one")
            ))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(discovery["issuer"], stack.tenant_url("one").as_str());
    Ok(())
}

#[test]
fn base64_helpers_round_trip() {
    assert_eq!(base64_encode(b"Man"), "TWFu");
    assert_eq!(base64_encode(b"Ma"), "TWE=");
    assert_eq!(base64_encode(b"M"), "TQ==");
    assert_eq!(base64url_decode("TWFu").unwrap(), b"Man");
    assert_eq!(base64url_decode("TWE").unwrap(), b"Ma");
    assert_eq!(base64url_decode("TQ").unwrap(), b"M");
    assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
}
