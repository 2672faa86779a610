//! Authentication and authorisation through the real server and CLI: secure by default
//! (401 without a token, 403 without the permission), bad tokens refused without a
//! stack trace, the token endpoint's client-secret and `private_key_jwt` flows (with a
//! replayed assertion refused), scope enforcement, bundle entries checked one by one,
//! the role matrix of docs/security.md, an external identity provider, and
//! `--insecure-no-auth` refused off loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::fhir::{Fhir, Reply};
use common::{TestServer, database_url};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn random_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A server with authentication on, its database, and a P-256 signing key the test
/// holds too (`--signing-key`), so it can forge tokens of every kind.
struct Secure {
    fhir: Fhir,
    database: String,
    signing_key: EncodingKey,
    _dir: tempfile::TempDir,
}

fn signing_key_file(dir: &Path) -> (PathBuf, EncodingKey) {
    use p256::pkcs8::EncodePrivateKey;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    let key = p256::ecdsa::SigningKey::from_slice(&bytes).unwrap();
    let pem = key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
    let der = key.to_pkcs8_der().unwrap();
    let path = dir.join("signing-key.pem");
    std::fs::write(&path, pem.as_bytes()).unwrap();
    (path, EncodingKey::from_ec_der(der.as_bytes()))
}

impl Secure {
    fn start(extra: &[&str]) -> Secure {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let (key_path, signing_key) = signing_key_file(dir.path());
        let key_path = key_path.to_str().unwrap().to_string();
        let mut args = vec!["--signing-key", key_path.as_str()];
        args.extend_from_slice(extra);
        let server = TestServer::start_secure_in(&data, &args);
        let database = database_url(&data);
        Secure {
            fhir: Fhir::on(server),
            database,
            signing_key,
            _dir: dir,
        }
    }

    fn origin(&self) -> String {
        self.fhir.server.origin.clone()
    }

    /// Creates a client with a generated secret; returns the secret.
    fn client(&self, id: &str, roles: &[&str], scope: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "admin",
            "create-client",
            "--database",
            &self.database,
            "--id",
            id,
            "--scope",
            scope,
            "--generate-secret",
        ];
        for role in roles {
            args.extend(["--role", role]);
        }
        args.extend_from_slice(extra);
        ok(&custodian(&args, None))
    }

    /// An access token for `client` from `custodian admin token`.
    fn token(&self, client: &str, scope: Option<&str>) -> String {
        let mut args = vec![
            "admin",
            "token",
            "--database",
            &self.database,
            "--client",
            client,
            "--base-url",
            self.fhir.base(),
        ];
        if let Some(scope) = scope {
            args.extend(["--scope", scope]);
        }
        let key = self._dir.path().join("signing-key.pem");
        let key = key.to_str().unwrap().to_string();
        args.extend(["--signing-key", key.as_str()]);
        ok(&custodian(&args, None))
    }

    fn call(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let bearer = format!("Bearer {token}");
        let text = body.map(Value::to_string);
        let mut headers = vec![("authorization", bearer.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/fhir+json"));
        }
        self.fhir.request(method, path, &headers, text.as_deref())
    }

    /// POSTs a form to the token endpoint.
    fn token_request(&self, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Reply {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let authorization = basic.map(|(id, secret)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
            )
        });
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(value) = &authorization {
            headers.push(("authorization", value.as_str()));
        }
        let url = format!("{}/auth/token", self.origin());
        self.fhir.request("POST", &url, &headers, Some(&body))
    }

    /// A token signed with the server's key, with these claims.
    fn forge(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &self.signing_key).unwrap()
    }

    fn claims(&self) -> Value {
        json!({
            "iss": self.origin(),
            "sub": "forger",
            "aud": self.fhir.base(),
            "exp": now() + 300,
            "iat": now(),
            "nbf": now(),
            "jti": random_id(),
            "scope": "system/*.cruds",
            "client_id": "forger",
            "roles": ["admin"],
        })
    }
}

/// A 401 with a Bearer challenge and an OperationOutcome that leaks nothing.
fn assert_unauthorized(reply: &Reply, reason: &str) -> String {
    assert_eq!(reply.status, 401, "{reason}: {}", reply.text);
    let challenge = reply.header("www-authenticate").unwrap_or("");
    assert!(challenge.starts_with("Bearer"), "{reason}: {challenge}");
    let diagnostics = reply.outcome(401);
    for leak in ["panicked", "src/", "backtrace", "Error {", "RUST_"] {
        assert!(
            !reply.text.contains(leak),
            "{reason}: the answer leaks {leak:?}: {}",
            reply.text
        );
    }
    diagnostics
}

#[test]
fn open_endpoints_need_no_token_and_advertise_smart() {
    let secure = Secure::start(&[]);
    let health = secure
        .fhir
        .request("GET", &format!("{}/health", secure.origin()), &[], None);
    assert_eq!(health.status, 200);

    let metadata = secure.fhir.get("metadata").ok(200);
    let security = &metadata["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let oauth = &security["extension"][0];
    assert_eq!(
        oauth["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );
    assert_eq!(
        oauth["extension"][0]["valueUri"],
        format!("{}/auth/token", secure.origin())
    );

    for path in [
        format!("{}/.well-known/smart-configuration", secure.origin()),
        format!("{}/.well-known/smart-configuration", secure.fhir.base()),
    ] {
        let configuration = secure.fhir.request("GET", &path, &[], None).ok(200);
        assert_eq!(
            configuration["token_endpoint"],
            format!("{}/auth/token", secure.origin())
        );
        assert_eq!(
            configuration["grant_types_supported"],
            json!(["client_credentials"])
        );
        let capabilities = configuration["capabilities"].as_array().unwrap();
        for wanted in [
            "client-confidential-asymmetric",
            "client-confidential-symmetric",
            "permission-v2",
            "permission-v1",
        ] {
            assert!(capabilities.contains(&json!(wanted)), "{wanted}");
        }
        assert_eq!(
            configuration["token_endpoint_auth_signing_alg_values_supported"],
            json!(["RS384", "ES384"])
        );
    }
}

#[test]
fn every_other_endpoint_needs_a_token() {
    let secure = Secure::start(&[]);
    for (method, path) in [
        ("GET", "Patient"),
        ("GET", "Patient/1"),
        ("POST", "Patient"),
        ("GET", ""),
        ("GET", "_history"),
        ("GET", "$export"),
        ("GET", "Patient/1/$everything"),
        ("GET", "no/such/endpoint/at/all"),
    ] {
        let body = (method == "POST").then_some(r#"{"resourceType":"Patient"}"#);
        let reply = secure.fhir.request(
            method,
            path,
            &[("content-type", "application/fhir+json")],
            body,
        );
        let diagnostics = assert_unauthorized(&reply, &format!("{method} {path}"));
        assert!(diagnostics.contains("no bearer token"), "{diagnostics}");
    }
    // Not a bearer token at all.
    let reply = secure
        .fhir
        .request("GET", "Patient", &[("authorization", "Basic YTpi")], None);
    assert_unauthorized(&reply, "Basic");
}

#[test]
fn bad_tokens_get_401_and_say_why() {
    let secure = Secure::start(&[]);
    // The forged but valid token works: the test holds the server's key.
    let good = secure.forge(&secure.claims());
    assert_eq!(secure.call(&good, "GET", "Patient", None).status, 200);

    let mut expired = secure.claims();
    expired["exp"] = json!(now() - 600);
    expired["iat"] = json!(now() - 900);
    expired["nbf"] = json!(now() - 900);
    let mut early = secure.claims();
    early["nbf"] = json!(now() + 3600);
    let mut audience = secure.claims();
    audience["aud"] = json!("http://elsewhere.example/fhir");
    let mut issuer = secure.claims();
    issuer["iss"] = json!("http://elsewhere.example");
    let other_key = {
        let dir = tempfile::tempdir().unwrap();
        signing_key_file(dir.path()).1
    };
    let wrong_signature =
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &secure.claims(), &other_key).unwrap();
    let payload = URL_SAFE_NO_PAD.encode(secure.claims().to_string());
    let none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );
    let hs256 = {
        let key = EncodingKey::from_secret(b"a public key is no secret").unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &secure.claims(), &key).unwrap()
    };
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = {
        let mut claims = secure.claims();
        claims["roles"] = json!(["admin", "auditor"]);
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        )
    };
    for (name, token, reason) in [
        ("expired", secure.forge(&expired), "expired"),
        ("not yet valid", secure.forge(&early), "not valid yet"),
        ("wrong audience", secure.forge(&audience), "audience"),
        ("wrong issuer", secure.forge(&issuer), "issuer"),
        ("wrong signature", wrong_signature, "signature"),
        ("tampered claims", tampered, "signature"),
        ("alg=none", none, "algorithm"),
        ("HS256", hs256, "algorithm"),
        ("malformed", "not.a-jwt".to_string(), "malformed"),
        ("garbage", "%%%".to_string(), "malformed"),
    ] {
        let reply = secure.call(&token, "GET", "Patient", None);
        let diagnostics = assert_unauthorized(&reply, name);
        assert!(
            diagnostics.contains(reason),
            "{name}: {diagnostics:?} should mention {reason:?}"
        );
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .contains("invalid_token"),
            "{name}"
        );
    }
}

#[test]
fn client_secret_flows_issue_tokens_for_the_allowed_scopes() {
    let secure = Secure::start(&[]);
    let secret = secure.client("app", &["admin"], "system/*.rs system/Patient.c", &[]);
    assert!(secret.len() >= 32, "{secret}");
    // A secret from standard input.
    ok(&custodian(
        &[
            "admin",
            "create-client",
            "--database",
            &secure.database,
            "--id",
            "piped",
            "--role",
            "clinician",
            "--scope",
            "user/*.rs",
            "--secret-stdin",
        ],
        Some("a piped secret of some length\n"),
    ));

    let basic = secure.token_request(
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.rs system/Observation.c"),
        ],
        Some(("app", &secret)),
    );
    let answer = basic.ok(200);
    assert_eq!(basic.header("cache-control"), Some("no-store"));
    assert_eq!(answer["token_type"], "bearer");
    // Observation.c is not allowed: granted is what the allowed scopes cover.
    assert_eq!(answer["scope"], "system/Patient.rs");
    assert!(answer["expires_in"].as_u64().unwrap() <= 900);
    let token = answer["access_token"].as_str().unwrap();
    assert_eq!(secure.call(token, "GET", "Patient", None).status, 200);

    let post = secure
        .token_request(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "piped"),
                ("client_secret", "a piped secret of some length"),
            ],
            None,
        )
        .ok(200);
    assert_eq!(post["scope"], "user/*.rs");

    // Wrong secret, unknown client: invalid_client, 401.
    for (id, secret) in [("app", "wrong secret value"), ("nobody", "whatever secret")] {
        let reply =
            secure.token_request(&[("grant_type", "client_credentials")], Some((id, secret)));
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert_eq!(reply.json()["error"], "invalid_client");
    }
    // Nothing allowed asked for: invalid_scope, 400.
    let reply = secure.token_request(
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Observation.d"),
        ],
        Some(("app", &secret)),
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.json()["error"], "invalid_scope");
    let reply = secure.token_request(
        &[("grant_type", "urn:ietf:params:oauth:grant-type:device_code")],
        Some(("app", &secret)),
    );
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "unsupported_grant_type");
}

/// A client key pair: the JWK set file to register and the key to sign assertions with.
fn client_key(dir: &Path, algorithm: Algorithm) -> (PathBuf, EncodingKey, String) {
    let encoding = match algorithm {
        Algorithm::ES384 => {
            use p384::pkcs8::EncodePrivateKey;
            let mut bytes = [0u8; 48];
            getrandom::fill(&mut bytes).unwrap();
            let key = p384::ecdsa::SigningKey::from_slice(&bytes).unwrap();
            EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes())
        }
        _ => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
            EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes())
        }
    };
    let kid = random_id();
    let mut jwk = Jwk::from_encoding_key(&encoding, algorithm).unwrap();
    jwk.common.key_id = Some(kid.clone());
    let path = dir.join(format!("{kid}.jwks.json"));
    std::fs::write(
        &path,
        serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap(),
    )
    .unwrap();
    (path, encoding, kid)
}

fn assertion(
    key: &EncodingKey,
    algorithm: Algorithm,
    kid: &str,
    client: &str,
    audience: &str,
) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_string());
    let claims = json!({
        "iss": client,
        "sub": client,
        "aud": audience,
        "exp": now() + 240,
        "jti": random_id(),
    });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

#[test]
fn private_key_jwt_with_es384_and_rs384_and_replays_refused() {
    let secure = Secure::start(&[]);
    let keys = tempfile::tempdir().unwrap();
    let token_url = format!("{}/auth/token", secure.origin());
    for algorithm in [Algorithm::ES384, Algorithm::RS384] {
        let client = format!("backend-{algorithm:?}").to_lowercase();
        let (jwks, key, kid) = client_key(keys.path(), algorithm);
        ok(&custodian(
            &[
                "admin",
                "create-client",
                "--database",
                &secure.database,
                "--id",
                &client,
                "--role",
                "roi_specialist",
                "--scope",
                "system/*.rs",
                "--jwks",
                jwks.to_str().unwrap(),
            ],
            None,
        ));
        let signed = assertion(&key, algorithm, &kid, &client, &token_url);
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", signed.as_str()),
        ];
        let answer = secure.token_request(&form, None).ok(200);
        let token = answer["access_token"].as_str().unwrap();
        assert_eq!(
            secure.call(token, "GET", "Patient", None).status,
            200,
            "{algorithm:?}"
        );
        // The same assertion again: its jti was used.
        let replay = secure.token_request(&form, None);
        assert_eq!(replay.status, 401, "{algorithm:?}: {}", replay.text);
        assert_eq!(replay.json()["error"], "invalid_client");
        assert!(replay.text.contains("jti"), "{}", replay.text);

        // An assertion for another audience.
        let elsewhere = assertion(&key, algorithm, &kid, &client, "http://elsewhere/token");
        let form = [
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", elsewhere.as_str()),
        ];
        let reply = secure.token_request(&form, None);
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert_eq!(reply.json()["error"], "invalid_client");
    }
}

#[test]
fn scopes_limit_what_a_token_may_do() {
    let secure = Secure::start(&[]);
    secure.client("admin", &["admin"], "system/*.cruds", &[]);
    secure.client(
        "app",
        &["admin"],
        "patient/Observation.rs system/Patient.r",
        &["--patient", "p1"],
    );
    let admin = secure.token("admin", None);
    secure
        .call(
            &admin,
            "PUT",
            "Patient/p1",
            Some(&json!({"resourceType": "Patient", "id": "p1"})),
        )
        .ok(201);
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": "Patient/p1"},
    });
    secure
        .call(&admin, "POST", "Observation", Some(&observation))
        .ok(201);

    let observations = secure.token("app", Some("patient/Observation.rs"));
    assert_eq!(
        secure
            .call(&observations, "GET", "Observation", None)
            .status,
        200
    );
    let denied = secure.call(&observations, "POST", "Observation", Some(&observation));
    let diagnostics = denied.outcome(403);
    assert!(diagnostics.contains("scope"), "{diagnostics}");
    assert_eq!(
        secure.call(&observations, "GET", "Patient/p1", None).status,
        403
    );

    let patients = secure.token("app", Some("system/Patient.r"));
    assert_eq!(
        secure.call(&patients, "GET", "Patient/p1", None).status,
        200
    );
    assert_eq!(
        secure.call(&patients, "GET", "Observation", None).status,
        403
    );
    // `r` is not `s`.
    assert_eq!(
        secure.call(&patients, "GET", "Patient?name=x", None).status,
        403
    );
}

#[test]
fn searches_check_every_type_they_reach() {
    let secure = Secure::start(&[]);
    secure.client("app", &["admin"], "system/Patient.rs", &[]);
    let token = secure.token("app", None);
    assert_eq!(
        secure.call(&token, "GET", "?_type=Patient", None).status,
        200
    );
    assert_eq!(
        secure
            .call(&token, "GET", "?_type=Patient,Observation", None)
            .status,
        403
    );
    // No `_type`: every type.
    let reply = secure.call(&token, "GET", "", None);
    assert!(reply.outcome(403).contains("_type"), "{}", reply.text);
    assert_eq!(
        secure
            .call(
                &token,
                "GET",
                "Patient?_revinclude=Observation:subject",
                None
            )
            .status,
        403
    );
    assert_eq!(
        secure
            .call(
                &token,
                "GET",
                "Patient?_has:Observation:subject:code=x",
                None
            )
            .status,
        403
    );
    assert_eq!(
        secure
            .call(&token, "GET", "Patient/p1/Observation", None)
            .status,
        403
    );
}

#[test]
fn bundle_entries_are_checked_one_by_one() {
    let secure = Secure::start(&[]);
    secure.client(
        "app",
        &["clinician"],
        "system/Observation.crs system/Patient.rs",
        &[],
    );
    let token = secure.token("app", None);
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pulse"},
    });
    let entries = json!([
        {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
    ]);
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let reply = secure.call(&token, "POST", "", Some(&transaction));
    let diagnostics = reply.outcome(403);
    assert!(diagnostics.contains("Bundle.entry[1]"), "{diagnostics}");
    // Refused whole: the allowed entry was not written either.
    let found = secure
        .call(&token, "GET", "Observation?_summary=count", None)
        .ok(200);
    assert_eq!(found["total"], 0);

    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
    let answer = secure.call(&token, "POST", "", Some(&batch)).ok(200);
    assert_eq!(answer["entry"][0]["response"]["status"], "201 Created");
    assert!(
        answer["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("403"),
        "{answer}"
    );
}

/// The matrix of docs/security.md, for the types below: the letters each role has.
const TYPES: [&str; 6] = [
    "Observation",
    "Condition",
    "Patient",
    "Account",
    "Consent",
    "AuditEvent",
];
const MATRIX: [(&str, [&str; 6], bool, bool); 7] = [
    // role, letters per type above, may $export, may $everything
    (
        "admin",
        ["cruds", "cruds", "cruds", "cruds", "cruds", "rs"],
        true,
        true,
    ),
    (
        "him_manager",
        ["cruds", "cruds", "cruds", "cruds", "cruds", ""],
        true,
        true,
    ),
    ("coder", ["rs", "crus", "rs", "crus", "rs", ""], false, true),
    (
        "roi_specialist",
        ["rs", "rs", "rs", "rs", "crus", ""],
        true,
        true,
    ),
    (
        "clinician",
        ["crus", "crus", "crus", "", "rs", ""],
        false,
        true,
    ),
    ("auditor", ["", "", "rs", "", "rs", "rs"], false, false),
    ("patient", ["rs", "rs", "rs", "rs", "rs", ""], false, true),
];

#[test]
fn every_role_gets_what_the_matrix_says_and_nothing_more() {
    let secure = Secure::start(&[]);
    secure.client("setup", &["admin"], "system/*.cruds", &[]);
    let setup = secure.token("setup", None);
    secure
        .call(
            &setup,
            "PUT",
            "Patient/p1",
            Some(&json!({"resourceType": "Patient", "id": "p1"})),
        )
        .ok(201);
    for (role, letters, may_export, may_everything) in MATRIX {
        // Scopes as wide as the role's context allows: what is left is the role.
        if role == "patient" {
            secure.client(role, &[role], "patient/*.cruds", &["--patient", "p1"]);
        } else {
            secure.client(role, &[role], "system/*.cruds", &[]);
        }
        let token = secure.token(role, None);
        for (resource_type, allowed) in TYPES.iter().zip(letters) {
            let body = json!({"resourceType": resource_type, "id": "x1"});
            for letter in ['c', 'r', 'u', 's', 'd'] {
                let (method, path, body) = match letter {
                    'c' => ("POST", resource_type.to_string(), Some(&body)),
                    'r' => ("GET", format!("{resource_type}/x1"), None),
                    'u' => ("PUT", format!("{resource_type}/x1"), Some(&body)),
                    's' => ("GET", format!("{resource_type}?_count=1"), None),
                    _ => ("DELETE", format!("{resource_type}/gone"), None),
                };
                let reply = secure.call(&token, method, &path, body);
                let expected = allowed.contains(letter);
                // Nobody changes the audit trail through the API: 405 for every role.
                let refused =
                    reply.status == 403 || (*resource_type == "AuditEvent" && reply.status == 405);
                assert_eq!(
                    !refused, expected,
                    "{role} {letter} on {resource_type}: {} {}",
                    reply.status, reply.text
                );
                assert_ne!(reply.status, 401, "{role}: {}", reply.text);
            }
            // History follows read (instance) and search (type).
            let instance =
                secure.call(&token, "GET", &format!("{resource_type}/x1/_history"), None);
            assert_eq!(
                instance.status != 403,
                allowed.contains('r'),
                "{role} history {resource_type}"
            );
            let vread = secure.call(
                &token,
                "GET",
                &format!("{resource_type}/x1/_history/1"),
                None,
            );
            assert_eq!(
                vread.status != 403,
                allowed.contains('r'),
                "{role} vread {resource_type}"
            );
        }
        let export = secure.fhir.request(
            "GET",
            "$export?_type=Patient",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("prefer", "respond-async"),
            ],
            None,
        );
        assert_eq!(
            export.status != 403,
            may_export,
            "{role} $export: {}",
            export.text
        );
        let everything = secure.call(&token, "GET", "Patient/p1/$everything", None);
        assert_eq!(
            everything.status != 403,
            may_everything,
            "{role} $everything: {}",
            everything.text
        );
        if may_everything {
            // Only the types the role may search come back.
            for entry in everything.ok(200)["entry"].as_array().into_iter().flatten() {
                assert_ne!(entry["resource"]["resourceType"], "AuditEvent", "{role}");
            }
        }
    }
    // Nobody writes the audit trail, not even an admin: the method is not allowed.
    let admin = secure.token("admin", None);
    let event = json!({"resourceType": "AuditEvent"});
    assert_eq!(
        secure
            .call(&admin, "POST", "AuditEvent", Some(&event))
            .status,
        405
    );
    assert_eq!(
        secure.call(&admin, "DELETE", "AuditEvent/a", None).status,
        405
    );
}

#[test]
fn an_external_identity_providers_tokens_are_accepted() {
    let keys = tempfile::tempdir().unwrap();
    let (jwks, key, kid) = client_key(keys.path(), Algorithm::ES384);
    let jwks = jwks.to_str().unwrap().to_string();
    let secure = Secure::start(&[
        "--external-issuer",
        "https://idp.example",
        "--external-jwks",
        &jwks,
        "--external-role-claim",
        "custodian_roles",
    ]);
    let mut header = Header::new(Algorithm::ES384);
    header.kid = Some(kid);
    let claims = |issuer: &str, roles: Value| {
        json!({
            "iss": issuer,
            "sub": "jdoe",
            "aud": secure.fhir.base(),
            "exp": now() + 300,
            "scp": ["user/*.rs"],
            "custodian_roles": roles,
        })
    };
    let token = jsonwebtoken::encode(
        &header,
        &claims("https://idp.example", json!(["clinician"])),
        &key,
    )
    .unwrap();
    assert_eq!(secure.call(&token, "GET", "Observation", None).status, 200);
    // The scope allows reading only; the role does not reach AuditEvent.
    assert_eq!(
        secure
            .call(
                &token,
                "POST",
                "Observation",
                Some(&json!({"resourceType": "Observation"}))
            )
            .status,
        403
    );
    assert_eq!(secure.call(&token, "GET", "AuditEvent", None).status, 403);
    // An unknown role grants nothing.
    let token = jsonwebtoken::encode(
        &header,
        &claims("https://idp.example", json!("superuser")),
        &key,
    )
    .unwrap();
    assert_eq!(secure.call(&token, "GET", "Observation", None).status, 403);
    // Another issuer with the same key is not trusted.
    let token = jsonwebtoken::encode(
        &header,
        &claims("https://other.example", json!(["clinician"])),
        &key,
    )
    .unwrap();
    assert_unauthorized(
        &secure.call(&token, "GET", "Observation", None),
        "other issuer",
    );
}

#[test]
fn an_external_key_rotated_in_is_trusted_without_a_restart() {
    let keys = tempfile::tempdir().unwrap();
    let (first_set, first_key, first_kid) = client_key(keys.path(), Algorithm::ES384);
    let (second_set, second_key, second_kid) = client_key(keys.path(), Algorithm::ES384);
    let served = keys.path().join("idp.jwks.json");
    std::fs::copy(&first_set, &served).unwrap();
    let secure = Secure::start(&[
        "--external-issuer",
        "https://idp.example",
        "--external-jwks",
        served.to_str().unwrap(),
        "--external-jwks-refresh-s",
        "1",
    ]);
    let token = |key: &EncodingKey, kid: &str, subject: &str| {
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(kid.to_string());
        let claims = json!({
            "iss": "https://idp.example",
            "sub": subject,
            "aud": secure.fhir.base(),
            "exp": now() + 300,
            "scp": "user/*.rs",
            "roles": ["clinician"],
        });
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let status = |token: &str| secure.call(token, "GET", "Observation", None).status;
    assert_eq!(status(&token(&first_key, &first_kid, "a1")), 200);
    assert_eq!(status(&token(&second_key, &second_kid, "b1")), 401);
    // The provider rotates: its set now holds only the second key.
    std::fs::copy(&second_set, &served).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut attempt = 0;
    while status(&token(&second_key, &second_kid, &format!("b{attempt}"))) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated key was not trusted within 15 s"
        );
        attempt += 1;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A token of the retired key, never seen before, is refused.
    assert_eq!(status(&token(&first_key, &first_kid, "a2")), 401);
}

#[test]
fn insecure_no_auth_is_for_loopback_only_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().display());
    let refused = custodian(
        &[
            "serve",
            "--insecure-no-auth",
            "--listen",
            "0.0.0.0:0",
            "--database",
            &database,
        ],
        None,
    );
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("loopback"), "{message}");

    // On loopback it starts, and says loudly that authentication is off.
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args([
            "serve",
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
        ])
        .env("CUSTODIAN_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let mut warned = false;
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
        warned |= line.contains("AUTHENTICATION IS OFF");
        if line.contains("listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "no warning that authentication is off");
}

#[test]
fn a_server_without_clients_says_how_to_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
        .env("CUSTODIAN_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut told = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        told |= line.contains("custodian admin create-client");
        if line.contains("listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(told, "serve did not say how to create a client");
}

#[test]
fn grants_and_revocations_change_what_new_tokens_may_do() {
    let secure = Secure::start(&[]);
    secure.client("app", &["clinician"], "system/Patient.rs", &[]);
    let token = secure.token("app", None);
    assert_eq!(secure.call(&token, "GET", "Observation", None).status, 403);

    let grant = |what: &str, args: &[&str]| {
        let mut all = vec![
            what,
            "--database",
            secure.database.as_str(),
            "--client",
            "app",
        ];
        all.extend_from_slice(args);
        let mut command = vec!["admin"];
        command.extend(all);
        ok(&custodian(&command, None));
    };
    grant("grant", &["--scope", "system/Observation.rs"]);
    let token = secure.token("app", None);
    assert_eq!(secure.call(&token, "GET", "Observation", None).status, 200);
    // The role, not only the scope: an auditor reads no Observations.
    grant("revoke", &["--role", "clinician"]);
    grant("grant", &["--role", "auditor"]);
    let token = secure.token("app", None);
    assert_eq!(secure.call(&token, "GET", "Observation", None).status, 403);
    assert_eq!(secure.call(&token, "GET", "Patient", None).status, 200);
    grant("revoke", &["--scope", "system/Patient.rs"]);
    let token = secure.token("app", None);
    assert_eq!(secure.call(&token, "GET", "Patient", None).status, 403);

    // Unknown clients, roles and scopes are refused with a message.
    let refused = custodian(
        &[
            "admin",
            "grant",
            "--database",
            &secure.database,
            "--client",
            "nobody",
            "--role",
            "coder",
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not found"));
    let refused = custodian(
        &[
            "admin",
            "grant",
            "--database",
            &secure.database,
            "--client",
            "app",
            "--scope",
            "root/*.*",
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown scope"));
}

#[test]
fn users_are_created_with_a_password_from_standard_input_only() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_url(dir.path());
    let create = |username: &str, password: &str| {
        custodian(
            &[
                "admin",
                "create-user",
                "--database",
                &database,
                "--username",
                username,
                "--role",
                "patient",
                "--patient",
                "p1",
            ],
            Some(password),
        )
    };
    ok(&create("jdoe", "a long enough password\n"));
    let again = create("jdoe", "a long enough password\n");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let short = create("short", "tiny\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("12 characters"));
    // There is no --password flag: it would show in process lists.
    let flag = custodian(
        &[
            "admin",
            "create-user",
            "--database",
            &database,
            "--username",
            "x",
            "--role",
            "patient",
            "--password",
            "secret",
        ],
        None,
    );
    assert!(!flag.status.success());
}

#[test]
fn export_from_a_server_takes_the_token_from_the_environment() {
    let secure = Secure::start(&[]);
    secure.client("roi", &["roi_specialist"], "system/*.rs", &[]);
    secure.client("setup", &["admin"], "system/*.cruds", &[]);
    let setup = secure.token("setup", None);
    secure
        .call(
            &setup,
            "PUT",
            "Patient/p1",
            Some(&json!({"resourceType": "Patient", "id": "p1"})),
        )
        .ok(201);
    let out = tempfile::tempdir().unwrap();
    let export = |token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_custodian"));
        command
            .args([
                "export",
                "--server",
                secure.fhir.base(),
                "--type",
                "Patient",
                "--out",
            ])
            .arg(out.path().join(random_id()))
            .env("CUSTODIAN_LOG", "warn")
            .env_remove("CUSTODIAN_TOKEN")
            .stdin(Stdio::null());
        if let Some(token) = token {
            command.env("CUSTODIAN_TOKEN", token);
        }
        command.output().unwrap()
    };
    assert!(!export(None).status.success(), "exported without a token");
    let reader = secure.token("roi", None);
    let done = export(Some(&reader));
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    // A clinician may not release data in bulk.
    secure.client("doc", &["clinician"], "system/*.rs", &[]);
    let clinician = secure.token("doc", None);
    assert!(!export(Some(&clinician)).status.success());
}

#[test]
fn head_is_checked_like_get() {
    let secure = Secure::start(&[]);
    secure.client("app", &["clinician"], "system/Patient.rs", &[]);
    let token = secure.token("app", None);
    assert_eq!(
        secure.call(&token, "HEAD", "Observation/x", None).status,
        403
    );
    assert_eq!(secure.call(&token, "HEAD", "Observation", None).status, 403);
    assert_ne!(secure.call(&token, "HEAD", "Patient/x", None).status, 403);
}

#[test]
fn a_patient_token_sees_only_its_patients_compartment() {
    let secure = Secure::start(&[]);
    secure.client("admin", &["admin"], "system/*.cruds", &[]);
    secure.client("app", &["patient"], "patient/*.rs", &["--patient", "p1"]);
    let admin = secure.token("admin", None);
    for id in ["p1", "p2"] {
        secure
            .call(
                &admin,
                "PUT",
                &format!("Patient/{id}"),
                Some(&json!({"resourceType": "Patient", "id": id, "name": [{"family": "Same"}]})),
            )
            .ok(201);
        secure
            .call(
                &admin,
                "PUT",
                &format!("Observation/o-{id}"),
                Some(&json!({
                    "resourceType": "Observation",
                    "id": format!("o-{id}"),
                    "status": "final",
                    "code": {"text": "pulse"},
                    "subject": {"reference": format!("Patient/{id}")},
                    "performer": [{"reference": "Practitioner/d1"}],
                })),
            )
            .ok(201);
    }
    secure
        .call(
            &admin,
            "PUT",
            "Practitioner/d1",
            Some(&json!({"resourceType": "Practitioner", "id": "d1"})),
        )
        .ok(201);
    let token = secure.token("app", None);
    let get = |path: &str| secure.call(&token, "GET", path, None);

    // Reads: the own record and what refers to it; the other patient's are not there.
    get("Patient/p1").ok(200);
    get("Observation/o-p1").ok(200);
    get("Practitioner/d1").ok(200);
    assert_eq!(get("Patient/p2").status, 404);
    assert_eq!(get("Observation/o-p2").status, 404);
    assert_eq!(get("Observation/o-p2/_history/1").status, 404);

    // Searches, includes and revincludes keep to the compartment, and so do counts.
    let ids_of = |path: &str| -> Vec<String> {
        let bundle = get(path).ok(200);
        let mut ids: Vec<String> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|entry| {
                format!(
                    "{}/{}",
                    entry["resource"]["resourceType"].as_str().unwrap_or(""),
                    entry["resource"]["id"].as_str().unwrap_or("")
                )
            })
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids_of("Patient?family=Same"), ["Patient/p1"]);
    assert_eq!(ids_of("Observation"), ["Observation/o-p1"]);
    assert_eq!(
        ids_of("Patient?_revinclude=Observation:subject"),
        ["Observation/o-p1", "Patient/p1"]
    );
    assert_eq!(
        ids_of("Observation?_include=Observation:subject&_include=Observation:performer"),
        ["Observation/o-p1", "Patient/p1", "Practitioner/d1"]
    );
    assert_eq!(
        ids_of("Observation?subject=Patient/p2"),
        Vec::<String>::new()
    );
    assert_eq!(
        ids_of("Patient?_has:Observation:subject:code:text=pulse"),
        ["Patient/p1"]
    );
    let counted = get("Observation?_summary=count").ok(200);
    assert_eq!(counted["total"], 1);
    assert_eq!(
        ids_of("?_type=Patient,Observation"),
        ["Observation/o-p1", "Patient/p1"]
    );
    // The other patient's compartment, asked for by name, is empty too.
    assert_eq!(ids_of("Patient/p2/Observation"), Vec::<String>::new());
}

#[test]
fn a_patient_tokens_history_and_everything_keep_to_its_compartment() {
    let secure = Secure::start(&[]);
    secure.client("admin", &["admin"], "system/*.cruds", &[]);
    secure.client("app", &["patient"], "patient/*.rs", &["--patient", "p1"]);
    let admin = secure.token("admin", None);
    for id in ["p1", "p2"] {
        secure
            .call(
                &admin,
                "PUT",
                &format!("Patient/{id}"),
                Some(&json!({"resourceType": "Patient", "id": id})),
            )
            .ok(201);
        secure
            .call(
                &admin,
                "PUT",
                &format!("Condition/c-{id}"),
                Some(&json!({
                    "resourceType": "Condition",
                    "id": format!("c-{id}"),
                    "subject": {"reference": format!("Patient/{id}")},
                })),
            )
            .ok(201);
    }
    let token = secure.token("app", None);
    let get = |path: &str| secure.call(&token, "GET", path, None);
    assert_eq!(get("Condition/c-p1/_history").ok(200)["total"], 1);
    assert_eq!(get("Condition/c-p2/_history").status, 404);
    assert_eq!(get("Patient/p2/_history").status, 404);
    assert_eq!(get("Condition/_history").status, 403);
    assert_eq!(get("_history").status, 403);
    let everything = get("Patient/p1/$everything").ok(200);
    let ids: Vec<&str> = everything["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["resource"]["id"].as_str())
        .collect();
    assert!(ids.contains(&"c-p1") && !ids.contains(&"c-p2"), "{ids:?}");
    assert_eq!(get("Patient/p2/$everything").status, 404);

    // A batch's reads and searches keep to the compartment as well.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Condition/c-p1"}},
        {"request": {"method": "GET", "url": "Condition/c-p2"}},
        {"request": {"method": "GET", "url": "Condition"}},
    ]});
    let answer = secure.call(&token, "POST", "", Some(&batch)).ok(200);
    assert_eq!(answer["entry"][0]["response"]["status"], "200 OK");
    assert!(
        answer["entry"][1]["response"]["status"]
            .as_str()
            .is_some_and(|status| status.starts_with("404")),
        "{answer}"
    );
    assert_eq!(answer["entry"][2]["resource"]["total"], 1, "{answer}");

    // No bulk export for a token limited to one patient, at any level.
    for path in ["$export", "Patient/$export", "Patient/p1/$export"] {
        let reply = secure.fhir.request(
            "GET",
            path,
            &[
                ("authorization", format!("Bearer {token}").as_str()),
                ("prefer", "respond-async"),
            ],
            None,
        );
        assert_eq!(reply.status, 403, "{path}");
    }
}

#[test]
fn merges_are_for_him_and_their_records_name_who_asked() {
    let secure = Secure::start(&[]);
    secure.client("admin", &["admin"], "system/*.cruds", &[]);
    secure.client("him", &["him_manager"], "system/*.cruds", &[]);
    secure.client("doctor", &["clinician"], "system/*.cruds", &[]);
    let admin = secure.token("admin", None);
    for id in ["a", "b"] {
        secure
            .call(
                &admin,
                "PUT",
                &format!("Patient/{id}"),
                Some(&json!({"resourceType": "Patient", "id": id,
                    "name": [{"family": "Lovelace", "given": ["Ada"]}], "birthDate": "1815-12-10"})),
            )
            .ok(201);
    }
    let merge = json!({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": "Patient/a"}},
        {"name": "target-patient", "valueReference": {"reference": "Patient/b"}},
    ]});
    let doctor = secure.token("doctor", None);
    let refused = secure.call(&doctor, "POST", "Patient/$merge", Some(&merge));
    assert_eq!(refused.status, 403);
    let him = secure.token("him", None);
    secure
        .call(&him, "POST", "Patient/$merge", Some(&merge))
        .ok(200);
    let events = secure
        .call(&admin, "GET", "AuditEvent?entity=Patient/a", None)
        .ok(200);
    let agents: Vec<&str> = events["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entry| entry["resource"]["agent"].as_array().into_iter().flatten())
        .filter_map(|agent| agent["who"]["display"].as_str())
        .collect();
    assert!(agents.contains(&"him"), "{agents:?}");
}
