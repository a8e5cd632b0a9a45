//! Transactions and optimistic concurrency.

use strongbox::{Error, Expect, Store, Version};

pub async fn a_transaction_commits_across_collections(store: &Store) {
    store.store("players", "gone", &0).await.unwrap();
    let mut tx = store.transaction();
    tx.store("players", "alice", &100).unwrap();
    tx.store("ledger", "t1", &("alice", 100)).unwrap();
    tx.delete("players", "gone").unwrap();
    assert_eq!(tx.len(), 3);
    let versions = tx.commit().await.unwrap();
    assert_eq!(versions, [Some(Version::FIRST), Some(Version::FIRST), None]);
    assert_eq!(
        store.retrieve::<i32>("players", "alice").await.unwrap(),
        Some(100)
    );
    assert!(store.exists("ledger", "t1").await.unwrap());
    assert!(!store.exists("players", "gone").await.unwrap());

    // Dropping a transaction writes nothing.
    let mut dropped = store.transaction();
    dropped.store("players", "ghost", &1).unwrap();
    drop(dropped);
    assert!(!store.exists("players", "ghost").await.unwrap());
    assert!(store.transaction().commit().await.unwrap().is_empty());
}

pub async fn a_failed_condition_in_the_middle_leaves_nothing(store: &Store) {
    store.store("accounts", "a", &50).await.unwrap();
    store.store("accounts", "b", &50).await.unwrap();
    let before = store.storage_stats().await.unwrap();
    let mut tx = store.transaction();
    tx.store("accounts", "a", &40).unwrap();
    tx.store("ledger", "new", &"transfer").unwrap();
    tx.store_if("accounts", "b", &60, Expect::Version(Version::new(7)))
        .unwrap();
    tx.delete("accounts", "a").unwrap();
    let error = tx.commit().await.unwrap_err();
    assert!(
        matches!(&error, Error::Conflict { collection, key, expected: Expect::Version(v), actual: Some(actual) }
            if collection == "accounts" && key == "b" && v.get() == 7 && *actual == Version::FIRST),
        "{error}"
    );
    assert_eq!(
        store.retrieve::<i32>("accounts", "a").await.unwrap(),
        Some(50)
    );
    assert_eq!(
        store.retrieve::<i32>("accounts", "b").await.unwrap(),
        Some(50)
    );
    assert!(!store.exists("ledger", "new").await.unwrap());
    let after = store.storage_stats().await.unwrap();
    assert_eq!(
        strongbox::StorageStats {
            file_bytes: before.file_bytes,
            ..after
        },
        before
    );
}

pub async fn conditional_stores_and_deletes_check_versions(store: &Store) {
    let v1 = store
        .store_if("games", "g", &"new", Expect::Absent)
        .await
        .unwrap();
    assert_eq!(v1, Version::FIRST);
    let error = store
        .store_if("games", "g", &"again", Expect::Absent)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Conflict { actual: Some(v), .. } if v == v1),
        "{error}"
    );

    let v2 = store
        .store_if("games", "g", &"second", Expect::Version(v1))
        .await
        .unwrap();
    assert_eq!(v2, Version::new(2));
    // The same stale version again: the second writer loses.
    let error = store
        .store_if("games", "g", &"stale", Expect::Version(v1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Conflict { actual: Some(v), .. } if v == v2),
        "{error}"
    );
    assert_eq!(
        store
            .retrieve::<String>("games", "g")
            .await
            .unwrap()
            .as_deref(),
        Some("second")
    );

    let error = store
        .store_if("games", "missing", &1, Expect::Version(v1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Conflict { actual: None, .. }),
        "{error}"
    );

    let error = store
        .delete_if("games", "g", Expect::Version(v1))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Conflict { .. }), "{error}");
    assert!(
        store
            .delete_if("games", "g", Expect::Version(v2))
            .await
            .unwrap()
    );
    assert!(!store.exists("games", "g").await.unwrap());
}

pub async fn writes_in_one_transaction_see_each_other(store: &Store) {
    let mut tx = store.transaction();
    tx.store_if("k", "x", &1, Expect::Absent).unwrap();
    tx.store_if("k", "x", &2, Expect::Version(Version::FIRST))
        .unwrap();
    tx.delete_if("k", "x", Expect::Version(Version::new(2)))
        .unwrap();
    tx.store_if("k", "x", &3, Expect::Absent).unwrap();
    let versions = tx.commit().await.unwrap();
    assert_eq!(
        versions,
        [
            Some(Version::FIRST),
            Some(Version::new(2)),
            None,
            Some(Version::FIRST)
        ]
    );
    assert_eq!(store.retrieve::<i32>("k", "x").await.unwrap(), Some(3));
}
