//! The privacy layer's records through the store's API, on both backends: accounts by
//! kind and id, create-only puts, and keys used once until they expire.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

use store::AuthKind;

store::each_backend! {
    #[tokio::test]
    async fn records_are_kept_by_kind_and_id(db) {
        let store = db.open();
        assert_eq!(store.auth_get(AuthKind::Client, "a").await.unwrap(), None);
        assert!(store.auth_put(AuthKind::Client, "a", "{\"v\":1}", false).await.unwrap());
        assert!(store.auth_put(AuthKind::User, "a", "{\"u\":1}", false).await.unwrap());
        // A create-only put leaves an existing record alone.
        assert!(!store.auth_put(AuthKind::Client, "a", "{\"v\":2}", true).await.unwrap());
        assert_eq!(store.auth_get(AuthKind::Client, "a").await.unwrap().as_deref(), Some("{\"v\":1}"));
        store.auth_put(AuthKind::Client, "a", "{\"v\":3}", false).await.unwrap();
        store.auth_put(AuthKind::Client, "b", "{}", false).await.unwrap();
        let listed = store.auth_list(AuthKind::Client).await.unwrap();
        assert_eq!(
            listed,
            vec![("a".to_string(), "{\"v\":3}".to_string()), ("b".to_string(), "{}".to_string())]
        );
        assert!(store.auth_delete(AuthKind::Client, "a").await.unwrap());
        assert!(!store.auth_delete(AuthKind::Client, "a").await.unwrap());
        assert_eq!(store.auth_get(AuthKind::User, "a").await.unwrap().as_deref(), Some("{\"u\":1}"));
    }
}

store::each_backend! {
    #[tokio::test]
    async fn a_key_is_used_once_until_it_expires(db) {
        let store = db.open();
        assert!(store.use_once("c1:j1", 100, 10).await.unwrap());
        assert!(!store.use_once("c1:j1", 100, 50).await.unwrap());
        assert!(store.use_once("c1:j2", 100, 50).await.unwrap());
        // Expired keys are forgotten, so the table does not grow without bound.
        assert!(store.use_once("c1:j1", 300, 200).await.unwrap());
    }
}
