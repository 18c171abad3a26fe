//! The operator's email actions on the whole stack: re-issuing the first admin's invitation
//! (the old code stops working at the tenant, the new one is redeemable) and resending one
//! welcome email (same Message-ID, one more attempt in the tenant's delivery status), through
//! the API and the CLI, with the refusals around them and the audit entries they leave.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tenant_tests::{CliOutput, Stack};

use common::*;

const PROBLEM: &str = "https://tenant-provisioner.dev/problems/";
const MAIL_WITHIN: Duration = Duration::from_secs(30);

/// The `emails` entry of `kind` in a `GET …/tenants/{slug}` answer.
fn delivery<'a>(tenant: &'a Value, kind: &str) -> anyhow::Result<&'a Value> {
    tenant["emails"]
        .as_array()
        .context("the tenant shows its emails")?
        .iter()
        .find(|e| e["kind"] == kind)
        .with_context(|| format!("no {kind} email in {tenant}"))
}

/// The invitation code in a welcome email's text.
fn invitation_code(mail: &Value) -> anyhow::Result<String> {
    let text = mail["text"].as_str().unwrap_or_default();
    let at = text
        .find("/invitations/")
        .context("the welcome email has an invitation link")?;
    Ok(text[at + "/invitations/".len()..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap_or_default()
        .to_owned())
}

fn subject(mail: &Value) -> String {
    mail["subject"].as_str().unwrap_or_default().to_lowercase()
}

/// The Message-ID header of a message maildev received, from its raw source.
async fn message_id(stack: &Stack, mail: &Value) -> anyhow::Result<String> {
    let id = mail["id"].as_str().context("maildev id")?;
    let url = format!("{}/api/email/{id}/source", stack.maildev_web_url);
    let source = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let head = source.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("message-id"))
        .map(|(_, value)| value.trim().to_owned())
        .context("the email has no Message-ID")
}

/// Waits for the first operator email event after event `after`, and returns it.
async fn operator_event(stack: &Stack, slug: &str, after: i64) -> anyhow::Result<Value> {
    let is_outcome = |e: &Value| {
        e["id"].as_i64().unwrap_or(0) > after
            && matches!(
                e["kind"].as_str(),
                Some("operator_email_sent" | "operator_email_failed")
            )
    };
    let feed = wait_for_event(stack, slug, Duration::from_secs(60), is_outcome).await?;
    feed.into_iter()
        .find(is_outcome)
        .context("the operator event")
}

fn assert_cli(out: &CliOutput, success: bool, what: &str) {
    assert_eq!(
        out.status.success(),
        success,
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
}

/// On an active tenant: a member may not act (403) and an unknown email kind is a 400 on
/// the field `kind`; a re-issue sends a 4th email whose invitation replaces the first (the
/// old code is refused by the tenant's own service, the new one is redeemed); a resend of
/// `onboarding` delivers the same message again (same Message-ID) and counts 2 attempts.
/// Suspended: a resend is refused with the workflow's reason (409), a re-issue is not.
/// Every operator action is in the audit feed with its actor.
#[tokio::test(flavor = "multi_thread")]
async fn operators_reissue_invitations_and_resend_emails() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let member = token_with_role(&stack, "mallory", tenant_store::access::Role::Member).await?;
    let email = format!("admin-{}@example.com", stack.id);
    let created = stack.create_tenant("shop", "growth", &email, None).await?;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let tenant_id = created.body["id"].as_str().context("id")?.to_owned();
    let host = stack.tenant_host("shop");
    stack
        .wait_for_state("shop", "active", ACTIVE_WITHIN)
        .await?;
    let first = stack.wait_for_emails(&email, 3, MAIL_WITHIN).await?;
    ensure!(first.len() == 3, "{} emails before any action", first.len());

    // The saga's three emails are in the tenant's delivery status, sent once each (a
    // message can reach the mailbox a moment before its delivery is recorded).
    wait_for_feed(&stack, "shop", MAIL_WITHIN, |feed| {
        feed.iter().filter(|e| e["kind"] == "email_sent").count() >= 3
    })
    .await?;
    let tenant = stack.get_tenant("shop").await?.body;
    for kind in ["welcome", "console_url", "onboarding"] {
        let shown = delivery(&tenant, kind)?;
        assert_eq!(shown["status"], "sent", "{shown}");
        assert_eq!(shown["attempts"], 1, "{shown}");
        assert_eq!(shown["error"], Value::Null, "{shown}");
        assert_eq!(
            shown["message_id"],
            format!("<{kind}.1.{tenant_id}@{}>", stack.domain)
        );
        assert!(shown["updated_at"].is_string(), "{shown}");
    }
    let welcome = first
        .iter()
        .find(|m| subject(m).contains("welcome"))
        .context("welcome email")?;
    let old_code = invitation_code(welcome)?;

    // Who may not act, and what is not an email.
    for action in ["invitation/reissue", "emails/onboarding/resend"] {
        let (status, body) = act(&stack, "shop", action, &member).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action}: {body}");
        assert_eq!(body["type"], format!("{PROBLEM}forbidden"));
    }
    let (status, body) = act(&stack, "shop", "emails/invoice/resend", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["type"], format!("{PROBLEM}validation"));
    assert_eq!(body["errors"][0]["field"], "kind", "{body}");
    let allowed = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        allowed.contains("welcome, console_url, onboarding"),
        "{allowed}"
    );

    // Re-issue: a new welcome email with a new invitation; the old code stops working.
    let before = last_event_id(&stack, "shop").await?;
    let (status, body) = act(&stack, "shop", "invitation/reissue", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["action"], "reissue_invitation");
    assert_eq!(body["accepted"], true);
    assert_eq!(
        body["answer"],
        "reissue_invitation accepted from state active"
    );
    assert_eq!(body["tenant"]["state"], "active");
    let reissued = operator_event(&stack, "shop", before).await?;
    assert_eq!(reissued["kind"], "operator_email_sent", "{reissued}");
    assert_eq!(reissued["actor"], "harness-owner");
    assert_eq!(reissued["state"], "active");
    let mails = stack.wait_for_emails(&email, 4, MAIL_WITHIN).await?;
    let fourth = &mails[3];
    assert!(subject(fourth).contains("welcome"), "{}", fourth["subject"]);
    let new_code = invitation_code(fourth)?;
    assert_ne!(new_code, old_code, "a new invitation");
    assert!(
        fourth["text"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!(
                "{}/invitations/{new_code}",
                stack.tenant_url("shop")
            ))
    );

    let old = stack
        .tenant_get(&host, &format!("/invitations/{old_code}/check"))
        .await?;
    assert_ne!(old.status(), StatusCode::OK, "the old code is refused");
    let new = stack
        .tenant_get(&host, &format!("/invitations/{new_code}/check"))
        .await?;
    assert_eq!(new.status(), StatusCode::OK);
    assert_eq!(new.json::<Value>().await?["redeemable"], true);
    let redeemed = stack
        .http_client_for_tenants(&host)
        .await?
        .post(format!(
            "{}/invitations/{new_code}",
            stack.tenant_url("shop")
        ))
        .json(&json!({ "password": "a long password 1" }))
        .send()
        .await?;
    assert_eq!(
        redeemed.status(),
        StatusCode::CREATED,
        "the new code is redeemed"
    );
    let tenant = stack.get_tenant("shop").await?.body;
    assert_eq!(delivery(&tenant, "welcome")?["attempts"], 2);

    // Resend: the onboarding email again, as the same message.
    let before = last_event_id(&stack, "shop").await?;
    let (status, body) = act(
        &stack,
        "shop",
        "emails/onboarding/resend",
        &stack.operator_token,
    )
    .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["action"], "resend_email");
    assert_eq!(body["email"], "onboarding");
    let resent = operator_event(&stack, "shop", before).await?;
    assert_eq!(resent["kind"], "operator_email_sent", "{resent}");
    assert_eq!(resent["actor"], "harness-operator");
    let mails = stack.wait_for_emails(&email, 5, MAIL_WITHIN).await?;
    let onboarding: Vec<&Value> = mails
        .iter()
        .filter(|m| subject(m).contains("getting started"))
        .collect();
    ensure!(
        onboarding.len() == 2,
        "{} onboarding emails",
        onboarding.len()
    );
    let (first_id, second_id) = (
        message_id(&stack, onboarding[0]).await?,
        message_id(&stack, onboarding[1]).await?,
    );
    assert_eq!(first_id, second_id, "a resend is the same message");
    assert_eq!(
        first_id,
        format!("<onboarding.1.{tenant_id}@{}>", stack.domain)
    );
    let tenant = stack.get_tenant("shop").await?.body;
    let shown = delivery(&tenant, "onboarding")?;
    assert_eq!(
        (shown["status"].as_str(), shown["attempts"].as_i64()),
        (Some("sent"), Some(2))
    );
    assert_eq!(delivery(&tenant, "console_url")?["attempts"], 1);

    // Suspended: no resend (the workflow says why), but a re-issue still works.
    let (status, body) = act(&stack, "shop", "suspend", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    stack
        .wait_for_state("shop", "suspended", Duration::from_secs(60))
        .await?;
    let (status, body) = act(&stack, "shop", "emails/welcome/resend", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], format!("{PROBLEM}conflict"));
    assert_eq!(
        body["detail"],
        "cannot resend_email a tenant that is suspended; allowed from: active"
    );

    // The CLI: a refusal exits 1 with the reason; a re-issue follows the feed to its email.
    let org = stack.org.clone();
    let token = Some(stack.owner_token.as_str());
    let refused = stack
        .tenants_cli(
            &["resend-email", "--org", &org, "shop", "--email", "welcome"],
            token,
        )
        .await?;
    assert_cli(&refused, false, "resend-email while suspended");
    assert!(
        refused
            .stderr
            .contains("cannot resend_email a tenant that is suspended"),
        "{}",
        refused.stderr
    );
    let out = stack
        .tenants_cli(
            &["reissue-invitation", "--org", &org, "shop", "-o", "json"],
            token,
        )
        .await?;
    assert_cli(&out, true, "reissue-invitation while suspended");
    assert!(
        out.stderr
            .contains("reissue_invitation accepted from state suspended"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("✓ invitation re-issued and sent"),
        "{}",
        out.stderr
    );
    let shown: Value = serde_json::from_str(&out.stdout).context("the CLI's JSON")?;
    assert_eq!(shown["state"], "suspended");
    assert_eq!(delivery(&shown, "welcome")?["attempts"], 3);
    stack.wait_for_emails(&email, 6, MAIL_WITHIN).await?;

    // Resumed: the CLI resends console_url and prints its delivery status; `get` shows all.
    let (status, body) = act(&stack, "shop", "resume", &stack.owner_token).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    stack
        .wait_for_state("shop", "active", Duration::from_secs(60))
        .await?;
    let out = stack
        .tenants_cli(
            &[
                "resend-email",
                "--org",
                &org,
                "shop",
                "--email",
                "console_url",
            ],
            token,
        )
        .await?;
    assert_cli(&out, true, "resend-email console_url");
    assert_eq!(
        out.stdout.trim(),
        format!("{org}/shop console_url sent (2 sends)")
    );
    let out = stack
        .tenants_cli(&["get", "--org", &org, "shop"], token)
        .await?;
    assert_cli(&out, true, "get");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "emails:")
        .with_context(|| format!("no emails in {}", out.stdout))?;
    for (line, (kind, sends)) in
        lines[at + 1..]
            .iter()
            .zip([("welcome", 3), ("console_url", 2), ("onboarding", 2)])
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        let sends = sends.to_string();
        assert_eq!(
            words[..4],
            [kind, "sent", "sends", sends.as_str()],
            "{line}"
        );
    }
    let out = stack
        .tenants_cli(
            &[
                "resend-email",
                "--org",
                &org,
                "shop",
                "--email",
                "welcome",
                "--no-wait",
                "-o",
                "json",
            ],
            token,
        )
        .await?;
    assert_cli(&out, true, "resend-email --no-wait");
    let answer: Value = serde_json::from_str(&out.stdout).context("the CLI's JSON")?;
    assert_eq!(
        (answer["action"].as_str(), answer["email"].as_str()),
        (Some("resend_email"), Some("welcome"))
    );
    stack.wait_for_emails(&email, 8, MAIL_WITHIN).await?;

    // The audit feed: every operator email action with its actor, in order.
    let feed = wait_for_event(&stack, "shop", Duration::from_secs(60), |e| {
        e["kind"] == "operator_email_sent"
            && e["message"].as_str().unwrap_or("").starts_with("welcome")
    })
    .await?;
    let operator: Vec<(&str, &str)> = feed
        .iter()
        .filter(|e| {
            e["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("operator_email"))
        })
        .map(|e| {
            (
                e["message"].as_str().unwrap_or_default(),
                e["actor"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        operator,
        [
            (
                "invitation re-issued and sent to the first admin",
                "harness-owner"
            ),
            (
                "onboarding email resent to the first admin",
                "harness-operator"
            ),
            (
                "invitation re-issued and sent to the first admin",
                "harness-owner"
            ),
            (
                "console_url email resent to the first admin",
                "harness-owner"
            ),
            ("welcome email resent to the first admin", "harness-owner"),
        ]
    );
    Ok(())
}
