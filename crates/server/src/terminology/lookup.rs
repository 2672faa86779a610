//! `CodeSystem/$lookup` (R4 OperationDefinition CodeSystem-lookup): `name`, `version`,
//! `display`, the inclusion terms as `designation`s, and `property` parts: the hierarchy
//! (`parent`, `child`), `kind`, `billable`, validity dates, the tabular notes (a note an
//! ancestor holds says so in its `description`) and 7th characters for ICD-10-CM; the
//! meaning of each character for ICD-10-PCS. `property` asks for some properties only.

use coding::icd10cm::NoteKind;
use serde_json::{Value, json};

use super::concept::{Concept, System, VERSION};
use super::params::Params;
use super::{parameter, parameter_parts, parameters};
use crate::error::ApiError;

/// The designation use of an inclusion term: SNOMED CT "Synonym".
fn synonym_use() -> Value {
    json!({"system": "http://snomed.info/sct", "code": "900000000000013009", "display": "Synonym"})
}

pub fn run(params: &Params) -> Result<Value, ApiError> {
    let (system, code) = system_and_code(params)?;
    system.check_version(params.text("version")?)?;
    let concept = system.require(&code)?;
    let wanted = params.texts("property");
    let mut out = vec![
        parameter("name", "valueString", json!(system.title())),
        parameter("version", "valueString", json!(VERSION)),
        parameter("display", "valueString", json!(concept.display())),
    ];
    for term in concept.inclusion_terms() {
        out.push(parameter_parts(
            "designation",
            vec![
                parameter("language", "valueCode", json!("en")),
                parameter("use", "valueCoding", synonym_use()),
                parameter("value", "valueString", json!(term)),
            ],
        ));
    }
    for (code, value_type, value, description) in properties(&concept) {
        if !wanted.is_empty() && !wanted.contains(&code) {
            continue;
        }
        let mut parts = vec![
            parameter("code", "valueCode", json!(code)),
            parameter("value", value_type, value),
        ];
        if let Some(description) = description {
            parts.push(parameter("description", "valueString", json!(description)));
        }
        out.push(parameter_parts("property", parts));
    }
    Ok(parameters(out))
}

/// The system and code from `system` + `code`, or from `coding`.
fn system_and_code(params: &Params) -> Result<(System, String), ApiError> {
    let coding = params.coding("coding")?;
    let code = params.text("code")?;
    match (code, coding) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "$lookup takes either code (with system) or coding, not both",
        )),
        (Some(code), None) => {
            let system = params
                .text("system")?
                .ok_or_else(|| params.missing("system"))?;
            Ok((System::find(system)?, code.to_string()))
        }
        (None, Some(coding)) => {
            let system = coding
                .system
                .as_deref()
                .ok_or_else(|| params.bad("coding", "has no system"))?;
            let code = coding
                .code
                .ok_or_else(|| params.bad("coding", "has no code"))?;
            Ok((System::find(system)?, code))
        }
        (None, None) => Err(params.missing("code")),
    }
}

type Property = (&'static str, &'static str, Value, Option<String>);

fn properties(concept: &Concept<'_>) -> Vec<Property> {
    let mut out: Vec<Property> = Vec::new();
    if let Concept::Cm(_) = concept {
        out.push(("kind", "valueCode", json!(concept.kind()), None));
    }
    out.push((
        "billable",
        "valueBoolean",
        json!(concept.is_billable()),
        None,
    ));
    if let Concept::Cm(_) = concept {
        out.push((
            "notSelectable",
            "valueBoolean",
            json!(!concept.is_billable()),
            None,
        ));
    }
    match concept {
        Concept::Cm(code) => {
            if let Some(parent) = code.parent() {
                out.push((
                    "parent",
                    "valueCode",
                    json!(parent.display()),
                    Some(parent.description().to_string()),
                ));
            }
            for child in code.children() {
                out.push((
                    "child",
                    "valueCode",
                    json!(child.display()),
                    Some(child.description().to_string()),
                ));
            }
        }
        Concept::Pcs(_) => {}
    }
    if let Some((first, last)) = concept.valid_dates() {
        out.push(("validFrom", "valueDateTime", json!(first.to_string()), None));
        out.push(("validTo", "valueDateTime", json!(last.to_string()), None));
    }
    match concept {
        Concept::Cm(code) => {
            const NOTES: &[(NoteKind, &str)] = &[
                (NoteKind::Includes, "includes"),
                (NoteKind::Excludes1, "excludes1"),
                (NoteKind::Excludes2, "excludes2"),
                (NoteKind::CodeFirst, "codeFirst"),
                (NoteKind::UseAdditionalCode, "useAdditionalCode"),
                (NoteKind::CodeAlso, "codeAlso"),
                (NoteKind::Notes, "note"),
                (NoteKind::SevenChrNote, "seventhCharacterNote"),
            ];
            for (kind, name) in NOTES {
                for (holder, note) in code.applicable_notes(*kind) {
                    let description = (holder.code() != code.code())
                        .then(|| format!("from {}", holder.display()));
                    out.push((name, "valueString", json!(note.text), description));
                }
            }
            for (character, meaning) in code.seventh_characters() {
                out.push((
                    "seventhCharacter",
                    "valueCode",
                    json!(character.to_string()),
                    Some(meaning.to_string()),
                ));
            }
        }
        Concept::Pcs(code) => {
            const NAMES: [&str; 7] = [
                "section",
                "bodySystem",
                "rootOperation",
                "bodyPart",
                "approach",
                "device",
                "qualifier",
            ];
            for axis in code.axes() {
                let Some(name) = NAMES.get(usize::from(axis.position).saturating_sub(1)) else {
                    continue;
                };
                out.push((
                    name,
                    "valueCode",
                    json!(axis.value.to_string()),
                    axis.label.clone(),
                ));
            }
        }
    }
    out
}
