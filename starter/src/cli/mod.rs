//! The `tenants` command: the operators' front door.
//!
//! Every command talks to the HTTP API, except `bootstrap`, which creates the first
//! organisation (or a platform operator) and its token directly in the database. Data goes
//! to stdout (a table, or `--output json`); progress and errors go to stderr. A token
//! never appears in help texts, errors or progress output: only `bootstrap` prints one,
//! once, to stdout.

mod bootstrap;
mod client;
mod create;
mod follow;
mod lifecycle;
mod output;
mod progress;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use tenant_domain::{EmailKind, LifecycleAction};

pub use client::{ApiClient, ClientError};
pub use output::event_line;

/// Exit status of a command, as `tenants --help` lists them. A usage error (2) never gets
/// this far: clap reports it and exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The request was refused, the tenant failed, or something broke.
    Failure,
    /// `create` or an action stopped waiting at its `--timeout`; the saga carries on.
    TimedOut,
    /// `create` or an action stopped waiting at ctrl-c; the saga carries on.
    Interrupted,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Failure => ExitCode::from(1),
            Outcome::TimedOut => ExitCode::from(3),
            // What a shell reports for a process ended by SIGINT.
            Outcome::Interrupted => ExitCode::from(130),
        }
    }
}

/// Examples and exit codes, at the end of `tenants --help`.
const AFTER_HELP: &str = "\
Examples:
  tenants bootstrap --org acme --owner alice --save-token
  tenants create --org acme --slug production --plan growth --first-admin admin@example.com
  tenants list --org acme
  tenants get --org acme --slug production
  tenants events --org acme --slug production --follow
  tenants suspend --org acme --slug production

Every command that acts on one tenant takes --org and --slug; the slug may also be given
alone as the last word (`tenants get --org acme production`).

Exit status:
  0    done: the tenant reached the state the command waits for (with --no-wait: the
       request was accepted)
  1    refused or failed: invalid input, a refusal or error from the API, the tenant
       ended failed, an email was not delivered, or the API could not be reached
  2    usage error: an unknown command or option, a missing or conflicting argument
  3    timed out: --timeout passed before the saga settled; the saga carries on
  130  interrupted with ctrl-c while following; the saga carries on";

#[derive(Parser)]
#[command(
    name = "tenants",
    version,
    about = "Provision and inspect tenants through the Tenant Provisioner API",
    long_about = "Provision and inspect tenants through the Tenant Provisioner API.\n\n\
        Start with `tenants bootstrap` to create an organisation and its owner's token, then \
        `tenants create` to provision a tenant and follow its saga until it is active. \
        `retry`, `decommission`, `suspend` and `resume` act on a tenant the same way; \
        `reissue-invitation` and `resend-email` send its first admin an email again.\n\n\
        The API token comes from --token, else TP_TOKEN, else ~/.config/tenant-provisioner/token.\n\n\
        While `create` and the actions follow a saga, progress goes to stderr (a spinner on \
        the running phase when stderr is a terminal; plain lines otherwise, or with NO_COLOR \
        or TERM=dumb) and the result to stdout.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Where the API is and the token to call it with, given before the command
    #[command(flatten)]
    api: TopApiOptions,

    /// How data written to stdout is formatted
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table, global = true, help_heading = "Global options")]
    output: OutputFormat,

    #[command(subcommand)]
    command: Command,
}

/// Where the API listens unless --api-url or TP_API_URL says otherwise.
const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

// The API options are resolved here rather than with clap's `env`: clap counts a value
// from the environment as typed, and then prints it in every usage line as if it were
// required (`Usage: tenants create … --api-url <URL> --token <TOKEN> …`). They are not
// global either, so that `bootstrap`, which talks to the database, does not take them.

/// The API options as given before the command (`tenants --token … list`).
#[derive(Args)]
struct TopApiOptions {
    /// Base URL of the Tenant Provisioner API [env: TP_API_URL] [default: http://127.0.0.1:8080]
    #[arg(long, value_name = "URL", help_heading = "API options")]
    api_url: Option<String>,

    /// API token [env: TP_TOKEN]; without one, ~/.config/tenant-provisioner/token is read
    #[arg(long, help_heading = "API options")]
    token: Option<String>,
}

/// The API options as given after the command (`tenants list --token …`); they win over
/// those given before it.
#[derive(Args)]
struct ApiOptions {
    /// Base URL of the Tenant Provisioner API [env: TP_API_URL] [default: http://127.0.0.1:8080]
    #[arg(long, value_name = "URL", global = true, help_heading = "API options")]
    api_url: Option<String>,

    /// API token [env: TP_TOKEN]; without one, ~/.config/tenant-provisioner/token is read
    #[arg(long, global = true, help_heading = "API options")]
    token: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text
    Table,
    /// The API's JSON
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create an organisation with its owner, or a platform operator, and print a token once
    ///
    /// Talks directly to the control-plane database (TP_DATABASE_URL) and brings its schema
    /// up to date. The token is printed to stdout once; the database keeps only its SHA-256.
    Bootstrap(BootstrapArgs),
    /// Request a new tenant and follow its provisioning until it is active or failed
    ///
    /// The request is checked locally with the same rule the API and the saga apply; the
    /// plan is checked by the API. Repeating an identical request is safe: it returns the
    /// existing tenant. Prints the tenant's URL (or, with -o json, the tenant) to stdout.
    ///
    /// Exit status: 0 active, 1 refused or failed, 3 timed out (the saga carries on).
    #[command(after_help = "Examples:\n  \
        tenants create --org acme --slug production --plan growth --first-admin admin@example.com\n  \
        tenants create --org acme --slug staging --plan free --first-admin ops@example.com \
        --name staging-eu --no-wait -o json")]
    Create(CreateArgs),
    /// Show one tenant: state, phase, resources, welcome email delivery and the workflow's view
    #[command(after_help = "Examples:\n  \
        tenants get --org acme --slug production\n  \
        tenants get --org acme production -o json")]
    Get(TenantArgs),
    /// List the tenants of an organisation
    #[command(after_help = "Example:\n  tenants list --org acme --state failed")]
    List(ListArgs),
    /// Print a tenant's audit feed, every incarnation, oldest first
    ///
    /// With --follow, keep printing events live as they happen, until interrupted.
    #[command(after_help = "Examples:\n  \
        tenants events --org acme --slug production\n  \
        tenants events --org acme --slug production --follow -o json")]
    Events(EventsArgs),
    /// Provision a failed tenant again, then follow it until it is active or failed
    ///
    /// Every phase runs again and adopts what already exists, so nothing is allocated twice.
    /// Also re-drives a tenant whose workflow was terminated.
    ///
    /// Exit status: 0 active, 1 refused or failed, 3 timed out (the saga carries on).
    #[command(after_help = "Example:\n  tenants retry --org acme --slug production")]
    Retry(ActionArgs),
    /// Release everything a tenant holds and free its slot; follow it until decommissioned
    ///
    /// Allowed while provisioning, active, suspended or failed. The audit history stays
    /// readable, and the slug may be requested again afterwards.
    ///
    /// Exit status: 0 decommissioned, 1 refused, 3 timed out (the saga carries on).
    #[command(after_help = "Example:\n  tenants decommission --org acme --slug production")]
    Decommission(ActionArgs),
    /// Stop an active tenant's public traffic and sign-in; follow it until suspended
    ///
    /// Exit status: 0 suspended, 1 refused, 3 timed out (the saga carries on).
    #[command(after_help = "Example:\n  tenants suspend --org acme --slug production")]
    Suspend(ActionArgs),
    /// Serve a suspended tenant again; follow it until active
    ///
    /// Exit status: 0 active, 1 refused, 3 timed out (the saga carries on).
    #[command(after_help = "Example:\n  tenants resume --org acme --slug production")]
    Resume(ActionArgs),
    /// Give the first admin a new invitation and email it; follow until it is sent
    ///
    /// The previous invitation code stops working. The new one arrives in a new welcome
    /// email. Allowed while active or suspended.
    ///
    /// Exit status: 0 sent, 1 refused or not delivered, 3 timed out.
    #[command(after_help = "Example:\n  tenants reissue-invitation --org acme --slug production")]
    ReissueInvitation(ActionArgs),
    /// Send one of the welcome emails again; follow until it is sent
    ///
    /// The email keeps its Message-ID, so mail clients fold it with the first one; the
    /// welcome email carries the current invitation. Allowed while active.
    ///
    /// Exit status: 0 sent, 1 refused or not delivered, 3 timed out.
    #[command(after_help = "Example:\n  \
        tenants resend-email --org acme --slug production --email console_url")]
    ResendEmail(ResendArgs),
    /// Issue, list and revoke your own API tokens
    Tokens(tokens::TokensArgs),
}

#[derive(Args)]
#[command(group(ArgGroup::new("who").required(true).args(["org", "operator"])))]
struct BootstrapArgs {
    /// Slug of the organisation to create (lowercase words joined by dashes, at most 30)
    #[arg(long, requires = "owner", conflicts_with = "operator")]
    org: Option<String>,

    /// Display name of the organisation [default: the slug]
    #[arg(long, requires = "org")]
    org_name: Option<String>,

    /// Name of the principal who owns the new organisation
    #[arg(long, requires = "org")]
    owner: Option<String>,

    /// Create a platform operator (may act in every organisation) with this name instead
    #[arg(long)]
    operator: Option<String>,

    /// Control-plane database URL [env: TP_DATABASE_URL]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,

    /// Also write the token to ~/.config/tenant-provisioner/token (mode 0600)
    #[arg(long)]
    save_token: bool,
}

#[derive(Args)]
struct CreateArgs {
    /// Organisation slug that will own the tenant
    #[arg(long)]
    org: String,

    #[command(flatten)]
    tenant: TenantSlug,

    /// Plan tier, e.g. free, growth or enterprise
    #[arg(long)]
    plan: String,

    /// Email address of the tenant's first admin, who receives the welcome emails
    #[arg(long = "first-admin", value_name = "EMAIL")]
    first_admin: String,

    /// Tenant name [default: the slug]
    #[arg(long)]
    name: Option<String>,

    /// Return as soon as the request is accepted
    #[arg(long)]
    no_wait: bool,

    /// Seconds to wait for the tenant to become active or failed
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    timeout: u64,

    #[command(flatten)]
    api: ApiOptions,
}

/// The tenant a command is about: `--slug <SLUG>`, or the slug alone, as a convenience.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct TenantSlug {
    /// Tenant slug: lowercase words joined by dashes, at most 30 characters
    #[arg(long = "slug", value_name = "SLUG")]
    flag: Option<String>,

    /// Tenant slug, given alone instead of --slug
    #[arg(value_name = "SLUG")]
    word: Option<String>,
}

impl TenantSlug {
    fn slug(&self) -> &str {
        // clap lets exactly one of them through.
        self.flag
            .as_deref()
            .or(self.word.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Args)]
struct TenantArgs {
    /// Organisation slug
    #[arg(long)]
    org: String,

    #[command(flatten)]
    tenant: TenantSlug,

    #[command(flatten)]
    api: ApiOptions,
}

#[derive(Args)]
struct ActionArgs {
    /// Organisation slug
    #[arg(long)]
    org: String,

    #[command(flatten)]
    tenant: TenantSlug,

    /// Return as soon as the workflow accepted the action
    #[arg(long)]
    no_wait: bool,

    /// Seconds to wait for the action's outcome (its stable state, or its email)
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    timeout: u64,

    #[command(flatten)]
    api: ApiOptions,
}

#[derive(Args)]
struct ResendArgs {
    #[command(flatten)]
    action: ActionArgs,

    /// Which welcome email to send again
    #[arg(long, value_enum, value_name = "EMAIL")]
    email: EmailArg,
}

/// The welcome emails, named as the API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EmailArg {
    /// The welcome email, with the invitation link
    #[value(name = "welcome")]
    Welcome,
    /// The email with the tenant's console URL
    #[value(name = "console_url")]
    ConsoleUrl,
    /// The getting-started email
    #[value(name = "onboarding")]
    Onboarding,
}

impl From<EmailArg> for EmailKind {
    fn from(arg: EmailArg) -> Self {
        match arg {
            EmailArg::Welcome => EmailKind::Welcome,
            EmailArg::ConsoleUrl => EmailKind::ConsoleUrl,
            EmailArg::Onboarding => EmailKind::Onboarding,
        }
    }
}

#[derive(Args)]
struct ListArgs {
    /// Organisation slug
    #[arg(long)]
    org: String,

    /// Only tenants in this state (provisioning, active, suspended, compensating, failed,
    /// decommissioning, decommissioned)
    #[arg(long)]
    state: Option<String>,

    #[command(flatten)]
    api: ApiOptions,
}

#[derive(Args)]
struct EventsArgs {
    /// Organisation slug
    #[arg(long)]
    org: String,

    #[command(flatten)]
    tenant: TenantSlug,

    /// Only events after this event id
    #[arg(long, default_value_t = 0)]
    after: i64,

    /// Keep printing new events as they happen (stop with ctrl-c); with -o json, one JSON
    /// object per line
    #[arg(long, short)]
    follow: bool,

    #[command(flatten)]
    api: ApiOptions,
}

/// Parses the command line and runs the command.
pub async fn main() -> ExitCode {
    die_quietly_on_a_closed_pipe();
    let cli = Cli::parse();
    run(cli).await.into()
}

async fn run(cli: Cli) -> Outcome {
    let format = cli.output;
    if let Command::Bootstrap(args) = &cli.command {
        if cli.api.api_url.is_some() || cli.api.token.is_some() {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "bootstrap talks to the control-plane database, not the API: it takes \
                     --database-url (or TP_DATABASE_URL), not --api-url or --token",
                )
                .exit();
        }
        return bootstrap::bootstrap(args).await;
    }
    let (api_url, token) = cli.api_options().unwrap_or_default();
    let api_url = api_url
        .or_else(|| env_value("TP_API_URL"))
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    let token = match token
        .filter(|t| !t.trim().is_empty())
        .or_else(|| env_value("TP_TOKEN"))
        .or_else(read_token_file)
    {
        Some(token) => token,
        None => {
            eprintln!(
                "error: no API token; pass --token, set TP_TOKEN, or save one to {}",
                token_file()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "~/.config/tenant-provisioner/token".into())
            );
            return Outcome::Failure;
        }
    };
    if let Command::Tokens(args) = cli.command {
        return tokens::tokens(&api_url, token, args, format).await;
    }
    let client = match ApiClient::new(&api_url, token) {
        Ok(client) => client,
        Err(err) => return report(err),
    };
    let result = match cli.command {
        Command::Bootstrap(_) => unreachable!("handled above"),
        Command::Tokens(_) => unreachable!("handled above"),
        Command::Create(args) => return create::create(&client, args, format).await,
        Command::Get(args) => output::get(&client, &args.org, args.tenant.slug(), format).await,
        Command::List(args) => {
            output::list(&client, &args.org, args.state.as_deref(), format).await
        }
        Command::Events(args) if args.follow => {
            let slug = args.tenant.slug();
            output::follow_events(&client, &args.org, slug, args.after, format).await
        }
        Command::Events(args) => {
            output::events(&client, &args.org, args.tenant.slug(), args.after, format).await
        }
        Command::Retry(args) => {
            return lifecycle::run(&client, LifecycleAction::Retry, args, format).await;
        }
        Command::Decommission(args) => {
            return lifecycle::run(&client, LifecycleAction::Decommission, args, format).await;
        }
        Command::Suspend(args) => {
            return lifecycle::run(&client, LifecycleAction::Suspend, args, format).await;
        }
        Command::Resume(args) => {
            return lifecycle::run(&client, LifecycleAction::Resume, args, format).await;
        }
        Command::ReissueInvitation(args) => {
            let action = LifecycleAction::ReissueInvitation;
            return lifecycle::run_email(&client, action, None, args, format).await;
        }
        Command::ResendEmail(args) => {
            let (action, email) = (LifecycleAction::ResendEmail, Some(args.email.into()));
            return lifecycle::run_email(&client, action, email, args.action, format).await;
        }
    };
    match result {
        Ok(()) => Outcome::Success,
        Err(err) => report(err),
    }
}

/// Lets a write to a closed pipe end the process silently, as it ends `cat` or `grep`:
/// `tenants list -o json | head` must not panic when `head` stops reading. Rust ignores
/// SIGPIPE, which turns such a write into an error that `println!` panics on. The API and
/// the database are reached over TCP, whose writes never raise SIGPIPE (Rust sends with
/// MSG_NOSIGNAL), so only stdout and stderr are concerned. (`bootstrap` given a database
/// on a unix socket that closes mid-write would end the same quiet way.)
fn die_quietly_on_a_closed_pipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: the default disposition runs no code of ours in the handler, and nothing else
    // in this process installs a SIGPIPE handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

impl Cli {
    /// The API URL and token given on the command line, after the command or else before
    /// it; `None` for `bootstrap`, which does not call the API.
    fn api_options(&self) -> Option<(Option<String>, Option<String>)> {
        let api = match &self.command {
            Command::Bootstrap(_) => return None,
            Command::Tokens(args) => &args.api,
            Command::Create(args) => &args.api,
            Command::Get(args) => &args.api,
            Command::List(args) => &args.api,
            Command::Events(args) => &args.api,
            Command::Retry(args)
            | Command::Decommission(args)
            | Command::Suspend(args)
            | Command::Resume(args)
            | Command::ReissueInvitation(args) => &args.api,
            Command::ResendEmail(args) => &args.action.api,
        };
        Some((
            api.api_url.clone().or_else(|| self.api.api_url.clone()),
            api.token.clone().or_else(|| self.api.token.clone()),
        ))
    }
}

/// Prints an error the way every command does: `error: <detail>`, then one line per field.
/// The detail is the server's text, so it is made printable.
fn report(err: ClientError) -> Outcome {
    output::eprintln_printable!("error: {err}");
    if let ClientError::Problem(problem) = &err {
        for field in &problem.errors {
            output::eprintln_printable!("  {}: {}", field.field, field.message);
        }
    }
    Outcome::Failure
}

/// Where a saved token lives: `$XDG_CONFIG_HOME` or `~/.config`, then
/// `tenant-provisioner/token`.
pub fn token_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("tenant-provisioner").join("token"))
}

/// An environment variable's value, when it is set to something other than blanks.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn read_token_file() -> Option<String> {
    let text = std::fs::read_to_string(token_file()?).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bootstrap_needs_an_org_with_owner_or_an_operator() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                [
                    &["tenants", "bootstrap", "--database-url", "postgres://x"],
                    args,
                ]
                .concat(),
            )
        };
        assert!(parse(&["--org", "acme", "--owner", "alice"]).is_ok());
        assert!(parse(&["--operator", "ops"]).is_ok());
        assert!(parse(&["--org", "acme"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--org", "acme", "--owner", "alice", "--operator", "ops"]).is_err());
    }

    #[test]
    fn api_options_go_before_or_after_the_command_but_not_to_bootstrap() {
        let given = |args: &[&str]| {
            Cli::try_parse_from([&["tenants"], args].concat())
                .unwrap()
                .api_options()
        };
        let some = |url: Option<&str>, token: Option<&str>| {
            Some((url.map(str::to_owned), token.map(str::to_owned)))
        };
        let list = ["list", "--org", "acme"];
        assert_eq!(given(&list), some(None, None));
        assert_eq!(
            given(&[&["--token", "a"][..], &list].concat()),
            some(None, Some("a"))
        );
        assert_eq!(
            given(&[&list[..], &["--token", "b"]].concat()),
            some(None, Some("b"))
        );
        assert_eq!(
            given(&[&["--token", "a"][..], &list, &["--token", "b"]].concat()),
            some(None, Some("b")),
            "the one after the command wins"
        );
        assert_eq!(
            given(&["tokens", "--api-url", "http://x", "list", "--token", "c"]),
            some(Some("http://x"), Some("c"))
        );
        assert_eq!(given(&["bootstrap", "--operator", "ops"]), None);

        for option in ["--token", "--api-url"] {
            let err =
                Cli::try_parse_from(["tenants", "bootstrap", "--operator", "ops", option, "x"]);
            assert_eq!(
                err.err().map(|e| e.kind()),
                Some(clap::error::ErrorKind::UnknownArgument),
                "{option}"
            );
        }
    }

    #[test]
    fn email_actions_take_the_api_names_of_the_emails() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["tenants"], args].concat());
        let Ok(Cli {
            command: Command::ResendEmail(args),
            ..
        }) = parse(&[
            "resend-email",
            "--org",
            "acme",
            "prod",
            "--email",
            "console_url",
            "--no-wait",
        ])
        else {
            panic!("resend-email does not parse")
        };
        assert_eq!(EmailKind::from(args.email), EmailKind::ConsoleUrl);
        assert_eq!(
            (args.action.org.as_str(), args.action.tenant.slug()),
            ("acme", "prod")
        );
        assert!(args.action.no_wait);
        assert!(parse(&["resend-email", "--org", "acme", "prod"]).is_err());
        assert!(
            parse(&[
                "resend-email",
                "--org",
                "acme",
                "prod",
                "--email",
                "invoice"
            ])
            .is_err()
        );
        assert!(parse(&["reissue-invitation", "--org", "acme", "prod"]).is_ok());
        for kind in EmailKind::ALL {
            let name = EmailArg::from_str(kind.as_str(), false).map(EmailKind::from);
            assert_eq!(name, Ok(kind));
        }
    }

    #[test]
    fn every_tenant_command_takes_the_slug_either_way() {
        let slug = |args: &[&str]| -> Result<String, clap::error::ErrorKind> {
            let cli = Cli::try_parse_from([&["tenants"], args].concat()).map_err(|e| e.kind())?;
            Ok(match cli.command {
                Command::Create(a) => a.tenant.slug().to_owned(),
                Command::Get(a) => a.tenant.slug().to_owned(),
                Command::Events(a) => a.tenant.slug().to_owned(),
                Command::Retry(a)
                | Command::Decommission(a)
                | Command::Suspend(a)
                | Command::Resume(a)
                | Command::ReissueInvitation(a) => a.tenant.slug().to_owned(),
                Command::ResendEmail(a) => a.action.tenant.slug().to_owned(),
                _ => unreachable!("not a tenant command"),
            })
        };
        let create = ["create", "--plan", "free", "--first-admin", "a@example.com"];
        let resend = ["resend-email", "--email", "welcome"];
        let commands: [&[&str]; 9] = [
            &create,
            &["get"],
            &["events"],
            &["retry"],
            &["decommission"],
            &["suspend"],
            &["resume"],
            &["reissue-invitation"],
            &resend,
        ];
        for command in commands {
            let with = |rest: &[&str]| slug(&[command, &["--org", "acme"], rest].concat());
            assert_eq!(with(&["--slug", "prod"]), Ok("prod".into()), "{command:?}");
            assert_eq!(with(&["prod"]), Ok("prod".into()), "{command:?}");
            assert_eq!(
                with(&[]),
                Err(clap::error::ErrorKind::MissingRequiredArgument),
                "{command:?}"
            );
            assert_eq!(
                with(&["--slug", "prod", "prod"]),
                Err(clap::error::ErrorKind::ArgumentConflict),
                "{command:?}"
            );
        }
    }

    #[test]
    fn help_never_shows_the_token() {
        // SAFETY: tests in this module do not read TP_TOKEN concurrently.
        unsafe { std::env::set_var("TP_TOKEN", "tp_secret_value_for_help_test") };
        let help = Cli::command().render_long_help().to_string();
        unsafe { std::env::remove_var("TP_TOKEN") };
        assert!(!help.contains("tp_secret_value_for_help_test"));
    }
}
