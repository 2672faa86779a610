//! The built-in CodeSystem resources (content `not-present`: the concepts are reached
//! through the operations), served by `GET CodeSystem/[id]` and `GET CodeSystem?url=`.
//! They are not in the store; a stored CodeSystem with the same id or url is hidden.

use serde_json::{Value, json};

use super::concept::{System, VERSION};

/// The properties `$lookup` returns, as the CodeSystem declares them: (code, type, description).
pub const PROPERTIES: &[(System, &str, &str, &str)] = &[
    (
        System::Cm,
        "kind",
        "code",
        "chapter, block, header (a category or subcategory with codes below it) or billable",
    ),
    (
        System::Cm,
        "billable",
        "boolean",
        "Valid on a claim (a leaf code, 7th character included)",
    ),
    (
        System::Cm,
        "notSelectable",
        "boolean",
        "Not to be reported: a chapter, block or header",
    ),
    (
        System::Cm,
        "parent",
        "code",
        "The node above: subcategory, category, block or chapter",
    ),
    (System::Cm, "child", "code", "A node directly below"),
    (
        System::Cm,
        "validFrom",
        "dateTime",
        "First day the code may be reported",
    ),
    (
        System::Cm,
        "validTo",
        "dateTime",
        "Last day the code may be reported",
    ),
    (
        System::Cm,
        "includes",
        "string",
        "Includes note (here or, as the description says, on an ancestor)",
    ),
    (
        System::Cm,
        "excludes1",
        "string",
        "Excludes1 note: never coded together with the codes it names",
    ),
    (
        System::Cm,
        "excludes2",
        "string",
        "Excludes2 note: not included here, may be coded together",
    ),
    (
        System::Cm,
        "codeFirst",
        "string",
        "Code first note: the underlying condition is sequenced first",
    ),
    (
        System::Cm,
        "useAdditionalCode",
        "string",
        "Use additional code note",
    ),
    (System::Cm, "codeAlso", "string", "Code also note"),
    (System::Cm, "note", "string", "Other tabular notes"),
    (
        System::Cm,
        "seventhCharacterNote",
        "string",
        "The rule for the 7th character",
    ),
    (
        System::Cm,
        "seventhCharacter",
        "code",
        "A 7th character the code takes (description: its meaning)",
    ),
    (
        System::Pcs,
        "billable",
        "boolean",
        "Valid on a claim (every ICD-10-PCS code is)",
    ),
    (
        System::Pcs,
        "validFrom",
        "dateTime",
        "First day the code may be reported",
    ),
    (
        System::Pcs,
        "validTo",
        "dateTime",
        "Last day the code may be reported",
    ),
    (
        System::Pcs,
        "section",
        "code",
        "1st character (description: its meaning)",
    ),
    (
        System::Pcs,
        "bodySystem",
        "code",
        "2nd character: body system",
    ),
    (
        System::Pcs,
        "rootOperation",
        "code",
        "3rd character: root operation (or type, in other sections)",
    ),
    (
        System::Pcs,
        "bodyPart",
        "code",
        "4th character: body part (or body region)",
    ),
    (System::Pcs, "approach", "code", "5th character: approach"),
    (System::Pcs, "device", "code", "6th character: device"),
    (System::Pcs, "qualifier", "code", "7th character: qualifier"),
];

/// The CodeSystem resource of a system.
pub fn resource(system: System) -> Value {
    let (name, title, publisher, description, count) = match system {
        System::Cm => (
            "ICD10CM",
            "International Classification of Diseases, Tenth Revision, Clinical Modification (ICD-10-CM), FY2026",
            "National Center for Health Statistics (NCHS), Centers for Disease Control and Prevention",
            "ICD-10-CM FY2026 (codes effective 2025-10-01 to 2026-09-30): the tabular list with chapters, blocks, headers and billable codes, and its notes.",
            coding::icd10cm()
                .iter()
                .filter(|c| matches!(c.kind(), coding::CmKind::Header | coding::CmKind::Billable))
                .count(),
        ),
        System::Pcs => (
            "ICD10PCS",
            "International Classification of Diseases, Tenth Revision, Procedure Coding System (ICD-10-PCS), FY2026",
            "Centers for Medicare & Medicaid Services (CMS)",
            "ICD-10-PCS FY2026 (codes effective 2025-10-01 to 2026-09-30), with the meaning of each of a code's seven characters.",
            coding::icd10pcs().len(),
        ),
    };
    let properties: Vec<Value> = PROPERTIES
        .iter()
        .filter(|(s, ..)| *s == system)
        .map(|(_, code, kind, description)| {
            json!({"code": code, "description": description, "type": kind})
        })
        .collect();
    json!({
        "resourceType": "CodeSystem",
        "id": system.id(),
        "url": system.url(),
        "version": VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": false,
        "publisher": publisher,
        "description": description,
        "caseSensitive": false,
        "valueSet": format!("{}?fhir_vs", system.url()),
        "hierarchyMeaning": "is-a",
        "content": "not-present",
        "count": count,
        "property": properties,
    })
}

/// `GET CodeSystem/[id]` for a built-in id.
pub fn builtin_read(id: &str) -> Option<Value> {
    System::ALL.into_iter().find(|s| s.id() == id).map(resource)
}

/// `GET CodeSystem?url=...[&version=...]` naming a built-in system: the searchset
/// Bundle (empty for another version). `None` for any other search, which the store answers.
pub fn builtin_search(base: &str, params: &[(String, String)]) -> Option<Value> {
    let criteria: Vec<&(String, String)> = params
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "_format" | "_pretty"))
        .collect();
    let url = criteria.iter().find(|(name, _)| name == "url")?;
    let system = System::from_url(&url.1)?;
    let mut version = None;
    for (name, value) in &criteria {
        match name.as_str() {
            "url" if value == &url.1 => {}
            "version" if version.is_none() => version = Some(value.as_str()),
            _ => return None,
        }
    }
    let matches = version.is_none_or(|v| system.check_version(Some(v)).is_ok());
    let mut self_url = format!("{base}/CodeSystem?url={}", url.1);
    if let Some(version) = version {
        self_url.push_str(&format!("&version={version}"));
    }
    let entries: Vec<Value> = if matches {
        vec![json!({
            "fullUrl": format!("{base}/CodeSystem/{}", system.id()),
            "resource": resource(system),
            "search": {"mode": "match"},
        })]
    } else {
        Vec::new()
    };
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "link": [{"relation": "self", "url": self_url}],
    });
    if !entries.is_empty()
        && let Some(object) = bundle.as_object_mut()
    {
        object.insert("entry".into(), Value::Array(entries));
    }
    Some(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_by_url_find_the_built_in_systems_and_leave_others_to_the_store() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let found = builtin_search("http://x/fhir", &pairs(&[("url", System::Pcs.url())]));
        assert_eq!(found.as_ref().map(|b| b["total"].clone()), Some(json!(1)));
        let other_version = builtin_search(
            "http://x/fhir",
            &pairs(&[("url", System::Cm.url()), ("version", "2019")]),
        );
        assert_eq!(other_version.map(|b| b["total"].clone()), Some(json!(0)));
        assert!(builtin_search("http://x/fhir", &pairs(&[("url", "http://loinc.org")])).is_none());
        assert!(
            builtin_search(
                "http://x/fhir",
                &pairs(&[("url", System::Cm.url()), ("name", "x")])
            )
            .is_none()
        );
    }
}
