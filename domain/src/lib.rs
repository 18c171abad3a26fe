//! The tenant's vocabulary: the request, the one validation rule, the identity derived from
//! a tenant's key, and the states and phases of its saga.
//!
//! Everything here is a pure function of its input. The API, the CLI and the workflow all
//! call the same code, so no front door can accept what the saga would refuse. This crate
//! must never do I/O, read the clock or draw random numbers: the workflow links it.

pub mod identity;
pub mod model;
pub mod validation;

pub use identity::{DerivedNames, NameLimits, TenantKey};
pub use model::*;
pub use validation::{FieldError, TenantRequest, ValidRequest, validate};
