//! `Reference.reference`: its form, and the resource type it names when that can be seen.

use std::sync::LazyLock;

use regex::Regex;

use crate::model::MODEL;

/// What a reference points at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// `#id` (or `#` for the container).
    Local(&'a str),
    /// A reference whose resource type is visible: `Patient/1`, `http://x/fhir/Patient/1`,
    /// `Patient?identifier=x` (a conditional reference in a transaction).
    Typed(&'a str),
    /// `urn:uuid:`, `urn:oid:`, or an absolute URL without a visible type.
    Opaque,
    /// A `urn:uuid:` or `urn:oid:` that breaks its syntax: a warning only, as the reference
    /// validator resolves such references inside a Bundle as plain strings.
    Malformed(&'static str),
}

static UUID: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        "^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    )
    .ok()
});
static OID: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$").ok());

fn matches(regex: &LazyLock<Option<Regex>>, text: &str) -> bool {
    regex.as_ref().is_none_or(|r| r.is_match(text))
}

/// Parses a reference; `Err` says why its form is wrong.
pub(crate) fn parse(reference: &str) -> Result<Target<'_>, String> {
    if let Some(id) = reference.strip_prefix('#') {
        return if id.is_empty() || fhir::is_valid_id(id) {
            Ok(Target::Local(id))
        } else {
            Err(format!(
                "The local reference '{reference}' is not '#' and an id"
            ))
        };
    }
    if reference.starts_with("urn:uuid:") {
        return Ok(if matches(&UUID, reference) {
            Target::Opaque
        } else {
            Target::Malformed("not a valid urn:uuid")
        });
    }
    if reference.starts_with("urn:oid:") {
        return Ok(if matches(&OID, reference) {
            Target::Opaque
        } else {
            Target::Malformed("not a valid urn:oid")
        });
    }
    if reference.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(format!("The reference '{reference}' contains whitespace"));
    }
    if let Some(colon) = reference.find(':') {
        let scheme = &reference[..colon];
        let is_scheme = !scheme.is_empty()
            && scheme
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if is_scheme && !scheme.contains('/') {
            return Ok(absolute_type(reference).map_or(Target::Opaque, Target::Typed));
        }
    }
    // Relative: Type/id, Type/id/_history/vid, or Type?query.
    if let Some((type_name, _query)) = reference.split_once('?') {
        if MODEL.resource_type(type_name).is_some() {
            return Ok(Target::Typed(type_name));
        }
        return Err(format!(
            "The conditional reference '{reference}' does not start with a resource type"
        ));
    }
    let mut parts = reference.split('/');
    let type_name = parts.next().unwrap_or("");
    let id = parts.next();
    let rest: (Option<&str>, Option<&str>, Option<&str>) =
        (parts.next(), parts.next(), parts.next());
    let Some(id) = id else {
        return Err(format!(
            "The reference '{reference}' is not of the form Type/id, an absolute URL, #id, urn:uuid: or urn:oid:"
        ));
    };
    if MODEL.resource_type(type_name).is_none() {
        return Err(format!(
            "The reference '{reference}' does not start with a known resource type"
        ));
    }
    if !fhir::is_valid_id(id) {
        return Err(format!(
            "The reference '{reference}' has an invalid id '{id}'"
        ));
    }
    match rest {
        (None, None, None) => Ok(Target::Typed(type_name)),
        (Some("_history"), Some(version), None) if fhir::is_valid_id(version) => {
            Ok(Target::Typed(type_name))
        }
        _ => Err(format!(
            "The reference '{reference}' is not of the form Type/id or Type/id/_history/version"
        )),
    }
}

/// `http://server/fhir/Patient/1[/_history/2]` → `Patient`.
fn absolute_type(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    let type_at = if n >= 4 && segments[n - 2] == "_history" {
        n - 4
    } else if n >= 2 {
        n - 2
    } else {
        return None;
    };
    let type_name = segments[type_at];
    MODEL.resource_type(type_name).map(|_| type_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse("Patient/1"), Ok(Target::Typed("Patient")));
        assert_eq!(parse("Patient/1/_history/2"), Ok(Target::Typed("Patient")));
        assert_eq!(
            parse("http://example.org/fhir/Patient/1/_history/2"),
            Ok(Target::Typed("Patient"))
        );
        assert_eq!(parse("http://example.org/x"), Ok(Target::Opaque));
        assert_eq!(parse("#p1"), Ok(Target::Local("p1")));
        assert_eq!(
            parse("urn:uuid:8ce7db7b-9b9b-41ae-b1d7-3f2d1c728a13"),
            Ok(Target::Opaque)
        );
        assert_eq!(parse("urn:oid:1.2.3"), Ok(Target::Opaque));
        assert_eq!(
            parse("Patient?identifier=x|1"),
            Ok(Target::Typed("Patient"))
        );
        assert_eq!(
            parse("urn:uuid:nope"),
            Ok(Target::Malformed("not a valid urn:uuid"))
        );
        assert!(parse("Patient").is_err());
        assert!(parse("Foo/1").is_err());
        assert!(parse("Patient/a_b").is_err());
        assert!(parse("Patient/1/2").is_err());
        assert!(parse("Patient/1 2").is_err());
    }
}
