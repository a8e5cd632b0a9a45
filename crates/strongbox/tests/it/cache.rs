//! The read cache: hits, coherence with writes, the byte bound, TTL expiry.

use std::time::Duration;

use strongbox::{CacheMode, Error, Expect, Version};
use tokio::task::JoinSet;

use crate::common::Harness;

#[tokio::test]
async fn a_read_after_a_store_is_a_hit() {
    let harness = Harness::sqlite().await;
    harness
        .store
        .store("players", "alice", &"profile")
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            harness
                .store
                .retrieve::<String>("players", "alice")
                .await
                .unwrap()
                .as_deref(),
            Some("profile")
        );
    }
    let cache = harness.store.stats().await.unwrap().cache;
    assert_eq!((cache.hits, cache.misses), (3, 0));
    assert_eq!(cache.entries, 1);
    harness.finish().await;
}

#[tokio::test]
async fn write_around_fills_on_the_first_read() {
    let harness = Harness::sqlite_with(|config| config.cache_mode = CacheMode::WriteAround).await;
    harness.store.store("players", "alice", &1).await.unwrap();
    for _ in 0..3 {
        harness
            .store
            .retrieve::<i32>("players", "alice")
            .await
            .unwrap();
    }
    let cache = harness.store.stats().await.unwrap().cache;
    assert_eq!((cache.hits, cache.misses), (2, 1));
    harness.finish().await;
}

#[tokio::test]
async fn never_stale_after_overwrite_delete_or_transactions() {
    for mode in [CacheMode::WriteThrough, CacheMode::WriteAround] {
        let harness = Harness::sqlite_with(|config| config.cache_mode = mode).await;
        let store = &harness.store;
        let read = || async { store.retrieve::<i32>("k", "x").await.unwrap() };
        store.store("k", "x", &1).await.unwrap();
        assert_eq!(read().await, Some(1));
        store.store("k", "x", &2).await.unwrap();
        assert_eq!(read().await, Some(2), "{mode:?} overwrite");
        store.delete("k", "x").await.unwrap();
        assert_eq!(read().await, None, "{mode:?} delete");
        store.store("k", "x", &3).await.unwrap();
        assert_eq!(read().await, Some(3));

        let mut tx = store.transaction();
        tx.store("k", "x", &4).unwrap();
        tx.store("k", "y", &40).unwrap();
        tx.commit().await.unwrap();
        assert_eq!(read().await, Some(4), "{mode:?} transaction");

        // A failed transaction leaves the cache as it was.
        let mut tx = store.transaction();
        tx.store("k", "x", &5).unwrap();
        tx.store_if("k", "y", &50, Expect::Version(Version::new(9)))
            .unwrap();
        assert!(matches!(tx.commit().await, Err(Error::Conflict { .. })));
        assert_eq!(read().await, Some(4), "{mode:?} failed transaction");
        let record = store
            .retrieve_record::<i32>("k", "x")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.meta.version, Version::new(2));
        harness.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_readers_never_put_back_a_replaced_value() {
    let harness = Harness::sqlite().await;
    harness.store.store("race", "x", &0u32).await.unwrap();
    let mut readers = JoinSet::new();
    for _ in 0..4 {
        let store = harness.store.clone();
        readers.spawn(async move {
            for _ in 0..400 {
                store.retrieve::<u32>("race", "x").await.unwrap();
            }
        });
    }
    for i in 1..=200u32 {
        if i % 2 == 0 {
            harness.store.store("race", "x", &i).await.unwrap();
        } else {
            let mut tx = harness.store.transaction();
            tx.store("race", "x", &i).unwrap();
            tx.commit().await.unwrap();
        }
        // Read-your-writes, however the readers interleave with the cache.
        assert_eq!(
            harness.store.retrieve::<u32>("race", "x").await.unwrap(),
            Some(i)
        );
    }
    while let Some(result) = readers.join_next().await {
        result.unwrap();
    }
    harness.finish().await;
}

/// Writers racing on the same keys: whatever order their commits and their cache updates
/// interleave in, once they are done the cache serves what the database holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_leave_the_newest_value_cached() {
    let harness = Harness::sqlite().await;
    for round in 0..5u32 {
        let mut writers = JoinSet::new();
        for task in 0..8u32 {
            let store = harness.store.clone();
            writers.spawn(async move {
                for i in 0..150u32 {
                    let key = format!("k{}", (task + i) % 3);
                    store.store("race", &key, &(round, task, i)).await.unwrap();
                }
            });
        }
        while let Some(result) = writers.join_next().await {
            result.unwrap();
        }
        let fresh = strongbox::Store::open(strongbox::Config::new(harness.path()))
            .await
            .unwrap();
        for key in ["k0", "k1", "k2"] {
            let on_disk = fresh.retrieve_record::<(u32, u32, u32)>("race", key).await;
            let cached = harness
                .store
                .retrieve_record::<(u32, u32, u32)>("race", key)
                .await;
            let (on_disk, cached) = (on_disk.unwrap().unwrap(), cached.unwrap().unwrap());
            assert_eq!(
                (cached.value, cached.meta.version),
                (on_disk.value, on_disk.meta.version),
                "round {round}, key {key}: the cache serves a replaced value"
            );
        }
        fresh.close().await.unwrap();
    }
    harness.finish().await;
}

#[tokio::test]
async fn the_byte_bound_holds_under_a_flood_of_large_values() {
    let capacity = 1 << 20;
    let harness = Harness::sqlite_with(|config| {
        config.cache_capacity_bytes = capacity;
        config.compression.algorithm = strongbox::codec::Algorithm::None;
    })
    .await;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..64 {
        let value: String = (0..64 * 1024)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'a' + (seed % 26) as u8)
            })
            .collect();
        harness
            .store
            .store("flood", &format!("v{i}"), &value)
            .await
            .unwrap();
        harness
            .store
            .retrieve::<String>("flood", &format!("v{i}"))
            .await
            .unwrap();
    }
    let stats = harness.store.maintenance().await.unwrap();
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    let cache = harness.store.stats().await.unwrap().cache;
    assert!(cache.bytes <= capacity, "{cache:?}");
    assert!(cache.entries < 64 && cache.entries > 0, "{cache:?}");
    assert!(cache.evictions > 0, "{cache:?}");
    harness.finish().await;
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let harness = Harness::sqlite_with(|config| config.cache_ttl_secs = 1).await;
    harness.store.store("k", "x", &1).await.unwrap();
    harness.store.retrieve::<i32>("k", "x").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    harness.store.retrieve::<i32>("k", "x").await.unwrap();
    let cache = harness.store.stats().await.unwrap().cache;
    assert_eq!((cache.hits, cache.misses), (1, 1), "{cache:?}");
    harness.finish().await;
}

#[tokio::test]
async fn a_disabled_cache_always_reads_the_database() {
    let harness = Harness::sqlite_with(|config| config.cache_capacity_bytes = 0).await;
    harness.store.store("k", "x", &1).await.unwrap();
    assert_eq!(
        harness.store.retrieve::<i32>("k", "x").await.unwrap(),
        Some(1)
    );
    let cache = harness.store.stats().await.unwrap().cache;
    // Every read went to the database: a miss, as the counter's doc says.
    assert_eq!((cache.hits, cache.misses, cache.entries), (0, 1, 0));
    harness.finish().await;
}
