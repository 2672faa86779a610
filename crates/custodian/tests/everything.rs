//! `Patient/[id]/$everything` over HTTP.
//!
//! Every answer is compared with one worked out here, independently of the server's
//! index and SQL: a resource is in the patient's compartment when one of the
//! parameters the Patient CompartmentDefinition (`data/fhir-r4/compartment-patient.json`)
//! names for its type, evaluated with FHIRPath from `data/fhir-r4/search-parameters.json`,
//! refers to the patient; the Practitioners, Organizations, Locations and Medications
//! come from walking every `reference` in those resources; `start`/`end` read each
//! type's clinical date element directly, not through a search parameter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::fhir::{FHIR_JSON, Fhir, entries, link};
use common::testdata;
use fhirpath::{Environment, Expression};
use search::DateRange;
use serde_json::{Value, json};

/// `(type, id)`.
type Key = (String, String);

const REFERENCED: [&str; 4] = ["Location", "Medication", "Organization", "Practitioner"];

/// The clinical date element of each type (a choice element by its stem).
const CLINICAL_DATE: &[(&str, &str)] = &[
    ("AllergyIntolerance", "recordedDate"),
    ("CarePlan", "period"),
    ("CareTeam", "period"),
    ("Claim", "created"),
    ("Condition", "onset"),
    ("DiagnosticReport", "effective"),
    ("Encounter", "period"),
    ("ExplanationOfBenefit", "created"),
    ("Goal", "startDate"),
    ("ImagingStudy", "started"),
    ("Immunization", "occurrence"),
    ("MedicationRequest", "authoredOn"),
    ("Observation", "effective"),
    ("Procedure", "performed"),
];
/// Compartment types in the test data that have no clinical date.
const UNDATED: &[&str] = &["Patient"];

/// What `$everything` is asked to keep.
#[derive(Default)]
struct Filter<'a> {
    types: Option<&'a [&'a str]>,
    since: Option<&'a str>,
    start: Option<&'a str>,
    end: Option<&'a str>,
}

/// The expected answer: compartment matches and referenced resources.
#[derive(Debug, PartialEq)]
struct Expected {
    matches: BTreeSet<Key>,
    included: BTreeSet<Key>,
}

/// The compartment definition: each type's compartment parameters as FHIRPath.
fn compartment_definition() -> BTreeMap<String, Vec<Expression>> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fhir-r4");
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(data.join(name)).unwrap()).unwrap()
    };
    let compartment = read("compartment-patient.json");
    let parameters = read("search-parameters.json");
    let mut definition = BTreeMap::new();
    for (resource_type, codes) in compartment["resources"].as_object().unwrap() {
        let mut expressions = Vec::new();
        for code in codes.as_array().unwrap() {
            let parameter = parameters["searchParameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| {
                    p["code"] == *code
                        && p["base"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|base| base == resource_type.as_str())
                })
                .unwrap_or_else(|| panic!("{resource_type}.{code} has no search parameter"));
            let source = parameter["expression"].as_str().unwrap();
            expressions.push(Expression::compile(source).unwrap());
        }
        definition.insert(resource_type.clone(), expressions);
    }
    definition
}

/// `Type/id` of a reference to this server, relative or under `base`.
fn local(reference: &str, base: &str) -> Option<Key> {
    let relative = match reference.strip_prefix(base) {
        Some(rest) => rest.strip_prefix('/')?,
        None if reference.contains(':') => return None,
        None => reference,
    };
    let relative = relative.split("/_history/").next().unwrap();
    let (resource_type, id) = relative.split_once('/')?;
    Some((resource_type.to_string(), id.to_string()))
}

/// Every `reference` in `value`, as local keys.
fn references(value: &Value, base: &str, found: &mut BTreeSet<Key>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("reference", Value::String(text)) => found.extend(local(text, base)),
                    _ => references(child, base, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, base, found)),
        _ => {}
    }
}

fn key_of(resource: &Value) -> Key {
    (
        resource["resourceType"].as_str().unwrap().to_string(),
        resource["id"].as_str().unwrap().to_string(),
    )
}

/// The range of a date, dateTime or Period.
fn range_of(value: &Value) -> Option<DateRange> {
    match value {
        Value::String(text) => DateRange::parse(text),
        Value::Object(period) => {
            let low = period
                .get("start")
                .and_then(Value::as_str)
                .and_then(DateRange::parse)
                .map_or(i64::MIN, |range| range.low);
            let high = period
                .get("end")
                .and_then(Value::as_str)
                .and_then(DateRange::parse)
                .map_or(i64::MAX, |range| range.high);
            Some(DateRange { low, high })
        }
        _ => None,
    }
}

/// The clinical date of a resource: its element, or a choice of it (`effectiveDateTime`,
/// `onsetPeriod`, ...). `None` when it has none.
fn clinical_date(resource: &Value) -> Option<DateRange> {
    let resource_type = resource["resourceType"].as_str().unwrap();
    let Some((_, element)) = CLINICAL_DATE.iter().find(|(t, _)| *t == resource_type) else {
        assert!(
            UNDATED.contains(&resource_type),
            "the test knows no clinical date of {resource_type}"
        );
        return None;
    };
    resource
        .as_object()
        .unwrap()
        .iter()
        .find_map(|(name, value)| {
            let choice = name.strip_prefix(element).is_some_and(|rest| {
                matches!(rest, "" | "Date" | "DateTime" | "Instant" | "Period")
            });
            if !choice {
                return None;
            }
            range_of(value)
        })
}

/// Every current resource on the server.
fn read_all(fhir: &Fhir) -> BTreeMap<Key, Value> {
    let mut found = BTreeMap::new();
    let mut next = Some(fhir.url("?_count=1000"));
    while let Some(url) = next.take() {
        let page = fhir.search(&url);
        for entry in entries(&page) {
            found.insert(key_of(&entry["resource"]), entry["resource"].clone());
        }
        next = link(&page, "next");
    }
    found
}

/// What `$everything` on `patient` must answer, worked out from `stored`.
fn expected(
    stored: &BTreeMap<Key, Value>,
    definition: &BTreeMap<String, Vec<Expression>>,
    base: &str,
    patient: &str,
    filter: &Filter<'_>,
) -> Expected {
    let mut env = Environment::new();
    env.resolve_stubs(true);
    let wanted = |resource_type: &str| {
        filter
            .types
            .is_none_or(|types| types.contains(&resource_type))
    };
    let since = filter
        .since
        .map(|since| DateRange::parse(since).unwrap().low);
    let fresh = |resource: &Value| {
        since.is_none_or(|since| {
            DateRange::parse(resource["meta"]["lastUpdated"].as_str().unwrap())
                .unwrap()
                .low
                >= since
        })
    };
    let start = filter
        .start
        .map(|start| DateRange::parse(start).unwrap().low);
    let end = filter.end.map(|end| DateRange::parse(end).unwrap().high);
    let target = ("Patient".to_string(), patient.to_string());
    let mut matches = BTreeSet::new();
    for (key, resource) in stored {
        let Some(expressions) = definition.get(&key.0) else {
            continue;
        };
        let in_compartment = *key == target
            || expressions.iter().any(|expression| {
                expression
                    .evaluate(resource, &env)
                    .unwrap()
                    .iter()
                    .filter_map(|item| item.as_node())
                    .filter_map(|node| node.value.get("reference").and_then(Value::as_str))
                    .any(|reference| local(reference, base).as_ref() == Some(&target))
            });
        if !in_compartment || !wanted(&key.0) || !fresh(resource) {
            continue;
        }
        if let Some(date) = clinical_date(resource) {
            if start.is_some_and(|start| date.high <= start) {
                continue;
            }
            if end.is_some_and(|end| date.low >= end) {
                continue;
            }
        }
        matches.insert(key.clone());
    }
    let mut referenced = BTreeSet::new();
    for key in &matches {
        references(&stored[key], base, &mut referenced);
    }
    let included = referenced
        .into_iter()
        .filter(|key| REFERENCED.contains(&key.0.as_str()) && wanted(&key.0))
        .filter(|key| stored.get(key).is_some_and(&fresh))
        .collect();
    Expected { matches, included }
}

/// Every page of a `$everything` answer, following `next` links. Asserts that no
/// resource comes twice, that no page holds more than `count` matches, and that
/// included resources come on the last page only.
fn everything(fhir: &Fhir, path: &str, count: Option<usize>) -> Expected {
    let mut seen = BTreeSet::new();
    let mut answer = Expected {
        matches: BTreeSet::new(),
        included: BTreeSet::new(),
    };
    let mut next = Some(fhir.url(path));
    let mut pages = 0;
    while let Some(url) = next.take() {
        let page = fhir.search(&url);
        pages += 1;
        assert!(pages < 1000, "paging does not end");
        assert!(link(&page, "self").is_some());
        next = link(&page, "next");
        let mut page_matches = 0;
        for entry in entries(&page) {
            let key = key_of(&entry["resource"]);
            assert!(seen.insert(key.clone()), "{key:?} twice");
            assert_eq!(
                entry["fullUrl"],
                format!("{}/{}/{}", fhir.base(), key.0, key.1)
            );
            match entry["search"]["mode"].as_str().unwrap() {
                "match" => {
                    page_matches += 1;
                    answer.matches.insert(key);
                }
                "include" => {
                    assert!(next.is_none(), "an included resource before the last page");
                    answer.included.insert(key);
                }
                mode => panic!("search mode {mode}"),
            }
        }
        if let Some(count) = count {
            assert!(
                page_matches <= count,
                "{page_matches} matches on a page of {count}"
            );
            if next.is_some() {
                assert_eq!(page_matches, count, "a short page before the last");
            }
        }
    }
    answer
}

fn keys(list: &[&str]) -> BTreeSet<Key> {
    list.iter()
        .map(|text| {
            let (resource_type, id) = text.split_once('/').unwrap();
            (resource_type.to_string(), id.to_string())
        })
        .collect()
}

/// A few patients and what refers to them (see the test below for who is whose).
fn small_world(fhir: &Fhir) {
    let base = fhir.base().to_string();
    for resource in [
        json!({"resourceType": "Organization", "id": "org1", "name": "General"}),
        json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "One"}]}),
        json!({"resourceType": "Practitioner", "id": "dr2", "name": [{"family": "Two"}]}),
        json!({"resourceType": "Location", "id": "loc1", "name": "Ward 1"}),
        json!({"resourceType": "Medication", "id": "med1", "code": {"text": "aspirin"}}),
        json!({"resourceType": "Medication", "id": "med2", "code": {"text": "insulin"}}),
        json!({"resourceType": "Patient", "id": "p1", "managingOrganization": {"reference": "Organization/org1"}}),
        json!({"resourceType": "Patient", "id": "p2"}),
        json!({"resourceType": "Patient", "id": "p3",
            "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}]}),
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p1"},
            "participant": [{"individual": {"reference": "Practitioner/dr1"}}],
            "location": [{"location": {"reference": "Location/loc1"}}],
            "serviceProvider": {"reference": format!("{base}/Organization/org1")},
            "period": {"start": "2020-01-10T10:00:00Z", "end": "2020-01-11T10:00:00Z"}}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "weight"},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2019-05-01",
            "performer": [{"reference": "Practitioner/dr1/_history/1"}]}),
        json!({"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "note"},
            "subject": {"reference": "Patient/p2"}, "performer": [{"reference": "Patient/p1"}]}),
        json!({"resourceType": "Observation", "id": "o3", "status": "final", "code": {"text": "height"},
            "subject": {"reference": "Patient/p2"}, "performer": [{"reference": "Practitioner/dr2"}]}),
        json!({"resourceType": "Observation", "id": "o4", "status": "final", "code": {"text": "mood"},
            "subject": {"reference": "Patient/p1"}}),
        json!({"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
            "medicationReference": {"reference": "Medication/med1"},
            "subject": {"reference": "Patient/p1"}, "authoredOn": "2021-03-01",
            "requester": {"reference": "Practitioner/dr1"}}),
        json!({"resourceType": "MedicationRequest", "id": "mr2", "status": "active", "intent": "order",
            "medicationReference": {"reference": "Medication/med2"},
            "subject": {"reference": "Patient/p2"}}),
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "onsetDateTime": "2018-01-01"}),
    ] {
        fhir.store(resource);
    }
}

#[test]
fn everything_on_a_small_world() {
    let fhir = Fhir::start();
    small_world(&fhir);
    let definition = compartment_definition();
    let base = fhir.base().to_string();
    let check = |path: &str, filter: Filter<'_>, matches: &[&str], included: &[&str]| {
        let answer = everything(&fhir, path, None);
        let want = Expected {
            matches: keys(matches),
            included: keys(included),
        };
        assert_eq!(answer, want, "{path}");
        let worked_out = expected(&read_all(&fhir), &definition, &base, "p1", &filter);
        assert_eq!(worked_out, want, "{path}: the test's own working");
    };

    let all = [
        "Patient/p1",
        "Patient/p3",
        "Encounter/e1",
        "Observation/o1",
        "Observation/o2",
        "Observation/o4",
        "MedicationRequest/mr1",
        "Condition/c1",
    ];
    let all_referenced = [
        "Practitioner/dr1",
        "Location/loc1",
        "Organization/org1",
        "Medication/med1",
    ];
    check(
        "Patient/p1/$everything",
        Filter::default(),
        &all,
        &all_referenced,
    );
    check(
        "Patient/p1/$everything?_type=Observation,Practitioner",
        Filter {
            types: Some(&["Observation", "Practitioner"]),
            ..Filter::default()
        },
        &["Observation/o1", "Observation/o2", "Observation/o4"],
        &["Practitioner/dr1"],
    );
    check(
        "Patient/p1/$everything?_type=Practitioner",
        Filter {
            types: Some(&["Practitioner"]),
            ..Filter::default()
        },
        &[],
        &[],
    );
    check(
        "Patient/p1/$everything?start=2019-06-01&end=2020-12-31",
        Filter {
            start: Some("2019-06-01"),
            end: Some("2020-12-31"),
            ..Filter::default()
        },
        &[
            "Patient/p1",
            "Patient/p3",
            "Encounter/e1",
            "Observation/o2",
            "Observation/o4",
        ],
        &["Practitioner/dr1", "Location/loc1", "Organization/org1"],
    );
    // The bounds take whole days: an Observation on the end day is in.
    check(
        "Patient/p1/$everything?start=2019-05-01&end=2019-05-01",
        Filter {
            start: Some("2019-05-01"),
            end: Some("2019-05-01"),
            ..Filter::default()
        },
        &[
            "Patient/p1",
            "Patient/p3",
            "Observation/o1",
            "Observation/o2",
            "Observation/o4",
        ],
        &["Practitioner/dr1", "Organization/org1"],
    );
    check(
        "Patient/p1/$everything?end=2018-06",
        Filter {
            end: Some("2018-06"),
            ..Filter::default()
        },
        &[
            "Patient/p1",
            "Patient/p3",
            "Observation/o2",
            "Observation/o4",
            "Condition/c1",
        ],
        &["Organization/org1"],
    );

    // POST with a Parameters body means the same as the URL.
    let posted = fhir.request(
        "POST",
        "Patient/p1/$everything",
        &[("content-type", FHIR_JSON)],
        Some(
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "_type", "valueCode": "Observation,Practitioner"}]})
            .to_string(),
        ),
    );
    let posted = posted.ok(200);
    let mut found: Vec<String> = entries(&posted)
        .iter()
        .map(|entry| {
            let (resource_type, id) = key_of(&entry["resource"]);
            format!("{resource_type}/{id}")
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "Observation/o1",
            "Observation/o2",
            "Observation/o4",
            "Practitioner/dr1"
        ]
    );

    // Paging: every page but the last is full, nothing comes twice, the pages together
    // are the whole answer.
    for count in [1, 2, 3, 7, 8, 50] {
        let paged = everything(
            &fhir,
            &format!("Patient/p1/$everything?_count={count}"),
            Some(count),
        );
        assert_eq!(paged.matches, keys(&all), "_count={count}");
        assert_eq!(paged.included, keys(&all_referenced), "_count={count}");
    }
    let counted = fhir.search("Patient/p1/$everything?_count=0");
    assert_eq!(counted["total"], 8);
    assert!(entries(&counted).is_empty());

    // _since: only what changed at or after it, the patient and references included.
    std::thread::sleep(std::time::Duration::from_millis(5));
    fhir.store(json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Uno"}]}));
    fhir.store(
        json!({"resourceType": "Observation", "id": "o4", "status": "final",
        "code": {"text": "mood"}, "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Practitioner/dr1"}, {"reference": "Practitioner/dr2"}]}),
    );
    let since = fhir.get("Practitioner/dr1").json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!(
        "Patient/p1/$everything?_since={}",
        since.replace('+', "%2B")
    );
    check(
        &path,
        Filter {
            since: Some(&since),
            ..Filter::default()
        },
        &["Observation/o4"],
        &["Practitioner/dr1"],
    );
    let after = everything(
        &fhir,
        "Patient/p1/$everything?_since=2999-01-01T00:00:00Z",
        None,
    );
    assert!(after.matches.is_empty() && after.included.is_empty());
}

#[test]
fn everything_refuses_what_it_cannot_answer() {
    let fhir = Fhir::start();
    small_world(&fhir);
    let diagnostics = fhir.get("Patient/nobody/$everything").outcome(404);
    assert!(diagnostics.contains("Patient/nobody"), "{diagnostics}");
    fhir.store(json!({"resourceType": "Patient", "id": "gone"}));
    let deleted = fhir.request("DELETE", "Patient/gone", &[], None);
    assert!(matches!(deleted.status, 200 | 204), "{}", deleted.text);
    fhir.get("Patient/gone/$everything").outcome(410);
    fhir.get("Observation/o1/$everything").outcome(404);
    for (query, name) in [
        ("start=yesterday", "start"),
        ("end=2020-13-01", "end"),
        ("_since=soon", "_since"),
        ("_type=Observation,Nope", "_type"),
        ("_count=many", "_count"),
        ("_count=-1", "_count"),
        ("frobnicate=1", "frobnicate"),
    ] {
        let diagnostics = fhir
            .get(&format!("Patient/p1/$everything?{query}"))
            .outcome(400);
        assert!(diagnostics.contains(name), "{query}: {diagnostics}");
    }
    let diagnostics = fhir
        .get("Patient/p1/$everything?start=2021&end=2020")
        .outcome(400);
    assert!(diagnostics.contains("start"), "{diagnostics}");
    let diagnostics = fhir
        .get("Patient/p1/$everything?_count=1&_cursor=garbage")
        .outcome(400);
    assert!(diagnostics.contains("_cursor"), "{diagnostics}");
    let posted = fhir.request(
        "POST",
        "Patient/p1/$everything",
        &[("content-type", FHIR_JSON)],
        Some(r#"{"resourceType":"Patient"}"#),
    );
    posted.outcome(400);

    let capability = fhir.get("metadata").ok(200);
    let patient = capability["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|resource| resource["type"] == "Patient")
        .unwrap()
        .clone();
    assert!(
        patient["operation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|operation| operation["name"] == "everything"
                && operation["definition"]
                    == "http://hl7.org/fhir/OperationDefinition/Patient-everything")
    );
}

/// Three patient bundles of synthea-100: the two smallest and the median, by size.
fn some_bundles(folder: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            name.ends_with(".json")
                && !name.starts_with("hospital")
                && !name.starts_with("practitioner")
        })
        .map(|path| (std::fs::metadata(&path).unwrap().len(), path))
        .collect();
    files.sort();
    let median = files.len() / 2;
    [0, 1, median]
        .into_iter()
        .map(|index| files[index].1.clone())
        .collect()
}

#[test]
fn everything_is_exactly_the_compartment_on_synthea() {
    let Some(folder) = testdata("synthea/synthea-100") else {
        return;
    };
    let fhir = Fhir::start();
    for path in some_bundles(&folder) {
        let body = std::fs::read_to_string(&path).unwrap();
        let reply = fhir.request("POST", "", &[("content-type", FHIR_JSON)], Some(&body));
        assert_eq!(
            reply.status,
            200,
            "{}: {}",
            path.display(),
            &reply.text[..reply.text.len().min(500)]
        );
    }
    let stored = read_all(&fhir);
    let definition = compartment_definition();
    let base = fhir.base().to_string();
    let patients: Vec<String> = stored
        .keys()
        .filter(|(resource_type, _)| resource_type == "Patient")
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(patients.len(), 3);

    for patient in &patients {
        let whole = Filter::default();
        let want = expected(&stored, &definition, &base, patient, &whole);
        assert!(want.matches.len() > 50, "{}", want.matches.len());
        assert!(
            want.included.iter().any(|key| key.0 == "Practitioner")
                && want.included.iter().any(|key| key.0 == "Organization"),
            "{:?}",
            want.included
        );
        let path = format!("Patient/{patient}/$everything");
        assert_eq!(everything(&fhir, &path, None), want, "{path}");
        // Pages of 17 make up the same answer.
        let paged = everything(&fhir, &format!("{path}?_count=17"), Some(17));
        assert_eq!(paged, want, "{path}?_count=17");
    }

    let patient = &patients[0];
    let path = format!("Patient/{patient}/$everything");
    let types: &[&str] = &["Encounter", "Condition", "Practitioner", "Location"];
    let want = expected(
        &stored,
        &definition,
        &base,
        patient,
        &Filter {
            types: Some(types),
            ..Filter::default()
        },
    );
    assert!(want.matches.iter().any(|key| key.0 == "Encounter"));
    let answer = everything(&fhir, &format!("{path}?_type={}", types.join(",")), None);
    assert_eq!(answer, want, "_type");

    // start/end: the middle third of the patient's clinical dates.
    let mut dates: Vec<i64> = want_all_dates(&stored, &definition, &base, patient);
    dates.sort();
    let day = |micros: i64| {
        let seconds = micros / 1_000_000;
        let days = seconds.div_euclid(86_400);
        civil(days)
    };
    let start = day(dates[dates.len() / 3]);
    let end = day(dates[dates.len() * 2 / 3]);
    let filter = Filter {
        start: Some(&start),
        end: Some(&end),
        ..Filter::default()
    };
    let want = expected(&stored, &definition, &base, patient, &filter);
    let whole = expected(&stored, &definition, &base, patient, &Filter::default());
    assert!(
        want.matches.len() < whole.matches.len() && want.matches.len() > 10,
        "{start}..{end}: {} of {}",
        want.matches.len(),
        whole.matches.len()
    );
    let answer = everything(
        &fhir,
        &format!("{path}?start={start}&end={end}&_count=20"),
        Some(20),
    );
    assert_eq!(answer, want, "start={start}&end={end}");

    // _since: a change after loading, and nothing else.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let observation = stored
        .iter()
        .find(|(key, resource)| {
            key.0 == "Observation"
                && local(
                    resource["subject"]["reference"].as_str().unwrap_or(""),
                    &base,
                ) == Some(("Patient".to_string(), patient.clone()))
        })
        .map(|(_, resource)| resource.clone())
        .unwrap();
    let mut changed = observation.clone();
    changed["status"] = json!("amended");
    fhir.store(changed);
    let key = key_of(&observation);
    let since = fhir.get(&format!("{}/{}", key.0, key.1)).json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = everything(&fhir, &format!("{path}?_since={since}"), None);
    assert_eq!(answer.matches, BTreeSet::from([key]));
    let want = expected(
        &read_all(&fhir),
        &definition,
        &base,
        patient,
        &Filter {
            since: Some(&since),
            ..Filter::default()
        },
    );
    assert_eq!(answer, want, "_since");
}

/// Every clinical date (its start) in the patient's compartment.
fn want_all_dates(
    stored: &BTreeMap<Key, Value>,
    definition: &BTreeMap<String, Vec<Expression>>,
    base: &str,
    patient: &str,
) -> Vec<i64> {
    let whole = expected(stored, definition, base, patient, &Filter::default());
    whole
        .matches
        .iter()
        .filter_map(|key| clinical_date(&stored[key]))
        .map(|range| range.low)
        .filter(|low| *low != i64::MIN)
        .collect()
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
