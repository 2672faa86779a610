//! The accounting of disclosures, local users' password logins and the ownership of
//! export jobs, through the real server and CLI: releases of information to a named
//! recipient, reads and break-the-glass by a client registered as an outside recipient,
//! and bulk exports to one, each recorded per patient and reported by
//! `Patient/[id]/$accounting-of-disclosures` (treatment, payment, operations and the
//! patient's own requests left out); the password grant with good and bad passwords and
//! its lockout; export status, files and cancel for their owner only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::fhir::{Fhir, Reply};
use common::{TestServer, database_url};
use serde_json::{Value, json};

fn custodian(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(args)
        .env("CUSTODIAN_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "custodian failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .trim()
        .to_string()
}

/// A server with authentication on and its database.
struct Secure {
    fhir: Fhir,
    database: String,
    key: String,
    _dir: tempfile::TempDir,
}

impl Secure {
    fn start(extra: &[&str]) -> Secure {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let database = database_url(&data);
        // The signing key is made by the CLI first, so `admin token` and the server agree.
        let key = dir.path().join("signing-key.pem");
        let pem = {
            use p256::pkcs8::EncodePrivateKey;
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).unwrap();
            let key = p256::ecdsa::SigningKey::from_slice(&bytes).unwrap();
            key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
                .unwrap()
                .to_string()
        };
        std::fs::write(&key, pem).unwrap();
        let key = key.to_str().unwrap().to_string();
        let mut args = vec!["--signing-key", key.as_str()];
        args.extend_from_slice(extra);
        let server = TestServer::start_secure_in(&data, &args);
        Secure {
            fhir: Fhir::on(server),
            database,
            key,
            _dir: dir,
        }
    }

    /// Creates a client with a generated secret; returns the secret.
    fn client(&self, id: &str, role: &str, scope: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "admin",
            "create-client",
            "--database",
            &self.database,
            "--id",
            id,
            "--role",
            role,
            "--scope",
            scope,
            "--generate-secret",
        ];
        args.extend_from_slice(extra);
        ok(&custodian(&args, None))
    }

    fn user(&self, username: &str, role: &str, password: &str) {
        ok(&custodian(
            &[
                "admin",
                "create-user",
                "--database",
                &self.database,
                "--username",
                username,
                "--role",
                role,
            ],
            Some(&format!("{password}\n")),
        ));
    }

    /// A token for `client` from `custodian admin token`.
    fn token(&self, client: &str) -> String {
        ok(&custodian(
            &[
                "admin",
                "token",
                "--database",
                &self.database,
                "--client",
                client,
                "--base-url",
                self.fhir.base(),
                "--signing-key",
                &self.key,
            ],
            None,
        ))
    }

    fn call(&self, token: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let bearer = format!("Bearer {token}");
        let mut all = vec![("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        self.fhir.request(method, path, &all, None)
    }

    fn put(&self, token: &str, resource: Value) {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let bearer = format!("Bearer {token}");
        let reply = self.fhir.request(
            "PUT",
            &path,
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/fhir+json"),
            ],
            Some(&resource.to_string()),
        );
        assert!(matches!(reply.status, 200 | 201), "{path}: {}", reply.text);
    }

    /// POSTs a form to the token endpoint, the client authenticated with Basic.
    fn token_request(&self, form: &[(&str, &str)], client: (&str, &str)) -> Reply {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.0, client.1))
        );
        let url = format!("{}/auth/token", self.fhir.server.origin);
        self.fhir.request(
            "POST",
            &url,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", basic.as_str()),
            ],
            Some(&body),
        )
    }

    fn login(&self, client: (&str, &str), username: &str, password: &str) -> Reply {
        self.token_request(
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ],
            client,
        )
    }

    /// The accounting of `patient` as `token` sees it.
    fn accounting(&self, token: &str, patient: &str, query: &str) -> Reply {
        self.call(
            token,
            "GET",
            &format!("Patient/{patient}/$accounting-of-disclosures{query}"),
            &[],
        )
    }

    /// Stores Patients p1 and p2, an Observation and a Condition of p1, an Observation
    /// of p2 and a Practitioner; returns the admin token.
    fn seed(&self) -> String {
        self.client("admin-app", "admin", "system/*.cruds", &[]);
        let admin = self.token("admin-app");
        for resource in [
            json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]}),
            json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Roe"}]}),
            json!({"resourceType": "Practitioner", "id": "dr1"}),
            json!({"resourceType": "Observation", "id": "o1", "status": "final",
                "code": {"text": "glucose"}, "subject": {"reference": "Patient/p1"}}),
            json!({"resourceType": "Observation", "id": "o2", "status": "final",
                "code": {"text": "glucose"}, "subject": {"reference": "Patient/p2"}}),
            json!({"resourceType": "Condition", "id": "c1",
                "subject": {"reference": "Patient/p1"}}),
        ] {
            self.put(&admin, resource);
        }
        admin
    }
}

/// The `disclosure` parts of an accounting, each as a map of part name to value.
fn entries(accounting: &Value) -> Vec<Value> {
    assert_eq!(accounting["resourceType"], "Parameters");
    accounting["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|parameter| parameter["name"] == "disclosure")
        .map(|parameter| {
            let mut entry = serde_json::Map::new();
            for part in parameter["part"].as_array().unwrap() {
                let value = ["valueInstant", "valueString", "valueCoding"]
                    .iter()
                    .find_map(|key| part.get(*key))
                    .unwrap()
                    .clone();
                entry.insert(part["name"].as_str().unwrap().to_string(), value);
            }
            Value::Object(entry)
        })
        .collect()
}

fn total(accounting: &Value) -> u64 {
    accounting["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|parameter| parameter["name"] == "total")
        .unwrap()["valueInteger"]
        .as_u64()
        .unwrap()
}

fn purpose(code: &str) -> Value {
    json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code})
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

const LEGAL: [(&str, &str); 3] = [
    ("x-disclosure-recipient", "Smith & Jones LLP"),
    ("x-disclosure-address", "1 Court St, Springfield"),
    ("x-purpose-of-use", "HLEGAL"),
];

#[test]
fn releases_of_information_are_accounted_without_tpo_or_the_patients_own() {
    let secure = Secure::start(&[]);
    secure.seed();
    secure.client("roi", "roi_specialist", "system/*.rs", &[]);
    let roi = secure.token("roi");
    let before = store_now();

    // A release for a legal proceeding: the whole record of p1.
    let everything = secure
        .call(&roi, "GET", "Patient/p1/$everything", &LEGAL)
        .ok(200);
    assert_eq!(everything["resourceType"], "Bundle");
    // Releases for payment and at the patient's request: recorded, not accounted.
    secure
        .call(
            &roi,
            "GET",
            "Observation?subject=Patient/p1",
            &[
                ("x-disclosure-recipient", "Acme Health Plan"),
                ("x-purpose-of-use", "HPAYMT"),
            ],
        )
        .ok(200);
    secure
        .call(
            &roi,
            "GET",
            "Patient/p1",
            &[
                ("x-disclosure-recipient", "Jane Doe"),
                ("x-purpose-of-use", "PATRQT"),
            ],
        )
        .ok(200);
    // A release names its purpose, with a v3 code.
    let reply = secure.call(
        &roi,
        "GET",
        "Patient/p1",
        &[("x-disclosure-recipient", "Someone")],
    );
    assert!(reply.outcome(400).contains("X-Purpose-Of-Use"));
    let reply = secure.call(
        &roi,
        "GET",
        "Patient/p1",
        &[
            ("x-disclosure-recipient", "Someone"),
            ("x-purpose-of-use", "because"),
        ],
    );
    reply.outcome(400);
    // Only release-of-information staff name recipients.
    secure.client("doc", "clinician", "user/*.cruds", &[]);
    let clinician = secure.token("doc");
    let reply = secure.call(&clinician, "GET", "Patient/p1", &LEGAL);
    assert!(reply.outcome(403).contains("roi_specialist"));
    // Reads without a recipient are not disclosures.
    secure.call(&roi, "GET", "Patient/p1", &[]).ok(200);

    let accounting = secure.accounting(&roi, "p1", "").ok(200);
    assert_eq!(total(&accounting), 1, "{accounting}");
    // The CapabilityStatement lists the operation on Patient.
    let metadata = secure.fhir.get("metadata").ok(200);
    let patient = metadata["rest"][0]["resource"]
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
            .any(|operation| operation["name"] == "accounting-of-disclosures")
    );
    let entries = entries(&accounting);
    let entry = &entries[0];
    assert_eq!(entry["recipient"], "Smith & Jones LLP");
    assert_eq!(entry["address"], "1 Court St, Springfield");
    assert_eq!(entry["purpose"], purpose("HLEGAL"));
    assert_eq!(
        entry["description"],
        "Condition (1), Observation (1), Patient (1)"
    );
    let date = entry["date"].as_str().unwrap();
    assert!(date >= before.as_str(), "{date} < {before}");
    // p2's data was not released.
    assert_eq!(total(&secure.accounting(&roi, "p2", "").ok(200)), 0);

    // The CLI lists the same, and with --all every recorded release.
    let listed = |all: bool| {
        let mut args = vec![
            "admin",
            "disclosures",
            "--database",
            &secure.database,
            "--patient",
            "p1",
        ];
        if all {
            args.push("--all");
        }
        let output = ok(&custodian(&args, None));
        output
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .collect::<Vec<_>>()
    };
    let accounted = listed(false);
    assert_eq!(accounted.len(), 1);
    assert_eq!(accounted[0]["recipient"], "Smith & Jones LLP");
    assert_eq!(accounted[0]["releasedBy"], "client roi");
    assert_eq!(
        accounted[0]["request"],
        format!("GET {}/Patient/p1/$everything", secure.fhir.base())
    );
    let all: Vec<String> = listed(true)
        .iter()
        .map(|line| line["purpose"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all, ["HLEGAL", "HPAYMT", "PATRQT"]);
}

/// Now as a FHIR instant, less a second (the server's clock, on this machine).
fn store_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let days = now / 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let seconds = now % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[test]
fn who_may_see_an_accounting_and_for_which_period() {
    let secure = Secure::start(&[]);
    secure.seed();
    secure.client("roi", "roi_specialist", "system/*.rs", &[]);
    let roi = secure.token("roi");
    secure
        .call(&roi, "GET", "Patient/p1/$everything", &LEGAL)
        .ok(200);

    for (id, role, scope, extra) in [
        ("him", "him_manager", "system/*.rs", vec![]),
        ("audit", "auditor", "system/*.rs", vec![]),
        ("app-p1", "patient", "patient/*.rs", vec!["--patient", "p1"]),
        ("doc", "clinician", "user/*.cruds", vec![]),
        ("coder", "coder", "system/*.rs", vec![]),
    ] {
        secure.client(id, role, scope, &extra);
    }
    for allowed in ["him", "audit", "app-p1"] {
        let token = secure.token(allowed);
        let accounting = secure.accounting(&token, "p1", "").ok(200);
        assert_eq!(total(&accounting), 1, "{allowed}");
    }
    for refused in ["doc", "coder"] {
        let token = secure.token(refused);
        secure.accounting(&token, "p1", "").outcome(403);
    }
    // A patient's app sees its own patient's accounting only.
    let patient_app = secure.token("app-p1");
    secure.accounting(&patient_app, "p2", "").outcome(404);
    // An unknown patient; a bad period.
    secure.accounting(&roi, "nobody", "").outcome(404);
    let year: i32 = store_now()[..4].parse().unwrap();
    let too_old = secure
        .accounting(&roi, "p1", &format!("?start={}-01-01", year - 7))
        .outcome(400);
    assert!(too_old.contains("six years"), "{too_old}");
    secure
        .accounting(
            &roi,
            "p1",
            &format!("?start={year}-01-01&end={}-01-01", year - 1),
        )
        .outcome(400);
    secure.accounting(&roi, "p1", "?start=soon").outcome(400);
    // A period before the release has none of it; one around it has it.
    let last_year = year - 1;
    let earlier = secure
        .accounting(
            &roi,
            "p1",
            &format!("?start={last_year}-01-01&end={last_year}-12-31"),
        )
        .ok(200);
    assert_eq!(total(&earlier), 0);
    assert_eq!(
        earlier["parameter"][1],
        json!({"name": "start", "valueInstant": format!("{last_year}-01-01T00:00:00.000000Z")})
    );
    let today = &store_now()[..10];
    let around = secure
        .accounting(&roi, "p1", &format!("?start={today}&end={today}"))
        .ok(200);
    assert_eq!(total(&around), 1);
}

#[test]
fn an_outside_recipients_reads_break_the_glass_and_exports_are_disclosures() {
    let secure = Secure::start(&[]);
    secure.seed();
    secure.client(
        "er-partner",
        "clinician",
        "user/*.rs",
        &[
            "--recipient-name",
            "County Emergency Services",
            "--recipient-address",
            "2 Station Rd",
        ],
    );
    let partner = secure.token("er-partner");
    // Break-the-glass: accounted. Treatment: recorded, not accounted.
    secure
        .call(
            &partner,
            "GET",
            "Observation/o1",
            &[
                ("x-purpose-of-use", "BTG"),
                ("x-break-glass-reason", "unconscious patient"),
            ],
        )
        .ok(200);
    secure
        .call(
            &partner,
            "GET",
            "Condition?subject=Patient/p1",
            &[("x-purpose-of-use", "TREAT")],
        )
        .ok(200);
    // Types outside every patient compartment disclose nobody.
    secure
        .call(&partner, "GET", "Practitioner/dr1", &[])
        .ok(200);
    // Reads in a batch are reads too, at the base with or without its slash.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Condition/c1"}},
        {"request": {"method": "GET", "url": "Practitioner/dr1"}},
    ]});
    let bearer = format!("Bearer {partner}");
    for base in [
        secure.fhir.base().to_string(),
        format!("{}/", secure.fhir.base()),
    ] {
        let reply = secure.fhir.request(
            "POST",
            &base,
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/fhir+json"),
                ("x-purpose-of-use", "PUBHLTH"),
            ],
            Some(&batch.to_string()),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
    }

    secure.client(
        "university",
        "roi_specialist",
        "system/*.rs",
        &["--recipient-name", "State University"],
    );
    let university = secure.token("university");
    let reply = secure.call(
        &university,
        "GET",
        "Patient/$export?_type=Patient,Observation",
        &[("prefer", "respond-async"), ("x-purpose-of-use", "HRESCH")],
    );
    assert_eq!(reply.status, 202, "{}", reply.text);
    let status = reply.header("content-location").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = secure.call(&university, "GET", &status, &[]);
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 202, "{}", reply.text);
        assert!(Instant::now() < deadline, "the export did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }

    let roi_secret = secure.client("roi", "roi_specialist", "system/*.rs", &[]);
    assert!(!roi_secret.is_empty());
    let roi = secure.token("roi");
    let p1 = entries(&secure.accounting(&roi, "p1", "").ok(200));
    let summary: Vec<(String, Value, String)> = p1
        .iter()
        .map(|entry| {
            (
                entry["recipient"].as_str().unwrap().to_string(),
                entry["purpose"].clone(),
                entry["description"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "County Emergency Services".to_string(),
                purpose("BTG"),
                "Observation (1)".to_string()
            ),
            (
                "County Emergency Services".to_string(),
                purpose("PUBHLTH"),
                "Condition (1)".to_string()
            ),
            (
                "County Emergency Services".to_string(),
                purpose("PUBHLTH"),
                "Condition (1)".to_string()
            ),
            (
                "State University".to_string(),
                purpose("HRESCH"),
                "Observation (1), Patient (1)".to_string()
            ),
        ]
    );
    assert_eq!(p1[0]["address"], "2 Station Rd");
    let p2 = entries(&secure.accounting(&roi, "p2", "").ok(200));
    assert_eq!(p2.len(), 1);
    assert_eq!(p2[0]["recipient"], "State University");
    assert_eq!(p2[0]["description"], "Observation (1), Patient (1)");
}

#[test]
fn export_jobs_answer_only_the_principal_that_started_them() {
    let secure = Secure::start(&[]);
    secure.seed();
    secure.client("roi-a", "roi_specialist", "system/*.rs", &[]);
    secure.client("roi-b", "roi_specialist", "system/*.rs", &[]);
    let (a, b) = (secure.token("roi-a"), secure.token("roi-b"));
    let reply = secure.call(
        &a,
        "GET",
        "Patient/$export?_type=Patient",
        &[("prefer", "respond-async")],
    );
    assert_eq!(reply.status, 202, "{}", reply.text);
    let status = reply.header("content-location").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let manifest = loop {
        // Another principal, even of the same role, does not see it.
        secure.call(&b, "GET", &status, &[]).outcome(404);
        let reply = secure.call(&a, "GET", &status, &[]);
        if reply.status == 200 {
            break reply.json();
        }
        assert_eq!(reply.status, 202, "{}", reply.text);
        assert!(Instant::now() < deadline, "the export did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let file = manifest["output"][0]["url"].as_str().unwrap().to_string();
    secure.call(&b, "GET", &file, &[]).outcome(404);
    let lines = secure.call(&a, "GET", &file, &[]);
    assert_eq!(lines.status, 200);
    assert_eq!(lines.text.lines().count(), 2);
    // Only its owner cancels it.
    secure.call(&b, "DELETE", &status, &[]).outcome(404);
    assert_eq!(secure.call(&a, "GET", &status, &[]).status, 200);
    assert_eq!(secure.call(&a, "DELETE", &status, &[]).status, 202);
    secure.call(&a, "GET", &status, &[]).outcome(404);
}

#[test]
fn users_log_in_with_the_password_grant_and_bad_passwords_say_nothing_more() {
    let secure = Secure::start(&[]);
    secure.seed();
    let secret = secure.client("workbench", "clinician", "user/*.cruds", &[]);
    let client = ("workbench", secret.as_str());
    secure.user("jdoe", "clinician", "correct horse battery");

    let reply = secure.login(client, "jdoe", "correct horse battery");
    let body = reply.ok(200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let token = body["access_token"].as_str().unwrap();
    let claims = claims(token);
    assert_eq!(claims["sub"], "jdoe");
    assert_eq!(claims["user"], "jdoe");
    assert_eq!(claims["client_id"], "workbench");
    assert_eq!(claims["roles"], json!(["clinician"]));
    // The token works, with the user's role: a clinician reads, and sees no billing.
    secure.call(token, "GET", "Patient/p1", &[]).ok(200);
    secure
        .call(token, "GET", "Claim?patient=p1", &[])
        .outcome(403);
    // Narrowed scope.
    let narrowed = secure
        .token_request(
            &[
                ("grant_type", "password"),
                ("username", "jdoe"),
                ("password", "correct horse battery"),
                ("scope", "user/Patient.rs"),
            ],
            client,
        )
        .ok(200);
    assert_eq!(narrowed["scope"], "user/Patient.rs");

    // A wrong password and an unknown user get the same answer.
    let wrong = secure.login(client, "jdoe", "wrong horse battery");
    assert_eq!(wrong.status, 400);
    let unknown = secure.login(client, "nobody", "wrong horse battery");
    assert_eq!(unknown.status, 400);
    assert_eq!(wrong.json()["error"], "invalid_grant");
    assert_eq!(wrong.text, unknown.text);
    // A bad client secret is the client's failure: 401.
    let reply = secure.login(
        ("workbench", "not the secret"),
        "jdoe",
        "correct horse battery",
    );
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"], "invalid_client");
    // Missing parts are malformed requests.
    let reply = secure.token_request(&[("grant_type", "password"), ("username", "jdoe")], client);
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "invalid_request");
}

#[test]
fn repeated_failed_logins_lock_the_user_name_for_a_while() {
    let secure = Secure::start(&["--login-failures-max", "3", "--login-lockout-s", "2"]);
    let secret = secure.client("workbench", "clinician", "user/*.cruds", &[]);
    let client = ("workbench", secret.as_str());
    secure.user("jdoe", "clinician", "correct horse battery");

    for _ in 0..3 {
        assert_eq!(
            secure.login(client, "jdoe", "guess guess guess").status,
            400
        );
    }
    // Locked: even the right password is refused, with the same answer.
    let locked = secure.login(client, "jdoe", "correct horse battery");
    assert_eq!(locked.status, 400);
    let wrong = secure.login(client, "jdoe", "guess guess guess");
    assert_eq!(locked.text, wrong.text);
    // Unknown names are counted the same way: nothing tells them apart.
    for _ in 0..4 {
        assert_eq!(
            secure.login(client, "nobody", "guess guess guess").status,
            400
        );
    }
    // Other users are not affected.
    secure.user("asmith", "clinician", "another long password");
    secure
        .login(client, "asmith", "another long password")
        .ok(200);
    // The lock ends.
    std::thread::sleep(Duration::from_millis(2_500));
    secure
        .login(client, "jdoe", "correct horse battery")
        .ok(200);
}
