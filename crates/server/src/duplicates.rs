//! FHIR JSON forbids repeating a property in one object; a JSON parser keeps the last one
//! silently. This pass finds them, with where they are.
//!
//! It allocates little: keys are borrowed from the input where they have no escapes, and a
//! property's path is only written out when a duplicate is found.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The first property that appears twice in one object, as `path.to.name`, if any.
pub fn find_duplicate_property(bytes: &[u8]) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match (Walk { at: &At::Root }).deserialize(&mut deserializer) {
        Err(error) => {
            let message = error.to_string();
            message
                .strip_prefix(DUPLICATE)
                .map(|rest| rest.split(" at line").next().unwrap_or(rest).to_string())
        }
        Ok(()) => None,
    }
}

const DUPLICATE: &str = "duplicate property ";

/// Objects with more keys than this are checked with a hash set, fewer by a scan.
const SCAN_LIMIT: usize = 32;

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

struct Walk<'p> {
    at: &'p At<'p>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let at = At::Index(self.at, index);
            if seq.next_element_seed(Walk { at: &at })?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        let mut many: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            // Numbers kept as text arrive as a one-entry map; its value is not a property.
            if key == "$serde_json::private::Number" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let repeated = match &mut many {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let repeated = seen.contains(&key);
                    seen.push(key.clone());
                    if seen.len() > SCAN_LIMIT {
                        many = Some(seen.drain(..).collect());
                    }
                    repeated
                }
            };
            let at = At::Key(self.at, &key);
            if repeated {
                return Err(de::Error::custom(format!("{DUPLICATE}{at}")));
            }
            map.next_value_seed(Walk { at: &at })?;
        }
        Ok(())
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
