//! Benchmarks, run by `scripts/bench.sh` (ignored in the normal test run): how long a
//! request takes to become an active tenant as tenants accumulate on one stack. Machines
//! here are shared and noisy, so read the ratios between rows of one run, not the
//! absolute numbers.

mod common;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tenant_tests::Stack;

/// Provisions tenants one after another and prints request → active per tenant.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with scripts/bench.sh"]
async fn request_to_active_as_tenants_accumulate() -> anyhow::Result<()> {
    let count: usize = std::env::var("TP_BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let stack = Stack::start().await?;
    let mut timings = Vec::new();
    for i in 1..=count {
        let slug = format!("bench{i}");
        let started = Instant::now();
        let created = stack
            .create_tenant(&slug, "enterprise", "bench@example.com", None)
            .await?;
        anyhow::ensure!(created.status == StatusCode::ACCEPTED, "{}", created.body);
        stack
            .wait_for_state(&slug, "active", Duration::from_secs(120))
            .await?;
        timings.push(started.elapsed());
    }
    println!("| tenants already active | request → active (ms) |");
    println!("|---|---|");
    for (i, t) in timings.iter().enumerate() {
        if i == 0 || (i + 1) % 5 == 0 {
            println!("| {i} | {} |", t.as_millis());
        }
    }
    let first_five: Duration = timings.iter().take(5).sum();
    let last_five: Duration = timings.iter().rev().take(5).sum();
    println!(
        "\nmean of the first 5: {} ms; mean of the last 5: {} ms; ratio last/first: {:.2}",
        first_five.as_millis() / 5,
        last_five.as_millis() / 5,
        last_five.as_secs_f64() / first_five.as_secs_f64()
    );
    Ok(())
}
