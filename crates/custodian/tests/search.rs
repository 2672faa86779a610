//! FHIR R4 search over HTTP against the real `custodian serve` binary: every parameter
//! type and modifier family, chains, `_has`, includes, sorting, paging, totals,
//! `_summary`/`_elements`, `POST _search`, system-level and compartment search, and how
//! unknown or malformed parameters are answered. Result sets are compared by id.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

mod common;

use serde_json::{Value, json};

use common::fhir::*;

// ---------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------

const MRN: &str = "http://example.org/mrn";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

fn patient(id: &str, family: &str, given: &str, gender: &str, birth: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "name": [{"family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth,
    })
}

fn observation(id: &str, code: &str, subject: &str, when: &str, value: &str, unit: &str) -> Value {
    let value: Value = serde_json::from_str(value).unwrap();
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{subject}")},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    })
}

/// Five patients, a practitioner, two encounters and five observations:
///
/// | id | family | given | gender | birthDate | identifier |
/// |---|---|---|---|---|---|
/// | p1 | Müller | Anna | female | 1980-05-12 | mrn MRN-1 |
/// | p2 | Muller | Bert | male | 1975-01-30 | mrn MRN-2 |
/// | p3 | Smith | Carla | female | 1990-11-02 | other MRN-1 |
/// | p4 | Smithson | Dan | male | 2001-07-15 | - |
/// | p5 | Østergaard | Eva | unknown | 1980-12-31 | - |
///
/// | id | code | subject | effective | value |
/// |---|---|---|---|---|
/// | o1 | 8867-4 | p1 (encounter e1) | 2024-01-10T10:00:00Z | 72 /min |
/// | o2 | 8867-4 | p2 | 2024-02-15T08:30:00Z | 110 /min |
/// | o3 | 29463-7 | p1 | 2023-12-01 | 70.5 kg |
/// | o4 | 8867-4 (preliminary) | p3 | 2024-03-01 | 88 /min |
/// | o5 | 29463-7 | p4 | 2024-01-20 | 95 kg |
fn seed(fhir: &Fhir) {
    fhir.store(json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Who"}]}));
    let mut p1 = patient("p1", "Müller", "Anna", "female", "1980-05-12");
    p1["identifier"] = json!([{"system": MRN, "value": "MRN-1"}]);
    p1["active"] = json!(true);
    p1["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Anna Müller</div>"});
    p1["address"] = json!([{"city": "Berlin"}]);
    p1["maritalStatus"] = json!({"text": "married"});
    fhir.store(p1);
    let mut p2 = patient("p2", "Muller", "Bert", "male", "1975-01-30");
    p2["identifier"] = json!([{"system": MRN, "value": "MRN-2"}]);
    p2["active"] = json!(false);
    p2["generalPractitioner"] = json!([{"reference": "Practitioner/dr1"}]);
    fhir.store(p2);
    let mut p3 = patient("p3", "Smith", "Carla", "female", "1990-11-02");
    p3["identifier"] = json!([{"system": "http://other.org", "value": "MRN-1"}]);
    p3["address"] = json!([{"city": "Paris"}]);
    fhir.store(p3);
    fhir.store(patient("p4", "Smithson", "Dan", "male", "2001-07-15"));
    fhir.store(patient("p5", "Østergaard", "Eva", "unknown", "1980-12-31"));

    fhir.store(json!({
        "resourceType": "Encounter", "id": "e1", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2024-01-10"},
    }));
    fhir.store(json!({
        "resourceType": "Encounter", "id": "e2", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p2"},
    }));

    let mut o1 = observation("o1", "8867-4", "p1", "2024-01-10T10:00:00Z", "72", "/min");
    o1["encounter"] = json!({"reference": "Encounter/e1"});
    fhir.store(o1);
    fhir.store(observation(
        "o2",
        "8867-4",
        "p2",
        "2024-02-15T08:30:00Z",
        "110",
        "/min",
    ));
    fhir.store(observation(
        "o3",
        "29463-7",
        "p1",
        "2023-12-01",
        "70.5",
        "kg",
    ));
    let mut o4 = observation("o4", "8867-4", "p3", "2024-03-01", "88", "/min");
    o4["status"] = json!("preliminary");
    fhir.store(o4);
    fhir.store(observation("o5", "29463-7", "p4", "2024-01-20", "95", "kg"));
}

fn seeded() -> Fhir {
    let fhir = Fhir::start();
    seed(&fhir);
    fhir
}

/// Asserts the sorted match ids of each search.
fn expect(fhir: &Fhir, cases: &[(&str, &[&str])]) {
    let mut failures = Vec::new();
    for (path, expected) in cases {
        let reply = fhir.get(path);
        if reply.status != 200 {
            failures.push(format!("{path}: status {} {}", reply.status, reply.text));
            continue;
        }
        let found = ids(&reply.json());
        if found != strings(expected) {
            failures.push(format!("{path}: expected {expected:?}, found {found:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Parameter types
// ---------------------------------------------------------------------------------------

#[test]
fn string_parameters() {
    let fhir = seeded();
    expect(
        &fhir,
        &[
            // Default: starts with, case and accents ignored.
            ("Patient?family=muller", &["p1", "p2"]),
            ("Patient?family=MÜLLER", &["p1", "p2"]),
            ("Patient?family=smith", &["p3", "p4"]),
            ("Patient?name=anna", &["p1"]),
            ("Patient?given=da", &["p4"]),
            ("Patient?address-city=berlin", &["p1"]),
            // :exact compares case and accents.
            ("Patient?family:exact=Smith", &["p3"]),
            ("Patient?family:exact=Müller", &["p1"]),
            ("Patient?family:exact=muller", &[]),
            // :contains.
            ("Patient?family:contains=ERGA", &["p5"]),
            ("Patient?family:contains=ith", &["p3", "p4"]),
            // Percent-encoded UTF-8 in the URL.
            ("Patient?family:exact=M%C3%BCller", &["p1"]),
            // Comma is OR, repetition is AND.
            ("Patient?family=smith,muller", &["p1", "p2", "p3", "p4"]),
            ("Patient?family=smith&given=carla", &["p3"]),
        ],
    );
}

#[test]
fn token_parameters() {
    let fhir = seeded();
    expect(
        &fhir,
        &[
            ("Patient?identifier=http://example.org/mrn|MRN-1", &["p1"]),
            ("Patient?identifier=MRN-1", &["p1", "p3"]),
            ("Patient?identifier=http://example.org/mrn|", &["p1", "p2"]),
            ("Patient?identifier=|MRN-1", &[]),
            (
                "Patient?identifier=http%3A%2F%2Fexample.org%2Fmrn%7CMRN-2",
                &["p2"],
            ),
            ("Patient?identifier:missing=true", &["p4", "p5"]),
            ("Patient?gender=female", &["p1", "p3"]),
            ("Patient?gender:not=female", &["p2", "p4", "p5"]),
            ("Patient?active=true", &["p1"]),
            ("Patient?active=false", &["p2"]),
            ("Patient?_id=p1,p3", &["p1", "p3"]),
            (
                "Observation?code=http://loinc.org|8867-4",
                &["o1", "o2", "o4"],
            ),
            (
                "Observation?code=8867-4,29463-7",
                &["o1", "o2", "o3", "o4", "o5"],
            ),
            ("Observation?code=8867-4&status=final", &["o1", "o2"]),
            ("Encounter?class=AMB", &["e1"]),
        ],
    );
}

#[test]
fn reference_parameters() {
    let fhir = seeded();
    expect(
        &fhir,
        &[
            ("Observation?subject=Patient/p1", &["o1", "o3"]),
            ("Observation?subject=p1", &["o1", "o3"]),
            ("Observation?subject:Patient=p1", &["o1", "o3"]),
            ("Observation?patient=p2", &["o2"]),
            (
                "Observation?subject=Patient/p1,Patient/p4",
                &["o1", "o3", "o5"],
            ),
            ("Observation?encounter=Encounter/e1", &["o1"]),
            ("Patient?general-practitioner=Practitioner/dr1", &["p2"]),
            ("Observation?subject=Patient/nobody", &[]),
        ],
    );
}

#[test]
fn date_parameters() {
    let fhir = seeded();
    expect(
        &fhir,
        &[
            ("Patient?birthdate=1980-05-12", &["p1"]),
            ("Patient?birthdate=1980", &["p1", "p5"]),
            ("Patient?birthdate=eq1980-12", &["p5"]),
            ("Patient?birthdate=lt1980", &["p2"]),
            ("Patient?birthdate=ge1990-01-01", &["p3", "p4"]),
            ("Patient?birthdate=ne1980", &["p2", "p3", "p4"]),
            (
                "Patient?birthdate=gt1980-05-12&birthdate=lt2000",
                &["p3", "p5"],
            ),
            ("Observation?date=2024-01", &["o1", "o5"]),
            ("Observation?date=le2023-12-31", &["o3"]),
            ("Observation?date=sa2024-02-01", &["o2", "o4"]),
            ("Observation?date=eb2024-01-01", &["o3"]),
            ("Observation?date=2024-01-10T10:00:00Z", &["o1"]),
            ("Encounter?date=ge2024-01-01", &["e1"]),
            (
                "Patient?_lastUpdated=gt2000-01-01",
                &["p1", "p2", "p3", "p4", "p5"],
            ),
            ("Patient?_lastUpdated=lt2000-01-01", &[]),
        ],
    );
}

#[test]
fn quantity_parameters() {
    let fhir = seeded();
    expect(
        &fhir,
        &[
            ("Observation?value-quantity=72", &["o1"]),
            ("Observation?value-quantity=gt100", &["o2"]),
            ("Observation?value-quantity=ge88", &["o2", "o4", "o5"]),
            (
                "Observation?value-quantity=lt80|http://unitsofmeasure.org|/min",
                &["o1"],
            ),
            (
                "Observation?value-quantity=70.5|http://unitsofmeasure.org|kg",
                &["o3"],
            ),
            ("Observation?value-quantity=le100||kg", &["o3", "o5"]),
            ("Observation?value-quantity=5", &[]),
        ],
    );
}

#[test]
fn chains_and_has() {
    let fhir = seeded();
    expect(
        &fhir,
        &[
            (
                "Observation?subject:Patient.family=muller",
                &["o1", "o2", "o3"],
            ),
            ("Observation?patient.gender=male", &["o2", "o5"]),
            (
                "Encounter?patient.identifier=http://example.org/mrn|MRN-2",
                &["e2"],
            ),
            (
                "Observation?subject:Patient.general-practitioner:Practitioner.family=who",
                &["o2"],
            ),
            (
                "Patient?_has:Observation:subject:code=29463-7",
                &["p1", "p4"],
            ),
            (
                "Patient?_has:Observation:patient:value-quantity=gt100",
                &["p2"],
            ),
            ("Patient?_has:Encounter:subject:status=finished", &["p1"]),
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Includes, sorting, paging, totals
// ---------------------------------------------------------------------------------------

#[test]
fn include_and_revinclude() {
    let fhir = seeded();
    let bundle = fhir.search("Observation?_id=o1&_include=Observation:subject");
    assert_eq!(typed(&bundle, "match"), ["Observation/o1"]);
    assert_eq!(typed(&bundle, "include"), ["Patient/p1"]);

    let bundle = fhir.search("Observation?code=29463-7&_include=Observation:patient");
    assert_eq!(
        typed(&bundle, "match"),
        ["Observation/o3", "Observation/o5"]
    );
    assert_eq!(typed(&bundle, "include"), ["Patient/p1", "Patient/p4"]);

    let bundle = fhir
        .search("Observation?_id=o1&_include=Observation:encounter&_include=Observation:subject");
    assert_eq!(typed(&bundle, "include"), ["Encounter/e1", "Patient/p1"]);

    let bundle = fhir.search("Patient?_id=p1&_revinclude=Observation:subject");
    assert_eq!(typed(&bundle, "match"), ["Patient/p1"]);
    assert_eq!(
        typed(&bundle, "include"),
        ["Observation/o1", "Observation/o3"]
    );

    let bundle = fhir.search(
        "Observation?_id=o2&_include=Observation:subject&_include:iterate=Patient:general-practitioner",
    );
    assert_eq!(
        typed(&bundle, "include"),
        ["Patient/p2", "Practitioner/dr1"]
    );

    // An include is never also a match, and each resource comes once.
    let bundle = fhir.search(
        "Patient?_id=p1,p2&_revinclude=Observation:subject&_include=Patient:general-practitioner",
    );
    assert_eq!(typed(&bundle, "match"), ["Patient/p1", "Patient/p2"]);
    assert_eq!(
        typed(&bundle, "include"),
        [
            "Observation/o1",
            "Observation/o2",
            "Observation/o3",
            "Practitioner/dr1"
        ]
    );
    for entry in entries(&bundle) {
        let url = entry["fullUrl"].as_str().unwrap();
        let resource = &entry["resource"];
        assert_eq!(
            url,
            format!(
                "{}/{}/{}",
                fhir.base(),
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            )
        );
    }
}

#[test]
fn sorting() {
    let fhir = seeded();
    assert_eq!(
        match_ids(&fhir.search("Patient?_sort=birthdate")),
        ["p2", "p1", "p5", "p3", "p4"]
    );
    assert_eq!(
        match_ids(&fhir.search("Patient?_sort=-birthdate")),
        ["p4", "p3", "p5", "p1", "p2"]
    );
    assert_eq!(
        match_ids(&fhir.search("Observation?_sort=date")),
        ["o3", "o1", "o5", "o2", "o4"]
    );
    assert_eq!(
        match_ids(&fhir.search("Observation?code=8867-4&_sort=-date")),
        ["o4", "o2", "o1"]
    );
    assert_eq!(
        match_ids(&fhir.search("Patient?_sort=gender,-birthdate")),
        ["p3", "p1", "p4", "p2", "p5"]
    );
    assert_eq!(
        match_ids(&fhir.search("Patient?_sort=-_id")),
        ["p5", "p4", "p3", "p2", "p1"]
    );
}

/// Follows `next` links from `path`; returns the match ids of each page.
fn pages(fhir: &Fhir, path: &str) -> (Vec<Vec<String>>, Vec<Value>) {
    let mut found = Vec::new();
    let mut bundles = Vec::new();
    let mut next = Some(fhir.url(path));
    while let Some(url) = next {
        let bundle = fhir.search(&url);
        assert!(link(&bundle, "self").is_some(), "no self link: {bundle}");
        found.push(match_ids(&bundle));
        next = link(&bundle, "next");
        bundles.push(bundle);
        assert!(found.len() < 100, "paging does not end");
    }
    (found, bundles)
}

#[test]
fn paging() {
    let fhir = seeded();
    let (found, bundles) = pages(&fhir, "Patient?_count=2&_sort=_id");
    assert_eq!(
        found,
        [
            strings(&["p1", "p2"]),
            strings(&["p3", "p4"]),
            strings(&["p5"])
        ]
    );
    let first = &bundles[0];
    let self_link = link(first, "self").unwrap();
    assert!(
        self_link.starts_with(&format!("{}/Patient?", fhir.base())),
        "{self_link}"
    );
    assert!(
        self_link.contains("_count=2") && self_link.contains("_sort=_id"),
        "{self_link}"
    );
    assert!(!self_link.contains("_cursor"), "{self_link}");
    assert!(link(first, "previous").is_none());
    let next = link(first, "next").unwrap();
    assert!(next.contains("_cursor="), "{next}");
    assert!(next.contains("_count=2"), "{next}");
    // The second page: its self link carries its cursor, previous leads back, first to the start.
    let second = &bundles[1];
    assert!(link(second, "self").unwrap().contains("_cursor="));
    let previous = fhir.search(&link(second, "previous").unwrap());
    assert_eq!(match_ids(&previous), ["p1", "p2"]);
    let again = fhir.search(&link(second, "first").unwrap());
    assert_eq!(match_ids(&again), ["p1", "p2"]);
    assert!(link(&bundles[2], "next").is_none());

    // Without _sort, every match comes exactly once across pages.
    let (found, _) = pages(&fhir, "Observation?_count=2");
    let mut all: Vec<String> = found.into_iter().flatten().collect();
    all.sort();
    assert_eq!(all, ["o1", "o2", "o3", "o4", "o5"]);
    let (found, _) = pages(&fhir, "Patient?gender=female,male&_count=1");
    let mut all: Vec<String> = found.into_iter().flatten().collect();
    all.sort();
    assert_eq!(all, ["p1", "p2", "p3", "p4"]);

    // A page size above the limit is lowered to it.
    let bundle = fhir.search("Patient?_count=50000");
    assert_eq!(ids(&bundle).len(), 5);
    assert!(link(&bundle, "self").unwrap().contains("_count=1000"));

    // A cursor that is not one of ours.
    let reply = fhir.get("Patient?_cursor=garbage");
    reply.outcome(400);
}

#[test]
fn totals_and_count_only() {
    let fhir = seeded();
    let bundle = fhir.search("Patient?_count=2&_total=accurate");
    assert_eq!(bundle["total"], 5);
    assert_eq!(ids(&bundle).len(), 2);
    // Everything fits on the first page: the total is known.
    assert_eq!(fhir.search("Patient?gender=female")["total"], 2);

    let bundle = fhir.search("Patient?gender=female&_summary=count");
    assert_eq!(bundle["total"], 2);
    assert!(bundle.get("entry").is_none(), "{bundle}");
    let bundle = fhir.search("Observation?_count=0");
    assert_eq!(bundle["total"], 5);
    assert!(bundle.get("entry").is_none(), "{bundle}");
}

// ---------------------------------------------------------------------------------------
// _summary and _elements
// ---------------------------------------------------------------------------------------

fn keys(resource: &Value) -> Vec<String> {
    let mut keys: Vec<String> = resource.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn subsetted(resource: &Value) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|tag| tag["code"] == "SUBSETTED"))
}

#[test]
fn summary_and_elements() {
    let fhir = seeded();
    let only = |path: &str| -> Value {
        let bundle = fhir.search(path);
        let entries = entries(&bundle);
        assert_eq!(entries.len(), 1, "{bundle}");
        entries[0]["resource"].clone()
    };

    let full = only("Patient?_id=p1");
    assert!(!subsetted(&full));
    assert!(full.get("maritalStatus").is_some() && full.get("text").is_some());

    let summary = only("Patient?_id=p1&_summary=true");
    assert!(subsetted(&summary), "{summary}");
    assert_eq!(
        keys(&summary),
        strings(&[
            "active",
            "address",
            "birthDate",
            "gender",
            "id",
            "identifier",
            "meta",
            "name",
            "resourceType"
        ])
    );

    let text = only("Patient?_id=p1&_summary=text");
    assert_eq!(
        keys(&text),
        strings(&["id", "meta", "resourceType", "text"])
    );
    assert!(subsetted(&text));

    let data = only("Patient?_id=p1&_summary=data");
    assert!(data.get("text").is_none() && data.get("maritalStatus").is_some());

    let elements = only("Patient?_id=p1&_elements=birthDate,name");
    assert_eq!(
        keys(&elements),
        strings(&["birthDate", "id", "meta", "name", "resourceType"])
    );
    assert!(subsetted(&elements));

    // Mandatory elements always come along; choice elements by their base name.
    let observation = only("Observation?_id=o1&_elements=subject,value");
    assert_eq!(
        keys(&observation),
        strings(&[
            "code",
            "id",
            "meta",
            "resourceType",
            "status",
            "subject",
            "valueQuantity"
        ])
    );

    // Includes are sent whole.
    let bundle = fhir.search("Observation?_id=o1&_include=Observation:subject&_elements=status");
    let included: Vec<Value> = entries(&bundle)
        .into_iter()
        .filter(|entry| entry["search"]["mode"] == "include")
        .collect();
    assert_eq!(included.len(), 1);
    assert!(!subsetted(&included[0]["resource"]));
    assert!(included[0]["resource"].get("birthDate").is_some());
}

// ---------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------

#[test]
fn post_search_with_a_form_body() {
    let fhir = seeded();
    let form = |path: &str, body: &str| {
        fhir.request(
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body),
        )
    };
    let bundle = form("Patient/_search", "family=muller&gender=male").ok(200);
    assert_eq!(ids(&bundle), ["p2"]);
    // Parameters from the URL and the body both apply.
    let bundle = form("Patient/_search?gender=female", "family=m%C3%BCller").ok(200);
    assert_eq!(ids(&bundle), ["p1"]);
    let bundle = form(
        "Patient/_search",
        "identifier=http%3A%2F%2Fexample.org%2Fmrn%7CMRN-2",
    )
    .ok(200);
    assert_eq!(ids(&bundle), ["p2"]);
    // Paging links are GET URLs that repeat the search.
    let bundle = form("Patient/_search", "family=smith&_count=1").ok(200);
    let next = link(&bundle, "next").unwrap();
    assert!(
        next.starts_with(&format!("{}/Patient?", fhir.base())),
        "{next}"
    );
    assert_eq!(match_ids(&fhir.search(&next)).len(), 1);
    // System level.
    let bundle = form("_search", "_type=Observation&code=29463-7").ok(200);
    assert_eq!(
        typed(&bundle, "match"),
        ["Observation/o3", "Observation/o5"]
    );

    let reply = fhir.request(
        "POST",
        "Patient/_search",
        &[("content-type", FHIR_JSON)],
        Some("{}"),
    );
    reply.outcome(415);
    fhir.request(
        "POST",
        "Nope/_search",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some("name=x"),
    )
    .outcome(404);
}

#[test]
fn system_level_search() {
    let fhir = seeded();
    let bundle = fhir.search("?_type=Patient,Encounter&_id=p1,e1,o1");
    assert_eq!(typed(&bundle, "match"), ["Encounter/e1", "Patient/p1"]);
    let bundle = fhir.search("?_id=o1,dr1");
    assert_eq!(
        typed(&bundle, "match"),
        ["Observation/o1", "Practitioner/dr1"]
    );
    let bundle = fhir.search("?_type=Encounter&status=finished");
    assert_eq!(typed(&bundle, "match"), ["Encounter/e1"]);
    let bundle = fhir.search("?_type=Practitioner");
    assert_eq!(typed(&bundle, "match"), ["Practitioner/dr1"]);
    let self_link = link(&bundle, "self").unwrap();
    assert_eq!(self_link, format!("{}?_type=Practitioner", fhir.base()));
    // The base with a trailing slash is the base.
    let bundle = fhir.search(&format!("{}/?_type=Practitioner", fhir.base()));
    assert_eq!(typed(&bundle, "match"), ["Practitioner/dr1"]);
}

#[test]
fn compartment_search() {
    let fhir = seeded();
    let bundle = fhir.search("Patient/p1/Observation");
    assert_eq!(ids(&bundle), ["o1", "o3"]);
    assert!(
        link(&bundle, "self")
            .unwrap()
            .starts_with(&format!("{}/Patient/p1/Observation", fhir.base()))
    );
    assert_eq!(
        ids(&fhir.search("Patient/p1/Observation?code=29463-7")),
        ["o3"]
    );
    assert_eq!(ids(&fhir.search("Patient/p1/Encounter")), ["e1"]);
    assert_eq!(ids(&fhir.search("Patient/p2/Encounter")), ["e2"]);
    assert!(ids(&fhir.search("Patient/p5/Observation")).is_empty());
    // Every type in the compartment (`*`), narrowed by _type.
    let bundle = fhir.search("Patient/p1/*?_type=Observation,Encounter");
    assert_eq!(
        typed(&bundle, "match"),
        ["Encounter/e1", "Observation/o1", "Observation/o3"]
    );
    fhir.get("Patient/p1/Practitioner").outcome(400);
    fhir.get("Patient/p1/Nope").outcome(404);
    fhir.get("Nope/p1/Observation").outcome(404);
}

// ---------------------------------------------------------------------------------------
// What is not understood
// ---------------------------------------------------------------------------------------

#[test]
fn strict_and_lenient_handling() {
    let fhir = seeded();
    let reply = fhir.request(
        "GET",
        "Patient?family=smith&frobnicate=1",
        &[("prefer", "handling=strict")],
        None,
    );
    let diagnostics = reply.outcome(400);
    assert!(diagnostics.contains("frobnicate"), "{diagnostics}");

    // Lenient (the default): the search runs without it, and says so.
    for headers in [vec![], vec![("prefer", "handling=lenient")]] {
        let reply = fhir.request("GET", "Patient?family=smith&frobnicate=1", &headers, None);
        let bundle = reply.ok(200);
        assert_eq!(ids(&bundle), ["p3", "p4"]);
        let outcomes: Vec<Value> = entries(&bundle)
            .into_iter()
            .filter(|entry| entry["search"]["mode"] == "outcome")
            .collect();
        assert_eq!(outcomes.len(), 1, "{bundle}");
        let outcome = &outcomes[0]["resource"];
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["severity"], "warning");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("frobnicate")
        );
        let self_link = link(&bundle, "self").unwrap();
        assert!(!self_link.contains("frobnicate"), "{self_link}");
        assert!(self_link.contains("family=smith"), "{self_link}");
    }
}

#[test]
fn malformed_values_are_refused() {
    let fhir = seeded();
    for (path, named) in [
        ("Patient?birthdate=notadate", ["birthdate", "notadate"]),
        (
            "Patient?birthdate=zz2020-01-01",
            ["birthdate", "zz2020-01-01"],
        ),
        ("Observation?value-quantity=abc", ["value-quantity", "abc"]),
        ("Patient?_count=ten", ["_count", "ten"]),
        ("Patient?_sort=nosuch", ["_sort", "nosuch"]),
    ] {
        for handling in ["handling=strict", "handling=lenient"] {
            let reply = fhir.request("GET", path, &[("prefer", handling)], None);
            let diagnostics = reply.outcome(400);
            for name in named {
                assert!(diagnostics.contains(name), "{path}: {diagnostics}");
            }
        }
    }
    fhir.get("Nope?name=x").outcome(404);
    fhir.get("Patient?_format=xml").outcome(406);
}

#[test]
fn full_text_on_narrative_and_content() {
    let fhir = seeded();
    fhir.store(json!({
        "resourceType": "Condition", "id": "c1",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Acute <b>bronchitis</b>, resolved</p></div>"},
        "code": {"text": "Bronchitis", "coding": [{"system": "http://snomed.info/sct", "code": "10509002", "display": "Acute bronchitis (disorder)"}]},
        "subject": {"reference": "Patient/p1"},
        "note": [{"text": "Follow-up with Dr Müller in two weeks"}]
    }));
    fhir.store(json!({
        "resourceType": "Condition", "id": "c2",
        "code": {"text": "Chronic heart failure"},
        "subject": {"reference": "Patient/p2"}
    }));
    expect(
        &fhir,
        &[
            ("Condition?_text=bronchitis", &["c1"]),
            ("Condition?_text=BRONCH", &["c1"]),
            ("Condition?_text=heart", &[]),
            ("Condition?_content=heart%20fail", &["c2"]),
            ("Condition?_content=muller", &["c1"]),
            ("Condition?_content=10509002", &["c1"]),
            ("Condition?_content=snomed", &[]),
            ("Condition?_content=acute&subject=Patient/p1", &["c1"]),
            ("Patient?_text=anna", &["p1"]),
        ],
    );
    // Updates replace the text; deletes remove it.
    fhir.store(json!({
        "resourceType": "Condition", "id": "c2",
        "code": {"text": "Asthma"},
        "subject": {"reference": "Patient/p2"}
    }));
    expect(
        &fhir,
        &[
            ("Condition?_content=heart", &[]),
            ("Condition?_content=asthma", &["c2"]),
        ],
    );
    assert_eq!(
        fhir.request("DELETE", "Condition/c1", &[], None).status,
        204
    );
    expect(&fhir, &[("Condition?_text=bronchitis", &[])]);
    let message = fhir.get("Condition?_content=--").outcome(400);
    assert!(message.contains("_content"), "{message}");
}
