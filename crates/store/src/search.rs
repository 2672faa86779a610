//! Search requests and result pages, as the store answers them.

use crate::Version;

/// One page of a search.
#[derive(Clone, Debug)]
pub struct SearchRequest {
    pub query: search::Query,
    /// Matches per page (the server has already capped it). 0 asks only for the total.
    pub count: usize,
    /// The position to continue from: a `next` or `previous` cursor of an earlier page
    /// of the same query. `None` for the first page.
    pub cursor: Option<String>,
}

/// A page of matches and what they include.
#[derive(Clone, Debug, Default)]
pub struct SearchPage {
    /// The matches, in order.
    pub matches: Vec<Version>,
    /// Resources brought in by `_include` and `_revinclude`, each once, none of them a match.
    pub included: Vec<Version>,
    /// The number of matches, when asked for or known without counting.
    pub total: Option<u64>,
    /// Cursor of the following page, if there are more matches.
    pub next: Option<String>,
    /// Cursor of the preceding page, if this is not the first.
    pub previous: Option<String>,
}
