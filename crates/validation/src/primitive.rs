//! Primitive values: the JSON kind each primitive type takes, and its lexical rules (the
//! `regex` of each primitive's value in the R4 definitions, compiled once).

use std::sync::LazyLock;

use fhir::IssueType;
use regex::Regex;
use serde_json::Value;

/// The R4 primitive types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Primitive {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

const ALL: [Primitive; 20] = [
    Primitive::Base64Binary,
    Primitive::Boolean,
    Primitive::Canonical,
    Primitive::Code,
    Primitive::Date,
    Primitive::DateTime,
    Primitive::Decimal,
    Primitive::Id,
    Primitive::Instant,
    Primitive::Integer,
    Primitive::Markdown,
    Primitive::Oid,
    Primitive::PositiveInt,
    Primitive::String,
    Primitive::Time,
    Primitive::UnsignedInt,
    Primitive::Uri,
    Primitive::Url,
    Primitive::Uuid,
    Primitive::Xhtml,
];

/// FHIR's limit on the length of a string (`string.value` maxLength in R4).
const MAX_STRING_CHARS: usize = 1_048_576;

impl Primitive {
    pub fn from_name(name: &str) -> Option<Primitive> {
        Some(match name {
            "base64Binary" => Primitive::Base64Binary,
            "boolean" => Primitive::Boolean,
            "canonical" => Primitive::Canonical,
            "code" => Primitive::Code,
            "date" => Primitive::Date,
            "dateTime" => Primitive::DateTime,
            "decimal" => Primitive::Decimal,
            "id" => Primitive::Id,
            "instant" => Primitive::Instant,
            "integer" => Primitive::Integer,
            "markdown" => Primitive::Markdown,
            "oid" => Primitive::Oid,
            "positiveInt" => Primitive::PositiveInt,
            "string" => Primitive::String,
            "time" => Primitive::Time,
            "unsignedInt" => Primitive::UnsignedInt,
            "uri" => Primitive::Uri,
            "url" => Primitive::Url,
            "uuid" => Primitive::Uuid,
            "xhtml" => Primitive::Xhtml,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Primitive::Base64Binary => "base64Binary",
            Primitive::Boolean => "boolean",
            Primitive::Canonical => "canonical",
            Primitive::Code => "code",
            Primitive::Date => "date",
            Primitive::DateTime => "dateTime",
            Primitive::Decimal => "decimal",
            Primitive::Id => "id",
            Primitive::Instant => "instant",
            Primitive::Integer => "integer",
            Primitive::Markdown => "markdown",
            Primitive::Oid => "oid",
            Primitive::PositiveInt => "positiveInt",
            Primitive::String => "string",
            Primitive::Time => "time",
            Primitive::UnsignedInt => "unsignedInt",
            Primitive::Uri => "uri",
            Primitive::Url => "url",
            Primitive::Uuid => "uuid",
            Primitive::Xhtml => "xhtml",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The regexes of the primitive types from the definitions, anchored, indexed by `Primitive`.
static REGEXES: LazyLock<Vec<Option<Regex>>> = LazyLock::new(|| {
    let defs = fhir::definitions();
    let mut out: Vec<Option<Regex>> = (0..ALL.len()).map(|_| None).collect();
    for prim in ALL {
        // Checked by hand: the R4 regexes for these are either trivial or slow on large values.
        if matches!(
            prim,
            Primitive::String
                | Primitive::Markdown
                | Primitive::Base64Binary
                | Primitive::Xhtml
                | Primitive::Boolean
        ) {
            continue;
        }
        let regex = defs.type_def(prim.name()).and_then(|t| {
            t.elements
                .iter()
                .find(|e| e.path == "value")
                .and_then(|e| e.regex.as_deref())
        });
        if let Some(regex) = regex {
            // The data is compiled in and tested; a regex that fails to compile checks nothing.
            out[prim.index()] = Regex::new(&format!("^(?:{})$", java_to_rust(regex))).ok();
        }
    }
    out
});

/// The definitions' regexes are Java's: `\s` and `\S` are ASCII there, Unicode in `regex`.
fn java_to_rust(regex: &str) -> String {
    let mut out = String::with_capacity(regex.len() + 16);
    let mut in_class = false;
    let mut chars = regex.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('s') if in_class => out.push_str("[:space:]"),
                Some('s') => out.push_str("[[:space:]]"),
                Some('S') => out.push_str("[^[:space:]]"),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A problem with one primitive value: the issue code and the message.
pub(crate) type Problem = (IssueType, String);

/// Checks the JSON kind and lexical form of one primitive value.
pub(crate) fn check(prim: Primitive, value: &Value) -> Result<(), Problem> {
    match prim {
        Primitive::Boolean => match value {
            Value::Bool(_) => Ok(()),
            _ => Err(wrong_kind(prim, "a JSON boolean", value)),
        },
        Primitive::Integer | Primitive::PositiveInt | Primitive::UnsignedInt => {
            let Value::Number(number) = value else {
                return Err(wrong_kind(prim, "a JSON number", value));
            };
            let text = number.as_str();
            let parsed = if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                text.parse::<i64>().ok()
            } else {
                None
            };
            let Some(n) = parsed else {
                return Err((
                    IssueType::Value,
                    format!("The value '{text}' is not a valid {}", prim.name()),
                ));
            };
            let min = match prim {
                Primitive::PositiveInt => 1,
                Primitive::UnsignedInt => 0,
                _ => i64::from(i32::MIN),
            };
            if n < min || n > i64::from(i32::MAX) {
                return Err((
                    IssueType::Value,
                    format!(
                        "The value {n} is outside the range of {} ({min}..{})",
                        prim.name(),
                        i32::MAX
                    ),
                ));
            }
            Ok(())
        }
        Primitive::Decimal => match value {
            Value::Number(_) => Ok(()),
            _ => Err(wrong_kind(prim, "a JSON number", value)),
        },
        _ => {
            let Value::String(text) = value else {
                return Err(wrong_kind(prim, "a JSON string", value));
            };
            check_string(prim, text)
        }
    }
}

fn wrong_kind(prim: Primitive, expected: &str, value: &Value) -> Problem {
    let found = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    (
        IssueType::Structure,
        format!("A {} value must be {expected}, not {found}", prim.name()),
    )
}

fn check_string(prim: Primitive, text: &str) -> Result<(), Problem> {
    if text.is_empty() {
        return Err((
            IssueType::Value,
            "A string value must not be empty (leave the property out instead)".to_string(),
        ));
    }
    match prim {
        Primitive::Base64Binary => {
            return if is_base64(text) {
                Ok(())
            } else {
                Err((
                    IssueType::Value,
                    "The value is not valid base64".to_string(),
                ))
            };
        }
        Primitive::Xhtml => return check_xhtml(text),
        _ => {}
    }
    if text.len() > MAX_STRING_CHARS && text.chars().count() > MAX_STRING_CHARS {
        return Err((
            IssueType::Value,
            format!("The value is longer than the maximum of {MAX_STRING_CHARS} characters"),
        ));
    }
    if let Some(Some(regex)) = REGEXES.get(prim.index())
        && !regex.is_match(text)
    {
        return Err((
            IssueType::Value,
            format!(
                "The value '{}' is not a valid {}",
                shorten(text),
                prim.name()
            ),
        ));
    }
    if matches!(
        prim,
        Primitive::Date | Primitive::DateTime | Primitive::Instant
    ) && !day_exists(text)
    {
        return Err((
            IssueType::Value,
            format!("The date '{}' does not exist", shorten(text)),
        ));
    }
    Ok(())
}

/// `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`: base64 characters in groups of four, whitespace between.
fn is_base64(text: &str) -> bool {
    let mut n_chars = 0usize;
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' {
            n_chars += 1;
        } else if !b.is_ascii_whitespace() {
            return false;
        }
    }
    n_chars > 0 && n_chars.is_multiple_of(4)
}

/// The narrative must be one `div`; scripts, forms, frames and non-XML entities are not allowed.
fn check_xhtml(text: &str) -> Result<(), Problem> {
    if !text.trim_start().starts_with("<div") {
        return Err((
            IssueType::Value,
            "The narrative must be an XHTML <div> element".to_string(),
        ));
    }
    let lower = text.to_ascii_lowercase();
    for tag in [
        "<script", "<iframe", "<object", "<embed", "<applet", "<form", "<frame", "<base", "<link",
        "<meta", "<style", "<input", "<button",
    ] {
        if let Some(at) = lower.find(tag) {
            let after = lower.as_bytes().get(at + tag.len()).copied();
            if after.is_none_or(|b| !b.is_ascii_alphanumeric()) {
                return Err((
                    IssueType::Value,
                    format!(
                        "The narrative contains a disallowed element '{}'",
                        &tag[1..]
                    ),
                ));
            }
        }
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find('&') {
        let start = i + off + 1;
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b';' || !(b.is_ascii_alphanumeric() || b == b'#'))
            .map(|p| start + p);
        if let Some(end) = end
            && bytes.get(end) == Some(&b';')
        {
            let name = &text[start..end];
            let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos") || name.starts_with('#');
            if !ok {
                return Err((
                    IssueType::Value,
                    format!(
                        "The narrative contains the entity '&{name};', which XHTML does not define"
                    ),
                ));
            }
        }
        i = start;
    }
    Ok(())
}

/// For a value that matched the date regex: the day exists in its month.
fn day_exists(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return true;
    }
    let num = |s: &[u8]| {
        s.iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
    };
    let year = num(&b[0..4]);
    let month = num(&b[5..7]);
    let day = num(&b[8..10]);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days
}

fn shorten(text: &str) -> &str {
    match text.char_indices().nth(100) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_regex_compiles() {
        for prim in ALL {
            let hand_checked = matches!(
                prim,
                Primitive::String
                    | Primitive::Markdown
                    | Primitive::Base64Binary
                    | Primitive::Xhtml
                    | Primitive::Boolean
            );
            assert_eq!(
                REGEXES[prim.index()].is_some(),
                !hand_checked,
                "{}",
                prim.name()
            );
        }
    }

    #[test]
    fn lexical_forms() {
        assert!(check(Primitive::Date, &json!("2020-02-29")).is_ok());
        assert!(check(Primitive::Date, &json!("2019-02-29")).is_err());
        assert!(check(Primitive::DateTime, &json!("2020-01-01T10:00:00")).is_err());
        assert!(check(Primitive::DateTime, &json!("2020-01-01T10:00:00Z")).is_ok());
        assert!(check(Primitive::Instant, &json!("2020-01-01")).is_err());
        assert!(check(Primitive::Code, &json!(" x")).is_err());
        assert!(check(Primitive::Code, &json!("a b")).is_ok());
        assert!(check(Primitive::Uri, &json!("a b")).is_err());
        assert!(check(Primitive::Uri, &json!("urn:x\u{a0}y")).is_ok());
        assert!(check(Primitive::Id, &json!("a_b")).is_err());
        assert!(check(Primitive::PositiveInt, &json!(0)).is_err());
        assert!(check(Primitive::UnsignedInt, &json!(0)).is_ok());
        assert!(check(Primitive::Integer, &json!(2147483648_i64)).is_err());
        assert!(
            check(
                Primitive::Integer,
                &serde_json::from_str::<Value>("1.0").unwrap()
            )
            .is_err()
        );
        assert!(
            check(
                Primitive::Decimal,
                &serde_json::from_str::<Value>("1.0").unwrap()
            )
            .is_ok()
        );
        assert!(check(Primitive::Decimal, &json!("1.0")).is_err());
        assert!(check(Primitive::Base64Binary, &json!("%%%2@()()")).is_err());
        assert!(check(Primitive::Base64Binary, &json!("aGVs bG8=")).is_ok());
        assert!(check(Primitive::Xhtml, &json!("<div>&reg;</div>")).is_err());
        assert!(check(Primitive::Xhtml, &json!("<div>&amp;&#160;</div>")).is_ok());
        assert!(check(Primitive::Xhtml, &json!("<div><script>x</script></div>")).is_err());
        assert!(check(Primitive::Oid, &json!("urn:oid:1.2.3")).is_ok());
        assert!(check(Primitive::Uuid, &json!("urn:uuid:ABC")).is_err());
        assert!(check(Primitive::Time, &json!("25:00:00")).is_err());
        assert!(check(Primitive::String, &json!("")).is_err());
    }
}
