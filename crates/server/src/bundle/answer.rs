//! The entries of a response Bundle, written as JSON text: a stored resource (or a
//! searchset) goes in as the text it already is, not parsed and serialised again.

use serde_json::{Value, json};
use store::Instant;

/// One entry of a `transaction-response` or `batch-response`.
pub(super) enum Answer {
    /// Not answered yet.
    Missing,
    /// An entry built here (a status, an outcome).
    Json(Value),
    /// An entry with a resource that is JSON text already, and its `response`.
    Resource { text: String, response: Value },
}

impl Answer {
    pub(super) fn is_missing(&self) -> bool {
        matches!(self, Answer::Missing)
    }

    fn write_to(&self, out: &mut String) {
        match self {
            Answer::Missing => out.push_str("{}"),
            Answer::Json(value) => out.push_str(&value.to_string()),
            Answer::Resource { text, response } => {
                out.push_str("{\"resource\":");
                out.push_str(text);
                out.push_str(",\"response\":");
                out.push_str(&response.to_string());
                out.push('}');
            }
        }
    }
}

/// The response Bundle of type `kind` around `answers`.
pub(super) fn bundle_text(kind: &str, answers: &[Answer]) -> String {
    let head = json!({
        "resourceType": "Bundle",
        "type": kind,
        "meta": {"lastUpdated": Instant::now().to_fhir()},
    })
    .to_string();
    let size: usize = answers
        .iter()
        .map(|answer| match answer {
            Answer::Resource { text, .. } => text.len() + 160,
            _ => 160,
        })
        .sum();
    let mut out = String::with_capacity(head.len() + size + 16);
    // `head` is an object: reopen it to add the entries.
    out.push_str(head.strip_suffix('}').unwrap_or("{"));
    if !answers.is_empty() {
        out.push_str(",\"entry\":[");
        for (position, answer) in answers.iter().enumerate() {
            if position > 0 {
                out.push(',');
            }
            answer.write_to(&mut out);
        }
        out.push(']');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_is_spliced_in_and_the_whole_is_json() {
        let answers = [
            Answer::Resource {
                text: r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"}}"#.into(),
                response: json!({"status": "201 Created"}),
            },
            Answer::Json(json!({"response": {"status": "204 No Content"}})),
        ];
        let bundle: Value = serde_json::from_str(&bundle_text("batch-response", &answers)).unwrap();
        assert_eq!(bundle["type"], "batch-response");
        assert_eq!(bundle["entry"][0]["resource"]["id"], "p1");
        assert_eq!(bundle["entry"][0]["response"]["status"], "201 Created");
        assert_eq!(bundle["entry"][1]["response"]["status"], "204 No Content");
        let empty: Value = serde_json::from_str(&bundle_text("transaction-response", &[])).unwrap();
        assert!(empty.get("entry").is_none(), "{empty}");
    }
}
