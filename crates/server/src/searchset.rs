//! The `searchset` Bundle: a page of matches, what they include, paging links, and an
//! OperationOutcome for what the search ignored.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use store::{Instant, SearchPage, Version};

use crate::history::{BundleMeta, Link};
use crate::subset::{Subset, apply};

/// Where a search ran and how to repeat it: the links of its Bundle.
pub struct Links<'a> {
    /// `{base}`, `{base}/Patient` or `{base}/Patient/1/Observation`.
    pub url: String,
    /// The parameters the search applied, in request order, without `_cursor`.
    pub carried: &'a [(String, String)],
    /// The `_cursor` of this page, if it is not the first.
    pub cursor: Option<&'a str>,
}

impl Links<'_> {
    fn link(&self, cursor: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.carried {
            query.append_pair(name, value);
        }
        if let Some(cursor) = cursor {
            query.append_pair("_cursor", cursor);
        }
        let query = query.finish();
        if query.is_empty() {
            self.url.clone()
        } else {
            format!("{}?{query}", self.url)
        }
    }
}

#[derive(Serialize)]
struct Bundle<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    meta: BundleMeta,
    #[serde(rename = "type")]
    bundle_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(rename = "fullUrl")]
    full_url: String,
    resource: Resource<'a>,
    search: EntrySearch,
}

#[derive(Serialize)]
struct EntrySearch {
    mode: &'static str,
}

/// A stored resource sent as it is, or a changed one.
enum Resource<'a> {
    Stored(&'a RawValue),
    Changed(Value),
}

impl Serialize for Resource<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Resource::Stored(raw) => raw.serialize(serializer),
            Resource::Changed(value) => value.serialize(serializer),
        }
    }
}

fn entry<'a>(
    base: &str,
    version: &'a Version,
    mode: &'static str,
    subset: Option<&Subset>,
) -> Result<Option<Entry<'a>>, serde_json::Error> {
    let Some(body) = &version.body else {
        return Ok(None);
    };
    let resource = match subset {
        None => Resource::Stored(serde_json::from_str::<&RawValue>(body)?),
        Some(subset) => match serde_json::from_str::<Value>(body)? {
            Value::Object(resource) => Resource::Changed(Value::Object(apply(resource, subset))),
            other => Resource::Changed(other),
        },
    };
    Ok(Some(Entry {
        full_url: format!("{base}/{}/{}", version.resource_type, version.id),
        resource,
        search: EntrySearch { mode },
    }))
}

/// The OperationOutcome entry that names every parameter a lenient search ignored.
fn ignored_entry(ignored: &[String]) -> Option<Entry<'static>> {
    if ignored.is_empty() {
        return None;
    }
    let issue: Vec<Value> = ignored
        .iter()
        .map(|parameter| {
            let name = parameter.split_once('=').map_or(parameter.as_str(), |(name, _)| name);
            json!({
                "severity": "warning",
                "code": "not-supported",
                "diagnostics": format!("the search parameter {name:?} is not supported and was ignored ({parameter})"),
            })
        })
        .collect();
    let mut outcome = Map::new();
    outcome.insert("resourceType".into(), json!("OperationOutcome"));
    outcome.insert("issue".into(), Value::Array(issue));
    Some(Entry {
        full_url: format!("urn:uuid:{}", store::new_id()),
        resource: Resource::Changed(Value::Object(outcome)),
        search: EntrySearch { mode: "outcome" },
    })
}

/// What goes into a searchset besides the page.
pub struct Shape<'a> {
    pub base: &'a str,
    pub links: Links<'a>,
    /// `_summary=count` or `_count=0`: the total only.
    pub count_only: bool,
    pub subset: Option<Subset>,
    pub ignored: &'a [String],
}

/// The searchset Bundle of `page`, as JSON text.
pub fn bundle(shape: &Shape<'_>, page: &SearchPage) -> Result<String, serde_json::Error> {
    let links = &shape.links;
    let mut link = vec![Link {
        relation: "self",
        url: links.link(links.cursor),
    }];
    if !shape.count_only {
        link.push(Link {
            relation: "first",
            url: links.link(None),
        });
        if let Some(previous) = &page.previous {
            link.push(Link {
                relation: "previous",
                url: links.link(Some(previous)),
            });
        }
        if let Some(next) = &page.next {
            link.push(Link {
                relation: "next",
                url: links.link(Some(next)),
            });
        }
    }
    let mut entries = Vec::new();
    entries.extend(ignored_entry(shape.ignored));
    if !shape.count_only {
        for version in &page.matches {
            entries.extend(entry(shape.base, version, "match", shape.subset.as_ref())?);
        }
        for version in &page.included {
            entries.extend(entry(shape.base, version, "include", None)?);
        }
    }
    serde_json::to_string(&Bundle {
        resource_type: "Bundle",
        meta: BundleMeta {
            last_updated: Instant::now().to_fhir(),
        },
        bundle_type: "searchset",
        total: page.total,
        link,
        entry: entries,
    })
}
