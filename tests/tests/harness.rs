//! Self-test of the integration harness: the servers come up on their own ports, answer,
//! and are gone (processes, database, directories) once the stack is dropped.
//!
//! While the worker, API or CLI binaries are not built yet, the whole-platform test below
//! says so and checks only the servers: that path is for bootstrapping the project, and
//! the full check takes over by itself once `cargo build --workspace --bins` produces them.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use tenant_tests::{Stack, StackOptions, app_binaries_present, bin_dir, missing_app_binaries};

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// Pids of every process carrying the stack's mark (see the harness's STACK_MARK).
fn marked_pids(id: &str) -> Vec<i32> {
    let mark = format!("TP_HARNESS_ID={id}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            environ
                .split(|b| *b == 0)
                .any(|v| v == mark.as_bytes())
                .then_some(pid)
        })
        .collect()
}

async fn database_exists(pg_url: &str, name: &str) -> anyhow::Result<bool> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&format!("{pg_url}/postgres")).await?;
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await?;
    Ok(found.is_some())
}

struct Left {
    id: String,
    pg_url: String,
    database: String,
    runtime_dir: PathBuf,
    temp_dir: PathBuf,
}

impl Left {
    fn of(stack: &Stack) -> Self {
        Left {
            id: stack.id.clone(),
            pg_url: stack.pg_url.clone(),
            database: stack.database.clone(),
            runtime_dir: stack.runtime_dir.clone(),
            temp_dir: stack.temp_dir.clone(),
        }
    }

    /// Nothing of the stack may remain after Drop.
    async fn assert_gone(&self, pids: &[i32]) -> anyhow::Result<()> {
        for pid in pids {
            assert!(
                !alive(*pid),
                "process {pid} of stack {} survived Drop",
                self.id
            );
        }
        assert!(
            marked_pids(&self.id).is_empty(),
            "marked processes survived Drop"
        );
        assert!(
            !database_exists(&self.pg_url, &self.database).await?,
            "database {} survived Drop",
            self.database
        );
        assert!(!self.runtime_dir.exists(), "runtime dir survived Drop");
        assert!(!self.temp_dir.exists(), "temp dir survived Drop");
        Ok(())
    }
}

/// Temporal, Caddy's admin API, maildev and a fresh database come up on free ports, and
/// Drop takes every one of them down again.
#[tokio::test]
async fn servers_come_up_and_drop_tears_them_down() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackOptions {
        app: false,
        ..StackOptions::default()
    })
    .await?;
    assert!(
        stack.runtime_dir.as_os_str().len() <= 30,
        "runtime dir too long for unix sockets"
    );
    assert!(stack.org.starts_with('o') && stack.org.len() == 7);

    let namespaces = stack
        .temporal_cli(&["operator", "namespace", "list"])
        .await?;
    assert!(
        namespaces.contains("default"),
        "no default namespace: {namespaces}"
    );
    let attributes = stack
        .temporal_cli(&["operator", "search-attribute", "list"])
        .await?;
    for name in ["TenantOrg", "TenantSlug", "TenantState", "TenantPhase"] {
        assert!(
            attributes.contains(name),
            "search attribute {name} not registered"
        );
    }

    let pem = stack.caddy_root_certificate().await?;
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    assert!(stack.emails_to("nobody@example.com").await?.is_empty());

    let rows = stack
        .psql("SELECT current_database(), 1 + 1, NULL::text")
        .await?;
    assert_eq!(
        rows,
        vec![vec![Some(stack.database.clone()), Some("2".into()), None]]
    );

    let left = Left::of(&stack);
    let pids = marked_pids(&stack.id);
    assert!(
        pids.len() >= 3,
        "expected Temporal, Caddy and maildev, found {pids:?}"
    );
    drop(stack);
    left.assert_gone(&pids).await
}

/// Mail sent to the stack's SMTP port shows up in `emails_to`.
#[tokio::test]
async fn maildev_receives_mail() -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let stack = Stack::start_with(StackOptions {
        app: false,
        ..StackOptions::default()
    })
    .await?;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", stack.ports.smtp)).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    // A minimal SMTP exchange: read each (possibly multi-line) reply before the next command.
    async fn reply(
        lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    ) -> anyhow::Result<String> {
        loop {
            let line = lines.next_line().await?.unwrap_or_default();
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(line);
            }
        }
    }
    reply(&mut lines).await?;
    for command in [
        "EHLO harness\r\n",
        "MAIL FROM:<harness@example.com>\r\n",
        "RCPT TO:<first.admin@example.com>\r\n",
        "DATA\r\n",
        "Subject: harness check\r\nTo: first.admin@example.com\r\n\r\nhello\r\n.\r\n",
        "QUIT\r\n",
    ] {
        write.write_all(command.as_bytes()).await?;
        let answer = reply(&mut lines).await?;
        assert!(
            !answer.starts_with('4') && !answer.starts_with('5'),
            "{command:?} -> {answer}"
        );
    }

    let mails = stack
        .wait_for_emails("first.admin@example.com", 1, Duration::from_secs(10))
        .await?;
    assert_eq!(mails[0]["subject"], "harness check");
    Ok(())
}

/// The whole platform: worker and API ready, tokens bootstrapped, the worker restartable
/// after SIGKILL. Without the application binaries only the servers are checked (see the
/// module header).
#[tokio::test]
async fn whole_platform_comes_up() -> anyhow::Result<()> {
    if !app_binaries_present() {
        let missing = missing_app_binaries(&bin_dir()?);
        eprintln!(
            "BOOTSTRAP PATH: {} not built yet; checking only the servers (see servers_come_up_and_drop_tears_them_down)",
            missing.join(", ")
        );
        return Ok(());
    }

    let stack = Stack::start().await?;
    assert!(!stack.owner_token.is_empty() && !stack.operator_token.is_empty());
    let ready = reqwest::get(format!("{}/healthz/ready", stack.api_url)).await?;
    assert!(ready.status().is_success());

    stack.kill_worker(nix::sys::signal::Signal::SIGKILL).await?;
    stack.start_worker().await?;

    let log = std::fs::read_to_string(stack.log_path("worker"))?;
    assert_eq!(
        log.matches("===== harness: starting worker").count(),
        2,
        "one worker log, appended"
    );

    let left = Left::of(&stack);
    let pids = marked_pids(&stack.id);
    drop(stack);
    left.assert_gone(&pids).await
}
