//! The three welcome emails to a tenant's first admin, over SMTP.
//!
//! Owns the emails' content (templates in `activities/templates/`) and the
//! `email_deliveries` rows that make each email go out once per tenant incarnation (an
//! operator's [`Mailer::resend`] sends one again and counts the attempt). A
//! permanent refusal by the SMTP server is an outcome, recorded and returned; only failures
//! worth retrying are errors. Must never put the invitation code anywhere but the welcome
//! email's body: not in a log, an error, the store or another email.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tenant_domain::{EmailKind, EmailOutcome, TenantSpec};
use tracing::{info, instrument, warn};

use crate::secrets::Secret;
use crate::{ActivitiesConfig, StepError, StepResult};

/// How long one SMTP conversation may take before it counts as a transient failure.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends the welcome emails and remembers what became of each.
pub struct Mailer {
    cfg: Arc<ActivitiesConfig>,
    store: tenant_store::Store,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `cfg.mail_from`, parsed once so a bad setting stops the worker at start-up.
    from: Mailbox,
}

/// One email, rendered; the bodies may hold the invitation code, so no `Debug`.
struct Rendered {
    subject: String,
    text: String,
    html: String,
}

impl Mailer {
    pub fn new(cfg: Arc<ActivitiesConfig>, store: tenant_store::Store) -> anyhow::Result<Self> {
        let from: Mailbox = cfg.mail_from.parse().with_context(|| {
            format!(
                "mail from address {:?} is not a valid mailbox",
                cfg.mail_from
            )
        })?;
        // Plain SMTP: the relay is local (a smarthost or a test server); a relay across a
        // network needs STARTTLS, which this transport does not attempt.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host)
            .port(cfg.smtp_port)
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Self {
            cfg,
            store,
            transport,
            from,
        })
    }

    /// Sends one welcome email unless this incarnation's email of this kind already has an
    /// outcome, which is then returned as recorded.
    #[instrument(
        name = "email.send",
        skip_all,
        fields(tenant = %spec.names.host, incarnation = spec.incarnation, kind = kind.as_str())
    )]
    pub async fn send(
        &self,
        spec: &TenantSpec,
        kind: EmailKind,
        invitation_code: &Secret,
    ) -> StepResult<EmailOutcome> {
        if let Some(outcome) = self.recorded(spec, kind).await? {
            info!(
                delivered = outcome.delivered,
                "email already has an outcome; not sending again"
            );
            return Ok(outcome);
        }
        self.deliver(spec, kind, invitation_code).await
    }

    /// Sends one email again whatever its recorded outcome (an operator's resend), with the
    /// same Message-ID, and records the new outcome with one more attempt.
    /// `invitation_code` is the current one (see `Identity::current_invitation_code`).
    #[instrument(
        name = "email.resend",
        skip_all,
        fields(tenant = %spec.names.host, incarnation = spec.incarnation, kind = kind.as_str())
    )]
    pub async fn resend(
        &self,
        spec: &TenantSpec,
        kind: EmailKind,
        invitation_code: &Secret,
    ) -> StepResult<EmailOutcome> {
        self.deliver(spec, kind, invitation_code).await
    }

    /// The outcome recorded for this incarnation's email of `kind`, with its attempts.
    pub async fn delivery(
        &self,
        spec: &TenantSpec,
        kind: EmailKind,
    ) -> StepResult<Option<(EmailOutcome, i32)>> {
        let attempts: Option<i32> = sqlx::query_scalar(
            "SELECT attempts FROM email_deliveries WHERE tenant_id = $1 AND incarnation = $2 AND kind = $3",
        )
        .bind(spec.tenant_id())
        .bind(spec.incarnation)
        .bind(kind.as_str())
        .fetch_optional(self.store.pool())
        .await?;
        let outcome = self.recorded(spec, kind).await?;
        Ok(outcome.zip(attempts))
    }

    /// Builds, sends and records one email.
    async fn deliver(
        &self,
        spec: &TenantSpec,
        kind: EmailKind,
        invitation_code: &Secret,
    ) -> StepResult<EmailOutcome> {
        let message_id = message_id(spec, kind, &self.cfg.domain);
        let recipient: Mailbox = spec.request.first_admin_email.parse().map_err(|e| {
            StepError::permanent(
                "InvalidRecipient",
                format!("first admin address is not a mailbox: {e}"),
            )
        })?;
        let rendered = render(&self.cfg, spec, kind, invitation_code);
        let message = Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject(rendered.subject)
            .message_id(Some(message_id.clone()))
            .date_now()
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .context("building the email")?;

        // lettre's errors carry the server's reply and the transport's cause, never the body.
        let outcome = match self.transport.send(message).await {
            Ok(_) => {
                info!(message_id = %message_id, "email sent");
                EmailOutcome {
                    kind,
                    delivered: true,
                    message_id,
                    error: None,
                }
            }
            Err(e) if e.is_permanent() => {
                let answer = e.to_string();
                warn!(message_id = %message_id, error = %answer, "email refused by the server");
                EmailOutcome {
                    kind,
                    delivered: false,
                    message_id,
                    error: Some(answer),
                }
            }
            Err(e) => {
                let err = anyhow!(e).context(format!(
                    "sending the {} email through {}:{}",
                    kind.as_str(),
                    self.cfg.smtp_host,
                    self.cfg.smtp_port
                ));
                // Shown on the tenant while the send is retried (and after, if it never
                // goes through); a later success overwrites it.
                let failed = DeliveryRecord {
                    kind,
                    status: "failed",
                    message_id: &message_id,
                    error: Some(format!("{err:#}")),
                };
                if let Err(record_err) = self.record_status(spec, &failed).await {
                    warn!(error = %record_err, "could not record the failed email attempt");
                }
                return Err(StepError::Transient(err));
            }
        };

        // A failure here after a successful send means the retry sends again: delivery is
        // at least once, and the fixed Message-ID lets mail clients fold the duplicate.
        self.record(spec, &outcome).await?;
        Ok(outcome)
    }

    /// The email's final outcome (sent, or refused by the server), when it has one; an
    /// email whose last attempt could not reach the server has none.
    async fn recorded(
        &self,
        spec: &TenantSpec,
        kind: EmailKind,
    ) -> StepResult<Option<EmailOutcome>> {
        let row: Option<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT status, message_id, error FROM email_deliveries
             WHERE tenant_id = $1 AND incarnation = $2 AND kind = $3
               AND status IN ('sent', 'refused')",
        )
        .bind(spec.tenant_id())
        .bind(spec.incarnation)
        .bind(kind.as_str())
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.map(|(status, message_id, error)| EmailOutcome {
            kind,
            delivered: status == "sent",
            message_id,
            error,
        }))
    }

    async fn record(&self, spec: &TenantSpec, outcome: &EmailOutcome) -> StepResult<()> {
        let record = DeliveryRecord {
            kind: outcome.kind,
            status: if outcome.delivered { "sent" } else { "refused" },
            message_id: &outcome.message_id,
            error: outcome.error.clone(),
        };
        self.record_status(spec, &record).await
    }

    async fn record_status(
        &self,
        spec: &TenantSpec,
        record: &DeliveryRecord<'_>,
    ) -> StepResult<()> {
        sqlx::query(
            "INSERT INTO email_deliveries (tenant_id, incarnation, kind, recipient, message_id, status, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, incarnation, kind) DO UPDATE SET
                 recipient = EXCLUDED.recipient, message_id = EXCLUDED.message_id,
                 status = EXCLUDED.status, error = EXCLUDED.error,
                 attempts = email_deliveries.attempts + 1, updated_at = now()",
        )
        .bind(spec.tenant_id())
        .bind(spec.incarnation)
        .bind(record.kind.as_str())
        .bind(&spec.request.first_admin_email)
        .bind(record.message_id)
        .bind(record.status)
        .bind(&record.error)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }
}

/// One row of `email_deliveries` as written: `sent`, `refused` (the server's answer) or
/// `failed` (the server could not be reached).
struct DeliveryRecord<'a> {
    kind: EmailKind,
    status: &'static str,
    message_id: &'a str,
    error: Option<String>,
}

/// The same for every attempt of one email of one incarnation, so a duplicate sent after a
/// lost response is recognisable as such.
fn message_id(spec: &TenantSpec, kind: EmailKind, domain: &str) -> String {
    format!(
        "<{}.{}.{}@{domain}>",
        kind.as_str(),
        spec.incarnation,
        spec.tenant_id()
    )
}

fn render(
    cfg: &ActivitiesConfig,
    spec: &TenantSpec,
    kind: EmailKind,
    invitation_code: &Secret,
) -> Rendered {
    let name = spec.request.name.as_str();
    let tenant_url = cfg.public_url(&spec.names.host);
    let mut values = vec![
        ("tenant_name", name.to_owned()),
        ("org", spec.request.org.clone()),
        ("tenant_url", tenant_url.clone()),
        // The tenant's own console, where its first admin signs in.
        ("tenant_console_url", format!("{tenant_url}/")),
    ];
    if let Some(console) = cfg.console_url.as_deref().filter(|u| !u.is_empty()) {
        values.push(("console_url", console.to_owned()));
    }
    let (subject, text, html) = match kind {
        EmailKind::Welcome => {
            // The only place the code ever goes.
            values.push((
                "invitation_url",
                format!("{tenant_url}/invitations/{}", invitation_code.expose()),
            ));
            (
                format!("Welcome to {name}"),
                include_str!("../templates/welcome.txt"),
                include_str!("../templates/welcome.html"),
            )
        }
        EmailKind::ConsoleUrl => (
            format!("Your console for {name}"),
            include_str!("../templates/console_url.txt"),
            include_str!("../templates/console_url.html"),
        ),
        EmailKind::Onboarding => (
            format!("Getting started with {name}"),
            include_str!("../templates/onboarding.txt"),
            include_str!("../templates/onboarding.html"),
        ),
    };
    Rendered {
        subject,
        text: fill(text, &values, false),
        html: fill(html, &values, true),
    }
}

/// Replaces each `{name}` whose name is in `values`, in one pass, so a value can never
/// introduce a placeholder of its own. `{?name}…{/name}` keeps what is between only when
/// `name` has a value (for a link that a deployment may not have). Anything else in braces
/// is left as written.
fn fill(template: &str, values: &[(&str, String)], html: bool) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        if let Some(section) = after.strip_prefix('?')
            && let Some(close) = section.find('}')
        {
            let name = &section[..close];
            let end_tag = format!("{{/{name}}}");
            if let Some(end) = section[close + 1..].find(&end_tag) {
                let inner = &section[close + 1..close + 1 + end];
                if values.iter().any(|(k, _)| *k == name) {
                    out.push_str(&fill(inner, values, html));
                }
                rest = &section[close + 1 + end + end_tag.len()..];
                continue;
            }
        }
        let value = after.find('}').and_then(|close| {
            values
                .iter()
                .find(|(k, _)| *k == &after[..close])
                .map(|(k, v)| (k.len(), v))
        });
        match value {
            Some((key_len, value)) => {
                if html {
                    escape_html(value, &mut out);
                } else {
                    out.push_str(value);
                }
                rest = &after[key_len + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape_html(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenant_domain::{TenantKey, ValidRequest};

    fn config() -> ActivitiesConfig {
        ActivitiesConfig {
            control_plane_url: String::new(),
            storage_admin_url: String::new(),
            storage_host: "127.0.0.1".into(),
            storage_port: 5432,
            domain: "tenants.localhost".into(),
            public_https_port: 8443,
            platform_http_port: 8444,
            caddy_admin_url: "http://127.0.0.1:2019".into(),
            runtime_dir: "/tmp/tp".into(),
            tenant_service_bin: "tenant-service".into(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: 1025,
            mail_from: "Tenant Platform <platform@example.com>".into(),
            console_url: Some("https://console.example.com/?a=1&b=2".into()),
            secret_key: vec![7; 32],
            fail_phase: None,
            slow_phase: None,
        }
    }

    fn spec() -> TenantSpec {
        TenantSpec {
            request: ValidRequest {
                org: "acme".into(),
                slug: "production-eu".into(),
                plan: "growth".into(),
                first_admin_email: "admin@example.com".into(),
                name: "production-eu".into(),
            },
            names: TenantKey::new("acme", "production-eu").derive("tenants.localhost"),
            incarnation: 2,
            requested_by: "test".into(),
        }
    }

    fn code() -> Secret {
        crate::secrets::derive(
            &[7; 32],
            uuid::Uuid::from_u128(1),
            1,
            crate::secrets::Purpose::InvitationCode,
        )
    }

    #[test]
    fn every_template_fills_every_placeholder() {
        for kind in EmailKind::ALL {
            let r = render(&config(), &spec(), kind, &code());
            for body in [&r.text, &r.html] {
                assert!(
                    !body.contains('{') && !body.contains('}'),
                    "{kind:?}: {body}"
                );
                assert!(
                    body.contains("https://production-eu-acme.tenants.localhost:8443"),
                    "{kind:?}"
                );
            }
        }
    }

    #[test]
    fn without_a_platform_console_the_emails_do_not_mention_one() {
        let mut cfg = config();
        for kind in [EmailKind::ConsoleUrl, EmailKind::Onboarding] {
            let with = render(&cfg, &spec(), kind, &code());
            assert!(with.text.contains("platform console"), "{kind:?}");
            assert!(
                with.text.contains("https://console.example.com/?a=1&b=2"),
                "{kind:?}"
            );
            assert!(
                with.html
                    .contains("href=\"https://console.example.com/?a=1&amp;b=2\"")
            );
        }
        cfg.console_url = None;
        for kind in EmailKind::ALL {
            let without = render(&cfg, &spec(), kind, &code());
            for body in [&without.text, &without.html] {
                assert!(!body.contains("platform console"), "{kind:?}: {body}");
                assert!(
                    !body.contains('{') && !body.contains('}'),
                    "{kind:?}: {body}"
                );
            }
        }
        let onboarding = render(&cfg, &spec(), EmailKind::Onboarding, &code());
        assert!(
            onboarding
                .text
                .contains("3. Connect your first application.\n")
        );
    }

    #[test]
    fn sections_keep_their_text_only_when_their_value_is_set() {
        let values = [("a", "1".to_owned())];
        assert_eq!(
            fill("x{?a}[{a}]{/a}y{?b}[{b}]{/b}z", &values, false),
            "x[1]yz"
        );
        // An unclosed section is left as written.
        assert_eq!(fill("x{?b}y", &values, false), "x{?b}y");
    }

    #[test]
    fn only_the_welcome_email_carries_the_invitation_code() {
        let code = code();
        for kind in EmailKind::ALL {
            let r = render(&config(), &spec(), kind, &code);
            let carries = r.text.contains(code.expose()) || r.html.contains(code.expose());
            assert_eq!(carries, kind == EmailKind::Welcome, "{kind:?}");
        }
        let welcome = render(&config(), &spec(), EmailKind::Welcome, &code);
        let link = format!(
            "https://production-eu-acme.tenants.localhost:8443/invitations/{}",
            code.expose()
        );
        assert!(welcome.text.contains(&link));
        assert_eq!(welcome.subject, "Welcome to production-eu");
    }

    #[test]
    fn html_values_are_escaped_and_text_values_are_not() {
        let r = render(&config(), &spec(), EmailKind::ConsoleUrl, &code());
        assert!(r.html.contains("https://console.example.com/?a=1&amp;b=2"));
        assert!(r.text.contains("https://console.example.com/?a=1&b=2"));
        assert_eq!(r.subject, "Your console for production-eu");
        // The tenant's own console, with its trailing slash, in both parts.
        let console = "https://production-eu-acme.tenants.localhost:8443/";
        assert!(r.text.contains(&format!("{console}\n")), "{}", r.text);
        assert!(
            r.html.contains(&format!("href=\"{console}\"")),
            "{}",
            r.html
        );
    }

    #[test]
    fn fill_is_one_pass_and_leaves_unknown_braces() {
        let values = [("a", "{b}".to_string()), ("b", "x".to_string())];
        assert_eq!(fill("{a}-{b}-{c}-{", &values, false), "{b}-x-{c}-{");
    }

    #[test]
    fn message_ids_are_stable_per_kind_and_incarnation() {
        let spec = spec();
        let id = message_id(&spec, EmailKind::ConsoleUrl, "tenants.localhost");
        assert_eq!(
            id,
            format!("<console_url.2.{}@tenants.localhost>", spec.tenant_id())
        );
        assert_ne!(
            id,
            message_id(&spec, EmailKind::Welcome, "tenants.localhost")
        );
    }
}
