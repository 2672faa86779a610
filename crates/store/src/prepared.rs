//! Writes made ready on the caller's task, before any backend sees them: the resource
//! serialised once with a gap for its version and instant (`body::Template`), its
//! index rows and full text computed, and the pids of their keys taken from the cache.
//! Both backends then only check versions and run SQL. Also what every backend checks
//! the same way: `If-Match`, and the clock that hands out `lastUpdated`.

use serde_json::{Map, Value};

use search::{IndexRow, IndexValue};

use crate::body::Template;
use crate::params::ParamIds;
use crate::{Instant, Method, StoreError, Write};

/// A write made ready on the caller's task, off the writer thread: its resource
/// serialised, its index rows and full text computed.
pub(crate) struct Indexed {
    /// What to write, or why it cannot be written (answered by the writer, in order).
    pub(crate) write: Result<Prepared, StoreError>,
    pub(crate) rows: Vec<IndexRow>,
    /// The pid of each row's key, where the cache knew it already.
    pub(crate) pids: Vec<Option<i64>>,
    /// What `_text` and `_content` search.
    pub(crate) text: Option<search::FullText>,
}

/// A write whose resource is serialised already.
pub(crate) enum Prepared {
    Create {
        resource_type: String,
        id: String,
        body: Template,
    },
    Update {
        resource_type: String,
        id: String,
        body: Template,
        if_match: Option<u64>,
        method: Method,
    },
    Delete {
        resource_type: String,
        id: String,
        if_match: Option<u64>,
    },
}

impl Indexed {
    pub(crate) fn new(write: Write, params: &ParamIds) -> Indexed {
        let mut indexed = Indexed::unresolved(write);
        if let Ok(Prepared::Create { resource_type, .. } | Prepared::Update { resource_type, .. }) =
            &indexed.write
        {
            indexed.pids = params.cached_rows(resource_type, &indexed.rows);
        }
        indexed
    }

    fn unresolved(write: Write) -> Indexed {
        match write {
            Write::Create { resource, id } => {
                let value = Value::Object(resource);
                let rows = search::index(&value);
                let text = Some(search::full_text(&value));
                let resource = into_object(value);
                let id = id.unwrap_or_else(crate::new_id);
                let write = resource_type_of(&resource).and_then(|resource_type| {
                    Ok(Prepared::Create {
                        body: Template::new(resource, &id)?,
                        resource_type,
                        id,
                    })
                });
                Indexed {
                    write,
                    rows,
                    pids: Vec::new(),
                    text,
                }
            }
            Write::Update {
                resource_type,
                id,
                resource,
                if_match,
                method,
            } => {
                let value = Value::Object(resource);
                let rows = search::index(&value);
                let text = Some(search::full_text(&value));
                let resource = into_object(value);
                let write = match resource_type_of(&resource) {
                    Ok(actual) if actual == resource_type => {
                        Template::new(resource, &id).map(|body| Prepared::Update {
                            resource_type,
                            id,
                            body,
                            if_match,
                            method,
                        })
                    }
                    Ok(_) => Err(StoreError::Invalid(format!(
                        "the resource is not a {resource_type}"
                    ))),
                    Err(error) => Err(error),
                };
                Indexed {
                    write,
                    rows,
                    pids: Vec::new(),
                    text,
                }
            }
            Write::Delete {
                resource_type,
                id,
                if_match,
            } => Indexed {
                write: Ok(Prepared::Delete {
                    resource_type,
                    id,
                    if_match,
                }),
                rows: Vec::new(),
                pids: Vec::new(),
                text: None,
            },
        }
    }

    /// A write with the given index rows instead of the indexer's (tests of search).
    #[cfg(test)]
    pub(crate) fn with_rows(write: Write, rows: Vec<IndexRow>) -> Indexed {
        Indexed {
            rows,
            text: None,
            ..Indexed::unresolved(write)
        }
    }

    /// The (type, key) pairs the rows need pids for.
    pub(crate) fn key_pairs(&self) -> Vec<(&str, &str)> {
        match &self.write {
            Ok(Prepared::Create { resource_type, .. } | Prepared::Update { resource_type, .. }) => {
                let unknown = self
                    .rows
                    .iter()
                    .enumerate()
                    .filter(|(at, _)| self.pids.get(*at).is_none_or(Option::is_none));
                key_pairs(resource_type, unknown.map(|(_, row)| row))
            }
            Ok(Prepared::Delete { .. }) | Err(_) => Vec::new(),
        }
    }
}

fn into_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(object) => object,
        _ => Map::new(),
    }
}

/// A resource as a write finds it.
pub(crate) struct Current {
    pub(crate) rid: i64,
    pub(crate) version: u64,
    pub(crate) deleted: bool,
}

/// `If-Match` against what the write found.
pub(crate) fn check_if_match(
    if_match: Option<u64>,
    current: Option<&Current>,
) -> Result<(), StoreError> {
    match (if_match, current) {
        (Some(expected), Some(current)) if expected != current.version => {
            Err(StoreError::VersionMismatch {
                expected,
                current: Some(current.version),
            })
        }
        (Some(expected), None) => Err(StoreError::VersionMismatch {
            expected,
            current: None,
        }),
        _ => Ok(()),
    }
}

pub(crate) fn resource_type_of(resource: &Map<String, Value>) -> Result<String, StoreError> {
    match resource.get("resourceType") {
        Some(Value::String(resource_type)) => Ok(resource_type.clone()),
        _ => Err(StoreError::Invalid(
            "the resource has no resourceType".into(),
        )),
    }
}

/// Hands out strictly increasing instants, so history order is time order.
#[derive(Debug)]
pub(crate) struct Clock {
    pub(crate) last: Instant,
}

impl Clock {
    pub(crate) fn observe(&mut self, newest: Instant) {
        self.last = self.last.max(newest);
    }

    pub(crate) fn tick(&mut self) -> Instant {
        let now = Instant::now();
        self.last = if now > self.last {
            now
        } else {
            Instant(self.last.0 + 1)
        };
        self.last
    }
}

/// The distinct (type, key) pairs of `rows`.
pub(crate) fn key_pairs<'a>(
    resource_type: &'a str,
    rows: impl Iterator<Item = &'a IndexRow>,
) -> Vec<(&'a str, &'a str)> {
    let mut pairs: Vec<(&str, &str)> = rows.map(|row| (resource_type, row.key.as_str())).collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// Whether a search could ever match the row: a reference needs an id or a URL, and a
/// range its low end at or below its high end (and no NaN). Others are left out.
pub(crate) fn indexable(value: &IndexValue) -> bool {
    match value {
        IndexValue::Reference { id, url, .. } => id.is_some() || url.is_some(),
        IndexValue::Date(range) => range.low <= range.high,
        IndexValue::Number(range) | IndexValue::Quantity { range, .. } => {
            !range.low.is_nan() && !range.high.is_nan() && range.low <= range.high
        }
        IndexValue::String { .. } | IndexValue::Token { .. } | IndexValue::Uri(_) => true,
    }
}
