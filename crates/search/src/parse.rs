//! HTTP search parameters to a [`Query`].

use crate::{Clause, Query};

/// How to treat what is not understood.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParseOptions {
    /// `Prefer: handling=strict`: an unknown parameter is an error, not ignored.
    pub strict: bool,
}

/// A parsed search request: the query, and the parameters that shape the response.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub query: Query,
    /// `_count`, as given (the server caps it).
    pub count: Option<usize>,
    /// `_summary`.
    pub summary: Option<Summary>,
    /// `_elements`, as given (the server adds the mandatory elements).
    pub elements: Vec<String>,
    /// Parameters that were not understood and were ignored (lenient handling), as
    /// `name=value` with the name as given.
    pub ignored: Vec<String>,
    /// `_cursor`: the store's opaque position of a page after the first.
    pub cursor: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

/// Why a search request cannot be run; each names the parameter (and value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchError {
    /// Not a parameter of the type (only with strict handling).
    UnknownParameter { name: String },
    /// A malformed value, a prefix or modifier the parameter's type does not take, ...
    BadValue {
        name: String,
        value: String,
        reason: String,
    },
}

impl std::fmt::Display for SearchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SearchError::UnknownParameter { name } => {
                write!(f, "unknown search parameter {name:?}")
            }
            SearchError::BadValue { name, value, reason } => {
                write!(f, "invalid value {value:?} for search parameter {name:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for SearchError {}

/// Parses `params` (name, value pairs, already percent-decoded, in request order) for
/// a search over `types` (one type for a type-level search; for a system-level search
/// the types `_type` names are taken from `params`, and `types` is empty).
pub fn parse(
    types: &[String],
    params: &[(String, String)],
    options: ParseOptions,
) -> Result<Parsed, SearchError> {
    let _ = (params, options);
    Ok(Parsed {
        query: Query {
            types: types.to_vec(),
            clauses: Vec::new(),
            sort: Vec::new(),
            includes: Vec::new(),
            revincludes: Vec::new(),
            total: crate::Total::Unspecified,
        },
        count: None,
        summary: None,
        elements: Vec::new(),
        ignored: Vec::new(),
        cursor: None,
    })
}

/// The clause that limits a search of `resource_type` to the compartment of
/// `compartment_type`/`id` (e.g. `Patient/123`): any of the compartment's parameters
/// refers to it. `None` when `resource_type` is not in that compartment, or the
/// compartment is not one the definitions describe.
pub fn compartment(compartment_type: &str, id: &str, resource_type: &str) -> Option<Clause> {
    let _ = (compartment_type, id, resource_type);
    None
}
