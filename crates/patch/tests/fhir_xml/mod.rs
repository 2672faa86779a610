//! Test-only FHIR XML → FHIR JSON, enough for the official patch cases.
//!
//! Elements with a `value` attribute are primitives; their JSON kind comes from the element's
//! FHIR type (boolean → bool; integer, positiveInt, unsignedInt, decimal → number; else
//! string). Repeating elements (max ≠ 1 in the R4 definitions, walking nested and choice
//! elements from the resource type) become arrays. A primitive's `id` and `extension` go in
//! its `_name` sibling; nested resources become `{"resourceType": …}` objects; the XHTML
//! `div` becomes a string, serialised with only `&`, `<`, `>` (and `"` in attributes) escaped.
//! Anything the definitions do not know is an error, not a guess.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fhir::definitions::{ElementDef, Kind, TypeDef};
use roxmltree::Node;
use serde_json::{Map, Value};

const XHTML: &str = "http://www.w3.org/1999/xhtml";

/// Where an XML element's children are defined: a type, and a path prefix within it.
struct Scope {
    type_name: String,
    def: &'static TypeDef,
    prefix: String,
}

impl Scope {
    fn of_type(name: &str) -> Result<Scope, String> {
        let def = fhir::definitions()
            .type_def(name)
            .ok_or_else(|| format!("unknown FHIR type {name}"))?;
        Ok(Scope {
            type_name: name.to_string(),
            def,
            prefix: String::new(),
        })
    }

    fn path_of(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The element definition for the XML child `name`, and its type code.
    fn lookup(&self, name: &str) -> Result<(&'static ElementDef, String), String> {
        let elements = &self.def.elements;
        let path = self.path_of(name);
        if let Some(element) = elements.iter().find(|e| e.path == path) {
            let code = element.types.first().cloned().unwrap_or_default();
            return Ok((element, code));
        }
        for element in elements {
            let Some(base) = element.path.strip_suffix("[x]") else {
                continue;
            };
            let Some(suffix) = path.strip_prefix(base) else {
                continue;
            };
            for code in &element.types {
                let mut chars = code.chars();
                let capitalised = match chars.next() {
                    Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                    None => continue,
                };
                if capitalised == suffix {
                    return Ok((element, code.clone()));
                }
            }
        }
        Err(format!("{} has no element {path}", self.type_name))
    }

    /// The scope of a complex child.
    fn child(&self, element: &ElementDef, code: &str) -> Result<Scope, String> {
        if let Some(reference) = &element.content_reference {
            let reference = reference.trim_start_matches('#');
            let (type_name, path) = match reference.split_once('.') {
                Some((first, rest)) if fhir::definitions().type_def(first).is_some() => {
                    (first.to_string(), rest.to_string())
                }
                _ => (self.type_name.clone(), reference.to_string()),
            };
            let mut scope = Scope::of_type(&type_name)?;
            scope.prefix = path;
            return Ok(scope);
        }
        match code {
            "BackboneElement" | "Element" => Ok(Scope {
                type_name: self.type_name.clone(),
                def: self.def,
                prefix: element.path.clone(),
            }),
            code => Scope::of_type(code),
        }
    }
}

fn is_primitive(code: &str) -> bool {
    code.starts_with("http://hl7.org/fhirpath/System.")
        || fhir::definitions()
            .type_def(code)
            .is_some_and(|t| t.kind == Kind::PrimitiveType)
}

fn primitive_json(code: &str, text: &str) -> Result<Value, String> {
    match code {
        "boolean" => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{text:?} is not a boolean")),
        },
        "integer" | "positiveInt" | "unsignedInt" | "decimal" | "integer64" => {
            serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_number)
                .ok_or_else(|| format!("{text:?} is not a number"))
        }
        _ => Ok(Value::String(text.to_string())),
    }
}

/// The resource the XML element `node` is (e.g. `<Patient xmlns="http://hl7.org/fhir">`).
pub fn resource(node: Node<'_, '_>) -> Result<Value, String> {
    let name = node.tag_name().name();
    let scope = Scope::of_type(name)?;
    let mut object = Map::new();
    object.insert("resourceType".into(), Value::String(name.to_string()));
    children(node, &scope, &mut object)?;
    Ok(Value::Object(object))
}

/// Values gathered for one JSON property: the value and `_name` object of each occurrence.
struct Property {
    key: String,
    repeats: bool,
    items: Vec<(Option<Value>, Option<Value>)>,
}

fn children(
    node: Node<'_, '_>,
    scope: &Scope,
    object: &mut Map<String, Value>,
) -> Result<(), String> {
    let mut properties: Vec<Property> = Vec::new();
    for child in node.children().filter(Node::is_element) {
        let name = child.tag_name().name();
        if name == "div" && child.tag_name().namespace() == Some(XHTML) {
            let mut text = String::new();
            xhtml(child, true, &mut text);
            properties.push(Property {
                key: "div".into(),
                repeats: false,
                items: vec![(Some(Value::String(text)), None)],
            });
            continue;
        }
        let (element, code) = scope.lookup(name)?;
        let item = if code == "Resource" || code == "DomainResource" {
            let inner = child
                .children()
                .find(Node::is_element)
                .ok_or_else(|| format!("{name} holds no resource"))?;
            (Some(resource(inner)?), None)
        } else if is_primitive(&code) && element.content_reference.is_none() {
            primitive(child, &code)?
        } else {
            let child_scope = scope.child(element, &code)?;
            let mut inner = Map::new();
            if let Some(id) = child.attribute("id") {
                inner.insert("id".into(), Value::String(id.to_string()));
            }
            if let Some(url) = child.attribute("url") {
                inner.insert("url".into(), Value::String(url.to_string()));
            }
            children(child, &child_scope, &mut inner)?;
            (Some(Value::Object(inner)), None)
        };
        match properties.iter_mut().find(|p| p.key == name) {
            Some(property) => property.items.push(item),
            None => properties.push(Property {
                key: name.to_string(),
                repeats: element.max != "1",
                items: vec![item],
            }),
        }
    }
    for property in properties {
        let Property {
            key,
            repeats,
            items,
        } = property;
        if !repeats && items.len() > 1 {
            return Err(format!(
                "{key} occurs {} times but does not repeat",
                items.len()
            ));
        }
        let (values, extensions): (Vec<Value>, Vec<Value>) = items
            .into_iter()
            .map(|(v, e)| (v.unwrap_or(Value::Null), e.unwrap_or(Value::Null)))
            .unzip();
        let has_values = values.iter().any(|v| !v.is_null());
        let has_extensions = extensions.iter().any(|e| !e.is_null());
        let (value, extension) = if repeats {
            (Value::Array(values), Value::Array(extensions))
        } else {
            (
                values.into_iter().next().unwrap_or(Value::Null),
                extensions.into_iter().next().unwrap_or(Value::Null),
            )
        };
        if has_values {
            object.insert(key.clone(), value);
        }
        if has_extensions {
            object.insert(format!("_{key}"), extension);
        }
    }
    Ok(())
}

/// A primitive element: its value, and its `_name` object (id, extensions) if it has one.
fn primitive(node: Node<'_, '_>, code: &str) -> Result<(Option<Value>, Option<Value>), String> {
    let value = node
        .attribute("value")
        .map(|text| primitive_json(code, text))
        .transpose()?;
    let mut extension = Map::new();
    if let Some(id) = node.attribute("id") {
        extension.insert("id".into(), Value::String(id.to_string()));
    }
    let scope = Scope::of_type("Element")?;
    children(node, &scope, &mut extension)?;
    let extension = (!extension.is_empty()).then_some(Value::Object(extension));
    if value.is_none() && extension.is_none() {
        return Err(format!(
            "<{}> has neither a value nor extensions",
            node.tag_name().name()
        ));
    }
    Ok((value, extension))
}

fn escape(text: &str, attribute: bool, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

fn xhtml(node: Node<'_, '_>, root: bool, out: &mut String) {
    let name = node.tag_name().name();
    out.push('<');
    out.push_str(name);
    if root {
        out.push_str(" xmlns=\"");
        out.push_str(XHTML);
        out.push('"');
    }
    for attribute in node.attributes() {
        out.push(' ');
        out.push_str(attribute.name());
        out.push_str("=\"");
        escape(attribute.value(), true, out);
        out.push('"');
    }
    if !node.has_children() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for child in node.children() {
        if child.is_element() {
            xhtml(child, false, out);
        } else if child.is_text() {
            escape(child.text().unwrap_or(""), false, out);
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(xml: &str) -> Value {
        let document = roxmltree::Document::parse(xml).unwrap();
        resource(document.root_element()).unwrap()
    }

    #[test]
    fn primitives_lists_extensions_choices_and_nested_resources() {
        let patient = convert(
            r#"<Patient xmlns="http://hl7.org/fhir">
                 <id value="p1"/>
                 <contained><Organization><name value="o"/></Organization></contained>
                 <active value="true"/>
                 <name id="n1"><given value="a"/><given><extension url="u"><valueInteger value="7"/></extension></given></name>
                 <birthDate value="1974-12-25"><extension url="t"><valueDateTime value="1974-12-25T14:35:45-05:00"/></extension></birthDate>
                 <deceasedBoolean value="false"/>
                 <multipleBirthInteger value="2"/>
                 <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p class="x">a &amp; "b"</p><br/></div></text>
               </Patient>"#,
        );
        assert_eq!(
            patient,
            json!({
                "resourceType": "Patient",
                "id": "p1",
                "contained": [{"resourceType": "Organization", "name": "o"}],
                "active": true,
                "name": [{"id": "n1", "given": ["a", null], "_given": [null, {"extension": [{"url": "u", "valueInteger": 7}]}]}],
                "birthDate": "1974-12-25",
                "_birthDate": {"extension": [{"url": "t", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
                "deceasedBoolean": false,
                "multipleBirthInteger": 2,
                "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p class=\"x\">a &amp; \"b\"</p><br/></div>"}
            })
        );
    }

    #[test]
    fn parameters_parts_nest_through_the_content_reference() {
        let parameters = convert(
            r#"<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>
                 <part><name value="value"/><part><name value="name"/><valueHumanName><text value="t"/></valueHumanName></part></part>
               </parameter></Parameters>"#,
        );
        assert_eq!(
            parameters,
            json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
                {"name": "value", "part": [{"name": "name", "valueHumanName": {"text": "t"}}]}
            ]}]})
        );
    }

    #[test]
    fn unknown_elements_are_errors() {
        let document = roxmltree::Document::parse(
            r#"<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>"#,
        )
        .unwrap();
        assert!(resource(document.root_element()).is_err());
    }
}
