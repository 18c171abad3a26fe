//! `tenants bootstrap`: the one command that bypasses the API, because before it runs no
//! one holds a token to call the API with.
//!
//! The organisation slug is checked with the domain's rule (the same one the API applies
//! to the `org` of every tenant request). The token goes to stdout exactly once; every
//! other line goes to stderr, so `TP_TOKEN=$(tenants bootstrap ...)` works.

use std::io::Write;

use anyhow::Context;
use tenant_domain::{TenantRequest, validate};
use tenant_store::Store;
use tenant_store::access::IssuedToken;

use super::{BootstrapArgs, Outcome, env_value, token_file};

/// Longest principal name; it appears as the actor in every audit entry.
const MAX_PRINCIPAL_NAME: usize = 64;
const MAX_ORG_NAME: usize = 200;

pub(super) async fn bootstrap(args: &BootstrapArgs) -> Outcome {
    match run(args).await {
        Ok(()) => Outcome::Success,
        Err(err) => {
            eprintln!("error: {err:#}");
            Outcome::Failure
        }
    }
}

async fn run(args: &BootstrapArgs) -> anyhow::Result<()> {
    // Check everything before touching the database.
    match (&args.org, &args.owner, &args.operator) {
        (Some(org), Some(owner), None) => {
            check_org_slug(org)?;
            check_display_name("--owner", owner, MAX_PRINCIPAL_NAME)?;
            if let Some(name) = &args.org_name {
                check_display_name("--org-name", name, MAX_ORG_NAME)?;
            }
        }
        (None, None, Some(operator)) => {
            check_display_name("--operator", operator, MAX_PRINCIPAL_NAME)?
        }
        _ => anyhow::bail!("pass either --org <slug> --owner <name>, or --operator <name>"),
    }
    let database_url = args
        .database_url
        .clone()
        .filter(|url| !url.trim().is_empty())
        .or_else(|| env_value("TP_DATABASE_URL"))
        .context("no control-plane database URL; pass --database-url or set TP_DATABASE_URL")?;

    let store = Store::connect(&database_url, 2).await?;
    let (principal, token) = match (&args.org, &args.owner, &args.operator) {
        (Some(org), Some(owner), None) => {
            let org_name = args.org_name.as_deref().unwrap_or(org);
            let (owner, token) = store.bootstrap(org, org_name, owner).await?;
            eprintln!(
                "created organisation {org} owned by {} (principal {})",
                owner.name, owner.id
            );
            (owner, token)
        }
        (None, None, Some(operator)) => {
            let (operator, token) = store.bootstrap_operator(operator).await?;
            eprintln!(
                "created platform operator {} (principal {})",
                operator.name, operator.id
            );
            (operator, token)
        }
        _ => unreachable!("checked above"),
    };

    if args.save_token {
        let path = save_token(&token)?;
        eprintln!("saved the token to {}", path.display());
    }
    eprintln!(
        "the API token for {} follows; it is shown only this once:",
        principal.name
    );
    println!("{}", token.expose());
    Ok(())
}

/// Applies the tenant request rule to the organisation slug, with its messages.
fn check_org_slug(org: &str) -> anyhow::Result<()> {
    let probe = TenantRequest {
        org: org.to_owned(),
        slug: "probe".into(),
        plan: "probe".into(),
        first_admin_email: "probe@example.com".into(),
        name: None,
    };
    match validate(&probe, &["probe"]) {
        Ok(_) => Ok(()),
        Err(errors) => {
            let messages: Vec<String> = errors.into_iter().map(|e| e.message).collect();
            anyhow::bail!("--org: {}", messages.join("; "))
        }
    }
}

fn check_display_name(flag: &str, value: &str, max: usize) -> anyhow::Result<()> {
    if value.trim().is_empty() {
        anyhow::bail!("{flag} must not be empty");
    }
    if value.trim() != value {
        anyhow::bail!("{flag} must not start or end with spaces");
    }
    if value.chars().count() > max {
        anyhow::bail!("{flag} is longer than {max} characters");
    }
    if value.chars().any(char::is_control) {
        anyhow::bail!("{flag} must not contain control characters");
    }
    Ok(())
}

fn save_token(token: &IssuedToken) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let path =
        token_file().context("neither XDG_CONFIG_HOME nor HOME is set; cannot save the token")?;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{}", token.expose()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_slugs_follow_the_tenant_rule() {
        assert!(check_org_slug("acme").is_ok());
        assert!(check_org_slug("b-c").is_ok());
        let err = check_org_slug("Acme").unwrap_err().to_string();
        assert!(err.contains("lowercase"), "{err}");
        assert!(check_org_slug(&"a".repeat(31)).is_err());
        assert!(check_org_slug("").is_err());
    }

    #[test]
    fn display_names_are_plain() {
        assert!(check_display_name("--owner", "alice", 64).is_ok());
        assert!(check_display_name("--owner", " alice", 64).is_err());
        assert!(check_display_name("--owner", "a\nb", 64).is_err());
        assert!(check_display_name("--owner", "", 64).is_err());
    }
}
