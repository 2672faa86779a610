//! What a principal limited to one patient (a `patient/` token, the patient role) may
//! see: that patient's compartment, as the Patient CompartmentDefinition draws it, and
//! resources outside every patient compartment (Practitioners, Organizations,
//! Medications...) where its scopes allow them.
//!
//! A search gets the compartment as one more clause, so what lies outside it is never
//! matched, counted or paged; a resource read on its own, or brought in by `_include` or
//! `_revinclude`, is checked with [`visible`]. Outside the compartment a resource is
//! invisible (404, or left out), never refused, so nothing hints that it exists.

use privacy::Principal;
use search::{Clause, Query};
use serde_json::Value;
use store::Version;

/// `found`, unless `principal` is limited to a patient whose compartment it is not in:
/// for that principal, it is not there.
pub(crate) fn keep_visible(principal: &Principal, found: Option<Version>) -> Option<Version> {
    match principal.patient().filter(|_| !principal.unchecked) {
        Some(patient) => found.filter(|version| visible(patient, version)),
        None => found,
    }
}

/// Whether the resource `version` is visible to a principal limited to `patient`.
pub(crate) fn visible(patient: &str, version: &Version) -> bool {
    let Some(body) = version.body.as_deref() else {
        // A deletion shows nothing of the resource but its id.
        return in_compartment_by_id(patient, &version.resource_type, &version.id);
    };
    match serde_json::from_str::<Value>(body) {
        Ok(resource) => in_compartment(patient, &version.resource_type, &version.id, &resource),
        Err(_) => false,
    }
}

/// A type outside every patient compartment, or the patient itself.
fn in_compartment_by_id(patient: &str, resource_type: &str, id: &str) -> bool {
    if resource_type == "Patient" {
        return id == patient;
    }
    fhir::definitions()
        .patient_compartment_params(resource_type)
        .is_empty()
}

/// Whether `resource` is in the compartment of `patient`: the patient itself, a resource
/// whose compartment parameters refer to it, or one of a type outside every patient
/// compartment.
pub(crate) fn in_compartment(
    patient: &str,
    resource_type: &str,
    id: &str,
    resource: &Value,
) -> bool {
    if resource_type == "Patient" {
        return id == patient;
    }
    let params = fhir::definitions().patient_compartment_params(resource_type);
    if params.is_empty() {
        return true;
    }
    search::index(resource).iter().any(|row| {
        params.contains(&row.key)
            && matches!(
                &row.value,
                search::IndexValue::Reference {
                    resource_type: Some(target),
                    id: Some(target_id),
                    ..
                } if target == "Patient" && target_id == patient
            )
    })
}

/// Narrows `query` to what a principal limited to `patient` may see: every type of the
/// Patient compartment to the patient's compartment. A search of one type outside the
/// compartment is left as it is; a search over several types keeps only those in the
/// compartment (a type outside it cannot be narrowed in the same clause). `false` when
/// no type is left.
pub(crate) fn restrict(query: &mut Query, patient: &str) -> bool {
    let asked: Vec<String> = if query.types.is_empty() {
        fhir::definitions().resource_types().to_vec()
    } else {
        query.types.clone()
    };
    if let [only] = asked.as_slice() {
        if let Some(clause) = search::compartment("Patient", patient, only) {
            query.clauses.push(clause);
        }
        return true;
    }
    let mut any_of = Vec::new();
    let mut kept = Vec::new();
    for resource_type in asked {
        if let Some(clause) = search::compartment("Patient", patient, &resource_type) {
            any_of.extend(clause.any_of);
            kept.push(resource_type);
        }
    }
    if kept.is_empty() {
        return false;
    }
    query.types = kept;
    query.clauses.push(Clause { any_of });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_compartment_is_the_patient_what_refers_to_it_and_what_no_patient_owns() {
        let own = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
        let other = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/p2"}});
        let practitioner = json!({"resourceType": "Practitioner"});
        assert!(in_compartment("p1", "Observation", "o1", &own));
        assert!(!in_compartment("p1", "Observation", "o2", &other));
        assert!(in_compartment("p1", "Practitioner", "d1", &practitioner));
        assert!(in_compartment(
            "p1",
            "Patient",
            "p1",
            &json!({"resourceType": "Patient"})
        ));
        assert!(!in_compartment(
            "p1",
            "Patient",
            "p2",
            &json!({"resourceType": "Patient"})
        ));
    }

    #[test]
    fn searches_are_narrowed_to_the_compartment() {
        let parse = |types: &[&str]| {
            let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
            search::parse(&types, &[], search::ParseOptions { strict: true })
                .map(|parsed| parsed.query)
                .ok()
        };
        let Some(mut query) = parse(&["Observation"]) else {
            panic!("no query")
        };
        assert!(restrict(&mut query, "p1"));
        assert_eq!(query.clauses.len(), 1);
        let Some(mut query) = parse(&["Practitioner"]) else {
            panic!("no query")
        };
        assert!(restrict(&mut query, "p1"));
        assert!(query.clauses.is_empty());
        let Some(mut query) = parse(&[]) else {
            panic!("no query")
        };
        assert!(restrict(&mut query, "p1"));
        assert!(query.types.contains(&"Condition".to_string()));
        assert!(!query.types.contains(&"Practitioner".to_string()));
    }
}
