//! Activities of the `ProvisionTenant` saga: one module per external system.
//!
//! Every allocation is idempotent — a retry after a lost response adopts what this tenant
//! already made, and refuses to touch what another tenant made — and is paired with a
//! release that succeeds when there is nothing left to release. Modules know nothing of
//! Temporal; `temporal` wraps them as activities, records their progress in the audit feed
//! and maps their errors to retryable or non-retryable failures.

pub mod config;
pub mod email;
pub mod error;
pub mod identity;
pub mod secrets;
pub mod storage;
pub mod temporal;
pub mod traffic;
pub mod verify;
pub mod workload;

pub use config::ActivitiesConfig;
pub use error::{StepError, StepResult};
