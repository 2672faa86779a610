//! What only the PostgreSQL backend has: the database going away mid-request and
//! coming back (through a TCP proxy the test cuts and restores), writers in separate
//! stores (as separate servers would be), and the distribution key on every table of
//! the Patient compartment. Skipped with a notice when PostgreSQL is unreachable
//! (failed under `CI=true`), like every PostgreSQL test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use store::testing::{Proxy, TestDatabase};
use store::{HistoryQuery, HistoryScope, Method, ScanRequest, Store, StoreError, Write};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn put(resource: Value) -> Write {
    let resource = object(resource);
    Write::Update {
        resource_type: resource["resourceType"].as_str().unwrap().to_string(),
        id: resource["id"].as_str().unwrap().to_string(),
        resource,
        if_match: None,
        method: Method::Update,
    }
}

fn unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    match result {
        Err(StoreError::Unavailable(_)) => true,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_gives_unavailable_and_its_return_recovers() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let (proxy, url) = Proxy::to(&database);
    let store = Store::open(&url).unwrap();
    store
        .write(put(json!({"resourceType": "Patient", "id": "before"})))
        .await
        .unwrap();

    // Mid-request: a large transaction is cut off while it runs. It fails as a whole
    // (or had committed as a whole), never in part.
    let writes: Vec<Write> = (0..3000)
        .map(|n| put(json!({"resourceType": "Patient", "id": format!("bulk{n}"), "active": true})))
        .collect();
    let bulk = {
        let store = store.clone();
        tokio::spawn(async move { store.write_all(writes).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    proxy.cut();
    let bulk = bulk.await.unwrap();

    // While it is away: every kind of request answers Unavailable, promptly.
    let started = Instant::now();
    assert!(unavailable(store.read("Patient", "before").await));
    assert!(unavailable(
        store
            .write(put(json!({"resourceType": "Patient", "id": "during"})))
            .await
    ));
    assert!(unavailable(
        store
            .history(store::HistoryQuery {
                scope: store::HistoryScope::System,
                since: None,
                at: None,
                before: None,
                count: 10,
            })
            .await
    ));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // Back: the store recovers by itself.
    proxy.restore();
    let mut recovered = None;
    for _ in 0..50 {
        match store.read("Patient", "before").await {
            Ok(found) => {
                recovered = found;
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(recovered.expect("the store recovered").version, 1);
    store
        .write(put(json!({"resourceType": "Patient", "id": "after"})))
        .await
        .unwrap();
    assert!(store.read("Patient", "during").await.unwrap().is_none());
    let kept = store
        .current_of_type("Patient", 10_000)
        .await
        .unwrap()
        .len();
    match bulk {
        Ok(_) => assert_eq!(kept, 3002),
        Err(failure) => {
            assert!(
                matches!(failure.error, StoreError::Unavailable(_)),
                "{failure:?}"
            );
            assert!(
                kept == 2 || kept == 3002,
                "a cut transaction kept {kept} resources"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_in_separate_stores_never_lose_an_update() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let stores = [database.open(), database.open()];
    stores[0]
        .write(put(
            json!({"resourceType": "Patient", "id": "shared", "active": true}),
        ))
        .await
        .unwrap();
    // 40 read-modify-write cycles from two stores, each with If-Match: every one that
    // is acknowledged must be a version of its own.
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let store = stores[n % 2].clone();
            tokio::spawn(async move {
                loop {
                    let current = store.read("Patient", "shared").await.unwrap().unwrap();
                    let result = store
                        .write(Write::Update {
                            resource_type: "Patient".into(),
                            id: "shared".into(),
                            resource: object(json!({"resourceType": "Patient", "id": "shared",
                                "identifier": [{"value": format!("w{n}")}]})),
                            if_match: Some(current.version),
                            method: Method::Update,
                        })
                        .await;
                    match result {
                        Ok(written) => return written.version.unwrap().version,
                        Err(StoreError::VersionMismatch { .. }) => continue,
                        Err(other) => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=41).collect::<Vec<u64>>());
    let history = stores[1]
        .history(store::HistoryQuery {
            scope: store::HistoryScope::Instance("Patient".into(), "shared".into()),
            since: None,
            at: None,
            before: None,
            count: 100,
        })
        .await
        .unwrap();
    assert_eq!(history.total, 41);
}

#[tokio::test]
async fn compartment_rows_carry_their_patient() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let store = database.open();
    store
        .write_all(vec![
            put(json!({"resourceType": "Patient", "id": "p1"})),
            put(
                json!({"resourceType": "Observation", "id": "o1", "status": "final",
                "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}}),
            ),
            put(json!({"resourceType": "Organization", "id": "org", "name": "Acme"})),
        ])
        .await
        .unwrap();
    // An observation moving to another patient moves its rows with it.
    store
        .write(put(
            json!({"resourceType": "Observation", "id": "o2", "status": "final",
            "code": {"text": "y"}, "subject": {"reference": "Patient/p1"}}),
        ))
        .await
        .unwrap();
    store
        .write(put(
            json!({"resourceType": "Observation", "id": "o2", "status": "final",
            "code": {"text": "y"}, "subject": {"reference": "Patient/p2"}}),
        ))
        .await
        .unwrap();
    let rows = query(
        &database,
        "SELECT r.type || '/' || r.id || '=' || r.pkey FROM resource r ORDER BY 1",
    );
    assert_eq!(
        rows,
        [
            "Observation/o1=p1",
            "Observation/o2=p2",
            "Organization/org=Organization/org",
            "Patient/p1=p1"
        ]
    );
    // Index rows are on their resource's key, and no row is anywhere else.
    let strays = query(
        &database,
        "SELECT x.pkey FROM sp_reference x JOIN resource r ON r.rid = x.rid WHERE x.pkey <> r.pkey
         UNION ALL SELECT x.pkey FROM sp_token x JOIN resource r ON r.rid = x.rid WHERE x.pkey <> r.pkey",
    );
    assert!(strays.is_empty(), "{strays:?}");
    // Every table of the Patient compartment has the key, in its primary key where it
    // has one.
    let tables = query(
        &database,
        "SELECT c.table_name::text FROM information_schema.columns c
         WHERE c.table_schema = current_schema() AND c.column_name = 'pkey' ORDER BY 1",
    );
    assert_eq!(
        tables,
        [
            "disclosure",
            "resource",
            "resource_key",
            "resource_version",
            "sp_date",
            "sp_number",
            "sp_quantity",
            "sp_reference",
            "sp_string",
            "sp_text",
            "sp_token",
            "sp_uri"
        ]
    );
    let keys = query(
        &database,
        "SELECT t.relname::text FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE i.indisprimary AND n.nspname = current_schema() AND NOT EXISTS (
           SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attname = 'pkey'
             AND a.attnum = ANY (i.indkey))
         ORDER BY 1",
    );
    // Only the tables that are not distributed by patient lack it in their key.
    assert_eq!(
        keys,
        [
            "audit_event",
            "audit_head",
            "auth_record",
            "auth_used_once",
            "custodian_schema",
            "data_key",
            "login_failure",
            "resource_key",
            "search_param"
        ]
    );
}

/// One text column of every row `sql` returns, on the test's schema.
fn query(database: &TestDatabase, sql: &str) -> Vec<String> {
    let url = database.url.clone();
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (client, connection) = url
                .parse::<tokio_postgres::Config>()
                .unwrap()
                .connect(tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .query(&sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect()
        })
    })
    .join()
    .unwrap()
}

/// A transaction that took its instant first but commits last must not slip in below
/// what a reader of history (or `_since`) has already seen: history shows nothing from
/// its instant on until it has ended, and a bulk export's transaction time stays below
/// that instant, so an export `_since` it finds the late write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_shows_nothing_above_a_write_still_in_flight() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let store = Store::open(&database.url).unwrap();
    store
        .write(put(json!({"resourceType": "Patient", "id": "slow"})))
        .await
        .unwrap();
    // Another session holds the row of slow's current state: its next write takes its
    // instant, then waits for that row.
    let (blocker, connection) = database
        .url
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    blocker.batch_execute("BEGIN").await.unwrap();
    blocker
        .query("SELECT 1 FROM resource WHERE id = 'slow' FOR UPDATE", &[])
        .await
        .unwrap();
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let slow = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(put(
                    json!({"resourceType": "Patient", "id": "slow", "active": true}),
                ))
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = database.scalar(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE {blocker_pid} = ANY(pg_blocking_pids(pid))"
        ));
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the slow write never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A later write commits while the slow one waits.
    store
        .write(put(json!({"resourceType": "Patient", "id": "quick"})))
        .await
        .unwrap();
    let all = || HistoryQuery {
        scope: HistoryScope::System,
        since: None,
        at: None,
        before: None,
        count: 100,
    };
    let seen = store.history(all()).await.unwrap().versions;
    let seen_keys: Vec<(String, u64)> = seen.iter().map(|v| (v.id.clone(), v.version)).collect();
    assert_eq!(
        seen_keys,
        [("slow".to_string(), 1)],
        "above the slow write's instant"
    );
    let export_time = tokio::task::block_in_place(|| {
        store
            .scan(&ScanRequest {
                types: Vec::new(),
                since: None,
                patients: None,
                filters: Vec::new(),
            })
            .unwrap()
            .transaction_time()
    });

    blocker.batch_execute("ROLLBACK").await.unwrap();
    slow.await.unwrap().unwrap();
    let after = store.history(all()).await.unwrap().versions;
    assert_eq!(after.len(), 3);
    let newest_seen = seen.iter().map(|v| v.last_updated).max().unwrap();
    for version in &after {
        if !seen_keys.contains(&(version.id.clone(), version.version)) {
            assert!(
                version.last_updated > newest_seen,
                "{}/{} slipped in below what was seen",
                version.id,
                version.version
            );
        }
    }
    let late = after
        .iter()
        .find(|v| v.id == "slow" && v.version == 2)
        .unwrap();
    assert!(
        late.last_updated > export_time,
        "an export _since the first one's transaction time would miss the late write"
    );
}

/// The read cache (PostgreSQL only): a repeated read is answered from memory, not the
/// database; a store's own write is read back at once; another store's write reaches
/// it by notice; and a store whose cache was stale learns so from a failed If-Match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_cache_serves_repeated_reads_and_hears_of_other_stores_writes() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let (one, two) = (database.open(), database.open());
    one.write(put(
        json!({"resourceType": "Patient", "id": "cached", "active": true}),
    ))
    .await
    .unwrap();

    // Once the cache is live, a read after the row was changed behind the store's back
    // still gives the body read before: the answer came from memory. (The listener
    // connects in the background; until it has, reads go to the database.)
    let mut served_from_memory = false;
    for attempt in 0..100 {
        let before = two.read("Patient", "cached").await.unwrap().unwrap();
        query(
            &database,
            &format!(
                "UPDATE resource_version SET body = convert_to('{{\"resourceType\":\"Patient\",\
                 \"id\":\"cached\",\"active\":true,\"text\":{{\"status\":\"empty\",\"div\":\
                 \"<div>{attempt}</div>\"}}}}', 'UTF8') WHERE id = 'cached' RETURNING id"
            ),
        );
        let after = two.read("Patient", "cached").await.unwrap().unwrap();
        if after.body == before.body {
            served_from_memory = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served_from_memory, "the cache never answered");

    // Another store's write: the notice reaches the cache, promptly.
    one.write(put(
        json!({"resourceType": "Patient", "id": "cached", "active": false}),
    ))
    .await
    .unwrap();
    let started = Instant::now();
    loop {
        let read = two.read("Patient", "cached").await.unwrap().unwrap();
        if read.version == 2 {
            assert!(read.body.unwrap().contains(r#""active":false"#));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the other store's write never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The store's own writes and deletions are read back at once.
    two.write(put(
        json!({"resourceType": "Patient", "id": "cached", "gender": "other"}),
    ))
    .await
    .unwrap();
    let read = two.read("Patient", "cached").await.unwrap().unwrap();
    assert_eq!(read.version, 3);
    assert!(read.body.unwrap().contains(r#""gender":"other""#));
    two.write(Write::Delete {
        resource_type: "Patient".into(),
        id: "cached".into(),
        if_match: None,
    })
    .await
    .unwrap();
    assert!(
        two.read("Patient", "cached")
            .await
            .unwrap()
            .unwrap()
            .is_deleted()
    );
}

/// The change counters (what the server's cache of Consents follows): a store's own
/// write moves its type's counter at once, and another store's write reaches it by
/// notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_stores_write_moves_the_change_counter_of_its_type() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let (one, two) = (database.open(), database.open());
    let consent = json!({"resourceType": "Consent", "id": "c1", "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"text": "privacy"}],
        "patient": {"reference": "Patient/p1"}});
    let before = one.changes("Consent");
    one.write(put(consent.clone())).await.unwrap();
    assert_ne!(one.changes("Consent"), before, "its own write");

    // The listener connects in the background; a write after it has heard one notice
    // must be heard too.
    let started = Instant::now();
    for n in 2.. {
        let before = two.changes("Consent");
        let mut another = consent.clone();
        another["id"] = json!(format!("c{n}"));
        one.write(put(another)).await.unwrap();
        let waited = Instant::now();
        while two.changes("Consent") == before && waited.elapsed() < Duration::from_millis(500) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if two.changes("Consent") != before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the other store's write never moved the counter"
        );
    }
}
