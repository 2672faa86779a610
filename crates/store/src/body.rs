//! A resource serialised once, on the caller's task, with a gap for the version and
//! instant that only the writer knows: the writer fills the gap with two short copies
//! instead of serialising the resource itself.

use serde_json::{Map, Value};

#[cfg(test)]
use crate::resource::stamp;
use crate::{Instant, StoreError};

/// What separates the version from the instant in a stamped body.
const BETWEEN: &str = "\",\"lastUpdated\":\"";

/// A stamped resource's JSON, split around `meta.versionId` and `meta.lastUpdated`.
#[derive(Debug)]
pub(crate) struct Template {
    text: String,
    /// End of `..."meta":{"versionId":"`.
    head: usize,
    /// Start of what follows the instant's closing quote.
    tail: usize,
}

fn write_json<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), StoreError> {
    serde_json::to_writer(out, value).map_err(|error| StoreError::Invalid(error.to_string()))
}

/// `,"key":value`: every member follows the `meta` that comes before it.
fn write_member(out: &mut Vec<u8>, key: &str, value: &Value) -> Result<(), StoreError> {
    out.push(b',');
    write_json(out, key)?;
    out.push(b':');
    write_json(out, value)
}

impl Template {
    /// Serialises `resource` as [`stamp`] would stamp it with `id`: `resourceType`, `id`
    /// and `meta` (with the gap for `versionId` and `lastUpdated`) first, every other
    /// element where it was. It writes straight from the parsed tree, without building
    /// the stamped one.
    pub(crate) fn new(resource: Map<String, Value>, id: &str) -> Result<Template, StoreError> {
        let Some(Value::String(resource_type)) = resource.get("resourceType") else {
            return Err(StoreError::Invalid(
                "the resource has no resourceType".into(),
            ));
        };
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        out.extend_from_slice(b"{\"resourceType\":");
        write_json(&mut out, resource_type)?;
        out.extend_from_slice(b",\"id\":");
        write_json(&mut out, id)?;
        out.extend_from_slice(b",\"meta\":{\"versionId\":\"");
        let head = out.len();
        // The gap holds nothing: `render` writes the version and instant there.
        let tail = head;
        if let Some(Value::Object(meta)) = resource.get("meta") {
            for (key, value) in meta {
                if key != "versionId" && key != "lastUpdated" {
                    write_member(&mut out, key, value)?;
                }
            }
        }
        out.push(b'}');
        for (key, value) in &resource {
            if key != "resourceType" && key != "id" && key != "meta" {
                write_member(&mut out, key, value)?;
            }
        }
        out.push(b'}');
        let text = String::from_utf8(out)
            .map_err(|_| StoreError::Backend("a resource serialised to invalid UTF-8".into()))?;
        Ok(Template { text, head, tail })
    }

    /// The body with its version and instant.
    pub(crate) fn render(&self, version: u64, last_updated: Instant) -> String {
        let version = version.to_string();
        let instant = last_updated.to_fhir();
        let (head, tail) = (&self.text[..self.head], &self.text[self.tail..]);
        let mut body =
            String::with_capacity(self.text.len() + version.len() + instant.len() + BETWEEN.len());
        body.push_str(head);
        body.push_str(&version);
        body.push_str(BETWEEN);
        body.push_str(&instant);
        body.push('"');
        body.push_str(tail);
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text) {
            Ok(Value::Object(object)) => object,
            _ => panic!("not an object: {text}"),
        }
    }

    #[test]
    fn render_equals_stamping_then_serialising() {
        let cases = [
            r#"{"resourceType":"Patient","name":[{"family":"Ch\"al"}]}"#,
            r#"{"resourceType":"Observation","meta":{"profile":["http://x"],"versionId":"9"},"id":"old","valueQuantity":{"value":1.50}}"#,
            r#"{"resourceType":"Basic"}"#,
            r#"{"id":"x","text":{"div":"<div>\u00e9</div>"},"resourceType":"Basic","meta":"odd","a\"b":[1e400,-0.0,{}]}"#,
            r#"{"resourceType":"Basic","meta":{"lastUpdated":"2020-01-01T00:00:00Z","tag":[{"code":"t"}]}}"#,
        ];
        for case in cases {
            for (version, instant) in [(1, Instant(1_700_000_000_123_456)), (12345, Instant(7))] {
                let template = Template::new(object(case), "the-id").unwrap();
                let expected = serde_json::to_string(&Value::Object(stamp(
                    object(case),
                    "the-id",
                    version,
                    instant,
                )))
                .unwrap();
                assert_eq!(template.render(version, instant), expected);
            }
        }
    }

    #[test]
    fn a_resource_without_a_type_is_refused() {
        let error = Template::new(object(r#"{"id":"x"}"#), "x").unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
    }
}
