//! Scans: every current resource a bulk export selects, page by page, as stored.
//!
//! A scan reads one snapshot of the store (one read transaction), type by type in
//! name order, each type in `rid` order with keyset pages, and hands out each body
//! as the JSON text it was stored as. Memory stays constant however much it reads.

use crate::Instant;

/// What a scan selects: current, not deleted, resources.
#[derive(Clone, Debug, Default)]
pub struct ScanRequest {
    /// The types to read; empty for every type.
    pub types: Vec<String>,
    /// Only resources changed strictly after this instant (bulk export's `_since`).
    pub since: Option<Instant>,
    /// `None`: every resource (system level). `Some`: only resources in the Patient
    /// compartments of these patients, the Patients themselves included.
    pub patients: Option<Patients>,
    /// Per type, queries of which a resource of that type must match at least one
    /// (bulk export's `_typeFilter`); types without a filter are read whole.
    pub filters: Vec<TypeFilter>,
}

/// Whose Patient compartments a scan reads.
#[derive(Clone, Debug)]
pub enum Patients {
    /// Every patient's.
    All,
    /// These patients' (ids).
    Only(Vec<String>),
}

/// A search a resource of one type must match.
#[derive(Clone, Debug)]
pub struct TypeFilter {
    pub resource_type: String,
    /// A parsed search on `resource_type`; only its clauses count (no sort, no includes).
    pub query: search::Query,
}

/// One resource read by a scan.
#[derive(Clone, Debug)]
pub struct Scanned {
    pub resource_type: String,
    pub id: String,
    /// The stored JSON, one line (the store writes bodies compact).
    pub body: String,
}

/// An open scan: one snapshot of the store, read one page at a time. Blocking: read it
/// off the async runtime. Dropping it ends the snapshot.
pub struct Scan {
    pub(crate) backend: ScanBackend,
}

pub(crate) enum ScanBackend {
    Sqlite(crate::sqlite::scan::SqliteScan),
    Postgres(crate::postgres::scan::PostgresScan),
}

impl Scan {
    /// The instant of the snapshot: every change up to it is in the scan, none after it
    /// (the `lastUpdated` of the newest version in the store; now when it is empty).
    pub fn transaction_time(&self) -> Instant {
        match &self.backend {
            ScanBackend::Sqlite(scan) => scan.transaction_time(),
            ScanBackend::Postgres(scan) => scan.transaction_time(),
        }
    }

    /// How many resources the scan reads at most: those of its types (changed since
    /// `since`), before the patient and type filters.
    pub fn estimate(&self) -> u64 {
        match &self.backend {
            ScanBackend::Sqlite(scan) => scan.estimate(),
            ScanBackend::Postgres(scan) => scan.estimate(),
        }
    }

    /// The next page of resources (a few thousand, all of one type), or `None` at the end.
    pub fn next_page(&mut self) -> Result<Option<Vec<Scanned>>, crate::StoreError> {
        match &mut self.backend {
            ScanBackend::Sqlite(scan) => scan.next_page(),
            ScanBackend::Postgres(scan) => scan.next_page(),
        }
    }
}
