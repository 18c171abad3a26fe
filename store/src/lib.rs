//! The control-plane store in PostgreSQL.
//!
//! Owns the schema (migrations run by sqlx at start-up) and every query the API, the CLI
//! and the activities make against it: organisations, principals and their tokens, plans,
//! tenants and their slots, the resource ledger and the append-only audit feed. It never
//! talks to Temporal or to a tenant's own systems.

pub mod access;
pub mod audit;
pub mod ledger;
pub mod tenants;

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};

pub use audit::{AuditEvent, NewEvent};
pub use ledger::ResourceRow;
pub use tenants::{AcceptError, AcceptOutcome, TenantRow};

/// Channel on which every appended audit event is announced (payload: the tenant id).
pub const EVENTS_CHANNEL: &str = "tenant_events";

/// A handle on the control-plane database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects and brings the schema up to date. Safe to call from several processes at
    /// once: sqlx serialises migrations with an advisory lock.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .context("connecting to the control-plane database")?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("migrating the control-plane database")?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
