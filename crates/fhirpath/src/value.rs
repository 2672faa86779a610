//! Items of a collection: JSON nodes with their FHIR type, and System values.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::model::{self, FhirType};
use crate::temporal::{self, DateTime, Time};

pub(crate) static NULL: Value = Value::Null;

/// A node of the input JSON, with its FHIR type.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    /// The JSON value; `null` for a primitive that has only an `_element` (id/extensions).
    pub value: &'a Value,
    /// For primitives, the `_name` sibling object carrying `id` and `extension`.
    pub extension: Option<&'a Value>,
    pub fhir_type: FhirType<'a>,
}

/// A System.Quantity.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity {
    pub value: Decimal,
    /// A UCUM code, or a calendar keyword such as `week`.
    pub unit: String,
}

/// One item of a collection.
#[derive(Clone, Debug)]
pub enum Item<'a> {
    Node(Node<'a>),
    Boolean(bool),
    String(Cow<'a, str>),
    Integer(i64),
    Decimal(Decimal),
    Date(DateTime),
    DateTime(DateTime),
    Time(Time),
    Quantity(Quantity),
    /// The result of `type()`.
    TypeInfo {
        namespace: &'static str,
        name: String,
    },
}

/// The result of an evaluation.
pub type Collection<'a> = Vec<Item<'a>>;

/// A System-level view of an item, for operators and functions.
#[derive(Clone, Debug)]
pub(crate) enum Prim<'x> {
    Boolean(bool),
    String(Cow<'x, str>),
    Integer(i64),
    Decimal(Decimal),
    Date(DateTime),
    DateTime(DateTime),
    Time(Time),
    Quantity(Decimal, Cow<'x, str>),
}

pub(crate) fn json_decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => parse_decimal(n.as_str()),
        _ => None,
    }
}

pub(crate) fn parse_decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text)
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
        .or_else(|| Decimal::from_str(text).ok())
}

const QUANTITY_TYPES: [&str; 7] = [
    "Quantity",
    "Age",
    "Duration",
    "Distance",
    "Count",
    "SimpleQuantity",
    "MoneyQuantity",
];

impl<'a> Node<'a> {
    /// A node of a known type (see [`FhirType::named`] and [`FhirType::of_path`]).
    pub fn new(value: &'a Value, fhir_type: FhirType<'a>) -> Node<'a> {
        Node {
            value,
            extension: None,
            fhir_type,
        }
    }

    /// A node for a whole resource.
    pub fn resource(value: &'a Value) -> Node<'a> {
        Node {
            value,
            extension: None,
            fhir_type: model::resource_type(value),
        }
    }

    /// Whether both are the same node: the same JSON value, `_name` sibling and type.
    pub(crate) fn same(&self, other: &Node<'_>) -> bool {
        std::ptr::eq(self.value, other.value)
            && self.extension.map(std::ptr::from_ref) == other.extension.map(std::ptr::from_ref)
            && self.fhir_type == other.fhir_type
    }

    /// The System value of a primitive (or Quantity) node.
    pub(crate) fn prim(&self) -> Option<Prim<'a>> {
        let name = self.fhir_type.name;
        match self.value {
            Value::Null | Value::Array(_) => None,
            Value::Object(map) => {
                if QUANTITY_TYPES.contains(&name) {
                    let value = json_decimal(map.get("value")?)?;
                    let unit = map
                        .get("code")
                        .filter(|_| {
                            map.get("system")
                                .and_then(Value::as_str)
                                .is_none_or(|s| s == "http://unitsofmeasure.org")
                        })
                        .or_else(|| map.get("unit"))
                        .and_then(Value::as_str)
                        .unwrap_or("1");
                    Some(Prim::Quantity(value, Cow::Borrowed(unit)))
                } else {
                    None
                }
            }
            Value::Bool(b) => Some(Prim::Boolean(*b)),
            Value::Number(n) => {
                // Numbers keep their text (`arbitrary_precision`), so `1.50` stays a 2-digit decimal.
                let text = n.as_str();
                match name {
                    "decimal" => parse_decimal(text).map(Prim::Decimal),
                    "integer" | "positiveInt" | "unsignedInt" | "integer64" => {
                        text.parse().ok().map(Prim::Integer)
                    }
                    _ => match text.parse::<i64>() {
                        Ok(i) => Some(Prim::Integer(i)),
                        Err(_) => parse_decimal(text).map(Prim::Decimal),
                    },
                }
            }
            Value::String(s) => {
                let parsed = match name {
                    "date" => temporal::parse_date(s).map(Prim::Date),
                    "dateTime" | "instant" => temporal::parse_datetime(s).map(Prim::DateTime),
                    "time" => temporal::parse_time(s).map(Prim::Time),
                    "decimal" => parse_decimal(s).map(Prim::Decimal),
                    "integer" | "positiveInt" | "unsignedInt" => s.parse().ok().map(Prim::Integer),
                    "boolean" => match s.as_str() {
                        "true" => Some(Prim::Boolean(true)),
                        "false" => Some(Prim::Boolean(false)),
                        _ => None,
                    },
                    _ => None,
                };
                parsed.or(Some(Prim::String(Cow::Borrowed(s.as_str()))))
            }
        }
    }
}

impl<'a> Item<'a> {
    /// The System value of this item, if it has one (complex nodes other than quantities don't).
    pub(crate) fn prim(&self) -> Option<Prim<'_>> {
        Some(match self {
            Item::Node(node) => return node.prim(),
            Item::Boolean(b) => Prim::Boolean(*b),
            Item::String(s) => Prim::String(Cow::Borrowed(s)),
            Item::Integer(i) => Prim::Integer(*i),
            Item::Decimal(d) => Prim::Decimal(*d),
            Item::Date(d) => Prim::Date(*d),
            Item::DateTime(d) => Prim::DateTime(*d),
            Item::Time(t) => Prim::Time(*t),
            Item::Quantity(q) => Prim::Quantity(q.value, Cow::Borrowed(&q.unit)),
            Item::TypeInfo { .. } => return None,
        })
    }

    pub(crate) fn from_prim(prim: Prim<'_>) -> Item<'a> {
        match prim {
            Prim::Boolean(b) => Item::Boolean(b),
            Prim::String(s) => Item::String(Cow::Owned(s.into_owned())),
            Prim::Integer(i) => Item::Integer(i),
            Prim::Decimal(d) => Item::Decimal(d),
            Prim::Date(d) => Item::Date(d),
            Prim::DateTime(d) => Item::DateTime(d),
            Prim::Time(t) => Item::Time(t),
            Prim::Quantity(value, unit) => Item::Quantity(Quantity {
                value,
                unit: unit.into_owned(),
            }),
        }
    }

    /// This item as a System value: primitive and Quantity nodes convert (a FHIR `date` to a
    /// Date, `decimal` keeping its written precision), System values stay, other nodes have none.
    pub fn to_system(&self) -> Option<Item<'a>> {
        match self {
            Item::Node(node) => node.prim().map(Item::from_prim_borrowed),
            Item::TypeInfo { .. } => None,
            other => Some(other.clone()),
        }
    }

    fn from_prim_borrowed(prim: Prim<'a>) -> Item<'a> {
        match prim {
            Prim::String(s) => Item::String(s),
            other => Item::from_prim(other),
        }
    }

    /// The JSON node, if this item is one.
    pub fn as_node(&self) -> Option<&Node<'a>> {
        match self {
            Item::Node(node) => Some(node),
            _ => None,
        }
    }

    /// The string value of a String item or a string-like primitive node.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Item::String(s) => Some(s),
            Item::Node(node) => node.value.as_str(),
            _ => None,
        }
    }

    /// The boolean value of a Boolean item or a FHIR boolean node.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Boolean(b) => Some(*b),
            Item::Node(node) => node.value.as_bool(),
            _ => None,
        }
    }

    /// The type name: a FHIR type for nodes, a System type otherwise.
    pub fn type_name(&self) -> (&'static str, &str) {
        match self {
            Item::Node(node) => ("FHIR", node.fhir_type.name),
            Item::Boolean(_) => ("System", "Boolean"),
            Item::String(_) => ("System", "String"),
            Item::Integer(_) => ("System", "Integer"),
            Item::Decimal(_) => ("System", "Decimal"),
            Item::Date(_) => ("System", "Date"),
            Item::DateTime(_) => ("System", "DateTime"),
            Item::Time(_) => ("System", "Time"),
            Item::Quantity(_) => ("System", "Quantity"),
            Item::TypeInfo { .. } => ("System", "SimpleTypeInfo"),
        }
    }
}

pub(crate) fn format_quantity(value: &Decimal, unit: &str) -> String {
    if crate::ucum::calendar_keyword(unit).is_some() {
        format!("{value} {unit}")
    } else {
        format!("{value} '{unit}'")
    }
}

impl fmt::Display for Prim<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prim::Boolean(b) => write!(f, "{b}"),
            Prim::String(s) => f.write_str(s),
            Prim::Integer(i) => write!(f, "{i}"),
            Prim::Decimal(d) => write!(f, "{d}"),
            Prim::Date(d) => f.write_str(&d.fmt_date()),
            Prim::DateTime(d) => f.write_str(&d.fmt_datetime()),
            Prim::Time(t) => write!(f, "{t}"),
            Prim::Quantity(value, unit) => f.write_str(&format_quantity(value, unit)),
        }
    }
}

impl fmt::Display for Item<'_> {
    /// The FHIRPath string form (`toString()`); complex nodes print as JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prim() {
            Some(prim) => prim.fmt(f),
            None => match self {
                Item::Node(node) => write!(f, "{}", node.value),
                Item::TypeInfo { namespace, name } => write!(f, "{namespace}.{name}"),
                _ => Ok(()),
            },
        }
    }
}
