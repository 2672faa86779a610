//! Scans (bulk export's reads) through the public API, on both backends: every
//! current resource type by type in rid order and pages, `_since`, patients'
//! compartments and `_typeFilter`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

use serde_json::{Value, json};

use crate::{Instant, Method, Patients, ScanRequest, Store, TypeFilter, Write};

fn put(resource: Value) -> Write {
    let Value::Object(resource) = resource else {
        unreachable!()
    };
    Write::Update {
        resource_type: resource["resourceType"].as_str().unwrap().to_string(),
        id: resource["id"].as_str().unwrap().to_string(),
        resource,
        if_match: None,
        method: Method::Update,
    }
}

fn observation(id: &str, patient: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")}})
}

/// `Type/id` of everything the scan reads, in order, and the page sizes.
fn read_all(store: &Store, request: &ScanRequest) -> (Vec<String>, Vec<usize>) {
    let mut scan = store.scan(request).unwrap();
    let mut found = Vec::new();
    let mut pages = Vec::new();
    while let Some(page) = scan.next_page().unwrap() {
        pages.push(page.len());
        for scanned in page {
            let body: Value = serde_json::from_str(&scanned.body).unwrap();
            assert_eq!(body["id"], scanned.id.as_str());
            assert_eq!(body["resourceType"], scanned.resource_type.as_str());
            found.push(format!("{}/{}", scanned.resource_type, scanned.id));
        }
    }
    (found, pages)
}

crate::each_backend! {
    #[tokio::test]
    async fn pages_every_current_resource_type_by_type(db) {
        let store = db.open();
        let writes: Vec<Write> = (0..5000)
            .map(|n| put(json!({"resourceType": "Patient", "id": format!("p{n}")})))
            .collect();
        store.write_all(writes).await.unwrap();
        store
            .write_all(vec![
                put(observation("o1", "p1", "1-1")),
                put(json!({"resourceType": "Organization", "id": "org"})),
            ])
            .await
            .unwrap();
        store
            .write(Write::Delete {
                resource_type: "Patient".into(),
                id: "p7".into(),
                if_match: None,
            })
            .await
            .unwrap();
        let (found, pages) = read_all(&store, &ScanRequest::default());
        assert_eq!(found.len(), 5001);
        assert_eq!(pages, [1, 1, 2048, 2048, 903]);
        assert_eq!(found[0], "Observation/o1");
        assert_eq!(found[1], "Organization/org");
        assert_eq!(found[2], "Patient/p0");
        assert!(!found.contains(&"Patient/p7".to_string()));
        let scan = store.scan(&ScanRequest::default()).unwrap();
        assert_eq!(scan.estimate(), 5001);

        let only = ScanRequest {
            types: vec!["Organization".into(), "Basic".into()],
            ..ScanRequest::default()
        };
        assert_eq!(read_all(&store, &only).0, ["Organization/org"]);
    }
}

crate::each_backend! {
    #[tokio::test]
    async fn since_patients_and_filters(db) {
        let store = db.open();
        store
            .write_all(vec![
                put(json!({"resourceType": "Patient", "id": "a"})),
                put(json!({"resourceType": "Patient", "id": "b",
                    "link": [{"other": {"reference": "Patient/a"}, "type": "seealso"}]})),
                put(json!({"resourceType": "Patient", "id": "c"})),
                put(observation("oa", "a", "1-1")),
                put(observation("ob", "b", "2-2")),
                put(json!({"resourceType": "Organization", "id": "org"})),
            ])
            .await
            .unwrap();
        let first = store.scan(&ScanRequest::default()).unwrap();
        let before = first.transaction_time();
        drop(first);
        store
            .write(put(observation("oc", "c", "1-1")))
            .await
            .unwrap();

        let since = ScanRequest {
            since: Some(before),
            ..ScanRequest::default()
        };
        assert_eq!(read_all(&store, &since).0, ["Observation/oc"]);
        let scan = store.scan(&since).unwrap();
        assert!(scan.transaction_time() > before);
        let everything = ScanRequest {
            since: Some(Instant(0)),
            ..ScanRequest::default()
        };
        assert_eq!(read_all(&store, &everything).0.len(), 7);

        let all = ScanRequest {
            patients: Some(Patients::All),
            ..ScanRequest::default()
        };
        assert_eq!(
            read_all(&store, &all).0,
            [
                "Observation/oa",
                "Observation/ob",
                "Observation/oc",
                "Patient/a",
                "Patient/b",
                "Patient/c"
            ]
        );
        let some = ScanRequest {
            patients: Some(Patients::Only(vec!["a".into(), "x".into()])),
            ..ScanRequest::default()
        };
        // b links to a: it is in a's compartment.
        assert_eq!(
            read_all(&store, &some).0,
            ["Observation/oa", "Patient/a", "Patient/b"]
        );
        let none = ScanRequest {
            patients: Some(Patients::Only(Vec::new())),
            ..ScanRequest::default()
        };
        assert!(read_all(&store, &none).0.is_empty());

        let parsed = search::parse(
            &["Observation".to_string()],
            &[("code".to_string(), "http://loinc.org|1-1".to_string())],
            search::ParseOptions { strict: true },
        )
        .unwrap();
        let filtered = ScanRequest {
            filters: vec![TypeFilter {
                resource_type: "Observation".into(),
                query: parsed.query,
            }],
            ..ScanRequest::default()
        };
        let (found, _) = read_all(&store, &filtered);
        assert_eq!(
            found,
            [
                "Observation/oa",
                "Observation/oc",
                "Organization/org",
                "Patient/a",
                "Patient/b",
                "Patient/c"
            ]
        );
    }
}
