//! Encryption at rest through the store's public API, on both backends: bodies in the
//! database are sealed (the raw rows never hold a patient's name), every read path
//! opens them, plain bodies written before a key was given stay readable, a store
//! with sealed bodies refuses to open without its master key, and key rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

use serde_json::{Map, Value, json};
use store::testing::TestDatabase;
use store::{
    Encryption, HistoryQuery, HistoryScope, MasterKey, Options, ScanRequest, SearchRequest, Store,
    StoreError, Version, Write,
};

/// A name that appears nowhere else.
const NAME: &str = "Quartermaine";

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn key() -> MasterKey {
    MasterKey::generate().unwrap().0
}

fn with_key(key: &MasterKey) -> Options {
    Options {
        master_key: Some(key.clone()),
        ..Options::default()
    }
}

fn patient(family: &str) -> Write {
    Write::Create {
        resource: object(json!({
            "resourceType": "Patient",
            "name": [{"family": family, "given": ["Zebediah"]}],
            "birthDate": "1961-02-03",
        })),
        id: None,
    }
}

async fn create(store: &Store, write: Write) -> Version {
    store.write(write).await.unwrap().version.unwrap()
}

/// How many stored bodies hold `text` in plain, and how many are sealed.
fn plain_and_sealed(db: &TestDatabase, text: &str) -> (usize, usize) {
    let bodies = store::testing::stored_bodies(&db.url);
    let plain = bodies
        .iter()
        .filter(|body| {
            body.windows(text.len())
                .any(|window| window == text.as_bytes())
        })
        .count();
    let sealed = bodies
        .iter()
        .filter(|body| body.first() == Some(&1))
        .count();
    (plain, sealed)
}

fn by_family(family: &str) -> SearchRequest {
    let parsed = search::parse(
        &["Patient".to_string()],
        &[("family".to_string(), family.to_string())],
        search::ParseOptions { strict: true },
    )
    .unwrap();
    SearchRequest {
        query: parsed.query,
        count: 10,
        cursor: None,
    }
}

fn scan_all(store: &Store) -> Vec<String> {
    let mut scan = store.scan(&ScanRequest::default()).unwrap();
    let mut bodies = Vec::new();
    while let Some(page) = scan.next_page().unwrap() {
        bodies.extend(page.into_iter().map(|scanned| scanned.body));
    }
    bodies
}

fn family_of(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap();
    value["name"][0]["family"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_are_sealed_at_rest_and_every_read_opens_them(db) {
        let key = key();
        let store = Store::open_with(&db.url, &with_key(&key)).unwrap();
        assert_eq!(
            store.encryption(),
            Encryption { sealing_key: Some(1), data_keys: 1 }
        );
        let first = create(&store, patient(NAME)).await;
        assert!(first.body.as_deref().unwrap().contains(NAME));
        let mut changed = object(serde_json::from_str(first.body.as_deref().unwrap()).unwrap());
        changed.insert("gender".into(), json!("male"));
        let second = store
            .write(Write::Update {
                resource_type: "Patient".into(),
                id: first.id.clone(),
                resource: changed,
                if_match: Some(1),
                method: store::Method::Update,
            })
            .await
            .unwrap()
            .version
            .unwrap();
        // A transaction too.
        let together = store
            .write_all(vec![patient(&format!("{NAME}-a")), patient(&format!("{NAME}-b"))])
            .await
            .unwrap();
        assert_eq!(together.len(), 2);

        // In the database: four versions of patients, every one sealed, none readable.
        let (plain, sealed) = plain_and_sealed(&db, NAME);
        assert_eq!((plain, sealed), (0, 4));
        assert_eq!(plain_and_sealed(&db, "Zebediah").0, 0);
        assert_eq!(plain_and_sealed(&db, "resourceType").0, 0);

        // Every read path opens them.
        let read = store.read("Patient", &first.id).await.unwrap().unwrap();
        assert_eq!(read.body, second.body);
        let old = store.vread("Patient", &first.id, 1).await.unwrap().unwrap();
        assert_eq!(old.body, first.body);
        let history = store
            .history(HistoryQuery {
                scope: HistoryScope::Instance("Patient".into(), first.id.clone()),
                since: None,
                at: None,
                before: None,
                count: 10,
            })
            .await
            .unwrap();
        let bodies: Vec<_> = history.versions.iter().map(|v| v.body.clone()).collect();
        assert_eq!(bodies, vec![second.body.clone(), first.body.clone()]);
        let found = store.search(by_family(NAME)).await.unwrap();
        let mut families: Vec<String> = found
            .matches
            .iter()
            .map(|v| family_of(v.body.as_deref().unwrap()))
            .collect();
        families.sort();
        assert_eq!(families, [NAME.to_string(), format!("{NAME}-a"), format!("{NAME}-b")]);
        let listed = store.current_of_type("Patient", 10).await.unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().all(|v| v.body.as_deref().unwrap().contains(NAME)));
        let scanned = scan_all(&store);
        assert_eq!(scanned.len(), 3);
        assert!(scanned.iter().all(|body| family_of(body).starts_with(NAME)));
        assert!(scanned.contains(second.body.as_ref().unwrap()));

        // Reopened with the key, the same.
        drop(store);
        let store = Store::open_with(&db.url, &with_key(&key)).unwrap();
        let read = store.read("Patient", &first.id).await.unwrap().unwrap();
        assert_eq!(read.body, second.body);
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_with_sealed_bodies_opens_only_with_its_master_key(db) {
        let key = key();
        let id = {
            let store = Store::open_with(&db.url, &with_key(&key)).unwrap();
            create(&store, patient(NAME)).await.id
        };
        let Err(StoreError::Config(message)) = Store::open(&db.url) else {
            panic!("a store with sealed bodies opened without its key");
        };
        assert!(message.contains("CUSTODIAN_MASTER_KEY"), "{message}");
        let Err(StoreError::Config(message)) = Store::open_with(&db.url, &with_key(&self::key()))
        else {
            panic!("a store opened with the wrong key");
        };
        assert!(message.contains("right key"), "{message}");
        let store = Store::open_with(&db.url, &with_key(&key)).unwrap();
        let read = store.read("Patient", &id).await.unwrap().unwrap();
        assert!(read.body.unwrap().contains(NAME));
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_bodies_stay_readable_once_a_key_is_given(db) {
        let plain = {
            let store = Store::open(&db.url).unwrap();
            assert_eq!(store.encryption().sealing_key, None);
            create(&store, patient("Plainfield")).await
        };
        assert_eq!(plain_and_sealed(&db, "Plainfield"), (1, 0));
        let key = key();
        let store = Store::open_with(&db.url, &with_key(&key)).unwrap();
        let sealed = create(&store, patient(NAME)).await;
        assert_eq!(plain_and_sealed(&db, NAME), (0, 1));
        assert_eq!(
            store.read("Patient", &plain.id).await.unwrap().unwrap().body,
            plain.body
        );
        assert_eq!(
            store.read("Patient", &sealed.id).await.unwrap().unwrap().body,
            sealed.body
        );
        let mut families: Vec<String> = scan_all(&store).iter().map(|b| family_of(b)).collect();
        families.sort();
        assert_eq!(families, ["Plainfield", NAME]);
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotation_rewraps_the_data_keys_and_a_new_data_key_seals_new_writes(db) {
        let old_key = key();
        let new_key = key();
        let first = {
            let store = Store::open_with(&db.url, &with_key(&old_key)).unwrap();
            let first = create(&store, patient(NAME)).await;
            // A second store on the same database, open before the key is added.
            let other = Store::open_with(&db.url, &with_key(&old_key)).unwrap();
            assert_eq!(store.add_data_key().await.unwrap(), 2);
            // Both learn the new data key while open and seal with it from then on.
            store::testing::eventually(|| {
                (store.encryption().sealing_key, other.encryption().sealing_key)
                    == (Some(2), Some(2))
            })
            .await;
            assert_eq!(store.encryption().sealing_key, Some(2));
            assert_eq!(other.encryption().sealing_key, Some(2));
            // What one seals with it, the other opens.
            let sealed = create(&store, patient("Keyfollower")).await;
            assert_eq!(
                other.read("Patient", &sealed.id).await.unwrap().unwrap().body,
                sealed.body
            );
            first
        };
        {
            let store = Store::open_with(&db.url, &with_key(&old_key)).unwrap();
            assert_eq!(
                store.encryption(),
                Encryption { sealing_key: Some(2), data_keys: 2 }
            );
            assert_eq!(store.rotate_master_key(&new_key).await.unwrap(), 2);
        }
        let Err(StoreError::Config(message)) = Store::open_with(&db.url, &with_key(&old_key))
        else {
            panic!("the old master key still opens the store");
        };
        assert!(message.contains("right key"), "{message}");

        let store = Store::open_with(&db.url, &with_key(&new_key)).unwrap();
        let second = create(&store, patient(&format!("{NAME}-2"))).await;
        assert_eq!(
            store.read("Patient", &first.id).await.unwrap().unwrap().body,
            first.body
        );
        assert_eq!(
            store.read("Patient", &second.id).await.unwrap().unwrap().body,
            second.body
        );
        assert_eq!(plain_and_sealed(&db, NAME), (0, 3));
        // The header names the data key: 1 for the first body, 2 for the one sealed
        // while the stores were open and for the second.
        let mut key_ids: Vec<u8> = store::testing::stored_bodies(&db.url)
            .iter()
            .map(|body| body[4])
            .collect();
        key_ids.sort();
        assert_eq!(key_ids, [1, 2, 2]);
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_load_seals_its_bodies(db) {
        let key = key();
        let id = {
            let store = Store::open_bulk(&db.url, &with_key(&key)).unwrap();
            create(&store, patient(NAME)).await.id
        };
        assert_eq!(plain_and_sealed(&db, NAME), (0, 1));
        let store = Store::open_with(&db.url, &with_key(&key)).unwrap();
        let found = store.search(by_family(NAME)).await.unwrap();
        assert_eq!(found.matches.len(), 1);
        assert_eq!(found.matches[0].id, id);
    }
}

/// Flips one bit of every stored body's ciphertext, straight in the database.
fn tamper(db: &TestDatabase) {
    if db.is_postgres() {
        let changed = db.scalar(
            "WITH u AS (UPDATE resource_version SET body = set_byte(body, 30, get_byte(body, 30) # 1)
             WHERE body IS NOT NULL RETURNING 1) SELECT count(*) FROM u",
        );
        assert!(changed > 0);
        return;
    }
    let connection = rusqlite::Connection::open(db.sqlite_file()).unwrap();
    let rows: Vec<(i64, Vec<u8>)> = connection
        .prepare("SELECT seq, body FROM resource_version WHERE body IS NOT NULL")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!rows.is_empty());
    for (seq, mut body) in rows {
        body[30] ^= 1;
        connection
            .execute(
                "UPDATE resource_version SET body = ?2 WHERE seq = ?1",
                (seq, body),
            )
            .unwrap();
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_changed_sealed_body_is_refused_not_served(db) {
        let key = key();
        let id = {
            let store = Store::open_with(&db.url, &with_key(&key)).unwrap();
            create(&store, patient(NAME)).await.id
        };
        tamper(&db);
        let store = Store::open_with(&db.url, &with_key(&key)).unwrap();
        let error = store.read("Patient", &id).await.unwrap_err();
        assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
        assert!(error.to_string().contains("does not authenticate"), "{error}");
        let error = store.search(by_family(NAME)).await.unwrap_err();
        assert!(error.to_string().contains("does not authenticate"), "{error}");
        let mut scan = store.scan(&ScanRequest::default()).unwrap();
        assert!(scan.next_page().is_err());
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resealing_seals_plain_and_old_bodies_with_the_newest_key(db) {
        // Two versions written before the store had a key, one after.
        let plain = {
            let store = Store::open(&db.url).unwrap();
            let first = create(&store, patient("Plainfield")).await;
            let mut resource = object(serde_json::from_str(first.body.as_deref().unwrap()).unwrap());
            resource.insert("gender".into(), json!("female"));
            store
                .write(Write::Update {
                    resource_type: "Patient".into(),
                    id: first.id.clone(),
                    resource,
                    if_match: None,
                    method: store::Method::Update,
                })
                .await
                .unwrap();
            first
        };
        let key = key();
        let store = Store::open_with(&db.url, &with_key(&key)).unwrap();
        let sealed = create(&store, patient(NAME)).await;
        assert_eq!(plain_and_sealed(&db, "Plainfield"), (2, 1));

        let mut heard = Vec::new();
        let (checked, resealed) = store.reseal(&mut |count| heard.push(count)).await.unwrap();
        assert_eq!((checked, resealed), (3, 2));
        assert_eq!(heard.last(), Some(&3));
        assert_eq!(plain_and_sealed(&db, "Plainfield"), (0, 3));
        let key_ids: Vec<u8> = store::testing::stored_bodies(&db.url)
            .iter()
            .map(|body| body[4])
            .collect();
        assert_eq!(key_ids, [1, 1, 1]);

        // After a new data key, everything moves to it; the text never changes.
        assert_eq!(store.add_data_key().await.unwrap(), 2);
        drop(store);
        let store = Store::open_with(&db.url, &with_key(&key)).unwrap();
        assert_eq!(store.reseal(&mut |_| {}).await.unwrap(), (3, 3));
        assert_eq!(store.reseal(&mut |_| {}).await.unwrap(), (3, 0));
        let key_ids: Vec<u8> = store::testing::stored_bodies(&db.url)
            .iter()
            .map(|body| body[4])
            .collect();
        assert_eq!(key_ids, [2, 2, 2]);
        let first = store.vread("Patient", &plain.id, 1).await.unwrap().unwrap();
        assert_eq!(first.body, plain.body);
        let second = store.read("Patient", &plain.id).await.unwrap().unwrap();
        let text = second.body.unwrap();
        assert_eq!((second.version, family_of(&text)), (2, "Plainfield".to_string()));
        assert!(text.contains("female"));
        assert_eq!(
            store.read("Patient", &sealed.id).await.unwrap().unwrap().body,
            sealed.body
        );
    }
}

store::each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resealing_needs_the_master_key(db) {
        let store = Store::open(&db.url).unwrap();
        create(&store, patient("Plainfield")).await;
        let Err(StoreError::Config(message)) = store.reseal(&mut |_| {}).await else {
            panic!("a store without a key resealed its bodies");
        };
        assert!(message.contains("master key"), "{message}");
        assert_eq!(plain_and_sealed(&db, "Plainfield"), (1, 0));
    }
}
