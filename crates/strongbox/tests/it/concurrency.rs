//! Many writers and readers at once: group commit, conflicts in a batch, several stores on
//! one file, an exhausted reader pool.

use std::sync::Arc;

use strongbox::{Config, Error, Expect, Store};
use tokio::task::JoinSet;

use crate::common::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_all_commit() {
    let harness = Harness::sqlite().await;
    let mut tasks = JoinSet::new();
    for task in 0..64 {
        let store = harness.store.clone();
        tasks.spawn(async move {
            for i in 0..20 {
                store
                    .store("bets", &format!("{task:02}-{i:02}"), &(task * 100 + i))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    assert_eq!(harness.store.count("bets").await.unwrap(), 64 * 20);
    assert_eq!(
        harness
            .store
            .retrieve::<i32>("bets", "63-19")
            .await
            .unwrap(),
        Some(6319)
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_fails_only_its_own_request() {
    let harness = Harness::sqlite().await;
    let mut tasks = JoinSet::new();
    for task in 0..100 {
        let store = harness.store.clone();
        tasks.spawn(async move {
            if task % 2 == 0 {
                store
                    .store_if("seats", "dealer", &task, Expect::Absent)
                    .await
                    .map(|_| true)
            } else {
                store
                    .store("seats", &format!("player-{task}"), &task)
                    .await
                    .map(|_| false)
            }
        });
    }
    let (mut claimed, mut conflicts) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(true) => claimed += 1,
            Ok(false) => {}
            Err(Error::Conflict { .. }) => conflicts += 1,
            Err(error) => panic!("{error}"),
        }
    }
    assert_eq!((claimed, conflicts), (1, 49));
    assert_eq!(harness.store.count("seats").await.unwrap(), 51);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_increments_never_lose_an_update() {
    let harness = Harness::sqlite().await;
    harness.store.store("counters", "pot", &0u64).await.unwrap();
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = harness.store.clone();
        tasks.spawn(async move {
            for _ in 0..25 {
                loop {
                    let record = store
                        .retrieve_record::<u64>("counters", "pot")
                        .await
                        .unwrap()
                        .unwrap();
                    let next = record.value + 1;
                    match store
                        .store_if(
                            "counters",
                            "pot",
                            &next,
                            Expect::Version(record.meta.version),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => continue,
                        Err(error) => panic!("{error}"),
                    }
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    assert_eq!(
        harness
            .store
            .retrieve::<u64>("counters", "pot")
            .await
            .unwrap(),
        Some(200)
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_write_at_once() {
    let harness = Harness::sqlite().await;
    let other = Store::open(harness.store.config().clone()).await.unwrap();
    let mut tasks = JoinSet::new();
    for (name, store) in [("first", harness.store.clone()), ("second", other.clone())] {
        for task in 0..4 {
            let store = store.clone();
            tasks.spawn(async move {
                for i in 0..50 {
                    let mut tx = store.transaction();
                    tx.store("shared", &format!("{name}-{task}-{i}"), &i)
                        .unwrap();
                    tx.store(
                        "shared-default",
                        &format!("{name}-{task}-{i}"),
                        &"same value",
                    )
                    .unwrap();
                    tx.commit().await.unwrap();
                }
            });
        }
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    other.close().await.unwrap();
    assert_eq!(harness.store.count("shared").await.unwrap(), 400);
    let stats = harness.store.storage_stats().await.unwrap();
    assert_eq!(stats.records, 800);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_readers_on_one_connection_wait_or_fail_typed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("pool.db"));
    config.read_connections = 1;
    config.busy_timeout_ms = 200;
    // No cache: every read goes to the one connection.
    config.cache_capacity_bytes = 0;
    let store = Arc::new(Store::open(config).await.unwrap());
    store.store("k", "k", &"v".repeat(1000)).await.unwrap();
    let mut tasks = JoinSet::new();
    for _ in 0..1000 {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.retrieve::<String>("k", "k").await });
    }
    let (mut read, mut busy) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(Some(value)) => {
                assert_eq!(value.len(), 1000);
                read += 1;
            }
            Err(Error::Busy { waited_ms }) => {
                assert_eq!(waited_ms, 200);
                busy += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(read + busy, 1000);
    assert!(read > 0);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.cache.hits, 0, "no read was served from a cache");
    assert_eq!(
        stats.cache.misses,
        read + busy,
        "every read went to the database"
    );
    store.close().await.unwrap();
}
