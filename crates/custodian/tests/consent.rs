//! Confidentiality through the real server: resources labelled R, V or with a
//! sensitivity code, and the data a patient's Consent denies, are invisible on every
//! read path (read, vread, search and its paging and totals, chains, `_has`,
//! `_include`, `_revinclude`, compartment search, history, `$everything`, `$export`,
//! batch entries) to a principal without the permission; break-the-glass opens one
//! patient's data to a clinician for a while; and a token limited to one patient
//! writes only in its compartment.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::TestServer;
use common::fhir::{Fhir, Reply, entries, ids, link, typed};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A server with tokens on, and the key to sign them.
struct Secure {
    fhir: Fhir,
    signing_key: EncodingKey,
    data: std::path::PathBuf,
    key_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Secure {
    fn start() -> Secure {
        use p256::pkcs8::EncodePrivateKey;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        let key = p256::ecdsa::SigningKey::from_slice(&bytes).unwrap();
        let pem = key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let path = dir.path().join("signing-key.pem");
        std::fs::write(&path, pem.as_bytes()).unwrap();
        let server = TestServer::start_secure_in(&data, &["--signing-key", path.to_str().unwrap()]);
        Secure {
            fhir: Fhir::on(server),
            signing_key: EncodingKey::from_ec_der(der.as_bytes()),
            data,
            key_path: path,
            _dir: dir,
        }
    }

    /// The same server, stopped and started again on its database.
    fn restarted(self) -> Secure {
        let Secure {
            fhir,
            signing_key,
            data,
            key_path,
            _dir,
        } = self;
        drop(fhir);
        let server =
            TestServer::start_secure_in(&data, &["--signing-key", key_path.to_str().unwrap()]);
        Secure {
            fhir: Fhir::on(server),
            signing_key,
            data,
            key_path,
            _dir,
        }
    }

    /// A token for `subject` with `roles` and `scope` (and a patient context).
    fn token(&self, subject: &str, roles: &[&str], scope: &str, patient: Option<&str>) -> String {
        let mut claims = json!({
            "iss": self.fhir.server.origin,
            "sub": subject,
            "aud": self.fhir.base(),
            "exp": now() + 300,
            "iat": now(),
            "nbf": now(),
            "jti": format!("{subject}-{}", now()),
            "scope": scope,
            "client_id": subject,
            "roles": roles,
        });
        if let Some(patient) = patient {
            claims["patient"] = json!(patient);
        }
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.signing_key).unwrap()
    }

    fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let bearer = format!("Bearer {token}");
        let text = body.map(Value::to_string);
        let mut all = vec![("authorization", bearer.as_str())];
        if body.is_some() && !headers.iter().any(|(name, _)| *name == "content-type") {
            all.push(("content-type", "application/fhir+json"));
        }
        all.extend_from_slice(headers);
        self.fhir.request(method, path, &all, text.as_deref())
    }

    fn get(&self, token: &str, path: &str) -> Reply {
        self.call(token, "GET", path, &[], None)
    }

    fn put(&self, token: &str, resource: Value) {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let reply = self.call(token, "PUT", &path, &[], Some(&resource));
        assert!(
            matches!(reply.status, 200 | 201),
            "PUT {path}: {}",
            reply.text
        );
    }

    /// Every match of a search, following `next` links; and the first page's total.
    fn all_pages(&self, token: &str, path: &str) -> (Vec<String>, Option<u64>) {
        let first = self.get(token, path).ok(200);
        let total = first["total"].as_u64();
        let mut found = typed(&first, "match");
        let mut next = link(&first, "next");
        while let Some(url) = next {
            let page = self.get(token, &url).ok(200);
            found.extend(typed(&page, "match"));
            next = link(&page, "next");
        }
        found.sort();
        (found, total)
    }
}

fn labelled(id: &str, patient: &str, code: &str, label: Option<(&str, &str)>) -> Value {
    let mut observation = json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
    });
    if let Some((system, label)) = label {
        observation["meta"] = json!({"security": [{"system": system, "code": label}]});
    }
    observation
}

fn patient(id: &str, family: &str, label: Option<&str>) -> Value {
    let mut patient = json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]});
    if let Some(label) = label {
        patient["meta"] = json!({"security": [{"system": CONFIDENTIALITY, "code": label}]});
    }
    patient
}

/// p1 with a plain, an R, a V and an HIV Observation; p2 whose Consent denies its
/// Observations to everyone; p3, itself labelled R, with a plain Observation.
fn load(secure: &Secure, admin: &str) {
    secure.put(admin, patient("p1", "Plain", None));
    secure.put(admin, patient("p2", "Consenting", None));
    secure.put(admin, patient("p3", "Hidden", Some("R")));
    for observation in [
        labelled("o-plain", "p1", "c-plain", None),
        labelled("o-r", "p1", "c-r", Some((CONFIDENTIALITY, "R"))),
        labelled("o-v", "p1", "c-v", Some((CONFIDENTIALITY, "V"))),
        labelled("o-hiv", "p1", "c-hiv", Some((ACT_CODE, "HIV"))),
        labelled("o-p2", "p2", "c-p2", None),
        labelled("o-p3", "p3", "c-p3", None),
    ] {
        secure.put(admin, observation);
    }
    // A second version of the R Observation, for history.
    let mut again = labelled("o-r", "p1", "c-r", Some((CONFIDENTIALITY, "R")));
    again["status"] = json!("amended");
    secure.put(admin, again);
    secure.put(admin, deny_observations("c1", "p2", "active"));
}

fn deny_observations(id: &str, patient: &str, status: &str) -> Value {
    json!({
        "resourceType": "Consent", "id": id, "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": {"type": "deny",
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]},
    })
}

const HIDDEN_FROM_CLINICIAN: [&str; 4] = [
    "Observation/o-r",
    "Observation/o-v",
    "Observation/o-hiv",
    "Observation/o-p2",
];

fn assert_none_hidden(found: &[String], what: &str) {
    for hidden in HIDDEN_FROM_CLINICIAN.iter().chain(&["Patient/p3"]) {
        assert!(
            !found.iter().any(|id| id == hidden),
            "{what}: {hidden} leaked in {found:?}"
        );
    }
}

fn admin(secure: &Secure) -> String {
    secure.token("root", &["admin"], "system/*.cruds sensitive/*", None)
}

fn clinician(secure: &Secure, name: &str) -> String {
    secure.token(name, &["clinician"], "user/*.cruds", None)
}

#[test]
fn labels_and_a_consent_deny_hide_data_on_every_read_path() {
    let secure = Secure::start();
    let admin = admin(&secure);
    load(&secure, &admin);
    let doctor = clinician(&secure, "d1");

    // read and vread: not known.
    for hidden in HIDDEN_FROM_CLINICIAN.iter().chain(&["Patient/p3"]) {
        secure.get(&doctor, hidden).outcome(404);
        secure
            .get(&doctor, &format!("{hidden}/_history/1"))
            .outcome(404);
        secure
            .get(&doctor, &format!("{hidden}/_history"))
            .outcome(404);
    }
    secure.get(&doctor, "Observation/o-plain").ok(200);
    secure.get(&doctor, "Observation/o-p3").ok(200);
    let validate = |id: &str| {
        let path = format!("Observation/{id}/$validate?mode=delete");
        secure.call(&doctor, "POST", &path, &[], None)
    };
    validate("o-r").outcome(404);
    validate("o-plain").ok(200);
    secure.get(&doctor, "Patient/p2").ok(200);

    // Search: matches, totals and every page.
    let (found, total) = secure.all_pages(&doctor, "Observation?_count=1&_total=accurate");
    assert_eq!(
        found,
        vec![
            "Observation/o-p3".to_string(),
            "Observation/o-plain".to_string()
        ]
    );
    assert_eq!(total, Some(2));
    let (found, total) = secure.all_pages(&doctor, "Observation?patient=p1&_total=accurate");
    assert_eq!(found, vec!["Observation/o-plain".to_string()]);
    assert_eq!(total, Some(1));
    let count = secure.get(&doctor, "Observation?_summary=count").ok(200);
    assert_eq!(count["total"], 2);
    for code in ["c-r", "c-v", "c-hiv", "c-p2"] {
        let bundle = secure
            .get(&doctor, &format!("Observation?code={code}&_total=accurate"))
            .ok(200);
        assert_eq!(bundle["total"], 0, "code {code}: {bundle}");
    }
    let (found, _) = secure.all_pages(&doctor, "Patient?_count=1");
    assert_eq!(
        found,
        vec!["Patient/p1".to_string(), "Patient/p2".to_string()]
    );
    // A system search (with _type), and a compartment search.
    let (found, _) = secure.all_pages(&doctor, "?_type=Observation,Patient&_count=2");
    assert_none_hidden(&found, "system search");
    assert_eq!(found.len(), 4, "{found:?}");
    let (found, _) = secure.all_pages(&doctor, "Patient/p1/Observation");
    assert_eq!(found, vec!["Observation/o-plain".to_string()]);

    // Chains and _has test no hidden resource.
    let chained = secure
        .get(&doctor, "Observation?subject:Patient.name=Hidden")
        .ok(200);
    assert!(entries(&chained).is_empty(), "chain: {chained}");
    for code in ["c-r", "c-v", "c-hiv", "c-p2"] {
        let has = secure
            .get(
                &doctor,
                &format!("Patient?_has:Observation:patient:code={code}"),
            )
            .ok(200);
        assert!(entries(&has).is_empty(), "_has code {code}: {has}");
    }
    let has = secure
        .get(&doctor, "Patient?_has:Observation:patient:code=c-plain")
        .ok(200);
    assert_eq!(ids(&has), vec!["p1".to_string()]);

    // _include and _revinclude leave hidden resources out.
    let included = secure
        .get(&doctor, "Observation?_id=o-p3&_include=Observation:subject")
        .ok(200);
    assert_eq!(typed(&included, "include"), Vec::<String>::new());
    let revincluded = secure
        .get(&doctor, "Patient?_id=p1,p2&_revinclude=Observation:patient")
        .ok(200);
    assert_eq!(
        typed(&revincluded, "include"),
        vec!["Observation/o-plain".to_string()]
    );

    // History at type level.
    let history = secure.get(&doctor, "Observation/_history").ok(200);
    let listed: Vec<String> = entries(&history)
        .iter()
        .filter_map(|entry| entry["resource"]["id"].as_str())
        .map(|id| format!("Observation/{id}"))
        .collect();
    assert_none_hidden(&listed, "type history");
    assert!(listed.contains(&"Observation/o-plain".to_string()));
    // Its total counts what the page shows, not the hidden versions; over several
    // pages, where that cannot be known from one page, there is no total at all.
    assert_eq!(
        history["total"].as_u64(),
        Some(listed.len() as u64),
        "{history}"
    );
    // The system history needs every type: the refusal points to a type's history (it
    // takes no `_type`).
    let system = secure.get(&doctor, "_history");
    assert_eq!(system.status, 403);
    assert!(
        system.text.contains("history of each type"),
        "{}",
        system.text
    );
    let paged = secure.get(&doctor, "Observation/_history?_count=1").ok(200);
    assert!(entries(&paged).len() <= 1);
    assert!(paged.get("total").is_none(), "{paged}");

    // $everything.
    let everything = secure.get(&doctor, "Patient/p1/$everything").ok(200);
    let all: Vec<String> = typed(&everything, "match");
    assert_none_hidden(&all, "$everything p1");
    assert!(all.contains(&"Observation/o-plain".to_string()), "{all:?}");
    let everything = secure.get(&doctor, "Patient/p2/$everything").ok(200);
    assert_eq!(
        typed(&everything, "match"),
        vec!["Consent/c1".to_string(), "Patient/p2".to_string()]
    );
    secure.get(&doctor, "Patient/p3/$everything").outcome(404);

    // Batch entries.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/o-r"}},
        {"request": {"method": "GET", "url": "Observation?code=c-hiv,c-plain"}},
    ]});
    let answer = secure.call(&doctor, "POST", "", &[], Some(&batch)).ok(200);
    let answers = entries(&answer);
    assert!(
        answers[0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("404")
    );
    assert_eq!(
        typed(&answers[1]["resource"], "match"),
        vec!["Observation/o-plain".to_string()]
    );
}

#[test]
fn permissions_open_labels_by_role_and_scope() {
    let secure = Secure::start();
    let admin = admin(&secure);
    load(&secure, &admin);
    let search = |token: &str| {
        let (found, _) = secure.all_pages(token, "Observation?patient=p1");
        found
    };
    // him_manager sees R and V, not HIV; roi_specialist sees R; a sensitive/HIV scope
    // opens HIV.
    let him = secure.token("h1", &["him_manager"], "user/*.cruds", None);
    assert_eq!(
        search(&him),
        vec!["Observation/o-plain", "Observation/o-r", "Observation/o-v"]
    );
    let roi = secure.token("r1", &["roi_specialist"], "system/*.rs", None);
    assert_eq!(search(&roi), vec!["Observation/o-plain", "Observation/o-r"]);
    let scoped = secure.token("d9", &["clinician"], "user/*.cruds sensitive/HIV", None);
    assert_eq!(
        search(&scoped),
        vec!["Observation/o-hiv", "Observation/o-plain"]
    );
    // The Consent denies p2's Observations to every one of them.
    for token in [&him, &roi, &scoped, &admin] {
        secure.get(token, "Observation/o-p2").outcome(404);
    }
    // A Consent that denies everything hides the patient, but not the Consent itself.
    let mut everything = deny_observations("c9", "p1", "active");
    everything["provision"] = json!({"type": "deny"});
    secure.put(&admin, everything);
    secure.get(&him, "Patient/p1").outcome(404);
    secure.get(&him, "Observation/o-plain").outcome(404);
    secure.get(&him, "Consent/c9").ok(200);
    let consents = secure.get(&him, "Consent?patient=p1").ok(200);
    assert_eq!(ids(&consents), vec!["c9".to_string()]);
}

#[test]
fn a_bulk_export_leaves_out_what_the_principal_may_not_see() {
    let secure = Secure::start();
    let admin = admin(&secure);
    load(&secure, &admin);
    let roi = secure.token("r1", &["roi_specialist"], "system/*.rs", None);
    let kick_off = secure.call(
        &roi,
        "GET",
        "Patient/$export?_type=Observation",
        &[("prefer", "respond-async")],
        None,
    );
    assert_eq!(kick_off.status, 202, "{}", kick_off.text);
    let status_url = kick_off.header("content-location").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let manifest = loop {
        let reply = secure.get(&roi, &status_url);
        match reply.status {
            202 => {
                assert!(Instant::now() < deadline, "the export did not finish");
                std::thread::sleep(Duration::from_millis(50));
            }
            200 => break reply.json(),
            other => panic!("status {other}: {}", reply.text),
        }
    };
    let mut exported = BTreeSet::new();
    for output in manifest["output"].as_array().unwrap() {
        let reply = secure.get(&roi, output["url"].as_str().unwrap());
        assert_eq!(reply.status, 200, "{}", reply.text);
        for line in reply.text.lines() {
            let resource: Value = serde_json::from_str(line).unwrap();
            exported.insert(format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            ));
        }
    }
    let expected: BTreeSet<String> = ["Observation/o-plain", "Observation/o-r", "Observation/o-p3"]
        .iter()
        .map(|id| id.to_string())
        .collect();
    assert_eq!(exported, expected);
}

#[test]
fn consents_take_effect_when_written_and_lapse_when_inactive() {
    let secure = Secure::start();
    let admin = admin(&secure);
    secure.put(&admin, patient("p5", "Later", None));
    secure.put(&admin, labelled("o5", "p5", "c5", None));
    let doctor = clinician(&secure, "d1");
    secure.get(&doctor, "Observation/o5").ok(200);
    secure.put(&admin, deny_observations("c5", "p5", "active"));
    secure.get(&doctor, "Observation/o5").outcome(404);
    secure.put(&admin, deny_observations("c5", "p5", "inactive"));
    secure.get(&doctor, "Observation/o5").ok(200);
    // A denial that names another actor does not hide it from this one, and one that
    // permits this actor as an exception lets it through.
    let mut others = deny_observations("c6", "p5", "active");
    others["provision"]["actor"] =
        json!([{"role": {"text": "x"}, "reference": {"reference": "Practitioner/d2"}}]);
    secure.put(&admin, others);
    secure.get(&doctor, "Observation/o5").ok(200);
    secure
        .get(&clinician(&secure, "d2"), "Observation/o5")
        .outcome(404);
    let mut trusted = deny_observations("c6", "p5", "active");
    trusted["provision"]["provision"] = json!([{"type": "permit",
        "actor": [{"role": {"text": "x"}, "reference": {"reference": "Practitioner/d2"}}]}]);
    secure.put(&admin, trusted);
    secure
        .get(&clinician(&secure, "d2"), "Observation/o5")
        .ok(200);
    secure
        .get(&clinician(&secure, "d3"), "Observation/o5")
        .outcome(404);
}

#[test]
fn break_the_glass_opens_one_patient_for_a_clinician_with_a_reason() {
    let secure = Secure::start();
    let admin = admin(&secure);
    load(&secure, &admin);
    let doctor = clinician(&secure, "d1");
    let btg = [("x-purpose-of-use", "BTG")];
    let with_reason = [
        ("x-purpose-of-use", "BTG"),
        (
            "x-break-glass-reason",
            "unconscious patient in the emergency room",
        ),
    ];

    // No reason: refused, saying so.
    let refused = secure.call(&doctor, "GET", "Observation?patient=p1", &btg, None);
    assert!(refused.outcome(403).contains("X-Break-Glass-Reason"));
    // Not a clinician: refused.
    let him = secure.token("h1", &["him_manager"], "user/*.cruds", None);
    let refused = secure.call(&him, "GET", "Observation?patient=p1", &with_reason, None);
    assert!(refused.outcome(403).contains("may not break the glass"));
    // No patient named: refused.
    let refused = secure.call(&doctor, "GET", "Observation", &with_reason, None);
    assert!(refused.outcome(403).contains("needs the patient"));
    // Before: hidden.
    secure.get(&doctor, "Observation/o-r").outcome(404);

    // Broken for p1: its labelled data comes back, on this request and later ones.
    let opened = secure
        .call(&doctor, "GET", "Observation?patient=p1", &with_reason, None)
        .ok(200);
    assert_eq!(
        typed(&opened, "match"),
        vec![
            "Observation/o-hiv",
            "Observation/o-plain",
            "Observation/o-r",
            "Observation/o-v"
        ]
    );
    secure.get(&doctor, "Observation/o-r").ok(200);
    let (found, _) = secure.all_pages(&doctor, "Patient?_has:Observation:patient:code=c-hiv");
    assert_eq!(found, vec!["Patient/p1".to_string()]);
    // Only for p1, and only for this clinician.
    secure.get(&doctor, "Observation/o-p2").outcome(404);
    secure
        .get(&clinician(&secure, "d2"), "Observation/o-r")
        .outcome(404);

    // Broken on a resource: the glass opens for the patient it belongs to (p2).
    secure
        .call(&doctor, "GET", "Observation/o-p2", &with_reason, None)
        .ok(200);
    let everything = secure.get(&doctor, "Patient/p2/$everything").ok(200);
    assert!(typed(&everything, "match").contains(&"Observation/o-p2".to_string()));
}

#[test]
fn hidden_resources_are_neither_changed_nor_matched_by_conditional_writes() {
    let secure = Secure::start();
    let admin = admin(&secure);
    load(&secure, &admin);
    let doctor = clinician(&secure, "d1");
    let him = secure.token("h1", &["him_manager"], "user/*.cruds", None);
    let json_patch = [("content-type", "application/json-patch+json")];
    let patch = json!([{"op": "replace", "path": "/status", "value": "cancelled"}]);

    // Update, patch and delete: not known.
    let body = labelled("o-r", "p1", "c-r", None);
    secure
        .call(&doctor, "PUT", "Observation/o-r", &[], Some(&body))
        .outcome(404);
    secure
        .call(
            &doctor,
            "PATCH",
            "Observation/o-r",
            &json_patch,
            Some(&patch),
        )
        .outcome(404);
    secure
        .call(&him, "DELETE", "Observation/o-hiv", &[], None)
        .outcome(404);

    // Conditional interactions do not match them.
    secure
        .call(
            &doctor,
            "PATCH",
            "Observation?code=c-hiv",
            &json_patch,
            Some(&patch),
        )
        .outcome(404);
    let deleted = secure.call(&him, "DELETE", "Observation?code=c-hiv", &[], None);
    assert!(matches!(deleted.status, 200 | 204), "{}", deleted.text);
    let fresh = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": "c-r"}]},
        "subject": {"reference": "Patient/p1"}});
    let created = secure.call(
        &doctor,
        "POST",
        "Observation",
        &[("if-none-exist", "code=c-r")],
        Some(&fresh),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    assert_ne!(created.json()["id"], "o-r");
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": fresh, "request": {"method": "POST", "url": "Observation",
            "ifNoneExist": "code=c-hiv"}},
    ]});
    let answer = secure.call(&doctor, "POST", "", &[], Some(&batch)).ok(200);
    let status = entries(&answer)[0]["response"]["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(status.starts_with("201"), "{answer}");

    // All of them unchanged.
    let stored = secure.get(&admin, "Observation/o-r").ok(200);
    assert_eq!(stored["status"], "amended");
    let stored = secure.get(&admin, "Observation/o-hiv").ok(200);
    assert_eq!(stored["status"], "final");
}

#[test]
fn patient_matching_offers_no_hidden_patient() {
    let secure = Secure::start();
    let admin = admin(&secure);
    let person = |id: &str| {
        json!({"resourceType": "Patient", "id": id,
            "meta": {"security": [{"system": CONFIDENTIALITY, "code": "R"}]},
            "name": [{"family": "Castellanos", "given": ["Marisol"]}],
            "gender": "female", "birthDate": "1961-04-17",
            "address": [{"line": ["12 Harbour Road"], "city": "Springfield", "postalCode": "01105"}],
            "telecom": [{"system": "phone", "value": "555-0142"}]})
    };
    secure.put(&admin, person("pm"));
    let mut probe = person("probe");
    probe.as_object_mut().unwrap().remove("id");
    probe.as_object_mut().unwrap().remove("meta");
    let input = json!({"resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": probe}]});
    let matched = |token: &str| {
        let bundle = secure
            .call(token, "POST", "Patient/$match", &[], Some(&input))
            .ok(200);
        ids(&bundle)
    };
    assert_eq!(matched(&admin), vec!["pm".to_string()]);
    assert!(matched(&clinician(&secure, "d1")).is_empty());

    // A likely duplicate of the hidden patient: on the worklist, but not for those who
    // may not see it.
    let mut twin = person("pm2");
    twin.as_object_mut().unwrap().remove("meta");
    secure.put(&admin, twin);
    let items = |token: &str| {
        let list = secure.get(token, "Patient/$duplicates").ok(200);
        list["parameter"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .len()
    };
    assert_eq!(items(&admin), 1);
    assert_eq!(items(&clinician(&secure, "d1")), 0);
}

#[test]
fn drg_grouping_reads_no_hidden_diagnosis() {
    const CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
    let secure = Secure::start();
    let admin = admin(&secure);
    secure.put(
        &admin,
        json!({"resourceType": "Patient", "id": "pd", "gender": "male", "birthDate": "1950-07-14"}),
    );
    let condition = |id: &str, code: &str| {
        json!({"resourceType": "Condition", "id": id, "subject": {"reference": "Patient/pd"},
               "code": {"coding": [{"system": CM, "code": code}]}})
    };
    secure.put(&admin, condition("nstemi", "I21.4"));
    let mut hidden = condition("secret", "B20");
    hidden["meta"] = json!({"security": [{"system": ACT_CODE, "code": "HIV"}]});
    secure.put(&admin, hidden);
    let diagnosis = |condition: &str, rank: u32| {
        json!({"condition": {"reference": format!("Condition/{condition}")}, "rank": rank,
               "use": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/diagnosis-role", "code": "billing"}]}})
    };
    secure.put(
        &admin,
        json!({"resourceType": "Encounter", "id": "stay", "status": "finished",
            "class": {"system": ACT_CODE, "code": "IMP"},
            "subject": {"reference": "Patient/pd"},
            "period": {"start": "2026-03-02T10:00:00Z", "end": "2026-03-06T12:00:00Z"},
            "diagnosis": [diagnosis("nstemi", 1), diagnosis("secret", 2)]}),
    );
    let grouped = secure.get(&admin, "Encounter/stay/$drg");
    assert_eq!(grouped.status, 200, "{}", grouped.text);
    assert!(grouped.text.contains("B20"));
    let refused = secure.get(&clinician(&secure, "d1"), "Encounter/stay/$drg");
    assert!(refused.outcome(422).contains("not there"));
    assert!(!refused.text.contains("B20"));
}

#[test]
fn a_break_the_glass_grant_survives_a_restart() {
    let secure = Secure::start();
    let admin = admin(&secure);
    load(&secure, &admin);
    let doctor = clinician(&secure, "d1");
    let with_reason = [
        ("x-purpose-of-use", "BTG"),
        ("x-break-glass-reason", "cardiac arrest"),
    ];
    secure
        .call(&doctor, "GET", "Patient/p3", &with_reason, None)
        .ok(200);
    let secure = secure.restarted();
    let doctor = clinician(&secure, "d1");
    secure.get(&doctor, "Patient/p3").ok(200);
    secure.get(&doctor, "Observation/o-r").outcome(404);
    secure
        .get(&clinician(&secure, "d2"), "Patient/p3")
        .outcome(404);
}

#[test]
fn a_patient_limited_token_writes_only_in_its_compartment() {
    let secure = Secure::start();
    let admin = admin(&secure);
    secure.put(&admin, patient("p1", "Plain", None));
    secure.put(&admin, patient("p2", "Other", None));
    secure.put(&admin, labelled("mine", "p1", "c1", None));
    secure.put(&admin, labelled("theirs", "p2", "c2", None));
    let app = secure.token("app", &["him_manager"], "patient/*.cruds", Some("p1"));

    // Create: its own compartment only.
    let own = json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
    secure
        .call(&app, "POST", "Observation", &[], Some(&own))
        .ok(201);
    let other = json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": "Patient/p2"}});
    let refused = secure.call(&app, "POST", "Observation", &[], Some(&other));
    assert!(refused.outcome(403).contains("compartment"));
    let stranger = json!({"resourceType": "Patient", "id": "p9"});
    secure
        .call(&app, "PUT", "Patient/p9", &[], Some(&stranger))
        .outcome(403);

    // Update, patch and delete of another patient's resource: not known.
    let theirs = labelled("theirs", "p2", "c2", None);
    secure
        .call(&app, "PUT", "Observation/theirs", &[], Some(&theirs))
        .outcome(404);
    let patch = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
    secure
        .call(
            &app,
            "PATCH",
            "Observation/theirs",
            &[("content-type", "application/json-patch+json")],
            Some(&patch),
        )
        .outcome(404);
    secure
        .call(&app, "DELETE", "Observation/theirs", &[], None)
        .outcome(404);
    secure.get(&admin, "Observation/theirs").ok(200);

    // Moving its own resource out of the compartment: refused.
    let moved = labelled("mine", "p2", "c1", None);
    secure
        .call(&app, "PUT", "Observation/mine", &[], Some(&moved))
        .outcome(403);
    let patch = json!([{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]);
    secure
        .call(
            &app,
            "PATCH",
            "Observation/mine",
            &[("content-type", "application/json-patch+json")],
            Some(&patch),
        )
        .outcome(403);

    // A transaction with one such entry is refused whole.
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": own, "request": {"method": "POST", "url": "Observation"}},
        {"resource": other, "request": {"method": "POST", "url": "Observation"}},
    ]});
    secure
        .call(&app, "POST", "", &[], Some(&transaction))
        .outcome(403);
    // Its own resources it changes.
    let mut amended = labelled("mine", "p1", "c1", None);
    amended["status"] = json!("amended");
    secure
        .call(&app, "PUT", "Observation/mine", &[], Some(&amended))
        .ok(200);
}

/// A hospital may hold thousands of restricting consents: every search still runs
/// (each kind of denial is one clause naming all its patients, not a clause each), and
/// hides what they deny.
#[test]
fn thousands_of_consents_still_let_searches_run_and_hide_what_they_deny() {
    let secure = Secure::start();
    let admin = admin(&secure);
    let mut entry = Vec::new();
    for n in 0..1500 {
        let id = format!("r{n}");
        entry.push(json!({"resource": patient(&id, "Restricted", None),
            "request": {"method": "PUT", "url": format!("Patient/{id}")}}));
        entry.push(json!({"resource": {
                "resourceType": "Consent", "id": format!("c-{id}"), "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": format!("Patient/{id}")},
                "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTOUT"}]},
                "provision": {"type": "deny"}},
            "request": {"method": "PUT", "url": format!("Consent/c-{id}")}}));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entry});
    secure.call(&admin, "POST", "", &[], Some(&bundle)).ok(200);
    secure.put(&admin, patient("open", "Restricted", None));
    secure.put(&admin, labelled("o-open", "open", "c1", None));
    secure.put(&admin, labelled("o-r7", "r7", "c1", None));

    let doctor = clinician(&secure, "d1");
    let found = secure
        .get(&doctor, "Patient?family=Restricted&_count=50")
        .ok(200);
    assert_eq!(ids(&found), vec!["open".to_string()]);
    let observations = secure.get(&doctor, "Observation?code=c1").ok(200);
    assert_eq!(ids(&observations), vec!["o-open".to_string()]);
    secure.get(&doctor, "Patient/r7").outcome(404);
    secure.get(&doctor, "Observation/o-r7").outcome(404);
    secure.get(&doctor, "Patient/open").ok(200);
}
