//! The terminology service and `Encounter/$drg` over HTTP: `CodeSystem/$lookup`,
//! `$validate-code`, `$subsumes`, `ValueSet/$expand` on ICD-10-CM and ICD-10-PCS, the
//! built-in CodeSystem resources, and grouping an encounter built here, compared with
//! the library grouper's answer for the same claim.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use coding::drg::Sex;
use coding::{Claim, ClaimDiagnosis};
use common::fhir::{Fhir, entries};
use serde_json::{Value, json};

const CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const PCS: &str = "http://www.cms.gov/Medicare/Coding/ICD10";

/// The values of the output parameters called `name`.
fn values<'a>(parameters: &'a Value, name: &str) -> Vec<&'a Value> {
    parameters["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == name)
        .collect()
}

/// The one value (`value[x]`) of the parameter `name`.
fn value(parameters: &Value, name: &str) -> Value {
    let found = values(parameters, name);
    assert_eq!(found.len(), 1, "one {name:?} in {parameters}");
    part_value(found[0])
}

fn part_value(parameter: &Value) -> Value {
    parameter
        .as_object()
        .unwrap()
        .iter()
        .find(|(key, _)| key.starts_with("value"))
        .map(|(_, value)| value.clone())
        .unwrap_or(Value::Null)
}

/// The value of the part `name` of a parameter made of parts.
fn part(parameter: &Value, name: &str) -> Value {
    parameter["part"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(part_value)
        .unwrap_or(Value::Null)
}

/// `$lookup` properties as (code, value, description).
fn properties(parameters: &Value) -> Vec<(String, Value, Value)> {
    values(parameters, "property")
        .into_iter()
        .map(|p| {
            (
                part(p, "code").as_str().unwrap().to_string(),
                part(p, "value"),
                part(p, "description"),
            )
        })
        .collect()
}

fn property_values(parameters: &Value, code: &str) -> Vec<Value> {
    properties(parameters)
        .into_iter()
        .filter(|(c, _, _)| c == code)
        .map(|(_, v, _)| v)
        .collect()
}

#[test]
fn code_systems_are_served_built_in() {
    let fhir = Fhir::start();
    let cm = fhir.get("CodeSystem/icd-10-cm").ok(200);
    assert_eq!(cm["url"], CM);
    assert_eq!(cm["content"], "not-present");
    assert_eq!(cm["version"], "2026");
    assert!(
        cm["property"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == "parent")
    );
    let bundle = fhir.search(&format!("CodeSystem?url={PCS}"));
    assert_eq!(bundle["total"], 1);
    assert_eq!(entries(&bundle)[0]["resource"]["id"], "icd-10-pcs");
    assert_eq!(entries(&bundle)[0]["resource"]["name"], "ICD10PCS");
    let none = fhir.search(&format!("CodeSystem?url={CM}&version=2019"));
    assert_eq!(none["total"], 0);

    let capability = fhir.get("metadata").ok(200);
    let operations = |resource_type: &str| -> Vec<String> {
        capability["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == resource_type)
            .unwrap()["operation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    for name in ["lookup", "validate-code", "subsumes"] {
        assert!(
            operations("CodeSystem").contains(&name.to_string()),
            "{name}"
        );
    }
    assert!(operations("ValueSet").contains(&"expand".to_string()));
    assert!(operations("Encounter").contains(&"drg".to_string()));
}

#[test]
fn lookup_gives_display_hierarchy_notes_and_axes() {
    let fhir = Fhir::start();
    let found = fhir
        .get(&format!("CodeSystem/$lookup?system={CM}&code=I50.21"))
        .ok(200);
    assert_eq!(found["resourceType"], "Parameters");
    assert_eq!(value(&found, "name"), "ICD-10-CM");
    assert_eq!(value(&found, "version"), "2026");
    assert_eq!(
        value(&found, "display"),
        "Acute systolic (congestive) heart failure"
    );
    assert_eq!(property_values(&found, "parent"), vec![json!("I50.2")]);
    assert_eq!(property_values(&found, "billable"), vec![json!(true)]);
    assert_eq!(property_values(&found, "kind"), vec![json!("billable")]);
    assert_eq!(
        property_values(&found, "validFrom"),
        vec![json!("2025-10-01")]
    );
    assert_eq!(
        property_values(&found, "validTo"),
        vec![json!("2026-09-30")]
    );
    // Notes of the category (and chapter) apply to its codes, and say where they come from.
    let inherited: Vec<_> = properties(&found)
        .into_iter()
        .filter(|(c, _, _)| c == "codeFirst" || c == "excludes2" || c == "codeAlso")
        .collect();
    assert!(
        inherited
            .iter()
            .all(|(_, _, d)| d.as_str().unwrap().starts_with("from ")),
        "{found}"
    );
    let from = |code: &str, text: &str| {
        inherited.iter().any(|(c, v, d)| {
            c == code && v.as_str().unwrap().contains(text) && d.as_str().unwrap() == "from I50"
        })
    };
    assert!(from("codeFirst", "(I11.0)"), "{found}");
    assert!(
        inherited
            .iter()
            .any(|(c, _, d)| c == "codeAlso" && d == "from I50.2")
    );
    assert!(
        inherited
            .iter()
            .any(|(c, _, d)| c == "excludes2" && d == "from 9")
    );

    // A header: children, not billable; `property` narrows the answer.
    let header = fhir
        .get(&format!(
            "CodeSystem/$lookup?system={CM}&code=I50.2&property=child,billable"
        ))
        .ok(200);
    assert_eq!(
        property_values(&header, "child"),
        vec![
            json!("I50.20"),
            json!("I50.21"),
            json!("I50.22"),
            json!("I50.23")
        ]
    );
    assert_eq!(property_values(&header, "billable"), vec![json!(false)]);
    assert!(property_values(&header, "parent").is_empty());

    // 7th characters, and POST with a Coding.
    let injury = fhir
        .post(
            "CodeSystem/$lookup",
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "coding", "valueCoding": {"system": CM, "code": "S72.001"}},
                {"name": "property", "valueCode": "seventhCharacter"},
            ]}),
        )
        .ok(200);
    let sevenths = properties(&injury);
    assert!(
        sevenths
            .iter()
            .any(|(_, v, d)| v == "A" && d.as_str().unwrap().contains("initial")),
        "{injury}"
    );

    // ICD-10-PCS: the meaning of each character.
    let procedure = fhir
        .get(&format!("CodeSystem/$lookup?system={PCS}&code=0DTJ4ZZ"))
        .ok(200);
    assert_eq!(
        value(&procedure, "display"),
        "Resection of Appendix, Percutaneous Endoscopic Approach"
    );
    let axes = properties(&procedure);
    let axis = |code: &str| axes.iter().find(|(c, _, _)| c == code).unwrap().clone();
    assert_eq!(axis("rootOperation").1, "T");
    assert!(
        axis("rootOperation")
            .2
            .as_str()
            .unwrap()
            .starts_with("Resection")
    );
    assert_eq!(axis("bodyPart").2, "Appendix");
    assert_eq!(axis("approach").2, "Percutaneous Endoscopic");
}

fn validate(fhir: &Fhir, query: &str) -> (bool, String, Value) {
    let reply = fhir
        .get(&format!("CodeSystem/$validate-code?{query}"))
        .ok(200);
    let message = values(&reply, "message")
        .first()
        .map(|p| part_value(p).as_str().unwrap().to_string())
        .unwrap_or_default();
    let display = values(&reply, "display")
        .first()
        .map(|p| part_value(p))
        .unwrap_or(Value::Null);
    (value(&reply, "result").as_bool().unwrap(), message, display)
}

#[test]
fn validate_code_tells_billable_from_header_invalid_and_out_of_date() {
    let fhir = Fhir::start();
    let (ok, message, display) = validate(&fhir, &format!("url={CM}&code=I50.21&date=2026-04-15"));
    assert!(ok, "{message}");
    assert!(message.is_empty(), "{message}");
    assert_eq!(display, "Acute systolic (congestive) heart failure");

    let (ok, message, _) = validate(&fhir, &format!("url={CM}&code=I50.2"));
    assert!(!ok);
    assert!(message.contains("header"), "{message}");
    assert!(message.contains("4 billable codes"), "{message}");
    // A header where abstract codes are allowed.
    let (ok, message, _) = validate(&fhir, &format!("url={CM}&code=I50.2&abstract=true"));
    assert!(ok);
    assert!(message.contains("header"), "{message}");

    let (ok, message, _) = validate(&fhir, &format!("url={CM}&code=I50.99"));
    assert!(!ok);
    assert!(message.contains("not a code"), "{message}");

    let (ok, message, _) = validate(&fhir, &format!("url={CM}&code=I50.21&date=2024-05-01"));
    assert!(!ok);
    assert!(message.contains("2025-10-01"), "{message}");

    // A wrong display is a warning, not a failure.
    let (ok, message, _) = validate(
        &fhir,
        &format!("url={CM}&code=I50.21&display=Broken%20heart"),
    );
    assert!(ok);
    assert!(message.starts_with("Warning"), "{message}");
    let (ok, message, _) = validate(
        &fhir,
        &format!("url={CM}&code=I50.21&display=acute%20SYSTOLIC%20(congestive)%20heart%20failure"),
    );
    assert!(ok && message.is_empty(), "{message}");

    let (ok, _, _) = validate(&fhir, &format!("url={PCS}&code=0DTJ4ZZ"));
    assert!(ok);

    // ValueSet level: in or out of an isa value set.
    let in_set = fhir
        .post(
            "ValueSet/$validate-code",
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "url", "valueUri": format!("{CM}?fhir_vs=isa/I50")},
                {"name": "coding", "valueCoding": {"system": CM, "code": "I50.21"}},
            ]}),
        )
        .ok(200);
    assert_eq!(value(&in_set, "result"), true);
    let out_of_set = fhir
        .get(&format!(
            "ValueSet/$validate-code?url={CM}%3Ffhir_vs%3Disa/I50&system={CM}&code=I10"
        ))
        .ok(200);
    assert_eq!(value(&out_of_set, "result"), false);
    assert!(
        value(&out_of_set, "message")
            .as_str()
            .unwrap()
            .contains("not in the value set")
    );
}

#[test]
fn subsumes_has_four_outcomes() {
    let fhir = Fhir::start();
    let outcome = |a: &str, b: &str| {
        let reply = fhir
            .get(&format!(
                "CodeSystem/$subsumes?system={CM}&codeA={a}&codeB={b}"
            ))
            .ok(200);
        value(&reply, "outcome").as_str().unwrap().to_string()
    };
    assert_eq!(outcome("I50.21", "I5021"), "equivalent");
    assert_eq!(outcome("I50", "I50.21"), "subsumes");
    assert_eq!(outcome("I50.21", "I50.2"), "subsumed-by");
    assert_eq!(outcome("I50.21", "I10"), "not-subsumed");
    // Blocks and chapters are above their codes too; codings work as well.
    let reply = fhir
        .post(
            "CodeSystem/$subsumes",
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "codingA", "valueCoding": {"system": CM, "code": "I30-I5A"}},
                {"name": "codingB", "valueCoding": {"system": CM, "code": "I50.21"}},
            ]}),
        )
        .ok(200);
    assert_eq!(value(&reply, "outcome"), "subsumes");
}

fn expand(fhir: &Fhir, query: &str) -> Value {
    let reply = fhir.get(&format!("ValueSet/$expand?{query}"));
    let expanded = reply.ok(200);
    assert_eq!(expanded["resourceType"], "ValueSet", "{}", reply.text);
    expanded
}

fn codes(expanded: &Value) -> Vec<String> {
    expanded["expansion"]["contains"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|c| c["code"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn expand_filter_ranks_systolic_heart_failure_first() {
    let fhir = Fhir::start();
    for filter in ["chf", "heart%20failure%20systolic"] {
        let expanded = expand(
            &fhir,
            &format!("url={CM}%3Ffhir_vs&filter={filter}&count=5"),
        );
        let found = codes(&expanded);
        assert!(found.len() == 5, "{filter}: {found:?}");
        assert!(found[0].starts_with("I50.2"), "{filter}: {found:?}");
        let total = expanded["expansion"]["total"].as_u64().unwrap();
        assert!(total >= 5, "{filter}: {total}");
        let used = expanded["expansion"]["parameter"].as_array().unwrap();
        assert!(used.iter().any(|p| p["name"] == "filter"));
        assert!(
            used.iter()
                .any(|p| p["name"] == "count" && p["valueInteger"] == 5)
        );
    }
    let systolic = expand(
        &fhir,
        &format!("url={CM}%3Ffhir_vs&filter=heart%20failure%20systolic&count=4"),
    );
    let mut first: Vec<String> = codes(&systolic);
    first.sort();
    assert!(first.iter().all(|c| c.starts_with("I50.2")), "{first:?}");

    // PCS too.
    let appendix = expand(
        &fhir,
        &format!("url={PCS}%3Ffhir_vs&filter=resection%20appendix&count=3"),
    );
    assert!(
        codes(&appendix).contains(&"0DTJ4ZZ".to_string()),
        "{appendix}"
    );
}

#[test]
fn expand_isa_value_sets_page_and_carry_designations() {
    let fhir = Fhir::start();
    let all = expand(&fhir, &format!("url={CM}%3Ffhir_vs%3Disa/I50.2"));
    assert_eq!(all["expansion"]["total"], 5);
    assert_eq!(
        codes(&all),
        vec!["I50.2", "I50.20", "I50.21", "I50.22", "I50.23"]
    );
    // The header is abstract: not valid on a claim.
    assert_eq!(all["expansion"]["contains"][0]["abstract"], true);
    assert!(all["expansion"]["contains"][1].get("abstract").is_none());

    let category = expand(
        &fhir,
        &format!("url={CM}%3Ffhir_vs%3Disa/I50&count=4&offset=0"),
    );
    let total = category["expansion"]["total"].as_u64().unwrap();
    assert!(total > 20, "{total}");
    let mut paged = Vec::new();
    let mut offset = 0;
    while offset < total as usize {
        let page = expand(
            &fhir,
            &format!("url={CM}%3Ffhir_vs%3Disa/I50&count=7&offset={offset}"),
        );
        assert_eq!(page["expansion"]["offset"], offset);
        paged.extend(codes(&page));
        offset += 7;
    }
    let whole = expand(&fhir, &format!("url={CM}%3Ffhir_vs%3Disa/I50&count=1000"));
    assert_eq!(paged, codes(&whole));
    assert_eq!(paged.len() as u64, total);
    assert_eq!(paged[0], "I50");

    // A filter within an isa value set keeps to it.
    let acute = expand(&fhir, &format!("url={CM}%3Ffhir_vs%3Disa/I50&filter=acute"));
    assert!(
        codes(&acute).iter().all(|c| c.starts_with("I50")),
        "{acute}"
    );
    assert!(!codes(&acute).is_empty());

    // Inclusion terms as designations.
    let with = expand(
        &fhir,
        &format!("url={CM}%3Ffhir_vs%3Disa/I50.2&includeDesignations=true"),
    );
    let designations = with["expansion"]["contains"][0]["designation"]
        .as_array()
        .unwrap();
    assert!(
        designations
            .iter()
            .any(|d| d["value"] == "Systolic left ventricular heart failure"),
        "{with}"
    );
    let without = expand(&fhir, &format!("url={CM}%3Ffhir_vs%3Disa/I50.2"));
    assert!(
        without["expansion"]["contains"][0]
            .get("designation")
            .is_none()
    );

    // ICD-10-PCS: isa takes a table's first characters.
    let excisions = expand(&fhir, &format!("url={PCS}%3Ffhir_vs%3Disa/0DTJ&count=1000"));
    assert!(codes(&excisions).iter().all(|c| c.starts_with("0DTJ")));
    assert!(codes(&excisions).contains(&"0DTJ4ZZ".to_string()));
}

#[test]
fn bad_requests_get_operation_outcomes() {
    let fhir = Fhir::start();
    let unknown_system = fhir.get("CodeSystem/$lookup?system=http://loinc.org&code=1234-5");
    assert!(unknown_system.outcome(404).contains("not known"));
    let unknown_code = fhir.get(&format!("CodeSystem/$lookup?system={CM}&code=Q99.999"));
    assert!(unknown_code.outcome(404).contains("not a code"));
    let missing = fhir.get(&format!("CodeSystem/$lookup?system={CM}"));
    assert!(missing.outcome(400).contains("\"code\""));
    let no_system = fhir.get("CodeSystem/$lookup?code=I10");
    assert!(no_system.outcome(400).contains("\"system\""));
    let unknown_parameter = fhir.get(&format!(
        "CodeSystem/$lookup?system={CM}&code=I10&colour=red"
    ));
    assert!(unknown_parameter.outcome(400).contains("colour"));
    let wrong_type = fhir.get(&format!("Patient/$lookup?system={CM}&code=I10"));
    assert!(wrong_type.outcome(404).contains("CodeSystem"));
    let unknown_version = fhir.get(&format!(
        "CodeSystem/$lookup?system={CM}&code=I10&version=2019"
    ));
    assert!(unknown_version.outcome(404).contains("2019"));
    let no_url = fhir.get("ValueSet/$expand?filter=chf");
    assert!(no_url.outcome(400).contains("url"));
    let unknown_set = fhir.get("ValueSet/$expand?url=http://example.org/vs");
    assert!(unknown_set.outcome(404).contains("not known"));
    let bad_isa = fhir.get(&format!("ValueSet/$expand?url={CM}%3Ffhir_vs%3Disa/ZZZ"));
    assert!(bad_isa.outcome(404).contains("ZZZ"));
    let bad_count = fhir.get(&format!("ValueSet/$expand?url={CM}%3Ffhir_vs&count=many"));
    assert!(bad_count.outcome(400).contains("count"));
    let subsumes_unknown = fhir.get(&format!(
        "CodeSystem/$subsumes?system={CM}&codeA=I10&codeB=ZZ9"
    ));
    assert!(subsumes_unknown.outcome(404).contains("ZZ9"));
    let not_parameters = fhir.post("CodeSystem/$lookup", &json!({"resourceType": "Patient"}));
    assert!(not_parameters.outcome(400).contains("Parameters"));
}

/// An inpatient stay: NSTEMI with a coronary stent, acute systolic heart failure (an
/// MCC), type 2 diabetes, an admission diagnosis that is not grouped, discharged to a
/// skilled nursing facility.
fn store_stay(fhir: &Fhir) {
    fhir.store(
        json!({"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-07-14"}),
    );
    let condition = |id: &str, system: &str, code: &str| {
        json!({"resourceType": "Condition", "id": id, "subject": {"reference": "Patient/p1"},
               "code": {"coding": [{"system": system, "code": code}]}})
    };
    fhir.store(condition("nstemi", CM, "I21.4"));
    fhir.store(condition("hf", CM, "I50.21"));
    fhir.store(condition("dm", CM, "E11.9"));
    fhir.store(condition("chest-pain", CM, "R07.9"));
    fhir.store(condition(
        "snomed-only",
        "http://snomed.info/sct",
        "44054006",
    ));
    let poa = |code: &str| {
        json!([{"url": "http://hl7.org/fhir/us/qicore/StructureDefinition/qicore-encounter-diagnosisPresentOnAdmission",
                "valueCodeableConcept": {"coding": [{"system": "https://www.cms.gov/Medicare/Medicare-Fee-for-Service-Payment/HospitalAcqCond/Coding", "code": code}]}}])
    };
    let diagnosis = |condition: &str, rank: u32, use_code: &str, poa_code: &str| {
        json!({"extension": poa(poa_code), "condition": {"reference": format!("Condition/{condition}")}, "rank": rank,
               "use": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/diagnosis-role", "code": use_code}]}})
    };
    fhir.store(json!({
        "resourceType": "Encounter", "id": "stay", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-03-02T10:00:00Z", "end": "2026-03-06T12:00:00Z"},
        "diagnosis": [
            diagnosis("dm", 2, "billing", "Y"),
            diagnosis("chest-pain", 1, "AD", "Y"),
            diagnosis("nstemi", 1, "billing", "Y"),
            diagnosis("hf", 3, "billing", "N"),
            diagnosis("snomed-only", 4, "billing", "Y"),
        ],
        "hospitalization": {"dischargeDisposition": {"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": "snf"}]}},
    }));
    let procedure = |id: &str, code: &str, when: &str| {
        json!({"resourceType": "Procedure", "id": id, "status": "completed",
               "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/stay"},
               "performedDateTime": when,
               "code": {"coding": [{"system": PCS, "code": code}]}})
    };
    fhir.store(procedure("stent", "02703DZ", "2026-03-03T14:00:00Z"));
    fhir.store(procedure("echo", "B246ZZZ", "2026-03-02T09:00:00Z"));
    let mut not_done = procedure("cancelled", "0DTJ4ZZ", "2026-03-04T09:00:00Z");
    not_done["status"] = json!("not-done");
    fhir.store(not_done);
}

#[test]
fn drg_groups_an_encounter_like_the_library_grouper() {
    let fhir = Fhir::start();
    store_stay(&fhir);
    let reply = fhir.get("Encounter/stay/$drg");
    let answer = reply.ok(200);
    assert_eq!(answer["resourceType"], "Parameters");

    let claim = Claim {
        pdx: "I21.4".into(),
        pdx_poa: Some("Y".into()),
        sdx: vec![
            ClaimDiagnosis {
                code: "E11.9".into(),
                poa: Some("Y".into()),
            },
            ClaimDiagnosis {
                code: "I50.21".into(),
                poa: Some("N".into()),
            },
        ],
        procedures: vec!["B246ZZZ".into(), "02703DZ".into()],
        age: 75,
        sex: Sex::Male,
        discharge_status: 3,
        ..Claim::default()
    };
    let expected = coding::grouper().group(&claim);
    let grouping = |name: &str| values(&answer, name)[0].clone();
    assert_eq!(
        part(&grouping("initial"), "drg"),
        format!("{:03}", expected.initial_drg)
    );
    assert_eq!(
        part(&grouping("final"), "drg"),
        format!("{:03}", expected.final_drg)
    );
    assert_eq!(
        part(&grouping("final"), "mdc"),
        format!("{:02}", expected.final_mdc)
    );
    assert_eq!(part(&grouping("final"), "mdc"), "05");
    assert_eq!(value(&answer, "returnCode"), expected.return_code.name());
    assert_eq!(value(&answer, "weight").as_f64(), expected.weight);

    let patient = values(&answer, "patient")[0].clone();
    assert_eq!(part(&patient, "age"), 75);
    assert_eq!(part(&patient, "sex"), "M");
    assert_eq!(part(&patient, "dischargeStatus"), "03");

    let diagnoses = values(&answer, "diagnosis");
    let listed: Vec<(Value, Value, Value)> = diagnoses
        .iter()
        .map(|d| {
            (
                part(d, "code")["code"].clone(),
                part(d, "role"),
                part(d, "poa"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (json!("I21.4"), json!("principal"), json!("Y")),
            (json!("E11.9"), json!("secondary"), json!("Y")),
            (json!("I50.21"), json!("secondary"), json!("N")),
        ]
    );
    // Each diagnosis carries the library's severity and impact for its code (the
    // grouper lists codes most significant first; the answer keeps the ranks' order).
    let by_code: Vec<(String, Value, Value)> = std::iter::once(&expected.pdx)
        .chain(&expected.sdx)
        .map(|d| {
            (
                d.code.clone(),
                serde_json::to_value(d.severity).unwrap(),
                serde_json::to_value(d.drg_impact).unwrap(),
            )
        })
        .collect();
    for diagnosis in &diagnoses {
        let code = coding::normalize_code(part(diagnosis, "code")["code"].as_str().unwrap());
        let (_, severity, impact) = by_code.iter().find(|(c, _, _)| *c == code).unwrap();
        assert_eq!(&part(diagnosis, "severity"), severity, "{code}");
        assert_eq!(&part(diagnosis, "drgImpact"), impact, "{code}");
    }
    assert_eq!(part(diagnoses[2], "condition")["reference"], "Condition/hf");
    assert_eq!(part(diagnoses[2], "severity"), "MCC");

    let procedures = values(&answer, "procedure");
    let listed: Vec<(Value, Value)> = procedures
        .iter()
        .map(|p| {
            (
                part(p, "code")["code"].clone(),
                part(p, "procedure")["reference"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (json!("B246ZZZ"), json!("Procedure/echo")),
            (json!("02703DZ"), json!("Procedure/stent")),
        ]
    );
    for procedure in &procedures {
        let code = part(procedure, "code")["code"]
            .as_str()
            .unwrap()
            .to_string();
        let found = expected.procedures.iter().find(|p| p.code == code).unwrap();
        assert_eq!(
            part(procedure, "operatingRoom"),
            json!(found.is_or),
            "{code}"
        );
        assert_eq!(
            part(procedure, "drgImpact"),
            serde_json::to_value(found.drg_impact).unwrap(),
            "{code}"
        );
    }

    let edits = coding::mce().edit(&claim, coding::Date::parse("2026-03-06").unwrap());
    let mce = values(&answer, "mce")[0].clone();
    assert_eq!(
        part(&mce, "editType"),
        serde_json::to_value(edits.edit_type).unwrap()
    );

    // POST with no parameters is the same operation.
    let posted = fhir
        .post(
            "Encounter/stay/$drg",
            &json!({"resourceType": "Parameters"}),
        )
        .ok(200);
    assert_eq!(posted["parameter"], answer["parameter"]);
}

#[test]
fn drg_refuses_what_cannot_be_grouped() {
    let fhir = Fhir::start();
    assert!(
        fhir.get("Encounter/nowhere/$drg")
            .outcome(404)
            .contains("nowhere")
    );
    fhir.store(
        json!({"resourceType": "Patient", "id": "p2", "gender": "female", "birthDate": "1980"}),
    );
    fhir.store(json!({
        "resourceType": "Encounter", "id": "uncoded", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p2"},
        "period": {"start": "2026-03-02"},
    }));
    let message = fhir.get("Encounter/uncoded/$drg").outcome(422);
    assert!(
        message.contains("no ICD-10-CM coded diagnoses"),
        "{message}"
    );
    assert!(
        fhir.get("Patient/p2/$drg")
            .outcome(404)
            .contains("Encounter")
    );
    assert!(
        fhir.get("Encounter/uncoded/$drg?x=1")
            .outcome(400)
            .contains("\"x\"")
    );
}
