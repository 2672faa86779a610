//! Rules of the R4 specification that are neither cardinality, type nor invariant: they are
//! stated in the text (Bundle, Coding, Attachment) and checked by the reference validator.

use std::fmt::Write as _;

use fhir::IssueType;
use serde_json::{Map, Value};

use crate::Validator;

impl Validator<'_> {
    /// Bundle: `fullUrl` is absolute; a link relation occurs once; search results have ids,
    /// and outcome entries are OperationOutcomes.
    pub(crate) fn bundle_rules(&mut self, obj: &Map<String, Value>) {
        let searchset = obj.get("type").and_then(Value::as_str) == Some("searchset");
        if let Some(Value::Array(links)) = obj.get("link") {
            for (i, link) in links.iter().enumerate() {
                let Some(relation) = link.get("relation").and_then(Value::as_str) else {
                    continue;
                };
                let first = links
                    .iter()
                    .position(|l| l.get("relation").and_then(Value::as_str) == Some(relation));
                if first != Some(i) {
                    let mark = self.path.len();
                    let _ = write!(self.path, ".link[{i}]");
                    self.error(
                        IssueType::Invalid,
                        format!("The link relationship type '{relation}' can only occur once"),
                    );
                    self.path.truncate(mark);
                }
            }
        }
        let Some(Value::Array(entries)) = obj.get("entry") else {
            return;
        };
        for (i, entry) in entries.iter().enumerate() {
            let mark = self.path.len();
            let _ = write!(self.path, ".entry[{i}]");
            if let Some(Value::String(full_url)) = entry.get("fullUrl")
                && !has_scheme(full_url)
            {
                self.path.push_str(".fullUrl");
                self.error(
                    IssueType::Invalid,
                    format!("The fullUrl must be an absolute URL (not '{full_url}')"),
                );
                self.path.truncate(mark);
                let _ = write!(self.path, ".entry[{i}]");
            }
            if searchset {
                let mode = entry
                    .get("search")
                    .and_then(|s| s.get("mode"))
                    .and_then(Value::as_str);
                if let Some(Value::Object(resource)) = entry.get("resource") {
                    let resource_type = resource.get("resourceType").and_then(Value::as_str);
                    self.path.push_str(".resource");
                    match mode {
                        Some("match") if !resource.contains_key("id") => self.error(
                            IssueType::Invalid,
                            "Search results must have ids".to_string(),
                        ),
                        Some("outcome") if resource_type != Some("OperationOutcome") => self
                            .error(
                                IssueType::Invalid,
                                format!(
                                    "An entry with search.mode 'outcome' must be an OperationOutcome, not {}",
                                    resource_type.unwrap_or("?")
                                ),
                            ),
                        _ => {}
                    }
                }
            }
            self.path.truncate(mark);
        }
    }

    /// Coding: `system` is an absolute URI, and a code system rather than a value set.
    pub(crate) fn coding_rules(&mut self, obj: &Map<String, Value>) {
        let Some(Value::String(system)) = obj.get("system") else {
            return;
        };
        let problem = if !has_scheme(system) {
            "Coding.system must be an absolute reference, not a local reference"
        } else if system.starts_with("http://hl7.org/fhir/ValueSet/") {
            "The Coding references a value set, not a code system"
        } else {
            return;
        };
        let mark = self.path.len();
        self.path.push_str(".system");
        self.error(IssueType::Invalid, format!("{problem} ('{system}')"));
        self.path.truncate(mark);
    }

    /// Attachment: a stated `size` matches the decoded `data`.
    pub(crate) fn attachment_rules(&mut self, obj: &Map<String, Value>) {
        let (Some(Value::String(data)), Some(Value::Number(size))) =
            (obj.get("data"), obj.get("size"))
        else {
            return;
        };
        let Ok(size) = size.as_str().parse::<u64>() else {
            return;
        };
        let (mut n_chars, mut n_padding) = (0u64, 0u64);
        for b in data.bytes() {
            if b == b'=' {
                n_padding += 1;
                n_chars += 1;
            } else if !b.is_ascii_whitespace() {
                n_chars += 1;
            }
        }
        if n_chars % 4 != 0 {
            return; // reported as invalid base64
        }
        let decoded = n_chars / 4 * 3 - n_padding.min(2);
        if decoded != size {
            let mark = self.path.len();
            self.path.push_str(".size");
            self.error(
                IssueType::Value,
                format!("Stated attachment size {size} does not match the actual size {decoded} of the data"),
            );
            self.path.truncate(mark);
        }
    }
}

/// `scheme:` at the start (RFC 3986): an absolute URI such as `http:`, `urn:`.
pub(crate) fn has_scheme(uri: &str) -> bool {
    let Some(colon) = uri.find(':') else {
        return false;
    };
    let scheme = &uri.as_bytes()[..colon];
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}
