//! FHIR JSON forbids repeating a property in one object; a JSON parser keeps the last one
//! silently. This parser builds the JSON tree and refuses a repeated property, with where
//! it is, in the same pass.
//!
//! A property's path is only written out when a duplicate is found: while parsing, it is a
//! chain of borrowed keys on the stack.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a text is not a JSON value without repeated properties.
#[derive(Debug, PartialEq)]
pub enum ParseError {
    /// Not JSON: the parser's message.
    Syntax(String),
    /// The first property that appears twice in one object, as `path.to.name`.
    Duplicate(String),
}

/// Parses `bytes` as one JSON value, refusing any object that repeats a property.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = (Build { at: &At::Root })
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|error| {
        let message = error.to_string();
        match message.strip_prefix(DUPLICATE) {
            Some(rest) => {
                ParseError::Duplicate(rest.split(" at line").next().unwrap_or(rest).to_string())
            }
            None => ParseError::Syntax(message),
        }
    })
}

/// The first property that appears twice in one object, as `path.to.name`, if any.
#[cfg(test)]
fn find_duplicate_property(bytes: &[u8]) -> Option<String> {
    match parse_json(bytes) {
        Err(ParseError::Duplicate(path)) => Some(path),
        _ => None,
    }
}

const DUPLICATE: &str = "duplicate property ";

/// serde_json's name for a number kept as text (`arbitrary_precision`).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Where a value sits, as a chain back to the root.
enum At<'p> {
    Root,
    Key(&'p At<'p>, &'p str),
    Index(&'p At<'p>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => Ok(()),
            At::Key(At::Root, key) => write!(f, "{key}"),
            At::Key(parent, key) => write!(f, "{parent}.{key}"),
            At::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// A key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a property name")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Builds the value at `at`.
struct Build<'p> {
    at: &'p At<'p>,
}

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }
    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            let at = At::Index(self.at, items.len());
            match seq.next_element_seed(Build { at: &at })? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            // A number kept as text arrives as a one-entry map.
            if key == NUMBER_TOKEN && object.is_empty() {
                let text: String = map.next_value()?;
                let number: Number = text.parse().map_err(de::Error::custom)?;
                return Ok(Value::Number(number));
            }
            let at = At::Key(self.at, &key);
            if object.contains_key(key.as_ref()) {
                return Err(de::Error::custom(format!("{DUPLICATE}{at}")));
            }
            let value = map.next_value_seed(Build { at: &at })?;
            object.insert(key.into_owned(), value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::find_duplicate_property;

    #[test]
    fn finds_repeated_properties_with_their_path() {
        assert_eq!(find_duplicate_property(br#"{"a":1,"b":2}"#), None);
        assert_eq!(
            find_duplicate_property(br#"{"active":true,"active":false}"#),
            Some("active".into())
        );
        assert_eq!(
            find_duplicate_property(br#"{"name":[{"family":"a"},{"given":["x"],"given":["y"]}]}"#),
            Some("name[1].given".into())
        );
        assert_eq!(
            find_duplicate_property(br#"{"valueQuantity":{"value":1.50,"value":2}}"#),
            Some("valueQuantity.value".into())
        );
        assert_eq!(
            find_duplicate_property(br#"{"x":[1.5,2.25e3,{"y":null}]}"#),
            None
        );
        assert_eq!(
            find_duplicate_property(br#"{"a\u0062":1,"ab":2}"#),
            Some("ab".into())
        );
    }

    #[test]
    fn builds_the_same_tree_as_serde_json() {
        let text = br#"{"a":[1,-2,1.50,2.25e3,1e400,true,null,"x\u0041"],"b":{"c":{}},"d":[]}"#;
        let parsed = super::parse_json(text).unwrap();
        let expected: serde_json::Value = serde_json::from_slice(text).unwrap();
        assert_eq!(parsed, expected);
        assert_eq!(parsed.to_string(), expected.to_string());
        assert!(parsed.to_string().contains("1.50"));
        assert!(matches!(
            super::parse_json(b"{\"a\":1} x"),
            Err(super::ParseError::Syntax(_))
        ));
        assert!(matches!(
            super::parse_json(b"{\"a\":"),
            Err(super::ParseError::Syntax(_))
        ));
    }

    #[test]
    fn large_objects_are_checked_too() {
        let mut keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let clean = format!("{{{}}}", keys.join(","));
        assert_eq!(find_duplicate_property(clean.as_bytes()), None);
        keys.push("\"k7\":0".into());
        let repeated = format!("{{{}}}", keys.join(","));
        assert_eq!(
            find_duplicate_property(repeated.as_bytes()),
            Some("k7".into())
        );
    }
}
