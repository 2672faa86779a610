//! The record store through its public API: versioning, `If-Match`, deletion, group
//! commit under concurrency, history paging and time windows, and durability across
//! reopen. Every test runs on both backends (`store::each_backend!`): SQLite, and
//! PostgreSQL when it is reachable (see `store::testing`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

use std::collections::HashSet;

use serde_json::{Map, Value, json};
use store::{
    HistoryPage, HistoryQuery, HistoryScope, Instant, Method, Period, Store, StoreError, Version,
    Write, Written,
};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn patient(marker: &str) -> Map<String, Value> {
    object(json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": marker}],
    }))
}

fn patient_with_id(id: &str, marker: &str) -> Map<String, Value> {
    let mut resource = patient(marker);
    resource.insert("id".into(), Value::String(id.into()));
    resource
}

fn create(resource: Map<String, Value>) -> Write {
    Write::Create { resource, id: None }
}

fn update(id: &str, resource: Map<String, Value>, if_match: Option<u64>) -> Write {
    Write::Update {
        resource_type: "Patient".into(),
        id: id.into(),
        resource,
        if_match,
        method: Method::Update,
    }
}

fn delete(id: &str, if_match: Option<u64>) -> Write {
    Write::Delete {
        resource_type: "Patient".into(),
        id: id.into(),
        if_match,
    }
}

fn written(result: Result<Written, StoreError>) -> Version {
    result
        .expect("write succeeds")
        .version
        .expect("write makes a version")
}

fn body(version: &Version) -> Value {
    serde_json::from_str(version.body.as_deref().expect("a live version has a body"))
        .expect("stored body is JSON")
}

fn marker(version: &Version) -> String {
    body(version)["identifier"][0]["value"]
        .as_str()
        .expect("marker")
        .to_string()
}

fn query(scope: HistoryScope) -> HistoryQuery {
    HistoryQuery {
        scope,
        since: None,
        at: None,
        before: None,
        count: 1000,
    }
}

fn instance(id: &str) -> HistoryScope {
    HistoryScope::Instance("Patient".into(), id.into())
}

/// `(id, version)` of each entry of a page, in page order.
fn keys(page: &HistoryPage) -> Vec<(String, u64)> {
    page.versions
        .iter()
        .map(|version| (version.id.clone(), version.version))
        .collect()
}

store::each_backend! {
    #[tokio::test]
    async fn versions_increment_and_every_version_stays_readable(db) {
        let store = db.open();
        let first = written(
            store
                .write(update("p1", patient_with_id("p1", "v1"), None))
                .await,
        );
        assert_eq!((first.version, first.method), (1, Method::Update));
        for n in 2..=5u64 {
            let next = store
                .write(update("p1", patient_with_id("p1", &format!("v{n}")), None))
                .await
                .expect("update");
            assert!(
                !next.created,
                "an update of a live resource is not a create"
            );
            assert_eq!(next.version.expect("version").version, n);
        }
        let current = store.read("Patient", "p1").await.unwrap().expect("exists");
        assert_eq!(current.version, 5);
        assert_eq!(marker(&current), "v5");
        for n in 1..=5u64 {
            let old = store
                .vread("Patient", "p1", n)
                .await
                .unwrap()
                .expect("vread");
            assert_eq!(old.version, n);
            assert_eq!(marker(&old), format!("v{n}"));
        }
        assert!(store.vread("Patient", "p1", 6).await.unwrap().is_none());
        assert!(store.vread("Patient", "p1", 0).await.unwrap().is_none());
        assert!(store.read("Patient", "nobody").await.unwrap().is_none());
        assert!(store.read("Observation", "p1").await.unwrap().is_none());
    }
}

store::each_backend! {
    #[tokio::test]
    async fn server_fields_are_stamped_into_the_body(db) {
        let store = db.open();
        // A client id and meta on create are ignored; other meta is kept.
        let mut resource = patient("m");
        resource.insert("id".into(), json!("client-chosen"));
        resource.insert(
            "meta".into(),
            json!({"versionId": "42", "lastUpdated": "2001-01-01T00:00:00Z", "tag": [{"code": "t"}]}),
        );
        let outcome = store.write(create(resource)).await.expect("create");
        assert!(outcome.created);
        let version = outcome.version.expect("version");
        assert_eq!(version.method, Method::Create);
        assert_eq!(version.version, 1);
        assert_ne!(version.id, "client-chosen");
        assert!(fhir_id_like(&version.id), "{}", version.id);

        let stamped = body(&version);
        assert_eq!(stamped["id"], json!(version.id));
        assert_eq!(stamped["meta"]["versionId"], json!("1"));
        assert_eq!(
            stamped["meta"]["lastUpdated"],
            json!(version.last_updated.to_fhir())
        );
        assert_eq!(stamped["meta"]["tag"], json!([{"code": "t"}]));
        let top: Vec<&str> = stamped
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(top, ["resourceType", "id", "meta", "identifier"]);

        // What was returned is what is stored.
        let read = store.read("Patient", &version.id).await.unwrap().unwrap();
        assert_eq!(read.body, version.body);
        assert_eq!(read.last_updated, version.last_updated);

        // An update restamps.
        let mut changed = body(&read);
        changed["active"] = json!(true);
        let second = written(
            store
                .write(update(&version.id, object(changed), Some(1)))
                .await,
        );
        let stamped = body(&second);
        assert_eq!(stamped["meta"]["versionId"], json!("2"));
        assert_eq!(
            stamped["meta"]["lastUpdated"],
            json!(second.last_updated.to_fhir())
        );
        assert!(second.last_updated > version.last_updated);
    }
}

fn fhir_id_like(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

store::each_backend! {
    #[tokio::test]
    async fn element_order_and_decimal_text_are_preserved(db) {
        let store = db.open();
        let text = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50,"unit":"mg","system":"http://unitsofmeasure.org"},"component":[{"valueDecimal":0.000100},{"valueDecimal":1e+2},{"valueDecimal":-0.0},{"valueInteger":12345678901234567890123}],"effectiveDateTime":"2024-01-01","note":[{"text":"é \u00e9 \" \\"}]}"#;
        let resource: Value = serde_json::from_str(text).unwrap();
        let version = written(
            store
                .write(Write::Update {
                    resource_type: "Observation".into(),
                    id: "o1".into(),
                    resource: object(resource),
                    if_match: None,
                    method: Method::Update,
                })
                .await,
        );
        let expected = format!(
            r#"{{"resourceType":"Observation","id":"o1","meta":{{"versionId":"1","lastUpdated":"{}"}},"status":"final","code":{{"text":"x"}},"valueQuantity":{{"value":1.50,"unit":"mg","system":"http://unitsofmeasure.org"}},"component":[{{"valueDecimal":0.000100}},{{"valueDecimal":1e+2}},{{"valueDecimal":-0.0}},{{"valueInteger":12345678901234567890123}}],"effectiveDateTime":"2024-01-01","note":[{{"text":"é é \" \\"}}]}}"#,
            version.last_updated.to_fhir()
        );
        assert_eq!(version.body.as_deref(), Some(expected.as_str()));
        let read = store.read("Observation", "o1").await.unwrap().unwrap();
        assert_eq!(read.body.as_deref(), Some(expected.as_str()));
    }
}

store::each_backend! {
    #[tokio::test]
    async fn if_match_mismatch_writes_nothing(db) {
        let store = db.open();
        written(
            store
                .write(update("p", patient_with_id("p", "one"), None))
                .await,
        );
        written(
            store
                .write(update("p", patient_with_id("p", "two"), Some(1)))
                .await,
        );

        let stale = store
            .write(update("p", patient_with_id("p", "stale"), Some(1)))
            .await;
        assert_eq!(
            stale.err(),
            Some(StoreError::VersionMismatch {
                expected: 1,
                current: Some(2)
            })
        );
        let future = store.write(delete("p", Some(3))).await;
        assert_eq!(
            future.err(),
            Some(StoreError::VersionMismatch {
                expected: 3,
                current: Some(2)
            })
        );
        let missing = store
            .write(update("q", patient_with_id("q", "x"), Some(1)))
            .await;
        assert_eq!(
            missing.err(),
            Some(StoreError::VersionMismatch {
                expected: 1,
                current: None
            })
        );

        let current = store.read("Patient", "p").await.unwrap().unwrap();
        assert_eq!((current.version, marker(&current)), (2, "two".to_string()));
        assert!(store.read("Patient", "q").await.unwrap().is_none());
        let history = store.history(query(HistoryScope::System)).await.unwrap();
        assert_eq!(history.total, 2);
        assert_eq!(keys(&history), [("p".into(), 2), ("p".into(), 1)]);
    }
}

store::each_backend! {
    #[tokio::test]
    async fn invalid_writes_are_refused(db) {
        let store = db.open();
        let no_type = store
            .write(create(object(json!({"active": true}))))
            .await
            .err();
        assert!(
            matches!(no_type, Some(StoreError::Invalid(_))),
            "{no_type:?}"
        );
        let wrong_type = store
            .write(Write::Update {
                resource_type: "Observation".into(),
                id: "x".into(),
                resource: patient_with_id("x", "m"),
                if_match: None,
                method: Method::Update,
            })
            .await
            .err();
        assert!(
            matches!(wrong_type, Some(StoreError::Invalid(_))),
            "{wrong_type:?}"
        );
        assert_eq!(
            store
                .history(query(HistoryScope::System))
                .await
                .unwrap()
                .total,
            0
        );
    }
}

store::each_backend! {
    #[tokio::test]
    async fn delete_is_a_version_and_deleting_nothing_is_not(db) {
        let store = db.open();
        written(
            store
                .write(update("d", patient_with_id("d", "alive"), None))
                .await,
        );
        let deleted = store.write(delete("d", Some(1))).await.expect("delete");
        assert!(!deleted.created);
        let deletion = deleted.version.expect("a deletion is a version");
        assert_eq!(deletion.version, 2);
        assert_eq!(deletion.method, Method::Delete);
        assert!(deletion.is_deleted());

        let read = store
            .read("Patient", "d")
            .await
            .unwrap()
            .expect("still known");
        assert!(read.is_deleted());
        assert_eq!(read.version, 2);
        assert_eq!(read.method, Method::Delete);
        let old = store.vread("Patient", "d", 1).await.unwrap().unwrap();
        assert_eq!(marker(&old), "alive");
        assert!(
            store
                .vread("Patient", "d", 2)
                .await
                .unwrap()
                .unwrap()
                .is_deleted()
        );

        // Deleting again, or deleting what never existed, changes nothing.
        let again = store.write(delete("d", None)).await.expect("delete again");
        assert!(again.version.is_none());
        let missing = store.write(delete("never", None)).await.expect("delete");
        assert!(missing.version.is_none());
        assert!(!missing.created);
        assert!(store.read("Patient", "never").await.unwrap().is_none());

        // An update brings it back as a create, continuing the version sequence.
        let revived = store
            .write(update("d", patient_with_id("d", "back"), None))
            .await
            .expect("revive");
        assert!(revived.created);
        assert_eq!(revived.version.expect("version").version, 3);

        let history = store.history(query(instance("d"))).await.unwrap();
        assert_eq!(history.total, 3);
        let methods: Vec<Method> = history.versions.iter().map(|v| v.method).collect();
        assert_eq!(methods, [Method::Update, Method::Delete, Method::Update]);
        assert!(history.versions[1].body.is_none());
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_updates_with_the_same_if_match_admit_exactly_one(db) {
        let store = db.open();
        written(
            store
                .write(update("c", patient_with_id("c", "base"), None))
                .await,
        );
        let tasks: Vec<_> = (0..16)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .write(update("c", patient_with_id("c", &format!("t{n}")), Some(1)))
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for (n, task) in tasks.into_iter().enumerate() {
            match task.await.expect("task") {
                Ok(outcome) => winners.push((n, outcome.version.expect("version"))),
                Err(StoreError::VersionMismatch {
                    expected: 1,
                    current: Some(2),
                }) => {}
                Err(other) => panic!("task {n}: unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let (winner, version) = &winners[0];
        assert_eq!(version.version, 2);
        let current = store.read("Patient", "c").await.unwrap().unwrap();
        assert_eq!(current.version, 2);
        assert_eq!(marker(&current), format!("t{winner}"));
        assert_eq!(store.history(query(instance("c"))).await.unwrap().total, 2);
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creates_all_succeed_with_distinct_ids(db) {
        const TASKS: usize = 300;
        let store = db.open();
        let tasks: Vec<_> = (0..TASKS)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { store.write(create(patient(&format!("c{n}")))).await })
            })
            .collect();
        let mut ids = HashSet::new();
        let mut created = Vec::new();
        for (n, task) in tasks.into_iter().enumerate() {
            let version = written(task.await.expect("task"));
            assert_eq!(version.version, 1);
            assert!(
                ids.insert(version.id.clone()),
                "duplicate id {}",
                version.id
            );
            created.push((n, version));
        }
        for (n, version) in &created {
            let read = store
                .read("Patient", &version.id)
                .await
                .unwrap()
                .expect("created resource is readable");
            assert_eq!(marker(&read), format!("c{n}"));
            assert_eq!(read.last_updated, version.last_updated);
        }
        let history = store
            .history(query(HistoryScope::Type("Patient".into())))
            .await
            .unwrap();
        assert_eq!(history.total, TASKS as u64);
        assert_eq!(history.versions.len(), TASKS);
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn last_updated_strictly_increases_along_history(db) {
        let store = db.open();
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let id = format!("s{}", n % 5);
                    store
                        .write(update(&id, patient_with_id(&id, &format!("m{n}")), None))
                        .await
                })
            })
            .collect();
        for task in tasks {
            written(task.await.expect("task"));
        }
        let history = store.history(query(HistoryScope::System)).await.unwrap();
        assert_eq!(history.versions.len(), 200);
        // Newest first: each entry is strictly later than the next one.
        for pair in history.versions.windows(2) {
            assert!(
                pair[0].last_updated > pair[1].last_updated,
                "{:?} is not after {:?}",
                pair[0].last_updated,
                pair[1].last_updated
            );
        }
        // And per resource, versions count down 40..1.
        for n in 0..5 {
            let id = format!("s{n}");
            let versions: Vec<u64> = store
                .history(query(instance(&id)))
                .await
                .unwrap()
                .versions
                .iter()
                .map(|v| v.version)
                .collect();
            assert_eq!(versions, (1..=40).rev().collect::<Vec<u64>>(), "{id}");
        }
    }
}

store::each_backend! {
    #[tokio::test]
    async fn history_pages_are_stable_and_complete_while_writes_continue(db) {
        let store = db.open();
        let mut expected = Vec::new();
        for n in 0..25 {
            let id = format!("h{}", n % 4);
            let version = written(
                store
                    .write(update(&id, patient_with_id(&id, &format!("m{n}")), None))
                    .await,
            );
            expected.push((version.id, version.version));
        }
        expected.reverse();

        // A system-level walk, writing between pages: exactly the 25 versions that existed
        // when it started, newest first, none twice.
        let mut seen = Vec::new();
        let mut before = None;
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages <= 10, "paging does not end");
            let page = store
                .history(HistoryQuery {
                    scope: HistoryScope::System,
                    since: None,
                    at: None,
                    before,
                    count: 7,
                })
                .await
                .unwrap();
            assert!(page.versions.len() <= 7);
            assert!(page.total >= 25);
            seen.extend(keys(&page));
            // New versions arrive between pages; they must not shift the pages.
            written(
                store
                    .write(update("h0", patient_with_id("h0", "later"), None))
                    .await,
            );
            written(store.write(create(patient("later"))).await);
            match page.next_cursor {
                Some(cursor) => before = Some(cursor),
                None => break,
            }
        }
        assert_eq!(pages, 4, "25 versions in pages of 7");
        assert_eq!(seen, expected);

        // A type-level walk after all the extra writes: complete, no duplicates, newest first.
        let mut seen = Vec::new();
        let mut before = None;
        let total = loop {
            let page = store
                .history(HistoryQuery {
                    scope: HistoryScope::Type("Patient".into()),
                    since: None,
                    at: None,
                    before,
                    count: 5,
                })
                .await
                .unwrap();
            seen.extend(keys(&page));
            assert!(seen.len() <= 100, "paging does not end");
            match page.next_cursor {
                Some(cursor) => before = Some(cursor),
                None => break page.total,
            }
        };
        assert_eq!(seen.len() as u64, total);
        assert_eq!(total, 25 + 2 * 4);
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len());
        assert_eq!(&seen[seen.len() - 25..], &expected[..]);

        // An exactly full last page has no next cursor.
        let page = store
            .history(HistoryQuery {
                scope: HistoryScope::Type("Patient".into()),
                since: None,
                at: None,
                before: None,
                count: usize::try_from(total).unwrap(),
            })
            .await
            .unwrap();
        assert_eq!(page.versions.len() as u64, total);
        assert!(page.next_cursor.is_none());
    }
}

store::each_backend! {
    #[tokio::test]
    async fn history_since_and_at(db) {
        let store = db.open();
        let a1 = written(
            store
                .write(update("a", patient_with_id("a", "a1"), None))
                .await,
        );
        let a2 = written(
            store
                .write(update("a", patient_with_id("a", "a2"), None))
                .await,
        );
        let b1 = written(
            store
                .write(update("b", patient_with_id("b", "b1"), None))
                .await,
        );
        let a3 = written(
            store
                .write(update("a", patient_with_id("a", "a3"), None))
                .await,
        );
        let b2 = written(store.write(delete("b", None)).await);
        let t = |version: &Version| version.last_updated.0;

        let history = |since: Option<Instant>, at: Option<Period>, scope: HistoryScope| {
            let store = store.clone();
            async move {
                let page = store
                    .history(HistoryQuery {
                        scope,
                        since,
                        at,
                        before: None,
                        count: 100,
                    })
                    .await
                    .unwrap();
                assert_eq!(page.total as usize, page.versions.len());
                keys(&page)
            }
        };
        let key = |version: &Version| (version.id.clone(), version.version);

        // _since: versions written at or after the instant.
        assert_eq!(
            history(Some(a2.last_updated), None, HistoryScope::System).await,
            [key(&b2), key(&a3), key(&b1), key(&a2)]
        );
        assert_eq!(
            history(Some(Instant(t(&a2) + 1)), None, HistoryScope::System).await,
            [key(&b2), key(&a3), key(&b1)]
        );
        assert_eq!(
            history(Some(a2.last_updated), None, instance("a")).await,
            [key(&a3), key(&a2)]
        );
        assert_eq!(
            history(Some(Instant(t(&b2) + 1)), None, HistoryScope::System).await,
            []
        );
        assert_eq!(
            history(Some(Instant(0)), None, HistoryScope::System)
                .await
                .len(),
            5
        );

        let period = |start: i64, end: i64| {
            Some(Period {
                start: Instant(start),
                end: Instant(end),
            })
        };
        // _at: the versions current at some moment of [start, end).
        // Just after a1 was written: only a1.
        assert_eq!(
            history(None, period(t(&a1), t(&a1) + 1), HistoryScope::System).await,
            [key(&a1)]
        );
        // The instant a2 replaced a1: a1 is no longer current then.
        assert_eq!(
            history(None, period(t(&a2), t(&a2) + 1), instance("a")).await,
            [key(&a2)]
        );
        // Just before a2: a1 still current, a2 not yet.
        assert_eq!(
            history(None, period(t(&a2) - 1, t(&a2)), instance("a")).await,
            [key(&a1)]
        );
        // From b1 to just before a3: a2 and b1.
        assert_eq!(
            history(None, period(t(&b1), t(&a3)), HistoryScope::System).await,
            [key(&b1), key(&a2)]
        );
        // After everything: the current versions (including b's deletion).
        assert_eq!(
            history(None, period(t(&b2) + 1, i64::MAX), HistoryScope::System).await,
            [key(&b2), key(&a3)]
        );
        // Before anything: nothing.
        assert_eq!(
            history(None, period(0, t(&a1)), HistoryScope::System).await,
            []
        );
        // Spanning everything: every version.
        assert_eq!(
            history(None, period(0, i64::MAX), HistoryScope::System)
                .await
                .len(),
            5
        );
        // Both filters together.
        assert_eq!(
            history(
                Some(b1.last_updated),
                period(t(&a2), t(&a3)),
                HistoryScope::System
            )
            .await,
            [key(&b1)]
        );
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_survives_closing_and_reopening(db) {
        let url = db.url.clone();
        let mut created = Vec::new();
        let last = {
            let store = Store::open(&url).unwrap();
            for n in 0..10 {
                created.push(written(
                    store.write(create(patient(&format!("r{n}")))).await,
                ));
            }
            written(
                store
                    .write(update("k", patient_with_id("k", "k1"), None))
                    .await,
            );
            written(
                store
                    .write(update("k", patient_with_id("k", "k2"), None))
                    .await,
            )
        };
        if !db.is_postgres() {
            assert!(db.sqlite_file().exists());
        }

        let store = Store::open(&url).unwrap();
        for (n, version) in created.iter().enumerate() {
            let read = store.read("Patient", &version.id).await.unwrap().unwrap();
            assert_eq!(marker(&read), format!("r{n}"));
            assert_eq!(read.body, version.body);
        }
        assert_eq!(
            marker(&store.vread("Patient", "k", 1).await.unwrap().unwrap()),
            "k1"
        );
        assert_eq!(
            store.read("Patient", "k").await.unwrap().unwrap().version,
            2
        );
        // Versions and the clock carry on where they stopped.
        let next = written(
            store
                .write(update("k", patient_with_id("k", "k3"), Some(2)))
                .await,
        );
        assert_eq!(next.version, 3);
        assert!(next.last_updated > last.last_updated);
        assert_eq!(
            store
                .history(query(HistoryScope::System))
                .await
                .unwrap()
                .total,
            13
        );

        // A second store on the same database, while the first is open, sees and makes changes.
        let second = Store::open(&url).unwrap();
        assert_eq!(
            marker(&second.read("Patient", "k").await.unwrap().unwrap()),
            "k3"
        );
        let from_second = written(
            second
                .write(update("k", patient_with_id("k", "k4"), Some(3)))
                .await,
        );
        assert_eq!(from_second.version, 4);
        assert_eq!(
            marker(&store.read("Patient", "k").await.unwrap().unwrap()),
            "k4"
        );
        let from_first = written(
            store
                .write(update("k", patient_with_id("k", "k5"), Some(4)))
                .await,
        );
        assert_eq!(from_first.version, 5);
        drop(store);
        drop(second);

        // A database file path works as well as a directory.
        let file = if db.is_postgres() {
            Store::open(&url).unwrap()
        } else {
            Store::open(&format!("sqlite:{}", db.sqlite_file().display())).unwrap()
        };
        assert_eq!(file.read("Patient", "k").await.unwrap().unwrap().version, 5);
        assert_eq!(
            file.history(query(HistoryScope::System))
                .await
                .unwrap()
                .total,
            15
        );
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_write_does_not_affect_the_rest_of_its_group(db) {
        let store = db.open();
        written(
            store
                .write(update("g", patient_with_id("g", "g1"), None))
                .await,
        );
        written(
            store
                .write(update("g", patient_with_id("g", "g2"), None))
                .await,
        );

        // Many rounds, so that bad writes land inside groups of good ones.
        for round in 0..5 {
            let mut tasks = Vec::new();
            for n in 0..40 {
                let store = store.clone();
                let write = match n % 10 {
                    3 => update("g", patient_with_id("g", "stale"), Some(1)),
                    7 => Write::Update {
                        resource_type: "Observation".into(),
                        id: "g".into(),
                        resource: patient_with_id("g", "wrong type"),
                        if_match: None,
                        method: Method::Update,
                    },
                    _ => create(patient(&format!("ok{round}-{n}"))),
                };
                tasks.push((n, tokio::spawn(async move { store.write(write).await })));
            }
            for (n, task) in tasks {
                let result = task.await.expect("task");
                match n % 10 {
                    3 => assert_eq!(
                        result.err(),
                        Some(StoreError::VersionMismatch {
                            expected: 1,
                            current: Some(2)
                        })
                    ),
                    7 => assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}"),
                    _ => {
                        let version = written(result);
                        let read = store.read("Patient", &version.id).await.unwrap().unwrap();
                        assert_eq!(marker(&read), format!("ok{round}-{n}"));
                    }
                }
            }
        }
        let g = store.read("Patient", "g").await.unwrap().unwrap();
        assert_eq!((g.version, marker(&g)), (2, "g2".to_string()));
        assert!(store.read("Observation", "g").await.unwrap().is_none());
        assert_eq!(
            store
                .history(query(HistoryScope::System))
                .await
                .unwrap()
                .total,
            2 + 5 * 32
        );
    }
}

#[tokio::test]
async fn open_refuses_unknown_urls() {
    for url in [
        "postgres:x",
        "sqlite:",
        "custodian.db",
        "",
        "postgres://u@h:notaport/db",
    ] {
        assert!(
            matches!(Store::open(url), Err(StoreError::Config(_))),
            "{url}"
        );
    }
    // A malformed URL's error never repeats the URL (it may hold a password).
    let Err(StoreError::Config(message)) = Store::open("postgres://u:secret@h:x/db") else {
        panic!("a malformed URL opened");
    };
    assert!(!message.contains("secret"), "{message}");
}

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable_and_named_without_its_password() {
    // Nothing listens on port 1.
    let started = std::time::Instant::now();
    let Err(error) = Store::open("postgres://custodian:secret@127.0.0.1:1/custodian") else {
        panic!("opened a store on a closed port");
    };
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:1/custodian"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_all_is_atomic_and_current_of_type_lists_live_resources(db) {
        let store = db.open();
        let id = store::new_id();
        let written = store
            .write_all(vec![
                Write::Create {
                    resource: patient("a"),
                    id: Some(id.clone()),
                },
                update("p2", patient_with_id("p2", "b"), None),
            ])
            .await
            .unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(written[0].version.as_ref().unwrap().id, id);

        // The second write fails (stale If-Match): the first must not be kept either.
        let failure = store
            .write_all(vec![
                update("p3", patient_with_id("p3", "c"), None),
                update("p2", patient_with_id("p2", "d"), Some(9)),
            ])
            .await
            .unwrap_err();
        assert_eq!(failure.index, 1);
        assert!(matches!(failure.error, StoreError::VersionMismatch { .. }));
        assert!(store.read("Patient", "p3").await.unwrap().is_none());
        assert_eq!(
            marker(&store.read("Patient", "p2").await.unwrap().unwrap()),
            "b"
        );

        // A create with an id that exists is refused.
        let duplicate = store
            .write(Write::Create {
                resource: patient("e"),
                id: Some(id.clone()),
            })
            .await;
        assert!(matches!(duplicate, Err(StoreError::Invalid(_))));

        written_ok(store.write(delete("p2", None)).await);
        let live = store.current_of_type("Patient", 10).await.unwrap();
        let ids: Vec<&str> = live.iter().map(|version| version.id.as_str()).collect();
        assert_eq!(ids, [id.as_str()]);
        assert!(
            store
                .current_of_type("Observation", 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

fn written_ok(result: Result<Written, StoreError>) {
    result.expect("write succeeds");
}
