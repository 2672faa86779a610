//! The FHIR R4 (4.0.1) RESTful API, driven over HTTP against the real `custodian serve`
//! binary: status codes, headers and bodies of every supported interaction.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Barrier;

use common::{TestServer, agent};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

const FHIR_JSON: &str = "application/fhir+json";
const JSON_PATCH: &str = "application/json-patch+json";

/// One HTTP answer, fully read.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    fn etag(&self) -> Option<&str> {
        self.header("etag")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {:?}", self.text))
    }

    fn assert_status(&self, status: u16) -> &Reply {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts a FHIR JSON content type.
    fn assert_fhir_json(&self) -> &Reply {
        let content_type = self.header("content-type").unwrap_or("");
        assert!(
            content_type.starts_with(FHIR_JSON),
            "Content-Type {content_type:?} is not {FHIR_JSON}"
        );
        self
    }

    /// Asserts the status and an OperationOutcome body with an error issue; returns the
    /// first issue's code.
    fn assert_outcome(&self, status: u16) -> String {
        self.assert_status(status).assert_fhir_json();
        let body = self.json();
        assert_eq!(body["resourceType"], "OperationOutcome", "{}", self.text);
        let issue = &body["issue"][0];
        assert!(
            matches!(issue["severity"].as_str(), Some("error" | "fatal")),
            "{}",
            self.text
        );
        assert!(issue["diagnostics"].as_str().is_some_and(|d| !d.is_empty()));
        issue["code"].as_str().unwrap().to_string()
    }

    fn assert_outcome_code(&self, status: u16, code: &str) {
        assert_eq!(self.assert_outcome(status), code, "{}", self.text);
    }
}

/// A fresh server and an agent to talk to it.
struct Fhir {
    server: TestServer,
    _dir: Option<tempfile::TempDir>,
    http: ureq::Agent,
}

impl Fhir {
    fn start() -> Fhir {
        let (server, dir) = TestServer::start();
        Fhir {
            server,
            _dir: Some(dir),
            http: agent(),
        }
    }

    fn start_with(dir: &tempfile::TempDir, extra: &[&str]) -> Fhir {
        Fhir {
            server: TestServer::start_in(dir.path(), extra),
            _dir: None,
            http: agent(),
        }
    }

    fn base(&self) -> &str {
        &self.server.base
    }

    /// `path` is relative to the FHIR base, or an absolute URL.
    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") {
            path.to_string()
        } else if let Some(rooted) = path.strip_prefix('/') {
            format!("{}/{rooted}", self.server.origin)
        } else {
            format!("{}/{path}", self.server.base)
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = match body {
            Some(body) => self.http.run(builder.body(body.to_vec()).unwrap()),
            None => self.http.run(builder.body(()).unwrap()),
        }
        .unwrap_or_else(|error| panic!("{method} {path} failed: {error}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap();
        Reply {
            status,
            headers,
            text,
        }
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], None)
    }

    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers, None)
    }

    fn post(&self, path: &str, body: &str) -> Reply {
        self.post_with(path, &[], body)
    }

    fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut all = vec![("content-type", FHIR_JSON)];
        all.extend_from_slice(headers);
        self.request("POST", path, &all, Some(body.as_bytes()))
    }

    fn put(&self, path: &str, body: &str) -> Reply {
        self.put_with(path, &[], body)
    }

    fn put_with(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut all = vec![("content-type", FHIR_JSON)];
        all.extend_from_slice(headers);
        self.request("PUT", path, &all, Some(body.as_bytes()))
    }

    fn patch(&self, path: &str, body: &str) -> Reply {
        self.patch_with(path, &[], body)
    }

    fn patch_with(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut all = vec![("content-type", JSON_PATCH)];
        all.extend_from_slice(headers);
        self.request("PATCH", path, &all, Some(body.as_bytes()))
    }

    fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, &[], None)
    }

    /// Creates a resource and returns its server-assigned id.
    fn create(&self, resource: &Value) -> String {
        let resource_type = resource["resourceType"].as_str().unwrap();
        let reply = self.post(resource_type, &resource.to_string());
        reply.assert_status(201);
        reply.json()["id"].as_str().unwrap().to_string()
    }

    /// Updates `{type}/{id}` with `resource` (id filled in) and returns the reply.
    fn update(&self, resource_type: &str, id: &str, mut resource: Value) -> Reply {
        resource["resourceType"] = json!(resource_type);
        resource["id"] = json!(id);
        self.put(&format!("{resource_type}/{id}"), &resource.to_string())
    }

    /// Every entry of a history, following `next` links; also returns the pages.
    fn history_pages(&self, path: &str) -> Vec<Value> {
        let mut pages = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(url) = next {
            let reply = self.get(&url);
            reply.assert_status(200).assert_fhir_json();
            let page = reply.json();
            next = next_link(&page);
            pages.push(page);
            assert!(pages.len() < 1000, "history paging does not end");
        }
        pages
    }
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == relation)
        .map(|link| link["url"].as_str().unwrap().to_string())
}

fn next_link(bundle: &Value) -> Option<String> {
    link(bundle, "next")
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

/// `(fullUrl, etag)` of each entry: identifies a version.
fn version_keys(bundle: &Value) -> Vec<(String, String)> {
    entries(bundle)
        .iter()
        .map(|entry| {
            (
                entry["fullUrl"].as_str().unwrap().to_string(),
                entry["response"]["etag"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The versionIds (from ETags) of a single-instance history, in order.
fn etag_versions(bundle: &Value) -> Vec<u64> {
    entries(bundle)
        .iter()
        .map(|entry| etag_number(entry["response"]["etag"].as_str().unwrap()))
        .collect()
}

fn etag_number(etag: &str) -> u64 {
    etag.strip_prefix("W/\"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{etag:?} is not a weak version ETag"))
        .parse()
        .unwrap()
}

/// The HTTP-date (RFC 9110 IMF-fixdate) of a FHIR instant `YYYY-MM-DDThh:mm:ss[.f]Z`,
/// truncated to the second.
fn http_date_of(instant: &str) -> String {
    assert!(instant.ends_with('Z'), "{instant}");
    let number = |range: std::ops::Range<usize>| -> i64 { instant[range].parse().unwrap() };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year:04} {hour:02}:{minute:02}:{second:02} GMT",
        WEEKDAYS[usize::try_from(days.rem_euclid(7)).unwrap()],
        MONTHS[usize::try_from(month - 1).unwrap()],
    )
}

fn assert_fhir_instant(text: &str) {
    let bytes = text.as_bytes();
    assert!(
        text.len() >= 20
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes[10] == b'T'
            && bytes[13] == b':'
            && bytes[16] == b':'
            && text.ends_with('Z'),
        "{text:?} is not a FHIR instant"
    );
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "active": true,
        "name": [{"family": "Doe", "given": ["Jane"]}],
    })
}

// ---------------------------------------------------------------------------------------
// create, read, vread
// ---------------------------------------------------------------------------------------

#[test]
fn create_assigns_id_version_and_headers() {
    let fhir = Fhir::start();
    let body = json!({
        "resourceType": "Patient",
        "id": "client-chosen",
        "meta": {"versionId": "7", "lastUpdated": "2001-01-01T00:00:00Z"},
        "active": true,
    });
    let reply = fhir.post("Patient", &body.to_string());
    reply.assert_status(201).assert_fhir_json();
    let created = reply.json();
    let id = created["id"].as_str().unwrap();
    assert_ne!(
        id, "client-chosen",
        "the id in a create body must be ignored"
    );
    assert!(!id.is_empty() && id.len() <= 64);
    assert_eq!(created["resourceType"], "Patient");
    assert_eq!(created["active"], true);
    assert_eq!(created["meta"]["versionId"], "1");
    let last_updated = created["meta"]["lastUpdated"].as_str().unwrap();
    assert_ne!(last_updated, "2001-01-01T00:00:00Z");
    assert_fhir_instant(last_updated);

    assert_eq!(
        reply.header("location"),
        Some(format!("{}/Patient/{id}/_history/1", fhir.base()).as_str())
    );
    assert_eq!(reply.etag(), Some("W/\"1\""));
    assert_eq!(
        reply.header("last-modified"),
        Some(http_date_of(last_updated).as_str())
    );

    // The client's id named nothing.
    fhir.get("Patient/client-chosen")
        .assert_outcome_code(404, "not-found");

    // Even an id that is not a valid FHIR id is ignored, not rejected.
    for ignored in [json!("a_b"), json!(7), json!("")] {
        let body = json!({"resourceType": "Patient", "id": ignored, "active": true});
        let reply = fhir.post("Patient", &body.to_string());
        reply.assert_status(201);
        let created = reply.json();
        assert!(created["id"].as_str().is_some_and(|id| id.len() == 36));
        assert_eq!(created["meta"]["versionId"], "1");
    }

    // A second create gets a different id.
    let other = fhir.create(&patient());
    assert_ne!(other, id);
}

#[test]
fn read_and_vread() {
    let fhir = Fhir::start();
    let created = fhir.post("Patient", &patient().to_string());
    created.assert_status(201);
    let id = created.json()["id"].as_str().unwrap().to_string();

    let read = fhir.get(&format!("Patient/{id}"));
    read.assert_status(200).assert_fhir_json();
    assert_eq!(read.text, created.text, "read returns what create returned");
    assert_eq!(read.etag(), Some("W/\"1\""));
    assert_eq!(
        read.header("last-modified"),
        created.header("last-modified")
    );

    let vread = fhir.get(&format!("Patient/{id}/_history/1"));
    vread.assert_status(200).assert_fhir_json();
    assert_eq!(vread.text, created.text);
    assert_eq!(vread.etag(), Some("W/\"1\""));
    assert!(vread.header("last-modified").is_some());

    // Unknown id, unknown versions.
    fhir.get("Patient/does-not-exist")
        .assert_outcome_code(404, "not-found");
    fhir.get("Patient/does-not-exist/_history/1")
        .assert_outcome_code(404, "not-found");
    fhir.get(&format!("Patient/{id}/_history/2"))
        .assert_outcome_code(404, "not-found");
    fhir.get(&format!("Patient/{id}/_history/0"))
        .assert_outcome_code(404, "not-found");
    // The same id under another type is a different resource.
    fhir.get(&format!("Observation/{id}"))
        .assert_outcome_code(404, "not-found");
}

#[test]
fn deleted_resources_are_gone_but_old_versions_remain() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    fhir.update("Patient", &id, json!({"active": false}))
        .assert_status(200);
    let deleted = fhir.delete(&format!("Patient/{id}"));
    deleted.assert_status(204);
    assert_eq!(deleted.etag(), Some("W/\"3\""));

    let read = fhir.get(&format!("Patient/{id}"));
    read.assert_outcome_code(410, "deleted");
    assert_eq!(read.etag(), Some("W/\"3\""));

    fhir.get(&format!("Patient/{id}/_history/3"))
        .assert_outcome_code(410, "deleted");
    let old = fhir.get(&format!("Patient/{id}/_history/2"));
    old.assert_status(200);
    assert_eq!(old.json()["active"], false);
    assert_eq!(old.json()["meta"]["versionId"], "2");
    let first = fhir.get(&format!("Patient/{id}/_history/1"));
    first.assert_status(200);
    assert_eq!(first.json()["active"], true);
    fhir.get(&format!("Patient/{id}/_history/4"))
        .assert_outcome_code(404, "not-found");
}

#[test]
fn if_none_match_and_if_modified_since_give_not_modified() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let path = format!("Patient/{id}");

    let unchanged = fhir.get_with(&path, &[("if-none-match", "W/\"1\"")]);
    unchanged.assert_status(304);
    assert_eq!(unchanged.text, "");
    assert_eq!(unchanged.etag(), Some("W/\"1\""));
    fhir.get_with(&path, &[("if-none-match", "*")])
        .assert_status(304);

    let other = fhir.get_with(&path, &[("if-none-match", "W/\"2\"")]);
    other.assert_status(200);
    assert_eq!(other.json()["id"], id.as_str());

    let last_modified = other.header("last-modified").unwrap().to_string();
    fhir.get_with(&path, &[("if-modified-since", &last_modified)])
        .assert_status(304);
    fhir.get_with(
        &path,
        &[("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")],
    )
    .assert_status(200);

    fhir.update("Patient", &id, patient()).assert_status(200);
    let changed = fhir.get_with(&path, &[("if-none-match", "W/\"1\"")]);
    changed.assert_status(200);
    assert_eq!(changed.etag(), Some("W/\"2\""));
    fhir.get_with(&path, &[("if-none-match", "W/\"2\"")])
        .assert_status(304);
}

// ---------------------------------------------------------------------------------------
// update
// ---------------------------------------------------------------------------------------

#[test]
fn update_makes_a_new_version() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let reply = fhir.update("Patient", &id, json!({"active": false, "gender": "female"}));
    reply.assert_status(200).assert_fhir_json();
    assert_eq!(reply.etag(), Some("W/\"2\""));
    let body = reply.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["meta"]["versionId"], "2");
    assert_eq!(body["gender"], "female");
    assert!(
        body.get("name").is_none(),
        "update replaces the whole resource"
    );
    let last_updated = body["meta"]["lastUpdated"].as_str().unwrap();
    assert_eq!(
        reply.header("last-modified"),
        Some(http_date_of(last_updated).as_str())
    );

    let read = fhir.get(&format!("Patient/{id}"));
    assert_eq!(read.text, reply.text);
    assert_eq!(read.etag(), Some("W/\"2\""));
}

#[test]
fn update_as_create_with_a_client_id() {
    let fhir = Fhir::start();
    let body = json!({"resourceType": "Patient", "id": "pat-1.a", "active": true});
    let reply = fhir.put("Patient/pat-1.a", &body.to_string());
    reply.assert_status(201).assert_fhir_json();
    assert_eq!(
        reply.header("location"),
        Some(format!("{}/Patient/pat-1.a/_history/1", fhir.base()).as_str())
    );
    assert_eq!(reply.etag(), Some("W/\"1\""));
    assert!(reply.header("last-modified").is_some());
    let created = reply.json();
    assert_eq!(created["id"], "pat-1.a");
    assert_eq!(created["meta"]["versionId"], "1");

    let again = fhir.put("Patient/pat-1.a", &body.to_string());
    again.assert_status(200);
    assert_eq!(again.etag(), Some("W/\"2\""));

    // A 64-character id is the longest allowed.
    let long = "a".repeat(64);
    fhir.update("Patient", &long, patient()).assert_status(201);
    fhir.get(&format!("Patient/{long}")).assert_status(200);
}

#[test]
fn update_with_if_match() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let path = format!("Patient/{id}");
    let body = json!({"resourceType": "Patient", "id": id, "active": false}).to_string();

    let matching = fhir.put_with(&path, &[("if-match", "W/\"1\"")], &body);
    matching.assert_status(200);
    assert_eq!(matching.etag(), Some("W/\"2\""));

    let stale = fhir.put_with(&path, &[("if-match", "W/\"1\"")], &body);
    stale.assert_outcome_code(412, "conflict");
    assert_eq!(
        fhir.get(&path).etag(),
        Some("W/\"2\""),
        "nothing was written"
    );

    // Strong and bare forms of the version are understood too.
    fhir.put_with(&path, &[("if-match", "\"2\"")], &body)
        .assert_status(200);

    // If-Match on a resource that does not exist: the precondition fails, nothing is created.
    let missing = json!({"resourceType": "Patient", "id": "nobody"}).to_string();
    fhir.put_with("Patient/nobody", &[("if-match", "W/\"1\"")], &missing)
        .assert_outcome(412);
    fhir.get("Patient/nobody").assert_status(404);

    // An If-Match that is not a version ETag.
    for bad in ["banana", "W/\"x\"", ""] {
        fhir.put_with(&path, &[("if-match", bad)], &body)
            .assert_outcome(400);
    }
    assert_eq!(fhir.get(&path).etag(), Some("W/\"3\""));
}

#[test]
fn concurrent_conditional_updates_lose_nothing() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let path = format!("Patient/{id}");
    let writers = 8;
    let barrier = Barrier::new(writers);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|writer| {
                let (fhir, path, id, barrier) = (&fhir, &path, &id, &barrier);
                scope.spawn(move || {
                    let body = json!({
                        "resourceType": "Patient",
                        "id": id,
                        "name": [{"family": format!("Writer{writer}")}],
                    })
                    .to_string();
                    barrier.wait();
                    let reply = fhir.put_with(path, &[("if-match", "W/\"1\"")], &body);
                    if reply.status == 412 {
                        reply.assert_outcome_code(412, "conflict");
                    }
                    reply.status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        writers - 1,
        "{statuses:?}"
    );
    let read = fhir.get(&path);
    assert_eq!(read.etag(), Some("W/\"2\""));
    assert_eq!(read.json()["meta"]["versionId"], "2");
    let history = fhir.get(&format!("{path}/_history")).json();
    assert_eq!(history["total"], 2);
}

// ---------------------------------------------------------------------------------------
// delete
// ---------------------------------------------------------------------------------------

#[test]
fn delete_is_idempotent_and_update_resurrects() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let path = format!("Patient/{id}");

    let deleted = fhir.delete(&path);
    deleted.assert_status(204);
    assert_eq!(deleted.text, "");
    assert_eq!(deleted.etag(), Some("W/\"2\""));

    let again = fhir.delete(&path);
    again.assert_status(204);
    assert_eq!(again.text, "");
    fhir.delete("Patient/never-existed").assert_status(204);
    // Deleting again made no new version.
    assert_eq!(fhir.get(&format!("{path}/_history")).json()["total"], 2);
    fhir.get(&format!("{path}/_history/3")).assert_status(404);

    let resurrected = fhir.update("Patient", &id, json!({"active": true}));
    resurrected.assert_status(201);
    assert_eq!(resurrected.etag(), Some("W/\"3\""));
    assert_eq!(
        resurrected.header("location"),
        Some(format!("{}/{path}/_history/3", fhir.base()).as_str())
    );
    assert_eq!(resurrected.json()["meta"]["versionId"], "3");
    fhir.get(&path).assert_status(200);

    // Conditional delete with a stale version.
    let stale = fhir.request("DELETE", &path, &[("if-match", "W/\"1\"")], None);
    stale.assert_outcome(412);
    fhir.get(&path).assert_status(200);
    let current = fhir.request("DELETE", &path, &[("if-match", "W/\"3\"")], None);
    current.assert_status(204);
    assert_eq!(current.etag(), Some("W/\"4\""));
}

// ---------------------------------------------------------------------------------------
// patch
// ---------------------------------------------------------------------------------------

#[test]
fn json_patch_replace_and_add() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let path = format!("Patient/{id}");

    let reply = fhir.patch(
        &path,
        r#"[{"op":"replace","path":"/active","value":false},
            {"op":"add","path":"/name/0/given/-","value":"Q"},
            {"op":"add","path":"/gender","value":"female"}]"#,
    );
    reply.assert_status(200).assert_fhir_json();
    assert_eq!(reply.etag(), Some("W/\"2\""));
    assert!(reply.header("last-modified").is_some());
    let patched = reply.json();
    assert_eq!(patched["id"], id.as_str());
    assert_eq!(patched["meta"]["versionId"], "2");
    assert_eq!(patched["active"], false);
    assert_eq!(patched["name"][0]["given"], json!(["Jane", "Q"]));
    assert_eq!(patched["gender"], "female");
    assert_eq!(fhir.get(&path).text, reply.text);

    // A passing `test` op.
    fhir.patch_with(
        &path,
        &[("if-match", "W/\"2\"")],
        r#"[{"op":"test","path":"/active","value":false},{"op":"remove","path":"/gender"}]"#,
    )
    .assert_status(200);
    let read = fhir.get(&path).json();
    assert_eq!(read["meta"]["versionId"], "3");
    assert!(read.get("gender").is_none());

    let history = fhir.get(&format!("{path}/_history")).json();
    let methods: Vec<String> = entries(&history)
        .iter()
        .map(|entry| entry["request"]["method"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(methods, ["PATCH", "PATCH", "POST"]);
    let first = &entries(&history)[0];
    assert_eq!(first["request"]["url"], format!("Patient/{id}").as_str());
    assert_eq!(first["response"]["status"], "200 OK");
    assert_eq!(first["response"]["etag"], "W/\"3\"");
}

#[test]
fn json_patch_failures() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let path = format!("Patient/{id}");

    // A failing `test` op: nothing is applied.
    fhir.patch(
        &path,
        r#"[{"op":"replace","path":"/active","value":false},{"op":"test","path":"/active","value":true}]"#,
    )
    .assert_outcome(422);
    // Removing what is not there.
    fhir.patch(&path, r#"[{"op":"remove","path":"/birthDate"}]"#)
        .assert_outcome(422);
    // Changing or removing the id, or the type.
    fhir.patch(&path, r#"[{"op":"replace","path":"/id","value":"other"}]"#)
        .assert_outcome(422);
    fhir.patch(&path, r#"[{"op":"remove","path":"/id"}]"#)
        .assert_outcome(422);
    fhir.patch(
        &path,
        r#"[{"op":"replace","path":"/resourceType","value":"Observation"}]"#,
    )
    .assert_outcome(422);
    fhir.get("Patient/other").assert_status(404);

    // Malformed patch documents.
    for bad in [
        "not json",
        r#"{"op":"replace","path":"/active","value":false}"#,
        r#"[{"op":"frobnicate","path":"/active"}]"#,
        r#"[{"op":"replace","value":false}]"#,
        "",
    ] {
        fhir.patch(&path, bad).assert_outcome(400);
    }

    // Wrong content type: neither JSON Patch nor FHIRPath Patch.
    let patch_doc = r#"[{"op":"replace","path":"/active","value":false}]"#;
    for content_type in ["text/plain", "application/xml", "application/fhir+xml"] {
        fhir.request(
            "PATCH",
            &path,
            &[("content-type", content_type)],
            Some(patch_doc.as_bytes()),
        )
        .assert_outcome(415);
    }
    // A JSON Patch document sent as FHIR JSON is not a Parameters resource.
    for content_type in [FHIR_JSON, "application/json"] {
        fhir.request(
            "PATCH",
            &path,
            &[("content-type", content_type)],
            Some(patch_doc.as_bytes()),
        )
        .assert_outcome(400);
    }

    // Stale If-Match.
    fhir.patch_with(&path, &[("if-match", "W/\"7\"")], patch_doc)
        .assert_outcome_code(412, "conflict");
    fhir.patch_with(&path, &[("if-match", "nonsense")], patch_doc)
        .assert_outcome(400);

    // Nothing above wrote a version.
    let read = fhir.get(&path);
    assert_eq!(read.etag(), Some("W/\"1\""));
    assert_eq!(read.json()["active"], true);

    // Unknown and deleted resources.
    fhir.patch("Patient/unknown", patch_doc)
        .assert_outcome_code(404, "not-found");
    fhir.delete(&path).assert_status(204);
    fhir.patch(&path, patch_doc)
        .assert_outcome_code(410, "deleted");
}

// ---------------------------------------------------------------------------------------
// history
// ---------------------------------------------------------------------------------------

#[test]
fn instance_history_lists_versions_newest_first() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let path = format!("Patient/{id}");
    fhir.update("Patient", &id, json!({"active": false}))
        .assert_status(200);
    fhir.patch(&path, r#"[{"op":"add","path":"/gender","value":"other"}]"#)
        .assert_status(200);
    fhir.delete(&path).assert_status(204);
    fhir.update("Patient", &id, json!({"active": true}))
        .assert_status(201);
    // Another resource, which instance history must not show.
    fhir.create(&patient());

    let reply = fhir.get(&format!("{path}/_history"));
    reply.assert_status(200).assert_fhir_json();
    let bundle = reply.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "history");
    assert_eq!(bundle["total"], 5);
    assert_eq!(etag_versions(&bundle), [5, 4, 3, 2, 1]);
    assert!(next_link(&bundle).is_none());
    assert_eq!(
        link(&bundle, "self"),
        Some(format!("{}/{path}/_history", fhir.base()))
    );

    let expected = [
        ("PUT", path.clone(), "201 Created", true),
        ("DELETE", path.clone(), "204 No Content", false),
        ("PATCH", path.clone(), "200 OK", true),
        ("PUT", path.clone(), "200 OK", true),
        ("POST", "Patient".to_string(), "201 Created", true),
    ];
    let mut previous_modified: Option<String> = None;
    for (entry, (method, url, status, has_resource)) in entries(&bundle).iter().zip(&expected) {
        assert_eq!(entry["fullUrl"], format!("{}/{path}", fhir.base()).as_str());
        assert_eq!(entry["request"]["method"], *method, "{entry}");
        assert_eq!(entry["request"]["url"], url.as_str(), "{entry}");
        // The resurrecting update is recorded as having created the resource again.
        assert_eq!(entry["response"]["status"], *status, "{entry}");
        let modified = entry["response"]["lastModified"].as_str().unwrap();
        assert_fhir_instant(modified);
        if let Some(previous) = &previous_modified {
            assert!(modified.as_bytes() < previous.as_bytes(), "newest first");
        }
        previous_modified = Some(modified.to_string());
        assert_eq!(entry.get("resource").is_some(), *has_resource, "{entry}");
        if *has_resource {
            let resource = &entry["resource"];
            assert_eq!(resource["id"], id.as_str());
            let version = etag_number(entry["response"]["etag"].as_str().unwrap());
            assert_eq!(resource["meta"]["versionId"], version.to_string().as_str());
            assert_eq!(resource["meta"]["lastUpdated"], modified);
            // Each history entry is exactly what vread gives.
            let vread = fhir.get(&format!("{path}/_history/{version}"));
            assert_eq!(&vread.json(), resource);
        }
    }

    // History of something that never existed; of a deleted resource it still works.
    fhir.get("Patient/unknown/_history")
        .assert_outcome_code(404, "not-found");
    let other = fhir.create(&patient());
    fhir.delete(&format!("Patient/{other}")).assert_status(204);
    let deleted = fhir.get(&format!("Patient/{other}/_history")).json();
    assert_eq!(deleted["total"], 2);
    assert_eq!(etag_versions(&deleted), [2, 1]);
}

#[test]
fn type_and_system_history() {
    let fhir = Fhir::start();
    let p1 = fhir.create(&patient());
    let o1 = fhir.create(&json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "weight"}}));
    fhir.update("Patient", &p1, json!({"active": false}))
        .assert_status(200);
    let p2 = fhir.create(&patient());
    fhir.delete(&format!("Observation/{o1}")).assert_status(204);

    let patients = fhir.get("Patient/_history");
    patients.assert_status(200).assert_fhir_json();
    let patients = patients.json();
    assert_eq!(patients["type"], "history");
    assert_eq!(patients["total"], 3);
    let keys = version_keys(&patients);
    let base = fhir.base();
    assert_eq!(
        keys,
        [
            (format!("{base}/Patient/{p2}"), "W/\"1\"".to_string()),
            (format!("{base}/Patient/{p1}"), "W/\"2\"".to_string()),
            (format!("{base}/Patient/{p1}"), "W/\"1\"".to_string()),
        ]
    );
    assert_eq!(
        link(&patients, "self"),
        Some(format!("{base}/Patient/_history"))
    );

    let observations = fhir.get("Observation/_history").json();
    assert_eq!(observations["total"], 2);
    let entries_o = entries(&observations);
    assert_eq!(entries_o[0]["request"]["method"], "DELETE");
    assert!(entries_o[0].get("resource").is_none());
    assert_eq!(entries_o[1]["request"]["method"], "POST");
    assert_eq!(entries_o[1]["request"]["url"], "Observation");
    assert_eq!(entries_o[1]["resource"]["status"], "final");

    // A type nobody wrote has an empty history.
    let empty = fhir.get("Encounter/_history");
    empty.assert_status(200);
    let empty = empty.json();
    assert_eq!(empty["total"], 0);
    assert!(entries(&empty).is_empty());

    let system = fhir.get("_history");
    system.assert_status(200).assert_fhir_json();
    let system = system.json();
    assert_eq!(system["total"], 5);
    assert_eq!(
        version_keys(&system),
        [
            (format!("{base}/Observation/{o1}"), "W/\"2\"".to_string()),
            (format!("{base}/Patient/{p2}"), "W/\"1\"".to_string()),
            (format!("{base}/Patient/{p1}"), "W/\"2\"".to_string()),
            (format!("{base}/Observation/{o1}"), "W/\"1\"".to_string()),
            (format!("{base}/Patient/{p1}"), "W/\"1\"".to_string()),
        ]
    );
    assert_eq!(link(&system, "self"), Some(format!("{base}/_history")));
    for entry in entries(&system) {
        assert!(entry["request"]["method"].is_string());
        assert!(entry["request"]["url"].is_string());
        assert!(entry["response"]["status"].is_string());
        assert!(entry["response"]["etag"].is_string());
    }

    // Unknown types in the URL.
    fhir.get("Foo/_history")
        .assert_outcome_code(404, "not-found");
    fhir.get("Foo/1/_history")
        .assert_outcome_code(404, "not-found");
}

#[test]
fn history_paging_follows_next_links_and_is_stable_under_writes() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    for n in 0..6 {
        fhir.update("Patient", &id, json!({"active": n % 2 == 0}))
            .assert_status(200);
    }
    let others: Vec<String> = (0..3)
        .map(|_| fhir.create(&json!({"resourceType": "Practitioner"})))
        .collect();
    assert_eq!(others.len(), 3);

    // Instance history, 3 per page, with a write between page fetches.
    let path = format!("Patient/{id}/_history");
    let first = fhir.get(&format!("{path}?_count=3"));
    first.assert_status(200);
    let first = first.json();
    assert_eq!(first["total"], 7);
    assert_eq!(etag_versions(&first), [7, 6, 5]);
    let mut next = next_link(&first).expect("a next link");
    assert!(
        next.starts_with(&format!("{}/{path}?", fhir.base())),
        "{next}"
    );
    assert!(next.contains("_count=3"), "{next}");

    fhir.update("Patient", &id, json!({"active": false}))
        .assert_status(200);

    let mut seen = etag_versions(&first);
    let mut pages = 1;
    loop {
        let reply = fhir.get(&next);
        reply.assert_status(200);
        let page = reply.json();
        pages += 1;
        assert!(entries(&page).len() <= 3);
        assert!(link(&page, "first").is_some());
        seen.extend(etag_versions(&page));
        match next_link(&page) {
            Some(url) => next = url,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        [7, 6, 5, 4, 3, 2, 1],
        "pages neither overlap nor pick up the new version"
    );
    // A fresh first page does see it.
    assert_eq!(
        etag_versions(&fhir.get(&format!("{path}?_count=3")).json()),
        [8, 7, 6]
    );

    // System history, 2 per page: the concatenation equals the unpaged history.
    let all = fhir.get("_history?_count=1000").json();
    assert_eq!(all["total"], 11);
    assert!(next_link(&all).is_none());
    let expected = version_keys(&all);
    assert_eq!(expected.len(), 11);
    let pages = fhir.history_pages("_history?_count=2");
    assert_eq!(pages.len(), 6);
    let paged: Vec<_> = pages.iter().flat_map(version_keys).collect();
    assert_eq!(paged, expected);
    let distinct: BTreeSet<_> = paged.iter().collect();
    assert_eq!(distinct.len(), paged.len(), "pages overlap");
    for page in &pages {
        assert_eq!(page["total"], 11);
    }

    // Type history, with writes of that type between every page.
    let mut expected_types = version_keys(&fhir.get("Practitioner/_history").json());
    assert_eq!(expected_types.len(), 3);
    let mut next = Some("Practitioner/_history?_count=1".to_string());
    let mut paged = Vec::new();
    while let Some(url) = next {
        let page = fhir.get(&url).json();
        paged.extend(version_keys(&page));
        next = next_link(&page);
        fhir.create(&json!({"resourceType": "Practitioner"}));
    }
    assert_eq!(paged, expected_types);
    expected_types.clear();

    // _count=0: no entries, the total still right.
    let counted = fhir.get("Practitioner/_history?_count=0");
    counted.assert_status(200);
    assert_eq!(counted.json()["total"], 6);
    fhir.get("_history?_count=abc").assert_outcome(400);
}

#[test]
fn history_since_and_at() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let path = format!("Patient/{id}");
    let v2 = fhir.update("Patient", &id, json!({"active": false}));
    v2.assert_status(200);
    let v2_updated = v2.json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    fhir.update("Patient", &id, json!({"active": true}))
        .assert_status(200);
    let later = fhir.create(&patient());

    // _since: the version written at that instant and everything newer.
    let since = fhir.get(&format!("{path}/_history?_since={v2_updated}"));
    since.assert_status(200);
    let since = since.json();
    assert_eq!(etag_versions(&since), [3, 2]);
    assert_eq!(since["total"], 2);
    assert_eq!(
        link(&since, "self"),
        Some(format!(
            "{}/{path}/_history?_since={}",
            fhir.base(),
            v2_updated.replace(':', "%3A")
        ))
    );
    let type_since = fhir
        .get(&format!("Patient/_history?_since={v2_updated}"))
        .json();
    assert_eq!(type_since["total"], 3);
    assert_eq!(
        version_keys(&type_since)[0],
        (format!("{}/Patient/{later}", fhir.base()), "W/\"1\"".into())
    );
    // _since with paging carries the parameter.
    let pages = fhir.history_pages(&format!("Patient/_history?_since={v2_updated}&_count=1"));
    assert_eq!(pages.len(), 3);
    assert!(pages.iter().all(|page| page["total"] == 3));
    // A _since in the future, and one long ago.
    let future = fhir.get("_history?_since=2999-01-01T00:00:00Z").json();
    assert_eq!(future["total"], 0);
    assert!(entries(&future).is_empty());
    assert_eq!(fhir.get("_history?_since=2000").json()["total"], 4);

    // _at: the version current at that instant.
    let at = fhir.get(&format!("{path}/_history?_at={v2_updated}"));
    at.assert_status(200);
    let at = at.json();
    assert_eq!(etag_versions(&at), [2]);
    assert_eq!(at["total"], 1);
    assert_eq!(entries(&at)[0]["resource"]["active"], false);
    // Before the resource existed there was nothing.
    let before = fhir.get(&format!("{path}/_history?_at=2000-01-01T00:00:00Z"));
    before.assert_status(200);
    assert_eq!(before.json()["total"], 0);
    // Now: the current version.
    let now = fhir
        .get(&format!("{path}/_history?_at=2999-01-01T00:00:00Z"))
        .json();
    assert_eq!(etag_versions(&now), [3]);

    // Bad parameters.
    for query in [
        "_since=yesterday",
        "_since=2024-13-01",
        "_since=2024-01-01T10:00:00",
        "_at=nope",
        "_foo=1",
        "name=Doe",
        "_count=-1",
    ] {
        fhir.get(&format!("{path}/_history?{query}"))
            .assert_outcome(400);
        fhir.get(&format!("Patient/_history?{query}"))
            .assert_outcome(400);
        fhir.get(&format!("_history?{query}")).assert_outcome(400);
    }
}

// ---------------------------------------------------------------------------------------
// Prefer
// ---------------------------------------------------------------------------------------

#[test]
fn prefer_return() {
    let fhir = Fhir::start();
    let body = patient().to_string();

    // return=minimal: no body, headers as usual.
    let minimal = fhir.post_with("Patient", &[("prefer", "return=minimal")], &body);
    minimal.assert_status(201);
    assert_eq!(minimal.text, "");
    assert_eq!(minimal.etag(), Some("W/\"1\""));
    assert!(minimal.header("last-modified").is_some());
    let location = minimal.header("location").unwrap();
    let prefix = format!("{}/Patient/", fhir.base());
    let id = location
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix("/_history/1"))
        .unwrap_or_else(|| panic!("Location {location}"))
        .to_string();
    let path = format!("Patient/{id}");
    fhir.get(&path).assert_status(200);

    let put_body = json!({"resourceType": "Patient", "id": id, "active": false}).to_string();
    let updated = fhir.put_with(&path, &[("prefer", "return=minimal")], &put_body);
    updated.assert_status(200);
    assert_eq!(updated.text, "");
    assert_eq!(updated.etag(), Some("W/\"2\""));
    assert!(updated.header("last-modified").is_some());

    let patch_doc = r#"[{"op":"replace","path":"/active","value":true}]"#;
    let patched = fhir.patch_with(&path, &[("prefer", "return=minimal")], patch_doc);
    patched.assert_status(200);
    assert_eq!(patched.text, "");
    assert_eq!(patched.etag(), Some("W/\"3\""));

    // return=representation: the stored resource.
    let represented = fhir.post_with("Patient", &[("prefer", "return=representation")], &body);
    represented.assert_status(201).assert_fhir_json();
    let resource = represented.json();
    assert_eq!(resource["resourceType"], "Patient");
    assert_eq!(resource["meta"]["versionId"], "1");
    let put = fhir.put_with(&path, &[("prefer", "return=representation")], &put_body);
    put.assert_status(200);
    assert_eq!(put.json()["meta"]["versionId"], "4");
    let patched = fhir.patch_with(&path, &[("prefer", "return=representation")], patch_doc);
    patched.assert_status(200);
    assert_eq!(patched.json()["active"], true);
    assert_eq!(patched.json()["meta"]["versionId"], "5");

    // return=OperationOutcome: an OperationOutcome about the write.
    let check_outcome = |reply: &Reply, status: u16, version: &str| {
        reply.assert_status(status).assert_fhir_json();
        let outcome = reply.json();
        assert_eq!(
            outcome["resourceType"], "OperationOutcome",
            "{}",
            reply.text
        );
        assert_eq!(outcome["issue"][0]["severity"], "information");
        assert_eq!(reply.etag(), Some(version));
        assert!(reply.header("last-modified").is_some());
    };
    let oo = [("prefer", "return=OperationOutcome")];
    let created = fhir.post_with("Patient", &oo, &body);
    check_outcome(&created, 201, "W/\"1\"");
    assert!(created.header("location").is_some());
    check_outcome(&fhir.put_with(&path, &oo, &put_body), 200, "W/\"6\"");
    check_outcome(&fhir.patch_with(&path, &oo, patch_doc), 200, "W/\"7\"");
    check_outcome(&fhir.request("DELETE", &path, &oo, None), 200, "W/\"8\"");
    // The update-as-create returns 201.
    check_outcome(&fhir.put_with(&path, &oo, &put_body), 201, "W/\"9\"");
}

// ---------------------------------------------------------------------------------------
// formats
// ---------------------------------------------------------------------------------------

#[test]
fn content_negotiation() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let path = format!("Patient/{id}");

    for accept in [
        "application/fhir+json",
        "application/json",
        "*/*",
        "application/fhir+json; fhirVersion=4.0",
        "text/html, application/fhir+xml;q=0.9, */*;q=0.8",
    ] {
        let reply = fhir.get_with(&path, &[("accept", accept)]);
        reply.assert_status(200).assert_fhir_json();
        assert_eq!(reply.json()["id"], id.as_str(), "{accept}");
        fhir.get_with("metadata", &[("accept", accept)])
            .assert_status(200);
    }
    for accept in ["application/fhir+xml", "application/xml", "text/turtle"] {
        fhir.get_with(&path, &[("accept", accept)])
            .assert_outcome_code(406, "not-supported");
        fhir.get_with("metadata", &[("accept", accept)])
            .assert_outcome(406);
        fhir.get_with(&format!("{path}/_history"), &[("accept", accept)])
            .assert_outcome(406);
    }
    // Nothing was written by a refused create.
    fhir.request(
        "POST",
        "Patient",
        &[
            ("accept", "application/fhir+xml"),
            ("content-type", FHIR_JSON),
        ],
        Some(patient().to_string().as_bytes()),
    )
    .assert_outcome(406);
    assert_eq!(fhir.get("Patient/_history").json()["total"], 1);

    for format in ["json", "application%2Ffhir%2Bjson", "application/json"] {
        let reply = fhir.get(&format!("{path}?_format={format}"));
        reply.assert_status(200).assert_fhir_json();
    }
    for format in ["xml", "application%2Ffhir%2Bxml", "ttl"] {
        fhir.get(&format!("{path}?_format={format}"))
            .assert_outcome(406);
        fhir.get(&format!("metadata?_format={format}"))
            .assert_outcome(406);
    }
    // _format wins over Accept.
    fhir.get_with(
        &format!("{path}?_format=json"),
        &[("accept", "application/fhir+xml")],
    )
    .assert_status(200);

    // Request bodies must be JSON.
    let body = patient().to_string();
    for content_type in ["text/plain", "application/xml", "application/fhir+xml"] {
        fhir.request(
            "POST",
            "Patient",
            &[("content-type", content_type)],
            Some(body.as_bytes()),
        )
        .assert_outcome_code(415, "not-supported");
        let put = json!({"resourceType": "Patient", "id": id}).to_string();
        fhir.request(
            "PUT",
            &path,
            &[("content-type", content_type)],
            Some(put.as_bytes()),
        )
        .assert_outcome(415);
    }
    for content_type in ["application/json", "application/fhir+json; charset=utf-8"] {
        fhir.request(
            "POST",
            "Patient",
            &[("content-type", content_type)],
            Some(body.as_bytes()),
        )
        .assert_status(201);
    }
    assert_eq!(fhir.get("Patient/_history").json()["total"], 3);
}

#[test]
fn pretty_printing() {
    let fhir = Fhir::start();
    let body = r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50,"unit":"kg"}}"#;
    let created = fhir.post("Observation", body);
    created.assert_status(201);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let path = format!("Observation/{id}");

    let compact = fhir.get(&path);
    assert!(!compact.text.contains('\n'));
    let pretty = fhir.get(&format!("{path}?_pretty=true"));
    pretty.assert_status(200).assert_fhir_json();
    assert!(
        pretty.text.contains("\n  \"status\": \"final\""),
        "{}",
        pretty.text
    );
    assert!(pretty.text.contains("\"value\": 1.50"), "{}", pretty.text);
    assert_eq!(pretty.json(), compact.json());
    assert_eq!(
        pretty.text.split_whitespace().collect::<String>(),
        compact.text.split_whitespace().collect::<String>()
    );
    assert_eq!(pretty.etag(), compact.etag());
    let not_pretty = fhir.get(&format!("{path}?_pretty=false"));
    assert_eq!(not_pretty.text, compact.text);
    fhir.get(&format!("{path}?_pretty=yes")).assert_outcome(400);

    let history = fhir.get(&format!("{path}/_history?_pretty=true"));
    history.assert_status(200);
    assert!(history.text.contains("\n  \"type\": \"history\""));
    let metadata = fhir.get("metadata?_pretty=true");
    metadata.assert_status(200);
    assert!(metadata.text.contains('\n'));
    let written = fhir.post("Observation?_pretty=true", body);
    written.assert_status(201);
    assert!(written.text.contains("\n  "));
    assert!(written.text.contains("\"value\": 1.50"));
}

// ---------------------------------------------------------------------------------------
// faithful storage
// ---------------------------------------------------------------------------------------

/// The elements after `resourceType`, `id` and `meta`, as compact text without braces.
const FAITHFUL_ELEMENTS: &str = concat!(
    r#""text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Zoë 山田 🙂</div>"},"#,
    r#""extension":[{"url":"http://example.org/outer","extension":["#,
    r#"{"url":"inner-decimal","valueDecimal":1.50},"#,
    r#"{"url":"inner-nested","extension":[{"url":"deepest","valueDecimal":0.10000}]},"#,
    r#"{"url":"inner-big","valueDecimal":12345678901234567890.123456789012345678901},"#,
    r#"{"url":"inner-exp","valueDecimal":1.0e-7}]}],"#,
    r#""name":[{"use":"official","text":"Zoë 山田 🙂","given":["Zoë"],"family":"山田"}],"#,
    r#""telecom":[{"value":"tab\tnew\nline \"quoted\" back\\slash","system":"other"}],"#,
    r#""gender":"female","#,
    r#""birthDate":"1980-02-29","#,
    r#""multipleBirthInteger":3,"#,
    r#""active":true,"#,
    r#""contact":[{"relationship":[{"coding":[{"code":"N","system":"http://terminology.hl7.org/CodeSystem/v2-0131"}]}],"name":{"family":"Ødegård"}}],"#,
    r#""_gender":{"extension":[{"url":"http://example.org/x","valueDecimal":-0.0}]}"#
);

/// The stored text we expect for a faithfully kept resource.
fn faithful_text(id: &str, version: &str, last_updated: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","meta":{{"versionId":"{version}","lastUpdated":"{last_updated}"}},{FAITHFUL_ELEMENTS}}}"#
    )
}

#[test]
fn resources_are_stored_faithfully() {
    let fhir = Fhir::start();
    let body = format!(r#"{{"resourceType":"Patient",{FAITHFUL_ELEMENTS}}}"#);
    // The test input itself must be valid JSON.
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["name"][0]["text"], "Zoë 山田 🙂");

    let created = fhir.post("Patient", &body);
    created.assert_status(201);
    let resource = created.json();
    let id = resource["id"].as_str().unwrap().to_string();
    let last_updated = resource["meta"]["lastUpdated"].as_str().unwrap();
    let expected = faithful_text(&id, "1", last_updated);
    assert_eq!(created.text, expected, "create response");
    assert!(created.text.contains(r#""valueDecimal":1.50}"#));
    assert!(created.text.contains(r#""valueDecimal":0.10000}"#));

    let path = format!("Patient/{id}");
    assert_eq!(fhir.get(&path).text, expected, "read");
    assert_eq!(
        fhir.get(&format!("{path}/_history/1")).text,
        expected,
        "vread"
    );
    // Parsed values compare numbers textually (arbitrary_precision) and keep order.
    let mut without_meta = resource.clone();
    let object = without_meta.as_object_mut().unwrap();
    object.shift_remove("id");
    object.shift_remove("meta");
    assert_eq!(without_meta, parsed);
    assert_ne!(
        resource["extension"][0]["extension"][0]["valueDecimal"],
        json!(1.5),
        "1.50 is not 1.5"
    );
    let keys: Vec<&String> = resource.as_object().unwrap().keys().collect();
    assert_eq!(keys[..4], ["resourceType", "id", "meta", "text"]);

    // The same through update (with client meta that the server stamps over) and history.
    let update_body = format!(
        r#"{{"resourceType":"Patient","id":"{id}","meta":{{"versionId":"99","lastUpdated":"2000-01-01T00:00:00Z"}},{FAITHFUL_ELEMENTS}}}"#
    );
    let updated = fhir.put(&path, &update_body);
    updated.assert_status(200);
    let last_updated = updated.json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(updated.text, faithful_text(&id, "2", &last_updated));
    let history = fhir.get(&format!("{path}/_history"));
    let newest = format!(r#""resource":{}"#, faithful_text(&id, "2", &last_updated));
    assert!(history.text.contains(&newest), "{}", history.text);

    // A patch rewrites only what it names.
    let patched = fhir.patch(
        &path,
        r#"[{"op":"replace","path":"/active","value":false}]"#,
    );
    patched.assert_status(200);
    let last_updated = patched.json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        patched.text,
        faithful_text(&id, "3", &last_updated).replace(r#""active":true"#, r#""active":false"#)
    );

    // Client-supplied meta elements other than versionId/lastUpdated are kept.
    let tagged = json!({
        "resourceType": "Patient",
        "meta": {"tag": [{"system": "http://example.org/tags", "code": "vip"}],
                 "versionId": "5"},
        "active": true,
    });
    let tagged = fhir.post("Patient", &tagged.to_string());
    tagged.assert_status(201);
    let meta = &tagged.json()["meta"];
    assert_eq!(meta["versionId"], "1");
    assert_eq!(meta["tag"][0]["code"], "vip");
}

// ---------------------------------------------------------------------------------------
// bad input
// ---------------------------------------------------------------------------------------

#[test]
fn bad_bodies_are_rejected_with_outcomes() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let path = format!("Patient/{id}");

    for (body, why) in [
        (r#"{"resourceType":"Patient","#, "malformed JSON"),
        ("{'resourceType':'Patient'}", "single quotes"),
        (r#"[{"resourceType":"Patient"}]"#, "array"),
        (r#""Patient""#, "string"),
        ("42", "number"),
        ("null", "null"),
        ("", "empty"),
        ("   ", "whitespace"),
        (r#"{"active":true}"#, "no resourceType"),
        (r#"{"resourceType":7}"#, "numeric resourceType"),
        (r#"{"resourceType":"Foo"}"#, "unknown resourceType"),
        (r#"{"resourceType":"Resource"}"#, "abstract resourceType"),
        (r#"{"resourceType":"patient"}"#, "lower-case resourceType"),
        (
            r#"{"resourceType":"Observation","status":"final"}"#,
            "type mismatch",
        ),
        (
            r#"{"resourceType":"Patient","meta":"x"}"#,
            "meta not an object",
        ),
    ] {
        let reply = fhir.post("Patient", body);
        assert_eq!(reply.status, 400, "POST {why}: {}", reply.text);
        reply.assert_outcome(400);
    }
    // Deep nesting and bytes that are not UTF-8: still a 400, never a crash or a 500.
    let deep = format!(
        r#"{{"resourceType":"Patient","x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    fhir.post("Patient", &deep).assert_outcome(400);
    let mut latin1 = br#"{"resourceType":"Patient","name":[{"family":""#.to_vec();
    latin1.extend_from_slice(b"\xff\xfe\"}]}");
    fhir.request(
        "POST",
        "Patient",
        &[("content-type", FHIR_JSON)],
        Some(&latin1),
    )
    .assert_outcome(400);

    // Invalid bodies on update.
    for (body, why) in [
        (
            r#"{"resourceType":"Patient","#.to_string(),
            "malformed JSON",
        ),
        ("[]".to_string(), "array"),
        (
            r#"{"resourceType":"Foo","id":"x"}"#.replace('x', &id),
            "unknown resourceType",
        ),
        (
            json!({"resourceType": "Observation", "id": id}).to_string(),
            "type mismatch",
        ),
        (
            json!({"resourceType": "Patient", "id": "someone-else"}).to_string(),
            "id mismatch",
        ),
        (
            json!({"resourceType": "Patient", "active": true}).to_string(),
            "missing id",
        ),
        (
            json!({"resourceType": "Patient", "id": 7}).to_string(),
            "numeric id",
        ),
        (
            json!({"resourceType": "Patient", "id": "bad id"}).to_string(),
            "invalid id",
        ),
    ] {
        let reply = fhir.put(&path, &body);
        assert_eq!(reply.status, 400, "PUT {why}: {}", reply.text);
        reply.assert_outcome(400);
    }
    let read = fhir.get(&path);
    assert_eq!(read.etag(), Some("W/\"1\""), "nothing was written");
    assert_eq!(fhir.get("_history").json()["total"], 1);
}

#[test]
fn invalid_ids_and_versions_in_urls() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());
    let long = "a".repeat(65);
    for bad in [long.as_str(), "a_b", "a%20b", "a%2Fb", "%C3%A9", "a*b"] {
        let path = format!("Patient/{bad}");
        fhir.get(&path).assert_outcome(400);
        fhir.get(&format!("{path}/_history")).assert_outcome(400);
        fhir.get(&format!("{path}/_history/1")).assert_outcome(400);
        fhir.delete(&path).assert_outcome(400);
        fhir.put(
            &path,
            &json!({"resourceType": "Patient", "id": bad}).to_string(),
        )
        .assert_outcome(400);
        fhir.patch(&path, "[]").assert_outcome(400);
    }
    for version in ["abc", "1.0", "-1", "1a", "99999999999999999999999"] {
        fhir.get(&format!("Patient/{id}/_history/{version}"))
            .assert_outcome(400);
    }
}

#[test]
fn body_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fhir = Fhir::start_with(&dir, &["--max-body-bytes", "1000"]);

    let padded = |size: usize| {
        let skeleton = json!({"resourceType": "Patient", "name": [{"family": ""}]}).to_string();
        let padding = "x".repeat(size - skeleton.len());
        let body = json!({"resourceType": "Patient", "name": [{"family": padding}]}).to_string();
        assert_eq!(body.len(), size);
        body
    };

    fhir.post("Patient", &padded(900)).assert_status(201);
    fhir.post("Patient", &padded(2000))
        .assert_outcome_code(413, "too-long");

    // Without a Content-Length (chunked), the limit still holds.
    let big = padded(2000);
    let mut reader = big.as_bytes();
    let response = fhir
        .http
        .post(format!("{}/Patient", fhir.base()))
        .header("content-type", FHIR_JSON)
        .send(ureq::SendBody::from_reader(&mut reader))
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let text = response.into_body().read_to_string().unwrap();
    assert!(text.contains("OperationOutcome"), "{text}");

    // PUT and PATCH too.
    let fresh = agent();
    let response = fresh
        .put(format!("{}/Patient/abc", fhir.base()))
        .header("content-type", FHIR_JSON)
        .send(padded(2000).replace("\"Patient\",", "\"Patient\",\"id\":\"abc\","))
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);

    assert_eq!(
        agent()
            .get(format!("{}/_history", fhir.base()))
            .call()
            .unwrap()
            .status(),
        200
    );
    let history = fhir.get("_history");
    assert_eq!(history.json()["total"], 1, "only the small body was stored");
}

#[test]
fn unknown_types_methods_and_paths() {
    let fhir = Fhir::start();
    let id = fhir.create(&patient());

    for path in [
        "Foo",
        "Foo/1",
        "Foo/1/_history/1",
        "patient/1",
        "Resource/1",
    ] {
        fhir.get(path).assert_outcome_code(404, "not-found");
    }
    fhir.post("Foo", r#"{"resourceType":"Foo"}"#)
        .assert_outcome_code(404, "not-found");
    fhir.put("Foo/1", r#"{"resourceType":"Foo","id":"1"}"#)
        .assert_outcome_code(404, "not-found");
    fhir.delete("Foo/1").assert_outcome_code(404, "not-found");

    // Methods the server does not support on a path it knows.
    for (method, path) in [
        ("TRACE", "Patient"),
        ("TRACE", "Patient/1"),
        ("POST", "Patient/1"),
        ("POST", "metadata"),
        ("DELETE", "_history"),
        ("PUT", "Patient/1/_history/1"),
        ("POST", "Patient/1/_history"),
    ] {
        let body = (method != "TRACE" && method != "DELETE").then_some(&b"{}"[..]);
        let reply = fhir.request(method, path, &[("content-type", FHIR_JSON)], body);
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text);
        reply.assert_outcome_code(405, "not-supported");
        let allow = reply.header("allow").unwrap_or("");
        assert!(allow.contains("GET"), "{method} {path}: Allow {allow:?}");
        assert!(!allow.contains(method), "{method} {path}: Allow {allow:?}");
    }
    let allow = |method: &str, path: &str| {
        let reply = fhir.request(method, path, &[("content-type", FHIR_JSON)], Some(b"{}"));
        let mut allowed: Vec<String> = reply
            .header("allow")
            .unwrap_or("")
            .split(',')
            .map(|m| m.trim().to_string())
            .collect();
        allowed.sort();
        allowed
    };
    let reply = fhir.request("TRACE", "Patient", &[], None);
    let mut allowed: Vec<&str> = reply
        .header("allow")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    allowed.sort();
    assert_eq!(allowed, ["DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"]);
    // On the type, DELETE, PUT and PATCH are conditional: without criteria they are refused.
    for method in ["DELETE", "PUT", "PATCH"] {
        let body = (method != "DELETE").then_some(&b"{}"[..]);
        let reply = fhir.request(method, "Patient", &[("content-type", FHIR_JSON)], body);
        assert_eq!(reply.status, 400, "{method} Patient: {}", reply.text);
    }
    assert_eq!(
        allow("POST", "Patient/1"),
        ["DELETE", "GET", "HEAD", "PATCH", "PUT"]
    );

    // Paths that do not exist at all.
    for path in [
        "/nope",
        "/",
        "/fhir2/Patient",
        &format!("Patient/{id}/_history/1/extra"),
        &format!("Patient/{id}/foo"),
        &format!("Patient/{id}/_history/1/"),
    ] {
        let reply = fhir.get(path);
        assert_eq!(reply.status, 404, "GET {path}: {}", reply.text);
        reply.assert_outcome_code(404, "not-found");
    }
    // The resource is untouched by all of it.
    assert_eq!(fhir.get(&format!("Patient/{id}")).etag(), Some("W/\"1\""));
}

// ---------------------------------------------------------------------------------------
// capability statement
// ---------------------------------------------------------------------------------------

#[test]
fn capability_statement() {
    let fhir = Fhir::start();
    let reply = fhir.get("metadata");
    reply.assert_status(200).assert_fhir_json();
    let statement = reply.json();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["kind"], "instance");
    assert_eq!(statement["status"], "active");
    assert_fhir_instant(statement["date"].as_str().unwrap());
    let formats: Vec<&str> = statement["format"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(formats.contains(&"application/fhir+json"));
    assert!(!formats.iter().any(|f| f.contains("xml")));
    assert_eq!(statement["patchFormat"], json!([JSON_PATCH]));

    let rest = statement["rest"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["mode"], "server");
    let system: Vec<&str> = rest[0]["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(system.contains(&"history-system"));
    assert!(system.contains(&"search-system"));
    assert!(!system.contains(&"transaction"));
    assert!(!system.contains(&"batch"));

    let resources = rest[0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 146);
    let types: BTreeSet<&str> = resources
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 146, "each type once");
    for expected in [
        "Account",
        "Patient",
        "Observation",
        "Bundle",
        "Binary",
        "Parameters",
        "CapabilityStatement",
        "OperationOutcome",
        "VisionPrescription",
        "MedicinalProductUndesirableEffect",
        "EffectEvidenceSynthesis",
    ] {
        assert!(types.contains(expected), "{expected} missing");
    }
    for absent in ["Resource", "DomainResource", "Foo", "BackboneElement"] {
        assert!(!types.contains(absent), "{absent} is not a resource type");
    }
    let wanted: BTreeSet<&str> = [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ]
    .into_iter()
    .collect();
    for resource in resources {
        let codes: BTreeSet<&str> = resource["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, wanted, "{}", resource["type"]);
        let params = resource["searchParam"].as_array().unwrap();
        assert!(
            params.iter().any(|p| p["name"] == "_id"),
            "{} lacks _id",
            resource["type"]
        );
        assert_eq!(resource["conditionalDelete"], "multiple");
    }
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let name = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "name")
        .unwrap();
    assert_eq!(name["type"], "string");
    assert_eq!(
        name["definition"],
        "http://hl7.org/fhir/SearchParameter/Patient-name"
    );
    let revincludes = patient["searchRevInclude"].as_array().unwrap();
    assert!(revincludes.contains(&json!("Observation:subject")));
}

#[test]
fn fhirpath_patch() {
    let fhir = Fhir::start();
    let path = "Patient/fp1";
    fhir.put(
        path,
        r#"{"resourceType":"Patient","id":"fp1","active":true,"name":[{"family":"Chalmers","given":["Peter"]}],"birthDate":"1974-12-25"}"#,
    )
    .assert_status(201);
    let parameters = r#"{"resourceType":"Parameters","parameter":[
        {"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.birthDate"},{"name":"value","valueDate":"1974-12-26"}]},
        {"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient.name[0]"},{"name":"name","valueString":"given"},{"name":"value","valueString":"James"}]},
        {"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.active"}]}
    ]}"#;
    let response = fhir.request(
        "PATCH",
        path,
        &[("content-type", FHIR_JSON)],
        Some(parameters.as_bytes()),
    );
    response.assert_status(200);
    let patched = response.json();
    assert_eq!(patched["birthDate"], "1974-12-26");
    assert_eq!(patched["name"][0]["given"], json!(["Peter", "James"]));
    assert!(patched.get("active").is_none());
    assert_eq!(patched["meta"]["versionId"], "2");

    // A path that selects nothing cannot be replaced: 422, and nothing is written.
    let missing = r#"{"resourceType":"Parameters","parameter":[
        {"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.gender"},{"name":"value","valueCode":"male"}]}
    ]}"#;
    fhir.request(
        "PATCH",
        path,
        &[("content-type", FHIR_JSON)],
        Some(missing.as_bytes()),
    )
    .assert_outcome(422);
    // An operation without a type is a malformed patch: 400.
    let malformed = r#"{"resourceType":"Parameters","parameter":[
        {"name":"operation","part":[{"name":"path","valueString":"Patient.active"}]}
    ]}"#;
    fhir.request(
        "PATCH",
        path,
        &[("content-type", FHIR_JSON)],
        Some(malformed.as_bytes()),
    )
    .assert_outcome(400);
    // A patch whose result is invalid is refused by validation: 422.
    let invalid = r#"{"resourceType":"Parameters","parameter":[
        {"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"gender"},{"name":"value","valueCode":"boy"}]}
    ]}"#;
    fhir.request(
        "PATCH",
        path,
        &[("content-type", FHIR_JSON)],
        Some(invalid.as_bytes()),
    )
    .assert_outcome(422);
    let current = fhir.get(path).json();
    assert_eq!(current["meta"]["versionId"], "2");
}

/// Reads one HTTP/1.1 response with a Content-Length from `stream`: its status and body.
fn read_response(stream: &mut std::net::TcpStream) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

#[test]
fn an_answer_that_needs_no_body_keeps_the_connection() {
    use std::io::Write;
    let fhir = Fhir::start();
    let address = fhir
        .base()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // An unknown type is refused before its body is read; the body comes a little after
    // the head, as from a client that writes them apart.
    let body = r#"{"resourceType":"Foo"}"#;
    write!(
        stream,
        "POST /fhir/Foo HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    stream.write_all(body.as_bytes()).unwrap();
    let (status, text) = read_response(&mut stream).unwrap();
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("OperationOutcome"), "{text}");
    // The same connection answers the next request.
    write!(stream, "GET /health HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let (status, text) = read_response(&mut stream).expect("the connection was kept");
    assert_eq!((status, text.as_str()), (200, "ok"));
}
