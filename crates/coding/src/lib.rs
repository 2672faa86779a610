//! Clinical coding: the ICD-10-CM and ICD-10-PCS code sets (look-up, hierarchy, notes,
//! free-text search), the Medicare Code Editor's edits and the MS-DRG v43.1 grouper,
//! from the compact tables under `data/coding/`. It knows nothing about FHIR storage or HTTP.
//!
//! Every table is compiled into the binary and parsed on first use; [`icd10cm()`],
//! [`icd10pcs()`], [`grouper()`] and [`mce()`] hand out the shared, read-only instances.

mod date;
pub mod drg;
pub mod icd10cm;
pub mod icd10pcs;
pub mod mce;
mod search;
mod synonyms;
mod table;

use std::sync::OnceLock;

pub use date::Date;
pub use drg::{Claim, ClaimDiagnosis, GroupResult, Grouper, ReturnCode, Severity};
pub use icd10cm::{CmCode, CmKind, Icd10Cm};
pub use icd10pcs::{Icd10Pcs, PcsCode};
pub use mce::{Mce, MceEdit, MceResult};
pub use search::SearchHit;

/// The ICD-10-CM FY2026 code set, loaded on first use.
pub fn icd10cm() -> &'static Icd10Cm {
    static SET: OnceLock<Icd10Cm> = OnceLock::new();
    SET.get_or_init(Icd10Cm::load)
}

/// The ICD-10-PCS FY2026 code set, loaded on first use.
pub fn icd10pcs() -> &'static Icd10Pcs {
    static SET: OnceLock<Icd10Pcs> = OnceLock::new();
    SET.get_or_init(Icd10Pcs::load)
}

/// The MS-DRG v43.1 grouper, loaded on first use.
pub fn grouper() -> &'static Grouper {
    static GROUPER: OnceLock<Grouper> = OnceLock::new();
    GROUPER.get_or_init(Grouper::load)
}

/// The Medicare Code Editor (v43.1 edits), loaded on first use.
pub fn mce() -> &'static Mce {
    static MCE: OnceLock<Mce> = OnceLock::new();
    MCE.get_or_init(Mce::load)
}

/// A code as the tables spell it: upper case, without the dot (`I50.21` is `I5021`).
pub fn normalize_code(code: &str) -> String {
    code.trim()
        .chars()
        .filter(|c| *c != '.')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}
