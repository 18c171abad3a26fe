//! Tenants, their slots and their state as the API reads it, with what became of their
//! welcome emails (the rows themselves are written by the email activity).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tenant_domain::{DerivedNames, Phase, PhaseFailure, TenantState, ValidRequest};
use uuid::Uuid;

use crate::{NewEvent, Store, audit::append_event_in};

/// A tenant as stored.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct TenantRow {
    pub id: Uuid,
    pub org_slug: String,
    pub slug: String,
    pub label: String,
    pub host: String,
    pub name: String,
    pub plan: String,
    pub first_admin_email: String,
    pub state: String,
    pub phase: Option<String>,
    pub incarnation: i32,
    pub workflow_id: String,
    pub run_id: Option<String>,
    pub requested_by: String,
    pub last_error: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantRow {
    pub fn state(&self) -> TenantState {
        TenantState::parse(&self.state).unwrap_or(TenantState::Failed)
    }

    /// True when `request` asks for exactly what this tenant already is.
    pub fn same_request(&self, request: &ValidRequest) -> bool {
        self.org_slug == request.org
            && self.slug == request.slug
            && self.plan == request.plan
            && self.first_admin_email == request.first_admin_email
            && self.name == request.name
    }
}

/// What became of one welcome email of one incarnation, as the email activity recorded it.
/// The recipient is left out: it is the tenant's first admin.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct EmailDeliveryRow {
    /// `welcome`, `console_url` or `onboarding`.
    pub kind: String,
    /// `sent` or `refused`.
    pub status: String,
    /// The SMTP server's answer when it refused.
    pub error: Option<String>,
    /// Sends so far: 1 for the saga's, +1 per operator resend (or re-issue, for `welcome`).
    pub attempts: i32,
    pub message_id: String,
    pub updated_at: DateTime<Utc>,
}

/// What accepting a create request did.
#[derive(Debug)]
pub enum AcceptOutcome {
    /// A new tenant, or a new incarnation of a decommissioned one, now `provisioning`.
    Accepted(TenantRow),
    /// The identical request was accepted before: this is that tenant.
    Existing(TenantRow),
}

/// Why a create request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The key is held by a tenant whose request differs.
    #[error("tenant {org}/{slug} already exists with a different request")]
    KeyHeld { org: String, slug: String },
    /// The host name label is held by another key.
    #[error("host name label {label} is held by another tenant")]
    LabelHeld {
        label: String,
        holder_org: String,
        holder_slug: String,
    },
    /// The organisation holds as many tenants on the plan as the plan allows.
    #[error(
        "organisation {org} already has {count} tenants on plan {plan}, the most that plan allows per organisation"
    )]
    QuotaReached {
        org: String,
        plan: String,
        count: i64,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The error type of a last error that says a release keeps failing.
pub const RELEASE_FAILED: &str = "ReleaseFailed";

const TENANT_COLUMNS: &str =
    "id, org_slug, slug, label, host, name, plan, first_admin_email, state, phase,
    incarnation, workflow_id, run_id, requested_by, last_error, created_at, updated_at";

impl Store {
    /// Reserves the tenant's slot (key and host label) and records the request, in one
    /// transaction. Nothing is allocated here: the saga does that.
    pub async fn accept_tenant(
        &self,
        request: &ValidRequest,
        names: &DerivedNames,
        requested_by: &str,
    ) -> Result<AcceptOutcome, AcceptError> {
        let mut tx = self.pool.begin().await?;
        // Serialises requests of one organisation, so concurrent requests cannot all pass
        // the quota check; always taken before the label lock, so the two cannot deadlock.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 13))")
            .bind(&request.org)
            .execute(&mut *tx)
            .await?;
        // Serialises requests for the same label, so two keys sharing it cannot both win.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 11))")
            .bind(&names.label)
            .execute(&mut *tx)
            .await?;

        let existing: Option<TenantRow> = sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1 FOR UPDATE"
        ))
        .bind(names.tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing.as_ref().filter(|row| row.state().holds_slot()) {
            if row.same_request(request) {
                return Ok(AcceptOutcome::Existing(row.clone()));
            }
            return Err(AcceptError::KeyHeld {
                org: row.org_slug.clone(),
                slug: row.slug.clone(),
            });
        }

        let holder: Option<(String, String)> = sqlx::query_as(
            "SELECT org_slug, slug FROM tenants WHERE label = $1 AND state <> 'decommissioned' AND id <> $2",
        )
        .bind(&names.label)
        .bind(names.tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((holder_org, holder_slug)) = holder {
            return Err(AcceptError::LabelHeld {
                label: names.label.clone(),
                holder_org,
                holder_slug,
            });
        }

        let (count, max): (i64, i32) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM tenants
                     WHERE org_slug = $1 AND plan = $2 AND state <> 'decommissioned'),
                    (SELECT max_tenants_per_org FROM plans WHERE name = $2)",
        )
        .bind(&request.org)
        .bind(&request.plan)
        .fetch_one(&mut *tx)
        .await?;
        if count >= i64::from(max) {
            return Err(AcceptError::QuotaReached {
                org: request.org.clone(),
                plan: request.plan.clone(),
                count,
            });
        }

        let row: TenantRow = sqlx::query_as(&format!(
            "INSERT INTO tenants (id, org_slug, slug, label, host, name, plan, first_admin_email, state,
                                  phase, incarnation, workflow_id, run_id, requested_by, last_error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'provisioning', NULL, 1, $9, NULL, $10, NULL)
             ON CONFLICT (id) DO UPDATE SET
                 name = EXCLUDED.name, plan = EXCLUDED.plan, host = EXCLUDED.host,
                 first_admin_email = EXCLUDED.first_admin_email, state = 'provisioning', phase = NULL,
                 incarnation = tenants.incarnation + 1, run_id = NULL,
                 requested_by = EXCLUDED.requested_by, last_error = NULL, updated_at = now()
             RETURNING {TENANT_COLUMNS}"
        ))
        .bind(names.tenant_id)
        .bind(&request.org)
        .bind(&request.slug)
        .bind(&names.label)
        .bind(&names.host)
        .bind(&request.name)
        .bind(&request.plan)
        .bind(&request.first_admin_email)
        .bind(&names.workflow_id)
        .bind(requested_by)
        .fetch_one(&mut *tx)
        .await?;

        append_event_in(
            &mut tx,
            &NewEvent {
                tenant_id: row.id,
                incarnation: row.incarnation,
                run_id: format!("request-{}", row.incarnation),
                event_key: "request_accepted".into(),
                kind: "request_accepted".into(),
                state: Some(TenantState::Provisioning.as_str().into()),
                actor: requested_by.into(),
                message: format!(
                    "request accepted: {}/{} on plan {} (incarnation {})",
                    row.org_slug, row.slug, row.plan, row.incarnation
                ),
                ..Default::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(AcceptOutcome::Accepted(row))
    }

    pub async fn tenant(&self, org: &str, slug: &str) -> sqlx::Result<Option<TenantRow>> {
        sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE org_slug = $1 AND slug = $2"
        ))
        .bind(org)
        .bind(slug)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn tenant_by_id(&self, id: Uuid) -> sqlx::Result<Option<TenantRow>> {
        sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// The recorded welcome emails of one incarnation of a tenant, by kind. An email not
    /// yet sent has no row.
    pub async fn email_deliveries(
        &self,
        tenant_id: Uuid,
        incarnation: i32,
    ) -> sqlx::Result<Vec<EmailDeliveryRow>> {
        sqlx::query_as(
            "SELECT kind, status, error, attempts, message_id, updated_at FROM email_deliveries
             WHERE tenant_id = $1 AND incarnation = $2 ORDER BY kind",
        )
        .bind(tenant_id)
        .bind(incarnation)
        .fetch_all(&self.pool)
        .await
    }

    /// Tenants of an organisation, by slug, optionally in one state; `after` is the last
    /// slug of the previous page.
    pub async fn list_tenants(
        &self,
        org: &str,
        state: Option<TenantState>,
        after: Option<&str>,
        limit: i64,
    ) -> sqlx::Result<Vec<TenantRow>> {
        sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants
             WHERE org_slug = $1 AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR slug > $3)
             ORDER BY slug LIMIT $4"
        ))
        .bind(org)
        .bind(state.map(|s| s.as_str()))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Workflow ids of every tenant in one of `states`, for start-up reconciliation.
    pub async fn workflow_ids_in_states(
        &self,
        states: &[TenantState],
    ) -> sqlx::Result<Vec<String>> {
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        sqlx::query_scalar(
            "SELECT workflow_id FROM tenants WHERE state = ANY($1) ORDER BY workflow_id",
        )
        .bind(states)
        .fetch_all(&self.pool)
        .await
    }

    /// Records the workflow run serving the tenant's current incarnation.
    pub async fn set_run_id(
        &self,
        tenant_id: Uuid,
        incarnation: i32,
        run_id: &str,
    ) -> sqlx::Result<()> {
        sqlx::query("UPDATE tenants SET run_id = $3 WHERE id = $1 AND incarnation = $2")
            .bind(tenant_id)
            .bind(incarnation)
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Shows a release that keeps failing during decommission as the tenant's last error
    /// (`Some`), or clears such an error once the release succeeded (`None`); an error of
    /// any other kind is left as it is.
    pub async fn set_release_error(
        &self,
        tenant_id: Uuid,
        incarnation: i32,
        failure: Option<&PhaseFailure>,
    ) -> sqlx::Result<()> {
        let failure = failure.map(|e| serde_json::to_value(e).unwrap_or_default());
        sqlx::query(
            "UPDATE tenants SET last_error = $3, updated_at = now()
             WHERE id = $1 AND incarnation = $2 AND state = 'decommissioning'
               AND ($3::jsonb IS NOT NULL OR last_error->>'error_type' = $4)",
        )
        .bind(tenant_id)
        .bind(incarnation)
        .bind(failure)
        .bind(RELEASE_FAILED)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes the tenant's state and phase together with the audit event describing the
    /// change. A stale write for an earlier incarnation changes nothing.
    pub async fn record_state(
        &self,
        incarnation: i32,
        state: TenantState,
        phase: Option<Phase>,
        last_error: Option<&PhaseFailure>,
        event: &NewEvent,
    ) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        if append_event_in(&mut tx, event).await? {
            let last_error = last_error.map(|e| serde_json::to_value(e).unwrap_or_default());
            sqlx::query(
                "UPDATE tenants SET state = $3, phase = $4, run_id = $5,
                        last_error = COALESCE($6, CASE WHEN $3 IN ('provisioning', 'active') THEN NULL ELSE last_error END),
                        updated_at = now()
                 WHERE id = $1 AND incarnation = $2",
            )
            .bind(event.tenant_id)
            .bind(incarnation)
            .bind(state.as_str())
            .bind(phase.map(|p| p.as_str()))
            .bind(&event.run_id)
            .bind(last_error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}
