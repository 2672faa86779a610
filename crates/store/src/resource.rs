//! Versions, writes and the server-maintained parts of a stored resource.

use serde_json::{Map, Value};

use crate::Instant;

/// How a version came to be; history reports it as `request.method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Create,
    Update,
    Patch,
    Delete,
}

impl Method {
    /// The HTTP verb.
    pub fn verb(self) -> &'static str {
        match self {
            Method::Create => "POST",
            Method::Update => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    pub(crate) fn from_verb(verb: &str) -> Method {
        match verb {
            "POST" => Method::Create,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Update,
        }
    }
}

/// One stored version of a resource.
#[derive(Clone, Debug)]
pub struct Version {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    pub last_updated: Instant,
    pub method: Method,
    /// The resource as stored (JSON, with `id` and `meta` set); `None` for a deletion.
    pub body: Option<String>,
    /// Whether this version brought the resource into being: the first version, or the
    /// first after a deletion.
    pub created: bool,
}

impl Version {
    pub fn is_deleted(&self) -> bool {
        self.body.is_none()
    }

    /// The weak ETag, `W/"3"`.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// A change to the store.
#[derive(Debug)]
pub enum Write {
    /// Create. The id is the server's: from [`new_id`](crate::new_id) when the caller
    /// needs it in advance (a transaction rewriting references), or assigned here.
    Create {
        resource: Map<String, Value>,
        id: Option<String>,
    },
    /// Update (or create with the client's id); `if_match` demands the current version.
    Update {
        resource_type: String,
        id: String,
        resource: Map<String, Value>,
        if_match: Option<u64>,
        method: Method,
    },
    /// Delete; the deletion is kept as a version.
    Delete {
        resource_type: String,
        id: String,
        if_match: Option<u64>,
    },
}

/// What a write did.
#[derive(Debug)]
pub struct Written {
    /// The new version; `None` when a delete found nothing to delete.
    pub version: Option<Version>,
    /// Whether the resource did not exist (or was deleted) before.
    pub created: bool,
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, putting `resourceType`, `id` and
/// `meta` first and keeping every other element where it was. Writes do this while
/// serialising (`body::Template`); this is its definition, which the tests hold it to.
#[cfg(test)]
pub(crate) fn stamp(
    mut resource: Map<String, Value>,
    id: &str,
    version: u64,
    last_updated: Instant,
) -> Map<String, Value> {
    let resource_type = resource.shift_remove("resourceType").unwrap_or(Value::Null);
    resource.shift_remove("id");
    let mut meta = match resource.shift_remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.shift_remove("versionId");
    meta.shift_remove("lastUpdated");
    let mut stamped_meta = Map::with_capacity(meta.len() + 2);
    stamped_meta.insert("versionId".into(), Value::String(version.to_string()));
    stamped_meta.insert("lastUpdated".into(), Value::String(last_updated.to_fhir()));
    stamped_meta.extend(meta);

    let mut stamped = Map::with_capacity(resource.len() + 3);
    stamped.insert("resourceType".into(), resource_type);
    stamped.insert("id".into(), Value::String(id.to_string()));
    stamped.insert("meta".into(), Value::Object(stamped_meta));
    stamped.extend(resource);
    stamped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_sets_server_fields_and_keeps_order_and_numbers() {
        let body: Value = serde_json::from_str(
            r#"{"resourceType":"Observation","status":"final","valueQuantity":{"value":1.50,"unit":"mg"},"meta":{"profile":["http://x"],"versionId":"99"},"id":"ignored"}"#,
        )
        .unwrap();
        let Value::Object(body) = body else {
            unreachable!()
        };
        let stamped = stamp(body, "o1", 3, Instant(0));
        let text = serde_json::to_string(&Value::Object(stamped)).unwrap();
        assert_eq!(
            text,
            r#"{"resourceType":"Observation","id":"o1","meta":{"versionId":"3","lastUpdated":"1970-01-01T00:00:00.000000Z","profile":["http://x"]},"status":"final","valueQuantity":{"value":1.50,"unit":"mg"}}"#
        );
    }
}
