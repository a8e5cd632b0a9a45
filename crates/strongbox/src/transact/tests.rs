//! Unit tests of staged reads: a transaction that read another one's staged write commits,
//! or returns its closure's error, only if that write committed.

use std::sync::Arc;

use super::*;
use crate::Config;
use crate::staged::StagedValue;

/// A store whose transactions run once: a conflict is returned, not retried.
async fn store(dir: &tempfile::TempDir) -> Store {
    let config = Config::new(dir.path().join("t.db")).with_transact_attempts(1);
    Store::open(config).await.unwrap()
}

/// A store (and its directory) where `balances/a` is 10 at version 1.
async fn store_with_ten() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    store.store("balances", "a", &10u64).await.unwrap();
    (dir, store)
}

/// Stages `value` as the version `version` of `balances/a`, as a commit in flight would.
fn stage(store: &Store, version: u64, value: u64) -> crate::staged::Staging<'_> {
    let (blob, format) = store.encode_value("balances", "a", &value).unwrap();
    store.staged().stage(vec![(
        ("balances".to_owned(), "a".to_owned()),
        StagedValue::Put {
            version: Version::new(version),
            blob: Arc::new(blob),
            format,
        },
    )])
}

/// Adds 1 to `balances/a` in a transaction; returns what it read.
async fn increment(store: &Store) -> Result<u64> {
    store
        .transact(async |tx| {
            let a: u64 = tx.get("balances", "a").await?.unwrap_or_default();
            tx.put("balances", "a", &(a + 1))?;
            Ok(a)
        })
        .await
}

#[tokio::test]
async fn a_transaction_reads_a_staged_write_and_commits_when_it_did() {
    let (_dir, store) = store_with_ten().await;
    let staging = stage(&store, 2, 11);
    // The staged write has not committed yet: the check of what was read fails. (The failed
    // commit staged 12 over the 11, then withdrew it: stage the 11 again.)
    assert!(matches!(
        increment(&store).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        store.retrieve::<u64>("balances", "a").await.unwrap(),
        Some(10)
    );
    assert!(store.staged().get("balances", "a").is_none());
    let again = stage(&store, 2, 11);
    // Now it commits (as its own commit would, before withdrawing it).
    store.store("balances", "a", &11u64).await.unwrap();
    assert_eq!(increment(&store).await.unwrap(), 11);
    drop((staging, again));
    assert_eq!(
        store.retrieve::<u64>("balances", "a").await.unwrap(),
        Some(12)
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_staged_version_reached_by_another_value_is_a_conflict() {
    let (_dir, store) = store_with_ten().await;
    // A commit in flight stages 11 at version 2, and fails; another write takes the key to
    // version 2 with 50. Reading the staged 11 must not let 12 overwrite the 50.
    let staging = stage(&store, 2, 11);
    store.store("balances", "a", &50u64).await.unwrap();
    assert!(matches!(
        increment(&store).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        store.retrieve::<u64>("balances", "a").await.unwrap(),
        Some(50)
    );
    drop(staging);
    assert_eq!(increment(&store).await.unwrap(), 50);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_closures_error_on_a_staged_read_stands_only_if_that_write_committed() {
    let (_dir, store) = store_with_ten().await;
    let refuse = async |store: &Store| {
        store
            .transact(async |tx| {
                let a: u64 = tx.get("balances", "a").await?.unwrap_or_default();
                Err::<(), _>(Error::InvalidConfig(format!("refused at {a}")))
            })
            .await
    };
    let staging = stage(&store, 2, 11);
    // Refused at 11, a value that never committed: not the answer.
    assert!(matches!(refuse(&store).await, Err(Error::Conflict { .. })));
    store.store("balances", "a", &11u64).await.unwrap();
    match refuse(&store).await {
        Err(Error::InvalidConfig(message)) => assert_eq!(message, "refused at 11"),
        other => panic!("{other:?}"),
    }
    drop(staging);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_key_read_from_the_database_is_not_read_again_from_a_staged_write() {
    let (_dir, store) = store_with_ten().await;
    let read_twice = store
        .transact(async |tx| {
            let first: Option<u64> = tx.get("balances", "a").await?;
            let staging = stage(&store, 2, 11);
            let second: Option<u64> = tx.get("balances", "a").await?;
            drop(staging);
            Ok((first, second))
        })
        .await
        .unwrap();
    assert_eq!(read_twice, (Some(10), Some(10)));
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_commit_stages_its_writes_until_it_is_decided() {
    let (_dir, store) = store_with_ten().await;
    let mut tx = ReadWriteTransaction::new(store.clone());
    let a: u64 = tx.get("balances", "a").await.unwrap().unwrap();
    tx.put("balances", "a", &(a + 5)).unwrap();
    tx.put("balances", "blind", &1u64).unwrap();
    let staged = tx.stageable();
    assert_eq!(
        staged.len(),
        1,
        "a key written without being read is not staged"
    );
    assert_eq!(staged[0].1.version(), Some(Version::new(2)));
    tx.commit().await.unwrap();
    assert!(store.staged().get("balances", "a").is_none());
    assert_eq!(
        store.retrieve::<u64>("balances", "a").await.unwrap(),
        Some(15)
    );
    store.close().await.unwrap();
}
