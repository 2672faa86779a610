//! The master patient index's matching engine: compares person records field by field,
//! scores candidate pairs with a Fellegi-Sunter model trained without labels, and groups
//! matches into clusters. It knows nothing about FHIR storage or HTTP.
//!
//! - `record`: the generic person fields; `columns` reads them from CSV, `fhir` from a
//!   Patient resource.
//! - `prepare`, `text`, `similarity`: normalising, interning and string similarity.
//! - `compare`: the comparisons and their levels; `blocking`: which pairs get compared.
//! - `model`: m and u per level, weights, thresholds, explanations, save and load.
//! - `train`: u by random sampling, m by EM.
//! - `batch`: dedupe and link whole data sets; `cluster`: connected components.
//! - `index`: add, replace, remove and look up one record at a time.
//! - `metrics`: precision, recall and F1 against known matches.

mod batch;
mod blocking;
mod cluster;
mod columns;
mod compare;
mod error;
mod fhir;
mod index;
mod metrics;
mod model;
mod prepare;
mod record;
mod similarity;
mod text;
mod train;

pub use batch::{
    Dataset, Outcome, Progress, Quiet, RuleReport, ScoredPair, Training, score, train_and_score,
};
pub use blocking::{BlockingRule, KeyPart};
pub use cluster::{Clusters, cluster};
pub use columns::{ColumnMap, read_records};
pub use compare::ComparisonKind;
pub use error::Error;
pub use fhir::{US_SSN_SYSTEM, record_from_patient};
pub use index::{Candidate, Index};
pub use metrics::{Accuracy, cluster_pairs, pairwise};
pub use model::{
    Comparison, Explanation, Level, Limits, MODEL_VERSION, MatchClass, Model, Term, Thresholds,
    TrainingReport, probability,
};
pub use record::{Field, Identifier, Record};
