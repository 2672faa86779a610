//! Patient consents: active R4 Consent resources of scope `patient-privacy`, and what
//! their provisions deny a principal.
//!
//! A provision applies to a principal when its period covers now, one of its actors is
//! the principal (when it names actors) and the principal's purpose of use is one of its
//! purposes (when it names purposes). Among the resources of the consent's patient, it
//! covers those of its classes (resource types; any type when it names none) carrying
//! one of its security labels (any resource when it names none). A resource is denied
//! when the deepest applying provisions that cover it say deny (nested provisions are
//! exceptions to their parent; among siblings, deny wins). A provision without a type
//! takes its parent's; the root's is deny.
//!
//! [`denials`] turns one consent into the parts of the patient's data it denies, for a
//! search clause; [`denies`] answers for one resource. Both say the same (tested).

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, Time};

use crate::access::Principal;

/// The consent scope this module enforces.
pub const PATIENT_PRIVACY: &str = "patient-privacy";
/// How deep nested provisions are read; deeper ones are ignored, as is the consent.
const MAX_DEPTH: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Permit,
    Deny,
}

/// An active patient-privacy consent.
#[derive(Clone, Debug, PartialEq)]
pub struct Consent {
    pub id: String,
    /// The patient's id.
    pub patient: String,
    pub provision: Provision,
}

/// One rule, with its exceptions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provision {
    pub kind: Option<Kind>,
    /// When the rule holds, in seconds since the epoch: from `start`, before `end`.
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// The actors' ids (`Type/id` references give `id`) and identifier values.
    pub actors: Vec<String>,
    /// Purpose-of-use codes.
    pub purposes: Vec<String>,
    /// Resource types.
    pub classes: Vec<String>,
    /// Security labels, as (system, code).
    pub labels: Vec<(String, String)>,
    pub provisions: Vec<Provision>,
}

/// Who asks, as provisions test it.
#[derive(Clone, Debug)]
pub struct Who {
    /// The user, the token's subject and the client id.
    pub names: Vec<String>,
    pub purpose: Option<String>,
    /// Now, in seconds since the epoch.
    pub now: i64,
}

impl Who {
    pub fn of(principal: &Principal, now: i64) -> Who {
        let mut names: Vec<String> = [
            principal.user.as_deref(),
            Some(principal.subject.as_str()),
            principal.client_id.as_deref(),
        ]
        .into_iter()
        .flatten()
        .map(str::to_string)
        .collect();
        names.dedup();
        Who {
            names,
            purpose: principal.purpose_of_use.clone(),
            now,
        }
    }
}

/// Part of a patient's data: resources of `types` (any type when empty) carrying one of
/// `labels` (any resource when empty).
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub types: Vec<String>,
    pub labels: Vec<(String, String)>,
}

impl Part {
    pub fn is_everything(&self) -> bool {
        self.types.is_empty() && self.labels.is_empty()
    }

    pub fn contains(&self, resource_type: &str, labels: &[(&str, &str)]) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == resource_type))
            && (self.labels.is_empty()
                || labels.iter().any(|(system, code)| {
                    self.labels.iter().any(|(s, c)| s == system && c == code)
                }))
    }
}

/// What a consent denies: the resources of its patient in every part of `within` and in
/// no part of `except`.
#[derive(Clone, Debug, PartialEq)]
pub struct Denial {
    pub within: Vec<Part>,
    pub except: Vec<Part>,
}

impl Denial {
    pub fn covers(&self, resource_type: &str, labels: &[(&str, &str)]) -> bool {
        self.within
            .iter()
            .all(|part| part.contains(resource_type, labels))
            && !self
                .except
                .iter()
                .any(|part| part.contains(resource_type, labels))
    }
}

/// The consent in `resource`, when it is an active patient-privacy Consent about a
/// patient with a provision; `None` otherwise (it restricts nothing).
pub fn parse(resource: &Value) -> Option<Consent> {
    if resource["resourceType"] != "Consent" || resource["status"] != "active" {
        return None;
    }
    let privacy = resource["scope"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|coding| coding["code"] == PATIENT_PRIVACY);
    if !privacy {
        return None;
    }
    let reference = resource["patient"]["reference"].as_str()?;
    let mut segments = reference.rsplit('/');
    let patient = segments.next()?.to_string();
    if segments.next() != Some("Patient") || patient.is_empty() {
        return None;
    }
    let provision = parse_provision(resource.get("provision")?, 0)?;
    Some(Consent {
        id: resource["id"].as_str().unwrap_or("").to_string(),
        patient,
        provision,
    })
}

fn strings<'a>(
    list: &'a Value,
    pick: impl Fn(&'a Value) -> Option<&'a str> + 'a,
) -> impl Iterator<Item = String> + 'a {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(pick)
        .map(str::to_string)
}

fn parse_provision(value: &Value, depth: usize) -> Option<Provision> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let kind = match value["type"].as_str() {
        Some("permit") => Some(Kind::Permit),
        Some("deny") => Some(Kind::Deny),
        _ => None,
    };
    let start = match value["period"]["start"].as_str() {
        Some(text) => Some(bounds(text)?.0),
        None => None,
    };
    let end = match value["period"]["end"].as_str() {
        Some(text) => Some(bounds(text)?.1),
        None => None,
    };
    let mut actors: Vec<String> = strings(&value["actor"], |actor| {
        actor["reference"]["reference"]
            .as_str()
            .and_then(|reference| reference.rsplit('/').next())
    })
    .collect();
    actors.extend(strings(&value["actor"], |actor| {
        actor["reference"]["identifier"]["value"].as_str()
    }));
    let mut provisions = Vec::new();
    for nested in value["provision"].as_array().into_iter().flatten() {
        provisions.push(parse_provision(nested, depth + 1)?);
    }
    Some(Provision {
        kind,
        start,
        end,
        actors,
        purposes: strings(&value["purpose"], |coding| coding["code"].as_str()).collect(),
        classes: strings(&value["class"], |coding| coding["code"].as_str()).collect(),
        labels: value["securityLabel"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|coding| {
                let code = coding["code"].as_str()?;
                let system = coding["system"].as_str().unwrap_or("");
                Some((system.to_string(), code.to_string()))
            })
            .collect(),
        provisions,
    })
}

/// The instants a FHIR date or dateTime covers: its first second and the first second
/// after it (`2026` covers the year, `2026-12-07` the day).
fn bounds(text: &str) -> Option<(i64, i64)> {
    if text.len() > 10 {
        let at = OffsetDateTime::parse(text, &Rfc3339).ok()?.unix_timestamp();
        return Some((at, at + 1));
    }
    let mut parts = text.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: Option<u8> = parts.next().map(str::parse).transpose().ok()?;
    let day: Option<u8> = parts.next().map(str::parse).transpose().ok()?;
    let midnight = |date: Date| date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp();
    match (month, day) {
        (None, _) => {
            let first = Date::from_calendar_date(year, Month::January, 1).ok()?;
            let next = Date::from_calendar_date(year + 1, Month::January, 1).ok()?;
            Some((midnight(first), midnight(next)))
        }
        (Some(month), None) => {
            let month = Month::try_from(month).ok()?;
            let first = Date::from_calendar_date(year, month, 1).ok()?;
            let next = match month {
                Month::December => Date::from_calendar_date(year + 1, Month::January, 1),
                _ => Date::from_calendar_date(year, month.next(), 1),
            }
            .ok()?;
            Some((midnight(first), midnight(next)))
        }
        (Some(month), Some(day)) => {
            let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
            Some((midnight(date), midnight(date.next_day()?)))
        }
    }
}

impl Provision {
    /// Whether the rule holds for `who` now (its period, actors and purposes).
    fn applies(&self, who: &Who) -> bool {
        self.start.is_none_or(|start| start <= who.now)
            && self.end.is_none_or(|end| who.now < end)
            && (self.actors.is_empty() || self.actors.iter().any(|a| who.names.contains(a)))
            && (self.purposes.is_empty()
                || who
                    .purpose
                    .as_ref()
                    .is_some_and(|purpose| self.purposes.contains(purpose)))
    }

    fn part(&self) -> Part {
        Part {
            types: self.classes.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// The parts of the consent's patient's data that `consent` denies `who`.
pub fn denials(consent: &Consent, who: &Who) -> Vec<Denial> {
    let mut out = Vec::new();
    walk(&consent.provision, Kind::Deny, &[], who, &mut out);
    out
}

fn walk(provision: &Provision, inherited: Kind, within: &[Part], who: &Who, out: &mut Vec<Denial>) {
    if !provision.applies(who) {
        return;
    }
    let kind = provision.kind.unwrap_or(inherited);
    let mut within = within.to_vec();
    let part = provision.part();
    if !part.is_everything() {
        within.push(part);
    }
    let exceptions: Vec<&Provision> = provision
        .provisions
        .iter()
        .filter(|nested| nested.applies(who))
        .collect();
    if kind == Kind::Deny {
        out.push(Denial {
            within: within.clone(),
            except: exceptions.iter().map(|nested| nested.part()).collect(),
        });
    }
    for nested in exceptions {
        walk(nested, kind, &within, who, out);
    }
}

/// Whether `consent` denies `who` a resource of its patient of `resource_type` carrying
/// `labels`.
pub fn denies(consent: &Consent, who: &Who, resource_type: &str, labels: &[(&str, &str)]) -> bool {
    decide(&consent.provision, Kind::Deny, who, resource_type, labels) == Some(Kind::Deny)
}

fn decide(
    provision: &Provision,
    inherited: Kind,
    who: &Who,
    resource_type: &str,
    labels: &[(&str, &str)],
) -> Option<Kind> {
    if !provision.applies(who) || !provision.part().contains(resource_type, labels) {
        return None;
    }
    let kind = provision.kind.unwrap_or(inherited);
    let nested: Vec<Kind> = provision
        .provisions
        .iter()
        .filter_map(|nested| decide(nested, kind, who, resource_type, labels))
        .collect();
    if nested.is_empty() {
        Some(kind)
    } else if nested.contains(&Kind::Deny) {
        Some(Kind::Deny)
    } else {
        Some(Kind::Permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_796_000_000; // 2026-11-30

    fn who(name: &str, purpose: Option<&str>) -> Who {
        Who {
            names: vec![name.to_string()],
            purpose: purpose.map(str::to_string),
            now: NOW,
        }
    }

    fn consent(provision: Value) -> Consent {
        let resource = json!({
            "resourceType": "Consent", "id": "c1", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                "code": "patient-privacy"}]},
            "category": [{"text": "privacy"}],
            "patient": {"reference": "Patient/p1"},
            "provision": provision,
        });
        let Some(consent) = parse(&resource) else {
            panic!("not parsed")
        };
        consent
    }

    const HIV: (&str, &str) = ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "HIV");

    /// Both answers, which must agree.
    fn check(consent: &Consent, who: &Who, resource_type: &str, labels: &[(&str, &str)]) -> bool {
        let direct = denies(consent, who, resource_type, labels);
        let by_parts = denials(consent, who)
            .iter()
            .any(|denial| denial.covers(resource_type, labels));
        assert_eq!(direct, by_parts, "{resource_type} {labels:?}");
        direct
    }

    #[test]
    fn only_active_patient_privacy_consents_count() {
        let base = json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"code": "patient-privacy"}]},
            "patient": {"reference": "Patient/p1"}, "provision": {"type": "deny"}});
        assert!(parse(&base).is_some());
        let mut draft = base.clone();
        draft["status"] = json!("draft");
        assert!(parse(&draft).is_none());
        let mut research = base.clone();
        research["scope"] = json!({"coding": [{"code": "research"}]});
        assert!(parse(&research).is_none());
        let mut group = base.clone();
        group["patient"] = json!({"reference": "Group/g1"});
        assert!(parse(&group).is_none());
        let mut absolute = base;
        absolute["patient"] = json!({"reference": "http://x/fhir/Patient/p9"});
        assert_eq!(parse(&absolute).map(|c| c.patient), Some("p9".to_string()));
    }

    #[test]
    fn a_deny_with_class_and_actor_exceptions() {
        // Deny everything, except Immunizations, and except to Practitioner d1.
        let consent = consent(json!({"type": "deny", "provision": [
            {"type": "permit", "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Immunization"}]},
            {"type": "permit", "actor": [{"reference": {"reference": "Practitioner/d1"}}]}
        ]}));
        let stranger = who("d2", None);
        assert!(check(&consent, &stranger, "Observation", &[]));
        assert!(!check(&consent, &stranger, "Immunization", &[]));
        let trusted = who("d1", None);
        assert!(!check(&consent, &trusted, "Observation", &[]));
    }

    #[test]
    fn a_permit_with_a_label_deny_and_a_purpose_exception() {
        // Permit, but deny HIV-labelled data, unless the purpose is treatment of
        // Conditions.
        let consent = consent(json!({"type": "permit", "provision": [
            {"type": "deny", "securityLabel": [{"system": HIV.0, "code": HIV.1}], "provision": [
                {"type": "permit", "purpose": [{"code": "TREAT"}], "class": [{"code": "Condition"}]}
            ]}
        ]}));
        let research = who("d1", Some("HRESCH"));
        assert!(!check(&consent, &research, "Observation", &[]));
        assert!(check(&consent, &research, "Observation", &[HIV]));
        assert!(check(&consent, &research, "Condition", &[HIV]));
        let treatment = who("d1", Some("TREAT"));
        assert!(!check(&consent, &treatment, "Condition", &[HIV]));
        assert!(check(&consent, &treatment, "Observation", &[HIV]));
    }

    #[test]
    fn periods_bound_a_rule() {
        let past = consent(json!({"type": "deny", "period": {"start": "2020", "end": "2021-06"}}));
        assert!(!check(&past, &who("d1", None), "Observation", &[]));
        let current = consent(
            json!({"type": "deny", "period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-31"}}),
        );
        assert!(check(&current, &who("d1", None), "Observation", &[]));
        assert_eq!(
            bounds("2026-02"),
            bounds("2026-02-01").map(|(start, _)| (start, start + 28 * 86_400))
        );
        assert!(bounds("2026-13").is_none());
    }

    #[test]
    fn siblings_deny_over_permit() {
        let consent = consent(json!({"type": "permit", "provision": [
            {"type": "deny", "class": [{"code": "Observation"}]},
            {"type": "permit", "securityLabel": [{"system": HIV.0, "code": HIV.1}]}
        ]}));
        let anyone = who("x", None);
        assert!(check(&consent, &anyone, "Observation", &[HIV]));
        assert!(!check(&consent, &anyone, "Condition", &[HIV]));
    }
}
