//! The search parameters of every resource type, compiled once from the definitions.

use std::collections::HashMap;
use std::sync::LazyLock;

/// A search parameter's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    pub fn parse(name: &str) -> Option<ParamType> {
        Some(match name {
            "number" => ParamType::Number,
            "date" => ParamType::Date,
            "string" => ParamType::String,
            "token" => ParamType::Token,
            "reference" => ParamType::Reference,
            "composite" => ParamType::Composite,
            "quantity" => ParamType::Quantity,
            "uri" => ParamType::Uri,
            "special" => ParamType::Special,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }
}

/// One search parameter of one resource type.
#[derive(Debug)]
pub struct ParamDef {
    pub code: String,
    pub url: String,
    pub param_type: ParamType,
    /// The FHIRPath expression; `None` for parameters the store evaluates itself
    /// (`_text`, `_content`, `_query`) or whose expression does not compile.
    pub expression: Option<fhirpath::Expression>,
    /// The types a reference parameter may point at.
    pub targets: Vec<String>,
    /// A composite parameter's components, in order.
    pub components: Vec<Component>,
    /// When not empty, this parameter selects exactly what these parameters of the same
    /// type select together (`combo-code` is `code` and `component-code`): it has no
    /// index rows of its own, and a search on it searches them.
    pub union_of: Vec<String>,
}

/// One component of a composite parameter.
#[derive(Debug)]
pub struct Component {
    pub param_type: ParamType,
    /// Evaluated on each item the composite's own expression selects.
    pub expression: fhirpath::Expression,
}

struct Registry {
    by_type: HashMap<String, Vec<ParamDef>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::build);

impl Registry {
    fn build() -> Registry {
        let definitions = fhir::definitions();
        let by_url: HashMap<&str, &fhir::definitions::SearchParameter> = definitions
            .search_parameters()
            .iter()
            .map(|p| (p.url.as_str(), p))
            .collect();
        let common: Vec<&fhir::definitions::SearchParameter> = definitions
            .search_parameters()
            .iter()
            .filter(|p| {
                p.base
                    .iter()
                    .any(|b| b == "Resource" || b == "DomainResource")
            })
            .collect();
        let mut by_type = HashMap::new();
        for resource_type in definitions.resource_types() {
            let mut params: Vec<ParamDef> = Vec::new();
            for p in common
                .iter()
                .copied()
                .chain(definitions.search_parameters_for(resource_type))
            {
                if params.iter().any(|known| known.code == p.code) {
                    continue;
                }
                if let Some(def) = compile(p, resource_type, &by_url) {
                    params.push(def);
                }
            }
            mark_unions(&mut params);
            by_type.insert(resource_type.clone(), params);
        }
        Registry { by_type }
    }
}

fn compile(
    p: &fhir::definitions::SearchParameter,
    resource_type: &str,
    by_url: &HashMap<&str, &fhir::definitions::SearchParameter>,
) -> Option<ParamDef> {
    let param_type = ParamType::parse(&p.param_type)?;
    let expression = p
        .expression
        .as_deref()
        .map(|source| for_type(source, resource_type))
        .and_then(|source: String| fhirpath::Expression::compile(&source).ok());
    let mut components = Vec::new();
    for component in &p.component {
        let definition = by_url.get(component.definition.as_str())?;
        components.push(Component {
            param_type: ParamType::parse(&definition.param_type)?,
            expression: fhirpath::Expression::compile(&component.expression).ok()?,
        });
    }
    Some(ParamDef {
        code: p.code.clone(),
        url: p.url.clone(),
        param_type,
        expression,
        targets: p.target.clone(),
        components,
        union_of: Vec::new(),
    })
}

/// Finds the parameters that are unions of others (see [`ParamDef::union_of`]): their
/// expression's alternatives are exactly those of other parameters of the same kind.
/// Parameters with fewer alternatives are settled first, so a union is always made of
/// parameters that are indexed themselves; of two identical parameters, the one whose
/// code sorts first is indexed. References are left alone (chains and includes name
/// them), and so are parameters without an expression.
fn mark_unions(params: &mut [ParamDef]) {
    let alternatives: Vec<Vec<String>> = params
        .iter()
        .map(|p| match &p.expression {
            Some(expression) if p.param_type != ParamType::Reference => {
                split_alternatives(expression.source())
            }
            _ => Vec::new(),
        })
        .collect();
    let mut order: Vec<usize> = (0..params.len())
        .filter(|&i| !alternatives[i].is_empty())
        .collect();
    order.sort_by(|&a, &b| {
        (alternatives[a].len(), &params[a].code).cmp(&(alternatives[b].len(), &params[b].code))
    });
    let mut indexed: Vec<usize> = Vec::new();
    for i in order {
        let mine = &alternatives[i];
        let cover: Vec<usize> = indexed
            .iter()
            .copied()
            .filter(|&j| {
                same_kind(&params[i], &params[j])
                    && alternatives[j].iter().all(|alt| mine.contains(alt))
            })
            .collect();
        let covered = mine
            .iter()
            .all(|alt| cover.iter().any(|&j| alternatives[j].contains(alt)));
        if covered && !cover.is_empty() {
            params[i].union_of = cover.iter().map(|&j| params[j].code.clone()).collect();
        } else {
            indexed.push(i);
        }
    }
}

fn same_kind(a: &ParamDef, b: &ParamDef) -> bool {
    a.param_type == b.param_type
        && a.components.len() == b.components.len()
        && a.components.iter().zip(&b.components).all(|(x, y)| {
            x.param_type == y.param_type && x.expression.source() == y.expression.source()
        })
}

/// The alternatives of `a | b | (c)`, each without one pair of enclosing parentheses.
fn split_alternatives(source: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let bytes = source.as_bytes();
    for (i, &byte) in bytes.iter().enumerate() {
        match byte {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'|' if depth == 0 => {
                parts.push(&source[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&source[start..]);
    parts
        .into_iter()
        .map(|part| strip_parentheses(part.trim()).to_string())
        .collect()
}

fn strip_parentheses(text: &str) -> &str {
    let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) else {
        return text;
    };
    let mut depth = 0i32;
    for byte in inner.bytes() {
        match byte {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return text;
                }
            }
            _ => {}
        }
    }
    if depth == 0 { inner } else { text }
}

/// A shared parameter's expression lists every base type (`Patient.name | Person.name`);
/// keep the alternatives that apply to `resource_type` so each type evaluates only its own.
fn for_type(source: &str, resource_type: &str) -> String {
    let parts: Vec<&str> = source.split(" | ").map(str::trim).collect();
    if parts.len() < 2 {
        return source.to_string();
    }
    let own: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|part| {
            let head = part.trim_start_matches('(');
            head.starts_with(&format!("{resource_type}."))
                || head.starts_with(&format!("{resource_type} "))
                || head == resource_type
        })
        .collect();
    if own.is_empty() {
        source.to_string()
    } else {
        own.join(" | ")
    }
}

/// Every search parameter of `resource_type`, including the ones every resource has
/// (`_id`, `_lastUpdated`, `_tag`, `_profile`, `_security`, `_source`, `_text`, `_content`).
/// Empty for an unknown type.
pub fn params_for(resource_type: &str) -> &'static [ParamDef] {
    REGISTRY
        .by_type
        .get(resource_type)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// One parameter of a type by its code.
pub fn param(resource_type: &str, code: &str) -> Option<&'static ParamDef> {
    params_for(resource_type).iter().find(|p| p.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_the_common_parameters_and_its_own() {
        let patient = params_for("Patient");
        for code in [
            "_id",
            "_lastUpdated",
            "_tag",
            "_profile",
            "_security",
            "_source",
            "name",
            "birthdate",
            "identifier",
            "general-practitioner",
        ] {
            assert!(
                patient.iter().any(|p| p.code == code),
                "Patient lacks {code}"
            );
        }
        let composite = param("Observation", "code-value-quantity").map(|p| p.components.len());
        assert_eq!(composite, Some(2));
        assert!(params_for("NoSuchType").is_empty());
    }

    #[test]
    fn unions_are_found_and_made_of_indexed_parameters() {
        let union = |code: &str| param("Observation", code).map(|p| p.union_of.clone());
        assert_eq!(
            union("combo-code"),
            Some(vec!["code".to_string(), "component-code".to_string()])
        );
        assert_eq!(
            union("combo-value-quantity"),
            Some(vec![
                "component-value-quantity".to_string(),
                "value-quantity".to_string()
            ])
        );
        assert_eq!(
            union("combo-code-value-quantity"),
            Some(vec![
                "code-value-quantity".to_string(),
                "component-code-value-quantity".to_string()
            ])
        );
        assert_eq!(union("code"), Some(Vec::new()));
        assert_eq!(union("value-quantity"), Some(Vec::new()));
        // References are never unions, even when one is a subset of another.
        assert_eq!(union("subject"), Some(Vec::new()));
        for resource_type in fhir::definitions().resource_types() {
            for p in params_for(resource_type) {
                for part in &p.union_of {
                    let part = param(resource_type, part).map(|d| d.union_of.is_empty());
                    assert_eq!(
                        part,
                        Some(true),
                        "{resource_type}.{} is made of a union",
                        p.code
                    );
                }
            }
        }
    }

    #[test]
    fn alternatives_split_at_the_top_level_only() {
        assert_eq!(
            split_alternatives("(A.value.ofType(Quantity)) | (A.x | A.y).z | A.w"),
            vec!["A.value.ofType(Quantity)", "(A.x | A.y).z", "A.w"]
        );
        assert_eq!(strip_parentheses("(a).b(c)"), "(a).b(c)");
    }

    #[test]
    fn shared_expressions_keep_the_type_s_own_alternative() {
        assert_eq!(
            for_type("Patient.name | Person.name", "Person"),
            "Person.name"
        );
        assert_eq!(
            for_type("Observation.code", "Observation"),
            "Observation.code"
        );
    }

    #[test]
    fn nearly_every_parameter_with_an_expression_compiles() {
        let definitions = fhir::definitions();
        let mut missing = Vec::new();
        for resource_type in definitions.resource_types() {
            for p in definitions.search_parameters_for(resource_type) {
                if p.expression.is_some()
                    && param(resource_type, &p.code)
                        .and_then(|d| d.expression.as_ref())
                        .is_none()
                {
                    missing.push(format!("{resource_type}.{}", p.code));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "expressions that do not compile: {missing:?}"
        );
    }
}
