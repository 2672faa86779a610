//! A resource serialised once, on the caller's task, with a gap for the version and
//! instant that only the writer knows: the writer fills the gap with two short copies
//! instead of serialising the resource itself.

use serde_json::{Map, Value};

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

impl Template {
    /// Stamps `resource` with `id` (see [`stamp`]) and serialises it.
    pub(crate) fn new(resource: Map<String, Value>, id: &str) -> Result<Template, StoreError> {
        let resource_type = match resource.get("resourceType") {
            Some(Value::String(resource_type)) => resource_type.clone(),
            _ => {
                return Err(StoreError::Invalid(
                    "the resource has no resourceType".into(),
                ));
            }
        };
        let placeholder = Instant(0);
        let stamped = stamp(resource, id, 0, placeholder);
        let text = serde_json::to_string(&Value::Object(stamped))
            .map_err(|error| StoreError::Invalid(error.to_string()))?;
        let head = format!(
            "{{\"resourceType\":{},\"id\":{},\"meta\":{{\"versionId\":\"",
            Value::String(resource_type),
            Value::String(id.to_string()),
        );
        let gap = format!("0{BETWEEN}{}\"", placeholder.to_fhir());
        if !text.starts_with(&head) || !text[head.len()..].starts_with(&gap) {
            return Err(StoreError::Backend(
                "a stamped resource did not serialise in the expected order".into(),
            ));
        }
        Ok(Template {
            head: head.len(),
            tail: head.len() + gap.len(),
            text,
        })
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
