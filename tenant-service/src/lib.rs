//! `tenant-service`: the workload every tenant runs, serving HTTP on a unix socket with its
//! own PostgreSQL database, and the tenant's identity endpoint.
//!
//! Map of the crate:
//! - [`server`]: settings from the environment, the single-copy lock, the socket, stopping;
//! - [`app`]: the HTTP interface (console, OpenID Connect discovery and JWKS, invitation,
//!   sign-in, userinfo, health);
//! - [`db`]: the tenant database's schema and queries, including what the platform writes
//!   into it (realm key, invitation, suspended flag), so the schema has one author;
//! - [`token`]: EdDSA-signed access tokens; [`password`]: argon2id; [`pages`]: HTML.
//!
//! The service knows nothing of the control plane: everything it serves comes from its own
//! database, where the platform's deploy step copied the realm. It must never log its
//! database URL, a password, a token, an invitation code or the realm's private key.

pub mod app;
pub mod db;
pub mod pages;
pub mod password;
pub mod server;
pub mod token;

/// Exit code: the environment is incomplete or malformed.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: another copy of this tenant's service holds the lock. The platform's driver
/// reads it as "a copy already runs".
pub const EXIT_LOCK_HELD: u8 = 3;
