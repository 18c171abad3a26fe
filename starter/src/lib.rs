//! The front doors of the tenant provisioner: the HTTP API the console backend calls and
//! the operators' CLI.
//!
//! - [`api`]: the axum router and its state. `POST /api/v1/organizations/{org}/tenants`
//!   authenticates the caller, checks its role, applies the one validation rule from
//!   `tenant_domain`, reserves the slot in the store and starts the saga; reads return the
//!   stored tenant, its resource ledger, its audit feed and the workflow's live status.
//!   `api::error` is the single error type, rendered as RFC 9457 problem+json.
//! - [`engine`]: how the API calls [`saga::Saga`]: every call bounded by a deadline, so a
//!   Temporal outage is a prompt 503.
//! - [`saga`]: the Temporal client (owned by the workflow side; used here, not changed).
//! - [`cli`]: the `tenants` command. It talks only to the HTTP API, except `bootstrap`,
//!   which creates the first organisation or operator and its token in the database.
//!
//! Binaries are thin: `src/bin/tenant-api.rs` (the server) and `src/bin/tenants.rs`.
//! Nothing here allocates tenant resources or writes tenant state beyond accepting a
//! request: the saga does that. Tokens and Authorization headers never reach a log.

pub mod api;
pub mod cli;
pub mod engine;
pub mod saga;
