//! Read-write transactions (`Store::transact`): serializable, retried on conflict.

use std::sync::Arc;

use strongbox::{Error, Store};
use tokio::task::JoinSet;

/// Increments per task: `STRONGBOX_TRANSACT_INCREMENTS`, default 20 (1,280 in all; 200 gives
/// the 12,800 of a soak run, which on PostgreSQL takes minutes on one contended row).
fn increments_per_task() -> u64 {
    std::env::var("STRONGBOX_TRANSACT_INCREMENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20)
}

/// 64 tasks each add one to a shared counter through `transact`: no increment is lost.
pub async fn concurrent_increments_are_exact(store: &Store) {
    let increments = increments_per_task();
    let store = Arc::new(store.clone());
    let mut tasks = JoinSet::new();
    for _ in 0..64 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            for _ in 0..increments {
                store
                    .transact(async |tx| {
                        let count: u64 = tx.get("counters", "shared").await?.unwrap_or(0);
                        tx.put("counters", "shared", &(count + 1))?;
                        Ok(())
                    })
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
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
