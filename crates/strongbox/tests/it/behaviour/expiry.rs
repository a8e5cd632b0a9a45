//! Records that expire: absent for every read from their expiry instant, for conditions and
//! transactions too, then swept with an `expired` change.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::TryStreamExt;
use strongbox::{ChangeKind, Entry, Error, Expect, Expiry, ListOptions, PutOptions, Scan, Store};

const TTL: Duration = Duration::from_secs(1);

/// Sleeps until `deadline` (and a little past it, for clocks read a millisecond apart).
async fn sleep_past(deadline: Instant) {
    tokio::time::sleep_until((deadline + Duration::from_millis(50)).into()).await;
}

/// The keys a scan of "sessions" returns.
async fn scanned(store: &Store) -> Vec<String> {
    let sessions = store.collection::<String>("sessions").unwrap();
    let entries: Vec<Entry<String>> = sessions.scan(Scan::all()).try_collect().await.unwrap();
    entries.into_iter().map(|entry| entry.key).collect()
}

/// A record with a 1 s time to live, written through each write path, is there before its
/// expiry and absent after it from every read path; `Expect::Absent` succeeds on it; the sweep
/// deletes what is left with one `expired` change each, and the store verifies.
pub async fn an_expired_record_is_absent_from_every_read_and_swept(store: &Store) {
    let sessions = store.collection::<String>("sessions").unwrap();
    let written = Instant::now();
    sessions
        .put_with_ttl("a", &"alice".to_owned(), TTL)
        .await
        .unwrap();
    let mut batch = store.transaction();
    batch
        .store_with("sessions", "b", "bob", PutOptions::new().ttl(TTL))
        .unwrap();
    batch.commit().await.unwrap();
    store
        .transact(async |tx| tx.put_with("sessions", "c", "carol", Expiry::After(TTL)))
        .await
        .unwrap();
    let at = SystemTime::now() + TTL;
    sessions
        .put_with("d", &"dave".to_owned(), PutOptions::new().expires_at(at))
        .await
        .unwrap();
    sessions.put("keep", &"kept".to_owned()).await.unwrap();
    let expiring = ["a", "b", "c", "d"];

    // Before: everywhere (and in the cache, which a read fills).
    for key in expiring {
        assert!(sessions.get(key).await.unwrap().is_some(), "{key}");
    }
    assert_eq!(scanned(store).await, ["a", "b", "c", "d", "keep"]);
    assert_eq!(store.count("sessions").await.unwrap(), 5);
    assert_eq!(store.stats().await.unwrap().storage.expiring, 4);
    let before_feed = store.changes(0, 100).await.unwrap().len();

    sleep_past(written + TTL).await;

    // After: absent from every read path, before any sweep.
    for key in expiring {
        assert_eq!(sessions.get(key).await.unwrap(), None, "{key}");
        assert!(!store.exists("sessions", key).await.unwrap(), "{key}");
        assert_eq!(store.version("sessions", key).await.unwrap(), None, "{key}");
        let record = store.retrieve_record::<String>("sessions", key).await;
        assert!(record.unwrap().is_none(), "{key}");
    }
    assert_eq!(
        sessions.get_many(["a", "keep", "d"]).await.unwrap(),
        [None, Some("kept".to_owned()), None]
    );
    assert_eq!(scanned(store).await, ["keep"]);
    let listed = store.list("sessions", ListOptions::all()).await.unwrap();
    assert_eq!(listed, ["keep"]);
    assert_eq!(store.count("sessions").await.unwrap(), 1);
    let stats = store.stats().await.unwrap().storage;
    assert_eq!((stats.expiring, stats.expired), (0, 4), "{stats:?}");
    let seen = store
        .transact(async |tx| {
            let a: Option<String> = tx.get("sessions", "a").await?;
            let all: Vec<Entry<String>> = tx.scan("sessions", Scan::all()).await?;
            Ok((a, all.len()))
        })
        .await
        .unwrap();
    assert_eq!(seen, (None, 1));

    // A condition sees it absent (the transaction's check of "a" too, which deleted it as
    // expired): creating the key again starts at version 1, and the feed says it expired
    // before it was put again.
    let version = sessions
        .put_with(
            "b",
            &"bob again".to_owned(),
            PutOptions::new().expect(Expect::Absent),
        )
        .await
        .unwrap();
    assert_eq!(version.get(), 1);
    let refused = sessions
        .put_with(
            "b",
            &"x".to_owned(),
            PutOptions::new().expect(Expect::Absent),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::Conflict { .. })),
        "{refused:?}"
    );
    assert!(
        !store.delete("sessions", "c").await.unwrap(),
        "c had expired"
    );
    let kinds: Vec<(String, ChangeKind)> = store
        .changes(0, 100)
        .await
        .unwrap()
        .into_iter()
        .skip(before_feed)
        .map(|change| (change.key, change.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("a".to_owned(), ChangeKind::Expired),
            ("b".to_owned(), ChangeKind::Expired),
            ("b".to_owned(), ChangeKind::Put),
            ("c".to_owned(), ChangeKind::Expired),
        ]
    );

    // The sweep deletes the one left (d) with an `expired` change, and nothing else.
    assert_eq!(store.sweep_expired().await.unwrap(), 1);
    assert_eq!(store.sweep_expired().await.unwrap(), 0);
    let swept: Vec<(String, ChangeKind)> = store
        .changes(0, 100)
        .await
        .unwrap()
        .into_iter()
        .skip(before_feed + 4)
        .map(|change| (change.key, change.kind))
        .collect();
    assert_eq!(swept, [("d".to_owned(), ChangeKind::Expired)]);
    let stats = store.stats().await.unwrap().storage;
    assert_eq!((stats.records, stats.expired), (2, 0), "{stats:?}");
    let report = store.maintenance().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let verified = store.verify().await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
}

/// A transaction that read a record before it expired conflicts when it commits after, and
/// its retry reads the record as absent; a write without an expiry makes a record permanent.
pub async fn a_transaction_that_read_before_expiry_conflicts(store: &Store) {
    let written = Instant::now();
    store
        .store_with("locks", "table-7", &"alice", PutOptions::new().ttl(TTL))
        .await
        .unwrap();
    let attempts = AtomicUsize::new(0);
    let holder: Option<String> = store
        .transact(async |tx| {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst);
            let holder: Option<String> = tx.get("locks", "table-7").await?;
            if attempt == 0 {
                assert_eq!(holder.as_deref(), Some("alice"));
                sleep_past(written + TTL).await;
            }
            tx.put("audit", "table-7", &holder)?;
            Ok(holder)
        })
        .await
        .unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(holder, None);
    assert_eq!(
        store
            .retrieve::<Option<String>>("audit", "table-7")
            .await
            .unwrap(),
        Some(None)
    );

    // Refreshing a lease moves its expiry; a plain write removes it.
    let lease = Instant::now();
    store
        .store_with("locks", "table-8", &"bob", PutOptions::new().ttl(TTL))
        .await
        .unwrap();
    store.store("locks", "table-8", &"bob").await.unwrap();
    sleep_past(lease + TTL).await;
    assert_eq!(
        store.retrieve::<String>("locks", "table-8").await.unwrap(),
        Some("bob".to_owned())
    );
    assert_eq!(store.sweep_expired().await.unwrap(), 0);
}
