//! The audit trail through the real server and CLI: every interaction leaves an
//! AuditEvent naming who, what, when, from where, why and the outcome (refusals,
//! failures and the token endpoint included); a write's record commits with it (one
//! record, and none of success when it fails); only auditors and admins read the
//! trail, and nobody changes it (405, in Bundles too); break-the-glass requests are
//! recorded at high severity and listed by `custodian audit btg`; and
//! `custodian audit verify` passes an intact trail and names the first broken link
//! after rows are edited, deleted or reordered in the database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use common::fhir::{Fhir, Reply, entries};
use common::{TestServer, database_url};
use serde_json::{Value, json};

fn custodian(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(args)
        .env("CUSTODIAN_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "custodian failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// A server with authentication on and three clients: an admin, an auditor and a
/// clinician.
struct Audited {
    fhir: Fhir,
    database: String,
    admin: String,
    auditor: String,
    clinician: String,
    /// The clinician client's secret.
    secret: String,
    _dir: tempfile::TempDir,
}

fn signing_key_file(dir: &Path) -> String {
    use p256::pkcs8::EncodePrivateKey;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    let key = p256::ecdsa::SigningKey::from_slice(&bytes).unwrap();
    let pem = key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
    let path = dir.join("signing-key.pem");
    std::fs::write(&path, pem.as_bytes()).unwrap();
    path.to_str().unwrap().to_string()
}

impl Audited {
    fn start() -> Audited {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let key = signing_key_file(dir.path());
        let server = TestServer::start_secure_in(&data, &["--signing-key", &key]);
        let database = database_url(&data);
        let fhir = Fhir::on(server);
        let token = |id: &str, role: &str, scope: &str| {
            let secret = stdout(&custodian(&[
                "admin",
                "create-client",
                "--database",
                &database,
                "--id",
                id,
                "--role",
                role,
                "--scope",
                scope,
                "--generate-secret",
            ]));
            let token = stdout(&custodian(&[
                "admin",
                "token",
                "--database",
                &database,
                "--client",
                id,
                "--base-url",
                fhir.base(),
                "--signing-key",
                &key,
            ]))
            .trim()
            .to_string();
            (token, secret.trim().to_string())
        };
        let (admin, _) = token("admin-app", "admin", "system/*.cruds");
        let (auditor, _) = token("audit-app", "auditor", "system/*.rs");
        let (clinician, secret) = token("ward-app", "clinician", "system/*.cruds");
        Audited {
            fhir,
            database,
            admin,
            auditor,
            clinician,
            secret,
            _dir: dir,
        }
    }

    fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let bearer = format!("Bearer {token}");
        let text = body.map(Value::to_string);
        let mut headers = vec![("authorization", bearer.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/fhir+json"));
        }
        headers.extend_from_slice(extra);
        self.fhir.request(method, path, &headers, text.as_deref())
    }

    /// The AuditEvents an auditor finds with `query`, oldest first.
    fn audit(&self, query: &str) -> Vec<Value> {
        let bundle = self
            .call(
                &self.auditor,
                "GET",
                &format!("AuditEvent?_sort=date&_count=1000&{query}"),
                None,
                &[],
            )
            .ok(200);
        entries(&bundle)
            .into_iter()
            .map(|entry| entry["resource"].clone())
            .collect()
    }
}

fn subtype(event: &Value) -> &str {
    event["subtype"][0]["code"].as_str().unwrap_or("")
}

fn agent(event: &Value) -> &str {
    event["agent"][0]["who"]["identifier"]["value"]
        .as_str()
        .unwrap_or("")
}

#[test]
fn every_interaction_is_recorded_with_who_what_when_where_why_and_outcome() {
    let audited = Audited::start();
    let patient = json!({"resourceType": "Patient", "id": "p1", "active": true});
    let observation = json!({
        "resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"text": "pulse"}, "subject": {"reference": "Patient/p1"}
    });
    let clinician = &audited.clinician;
    audited
        .call(clinician, "PUT", "Patient/p1", Some(&patient), &[])
        .ok(201);
    audited
        .call(clinician, "PUT", "Observation/o1", Some(&observation), &[])
        .ok(201);
    audited
        .call(
            clinician,
            "GET",
            "Observation/o1",
            None,
            &[("x-purpose-of-use", "TREAT")],
        )
        .ok(200);
    audited
        .call(
            clinician,
            "GET",
            "Observation?subject=Patient/p1",
            None,
            &[],
        )
        .ok(200);
    // Clinicians delete nothing: the admin does.
    let deleted = audited.call(&audited.admin, "DELETE", "Observation/o1", None, &[]);
    assert_eq!(deleted.status, 204);
    // Refused: no token (401), and the clinician may not read the trail (403).
    let anonymous = audited.fhir.get("Patient/p1");
    assert_eq!(anonymous.status, 401);
    let denied = audited.call(clinician, "GET", "AuditEvent", None, &[]);
    assert_eq!(denied.status, 403, "{}", denied.text);

    // In the order of the interactions: a write's record is appended in its own
    // transaction, others by the background trail a moment later, so the chain's order
    // (and `_sort=date`, which follows it) can differ from `recorded`'s.
    let mut events = audited.audit("patient=Patient/p1");
    events.sort_by_key(|event| event["recorded"].as_str().unwrap_or("").to_string());
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|event| {
            (
                subtype(event),
                event["action"].as_str().unwrap(),
                event["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("update", "U", "0"),
            ("update", "U", "0"),
            ("read", "R", "0"),
            ("search-type", "E", "0"),
            // The deletion's record names the patient too (read before the write).
            ("delete", "D", "0"),
            ("read", "R", "4"),
        ],
        "{events:#?}"
    );
    for event in &events[..4] {
        assert_eq!(agent(event), "ward-app");
        assert_eq!(event["agent"][0]["altId"], "ward-app");
        assert_eq!(
            event["agent"][0]["role"][0]["coding"][0]["code"],
            "clinician"
        );
        assert_eq!(event["agent"][0]["network"]["address"], "127.0.0.1");
        assert!(event["recorded"].as_str().unwrap().starts_with("20"));
    }
    assert_eq!(agent(&events[5]), "anonymous");
    let deletes = audited.audit("entity=Observation/o1&action=D");
    assert_eq!(deletes.len(), 1);
    assert_eq!(subtype(&deletes[0]), "delete");
    assert_eq!(agent(&deletes[0]), "admin-app");
    let read = &events[2];
    assert_eq!(read["entity"][1]["what"]["reference"], "Observation/o1");
    assert_eq!(read["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    let search = &events[3];
    let query = search["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|entity| entity["query"].as_str())
        .unwrap();
    let query = base64::engine::general_purpose::STANDARD
        .decode(query)
        .unwrap();
    assert_eq!(query, b"subject=Patient/p1");

    // The refusals are there with their outcomes; the 403 names the clinician.
    let refusals = audited.audit("outcome=4");
    assert!(refusals.iter().any(|event| {
        event["outcomeDesc"] == "HTTP 403"
            && agent(event) == "ward-app"
            && subtype(event) == "search-type"
    }));
    assert!(
        refusals
            .iter()
            .any(|event| event["outcomeDesc"] == "HTTP 401")
    );

    // Token requests: one refused, one granted, both recorded as logins.
    let token_request = |client: &str, secret: &str| {
        audited.fhir.request(
            "POST",
            &format!("{}/auth/token", audited.fhir.server.origin),
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(&format!(
                "grant_type=client_credentials&client_id={client}&client_secret={secret}"
            )),
        )
    };
    assert_eq!(token_request("nobody", "wrong-secret-1234").status, 401);
    assert_eq!(token_request("ward-app", &audited.secret).status, 200);
    let logins = audited.audit("subtype=110122");
    let seen: Vec<(&str, &str)> = logins
        .iter()
        .map(|event| (agent(event), event["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [("nobody", "4"), ("ward-app", "0")], "{logins:#?}");
    assert_eq!(logins[0]["type"]["code"], "110114");

    // Searches by agent, entity, action, date; a page of one links the next.
    assert!(
        audited
            .audit("agent=ward-app&action=D")
            .iter()
            .all(|event| subtype(event) == "delete")
    );
    assert_eq!(audited.audit("entity=Observation/o1&action=R").len(), 1);
    assert!(audited.audit("date=ge2000-01-01").len() >= 8);
    assert!(audited.audit("date=lt2000-01-01").is_empty());
    let page = audited
        .call(&audited.auditor, "GET", "AuditEvent?_count=1", None, &[])
        .ok(200);
    assert_eq!(entries(&page).len(), 1);
    assert!(common::fhir::link(&page, "next").is_some());
    let bad = audited.call(&audited.auditor, "GET", "AuditEvent?name=x", None, &[]);
    assert_eq!(bad.status, 400);

    // One record can be read by its id, by an auditor or an admin.
    let id = events[0]["id"].as_str().unwrap();
    let one = audited
        .call(
            &audited.admin,
            "GET",
            &format!("AuditEvent/{id}"),
            None,
            &[],
        )
        .ok(200);
    assert_eq!(one, events[0]);
    let vread = audited
        .call(
            &audited.auditor,
            "GET",
            &format!("AuditEvent/{id}/_history/1"),
            None,
            &[],
        )
        .ok(200);
    assert_eq!(vread, events[0]);
    assert_eq!(
        audited
            .call(clinician, "GET", &format!("AuditEvent/{id}"), None, &[])
            .status,
        403
    );
}

#[test]
fn a_write_leaves_one_record_and_a_failed_write_none_of_success() {
    let audited = Audited::start();
    let patient = json!({"resourceType": "Patient", "id": "p2", "active": true});
    audited
        .call(&audited.clinician, "PUT", "Patient/p2", Some(&patient), &[])
        .ok(201);
    // A stale If-Match: refused with 412, nothing written.
    let stale = audited.call(
        &audited.clinician,
        "PUT",
        "Patient/p2",
        Some(&patient),
        &[("if-match", "W/\"7\"")],
    );
    assert_eq!(stale.status, 412);
    // A created resource is named with the id the server gave it.
    let created = audited
        .call(
            &audited.clinician,
            "POST",
            "Patient",
            Some(&json!({"resourceType": "Patient"})),
            &[],
        )
        .ok(201);
    let new_id = created["id"].as_str().unwrap();

    let updates = audited.audit("patient=p2&subtype=update");
    let outcomes: Vec<&str> = updates
        .iter()
        .map(|event| event["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["0", "4"], "{updates:#?}");
    assert_eq!(updates[1]["outcomeDesc"], "HTTP 412");
    let creates = audited.audit(&format!("entity=Patient/{new_id}"));
    assert_eq!(creates.len(), 1);
    assert_eq!(subtype(&creates[0]), "create");

    // A transaction's writes are recorded one by one, plus the transaction itself.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p3"}, "request": {"method": "PUT", "url": "Patient/p3"}},
        {"resource": {"resourceType": "Patient", "id": "p4"}, "request": {"method": "PUT", "url": "Patient/p4"}}
    ]});
    audited
        .call(&audited.clinician, "POST", "", Some(&bundle), &[])
        .ok(200);
    assert_eq!(audited.audit("entity=Patient/p3,Patient/p4").len(), 2);
    assert_eq!(audited.audit("subtype=transaction").len(), 1);
}

#[test]
fn nobody_changes_the_trail_through_the_api() {
    let audited = Audited::start();
    audited
        .call(&audited.admin, "GET", "Patient?_count=1", None, &[])
        .ok(200);
    let first = audited.audit("");
    let id = first[0]["id"].as_str().unwrap().to_string();
    let event = first[0].clone();
    for (method, path) in [
        ("POST", "AuditEvent".to_string()),
        ("PUT", format!("AuditEvent/{id}")),
        ("DELETE", format!("AuditEvent/{id}")),
        ("DELETE", "AuditEvent?outcome=0".to_string()),
    ] {
        let reply = audited.call(&audited.admin, method, &path, Some(&event), &[]);
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text);
    }
    let patch = audited.fhir.request(
        "PATCH",
        &format!("AuditEvent/{id}"),
        &[
            ("authorization", &format!("Bearer {}", audited.admin)),
            ("content-type", "application/json-patch+json"),
        ],
        Some(r#"[{"op":"replace","path":"/outcome","value":"8"}]"#),
    );
    assert_eq!(patch.status, 405);
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "DELETE", "url": format!("AuditEvent/{id}")}},
        {"resource": event, "request": {"method": "POST", "url": "AuditEvent"}}
    ]});
    let answer = audited
        .call(&audited.admin, "POST", "", Some(&batch), &[])
        .ok(200);
    for entry in entries(&answer) {
        assert!(
            entry["response"]["status"]
                .as_str()
                .unwrap()
                .starts_with("405"),
            "{entry}"
        );
    }
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": format!("AuditEvent/{id}")}}
    ]});
    let refused = audited.call(&audited.admin, "POST", "", Some(&transaction), &[]);
    assert_eq!(refused.status, 405, "{}", refused.text);
    let again = audited
        .call(
            &audited.auditor,
            "GET",
            &format!("AuditEvent/{id}"),
            None,
            &[],
        )
        .ok(200);
    assert_eq!(again, first[0]);
}

#[test]
fn break_the_glass_is_recorded_at_high_severity_and_listed() {
    let audited = Audited::start();
    let patient = json!({"resourceType": "Patient", "id": "p9", "active": true});
    audited
        .call(&audited.clinician, "PUT", "Patient/p9", Some(&patient), &[])
        .ok(201);
    audited
        .call(
            &audited.clinician,
            "GET",
            "Patient/p9",
            None,
            &[
                ("x-purpose-of-use", "BTG"),
                (
                    "x-break-glass-reason",
                    "unconscious in the ED, no consent on file",
                ),
            ],
        )
        .ok(200);
    let btg = audited.audit("purpose-of-use=BTG");
    assert_eq!(btg.len(), 1, "{btg:#?}");
    let event = &btg[0];
    assert_eq!(event["extension"][0]["valueCode"], "alert");
    assert_eq!(
        event["purposeOfEvent"][0]["text"],
        "unconscious in the ED, no consent on file"
    );
    let listing = stdout(&custodian(&[
        "audit",
        "btg",
        "--since",
        "2000-01-01",
        "--database",
        &audited.database,
    ]));
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    let fields: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(
        &fields[1..],
        [
            "ward-app",
            "Patient/p9",
            "read",
            "success",
            "unconscious in the ED, no consent on file"
        ]
        .as_slice(),
        "{listing}"
    );
    let later = stdout(&custodian(&[
        "audit",
        "btg",
        "--since",
        "2999-01-01",
        "--database",
        &audited.database,
    ]));
    assert_eq!(later.lines().count(), 1, "{later}");
}

/// `custodian audit verify` on `database`: (success, output).
fn verify(database: &str) -> (bool, String) {
    let output = custodian(&["audit", "verify", "--database", database]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn verify_names_the_first_broken_link_after_tampering_in_the_database() {
    if common::on_postgres() {
        // The store's own tests tamper on PostgreSQL; here the CLI runs on SQLite.
        return;
    }
    let audited = Audited::start();
    for n in 0..6 {
        let patient = json!({"resourceType": "Patient", "id": format!("t{n}")});
        audited
            .call(
                &audited.clinician,
                "PUT",
                &format!("Patient/t{n}"),
                Some(&patient),
                &[],
            )
            .ok(201);
    }
    let count = audited.audit("").len();
    assert!(count >= 6);
    let (ok, text) = verify(&audited.database);
    assert!(ok, "{text}");
    assert!(text.contains("audit trail OK"), "{text}");

    let file = audited.fhir.server.data_dir.join("custodian.db");
    let sql = |statements: &str| {
        let connection = rusqlite::Connection::open(&file).unwrap();
        connection
            .execute_batch(&format!(
                "DROP TRIGGER IF EXISTS audit_event_no_update;
                 DROP TRIGGER IF EXISTS audit_event_no_delete;
                 {statements}"
            ))
            .unwrap();
    };
    // Each change is caught and undone before the next.
    sql("UPDATE audit_event SET agent = 'someone-else' WHERE seq = 3");
    let (ok, text) = verify(&audited.database);
    assert!(!ok);
    assert!(text.contains("BROKEN at record 3"), "{text}");
    sql("UPDATE audit_event SET agent = 'ward-app' WHERE seq = 3");
    assert!(verify(&audited.database).0);

    sql(
        "CREATE TABLE kept AS SELECT * FROM audit_event WHERE seq = 4;
         DELETE FROM audit_event WHERE seq = 4;",
    );
    let (ok, text) = verify(&audited.database);
    assert!(!ok);
    assert!(text.contains("BROKEN at record 5"), "{text}");
    assert!(text.contains("expected record 4"), "{text}");
    sql("INSERT INTO audit_event SELECT * FROM kept; DROP TABLE kept;");
    assert!(verify(&audited.database).0);

    sql("UPDATE audit_event SET seq = -1 WHERE seq = 2;
         UPDATE audit_event SET seq = 2 WHERE seq = 3;
         UPDATE audit_event SET seq = 3 WHERE seq = -1;");
    let (ok, text) = verify(&audited.database);
    assert!(!ok);
    assert!(text.contains("BROKEN at record 2"), "{text}");
    let _ = std::io::stderr().flush();
}
