//! A FHIR client for HTTP tests: a fresh server, requests with headers and bodies,
//! replies with their status, headers and JSON, and helpers to read searchset Bundles.

use serde_json::Value;

use super::{TestServer, agent};

pub const FHIR_JSON: &str = "application/fhir+json";

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {:?}", self.text))
    }

    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts an OperationOutcome with `status`; returns every issue's diagnostics, joined.
    pub fn outcome(&self, status: u16) -> String {
        let body = self.ok(status);
        assert_eq!(body["resourceType"], "OperationOutcome", "{}", self.text);
        body["issue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|issue| issue["diagnostics"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub struct Fhir {
    pub server: TestServer,
    _dir: tempfile::TempDir,
    pub http: ureq::Agent,
}

/// Percent-encodes what a URL may not carry as it is (spaces, `|`, non-ASCII), leaving
/// the query's structure (`?`, `&`, `=`, `,`, `:`) alone.
pub fn encode(path: &str) -> String {
    let mut out = String::new();
    for byte in path.bytes() {
        match byte {
            b' ' => out.push_str("%20"),
            b'|' => out.push_str("%7C"),
            b'"' => out.push_str("%22"),
            0x80.. => out.push_str(&format!("%{byte:02X}")),
            _ => out.push(byte as char),
        }
    }
    out
}

impl Fhir {
    pub fn start() -> Fhir {
        let (server, dir) = TestServer::start();
        Fhir {
            server,
            _dir: dir,
            http: agent(),
        }
    }

    /// A client of a server started with its own data directory (`TestServer::start_in`).
    pub fn on(server: TestServer) -> Fhir {
        Fhir {
            server,
            _dir: tempfile::tempdir().unwrap(),
            http: agent(),
        }
    }

    pub fn base(&self) -> &str {
        &self.server.base
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") {
            path.to_string()
        } else if path.is_empty() || path.starts_with('?') {
            format!("{}{}", self.server.base, encode(path))
        } else {
            format!("{}/{}", self.server.base, encode(path))
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = match body {
            Some(body) => self
                .http
                .run(builder.body(body.as_bytes().to_vec()).unwrap()),
            None => self.http.run(builder.body(()).unwrap()),
        }
        .unwrap_or_else(|error| panic!("{method} {path} failed: {error}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.into_body().read_to_string().unwrap();
        Reply {
            status,
            headers,
            text,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], None)
    }

    pub fn put(&self, path: &str, resource: &Value) -> Reply {
        self.request(
            "PUT",
            path,
            &[("content-type", FHIR_JSON)],
            Some(&resource.to_string()),
        )
    }

    pub fn post(&self, path: &str, resource: &Value) -> Reply {
        self.request(
            "POST",
            path,
            &[("content-type", FHIR_JSON)],
            Some(&resource.to_string()),
        )
    }

    /// Stores `resource` under its own id.
    pub fn store(&self, resource: Value) {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let reply = self.put(&path, &resource);
        assert!(
            matches!(reply.status, 200 | 201),
            "PUT {path}: {}",
            reply.text
        );
    }

    /// A searchset (200 expected).
    pub fn search(&self, path: &str) -> Value {
        let reply = self.get(path);
        let bundle = reply.ok(200);
        assert_eq!(bundle["resourceType"], "Bundle", "{}", reply.text);
        assert_eq!(bundle["type"], "searchset", "{}", reply.text);
        bundle
    }
}

pub fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

/// The ids of the matches, in order.
pub fn match_ids(bundle: &Value) -> Vec<String> {
    entries(bundle)
        .iter()
        .filter(|entry| entry["search"]["mode"] == "match")
        .map(|entry| entry["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// The ids of the matches, sorted.
pub fn ids(bundle: &Value) -> Vec<String> {
    let mut ids = match_ids(bundle);
    ids.sort();
    ids
}

/// `Type/id` of the entries with search mode `mode`, sorted.
pub fn typed(bundle: &Value, mode: &str) -> Vec<String> {
    let mut found: Vec<String> = entries(bundle)
        .iter()
        .filter(|entry| entry["search"]["mode"] == mode)
        .map(|entry| {
            format!(
                "{}/{}",
                entry["resource"]["resourceType"].as_str().unwrap(),
                entry["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    found.sort();
    found
}

pub fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == relation)
        .map(|link| link["url"].as_str().unwrap().to_string())
}

pub fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
