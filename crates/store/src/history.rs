//! History queries: which versions, in which window, one page at a time.

use crate::{Instant, Period, Version};

/// Whose history.
#[derive(Clone, Debug)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

/// A history request. Versions come newest first; paging uses a cursor on the store's
/// change sequence, so pages stay stable while new versions are written.
#[derive(Clone, Debug)]
pub struct HistoryQuery {
    pub scope: HistoryScope,
    /// `_since`: versions written at or after this instant.
    pub since: Option<Instant>,
    /// `_at`: versions that were current at some point during this period.
    pub at: Option<Period>,
    /// Only versions older than this cursor (from a previous page's `next_cursor`).
    pub before: Option<i64>,
    /// Page size.
    pub count: usize,
}

/// One page of history.
#[derive(Debug)]
pub struct HistoryPage {
    pub versions: Vec<Version>,
    /// Versions matching the query across all pages.
    pub total: u64,
    /// Cursor for the next (older) page, if there is one.
    pub next_cursor: Option<i64>,
}
