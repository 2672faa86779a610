//! The master patient index through HTTP: `Patient/$match` on Synthea patients and
//! deliberately corrupted copies of them, the duplicate worklist and its decisions
//! (kept across a restart), the enterprise identifier, and `$merge` / `$unmerge` with
//! every reference checked by reading the whole store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::fhir::{FHIR_JSON, Fhir, entries, link};
use common::{TestServer, testdata};
use serde_json::{Value, json};

/// `(type, id)`.
type Key = (String, String);

/// The patient bundles of synthea-100, smallest first.
fn patient_bundles(folder: &Path) -> Vec<PathBuf> {
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
    files.into_iter().map(|(_, path)| path).collect()
}

/// The Patient resource of a Synthea bundle.
fn patient_of(path: &Path) -> Value {
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"].clone())
        .find(|resource| resource["resourceType"] == "Patient")
        .unwrap()
}

/// Stores the Patient of each bundle (without the rest of the bundle); their ids.
fn store_patients(fhir: &Fhir, bundles: &[PathBuf]) -> Vec<String> {
    bundles
        .iter()
        .map(|path| {
            let patient = patient_of(path);
            fhir.store(patient.clone());
            patient["id"].as_str().unwrap().to_string()
        })
        .collect()
}

fn parameters(parts: Vec<Value>) -> Value {
    json!({"resourceType": "Parameters", "parameter": parts})
}

fn match_input(patient: &Value, extra: Vec<Value>) -> Value {
    let mut parts = vec![json!({"name": "resource", "resource": patient})];
    parts.extend(extra);
    parameters(parts)
}

/// A copy of `patient` as another registration of the same person: no id, and only
/// what `keep` says of its identifiers.
fn copy_of(patient: &Value, keep_ssn: bool) -> Value {
    let mut copy = patient.clone();
    let object = copy.as_object_mut().unwrap();
    object.remove("id");
    object.remove("meta");
    object.remove("text");
    object.remove("extension");
    let identifiers: Vec<Value> = patient["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|identifier| keep_ssn && identifier["system"] == "http://hl7.org/fhir/sid/us-ssn")
        .cloned()
        .collect();
    if !identifiers.is_empty() {
        object.insert("identifier".into(), Value::Array(identifiers));
    }
    copy
}

/// Two neighbouring letters swapped (`Koepp` becomes `Kopep`).
fn typo(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = chars.len() / 2;
    if at > 0 && at < chars.len() {
        chars.swap(at - 1, at);
    }
    chars.into_iter().collect()
}

/// The corrupted copies of `patient`: (what was done, the copy).
fn corrupted(patient: &Value) -> Vec<(&'static str, Value)> {
    let mut family_typo = copy_of(patient, true);
    let family = family_typo["name"][0]["family"]
        .as_str()
        .unwrap()
        .to_string();
    family_typo["name"][0]["family"] = json!(typo(&family));
    family_typo.as_object_mut().unwrap().remove("telecom");

    let mut swapped = copy_of(patient, false);
    let birth = patient["birthDate"].as_str().unwrap();
    let (year, month, day) = (&birth[0..4], &birth[5..7], &birth[8..10]);
    let swapped_date = if day.parse::<u32>().unwrap() <= 12 && day != month {
        format!("{year}-{day}-{month}")
    } else {
        // Not a valid date with day and month swapped: one digit of the day instead.
        let last = (day.as_bytes()[1] - b'0' + 1) % 10;
        format!("{year}-{month}-{}{last}", &day[0..1])
    };
    swapped["birthDate"] = json!(swapped_date);

    let mut missing = copy_of(patient, true);
    let given = missing["name"][0]["given"][0].as_str().unwrap().to_string();
    missing["name"][0]["given"] = json!([typo(&given)]);
    missing.as_object_mut().unwrap().remove("address");
    missing.as_object_mut().unwrap().remove("telecom");

    vec![
        ("family name typo, no phone", family_typo),
        ("birth date transposed, no identifiers", swapped),
        ("given name typo, no address or phone", missing),
    ]
}

fn grade_of(entry: &Value) -> String {
    entry["search"]["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|extension| extension["url"] == "http://hl7.org/fhir/StructureDefinition/match-grade")
        .map(|extension| extension["valueCode"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn match_finds_the_original_of_corrupted_copies_of_synthea_patients() {
    let Some(folder) = testdata("synthea/synthea-100") else {
        return;
    };
    let fhir = Fhir::start();
    let bundles = patient_bundles(&folder);
    let ids = store_patients(&fhir, &bundles);
    assert!(ids.len() >= 90);

    let mut checked = 0;
    for path in bundles.iter().step_by(9) {
        let original = patient_of(path);
        let id = original["id"].as_str().unwrap();
        for (what, copy) in corrupted(&original) {
            let bundle = fhir
                .post("Patient/$match", &match_input(&copy, vec![]))
                .ok(200);
            assert_eq!(bundle["type"], "searchset");
            let found = entries(&bundle);
            let first = found
                .first()
                .unwrap_or_else(|| panic!("{what}: no match for Patient/{id}"));
            assert_eq!(first["resource"]["id"], id, "{what}: {bundle}");
            assert_eq!(first["search"]["mode"], "match");
            let score = first["search"]["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score), "{what}: score {score}");
            let grade = grade_of(first);
            assert!(
                grade == "certain" || grade == "probable",
                "{what}: graded {grade}"
            );
            // Best first.
            let scores: Vec<f64> = found
                .iter()
                .map(|entry| entry["search"]["score"].as_f64().unwrap())
                .collect();
            assert!(
                scores.windows(2).all(|pair| pair[0] >= pair[1]),
                "{scores:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30);

    // An exact copy is certain; onlyCertainMatches keeps only certain ones, count caps.
    let original = patient_of(&bundles[0]);
    let exact = copy_of(&original, true);
    let certain = fhir
        .post(
            "Patient/$match",
            &match_input(
                &exact,
                vec![json!({"name": "onlyCertainMatches", "valueBoolean": true})],
            ),
        )
        .ok(200);
    let found = entries(&certain);
    assert_eq!(found[0]["resource"]["id"], original["id"]);
    assert!(found.iter().all(|entry| grade_of(entry) == "certain"));
    let stranger = json!({
        "resourceType": "Patient",
        "name": [{"family": "Zzyzx", "given": ["Quintessa"]}],
        "birthDate": "1901-01-01",
        "gender": "female"
    });
    let none = fhir
        .post("Patient/$match", &match_input(&stranger, vec![]))
        .ok(200);
    assert_eq!(none["total"], 0);
    // A vague query (a common family name only, with a birth year) finds several at most `count`.
    let family = original["name"][0]["family"].as_str().unwrap();
    let vague = json!({"resourceType": "Patient", "name": [{"family": family, "given": [original["name"][0]["given"][0]]}], "birthDate": original["birthDate"]});
    let one = fhir
        .post(
            "Patient/$match",
            &match_input(&vague, vec![json!({"name": "count", "valueInteger": 1})]),
        )
        .ok(200);
    assert_eq!(entries(&one).len(), 1);

    // Bad input: 400 or 422 with an OperationOutcome.
    let no_resource = parameters(vec![json!({"name": "count", "valueInteger": 3})]);
    assert!(
        fhir.post("Patient/$match", &no_resource)
            .outcome(400)
            .contains("resource")
    );
    let not_patient = match_input(&json!({"resourceType": "Observation"}), vec![]);
    assert!(
        fhir.post("Patient/$match", &not_patient)
            .outcome(422)
            .contains("Patient")
    );
    let bad_count = match_input(&exact, vec![json!({"name": "count", "valueInteger": 0})]);
    assert!(
        fhir.post("Patient/$match", &bad_count)
            .outcome(400)
            .contains("count")
    );
    assert!(
        fhir.post("Patient/$match", &exact)
            .outcome(400)
            .contains("Parameters")
    );
    // The CapabilityStatement names the operations.
    let statement = fhir.get("metadata").ok(200);
    let patient = statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|resource| resource["type"] == "Patient")
        .unwrap()
        .clone();
    for name in [
        "match",
        "merge",
        "unmerge",
        "duplicates",
        "duplicate-decision",
    ] {
        assert!(
            patient["operation"]
                .as_array()
                .unwrap()
                .iter()
                .any(|operation| operation["name"] == name),
            "{name}"
        );
    }
}

/// The open worklist items: (task id, patient id, candidate id, the item).
fn worklist(fhir: &Fhir) -> Vec<(String, String, String, Value)> {
    let list = fhir.get("Patient/$duplicates").ok(200);
    assert_eq!(list["resourceType"], "Parameters");
    list["parameter"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|item| {
            let part = |name: &str| {
                item["part"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|part| part["name"] == name)
                    .unwrap()
                    .clone()
            };
            let reference = |name: &str| {
                let patient = part(name);
                let reference = patient["part"][0]["valueReference"]["reference"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert_eq!(
                    format!(
                        "Patient/{}",
                        patient["part"][1]["resource"]["id"].as_str().unwrap()
                    ),
                    reference
                );
                reference.trim_start_matches("Patient/").to_string()
            };
            let task = part("task")["valueReference"]["reference"]
                .as_str()
                .unwrap()
                .trim_start_matches("Task/")
                .to_string();
            (task, reference("patient"), reference("candidate"), item)
        })
        .collect()
}

fn decide(fhir: &Fhir, task: &str, decision: &str, merge: bool) -> common::fhir::Reply {
    fhir.post(
        "Patient/$duplicate-decision",
        &parameters(vec![
            json!({"name": "item", "valueReference": {"reference": format!("Task/{task}")}}),
            json!({"name": "decision", "valueCode": decision}),
            json!({"name": "merge", "valueBoolean": merge}),
        ]),
    )
}

#[test]
fn the_worklist_queues_duplicates_and_remembers_decisions_across_a_restart() {
    let Some(folder) = testdata("synthea/synthea-100") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fhir = Fhir::on(TestServer::start_in(dir.path(), &[]));
    let bundles = patient_bundles(&folder);
    let ids = store_patients(&fhir, &bundles[..20]);
    // Synthea patients are different people: nothing queued.
    assert!(worklist(&fhir).is_empty(), "{:?}", worklist(&fhir));

    let original = patient_of(&bundles[3]);
    let (_, copy) = corrupted(&original).remove(0);
    let created = fhir.post("Patient", &copy).ok(201);
    let duplicate = created["id"].as_str().unwrap().to_string();
    let items = worklist(&fhir);
    assert_eq!(items.len(), 1, "{items:?}");
    let (task, patient, candidate, item) = &items[0];
    assert_eq!(patient, &duplicate);
    assert_eq!(candidate, &ids[3]);
    let parts = item["part"].as_array().unwrap();
    let score = parts.iter().find(|p| p["name"] == "score").unwrap()["valueDecimal"]
        .as_f64()
        .unwrap();
    assert!(score > 0.5);
    let explanation = parts.iter().find(|p| p["name"] == "explanation").unwrap();
    let comparisons: Vec<&str> = explanation["part"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|part| part["name"] == "comparison")
        .map(|part| part["part"][0]["valueString"].as_str().unwrap())
        .collect();
    assert!(comparisons.contains(&"family") && comparisons.contains(&"birthdate"));

    // Not a duplicate: the item closes, and updating the record does not queue it again.
    let decided = decide(&fhir, task, "not-duplicate", false).ok(200);
    assert_eq!(decided["parameter"][0]["resource"]["status"], "rejected");
    assert!(worklist(&fhir).is_empty());
    let again = decide(&fhir, task, "same-person", false);
    assert!(again.outcome(422).contains("already been decided"));
    let mut current = fhir.get(&format!("Patient/{duplicate}")).ok(200);
    current["gender"] = original["gender"].clone();
    current["birthDate"] = original["birthDate"].clone();
    fhir.put(&format!("Patient/{duplicate}"), &current).ok(200);
    assert!(worklist(&fhir).is_empty());

    // The decision is stored: after a restart, another update still queues nothing.
    drop(fhir);
    let fhir = Fhir::on(TestServer::start_in(dir.path(), &[]));
    let mut current = fhir.get(&format!("Patient/{duplicate}")).ok(200);
    current["active"] = json!(true);
    fhir.put(&format!("Patient/{duplicate}"), &current).ok(200);
    assert!(worklist(&fhir).is_empty());

    // Another duplicate, decided "same person": both get one enterprise identifier.
    let original = patient_of(&bundles[7]);
    let (_, copy) = corrupted(&original).remove(2);
    let duplicate = fhir.post("Patient", &copy).ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let items = worklist(&fhir);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].2, ids[7]);
    let decided = decide(&fhir, &items[0].0, "same-person", false).ok(200);
    let enterprise = decided["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "enterprise-identifier")
        .unwrap()["valueIdentifier"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let linked = fhir.search(&format!(
        "Patient?identifier=urn:custodian:enterprise-id|{enterprise}"
    ));
    let mut found: Vec<String> = entries(&linked)
        .iter()
        .map(|entry| entry["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    let mut expected = vec![duplicate.clone(), ids[7].clone()];
    expected.sort();
    assert_eq!(found, expected);
    assert!(worklist(&fhir).is_empty());

    // Same person, and merge: the new record is merged into the one it matched.
    let original = patient_of(&bundles[11]);
    let (_, copy) = corrupted(&original).remove(0);
    let duplicate = fhir.post("Patient", &copy).ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let items = worklist(&fhir);
    assert_eq!(items.len(), 1, "{items:?}");
    let decided = decide(&fhir, &items[0].0, "same-person", true).ok(200);
    let merge = decided["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "merge")
        .unwrap();
    assert_eq!(merge["resource"]["parameter"][1]["name"], "result");
    let merged = fhir.get(&format!("Patient/{duplicate}")).ok(200);
    assert_eq!(merged["active"], false);
    assert_eq!(merged["link"][0]["type"], "replaced-by");
    assert_eq!(
        merged["link"][0]["other"]["reference"],
        format!("Patient/{}", ids[11])
    );
    // The item refers to the kept record only now.
    let task = fhir.get(&format!("Task/{}", items[0].0)).ok(200);
    assert_eq!(task["status"], "completed");
    assert_eq!(task["focus"]["reference"], format!("Patient/{}", ids[11]));

    // Bad decisions.
    assert!(
        decide(&fhir, "no-such-task", "not-duplicate", false)
            .outcome(422)
            .contains("no Task")
    );
    assert!(
        decide(&fhir, &items[0].0, "maybe", false)
            .outcome(400)
            .contains("decision")
    );
}

#[test]
fn auto_link_gives_certain_matches_an_enterprise_identifier_at_once() {
    let Some(folder) = testdata("synthea/synthea-100") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fhir = Fhir::on(TestServer::start_in(
        dir.path(),
        &[
            "--mpi-auto-link",
            "--mpi-enterprise-system",
            "urn:example:eid",
        ],
    ));
    let bundles = patient_bundles(&folder);
    let ids = store_patients(&fhir, &bundles[..5]);
    let original = patient_of(&bundles[1]);
    let mut copy = copy_of(&original, true);
    copy["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "urn:example:clinic-b", "value": "B-77"}));
    let duplicate = fhir.post("Patient", &copy).ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(worklist(&fhir).is_empty());
    let linked = fhir.get(&format!("Patient/{duplicate}")).ok(200);
    let enterprise = linked["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|identifier| identifier["system"] == "urn:example:eid")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    let found = fhir.search(&format!("Patient?identifier=urn:example:eid|{enterprise}"));
    let mut found: Vec<String> = entries(&found)
        .iter()
        .map(|entry| entry["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    let mut expected = vec![duplicate, ids[1].clone()];
    expected.sort();
    assert_eq!(found, expected);
}

/// Every current resource, by (type, id).
fn read_all(fhir: &Fhir) -> BTreeMap<Key, Value> {
    let mut found = BTreeMap::new();
    let mut next = Some(fhir.url("?_count=1000"));
    while let Some(url) = next.take() {
        let page = fhir.search(&url);
        for entry in entries(&page) {
            let resource = entry["resource"].clone();
            let key = (
                resource["resourceType"].as_str().unwrap().to_string(),
                resource["id"].as_str().unwrap().to_string(),
            );
            found.insert(key, resource);
        }
        next = link(&page, "next");
    }
    found
}

/// A resource without `meta.versionId` and `meta.lastUpdated`.
fn content(resource: &Value) -> Value {
    let mut resource = resource.clone();
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
    }
    resource
}

/// Whether any `reference` in `value` points to `Patient/{id}`.
fn refers_to(value: &Value, id: &str) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(key, child)| {
            (key == "reference"
                && child.as_str().is_some_and(|reference| {
                    reference == format!("Patient/{id}")
                        || reference.starts_with(&format!("Patient/{id}/"))
                        || reference.ends_with(&format!("/Patient/{id}"))
                }))
                || refers_to(child, id)
        }),
        Value::Array(items) => items.iter().any(|item| refers_to(item, id)),
        _ => false,
    }
}

fn merge_input(source: &str, target: &str) -> Value {
    parameters(vec![
        json!({"name": "source-patient", "valueReference": {"reference": format!("Patient/{source}")}}),
        json!({"name": "target-patient", "valueReference": {"reference": format!("Patient/{target}")}}),
    ])
}

fn versions(stored: &BTreeMap<Key, Value>) -> BTreeMap<Key, String> {
    stored
        .iter()
        .map(|(key, resource)| {
            (
                key.clone(),
                resource["meta"]["versionId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn merge_repoints_every_reference_and_unmerge_restores_everything() {
    let Some(folder) = testdata("synthea/synthea-100") else {
        return;
    };
    let fhir = Fhir::start();
    let bundles = patient_bundles(&folder);
    for path in &bundles[..2] {
        let body = std::fs::read_to_string(path).unwrap();
        let reply = fhir.request("POST", "", &[("content-type", FHIR_JSON)], Some(&body));
        assert_eq!(
            reply.status,
            200,
            "{}",
            &reply.text[..reply.text.len().min(500)]
        );
    }
    // A transaction gives its Patients ids of the server's; Synthea's own id is an
    // identifier.
    let stored_id = |path: &Path| {
        let synthea_id = patient_of(path)["identifier"][0]["value"]
            .as_str()
            .unwrap()
            .to_string();
        let found = fhir.search(&format!(
            "Patient?identifier=https://github.com/synthetichealth/synthea|{synthea_id}"
        ));
        entries(&found)[0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let source = stored_id(&bundles[0]);
    let other = stored_id(&bundles[1]);
    // The target: the same person registered again elsewhere.
    let (_, copy) = corrupted(&patient_of(&bundles[0])).remove(1);
    let target = fhir.post("Patient", &copy).ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The duplicate check of the new record has run (it queued a worklist item).
    assert_eq!(worklist(&fhir).len(), 1);
    // A resource that refers to the source only from an element no search parameter
    // covers (an extension).
    fhir.post(
        "Basic",
        &json!({"resourceType": "Basic", "code": {"text": "note"}, "extension": [{
            "url": "http://example.org/fhir/StructureDefinition/about",
            "valueReference": {"reference": format!("Patient/{source}")}
        }]}),
    )
    .ok(201);
    let before = read_all(&fhir);
    let referring = before
        .iter()
        .filter(|((resource_type, id), resource)| {
            !(resource_type == "Patient" && *id == source) && refers_to(resource, &source)
        })
        .count();
    assert!(referring > 20, "{referring}");

    // Bad input changes nothing.
    let unchanged = versions(&before);
    let bad = [
        (merge_input(&source, &source), 422, "same Patient"),
        (merge_input(&source, "nobody"), 422, "no Patient/nobody"),
        (merge_input("nobody", &target), 422, "no Patient/nobody"),
        (
            parameters(vec![
                json!({"name": "target-patient", "valueReference": {"reference": format!("Patient/{target}")}}),
            ]),
            400,
            "source",
        ),
        (
            parameters(vec![
                json!({"name": "source-patient", "valueReference": {"reference": "Observation/1"}}),
                json!({"name": "target-patient", "valueReference": {"reference": format!("Patient/{target}")}}),
            ]),
            422,
            "Patient",
        ),
        (json!({"resourceType": "Patient"}), 400, "Parameters"),
    ];
    for (input, status, message) in &bad {
        let reply = fhir.post("Patient/$merge", input);
        let diagnostics = reply.outcome(*status);
        assert!(diagnostics.contains(message), "{diagnostics}");
    }
    // A preview changes nothing either.
    let mut preview = merge_input(&source, &target);
    preview["parameter"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "preview", "valueBoolean": true}));
    let previewed = fhir.post("Patient/$merge", &preview).ok(200);
    assert!(
        previewed["parameter"][1]["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains(&format!("would repoint {referring} resources"))
    );
    assert_eq!(versions(&read_all(&fhir)), unchanged);

    // The merge.
    let merged = fhir
        .post("Patient/$merge", &merge_input(&source, &target))
        .ok(200);
    let names: Vec<&str> = merged["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["input", "outcome", "result", "provenance"]);
    let provenance_ref = merged["parameter"][3]["valueReference"]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    let after = read_all(&fhir);
    for ((resource_type, id), resource) in &after {
        let merge_record = resource_type == "AuditEvent"
            || (resource_type == "Provenance"
                && resource["activity"]["coding"][0]["code"] == "merge");
        if merge_record || (resource_type == "Patient" && *id == target) {
            continue;
        }
        if resource_type == "Patient" && *id == source {
            continue;
        }
        assert!(
            !refers_to(resource, &source),
            "{resource_type}/{id} still refers to the source"
        );
    }
    let now_target = after
        .iter()
        .filter(|(_, resource)| refers_to(resource, &target))
        .count();
    assert!(now_target >= referring);
    let source_after = &after[&("Patient".to_string(), source.clone())];
    assert_eq!(source_after["active"], false);
    assert_eq!(source_after["link"][0]["type"], "replaced-by");
    assert_eq!(
        source_after["link"][0]["other"]["reference"],
        format!("Patient/{target}")
    );
    let target_after = &after[&("Patient".to_string(), target.clone())];
    assert_eq!(target_after["link"][0]["type"], "replaces");
    assert_eq!(
        target_after["link"][0]["other"]["reference"],
        format!("Patient/{source}")
    );
    // The other patient's records are untouched.
    assert_eq!(
        content(&after[&("Patient".to_string(), other.clone())]),
        content(&before[&("Patient".to_string(), other)])
    );
    let provenance = fhir.get(&provenance_ref).ok(200);
    assert_eq!(provenance["activity"]["coding"][0]["code"], "merge");
    assert_eq!(
        provenance["target"].as_array().unwrap().len(),
        referring + 2
    );
    // The merge's own AuditEvent is on the audit trail, beside the records of the
    // requests and writes that touched the source.
    let audits = fhir.search(&format!(
        "AuditEvent?entity=Patient/{source}&subtype=operation"
    ));
    let audits = entries(&audits);
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0]["resource"]["type"]["code"], "rest");
    assert_eq!(audits[0]["resource"]["subtype"][0]["code"], "merge");
    // $match no longer offers the merged-away source.
    let found = fhir
        .post(
            "Patient/$match",
            &match_input(
                &copy_of(&before[&("Patient".to_string(), source.clone())], true),
                vec![],
            ),
        )
        .ok(200);
    assert!(
        entries(&found)
            .iter()
            .all(|entry| entry["resource"]["id"] != source.as_str())
    );

    // Merging the merged source again is refused and changes nothing.
    let unchanged = versions(&after);
    let again = fhir.post("Patient/$merge", &merge_input(&source, &target));
    assert!(again.outcome(422).contains("already been merged"));
    assert_eq!(versions(&read_all(&fhir)), unchanged);

    // Unmerge: everything is back as it was.
    let unmerged = fhir.post(
        "Patient/$unmerge",
        &parameters(vec![
            json!({"name": "source-patient", "valueReference": {"reference": format!("Patient/{source}")}}),
        ]),
    );
    unmerged.ok(200);
    let restored = read_all(&fhir);
    for (key, resource) in &before {
        assert_eq!(
            content(&restored[key]),
            content(resource),
            "{}/{} differs after the unmerge",
            key.0,
            key.1
        );
    }
    let added: Vec<&Key> = restored
        .keys()
        .filter(|key| !before.contains_key(*key))
        .collect();
    // The AuditEvents of the merge and the unmerge are on the audit trail, not stored
    // as resources.
    assert!(
        added
            .iter()
            .all(|(resource_type, _)| resource_type == "Provenance"),
        "{added:?}"
    );
    assert_eq!(added.len(), 2, "{added:?}");
    let audits = fhir.search(&format!(
        "AuditEvent?entity=Patient/{source}&subtype=operation"
    ));
    assert_eq!(entries(&audits).len(), 2);
    let again = fhir.post(
        "Patient/$unmerge",
        &parameters(vec![
            json!({"name": "source-patient", "valueReference": {"reference": format!("Patient/{source}")}}),
        ]),
    );
    assert!(again.outcome(422).contains("not merged"));
}

#[test]
fn merge_finds_patients_by_identifier_and_takes_a_result_patient() {
    let fhir = Fhir::start();
    let patient = |id: &str, mrn: &str| {
        json!({
            "resourceType": "Patient",
            "id": id,
            "identifier": [{"system": "urn:example:mrn", "value": mrn}],
            "name": [{"family": "Chalmers", "given": ["Peter"]}],
            "birthDate": "1974-12-25"
        })
    };
    fhir.store(patient("old", "A-1"));
    fhir.store(patient("kept", "B-2"));
    fhir.store(json!({
        "resourceType": "Observation",
        "id": "obs",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": "Patient/old"}
    }));
    let by_identifier = |role: &str, value: &str| json!({"name": format!("{role}-patient-identifier"), "valueIdentifier": {"system": "urn:example:mrn", "value": value}});
    let mut result = patient("kept", "B-2");
    result["telecom"] = json!([{"system": "phone", "value": "555-0100"}]);

    // The result patient must be the target.
    let mut wrong = result.clone();
    wrong["id"] = json!("old");
    let refused = fhir.post(
        "Patient/$merge",
        &parameters(vec![
            by_identifier("source", "A-1"),
            by_identifier("target", "B-2"),
            json!({"name": "result-patient", "resource": wrong}),
        ]),
    );
    assert!(refused.outcome(422).contains("target's id"));
    let unknown = fhir.post(
        "Patient/$merge",
        &parameters(vec![
            by_identifier("source", "Z-9"),
            by_identifier("target", "B-2"),
        ]),
    );
    assert!(unknown.outcome(422).contains("source-patient-identifier"));
    let delete_source = fhir.post(
        "Patient/$merge",
        &parameters(vec![
            by_identifier("source", "A-1"),
            by_identifier("target", "B-2"),
            json!({"name": "delete-source", "valueBoolean": true}),
        ]),
    );
    assert!(delete_source.outcome(422).contains("delete-source"));

    let merged = fhir
        .post(
            "Patient/$merge",
            &parameters(vec![
                by_identifier("source", "A-1"),
                by_identifier("target", "B-2"),
                json!({"name": "result-patient", "resource": result}),
            ]),
        )
        .ok(200);
    let target = &merged["parameter"][2]["resource"];
    assert_eq!(target["id"], "kept");
    assert_eq!(target["telecom"][0]["value"], "555-0100");
    assert_eq!(target["link"][0]["other"]["reference"], "Patient/old");
    let observation = fhir.get("Observation/obs").ok(200);
    assert_eq!(observation["subject"]["reference"], "Patient/kept");
    let source = fhir.get("Patient/old").ok(200);
    assert_eq!(source["active"], false);
    // The target cannot now be merged into the merged-away source.
    let backwards = fhir.post("Patient/$merge", &merge_input("kept", "old"));
    assert!(backwards.outcome(422).contains("already been merged"));
}

/// The ids of the stored Patients that `$match` grades certain or probable for `patient`.
fn strong_matches(fhir: &Fhir, patient: &Value) -> Vec<String> {
    let bundle = fhir
        .post("Patient/$match", &match_input(patient, vec![]))
        .ok(200);
    entries(&bundle)
        .iter()
        .filter(|entry| matches!(grade_of(entry).as_str(), "certain" | "probable"))
        .map(|entry| entry["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn u_measured_on_the_stored_patients_keeps_strangers_apart() {
    let Some(folder) = testdata("synthea/synthea-100") else {
        return;
    };
    let fhir = Fhir::start();
    let bundles = patient_bundles(&folder);
    let patients: Vec<Value> = bundles.iter().map(|path| patient_of(path)).collect();
    for patient in &patients {
        fhir.store(patient.clone());
    }
    // Other people, to reach the 200 at which u is measured: every name, birth year and
    // SSN another's, each living at one of the first hundred's addresses.
    for (index, patient) in patients.iter().enumerate() {
        let other = &patients[(index * 37 + 11) % patients.len()];
        let mut stranger = patient.clone();
        stranger["id"] = json!(format!("other-{index}"));
        stranger["name"] = json!([{"family": other["name"][0]["family"], "given": patients[(index * 53 + 5) % patients.len()]["name"][0]["given"]}]);
        let birth = patient["birthDate"].as_str().unwrap();
        let year: u32 = birth[0..4].parse().unwrap();
        stranger["birthDate"] = json!(format!("{}{}", year - 7 - (index as u32 % 20), &birth[4..]));
        stranger["identifier"] = json!([{"system": "http://hl7.org/fhir/sid/us-ssn", "value": format!("999-77-{index:04}")}]);
        stranger.as_object_mut().unwrap().remove("telecom");
        fhir.store(stranger);
    }
    // Each of the first hundred finds itself, and no other of them, as a strong match.
    for patient in &patients {
        let id = patient["id"].as_str().unwrap();
        let mut query = patient.clone();
        query.as_object_mut().unwrap().remove("id");
        let found = strong_matches(&fhir, &query);
        assert_eq!(found.first().map(String::as_str), Some(id));
        let others: Vec<&String> = found
            .iter()
            .skip(1)
            .filter(|other| !other.starts_with("other-"))
            .collect();
        assert!(
            others.is_empty(),
            "Patient/{id} strongly matches {others:?}"
        );
    }
}
