//! What a principal may not see although its role and scopes allow the type: resources
//! carrying a sensitive label it has no permission for (`privacy::labels`), and the data
//! that patients' consents deny it (`privacy::consent`), unless it broke the glass for
//! that patient (`glass`).
//!
//! A search gets the restriction as more clauses of its query (and `Query::reached` for
//! what its chains and `_has` reach), so hidden resources are never matched, counted or
//! paged. A resource read on its own (read, vread, history entries, includes, bundle
//! entries, `$everything`'s referenced resources) is checked with [`View::sees`].
//! Hidden resources are invisible (404, or left out), never refused.

use std::collections::HashMap;
use std::sync::Arc;

use privacy::Principal;
use privacy::consent::{Denial, Part, Who};
use privacy::labels::Label;
use search::{Clause, Criterion, ParamType, Query, Reached, Step, SystemMatch, Test, TokenTest};
use serde_json::Value;
use store::Version;

use crate::AppState;
use crate::error::ApiError;

/// Types no consent hides: the consents themselves (they must stay manageable) and the
/// audit trail (it must stay reviewable). Labels still hide them.
const NOT_CONSENTED: [&str; 2] = ["Consent", "AuditEvent"];

/// Most clauses one consent denial becomes for one type; beyond it the denial hides
/// the patient's resources of that type whole (hiding more, never less).
const MAX_CLAUSES_PER_DENIAL: usize = 64;

/// The restrictions on one principal, for one request.
#[derive(Clone, Debug, Default)]
pub(crate) struct View {
    /// Nothing is hidden (`--insecure-no-auth`).
    open: bool,
    /// The labels the principal may not see.
    hidden: Vec<Label>,
    /// What the patients' consents deny the principal.
    denied: Arc<Denied>,
    /// The patients the principal broke the glass for (label and consent restrictions
    /// lifted on their data).
    glass: Vec<String>,
}

/// What no consent denies: shared by every view while no Consent is active.
static NO_DENIALS: std::sync::LazyLock<Arc<Denied>> =
    std::sync::LazyLock::new(|| Arc::new(Denied::default()));

/// What consents deny one principal, two ways: by patient, for checking one resource;
/// and by denial, with every patient that denies it, so that a search gets a clause per
/// kind of denial rather than per patient (thousands of consents would otherwise make
/// a query too large to run).
#[derive(Debug, Default)]
pub(crate) struct Denied {
    by_patient: HashMap<String, Vec<Denial>>,
    groups: Vec<(Denial, Arc<[String]>)>,
}

impl Denied {
    fn of(denials: Vec<(String, Vec<Denial>)>) -> Denied {
        let mut by_patient: HashMap<String, Vec<Denial>> = HashMap::new();
        let mut groups: Vec<(Denial, Vec<String>)> = Vec::new();
        let mut group_of: HashMap<String, usize> = HashMap::new();
        for (patient, denials) in denials {
            for denial in &denials {
                let index = *group_of.entry(format!("{denial:?}")).or_insert_with(|| {
                    groups.push((denial.clone(), Vec::new()));
                    groups.len() - 1
                });
                groups[index].1.push(patient.clone());
            }
            by_patient.entry(patient).or_default().extend(denials);
        }
        Denied {
            by_patient,
            groups: groups
                .into_iter()
                .map(|(denial, mut patients)| {
                    // A patient with two consents alike is named once.
                    patients.sort_unstable();
                    patients.dedup();
                    (denial, Arc::from(patients))
                })
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.by_patient.is_empty()
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

impl View {
    /// The view of a server without access checks: everything.
    pub(crate) fn open() -> View {
        View {
            open: true,
            ..View::default()
        }
    }

    /// What `principal` may not see now.
    pub(crate) async fn of(state: &AppState, principal: &Principal) -> Result<View, ApiError> {
        if principal.unchecked {
            return Ok(View::open());
        }
        let now = now();
        let glass = state.grants.patients(&principal.subject, now);
        let consents = state.consents.active(&state.store).await?;
        let denied = if consents.is_empty() {
            Arc::clone(&NO_DENIALS)
        } else {
            let who = Who::of(principal, now);
            // What the consents deny depends on who asks, the patient a token is
            // limited to, the broken glass and the second (provision periods): worked
            // out once per second for each, not for every request.
            let key = format!("{who:?}|{:?}|{glass:?}", principal.patient());
            state.consents.denied(&consents, key, || {
                let mut denials = Vec::new();
                for consent in consents.iter() {
                    // A patient's own consent does not hide the patient's record from
                    // them, and a broken glass lifts it.
                    if principal.patient() == Some(consent.patient.as_str())
                        || glass.contains(&consent.patient)
                    {
                        continue;
                    }
                    let denied = privacy::consent::denials(consent, &who);
                    if !denied.is_empty() {
                        denials.push((consent.patient.clone(), denied));
                    }
                }
                Denied::of(denials)
            })
        };
        Ok(View {
            open: false,
            hidden: privacy::labels::hidden_from(principal),
            denied,
            glass,
        })
    }

    pub(crate) fn hides_nothing(&self) -> bool {
        self.open || (self.hidden.is_empty() && self.denied.is_empty())
    }

    /// Narrows `query` to what this view sees: clauses for each searched type (every
    /// type when none is named), and the same for every type its chains and `_has`
    /// reach.
    pub(crate) fn narrow(&self, query: &mut Query) {
        if self.hides_nothing() {
            return;
        }
        let searched: Vec<String> = if query.types.is_empty() {
            fhir::definitions().resource_types().to_vec()
        } else {
            query.types.clone()
        };
        let mut reached: Vec<String> = Vec::new();
        for clause in &query.clauses {
            for criterion in &clause.any_of {
                for step in &criterion.path {
                    let resource_type = match step {
                        Step::Forward { target_type, .. } => target_type,
                        Step::Reverse { source_type, .. } => source_type,
                    };
                    if !reached.contains(resource_type) {
                        reached.push(resource_type.clone());
                    }
                }
            }
        }
        query.clauses.extend(self.label_clauses(&searched));
        for resource_type in &searched {
            query.clauses.extend(self.consent_clauses(resource_type));
        }
        for resource_type in reached {
            let mut clauses = self.label_clauses(std::slice::from_ref(&resource_type));
            clauses.extend(self.consent_clauses(&resource_type));
            if !clauses.is_empty() {
                query.reached.push(Reached {
                    resource_type,
                    clauses,
                });
            }
        }
    }

    /// Narrows a bulk export to what this view sees: every type read gets the clauses of
    /// its restrictions, within each of its `_typeFilter`s or as a filter of its own.
    pub(crate) fn narrow_scan(&self, scan: &mut store::ScanRequest) {
        if self.hides_nothing() {
            return;
        }
        let types: Vec<String> = if scan.types.is_empty() {
            fhir::definitions().resource_types().to_vec()
        } else {
            scan.types.clone()
        };
        for resource_type in types {
            let mut clauses = self.label_clauses(std::slice::from_ref(&resource_type));
            clauses.extend(self.consent_clauses(&resource_type));
            if clauses.is_empty() {
                continue;
            }
            let mut filtered = false;
            for filter in &mut scan.filters {
                if filter.resource_type == resource_type {
                    filter.query.clauses.extend(clauses.iter().cloned());
                    filtered = true;
                }
            }
            if filtered {
                continue;
            }
            let empty = search::parse(
                std::slice::from_ref(&resource_type),
                &[],
                search::ParseOptions { strict: true },
            );
            if let Ok(parsed) = empty {
                let mut query = parsed.query;
                query.clauses = clauses;
                scan.filters.push(store::TypeFilter {
                    resource_type,
                    query,
                });
            }
        }
    }

    /// One clause per hidden label: the resource does not carry it, or it is in the
    /// compartment of a patient the principal broke the glass for.
    fn label_clauses(&self, types: &[String]) -> Vec<Clause> {
        let mut glass = Vec::new();
        for patient in &self.glass {
            for resource_type in types {
                if let Some(clause) = search::compartment("Patient", patient, resource_type) {
                    glass.extend(clause.any_of);
                }
            }
        }
        let typed = match types {
            [only] => Some(only.clone()),
            _ => None,
        };
        self.hidden
            .iter()
            .map(|label| {
                let mut any_of = vec![negate(carries(typed.as_deref(), label.system, label.code))];
                any_of.extend(glass.iter().cloned());
                Clause { any_of }
            })
            .collect()
    }

    /// The clauses that keep out of a search of `resource_type` what the consents deny.
    ///
    /// A denial of patient P's resources in parts `within` and not in parts `except` is
    /// NOT (in P's compartment AND carries one label of each `within` part AND carries no
    /// label of the `except` parts), written as clauses: one per compartment parameter
    /// and choice of one label of each `within` part.
    fn consent_clauses(&self, resource_type: &str) -> Vec<Clause> {
        let mut clauses = Vec::new();
        if NOT_CONSENTED.contains(&resource_type) {
            return clauses;
        }
        // The compartment's criteria, for one patient; each group of patients gets
        // them with its whole list instead (one clause, however many patients).
        let Some(in_compartment) = search::compartment("Patient", "-", resource_type) else {
            return clauses;
        };
        for (denial, patients) in &self.denied.groups {
            let applies = |part: &Part| {
                part.types.is_empty() || part.types.iter().any(|t| t == resource_type)
            };
            if !denial.within.iter().all(applies) {
                continue;
            }
            let except: Vec<&Part> = denial.except.iter().filter(|p| applies(p)).collect();
            if except.iter().any(|part| part.labels.is_empty()) {
                // An exception covers every resource of this type.
                continue;
            }
            let excepted: Vec<Criterion> = except
                .iter()
                .flat_map(|part| part.labels.iter())
                .map(|(system, code)| carries(Some(resource_type), system, code))
                .collect();
            let label_sets: Vec<&Vec<(String, String)>> = denial
                .within
                .iter()
                .filter(|part| !part.labels.is_empty())
                .map(|part| &part.labels)
                .collect();
            let mut choices: Vec<Vec<Criterion>> = vec![Vec::new()];
            for labels in &label_sets {
                let mut next = Vec::new();
                for chosen in &choices {
                    for (system, code) in labels.iter() {
                        let mut more = chosen.clone();
                        more.push(negate(carries(Some(resource_type), system, code)));
                        next.push(more);
                    }
                }
                choices = next;
            }
            let too_many = choices.len() * in_compartment.any_of.len() > MAX_CLAUSES_PER_DENIAL;
            for owner in &in_compartment.any_of {
                let owner = &any_of(owner, patients);
                if too_many {
                    clauses.push(Clause {
                        any_of: vec![negate(owner.clone())],
                    });
                    continue;
                }
                for chosen in &choices {
                    let mut any_of = vec![negate(owner.clone())];
                    any_of.extend(chosen.iter().cloned());
                    any_of.extend(excepted.iter().cloned());
                    clauses.push(Clause { any_of });
                }
            }
        }
        clauses
    }

    /// Whether this view sees the resource `version` (a deletion shows only its id, and
    /// is seen).
    pub(crate) fn sees(&self, version: &Version) -> bool {
        if self.hides_nothing() {
            return true;
        }
        let Some(body) = version.body.as_deref() else {
            return true;
        };
        // Without labels (the stored JSON is compact) and without consents that could
        // cover the type, nothing can hide it: no need to parse it.
        if !body.contains("\"security\"") {
            if !self.consents_cover(&version.resource_type) {
                return true;
            }
            // A Patient without labels is hidden only by its own consents.
            if version.resource_type == "Patient"
                && !self.denied.by_patient.contains_key(&version.id)
            {
                return true;
            }
        }
        match serde_json::from_str::<Value>(body) {
            Ok(resource) => self.sees_resource(&version.resource_type, &version.id, &resource),
            Err(_) => false,
        }
    }

    /// Whether some consent denial could cover resources of `resource_type`.
    fn consents_cover(&self, resource_type: &str) -> bool {
        !NOT_CONSENTED.contains(&resource_type)
            && self.denied.groups.iter().any(|(denial, _)| {
                denial.within.iter().all(|part| {
                    part.types.is_empty() || part.types.iter().any(|t| t == resource_type)
                })
            })
    }

    /// Whether this view sees `resource`.
    pub(crate) fn sees_resource(&self, resource_type: &str, id: &str, resource: &Value) -> bool {
        if self.hides_nothing() {
            return true;
        }
        let labelled = privacy::labels::carries_any(resource, &self.hidden);
        if !labelled && !self.consents_cover(resource_type) {
            return true;
        }
        let patients = patients_of(resource_type, id, resource);
        if patients.iter().any(|patient| self.glass.contains(patient)) {
            return true;
        }
        if labelled {
            return false;
        }
        let labels = privacy::labels::labels_of(resource);
        !patients.iter().any(|patient| {
            self.denied.by_patient.get(patient).is_some_and(|denials| {
                denials
                    .iter()
                    .any(|denial| denial.covers(resource_type, &labels))
            })
        })
    }

    /// `found`, unless this view does not see it.
    pub(crate) fn keep(&self, found: Option<Version>) -> Option<Version> {
        found.filter(|version| self.sees(version))
    }
}

/// The patients whose compartment `resource` is in (the Patient itself, for a Patient).
pub(crate) fn patients_of(resource_type: &str, id: &str, resource: &Value) -> Vec<String> {
    if resource_type == "Patient" {
        return vec![id.to_string()];
    }
    let params = fhir::definitions().patient_compartment_params(resource_type);
    if params.is_empty() {
        return Vec::new();
    }
    let mut patients = Vec::new();
    for row in search::index(resource) {
        if let search::IndexValue::Reference {
            resource_type: Some(target),
            id: Some(target_id),
            ..
        } = &row.value
            && target == "Patient"
            && params.contains(&row.key)
            && !patients.contains(target_id)
        {
            patients.push(target_id.clone());
        }
    }
    patients
}

/// "The resource carries the label `system|code`" (any system when `system` is empty).
fn carries(resource_type: Option<&str>, system: &str, code: &str) -> Criterion {
    Criterion {
        path: Vec::new(),
        resource_type: resource_type.map(str::to_string),
        param: "_security".into(),
        param_type: ParamType::Token,
        test: Test::Token(TokenTest {
            system: if system.is_empty() {
                SystemMatch::Any
            } else {
                SystemMatch::Is(system.to_string())
            },
            code: Some(code.to_string()),
        }),
    }
}

/// A compartment criterion (a reference to a Patient, or a Patient's `_id`) for any
/// of `patients`.
fn any_of(owner: &Criterion, patients: &Arc<[String]>) -> Criterion {
    let resource_type = match &owner.test {
        Test::Reference(search::ReferenceTest::Local { resource_type, .. }) => {
            resource_type.clone()
        }
        _ => None,
    };
    Criterion {
        test: Test::Reference(search::ReferenceTest::AnyOf {
            resource_type,
            ids: Arc::clone(patients),
        }),
        ..owner.clone()
    }
}

fn negate(criterion: Criterion) -> Criterion {
    Criterion {
        test: Test::Not(Box::new(criterion.test)),
        ..criterion
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use privacy::consent::Part;
    use serde_json::json;

    const HIV: (&str, &str) = ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "HIV");

    fn labelled(code: (&str, &str)) -> Value {
        json!({"resourceType": "Observation", "meta": {"security": [
            {"system": code.0, "code": code.1}]},
            "subject": {"reference": "Patient/p1"}})
    }

    fn label_view(glass: &[&str]) -> View {
        View {
            open: false,
            hidden: vec![Label {
                system: HIV.0,
                code: HIV.1,
            }],
            denied: Arc::default(),
            glass: glass.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_hidden_label_hides_unless_the_glass_is_broken_for_the_patient() {
        let resource = labelled(HIV);
        assert!(!label_view(&[]).sees_resource("Observation", "o1", &resource));
        assert!(!label_view(&["p2"]).sees_resource("Observation", "o1", &resource));
        assert!(label_view(&["p1"]).sees_resource("Observation", "o1", &resource));
        let plain = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}});
        assert!(label_view(&[]).sees_resource("Observation", "o2", &plain));
        assert!(View::open().sees_resource("Observation", "o1", &resource));
    }

    #[test]
    fn searches_get_one_clause_per_hidden_label_and_reached_types_too() {
        let Ok(parsed) = search::parse(
            &["Patient".to_string()],
            &[("_has:Observation:patient:code".into(), "x".into())],
            search::ParseOptions { strict: true },
        ) else {
            panic!("not parsed")
        };
        let mut query = parsed.query;
        label_view(&[]).narrow(&mut query);
        assert_eq!(query.clauses.len(), 2);
        assert_eq!(query.reached.len(), 1);
        assert_eq!(query.reached[0].resource_type, "Observation");
        let mut untouched = query.clone();
        untouched.clauses.truncate(1);
        untouched.reached.clear();
        let before = untouched.clone();
        View::open().narrow(&mut untouched);
        assert_eq!(untouched, before);
    }

    #[test]
    fn a_consent_denial_becomes_clauses_on_the_patient_and_labels() {
        let view = View {
            open: false,
            hidden: Vec::new(),
            denied: Arc::new(Denied::of(vec![(
                "p1".into(),
                vec![Denial {
                    within: vec![Part {
                        types: vec!["Observation".into()],
                        labels: vec![(HIV.0.into(), HIV.1.into())],
                    }],
                    except: Vec::new(),
                }],
            )])),
            glass: Vec::new(),
        };
        // Observation has subject, performer and patient... as compartment parameters.
        let Some(owners) = search::compartment("Patient", "p1", "Observation") else {
            panic!("no compartment")
        };
        let clauses = view.consent_clauses("Observation");
        assert_eq!(clauses.len(), owners.any_of.len());
        assert!(clauses.iter().all(|clause| clause.any_of.len() == 2));
        assert!(view.consent_clauses("Condition").is_empty());
        assert!(!view.sees_resource("Observation", "o1", &labelled(HIV)));
        let other = json!({"resourceType": "Observation", "meta": {"security": [
            {"system": HIV.0, "code": HIV.1}]}, "subject": {"reference": "Patient/p2"}});
        assert!(view.sees_resource("Observation", "o2", &other));
    }

    /// Thousands of patients denying the same thing make one clause per compartment
    /// parameter, naming them all; each resource is checked against its own patient.
    #[test]
    fn patients_with_the_same_denial_share_their_clauses() {
        let deny_all = Denial {
            within: Vec::new(),
            except: Vec::new(),
        };
        let view = View {
            open: false,
            hidden: Vec::new(),
            denied: Arc::new(Denied::of(
                (0..5000)
                    .map(|n| (format!("p{n}"), vec![deny_all.clone()]))
                    .chain([("p17".to_string(), vec![deny_all.clone()])])
                    .collect(),
            )),
            glass: Vec::new(),
        };
        let Some(owners) = search::compartment("Patient", "p1", "Observation") else {
            panic!("no compartment")
        };
        let clauses = view.consent_clauses("Observation");
        assert_eq!(clauses.len(), owners.any_of.len());
        for clause in &clauses {
            let [criterion] = clause.any_of.as_slice() else {
                panic!("one criterion per clause: {clause:?}")
            };
            let Test::Not(inner) = &criterion.test else {
                panic!("a negation: {criterion:?}")
            };
            let Test::Reference(search::ReferenceTest::AnyOf { ids, .. }) = inner.as_ref() else {
                panic!("a list of patients: {inner:?}")
            };
            assert_eq!(ids.len(), 5000, "every patient, once");
        }
        let patients = search::compartment("Patient", "p1", "Patient").map(|c| c.any_of.len());
        assert_eq!(Some(view.consent_clauses("Patient").len()), patients);
        let own = |patient: &str| json!({"resourceType": "Observation", "subject": {"reference": format!("Patient/{patient}")}});
        assert!(!view.sees_resource("Observation", "o1", &own("p4999")));
        assert!(view.sees_resource("Observation", "o2", &own("q1")));
        let patient = |id: &str| Version {
            resource_type: "Patient".into(),
            id: id.into(),
            version: 1,
            last_updated: store::Instant(0),
            method: store::Method::Update,
            body: Some(format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#)),
            created: true,
        };
        assert!(!view.sees(&patient("p7")));
        assert!(view.sees(&patient("q7")));
    }
}
