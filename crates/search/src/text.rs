//! The text `_text` and `_content` search: a resource's narrative, and every string in it.

use serde_json::Value;

/// What full-text search sees of a resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FullText {
    /// The narrative (`text.div`) without its markup, for `_text`.
    pub narrative: String,
    /// Every string value of the resource, the narrative's text included, for `_content`.
    pub content: String,
}

/// The narrative and content text of `resource`. Markup, ids, references' targets and
/// system URLs are not words anyone searches for, so they are left out.
pub fn full_text(resource: &Value) -> FullText {
    let narrative = resource
        .get("text")
        .and_then(|text| text.get("div"))
        .and_then(Value::as_str)
        .map(strip_markup)
        .unwrap_or_default();
    let mut content = String::new();
    if let Value::Object(map) = resource {
        for (key, value) in map {
            if key != "text" && key != "id" && key != "meta" {
                collect(key, value, &mut content);
            }
        }
    }
    if !narrative.is_empty() {
        push_word(&mut content, &narrative);
    }
    FullText { narrative, content }
}

fn collect(key: &str, value: &Value, out: &mut String) {
    match value {
        Value::String(text) if is_words(key, text) => push_word(out, text),
        Value::Array(items) => items.iter().for_each(|item| collect(key, item, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| collect(k, v, out)),
        _ => {}
    }
}

/// Whether a string element holds words rather than identifiers of systems or targets.
fn is_words(key: &str, text: &str) -> bool {
    !matches!(key, "system" | "reference" | "url" | "div" | "fullUrl")
        && !text.starts_with("http://")
        && !text.starts_with("https://")
        && !text.starts_with("urn:")
}

fn push_word(out: &mut String, text: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(text);
}

/// XHTML to its text: tags dropped, the common entities decoded, whitespace collapsed.
fn strip_markup(div: &str) -> String {
    let mut text = String::with_capacity(div.len());
    let mut in_tag = false;
    for c in div.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An FTS5 query for a `_text`/`_content` value: every word must occur, each as a
/// prefix; quotes in the value cannot break out of the phrase.
pub fn fts_query(value: &str) -> Option<String> {
    let words: Vec<String> = value
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| format!("\"{}\"*", word.replace('"', "\"\"")))
        .collect();
    if words.is_empty() {
        None
    } else {
        Some(words.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrative_loses_its_markup_and_content_keeps_the_strings() {
        let resource = serde_json::json!({
            "resourceType": "Condition",
            "id": "c1",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Acute <b>bronchitis</b> &amp; cough</p></div>"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "10509002", "display": "Acute bronchitis"}], "text": "Bronchitis"},
            "subject": {"reference": "Patient/p1", "display": "Jane Doe"}
        });
        let text = full_text(&resource);
        assert_eq!(text.narrative, "Acute bronchitis & cough");
        assert!(text.content.contains("Jane Doe"));
        assert!(text.content.contains("10509002"));
        assert!(!text.content.contains("snomed"));
        assert!(!text.content.contains("Patient/p1"));
    }

    #[test]
    fn queries_are_prefix_words_and_quotes_are_escaped() {
        assert_eq!(
            fts_query("heart fail").as_deref(),
            Some("\"heart\"* AND \"fail\"*")
        );
        assert_eq!(fts_query("a\"b").as_deref(), Some("\"a\"* AND \"b\"*"));
        assert_eq!(fts_query(" -- "), None);
    }
}
