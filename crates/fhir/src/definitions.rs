//! The FHIR R4 definitions, compiled in from `data/fhir-r4/` (see `data/README.md`).
//!
//! Parsed once, on first use.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::Deserialize;

const TYPES_JSON: &str = include_str!("../../../data/fhir-r4/types.json");
const SEARCH_PARAMETERS_JSON: &str = include_str!("../../../data/fhir-r4/search-parameters.json");
const PATIENT_COMPARTMENT_JSON: &str =
    include_str!("../../../data/fhir-r4/compartment-patient.json");
const VALUE_SETS_JSON: &str = include_str!("../../../data/fhir-r4/valuesets.json");

/// What a StructureDefinition defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Resource,
    ComplexType,
    PrimitiveType,
    Logical,
}

/// A resource or data type.
#[derive(Debug, Deserialize)]
pub struct TypeDef {
    pub kind: Kind,
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    pub base: Option<String>,
    pub elements: Vec<ElementDef>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

/// One element of a type; `path` is relative to the type, e.g. `contact.name`, `value[x]`.
#[derive(Debug, Deserialize)]
pub struct ElementDef {
    pub path: String,
    pub min: u32,
    /// `"*"` or a number.
    pub max: String,
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(rename = "contentReference")]
    pub content_reference: Option<String>,
    #[serde(default)]
    pub summary: bool,
    #[serde(default)]
    pub modifier: bool,
    pub binding: Option<Binding>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// Profiles the type must conform to, e.g. `SimpleQuantity`.
    #[serde(rename = "typeProfiles", default)]
    pub type_profiles: Vec<String>,
    /// For `System.*` types (ids, `Extension.url`, primitive values): the FHIR type, e.g. `id`, `uri`.
    #[serde(rename = "fhirType")]
    pub fhir_type: Option<String>,
    /// The value's regex (on the `value` element of a primitive type).
    pub regex: Option<String>,
    #[serde(rename = "maxLength")]
    pub max_length: Option<u64>,
}

/// A terminology binding.
#[derive(Debug, Deserialize)]
pub struct Binding {
    pub strength: String,
    #[serde(rename = "valueSet")]
    pub value_set: String,
}

/// An invariant, with its FHIRPath expression.
#[derive(Debug, Deserialize)]
pub struct Constraint {
    pub key: String,
    pub severity: String,
    pub expression: String,
    pub human: String,
}

/// A search parameter.
#[derive(Debug, Deserialize)]
pub struct SearchParameter {
    pub url: String,
    pub code: String,
    pub base: Vec<String>,
    #[serde(rename = "type")]
    pub param_type: String,
    pub expression: Option<String>,
    #[serde(default)]
    pub target: Vec<String>,
    #[serde(default)]
    pub component: Vec<SearchComponent>,
}

/// One part of a composite search parameter.
#[derive(Debug, Deserialize)]
pub struct SearchComponent {
    pub definition: String,
    pub expression: String,
}

/// A constraint profile on a data type, e.g. `SimpleQuantity` on `Quantity`.
#[derive(Debug, Deserialize)]
pub struct ProfileDef {
    pub base: String,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

/// An expanded value set from `data/fhir-r4/valuesets.json`.
#[derive(Debug, Deserialize)]
pub struct ValueSetDef {
    /// The strongest binding strength that uses it: `required` or `extensible`.
    pub strength: String,
    /// Code system url to its codes, sorted; `None` when the value set could not be expanded.
    pub codes: Option<BTreeMap<String, Vec<String>>>,
    /// Why the value set could not be expanded (external code system, filter, ...).
    #[serde(rename = "notExpandable")]
    pub not_expandable: Option<String>,
}

#[derive(Deserialize)]
struct TypesFile {
    types: BTreeMap<String, TypeDef>,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileDef>,
}

#[derive(Deserialize)]
struct ValueSetsFile {
    #[serde(rename = "valueSets")]
    value_sets: BTreeMap<String, ValueSetDef>,
}

#[derive(Deserialize)]
struct SearchParametersFile {
    #[serde(rename = "searchParameters")]
    search_parameters: Vec<SearchParameter>,
}

#[derive(Deserialize)]
struct CompartmentFile {
    resources: BTreeMap<String, Vec<String>>,
}

/// All R4 definitions.
pub struct Definitions {
    types: BTreeMap<String, TypeDef>,
    profiles: BTreeMap<String, ProfileDef>,
    value_sets: BTreeMap<String, ValueSetDef>,
    resource_types: Vec<String>,
    search_parameters: Vec<SearchParameter>,
    patient_compartment: BTreeMap<String, Vec<String>>,
    search_index: HashMap<String, Vec<usize>>,
}

impl Definitions {
    fn load() -> Result<Definitions, serde_json::Error> {
        let types: TypesFile = serde_json::from_str(TYPES_JSON)?;
        let params: SearchParametersFile = serde_json::from_str(SEARCH_PARAMETERS_JSON)?;
        let compartment: CompartmentFile = serde_json::from_str(PATIENT_COMPARTMENT_JSON)?;
        let value_sets: ValueSetsFile = serde_json::from_str(VALUE_SETS_JSON)?;
        let resource_types = types
            .types
            .iter()
            .filter(|(_, t)| t.kind == Kind::Resource && !t.is_abstract)
            .map(|(name, _)| name.clone())
            .collect();
        let mut search_index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, param) in params.search_parameters.iter().enumerate() {
            for base in &param.base {
                search_index.entry(base.clone()).or_default().push(i);
            }
        }
        Ok(Definitions {
            types: types.types,
            profiles: types.profiles,
            value_sets: value_sets.value_sets,
            resource_types,
            search_parameters: params.search_parameters,
            patient_compartment: compartment.resources,
            search_index,
        })
    }

    /// Whether `name` is a concrete (non-abstract) resource type such as `Patient`.
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resource_types
            .binary_search_by(|t| t.as_str().cmp(name))
            .is_ok()
    }

    /// The concrete resource types, sorted.
    pub fn resource_types(&self) -> &[String] {
        &self.resource_types
    }

    /// A resource or data type by name.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// Every resource and data type, by name.
    pub fn types(&self) -> impl Iterator<Item = (&str, &TypeDef)> {
        self.types.iter().map(|(name, t)| (name.as_str(), t))
    }

    /// A constraint profile on a data type, e.g. `SimpleQuantity`.
    pub fn profile(&self, name: &str) -> Option<&ProfileDef> {
        self.profiles.get(name)
    }

    /// The expanded value set a required or extensible binding points to;
    /// `url` may carry a `|version` suffix, which is ignored.
    pub fn value_set(&self, url: &str) -> Option<&ValueSetDef> {
        let url = url.split_once('|').map_or(url, |(url, _)| url);
        self.value_sets.get(url)
    }

    /// Every expanded (or not expandable) value set, by url.
    pub fn value_sets(&self) -> impl Iterator<Item = (&str, &ValueSetDef)> {
        self.value_sets.iter().map(|(url, vs)| (url.as_str(), vs))
    }

    /// Every search parameter.
    pub fn search_parameters(&self) -> &[SearchParameter] {
        &self.search_parameters
    }

    /// The search parameters whose base is `resource_type` (not including `Resource`/`DomainResource` ones).
    pub fn search_parameters_for(
        &self,
        resource_type: &str,
    ) -> impl Iterator<Item = &SearchParameter> {
        self.search_index
            .get(resource_type)
            .into_iter()
            .flatten()
            .map(|&i| &self.search_parameters[i])
    }

    /// The parameters that place a resource of `resource_type` in a Patient's compartment.
    pub fn patient_compartment_params(&self, resource_type: &str) -> &[String] {
        self.patient_compartment
            .get(resource_type)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(|| match Definitions::load() {
    Ok(definitions) => definitions,
    // The data is compiled in and checked by the tests below; it cannot be wrong at run time.
    Err(error) => panic!("compiled-in FHIR definitions are corrupt: {error}"),
});

/// The FHIR R4 definitions.
pub fn definitions() -> &'static Definitions {
    &DEFINITIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_r4_resource_types_are_known() {
        let defs = definitions();
        assert!(
            defs.resource_types().len() >= 145,
            "{}",
            defs.resource_types().len()
        );
        for name in [
            "Patient",
            "Observation",
            "Bundle",
            "Parameters",
            "Binary",
            "AuditEvent",
        ] {
            assert!(defs.is_resource_type(name), "{name}");
        }
        assert!(!defs.is_resource_type("Resource"));
        assert!(!defs.is_resource_type("DomainResource"));
        assert!(!defs.is_resource_type("HumanName"));
        assert!(!defs.is_resource_type("patient"));
    }

    #[test]
    fn elements_carry_types_cardinality_and_choices() {
        let patient = definitions().type_def("Patient").map(|t| &t.elements);
        let Some(elements) = patient else {
            panic!("no Patient");
        };
        let deceased = elements.iter().find(|e| e.path == "deceased[x]");
        let Some(deceased) = deceased else {
            panic!("no Patient.deceased[x]");
        };
        assert_eq!(deceased.types, ["boolean", "dateTime"]);
        assert_eq!((deceased.min, deceased.max.as_str()), (0, "1"));
        let link_other = elements.iter().find(|e| e.path == "link.other");
        assert_eq!(
            link_other.map(|e| e.targets.clone()),
            Some(vec!["Patient".to_string(), "RelatedPerson".to_string()])
        );
    }

    #[test]
    fn value_sets_load_with_codes_or_a_reason() {
        let defs = definitions();
        let gender = defs.value_set("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1");
        let codes = gender.and_then(|vs| vs.codes.as_ref());
        assert_eq!(
            codes.and_then(|c| c.get("http://hl7.org/fhir/administrative-gender")),
            Some(&vec![
                "female".to_string(),
                "male".to_string(),
                "other".to_string(),
                "unknown".to_string()
            ])
        );
        let ucum = defs.value_set("http://hl7.org/fhir/ValueSet/ucum-units");
        assert!(ucum.is_some_and(|vs| vs.codes.is_none() && vs.not_expandable.is_some()));
        assert!(defs.value_sets().count() > 250);
        assert!(defs.profile("SimpleQuantity").is_some());
        let patient_id = defs
            .type_def("Patient")
            .and_then(|t| t.elements.iter().find(|e| e.path == "id"));
        assert_eq!(
            patient_id.and_then(|e| e.fhir_type.as_deref()),
            Some("string")
        );
    }

    #[test]
    fn search_parameters_and_compartment_load() {
        let defs = definitions();
        assert!(defs.search_parameters().len() > 1300);
        assert!(
            defs.search_parameters_for("Patient")
                .any(|p| p.code == "birthdate")
        );
        assert!(
            defs.patient_compartment_params("Observation")
                .iter()
                .any(|p| p == "subject")
        );
        assert!(defs.patient_compartment_params("Organization").is_empty());
    }
}
