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

store::each_backend! {
    #[tokio::test]
    async fn failed_logins_lock_a_name_for_every_store_of_the_database(db) {
        let (one, two) = (db.open(), db.open());
        // Three in a row lock for 60 s, whichever store counts them.
        assert!(!one.login_failed("jdoe", 1000, 3, 60).await.unwrap());
        assert!(!two.login_failed("jdoe", 1001, 3, 60).await.unwrap());
        assert!(!one.login_locked("jdoe", 1001).await.unwrap());
        assert!(two.login_failed("jdoe", 1002, 3, 60).await.unwrap());
        assert!(one.login_locked("jdoe", 1003).await.unwrap());
        assert!(two.login_locked("jdoe", 1061).await.unwrap());
        assert!(!two.login_locked("jdoe", 1062).await.unwrap());
        // Other names are untouched.
        assert!(!one.login_locked("asmith", 1003).await.unwrap());
        // A failure after the lock ended starts the count again.
        assert!(!one.login_failed("jdoe", 1070, 3, 60).await.unwrap());
        assert!(!one.login_locked("jdoe", 1070).await.unwrap());
        // So does a pause as long as the lockout, and a successful login.
        assert!(!one.login_failed("jdoe", 1071, 3, 60).await.unwrap());
        assert!(!one.login_failed("jdoe", 1131, 3, 60).await.unwrap());
        assert!(!one.login_failed("jdoe", 1132, 3, 60).await.unwrap());
        two.login_succeeded("jdoe").await.unwrap();
        assert!(!one.login_failed("jdoe", 1133, 3, 60).await.unwrap());
        assert!(!one.login_failed("jdoe", 1134, 3, 60).await.unwrap());
        assert!(one.login_failed("jdoe", 1135, 3, 60).await.unwrap());
        // A failure while locked keeps it locked, from the last failure on.
        assert!(one.login_failed("jdoe", 1150, 3, 60).await.unwrap());
        assert!(one.login_locked("jdoe", 1209).await.unwrap());
        // One allowed failure locks at once.
        assert!(one.login_failed("mlee", 1000, 1, 60).await.unwrap());
    }
}
