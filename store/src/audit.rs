//! The append-only audit feed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{EVENTS_CHANNEL, Store};

/// An event to append. `(tenant_id, run_id, event_key)` identifies it: appending the same
/// key twice (a retried activity) stores it once.
#[derive(Clone, Debug, Default)]
pub struct NewEvent {
    pub tenant_id: Uuid,
    pub incarnation: i32,
    pub run_id: String,
    pub event_key: String,
    pub kind: String,
    pub phase: Option<String>,
    pub attempt: Option<i32>,
    pub state: Option<String>,
    pub actor: String,
    pub message: String,
    pub detail: Option<serde_json::Value>,
}

/// A stored event; `id` grows with commit order within a tenant's feed.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: i64,
    pub tenant_id: Uuid,
    pub incarnation: i32,
    pub run_id: String,
    pub kind: String,
    pub phase: Option<String>,
    pub attempt: Option<i32>,
    pub state: Option<String>,
    pub actor: String,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub at: DateTime<Utc>,
}

impl Store {
    /// Appends an event unless its key is already there; true when it was new.
    pub async fn append_event(&self, event: &NewEvent) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = append_event_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// The tenant's events after `after_id`, oldest first.
    pub async fn events(
        &self,
        tenant_id: Uuid,
        after_id: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<AuditEvent>> {
        sqlx::query_as(
            "SELECT id, tenant_id, incarnation, run_id, kind, phase, attempt, state, actor, message, detail, at
             FROM audit_events WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(tenant_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}

/// Appends within a caller's transaction, so an event commits with the change it describes.
///
/// A per-tenant transaction lock orders appends: ids are taken from a sequence, so without
/// it a reader could see id 12 committed before id 11 and skip 11 when resuming after 12.
pub(crate) async fn append_event_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    event: &NewEvent,
) -> sqlx::Result<bool> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))")
        .bind(event.tenant_id)
        .execute(&mut **tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO audit_events
            (tenant_id, incarnation, run_id, event_key, kind, phase, attempt, state, actor, message, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (tenant_id, run_id, event_key) DO NOTHING",
    )
    .bind(event.tenant_id)
    .bind(event.incarnation)
    .bind(&event.run_id)
    .bind(&event.event_key)
    .bind(&event.kind)
    .bind(&event.phase)
    .bind(event.attempt)
    .bind(&event.state)
    .bind(&event.actor)
    .bind(&event.message)
    .bind(&event.detail)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(EVENTS_CHANNEL)
            .bind(event.tenant_id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(inserted)
}
