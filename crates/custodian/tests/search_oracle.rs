//! Differential test of search over synthea-100.
//!
//! Hundreds of queries, generated from the data, are answered twice: by the server
//! (index rows written with each resource, SQL at search time, paging over HTTP) and by
//! a brute-force oracle here that evaluates each parameter's FHIRPath expression on
//! every stored resource and applies the search semantics directly, with no index and
//! no SQL. The result sets, and the included sets, must be equal.
//!
//! The oracle shares only the definitions of meaning with the server: the parsed query,
//! the parameters' expressions, string normalisation, the ranges dates and numbers
//! stand for, and what each prefix means on them (`search::Prefix::matches_*`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod oracle;

use std::collections::{BTreeMap, BTreeSet};

use common::{TestServer, agent, testdata};
use oracle::{Corpus, Oracle};
use serde_json::Value;

fn get(url: &str) -> (u16, Value) {
    let mut response = agent().get(url).call().unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn encode(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .finish()
}

/// Loads synthea-100 as transactions, then reads every current resource back through
/// history (not search), so the oracle sees exactly what the server stored.
fn load(base: &str, folder: &std::path::Path) -> Corpus {
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files.sort_by_key(|path| {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        !(name.starts_with("hospital") || name.starts_with("practitioner"))
    });
    let extras = serde_json::json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": oracle::extras().into_iter().map(|resource| {
            let resource_type = resource["resourceType"].as_str().unwrap().to_string();
            serde_json::json!({"resource": resource, "request": {"method": "POST", "url": resource_type}})
        }).collect::<Vec<_>>()
    });
    let mut bodies: Vec<(String, String)> = vec![("extras".into(), extras.to_string())];
    for path in &files {
        bodies.push((
            path.display().to_string(),
            std::fs::read_to_string(path).unwrap(),
        ));
    }
    for (name, body) in &bodies {
        let mut response = agent()
            .post(base)
            .header("Content-Type", "application/fhir+json")
            .send(body.as_str())
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        assert_eq!(status, 200, "{name}: {}", &text[..text.len().min(500)]);
    }
    let mut corpus = Corpus::default();
    let mut seen = BTreeSet::new();
    let mut next = Some(format!("{base}/_history?_count=1000"));
    while let Some(url) = next.take() {
        let (status, page) = get(&url);
        assert_eq!(status, 200, "{page}");
        for entry in page["entry"].as_array().into_iter().flatten() {
            // fullUrl is `{base}/Type/id` for every version, deletions included.
            let full_url = entry["fullUrl"].as_str().unwrap_or_default();
            let key: Vec<&str> = full_url.rsplit('/').take(2).collect();
            if key.len() < 2 || !seen.insert((key[1].to_string(), key[0].to_string())) {
                continue; // an older version of a resource already seen
            }
            if entry["request"]["method"] == "DELETE" {
                continue;
            }
            corpus.add(entry["resource"].clone());
        }
        next = page["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|link| link["relation"] == "next")
            .and_then(|link| link["url"].as_str())
            .map(str::to_string);
    }
    corpus
}

/// Every page of a search, following `next` links: the match ids in order, and the
/// included resources.
struct Answer {
    matches: Vec<(String, String)>,
    included: BTreeSet<(String, String)>,
    total: Option<u64>,
}

fn search(base: &str, path: &str, params: &[(String, String)]) -> Result<Answer, String> {
    let mut next = Some(format!("{base}/{path}?{}", encode(params)));
    let mut answer = Answer {
        matches: Vec::new(),
        included: BTreeSet::new(),
        total: None,
    };
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > 200 {
            return Err("more than 200 pages".into());
        }
        let (status, bundle) = get(&url);
        if status != 200 {
            return Err(format!("status {status}: {bundle}"));
        }
        if answer.total.is_none() {
            answer.total = bundle["total"].as_u64();
        }
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let resource = &entry["resource"];
            let key = (
                resource["resourceType"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                resource["id"].as_str().unwrap_or_default().to_string(),
            );
            match entry["search"]["mode"].as_str() {
                Some("match") => answer.matches.push(key),
                Some("include") => {
                    answer.included.insert(key);
                }
                _ => {}
            }
        }
        next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|link| link["relation"] == "next")
            .and_then(|link| link["url"].as_str())
            .map(str::to_string);
    }
    Ok(answer)
}

#[test]
fn search_agrees_with_a_brute_force_oracle_on_synthea() {
    let Some(folder) = testdata("synthea/synthea-100") else {
        return;
    };
    let (server, _dir) = TestServer::start();
    let started = std::time::Instant::now();
    let corpus = load(&server.base, &folder);
    eprintln!(
        "loaded {} resources in {:.1} s",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
    let mut queries = oracle::generate(&corpus, 0x5eed);
    oracle::extra_queries(&mut queries);
    let mut env = fhirpath::Environment::new();
    env.resolve_stubs(true);
    let oracle = Oracle::new(&corpus, &env);
    let mut failures = Vec::new();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut nonempty = 0;
    for query in &queries {
        let mut params = query.params.clone();
        params.push(("_count".into(), "97".into()));
        let expected = match oracle.answer(&query.resource_type, &query.params) {
            Ok(expected) => expected,
            Err(error) => panic!("the oracle cannot parse {}: {error}", query.text()),
        };
        let answer = match search(&server.base, &query.resource_type, &params) {
            Ok(answer) => answer,
            Err(error) => {
                failures.push(format!("{}: {error}", query.text()));
                continue;
            }
        };
        *by_kind.entry(query.kind).or_default() += 1;
        let got: BTreeSet<_> = answer.matches.iter().cloned().collect();
        if got.len() != answer.matches.len() {
            failures.push(format!("{}: a match appears on two pages", query.text()));
        }
        if !got.is_empty() {
            nonempty += 1;
        }
        if got != expected.matches {
            let missing: Vec<_> = expected.matches.difference(&got).take(3).collect();
            let extra: Vec<_> = got.difference(&expected.matches).take(3).collect();
            failures.push(format!(
                "{}: server {} vs oracle {} matches; missing {missing:?}, extra {extra:?}",
                query.text(),
                got.len(),
                expected.matches.len()
            ));
            continue;
        }
        let included: BTreeSet<_> = answer.included.difference(&got).cloned().collect();
        let expected_included: BTreeSet<_> = expected.included.difference(&got).cloned().collect();
        if included != expected_included {
            failures.push(format!(
                "{}: server includes {} vs oracle {}",
                query.text(),
                included.len(),
                expected_included.len()
            ));
        }
        // An accurate total over every match.
        if query.params.iter().any(|(name, _)| name == "_total")
            && answer.total != Some(expected.matches.len() as u64)
        {
            failures.push(format!(
                "{}: total {:?} vs {}",
                query.text(),
                answer.total,
                expected.matches.len()
            ));
        }
    }
    eprintln!(
        "{} queries ({} with matches), by kind: {by_kind:?}",
        queries.len(),
        nonempty
    );
    assert!(
        failures.is_empty(),
        "{} of {} queries disagree:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
    assert!(queries.len() >= 300, "only {} queries", queries.len());
    assert!(
        nonempty * 2 >= queries.len(),
        "too few queries have matches"
    );
}
