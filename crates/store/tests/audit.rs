//! The audit trail through the store's API, on both backends: records appended alone
//! and with writes (and gone with a write that fails), searched by column, entity and
//! date, and a hash chain whose walk catches every change made in the database
//! around the API: an edited, a deleted, a reordered and a cut-off record.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

use serde_json::{Map, Value, json};
use store::testing::TestDatabase;
use store::{
    AuditBatch, AuditColumn, AuditDetail, AuditFilter, AuditQuery, AuditRecord, Instant, Write,
};

fn batch(records: Vec<AuditRecord>) -> std::sync::Arc<AuditBatch> {
    std::sync::Arc::new(AuditBatch::from(records))
}

fn record(agent: &str, patient: &str, recorded: i64) -> AuditRecord {
    AuditRecord {
        recorded: Instant(recorded),
        type_code: "rest",
        subtype: "read",
        action: "R",
        outcome: "0",
        severity: "informational",
        agent: agent.into(),
        patient: Some(format!("Patient/{patient}")),
        purpose: None,
        entities: vec![format!("Patient/{patient}")],
        detail: AuditDetail {
            status: 200,
            ..AuditDetail::default()
        },
        body: None,
    }
}

/// A record carrying an AuditEvent of its own (as an operation makes).
fn own(agent: &str) -> AuditRecord {
    AuditRecord {
        body: Some(format!(
            r#"{{"resourceType":"AuditEvent","action":"R","agent":"{agent}"}}"#
        )),
        ..record(agent, "p0", 0)
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// Runs `sql` on the test database directly, around the store.
async fn tamper(db: &TestDatabase, sql: &str) {
    let unlocked = if db.is_postgres() {
        format!("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only; {sql}")
    } else {
        format!(
            "DROP TRIGGER IF EXISTS audit_event_no_update;
             DROP TRIGGER IF EXISTS audit_event_no_delete; {sql}"
        )
    };
    db.execute(&unlocked).unwrap();
}

store::each_backend! {
    #[tokio::test]
    async fn records_are_chained_searched_and_committed_with_their_writes(db) {
        let store = db.open();
        store
            .audit_append(batch(vec![record("alice", "p1", 10), AuditRecord { recorded: Instant(20), ..own("bob") }]))
            .await
            .unwrap();
        let patient = object(json!({"resourceType": "Patient", "active": true}));
        store
            .write_audited(
                Write::Create { resource: patient, id: Some("p3".into()) },
                vec![record("carol", "p3", 30)],
            )
            .await
            .unwrap();
        // A write that fails takes its record with it.
        let failing = store
            .write_audited(
                Write::Delete { resource_type: "Patient".into(), id: "p3".into(), if_match: Some(9) },
                vec![record("mallory", "p3", 40)],
            )
            .await;
        assert!(failing.is_err());

        let all = store
            .audit_search(AuditQuery { count: 10, ..AuditQuery::default() })
            .await
            .unwrap();
        let seqs: Vec<i64> = all.records.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [3, 2, 1], "newest first, and no record of the failed write");
        assert!(all.records[0].1.starts_with(r#"{"resourceType":"AuditEvent","id":"3","#));
        let third: Value = serde_json::from_str(&all.records[0].1).unwrap();
        assert_eq!(third["agent"][0]["who"]["identifier"]["value"], "carol");
        assert_eq!(third["entity"][0]["what"]["reference"], "Patient/p3");
        assert_eq!(third["outcomeDesc"], "HTTP 200");
        assert_eq!(
            store.audit_read(2).await.unwrap().as_deref(),
            Some(r#"{"resourceType":"AuditEvent","id":"2","action":"R","agent":"bob"}"#)
        );

        let by = |filters: Vec<AuditFilter>| {
            let store = store.clone();
            async move {
                let page = store
                    .audit_search(AuditQuery { filters, count: 10, oldest_first: true, after: None })
                    .await
                    .unwrap();
                page.records.iter().map(|(seq, _)| *seq).collect::<Vec<i64>>()
            }
        };
        assert_eq!(by(vec![AuditFilter::Is(AuditColumn::Agent, vec!["bob".into()])]).await, [2]);
        assert_eq!(by(vec![AuditFilter::Entity(vec!["Patient/p3".into(), "Patient/p1".into()])]).await, [1, 3]);
        assert_eq!(by(vec![AuditFilter::Entity(vec!["Patient/p".into()])]).await, Vec::<i64>::new());
        assert_eq!(
            by(vec![AuditFilter::Recorded(">=", Instant(20)), AuditFilter::Recorded("<", Instant(30))]).await,
            [2]
        );
        // Pages follow the sequence.
        let first = store
            .audit_search(AuditQuery { count: 2, oldest_first: true, ..AuditQuery::default() })
            .await
            .unwrap();
        assert_eq!(first.next, Some(2));
        let second = store
            .audit_search(AuditQuery { count: 2, oldest_first: true, after: first.next, ..AuditQuery::default() })
            .await
            .unwrap();
        assert_eq!(second.records.len(), 1);
        assert_eq!(second.next, None);

        let verification = store.audit_verify().await.unwrap();
        assert_eq!((verification.count, verification.broken), (3, None));
    }
}

store::each_backend! {
    #[tokio::test]
    async fn the_database_refuses_changes_to_the_trail(db) {
        let store = db.open();
        store.audit_append(batch(vec![record("alice", "p1", 10)])).await.unwrap();
        drop(store);
        let refused = db.execute("DELETE FROM audit_event").is_err()
            && db.execute("UPDATE audit_event SET agent = 'x'").is_err();
        assert!(refused);
    }
}

/// A fresh store with five chained records, for one kind of tampering.
async fn five(db: &TestDatabase) -> store::Store {
    let store = db.open();
    let records = (1..=5)
        .map(|n| record("alice", &format!("p{n}"), n * 10))
        .collect();
    store.audit_append(batch(records)).await.unwrap();
    assert_eq!(store.audit_verify().await.unwrap().broken, None);
    store
}

/// The sequence number of the first broken link after `sql`.
async fn broken_after(db: &TestDatabase, sql: &str) -> (i64, String) {
    let store = five(db).await;
    tamper(db, sql).await;
    let broken = store
        .audit_verify()
        .await
        .unwrap()
        .broken
        .expect("the change is caught");
    (broken.seq, broken.problem)
}

store::each_backend! {
    #[tokio::test]
    async fn an_edited_record_breaks_the_chain_at_that_record(db) {
        let (seq, problem) =
            broken_after(&db, "UPDATE audit_event SET agent = 'mallory' WHERE seq = 3").await;
        assert_eq!(seq, 3, "{problem}");
        assert!(problem.contains("changed"), "{problem}");
    }
}

store::each_backend! {
    #[tokio::test]
    async fn an_edited_body_breaks_the_chain_at_that_record(db) {
        let (seq, _) = broken_after(
            &db,
            "UPDATE audit_event SET body = replace(body, '200', '404') WHERE seq = 2",
        )
        .await;
        assert_eq!(seq, 2);
    }
}

store::each_backend! {
    #[tokio::test]
    async fn a_deleted_record_breaks_the_chain_after_the_gap(db) {
        let (seq, problem) = broken_after(&db, "DELETE FROM audit_event WHERE seq = 3").await;
        assert_eq!(seq, 4, "{problem}");
        assert!(problem.contains("expected record 3"), "{problem}");
    }
}

store::each_backend! {
    #[tokio::test]
    async fn reordered_records_break_the_chain_at_the_first_moved(db) {
        let (seq, problem) = broken_after(
            &db,
            "UPDATE audit_event SET seq = -1 WHERE seq = 2;
             UPDATE audit_event SET seq = 2 WHERE seq = 3;
             UPDATE audit_event SET seq = 3 WHERE seq = -1;",
        )
        .await;
        assert_eq!(seq, 2, "{problem}");
    }
}

store::each_backend! {
    #[tokio::test]
    async fn records_cut_from_the_end_are_caught_by_the_head(db) {
        let (seq, problem) = broken_after(&db, "DELETE FROM audit_event WHERE seq >= 4").await;
        assert_eq!(seq, 4, "{problem}");
        assert!(problem.contains("head"), "{problem}");
    }
}

store::each_backend! {
    #[tokio::test]
    async fn searches_by_patient_and_agent_find_indexed_and_recent_records_alike(db) {
        // More records than one batch of the deferred index (SQLite), so some are found
        // through it and the rest by the scan of the newest.
        let store = db.open();
        let total = 20_000i64;
        let records: Vec<AuditRecord> = (1..=total)
            .map(|seq| {
                let agent = if seq % 2 == 0 { "even" } else { "odd" };
                record(agent, &format!("p{}", seq % 3), seq)
            })
            .collect();
        for group in records.chunks(5_000) {
            store.audit_append(batch(group.to_vec())).await.unwrap();
        }
        let seqs = |filters: Vec<AuditFilter>, oldest_first: bool, after: Option<i64>| {
            let store = store.clone();
            async move {
                let page = store
                    .audit_search(AuditQuery { filters, count: 50_000, oldest_first, after })
                    .await
                    .unwrap();
                page.records.iter().map(|(seq, _)| *seq).collect::<Vec<i64>>()
            }
        };
        let patient = |id: &str| AuditFilter::Is(AuditColumn::Patient, vec![format!("Patient/{id}")]);
        let agent = |name: &str| AuditFilter::Is(AuditColumn::Agent, vec![name.to_string()]);

        let expected: Vec<i64> = (1..=total).filter(|seq| seq % 3 == 1).collect();
        assert_eq!(seqs(vec![patient("p1")], true, None).await, expected);
        let expected: Vec<i64> = (1..=total).rev().filter(|seq| seq % 6 == 4).collect();
        assert_eq!(seqs(vec![patient("p1"), agent("even")], false, None).await, expected);
        let expected: Vec<i64> = (1..19_000).rev().filter(|seq| seq % 2 == 1).collect();
        assert_eq!(seqs(vec![agent("odd")], false, Some(19_000)).await, expected);
        let both = AuditFilter::Is(AuditColumn::Patient, vec!["Patient/p0".into(), "Patient/p2".into()]);
        assert_eq!(seqs(vec![both], true, None).await.len(), (1..=total).filter(|seq| seq % 3 != 1).count());
        assert!(seqs(vec![patient("p9")], true, None).await.is_empty());
        assert_eq!(store.audit_verify().await.unwrap().count, total as u64);
    }
}

/// A trail written before the deferred index (migration 8) is indexed when the store
/// opens, so searches by patient find its records through `audit_key`.
#[tokio::test]
async fn a_trail_from_before_the_deferred_index_is_indexed_when_the_store_opens() {
    let db = TestDatabase::sqlite();
    let store = db.open();
    let records: Vec<AuditRecord> = (1..=5)
        .map(|n| {
            record(
                if n % 2 == 0 { "bob" } else { "alice" },
                &format!("p{}", n % 2),
                n * 10,
            )
        })
        .collect();
    store.audit_append(batch(records)).await.unwrap();
    drop(store);
    // Back to version 7: the row indexes, no `audit_key`, and none of what later
    // migrations made.
    db.execute(
        "DROP TABLE audit_key; DROP TABLE audit_key_head; DROP TABLE login_failure;
         CREATE INDEX audit_event_patient ON audit_event (patient) WHERE patient IS NOT NULL;
         CREATE INDEX audit_event_agent ON audit_event (agent);
         PRAGMA user_version = 7;",
    )
    .unwrap();
    let store = db.open();
    assert_eq!(
        db.scalar("SELECT upto FROM audit_key_head"),
        5,
        "the old records are indexed"
    );
    assert_eq!(
        db.count("audit_key"),
        4,
        "a row per patient and per agent of the batch"
    );
    let page = store
        .audit_search(AuditQuery {
            filters: vec![AuditFilter::Is(
                AuditColumn::Patient,
                vec!["Patient/p1".into()],
            )],
            count: 10,
            oldest_first: true,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(
        page.records.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [1, 3, 5]
    );
    assert_eq!(store.audit_verify().await.unwrap().broken, None);
}
