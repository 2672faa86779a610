//! Search through the public API, on resources indexed by `search::index`: index rows
//! written with every write (and not with a failed transaction), replaced on update,
//! removed on delete (on both backends), and made for data stored before search
//! existed (SQLite migration 2).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

use search::{
    Clause, Criterion, DateRange, ParamType, Prefix, Query, StringMatch, SystemMatch, Test,
    TokenTest, Total,
};
use serde_json::{Map, Value, json};
use store::testing::TestDatabase;
use store::{Method, SearchPage, SearchRequest, Store, Write};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn patient(id: &str, family: &str) -> Write {
    Write::Update {
        resource_type: "Patient".into(),
        id: id.into(),
        resource: object(json!({
            "resourceType": "Patient",
            "name": [{"family": family, "given": ["Ann"]}],
            "birthDate": "1980-05-17",
        })),
        if_match: None,
        method: Method::Update,
    }
}

fn observation(id: &str, patient: &str, code: &str, date: &str) -> Write {
    Write::Update {
        resource_type: "Observation".into(),
        id: id.into(),
        resource: object(json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": date,
            "valueQuantity": {"value": 7.2, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
        })),
        if_match: None,
        method: Method::Update,
    }
}

fn criterion(resource_type: &str, param: &str, param_type: ParamType, test: Test) -> Criterion {
    Criterion {
        path: Vec::new(),
        resource_type: Some(resource_type.into()),
        param: param.into(),
        param_type,
        test,
    }
}

fn query(resource_type: &str, criteria: Vec<Criterion>) -> Query {
    Query {
        types: vec![resource_type.into()],
        clauses: criteria
            .into_iter()
            .map(|c| Clause { any_of: vec![c] })
            .collect(),
        sort: Vec::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
        total: Total::Accurate,
        reached: Vec::new(),
    }
}

fn family(value: &str) -> Criterion {
    criterion(
        "Patient",
        "family",
        ParamType::String,
        Test::String {
            value: search::normalize_string(value),
            mode: StringMatch::StartsWith,
        },
    )
}

async fn search(store: &Store, query: &Query) -> SearchPage {
    store
        .search(SearchRequest {
            query: query.clone(),
            count: 100,
            cursor: None,
        })
        .await
        .unwrap()
}

async fn ids(store: &Store, query: &Query) -> Vec<String> {
    search(store, query)
        .await
        .matches
        .into_iter()
        .map(|v| v.id)
        .collect()
}

fn index_rows(db: &TestDatabase) -> i64 {
    [
        "sp_string",
        "sp_token",
        "sp_reference",
        "sp_date",
        "sp_number",
        "sp_quantity",
        "sp_uri",
    ]
    .iter()
    .map(|table| db.count(table))
    .sum()
}

store::each_backend! {
    #[tokio::test]
    async fn written_resources_are_searchable_and_stay_in_step(db) {
        let store = db.open();
        store.write(patient("p1", "Müller")).await.unwrap();
        store.write(patient("p2", "Miller")).await.unwrap();
        store
            .write(observation("o1", "p1", "2345-7", "2021-03-04T10:00:00Z"))
            .await
            .unwrap();
        store
            .write(observation("o2", "p1", "718-7", "2019-01-01"))
            .await
            .unwrap();
        store
            .write(observation("o3", "p2", "2345-7", "2022-01-01"))
            .await
            .unwrap();
        assert!(index_rows(&db) > 0, "the indexer wrote no rows");

        assert_eq!(
            ids(&store, &query("Patient", vec![family("mill")])).await,
            ["p2"]
        );
        let page = search(&store, &query("Patient", vec![family("m")])).await;
        assert_eq!(page.total, Some(2));

        let code = |code: &str| {
            criterion(
                "Observation",
                "code",
                ParamType::Token,
                Test::Token(TokenTest {
                    system: SystemMatch::Is("http://loinc.org".into()),
                    code: Some(code.into()),
                }),
            )
        };
        let subject = criterion(
            "Observation",
            "patient",
            ParamType::Reference,
            Test::Reference(search::ReferenceTest::Local {
                resource_type: Some("Patient".into()),
                id: "p1".into(),
            }),
        );
        assert_eq!(
            ids(
                &store,
                &query("Observation", vec![subject.clone(), code("2345-7")])
            )
            .await,
            ["o1"]
        );
        let since_2020 = criterion(
            "Observation",
            "date",
            ParamType::Date,
            Test::Date {
                prefix: Prefix::Ge,
                range: DateRange {
                    low: 1_577_836_800_000_000,
                    high: 1_609_459_200_000_000,
                },
            },
        );
        assert_eq!(
            ids(
                &store,
                &query("Observation", vec![code("2345-7"), since_2020])
            )
            .await,
            ["o1", "o3"]
        );

        // Update replaces the rows, delete removes them.
        let before = index_rows(&db);
        store.write(patient("p2", "Smith")).await.unwrap();
        assert_eq!(index_rows(&db), before);
        assert!(
            ids(&store, &query("Patient", vec![family("mill")]))
                .await
                .is_empty()
        );
        assert_eq!(
            ids(&store, &query("Patient", vec![family("smi")])).await,
            ["p2"]
        );
        store
            .write(Write::Delete {
                resource_type: "Patient".into(),
                id: "p2".into(),
                if_match: None,
            })
            .await
            .unwrap();
        assert!(index_rows(&db) < before);
        assert!(
            ids(&store, &query("Patient", vec![family("smi")]))
                .await
                .is_empty()
        );

        // A transaction that fails leaves no index rows behind.
        let before = index_rows(&db);
        let failed = store
            .write_all(vec![
                patient("p9", "Rollback"),
                observation("o9", "p9", "1-1", "2020-01-01"),
                Write::Update {
                    resource_type: "Patient".into(),
                    id: "p1".into(),
                    resource: object(json!({"resourceType": "Patient"})),
                    if_match: Some(99),
                    method: Method::Update,
                },
            ])
            .await;
        assert!(failed.is_err());
        assert_eq!(index_rows(&db), before);
        assert!(
            ids(&store, &query("Patient", vec![family("rollback")]))
                .await
                .is_empty()
        );
        // And one that succeeds writes them.
        store
            .write_all(vec![
                patient("p9", "Rollback"),
                observation("o9", "p9", "1-1", "2020-01-01"),
            ])
            .await
            .unwrap();
        assert_eq!(
            ids(&store, &query("Patient", vec![family("rollback")])).await,
            ["p9"]
        );
    }
}

/// Migration 1 exactly as it shipped.
const MIGRATION_1: &str = "CREATE TABLE resource_version (
        seq INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,
        method TEXT NOT NULL,
        body TEXT,
        created INTEGER NOT NULL,
        UNIQUE (type, id, version)
    );
    CREATE INDEX resource_version_type_seq ON resource_version (type, seq);
    CREATE INDEX resource_version_last_updated ON resource_version (last_updated);
    CREATE TABLE resource (
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        PRIMARY KEY (type, id)
    ) WITHOUT ROWID;";

#[tokio::test]
async fn a_version_1_database_keeps_its_data_and_becomes_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custodian.db");
    {
        let connection = rusqlite::Connection::open(&file).unwrap();
        connection
            .execute_batch("PRAGMA journal_mode = WAL;")
            .unwrap();
        connection
            .execute_batch(&format!(
                "BEGIN; {MIGRATION_1}; PRAGMA user_version = 1; COMMIT;"
            ))
            .unwrap();
        let insert = |seq: i64,
                      id: &str,
                      version: i64,
                      at: i64,
                      method: &str,
                      body: Option<String>,
                      created: bool| {
            connection
                .execute(
                    "INSERT INTO resource_version (seq, type, id, version, last_updated, method, body, created)
                     VALUES (?1, 'Patient', ?2, ?3, ?4, ?5, ?6, ?7)",
                    rusqlite::params![seq, id, version, at, method, body, created],
                )
                .unwrap();
        };
        let body = |id: &str, version: i64, family: &str| {
            Some(
                json!({"resourceType": "Patient", "id": id, "meta": {"versionId": version.to_string()}, "name": [{"family": family}]})
                    .to_string(),
            )
        };
        insert(1, "old1", 1, 1_000, "PUT", body("old1", 1, "Before"), true);
        insert(2, "old1", 2, 2_000, "PUT", body("old1", 2, "Kept"), false);
        insert(3, "old2", 1, 3_000, "PUT", body("old2", 1, "Kept"), true);
        insert(4, "old2", 2, 4_000, "DELETE", None, false);
        connection
            .execute_batch(
                "INSERT INTO resource VALUES ('Patient', 'old1', 2, 2, 0);
                 INSERT INTO resource VALUES ('Patient', 'old2', 2, 4, 1);",
            )
            .unwrap();
    }
    let store = Store::open(&format!("sqlite:{}", file.display())).unwrap();
    let read = store.read("Patient", "old1").await.unwrap().unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(read.last_updated.0, 2_000);
    assert!(
        store
            .read("Patient", "old2")
            .await
            .unwrap()
            .unwrap()
            .is_deleted()
    );
    assert_eq!(
        store
            .vread("Patient", "old1", 1)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );

    assert_eq!(
        ids(&store, &query("Patient", vec![family("kept")])).await,
        ["old1"]
    );
    assert!(
        ids(&store, &query("Patient", vec![family("before")]))
            .await
            .is_empty()
    );
    let mut every = query("Patient", vec![]);
    every.total = Total::Accurate;
    let page = search(&store, &every).await;
    assert_eq!(page.total, Some(1));
    // _lastUpdated came over from the version.
    let updated = criterion(
        "Patient",
        "_lastUpdated",
        ParamType::Date,
        Test::Date {
            prefix: Prefix::Eq,
            range: DateRange {
                low: 2_000,
                high: 2_001,
            },
        },
    );
    assert_eq!(
        ids(&store, &query("Patient", vec![updated])).await,
        ["old1"]
    );

    // New writes go on from there; the queue of resources to index is empty.
    store.write(patient("old2", "Revived")).await.unwrap();
    assert_eq!(
        store
            .read("Patient", "old2")
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert_eq!(
        ids(&store, &query("Patient", vec![family("revived")])).await,
        ["old2"]
    );
    drop(store);
    let connection = rusqlite::Connection::open(&file).unwrap();
    let queued: i64 = connection
        .query_row("SELECT count(*) FROM search_reindex", [], |row| row.get(0))
        .unwrap();
    assert_eq!(queued, 0);
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    // Every migration ran: 4 is the auth tables of the privacy layer, 5 the accounting
    // of disclosures, 6 the data keys of encryption at rest, 7 the audit trail, 8 its
    // deferred patient and agent index, 9 that index by batch and key, 10 failed logins.
    assert_eq!(version, 10);
}

store::each_backend! {
    #[tokio::test]
    async fn negated_codes_keep_out_what_carries_them_and_nothing_while_none_does(db) {
        // The shape of the hidden labels: several `_security:not` codes of two systems.
        let store = db.open();
        store.write_all(vec![patient("plain", "Same"), patient("other", "Same")]).await.unwrap();
        let act = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
        let confidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
        let not = |system: &str, code: &str| {
            criterion(
                "Patient",
                "_security",
                ParamType::Token,
                Test::Not(Box::new(Test::Token(TokenTest {
                    system: SystemMatch::Is(system.into()),
                    code: Some(code.into()),
                }))),
            )
        };
        let hidden = query(
            "Patient",
            vec![family("same"), not(act, "HIV"), not(act, "PSY"), not(confidentiality, "V")],
        );
        let mut found = ids(&store, &hidden).await;
        found.sort();
        assert_eq!(found, ["other", "plain"], "no resource is labelled yet");

        let labelled = |id: &str, system: &str, code: &str| Write::Update {
            resource_type: "Patient".into(),
            id: id.into(),
            resource: object(json!({
                "resourceType": "Patient",
                "meta": {"security": [{"system": system, "code": code}]},
                "name": [{"family": "Same"}],
            })),
            if_match: None,
            method: Method::Update,
        };
        store.write_all(vec![labelled("secret", act, "PSY"), labelled("open", act, "ETH")]).await.unwrap();
        let mut found = ids(&store, &hidden).await;
        found.sort();
        assert_eq!(found, ["open", "other", "plain"]);
        assert_eq!(search(&store, &hidden).await.total, Some(3));
        store.write_all(vec![labelled("plain", confidentiality, "V")]).await.unwrap();
        let mut found = ids(&store, &hidden).await;
        found.sort();
        assert_eq!(found, ["open", "other"]);
    }
}

store::each_backend! {
    /// `ReferenceTest::AnyOf`, the one-argument list the server's consent rules use:
    /// references to any of many patients, their negation, and `_id` among many.
    #[tokio::test]
    async fn a_reference_to_any_of_a_long_list_and_its_negation(db) {
        let store = db.open();
        for n in 1..=3 {
            store.write(patient(&format!("p{n}"), "Lister")).await.unwrap();
            store
                .write(observation(&format!("o{n}"), &format!("p{n}"), "2345-7", "2021-01-01"))
                .await
                .unwrap();
        }
        // Far more ids than either database takes as separate arguments.
        let mut many: Vec<String> = (0..70_000).map(|n| format!("absent-{n}")).collect();
        // Text that JSON must escape goes through unharmed (it matches nothing here).
        many.extend(["p1".to_string(), "p3".to_string(), "odd\"id\u{1f}".to_string()]);
        let any_of = |param: &str, resource_type: &str, target: Option<&str>| {
            criterion(
                resource_type,
                param,
                if param == "_id" { ParamType::Token } else { ParamType::Reference },
                Test::Reference(search::ReferenceTest::AnyOf {
                    resource_type: target.map(str::to_string),
                    ids: many.clone().into(),
                }),
            )
        };
        let negated = |criterion: Criterion| Criterion {
            test: Test::Not(Box::new(criterion.test.clone())),
            ..criterion
        };
        let subject = any_of("patient", "Observation", Some("Patient"));
        assert_eq!(
            ids(&store, &query("Observation", vec![subject.clone()])).await,
            ["o1", "o3"]
        );
        assert_eq!(
            ids(&store, &query("Observation", vec![negated(subject)])).await,
            ["o2"]
        );
        let id = any_of("_id", "Patient", None);
        assert_eq!(ids(&store, &query("Patient", vec![id.clone()])).await, ["p1", "p3"]);
        assert_eq!(ids(&store, &query("Patient", vec![negated(id)])).await, ["p2"]);
    }
}
