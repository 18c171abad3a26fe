//! The ledger of resources allocated in a tenant's name.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tenant_domain::ResourceKind;
use uuid::Uuid;

use crate::Store;

/// One allocation, live (`released_at` empty) or released.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct ResourceRow {
    pub kind: String,
    pub name: String,
    pub incarnation: i32,
    pub allocated_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Records that `kind` is allocated as `name`; a repeat while it is live changes nothing.
    pub async fn record_allocation(
        &self,
        tenant_id: Uuid,
        incarnation: i32,
        kind: ResourceKind,
        name: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO resources (tenant_id, incarnation, kind, name) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, kind) WHERE released_at IS NULL DO NOTHING",
        )
        .bind(tenant_id)
        .bind(incarnation)
        .bind(kind.as_str())
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the live allocation of `kind` released; nothing live is not an error.
    pub async fn record_release(&self, tenant_id: Uuid, kind: ResourceKind) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE resources SET released_at = now()
             WHERE tenant_id = $1 AND kind = $2 AND released_at IS NULL",
        )
        .bind(tenant_id)
        .bind(kind.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every allocation of the tenant, oldest first, across incarnations.
    pub async fn resources(&self, tenant_id: Uuid) -> sqlx::Result<Vec<ResourceRow>> {
        sqlx::query_as(
            "SELECT kind, name, incarnation, allocated_at, released_at FROM resources
             WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await
    }
}
