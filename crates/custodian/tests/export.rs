//! Bulk export (`$export` and `custodian export`), through real HTTP and the real CLI:
//! a Synthea round trip (export, download, import into an empty store, compare by
//! content), `_type`, `_since`, `_typeFilter`, Patient and Group level, file splitting,
//! cancelling, progress, and the kick-off's errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::fhir::{Fhir, Reply};
use common::{TestServer, testdata};
use serde_json::{Value, json};

/// Type → id → resource without `meta.versionId` and `meta.lastUpdated`.
type Contents = BTreeMap<String, BTreeMap<String, Value>>;

const ASYNC: [(&str, &str); 2] = [
    ("prefer", "respond-async"),
    ("accept", "application/fhir+json"),
];

fn custodian(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(args)
        .env("CUSTODIAN_LOG", "warn")
        .output()
        .expect("run custodian")
}

fn succeeded(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// hospital and practitioner bundles, then the first `patients` patient bundles.
fn synthea_bundles(patients: usize) -> Option<Vec<PathBuf>> {
    let folder = testdata("synthea/synthea-100")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let (shared, people): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|path| {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        name.starts_with("hospital") || name.starts_with("practitioner")
    });
    Some(
        shared
            .into_iter()
            .chain(people.into_iter().take(patients))
            .collect(),
    )
}

fn load(fhir: &Fhir, bundles: &[PathBuf]) {
    for path in bundles {
        let body = std::fs::read_to_string(path).unwrap();
        let reply = fhir.request(
            "POST",
            "",
            &[("content-type", "application/fhir+json")],
            Some(&body),
        );
        assert_eq!(
            reply.status,
            200,
            "{}: {}",
            path.display(),
            &reply.text[..500.min(reply.text.len())]
        );
    }
}

/// Every current resource, read back through system history (not search, not export).
fn contents(base: &str) -> Contents {
    let http = common::agent();
    let mut seen = BTreeSet::new();
    let mut found = Contents::new();
    let mut next = Some(format!("{base}/_history?_count=1000"));
    while let Some(url) = next.take() {
        let text = http
            .get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let page: Value = serde_json::from_str(&text).unwrap();
        for entry in page["entry"].as_array().into_iter().flatten() {
            let full_url = entry["fullUrl"].as_str().unwrap();
            let mut parts = full_url.rsplit('/');
            let (id, resource_type) = (parts.next().unwrap(), parts.next().unwrap());
            if !seen.insert(format!("{resource_type}/{id}"))
                || entry["request"]["method"] == "DELETE"
            {
                continue; // an older version, or deleted
            }
            found
                .entry(resource_type.to_string())
                .or_default()
                .insert(id.to_string(), without_version(entry["resource"].clone()));
        }
        next = page["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|link| link["relation"] == "next")
            .and_then(|link| link["url"].as_str())
            .map(str::to_string);
    }
    found
}

fn without_version(mut resource: Value) -> Value {
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            resource.as_object_mut().unwrap().remove("meta");
        }
    }
    resource
}

/// Kicks off an export at `path` (`$export`, `Patient/$export`, ...): the status URL.
fn kick_off(fhir: &Fhir, path: &str) -> String {
    let reply = fhir.request("GET", path, &ASYNC, None);
    assert_eq!(reply.status, 202, "{path}: {}", reply.text);
    reply.header("content-location").unwrap().to_string()
}

/// Polls until the manifest; checks every 202 on the way.
fn finish(fhir: &Fhir, status_url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = fhir.get(status_url);
        match reply.status {
            202 => {
                check_progress(&reply);
                assert!(Instant::now() < deadline, "the export did not finish");
                std::thread::sleep(Duration::from_millis(20));
            }
            200 => {
                assert!(
                    reply
                        .header("content-type")
                        .unwrap()
                        .starts_with("application/json")
                );
                return reply.json();
            }
            other => panic!("status {other}: {}", reply.text),
        }
    }
}

fn check_progress(reply: &Reply) {
    let progress = reply.header("x-progress").expect("X-Progress");
    assert!(
        progress.starts_with("Exported ") && progress.ends_with(" resources"),
        "{progress}"
    );
    assert!(reply.header("retry-after").is_some());
}

/// Downloads every output file of `manifest` into `dir`; returns the lines per type.
fn download(fhir: &Fhir, manifest: &Value, dir: &Path) -> BTreeMap<String, Vec<Value>> {
    std::fs::create_dir_all(dir).unwrap();
    let mut lines: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for output in manifest["output"].as_array().unwrap() {
        let url = output["url"].as_str().unwrap();
        let reply = fhir.get(url);
        assert_eq!(reply.status, 200, "{url}: {}", reply.text);
        assert_eq!(
            reply.header("content-type"),
            Some("application/fhir+ndjson")
        );
        let name = url.rsplit('/').next().unwrap();
        std::fs::write(dir.join(name), &reply.text).unwrap();
        let resource_type = output["type"].as_str().unwrap();
        let parsed: Vec<Value> = reply
            .text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            parsed.len() as u64,
            output["count"].as_u64().unwrap(),
            "{url}"
        );
        assert!(
            parsed
                .iter()
                .all(|resource| resource["resourceType"] == resource_type)
        );
        lines
            .entry(resource_type.to_string())
            .or_default()
            .extend(parsed);
    }
    lines
}

/// `Type/id` of every downloaded resource.
fn keys(lines: &BTreeMap<String, Vec<Value>>) -> BTreeSet<String> {
    lines
        .values()
        .flatten()
        .map(|resource| {
            format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            )
        })
        .collect()
}

/// `Type/id` of every match of a search, across its pages.
fn search_keys(fhir: &Fhir, path: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut next = Some(path.to_string());
    while let Some(url) = next.take() {
        let bundle = fhir.search(&url);
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            if entry["search"]["mode"] == "match" {
                found.insert(format!(
                    "{}/{}",
                    entry["resource"]["resourceType"].as_str().unwrap(),
                    entry["resource"]["id"].as_str().unwrap()
                ));
            }
        }
        next = common::fhir::link(&bundle, "next");
    }
    found
}

/// The union of the Patient compartments of `patients`, by compartment search.
fn compartments(fhir: &Fhir, patients: &[String]) -> BTreeSet<String> {
    let mut union = BTreeSet::new();
    for id in patients {
        union.extend(search_keys(fhir, &format!("Patient/{id}/*?_count=1000")));
        union.insert(format!("Patient/{id}"));
    }
    union
}

#[test]
fn synthea_round_trip_and_parameters() {
    let Some(bundles) = synthea_bundles(10) else {
        return;
    };
    let fhir = Fhir::start();
    load(&fhir, &bundles);
    let original = contents(fhir.base());

    // System level, everything: download, import into an empty store, compare.
    let status_url = kick_off(&fhir, "$export");
    let manifest = finish(&fhir, &status_url);
    assert_eq!(manifest["request"], format!("{}/$export", fhir.base()));
    assert_eq!(manifest["requiresAccessToken"], true);
    assert_eq!(manifest["error"], json!([]));
    let transaction_time = manifest["transactionTime"].as_str().unwrap().to_string();
    let files = tempfile::tempdir().unwrap();
    let lines = download(&fhir, &manifest, files.path());
    for (resource_type, resources) in &original {
        assert_eq!(
            lines.get(resource_type).map_or(0, Vec::len),
            resources.len(),
            "{resource_type}"
        );
    }
    let imported_dir = tempfile::tempdir().unwrap();
    let text = succeeded(&custodian(&[
        "import",
        "--database",
        &common::database_url(imported_dir.path()),
        "--checkpoint",
        imported_dir.path().join("checkpoint").to_str().unwrap(),
        files.path().to_str().unwrap(),
    ]));
    let total: usize = original.values().map(BTreeMap::len).sum();
    assert!(
        text.contains(&format!("imported {total} resources")),
        "{text}"
    );
    let imported = TestServer::start_in(imported_dir.path(), &[]);
    let copy = contents(&imported.base);
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        copy.keys().collect::<Vec<_>>()
    );
    for (resource_type, resources) in &original {
        assert!(
            copy[resource_type] == *resources,
            "{resource_type} differs after the round trip"
        );
    }
    drop(imported);

    // _type
    let manifest = finish(
        &fhir,
        &kick_off(&fhir, "$export?_type=Patient,Organization"),
    );
    let lines = download(&fhir, &manifest, &files.path().join("type"));
    assert_eq!(
        lines.keys().collect::<Vec<_>>(),
        ["Organization", "Patient"]
    );
    assert_eq!(lines["Patient"].len(), original["Patient"].len());

    // _typeFilter: Observations that match, every Patient.
    let code = "http://loinc.org|8302-2";
    let manifest = finish(
        &fhir,
        &kick_off(
            &fhir,
            &format!(
                "$export?_type=Observation,Patient&_typeFilter=Observation%3Fcode%3D{}",
                code.replace('|', "%7C")
            ),
        ),
    );
    let lines = download(&fhir, &manifest, &files.path().join("filter"));
    let observations: BTreeSet<String> = lines["Observation"]
        .iter()
        .map(|o| format!("Observation/{}", o["id"].as_str().unwrap()))
        .collect();
    let expected = search_keys(&fhir, &format!("Observation?code={code}&_count=1000"));
    assert!(!expected.is_empty());
    assert_eq!(observations, expected);
    assert_eq!(lines["Patient"].len(), original["Patient"].len());

    // Patient level: the union of every patient's compartment.
    let patients: Vec<String> = original["Patient"].keys().cloned().collect();
    let manifest = finish(&fhir, &kick_off(&fhir, "Patient/$export"));
    assert_eq!(
        manifest["request"],
        format!("{}/Patient/$export", fhir.base())
    );
    let lines = download(&fhir, &manifest, &files.path().join("patients"));
    assert!(!lines.contains_key("Organization") && !lines.contains_key("Practitioner"));
    assert_eq!(keys(&lines), compartments(&fhir, &patients));

    // Group level: active Patient members only.
    let group = json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
    "member": [
        {"entity": {"reference": format!("Patient/{}", patients[0])}},
        {"entity": {"reference": format!("{}/Patient/{}", fhir.base(), patients[1])}},
        {"entity": {"reference": format!("Patient/{}", patients[2])}, "inactive": true},
        {"entity": {"reference": "Practitioner/x"}}
    ]});
    fhir.store(group);
    let manifest = finish(&fhir, &kick_off(&fhir, "Group/g1/$export"));
    let lines = download(&fhir, &manifest, &files.path().join("group"));
    let members = [patients[0].clone(), patients[1].clone()];
    assert_eq!(keys(&lines), compartments(&fhir, &members));
    // ... narrowed by `patient` in a Parameters body.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": format!("Patient/{}", patients[1])}},
        {"name": "_type", "valueString": "Patient,Encounter"}
    ]});
    let reply = fhir.request(
        "POST",
        "Group/g1/$export",
        &[
            ASYNC[0],
            ASYNC[1],
            ("content-type", "application/fhir+json"),
        ],
        Some(&parameters.to_string()),
    );
    assert_eq!(reply.status, 202, "{}", reply.text);
    let manifest = finish(&fhir, reply.header("content-location").unwrap());
    let lines = download(&fhir, &manifest, &files.path().join("group-patient"));
    let expected: BTreeSet<String> = compartments(&fhir, &members[1..])
        .into_iter()
        .filter(|key| key.starts_with("Patient/") || key.starts_with("Encounter/"))
        .collect();
    assert_eq!(keys(&lines), expected);

    // _since: only what changed after the first export's transactionTime.
    let mut patient = original["Patient"][&patients[0]].clone();
    patient["gender"] = json!("other");
    fhir.store(patient);
    let manifest = finish(
        &fhir,
        &kick_off(
            &fhir,
            &format!("$export?_since={}", transaction_time.replace(':', "%3A")),
        ),
    );
    let lines = download(&fhir, &manifest, &files.path().join("since"));
    let changed: BTreeSet<String> =
        [format!("Patient/{}", patients[0]), "Group/g1".to_string()].into();
    assert_eq!(keys(&lines), changed);
}

#[test]
fn kick_off_errors_and_unknown_jobs() {
    let fhir = Fhir::start();
    let reply = fhir.get("$export");
    assert!(
        reply.outcome(400).contains("respond-async"),
        "{}",
        reply.text
    );
    let reply = fhir.request("GET", "$export?_outputFormat=text/csv", &ASYNC, None);
    assert!(reply.outcome(400).contains("_outputFormat"));
    for format in ["application/fhir+ndjson", "application/ndjson", "ndjson"] {
        let path = format!("$export?_outputFormat={}", format.replace('+', "%2B"));
        finish(&fhir, &kick_off(&fhir, &path));
    }
    let reply = fhir.request("GET", "$export?_type=Nope", &ASYNC, None);
    reply.outcome(400);
    let reply = fhir.request("GET", "$export?_since=last-week", &ASYNC, None);
    reply.outcome(400);
    let reply = fhir.request(
        "GET",
        "$export?_typeFilter=Observation%3Fnope%3D1",
        &ASYNC,
        None,
    );
    reply.outcome(400);
    // Unsupported parameters: refused with handling=strict, ignored otherwise.
    let strict = [ASYNC[0], ASYNC[1], ("prefer", "handling=strict")];
    let reply = fhir.request(
        "GET",
        "$export?includeAssociatedData=LatestProvenanceResources",
        &strict,
        None,
    );
    assert!(reply.outcome(400).contains("includeAssociatedData"));
    finish(
        &fhir,
        &kick_off(
            &fhir,
            "$export?includeAssociatedData=LatestProvenanceResources",
        ),
    );
    let reply = fhir.request("GET", "Observation/$export", &ASYNC, None);
    reply.outcome(404);
    let reply = fhir.request("GET", "Group/none/$export", &ASYNC, None);
    reply.outcome(404);

    let unknown = format!("{}/$export-status/no-such-job", fhir.base());
    fhir.get(&unknown).outcome(404);
    fhir.request("DELETE", &unknown, &[], None).outcome(404);
    fhir.get(&format!(
        "{}/$export-file/no-such-job/Patient.1.ndjson",
        fhir.base()
    ))
    .outcome(404);
    // A job serves its output files and nothing else from its directory.
    fhir.store(json!({"resourceType": "Patient", "id": "p1"}));
    let status_url = kick_off(&fhir, "$export");
    let manifest = finish(&fhir, &status_url);
    let job = status_url.rsplit('/').next().unwrap();
    let files = format!("{}/$export-file/{job}", fhir.base());
    assert_eq!(fhir.get(&format!("{files}/Patient.1.ndjson")).status, 200);
    fhir.get(&format!("{files}/manifest.json")).outcome(404);
    fhir.get(&format!("{files}/..%2F..%2Fcustodian.db"))
        .outcome(404);
    assert_eq!(manifest["output"].as_array().unwrap().len(), 1);
}

#[test]
fn delete_cancels_a_job_and_removes_its_files() {
    let fhir = Fhir::start();
    for n in 0..50 {
        fhir.store(json!({"resourceType": "Patient", "id": format!("p{n}")}));
    }
    let export_dir = fhir.server.data_dir.join("export");
    // Done or still running, a deleted job is gone with its files.
    for wait in [false, true] {
        let status_url = kick_off(&fhir, "$export");
        let job = status_url.rsplit('/').next().unwrap().to_string();
        let manifest = wait.then(|| finish(&fhir, &status_url));
        if let Some(manifest) = &manifest {
            assert!(export_dir.join(&job).join("Patient.1.ndjson").exists());
            assert_eq!(manifest["output"][0]["count"], 50);
        }
        assert_eq!(fhir.request("DELETE", &status_url, &[], None).status, 202);
        fhir.get(&status_url).outcome(404);
        if let Some(manifest) = manifest {
            fhir.get(manifest["output"][0]["url"].as_str().unwrap())
                .outcome(404);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while export_dir.join(&job).exists() {
            assert!(
                Instant::now() < deadline,
                "job {job}'s files were not removed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn reports_progress_while_running_and_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    // One byte per file: a file per resource, so the job runs long enough to be seen.
    let server = TestServer::start_in(data.path(), &["--export-max-file-bytes", "1"]);
    let fhir = Fhir::on(server);
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": (0..2000).map(|n| json!({
        "resource": {"resourceType": "Patient", "id": format!("p{n}")},
        "request": {"method": "PUT", "url": format!("Patient/p{n}")}
    })).collect::<Vec<_>>()});
    let reply = fhir.post("", &bundle);
    assert_eq!(reply.status, 200);
    let answer = reply.json();
    let entries = answer["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2000);
    for entry in entries {
        let status = entry["response"]["status"].as_str().unwrap_or_default();
        assert!(status.starts_with("201"), "an entry failed: {entry}");
    }
    let mut seen_running = false;
    let mut manifest = Value::Null;
    for _ in 0..5 {
        let status_url = kick_off(&fhir, "$export");
        let reply = fhir.get(&status_url);
        if reply.status == 202 {
            check_progress(&reply);
            seen_running = true;
        }
        manifest = finish(&fhir, &status_url);
        if seen_running {
            break;
        }
    }
    assert!(seen_running, "never saw a running job");
    assert_eq!(manifest["output"].as_array().unwrap().len(), 2000);

    // A finished job survives a restart of the server.
    let url = manifest["output"][0]["url"].as_str().unwrap().to_string();
    let Fhir { server, .. } = fhir;
    server.kill();
    let server = TestServer::start_in(data.path(), &[]);
    let fhir = Fhir::on(server);
    let moved = url.replacen(url.split("/fhir").next().unwrap(), &fhir.server.origin, 1);
    let reply = fhir.get(&moved);
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[test]
fn files_split_at_the_limit() {
    let data = tempfile::tempdir().unwrap();
    let limit = 2000;
    let server = TestServer::start_in(
        data.path(),
        &["--export-max-file-bytes", &limit.to_string()],
    );
    let fhir = Fhir::on(server);
    for n in 0..40 {
        fhir.store(json!({"resourceType": "Patient", "id": format!("p{n}"),
            "name": [{"family": "x".repeat(1 + n * 10)}]}));
    }
    // One resource larger than the limit on its own.
    fhir.store(
        json!({"resourceType": "Basic", "id": "big", "code": {"text": "y".repeat(3 * limit)}}),
    );
    let manifest = finish(&fhir, &kick_off(&fhir, "$export"));
    let outputs = manifest["output"].as_array().unwrap();
    let patient_files: Vec<&Value> = outputs.iter().filter(|o| o["type"] == "Patient").collect();
    assert!(patient_files.len() > 3, "{manifest}");
    let mut patients = 0;
    for output in outputs {
        let text = fhir.get(output["url"].as_str().unwrap()).text;
        let lines = text.lines().count();
        assert!(
            text.len() <= limit || lines == 1,
            "{} has {} bytes",
            output["url"],
            text.len()
        );
        if output["type"] == "Patient" {
            patients += lines;
        }
    }
    assert_eq!(patients, 40);
    assert!(
        outputs
            .iter()
            .any(|o| o["type"] == "Basic" && o["count"] == 1)
    );
}

#[test]
fn cli_export_round_trip() {
    let Some(bundles) = synthea_bundles(3) else {
        return;
    };
    let source = tempfile::tempdir().unwrap();
    let database = common::database_url(source.path());
    let mut args = vec![
        "import".to_string(),
        "--database".to_string(),
        database.clone(),
        "--checkpoint".to_string(),
        source.path().join("checkpoint").display().to_string(),
    ];
    args.extend(bundles.iter().map(|path| path.display().to_string()));
    succeeded(&custodian(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));

    // From the store directly, with small files.
    let out = tempfile::tempdir().unwrap();
    let direct = out.path().join("direct");
    let text = succeeded(&custodian(&[
        "export",
        "--database",
        &database,
        "--out",
        direct.to_str().unwrap(),
        "--max-file-bytes",
        "100000",
    ]));
    assert!(text.starts_with("exported "), "{text}");
    assert!(text.contains("Observation"), "{text}");
    let again = custodian(&[
        "export",
        "--database",
        &database,
        "--out",
        direct.to_str().unwrap(),
    ]);
    assert!(
        !again.status.success(),
        "exporting into a non-empty directory must fail"
    );

    let copy_dir = tempfile::tempdir().unwrap();
    succeeded(&custodian(&[
        "import",
        "--database",
        &common::database_url(copy_dir.path()),
        "--checkpoint",
        copy_dir.path().join("checkpoint").to_str().unwrap(),
        direct.to_str().unwrap(),
    ]));
    let original_server = TestServer::start_in(source.path(), &[]);
    let original = contents(&original_server.base);
    let copy_server = TestServer::start_in(copy_dir.path(), &[]);
    let copy = contents(&copy_server.base);
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        copy.keys().collect::<Vec<_>>()
    );
    for (resource_type, resources) in &original {
        assert!(
            copy[resource_type] == *resources,
            "{resource_type} differs after the round trip"
        );
    }

    // Through the running server: the same lines.
    let remote = out.path().join("remote");
    let text = succeeded(&custodian(&[
        "export",
        "--server",
        &original_server.base,
        "--out",
        remote.to_str().unwrap(),
        "--type",
        "Patient,Observation",
    ]));
    assert!(text.contains("Patient"), "{text}");
    let lines_of = |dir: &Path, prefix: &str| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(prefix)
            })
            .flat_map(|path| {
                std::fs::read_to_string(path)
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    for prefix in ["Patient.", "Observation."] {
        let remote_lines = lines_of(&remote, prefix);
        assert!(!remote_lines.is_empty());
        assert_eq!(remote_lines, lines_of(&direct, prefix), "{prefix}");
    }
    let patient = original["Patient"].keys().next().unwrap();
    let group_out = out.path().join("patient");
    succeeded(&custodian(&[
        "export",
        "--server",
        &original_server.base,
        "--out",
        group_out.to_str().unwrap(),
        "--patient",
        patient,
    ]));
    let fhir_lines = lines_of(&group_out, "Patient.");
    assert_eq!(fhir_lines.len(), 1);
}
