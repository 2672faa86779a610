//! The FHIR R4 model as data: which resource types exist, what their elements are,
//! which search parameters and compartments they have, and the small rules every
//! layer shares (resource ids, OperationOutcome).
//!
//! This crate knows nothing about storage or HTTP.

pub mod definitions;
pub mod id;
pub mod outcome;

pub use definitions::{Definitions, definitions};
pub use id::is_valid_id;
pub use outcome::{IssueType, Severity, operation_outcome};

/// The FHIR version this server speaks.
pub const FHIR_VERSION: &str = "4.0.1";
