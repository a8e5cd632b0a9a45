//! Read-write transactions (`Store::transact`): serializable, retried on conflict.

use std::sync::Arc;

use strongbox::{Entry, Error, ListOptions, Scan, Store};
use tokio::task::JoinSet;

use crate::common::{increment_shared_counter, increments_per_task};

/// 64 tasks each add one to a shared counter through `transact`: no increment is lost.
pub async fn concurrent_increments_are_exact(store: &Store) {
    let increments = increments_per_task();
    increment_shared_counter(store, 64, increments).await;
    assert_eq!(
        store.retrieve::<u64>("counters", "shared").await.unwrap(),
        Some(64 * increments)
    );
}

/// A transaction reads its own writes, and one whose closure fails writes nothing.
pub async fn reads_see_own_writes_and_errors_write_nothing(store: &Store) {
    let seen = store
        .transact(async |tx| {
            tx.put("t", "a", &1u32)?;
            let a: Option<u32> = tx.get("t", "a").await?;
            tx.delete("t", "a")?;
            let gone: Option<u32> = tx.get("t", "a").await?;
            tx.put("t", "b", &2u32)?;
            Ok((a, gone))
        })
        .await
        .unwrap();
    assert_eq!(seen, (Some(1), None));
    assert_eq!(store.retrieve::<u32>("t", "a").await.unwrap(), None);
    assert_eq!(store.retrieve::<u32>("t", "b").await.unwrap(), Some(2));

    let failed: Result<(), Error> = store
        .transact(async |tx| {
            tx.put("t", "c", &3u32)?;
            Err(Error::Closed)
        })
        .await;
    assert!(matches!(failed, Err(Error::Closed)), "{failed:?}");
    assert_eq!(store.retrieve::<u32>("t", "c").await.unwrap(), None);

    // A bad name fails at the call, inside the closure.
    let bad = store.transact(async |tx| tx.put("", "k", &1u32)).await;
    assert!(matches!(bad, Err(Error::InvalidName { .. })), "{bad:?}");
}

/// Random transfers among 100 accounts from 64 tasks: the total never changes, as read-only
/// samples see it, and every committed transfer has its ledger entry.
pub async fn transfers_keep_the_total(store: &Store) {
    const ACCOUNTS: u64 = 100;
    for account in 0..ACCOUNTS {
        store
            .store("accounts", &format!("a{account:03}"), &100u64)
            .await
            .unwrap();
    }
    let store = Arc::new(store.clone());
    let mut tasks = JoinSet::new();
    for task in 0..64u64 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut committed = 0u64;
            for n in 0..20u64 {
                let from = format!("a{:03}", (task * 7 + n * 13) % ACCOUNTS);
                let to = format!("a{:03}", (task * 11 + n * 17 + 1) % ACCOUNTS);
                if from == to {
                    continue;
                }
                let ledger = format!("t{task:02}-{n:03}");
                let moved = store
                    .transact(async move |tx| {
                        let a: u64 = tx.get("accounts", &from).await?.unwrap_or(0);
                        let b: u64 = tx.get("accounts", &to).await?.unwrap_or(0);
                        let amount = (n % 5 + 1).min(a);
                        tx.put("accounts", &from, &(a - amount))?;
                        tx.put("accounts", &to, &(b + amount))?;
                        tx.put("ledger", &ledger, &amount)?;
                        Ok(true)
                    })
                    .await
                    .unwrap();
                committed += u64::from(moved);
            }
            committed
        });
    }
    let sampler = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for _ in 0..20 {
                let total = store
                    .transact(async |tx| {
                        let mut total = 0u64;
                        for account in 0..ACCOUNTS {
                            let key = format!("a{account:03}");
                            total += tx.get::<u64>("accounts", &key).await?.unwrap_or(0);
                        }
                        Ok(total)
                    })
                    .await
                    .unwrap();
                assert_eq!(
                    total,
                    100 * ACCOUNTS,
                    "a read-only transaction saw a partial transfer"
                );
            }
        })
    };
    let mut committed = 0;
    while let Some(result) = tasks.join_next().await {
        committed += result.unwrap();
    }
    sampler.await.unwrap();
    assert_eq!(store.count("ledger").await.unwrap(), committed);
}

/// A transaction's scan sees its own writes, in order, reversed and limited.
pub async fn scans_in_a_transaction_see_own_writes(store: &Store) {
    for key in ["r:a", "r:b", "r:c", "s:a"] {
        store.store("rows", key, &key.to_owned()).await.unwrap();
    }
    let (forward, backward, limited) = store
        .transact(async |tx| {
            tx.delete("rows", "r:b")?;
            tx.put("rows", "r:d", &"new".to_owned())?;
            tx.put("rows", "r:a", &"changed".to_owned())?;
            let forward = tx.scan::<String>("rows", Scan::prefix("r:")).await?;
            let backward = tx
                .scan::<String>("rows", Scan::prefix("r:").reverse())
                .await?;
            let limited = tx.scan::<String>("rows", Scan::all().limit(2)).await?;
            Ok((forward, backward, limited))
        })
        .await
        .unwrap();
    let keys = |entries: &[Entry<String>]| -> Vec<String> {
        entries.iter().map(|entry| entry.key.clone()).collect()
    };
    assert_eq!(keys(&forward), ["r:a", "r:c", "r:d"]);
    assert_eq!(forward[0].value, "changed");
    assert_eq!(
        forward[0].version.get(),
        2,
        "the version the write commits as"
    );
    assert_eq!(forward[2].version.get(), 1);
    assert_eq!(keys(&backward), ["r:d", "r:c", "r:a"]);
    assert_eq!(keys(&limited), ["r:a", "r:c"]);
    let committed: Vec<String> = store.list("rows", ListOptions::all()).await.unwrap();
    assert_eq!(committed, ["r:a", "r:c", "r:d", "s:a"]);
}

/// A transaction that scanned a range conflicts, and runs again, when a key is inserted into
/// the range (a phantom), changed or deleted after its scan; a write outside the range does
/// not disturb it.
pub async fn a_scanned_range_conflicts_on_phantoms_changes_and_deletes(store: &Store) {
    store.store("seats", "t7:a", &1u32).await.unwrap();
    store.store("seats", "t7:b", &1u32).await.unwrap();
    // Each disturbance happens between the scan and the commit of the first run only.
    let disturbances: [(&str, Option<u32>); 4] = [
        ("t8:a", Some(1)), // outside the range: no conflict
        ("t7:c", Some(1)), // a phantom
        ("t7:a", Some(2)), // a change
        ("t7:b", None),    // a delete
    ];
    for (key, value) in disturbances {
        let runs = std::sync::atomic::AtomicU32::new(0);
        let counted = store
            .transact(async |tx| {
                let run = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let seats = tx.scan::<u32>("seats", Scan::prefix("t7:")).await?;
                if run == 0 {
                    match value {
                        Some(value) => drop(store.store("seats", key, &value).await?),
                        None => drop(store.delete("seats", key).await?),
                    }
                }
                tx.put("tables", "t7", &(seats.len() as u64))?;
                Ok(seats.len() as u64)
            })
            .await
            .unwrap();
        let expected_runs = if key.starts_with("t7:") { 2 } else { 1 };
        assert_eq!(runs.into_inner(), expected_runs, "disturbed by {key}");
        let now = store.count_prefix("seats", "t7:").await;
        assert_eq!(counted, now, "disturbed by {key}");
        assert_eq!(
            store.retrieve::<u64>("tables", "t7").await.unwrap(),
            Some(now)
        );
    }
}

/// A key deleted and created again starts again at version 1: a transaction that read it
/// before conflicts, and runs again, though the key is back at the version it read — whether
/// the transaction read the key, also wrote it, or scanned a range holding it (a lease
/// released by one player and taken by another between the read and the commit).
pub async fn a_key_created_again_at_the_version_read_conflicts(store: &Store) {
    for how in ["read", "written", "scanned"] {
        store.store("leases", "t7", &"alice").await.unwrap();
        let runs = std::sync::atomic::AtomicU32::new(0);
        let seen = store
            .transact(async |tx| {
                let run = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let holder: Option<String> = if how == "scanned" {
                    let entries = tx.scan::<String>("leases", Scan::prefix("t")).await?;
                    entries.into_iter().next().map(|entry| entry.value)
                } else {
                    tx.get("leases", "t7").await?
                };
                if run == 0 {
                    store.delete("leases", "t7").await?;
                    store.store("leases", "t7", &"bob").await?;
                    assert_eq!(
                        store.version("leases", "t7").await?.map(|v| v.get()),
                        Some(1)
                    );
                }
                let holder = holder.unwrap_or_default();
                if how == "written" {
                    tx.put("leases", "t7", &format!("{holder}, renewed"))?;
                } else {
                    tx.put("log", "t7", &holder)?;
                }
                Ok(holder)
            })
            .await
            .unwrap();
        assert_eq!(runs.into_inner(), 2, "{how}");
        assert_eq!(seen, "bob", "{how}");
        let (collection, expected) = if how == "written" {
            ("leases", "bob, renewed")
        } else {
            ("log", "bob")
        };
        assert_eq!(
            store.retrieve::<String>(collection, "t7").await.unwrap(),
            Some(expected.to_owned()),
            "{how}"
        );
        store.delete("leases", "t7").await.unwrap();
    }
}

/// Write skew, the anomaly only serializable isolation forbids: 32 tasks each join a table
/// whose scan shows fewer than 5 seated players. Every run of a task sees a consistent table,
/// so exactly 5 join, never more.
pub async fn a_range_condition_holds_under_concurrent_inserts(store: &Store) {
    let store = Arc::new(store.clone());
    let mut tasks = JoinSet::new();
    for task in 0..32u32 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .transact(async move |tx| {
                    let seated = tx.scan::<u32>("seats", Scan::prefix("table-1:")).await?;
                    if seated.len() >= 5 {
                        return Ok(false);
                    }
                    tx.put("seats", &format!("table-1:{task:02}"), &task)?;
                    Ok(true)
                })
                .await
                .unwrap()
        });
    }
    let mut joined = 0;
    while let Some(result) = tasks.join_next().await {
        joined += u32::from(result.unwrap());
    }
    assert_eq!(joined, 5);
    assert_eq!(store.count("seats").await.unwrap(), 5);
}

/// Helpers the scan behaviours share.
trait CountPrefix {
    /// How many records of `collection` have keys starting with `prefix`.
    async fn count_prefix(&self, collection: &str, prefix: &str) -> u64;
}

impl CountPrefix for Store {
    async fn count_prefix(&self, collection: &str, prefix: &str) -> u64 {
        let keys = self
            .list(collection, ListOptions::all().prefix(prefix))
            .await
            .unwrap();
        keys.len() as u64
    }
}
