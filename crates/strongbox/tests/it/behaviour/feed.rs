//! The change feed: numbering, pages, subscriptions (catching up, live, resumed, filtered,
//! from another store on the same database) and retention.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use strongbox::{Change, ChangeFilter, ChangeKind, Error, Expect, Store};

/// The (collection, key, kind, version) of each change, for comparing with what was written.
fn shape(changes: &[Change]) -> Vec<(String, String, ChangeKind, u64)> {
    changes
        .iter()
        .map(|change| {
            (
                change.collection.clone(),
                change.key.clone(),
                change.kind,
                change.version.get(),
            )
        })
        .collect()
}

fn row(
    collection: &str,
    key: &str,
    kind: ChangeKind,
    version: u64,
) -> (String, String, ChangeKind, u64) {
    (collection.to_owned(), key.to_owned(), kind, version)
}

/// Collects `count` changes from a stream, failing the test rather than hanging.
async fn take(
    stream: &mut futures_util::stream::BoxStream<'static, strongbox::Result<Change>>,
    count: usize,
) -> Vec<Change> {
    let mut changes = Vec::with_capacity(count);
    while changes.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no change after {} of {count}", changes.len()));
        changes.push(next.expect("the stream went on").expect("a change"));
    }
    changes
}

pub async fn committed_writes_are_numbered_in_commit_order(store: &Store) {
    assert!(store.changes(0, 10).await.unwrap().is_empty());
    store.store("players", "alice", &1).await.unwrap();
    store.store("players", "alice", &2).await.unwrap();
    store.store("players", "bob", &3).await.unwrap();
    // Neither a failed condition nor a delete of a missing key is a change.
    let refused = store.store_if("players", "alice", &4, Expect::Absent).await;
    assert!(
        matches!(refused, Err(Error::Conflict { .. })),
        "{refused:?}"
    );
    assert!(!store.delete("players", "nobody").await.unwrap());
    assert!(store.delete("players", "alice").await.unwrap());
    let mut tx = store.transaction();
    tx.store("ledger", "0001", &"alice pays bob").unwrap();
    tx.store("players", "carol", &5).unwrap();
    tx.delete("players", "bob").unwrap();
    tx.commit().await.unwrap();

    let changes = store.changes(0, 100).await.unwrap();
    assert_eq!(
        shape(&changes),
        [
            row("players", "alice", ChangeKind::Put, 1),
            row("players", "alice", ChangeKind::Put, 2),
            row("players", "bob", ChangeKind::Put, 1),
            row("players", "alice", ChangeKind::Delete, 2),
            row("ledger", "0001", ChangeKind::Put, 1),
            row("players", "carol", ChangeKind::Put, 1),
            row("players", "bob", ChangeKind::Delete, 1),
        ]
    );
    assert!(changes.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    // A transaction's writes take consecutive numbers, in the order of its operations.
    let seqs: Vec<u64> = changes[4..].iter().map(|change| change.seq).collect();
    assert_eq!(seqs, [seqs[0], seqs[0] + 1, seqs[0] + 2]);
    for change in &changes {
        assert_eq!(change.blob_id.is_some(), change.kind == ChangeKind::Put);
        assert!(change.at_ms > 0);
    }
    assert_eq!(
        changes[0].blob_id,
        Some(strongbox::blob::BlobId::of(b"1")),
        "a put names the value it wrote"
    );

    // Pages: after a sequence number, at most `limit`.
    let page = store.changes(changes[1].seq, 2).await.unwrap();
    assert_eq!(page, changes[2..4]);
    let last = changes.last().unwrap().seq;
    assert!(store.changes(last, 10).await.unwrap().is_empty());
}

pub async fn a_subscriber_catches_up_then_sees_every_concurrent_write_once(store: &Store) {
    for n in 0..20 {
        store
            .store("before", &format!("k{n:02}"), &n)
            .await
            .unwrap();
    }
    let mut stream = store.subscribe(0, ChangeFilter::all());
    let caught_up = take(&mut stream, 20).await;
    assert_eq!(caught_up.len(), 20);

    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0..25 {
                    let key = format!("w{writer}-{}", n % 5);
                    let version = store.store("live", &key, &n).await.unwrap();
                    acknowledged.push((key, version.get()));
                }
                acknowledged
            })
        })
        .collect();
    let live = take(&mut stream, 200).await;
    let mut acknowledged = BTreeSet::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    let seen: Vec<(String, u64)> = live
        .iter()
        .map(|change| (change.key.clone(), change.version.get()))
        .collect();
    assert_eq!(seen.len(), 200);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), acknowledged);
    let all: Vec<Change> = caught_up.iter().chain(&live).cloned().collect();
    assert!(all.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    // Nothing was missed: the log holds exactly what the subscriber delivered.
    assert_eq!(store.changes(0, 1_000).await.unwrap(), all);

    // A consumer that saved the 100th sequence number resumes with exactly the rest.
    let saved = all[99].seq;
    let mut resumed = store.subscribe(saved, ChangeFilter::all());
    assert_eq!(take(&mut resumed, all.len() - 100).await, all[100..]);
}

pub async fn a_subscriber_hears_another_store_on_the_same_database(store: &Store) {
    let other = Store::open(store.config().clone()).await.unwrap();
    let mut stream = store.subscribe(0, ChangeFilter::all().collection("tables"));
    for n in 0..30 {
        other.store("tables", &format!("t{n}"), &n).await.unwrap();
        other.store("chairs", &format!("c{n}"), &n).await.unwrap();
    }
    let changes = take(&mut stream, 30).await;
    assert!(changes.iter().all(|change| change.collection == "tables"));
    let keys: Vec<&str> = changes.iter().map(|change| change.key.as_str()).collect();
    let expected: Vec<String> = (0..30).map(|n| format!("t{n}")).collect();
    assert_eq!(keys, expected);
    other.close().await.unwrap();
}

pub async fn trimmed_changes_are_an_error_naming_the_oldest_held(store: &Store) {
    for n in 0..10 {
        store.store("rolls", &format!("r{n}"), &n).await.unwrap();
    }
    let before = store.changes(0, 100).await.unwrap();
    let trimmer = Store::open(store.config().clone().with_changes_retention_count(4))
        .await
        .unwrap();
    assert_eq!(trimmer.trim_changes().await.unwrap(), 6);
    let report = trimmer.maintenance().await.unwrap();
    assert_eq!(report.changes_trimmed, 0);
    trimmer.close().await.unwrap();

    let oldest = before[6].seq;
    let held = store.changes(oldest - 1, 100).await.unwrap();
    assert_eq!(held, before[6..]);
    let error = store.changes(0, 100).await.unwrap_err();
    assert!(
        matches!(error, Error::ChangesTrimmed { requested: 0, oldest: o } if o == oldest),
        "{error:?}"
    );
    assert_eq!(error.kind(), strongbox::ErrorKind::ChangesTrimmed);
    // A subscriber from below the trimmed point gets the error, then nothing.
    let mut stream = store.subscribe(before[2].seq, ChangeFilter::all());
    let first = stream.next().await.unwrap();
    assert!(
        matches!(first, Err(Error::ChangesTrimmed { oldest: o, .. }) if o == oldest),
        "{first:?}"
    );
    assert!(stream.next().await.is_none());
    // From the last trimmed one, nothing is missing.
    let mut stream = store.subscribe(oldest - 1, ChangeFilter::all());
    assert_eq!(take(&mut stream, 4).await, before[6..]);
}

/// The value a change wrote, as a `String`.
async fn value(store: &Store, change: &Change) -> strongbox::Result<Option<String>> {
    store.change_value(change).await
}

/// A put's value stays readable from its change (`Store::change_value`) after the record was
/// overwritten or deleted, through the orphan sweep, with `verify` clean; once the feed no
/// longer holds the change, the sweep removes the value (unless a record still holds it).
pub async fn a_change_keeps_its_value_until_it_is_trimmed(store: &Store) {
    let (first, second, third) = (
        "the first layout ".repeat(30),
        "the second layout ".repeat(30),
        "a board soon deleted ".repeat(30),
    );
    store.store("boards", "b1", &first).await.unwrap();
    store.store("boards", "b1", &second).await.unwrap();
    store.store("boards", "b2", &third).await.unwrap();
    store.delete("boards", "b2").await.unwrap();
    let changes = store.changes(0, 100).await.unwrap();
    assert_eq!(changes.len(), 4);

    let report = store.maintenance().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.released_blobs_removed, 0, "{report:?}");
    assert_eq!(
        value(store, &changes[0]).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        value(store, &changes[1]).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        value(store, &changes[2]).await.unwrap(),
        Some(third.clone())
    );
    assert_eq!(
        value(store, &changes[3]).await.unwrap(),
        None,
        "a delete has no value"
    );
    let error = store.change_value::<u64>(&changes[0]).await.unwrap_err();
    assert!(
        matches!(&error, Error::Serialization { key, .. } if key == "b1"),
        "{error:?}"
    );
    let report = store.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let stats = store.storage_stats().await.unwrap();
    assert_eq!(
        stats.blobs, 1,
        "only the second layout is a record's: {stats:?}"
    );
    assert!(stats.released_bytes > 0, "{stats:?}");

    // Keep one change (the delete): the puts' changes go, and so do the values only they held.
    let trimmer = Store::open(store.config().clone().with_changes_retention_count(1))
        .await
        .unwrap();
    let report = trimmer.maintenance().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.changes_trimmed, 3, "{report:?}");
    assert_eq!(report.released_blobs_removed, 2, "{report:?}");
    trimmer.close().await.unwrap();
    assert_eq!(value(store, &changes[0]).await.unwrap(), None);
    assert_eq!(value(store, &changes[2]).await.unwrap(), None);
    // The record b1 still holds the second layout.
    assert_eq!(value(store, &changes[1]).await.unwrap(), Some(second));
    let stats = store.storage_stats().await.unwrap();
    assert_eq!((stats.blobs, stats.released_bytes), (1, 0), "{stats:?}");
    let report = store.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// A store with the change feed off records no change and refuses to read the feed.
pub async fn a_store_with_the_feed_off_records_no_change_and_reads_none(store: &Store) {
    store.store("players", "alice", &1).await.unwrap();
    let quiet = Store::open(store.config().clone().with_change_feed(false))
        .await
        .unwrap();
    quiet.store("players", "bob", &2).await.unwrap();
    quiet.store("players", "alice", &3).await.unwrap();
    assert!(quiet.delete("players", "bob").await.unwrap());
    let mut tx = quiet.transaction();
    tx.store("ledger", "0001", &"alice pays bob").unwrap();
    tx.commit().await.unwrap();
    assert_eq!(quiet.count("players").await.unwrap(), 1);

    // Its reads of the feed are refused, naming the setting, rather than missing its writes.
    let error = quiet.changes(0, 10).await.unwrap_err();
    assert!(
        matches!(&error, Error::InvalidConfig(message) if message.contains("change_feed")),
        "{error:?}"
    );
    let mut stream = quiet.subscribe(0, ChangeFilter::all());
    let first = stream.next().await;
    assert!(
        matches!(first, Some(Err(Error::InvalidConfig(_)))),
        "{first:?}"
    );
    assert!(stream.next().await.is_none());
    quiet.close().await.unwrap();

    // The store with the feed on, on the same database, still records its own writes only.
    store.store("players", "carol", &4).await.unwrap();
    assert_eq!(
        shape(&store.changes(0, 10).await.unwrap()),
        [
            row("players", "alice", ChangeKind::Put, 1),
            row("players", "carol", ChangeKind::Put, 1),
        ]
    );
}
