//! FHIR R4 search, independent of any database: the search parameters of every
//! resource type (compiled from the definitions), the index rows each parameter
//! extracts from a resource, and search requests parsed into a typed [`Query`].
//!
//! The store turns index rows into tables and a [`Query`] into SQL; the server turns
//! HTTP parameters into a [`Query`] with [`parse`] and the results into a Bundle.

mod index;
mod params;
mod parse;
mod query;
mod text;
mod unions;
mod value;

pub use index::{IndexRow, IndexValue, index};
pub use params::{Component, ParamDef, ParamType, param, params_for};
pub use parse::{ParseOptions, Parsed, SearchError, Summary, compartment, parse};
pub use query::*;
pub use text::{FullText, fts_query, full_text};
pub use value::{DateRange, NumberRange, normalize_string};
