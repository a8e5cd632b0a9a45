//! Content-addressed deduplication and exact reference counts.

use serde_json::json;
use strongbox::Store;

fn default_profile() -> serde_json::Value {
    json!({"avatar": "default", "settings": {"sound": true, "theme": "felt-green"}, "chips": 1000})
}

pub async fn two_keys_share_one_blob_until_both_are_gone(store: &Store) {
    store
        .store("players", "alice", &default_profile())
        .await
        .unwrap();
    store
        .store("players", "bob", &default_profile())
        .await
        .unwrap();
    let stats = store.storage_stats().await.unwrap();
    assert_eq!((stats.records, stats.blobs), (2, 1));
    assert_eq!(stats.logical_bytes, 2 * stats.unique_bytes);

    // Overwrite one: the shared blob loses a reference, a new one appears.
    store
        .store("players", "alice", &json!({"chips": 5}))
        .await
        .unwrap();
    let stats = store.storage_stats().await.unwrap();
    assert_eq!((stats.records, stats.blobs), (2, 2));
    assert_eq!(
        store.retrieve("players", "bob").await.unwrap(),
        Some(default_profile())
    );

    store.delete("players", "bob").await.unwrap();
    assert_eq!(store.storage_stats().await.unwrap().blobs, 1);
    store.delete("players", "alice").await.unwrap();
    let stats = store.storage_stats().await.unwrap();
    assert_eq!((stats.records, stats.blobs, stats.stored_bytes), (0, 0, 0));
}

pub async fn rewriting_the_same_value_changes_no_count(store: &Store) {
    for _ in 0..3 {
        store
            .store("players", "alice", &default_profile())
            .await
            .unwrap();
    }
    // Same value under many keys, in one transaction, plus a delete and re-add of one of them.
    let mut tx = store.transaction();
    for i in 0..10 {
        tx.store("players", &format!("p{i}"), &default_profile())
            .unwrap();
    }
    tx.delete("players", "p3").unwrap();
    tx.store("players", "p3", &default_profile()).unwrap();
    tx.commit().await.unwrap();
    let stats = store.storage_stats().await.unwrap();
    assert_eq!((stats.records, stats.blobs), (11, 1));
    assert!(store.verify().await.unwrap().is_clean());
}

pub async fn stats_separate_compression_and_dedup_savings(store: &Store) {
    let chat = json!({"text": "gg wp ".repeat(100)});
    for i in 0..4 {
        store.store("chat", &format!("m{i}"), &chat).await.unwrap();
    }
    let stats = store.storage_stats().await.unwrap();
    let raw = serde_json::to_vec(&chat).unwrap().len() as u64;
    assert_eq!(stats.logical_bytes, 4 * raw);
    assert_eq!(stats.unique_bytes, raw);
    assert_eq!(stats.dedup_saved_bytes, 3 * raw);
    assert_eq!(stats.compression_saved_bytes, raw - stats.stored_bytes);
    assert!(stats.stored_bytes < raw / 5);
    assert_eq!(stats.collections, 1);
    assert!(stats.file_bytes > 0);
    assert!(stats.stored_ratio() < 0.1);
}
