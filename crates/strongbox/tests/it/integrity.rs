//! Integrity of every link: single faults in the file, as an adversary would place them. A read
//! returns exactly what was written or a typed error, never another value; `verify` reports
//! every damaged record; maintenance never deletes what a damaged record may still need.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use rusqlite::Connection;
use strongbox::{Config, Error, Expect, Scan, Store};

/// A small store of distinct values in two collections, closed (so the WAL is checkpointed
/// into the file), with what it holds.
async fn small_store(dir: &Path, records: usize) -> (PathBuf, BTreeMap<(String, String), String>) {
    let path = dir.join("original.db");
    let store = Store::open(Config::new(&path)).await.unwrap();
    let mut written = BTreeMap::new();
    for index in 0..records {
        let collection = if index % 3 == 0 { "tables" } else { "players" };
        let key = format!("key-{index:04}");
        let value = format!(
            "value number {index} of {records}, {}",
            "x".repeat(index % 7)
        );
        store.store(collection, &key, &value).await.unwrap();
        written.insert((collection.to_owned(), key), value);
    }
    store.close().await.unwrap();
    (path, written)
}

/// What one damaged copy of a store did.
#[derive(Debug, Default)]
struct Outcome {
    /// A read returned an error, or nothing, where a value was written.
    detected_on_read: bool,
    /// `verify` reported a problem (or the store refused to open).
    detected_by_verify: bool,
    /// Reads that returned a value other than the one written: must stay 0.
    wrong_values: Vec<String>,
}

/// Opens a damaged copy and reads every written key, every listed key and every scanned
/// entry.
async fn examine(path: &Path, written: &BTreeMap<(String, String), String>) -> Outcome {
    let mut outcome = Outcome::default();
    let mut config = Config::new(path);
    config.create_if_missing = false;
    config.cache_capacity_bytes = 0;
    let store = match Store::open(config).await {
        Ok(store) => store,
        // A store that refuses to open returns no wrong value: that is detection.
        Err(_) => {
            outcome.detected_on_read = true;
            outcome.detected_by_verify = true;
            return outcome;
        }
    };
    for ((collection, key), value) in written {
        match store.retrieve::<String>(collection, key).await {
            Ok(Some(read)) if &read == value => {}
            Ok(Some(read)) => outcome
                .wrong_values
                .push(format!("{collection}/{key}: {read:?} instead of {value:?}")),
            Ok(None) | Err(_) => outcome.detected_on_read = true,
        }
    }
    // A renamed record must not read as a value under its new name either.
    for collection in ["players", "tables"] {
        let Ok(keys) = store.list(collection, Default::default()).await else {
            outcome.detected_on_read = true;
            continue;
        };
        for key in keys {
            let original = written.get(&(collection.to_owned(), key.clone()));
            match (store.retrieve::<String>(collection, &key).await, original) {
                (Ok(Some(read)), Some(value)) if &read == value => {}
                (Ok(Some(read)), _) => outcome
                    .wrong_values
                    .push(format!("listed {collection}/{key}: {read:?}")),
                _ => outcome.detected_on_read = true,
            }
        }
    }
    // A scan checks a page of records on one task and deserializes on another.
    for collection in ["players", "tables"] {
        let Ok(handle) = store.collection::<String>(collection) else {
            outcome.detected_on_read = true;
            continue;
        };
        let mut entries = handle.scan(Scan::all());
        while let Some(entry) = entries.next().await {
            match entry {
                Ok(entry) => match written.get(&(collection.to_owned(), entry.key.clone())) {
                    Some(value) if *value == entry.value => {}
                    _ => outcome.wrong_values.push(format!(
                        "scanned {collection}/{}: {:?}",
                        entry.key, entry.value
                    )),
                },
                Err(_) => outcome.detected_on_read = true,
            }
        }
    }
    match store.verify().await {
        Ok(report) => outcome.detected_by_verify = !report.is_clean(),
        Err(_) => outcome.detected_by_verify = true,
    }
    let _ = store.close().await;
    outcome
}

/// Copies `original` to `copy` with the bits of `mask` flipped at byte `offset`.
fn flipped_copy(original: &Path, copy: &Path, offset: usize, mask: u8) {
    let mut bytes = std::fs::read(original).unwrap();
    bytes[offset] ^= mask;
    for suffix in ["-wal", "-shm"] {
        let mut companion = copy.as_os_str().to_owned();
        companion.push(suffix);
        let _ = std::fs::remove_file(companion);
    }
    std::fs::write(copy, bytes).unwrap();
}

/// Where a record's row sits in the file: the collection name followed by the key, as SQLite
/// lays out a row's text columns one after the other.
fn find(bytes: &[u8], needle: &[u8]) -> Vec<usize> {
    bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle)
        .map(|(offset, _)| offset)
        .collect()
}

/// Where the `records` row of `needle` (collection name then key) sits in the file at `path`:
/// the one occurrence on a page of the `records` table (the change feed holds the same names).
fn record_row(path: &Path, bytes: &[u8], needle: &[u8]) -> usize {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .unwrap();
    let pages: Vec<i64> = conn
        .prepare("SELECT pageno FROM dbstat WHERE name = 'records'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let rows: Vec<usize> = find(bytes, needle)
        .into_iter()
        .filter(|offset| pages.contains(&(*offset as i64 / page_size + 1)))
        .collect();
    assert_eq!(rows.len(), 1, "the row is in the records table once");
    rows[0]
}

#[tokio::test]
async fn every_flipped_byte_of_a_record_row_is_an_error_or_harmless_never_another_value() {
    let dir = tempfile::tempdir().unwrap();
    let (original, written) = small_store(dir.path(), 12).await;
    let bytes = std::fs::read(&original).unwrap();
    let start = record_row(&original, &bytes, b"playerskey-0004");
    // The row's header (its column types) before the names, and its numbers after them:
    // blob reference, format, version, times, size, read counts and seal.
    let region = start.saturating_sub(12)..(start + 15 + 48).min(bytes.len());
    let copy = dir.path().join("damaged.db");
    let (mut flips, mut detected) = (0, 0);
    for offset in region {
        for mask in [0x01, 0x10, 0x80] {
            flipped_copy(&original, &copy, offset, mask);
            let outcome = examine(&copy, &written).await;
            flips += 1;
            assert!(
                outcome.wrong_values.is_empty(),
                "byte {offset} ^ {mask:#x}: {:?}",
                outcome.wrong_values
            );
            if outcome.detected_on_read {
                assert!(
                    outcome.detected_by_verify,
                    "byte {offset} ^ {mask:#x}: a read failed but verify saw nothing"
                );
            }
            detected += usize::from(outcome.detected_by_verify);
        }
    }
    println!("targeted flips of a record row: {flips} flips, {detected} detected, 0 wrong values");
    // Most of the row is covered by its seal; only the read statistics are not.
    assert!(
        detected * 3 >= flips * 2,
        "{detected} of {flips} flips detected"
    );
}

#[tokio::test]
async fn a_flipped_byte_in_a_key_is_found_by_verify_and_the_renamed_key_reads_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (original, written) = small_store(dir.path(), 12).await;
    let bytes = std::fs::read(&original).unwrap();
    let offset = record_row(&original, &bytes, b"playerskey-0004") + b"playerskey-000".len();
    let copy = dir.path().join("damaged.db");
    // "key-0004" becomes "key-0005", a key that exists nowhere else in that collection's range.
    flipped_copy(&original, &copy, offset, 0x01);
    let store = Store::open(Config::new(&copy)).await.unwrap();
    assert_eq!(
        store
            .retrieve::<String>("players", "key-0004")
            .await
            .unwrap(),
        None
    );
    let error = store
        .retrieve::<String>("players", "key-0005")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    let report = store.verify().await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.key.as_deref() == Some("key-0005")),
        "{:?}",
        report.problems
    );
    assert_eq!(report.records_checked, written.len() as u64);
    store.close().await.unwrap();
}

/// Points `players/key-0001` at the blob of `players/key-0002`, as one flipped bit in the
/// record's reference does, without touching its seal.
fn redirect_a_reference(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "UPDATE records SET blob = (SELECT blob FROM records WHERE key = 'key-0002')
         WHERE key = 'key-0001'",
    )
    .unwrap();
}

fn blob_count(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM blobs", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_damaged_reference_reads_as_corrupt_and_maintenance_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = small_store(dir.path(), 12).await;
    redirect_a_reference(&path);
    let blobs = blob_count(&path);
    let store = Store::open(Config::new(&path)).await.unwrap();
    let error = store
        .retrieve::<String>("players", "key-0001")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { key: Some(key), .. } if key == "key-0001"),
        "{error}"
    );
    // A scan of the collection stops at the damaged record, its first: the error is its only
    // entry.
    let players = store.collection::<String>("players").unwrap();
    let scanned: Vec<_> = players.scan(Scan::all()).collect().await;
    assert!(
        matches!(&scanned[..], [Err(Error::Corrupt { key: Some(key), .. })] if key == "key-0001"),
        "{scanned:?}"
    );
    let report = store.maintenance().await.unwrap();
    let sweep = report
        .steps
        .iter()
        .find(|step| step.name == "collect_orphans")
        .unwrap();
    assert!(!sweep.is_ok, "{sweep:?}");
    assert!(sweep.outcome.contains("nothing was deleted"), "{sweep:?}");
    let verify = store.verify().await.unwrap();
    assert!(
        verify
            .problems
            .iter()
            .any(|problem| problem.key.as_deref() == Some("key-0001")),
        "{:?}",
        verify.problems
    );
    // A conditional write cannot trust the damaged version; an unconditional one repairs.
    let conditional = store
        .store_if(
            "players",
            "key-0001",
            &"new",
            Expect::Version(strongbox::Version::FIRST),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(conditional, Error::Corrupt { .. }),
        "{conditional}"
    );
    store.close().await.unwrap();
    // The value the damaged record lost is still in the file, for a repair to find.
    assert_eq!(blob_count(&path), blobs);
    let store = Store::open(Config::new(&path)).await.unwrap();
    let value = &written[&("players".to_owned(), "key-0001".to_owned())];
    store.store("players", "key-0001", value).await.unwrap();
    assert_eq!(
        store
            .retrieve::<String>("players", "key-0001")
            .await
            .unwrap()
            .as_ref(),
        Some(value)
    );
    store.close().await.unwrap();
}

/// A change of the feed names its value by the blob's `ref` and the first 8 bytes of its id: a
/// `ref` damaged into another value's, or a damaged tag, reads as corrupt, never as the other
/// value.
#[tokio::test]
async fn a_change_whose_value_reference_is_damaged_reads_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = small_store(dir.path(), 12).await;
    let damages = [
        "UPDATE changes SET blob = (SELECT blob FROM changes WHERE key = 'key-0002')
         WHERE key = 'key-0001'",
        "UPDATE changes SET blob_tag = zeroblob(8) WHERE key = 'key-0001'",
        "UPDATE changes SET blob = (SELECT max(ref) + 1 FROM blobs) WHERE key = 'key-0001'",
    ];
    for (index, damage) in damages.into_iter().enumerate() {
        let copy = dir.path().join(format!("damaged-{index}.db"));
        std::fs::copy(&path, &copy).unwrap();
        Connection::open(&copy)
            .unwrap()
            .execute_batch(damage)
            .unwrap();
        let store = Store::open(Config::new(&copy)).await.unwrap();
        let error = store.changes(0, 100).await.unwrap_err();
        assert!(
            matches!(&error, Error::Corrupt { key: Some(key), .. } if key == "key-0001"),
            "{damage}: {error}"
        );
        // The changes before the damaged one still read, each with its own value.
        let before = store.changes(0, 1).await.unwrap();
        let first: Option<String> = store.change_value(&before[0]).await.unwrap();
        assert_eq!(first.as_deref(), Some("value number 0 of 12, "));
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn an_empty_file_is_not_taken_for_a_new_store_and_is_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.db");
    std::fs::write(&path, b"").unwrap();
    let error = Store::open(Config::new(&path)).await.unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { detail, .. } if detail.contains("empty")),
        "{error}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    // Another program's database, and a file that is no database at all.
    let foreign = dir.path().join("foreign.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    let error = Store::open(Config::new(&foreign)).await.unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { detail, .. } if detail.contains("another program")),
        "{error}"
    );
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database, but long enough to hold a header. ".repeat(4),
    )
    .unwrap();
    let error = Store::open(Config::new(&text)).await.unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");

    // Nothing at the path: created only when asked.
    let missing = dir.path().join("missing.db");
    let mut config = Config::new(&missing);
    config.create_if_missing = false;
    let error = Store::open(config).await.unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error}");
    assert!(!missing.exists());
    let store = Store::open(Config::new(&missing)).await.unwrap();
    store.close().await.unwrap();
    // A new store leaves no temporary file behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().contains(".new-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn maintenance_reclaims_space_while_another_store_writes_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    // The feed keeps few changes, so that the deleted values are the sweep's to remove.
    let mut config = Config::new(&path);
    config.changes_retention_count = 1;
    let store = Store::open(config).await.unwrap();
    for index in 0..200 {
        store
            .store("old", &format!("k{index}"), &format!("old value {index}"))
            .await
            .unwrap();
    }
    for index in 0..200 {
        store.delete("old", &format!("k{index}")).await.unwrap();
    }
    // Another store (its own connections, as another process has) writes all along.
    let other = Store::open(Config::new(&path)).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (other, stop) = (other.clone(), stop.clone());
        tokio::spawn(async move {
            let mut written = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                other
                    .store("live", &format!("k{}", written % 50), &written)
                    .await
                    .unwrap();
                written += 1;
            }
            written
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let report = store.maintenance().await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // The 200 deleted here, and whatever the other store's overwrites released meanwhile.
    assert!(report.released_blobs_removed >= 200, "{report:?}");
    other.close().await.unwrap();
    store.close().await.unwrap();
}

/// A tiny deterministic generator (xorshift64*), so that a failing flip can be replayed.
struct Flips(u64);

impl Flips {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[tokio::test]
async fn a_campaign_of_random_single_bit_flips_never_yields_a_wrong_value() {
    let dir = tempfile::tempdir().unwrap();
    let (original, written) = small_store(dir.path(), 40).await;
    let length = std::fs::metadata(&original).unwrap().len() as usize;
    let copy = dir.path().join("damaged.db");
    let mut random = Flips(0x5EED_1234_ABCD_0001);
    let (flips, mut on_read, mut by_verify, mut wrong) = (300, 0, 0, 0);
    for _ in 0..flips {
        let offset = (random.next() % length as u64) as usize;
        let bit = 1u8 << (random.next() % 8);
        flipped_copy(&original, &copy, offset, bit);
        let outcome = examine(&copy, &written).await;
        wrong += outcome.wrong_values.len();
        assert!(
            outcome.wrong_values.is_empty(),
            "byte {offset} ^ {bit:#x}: {:?}",
            outcome.wrong_values
        );
        if outcome.detected_on_read {
            assert!(
                outcome.detected_by_verify,
                "byte {offset} ^ {bit:#x}: a read failed but verify saw nothing"
            );
        }
        on_read += usize::from(outcome.detected_on_read);
        by_verify += usize::from(outcome.detected_by_verify);
    }
    println!(
        "bit-flip campaign: {flips} flips in a {length}-byte store, {on_read} detected on read, \
         {by_verify} detected by verify, {wrong} wrong values"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_renamed_or_redirected_record_is_corrupt_and_found_by_verify() {
    let Some(harness) = crate::common::Harness::postgres().await else {
        return;
    };
    for key in ["alice", "bob", "carol"] {
        harness
            .store
            .store("players", key, &format!("{key}'s profile"))
            .await
            .unwrap();
    }
    let url = harness.store.config().postgres_url.clone().unwrap();
    let (client, connection) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    // A changed key, and a record pointed at another record's value.
    client
        .batch_execute(
            "UPDATE strongbox_records SET key = 'alicf' WHERE key = 'alice';
             UPDATE strongbox_records SET blob_id = (SELECT blob_id FROM strongbox_records
                                                     WHERE key = 'carol')
             WHERE key = 'bob';",
        )
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    let mut config = harness.store.config().clone();
    config.cache_capacity_bytes = 0;
    let store = Store::open(config).await.unwrap();
    for key in ["alicf", "bob"] {
        let error = store.retrieve::<String>("players", key).await.unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }), "{key}: {error}");
    }
    assert_eq!(
        store
            .retrieve::<String>("players", "carol")
            .await
            .unwrap()
            .as_deref(),
        Some("carol's profile")
    );
    let report = store.verify().await.unwrap();
    for key in ["alicf", "bob"] {
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.key.as_deref() == Some(key)),
            "{key}: {:?}",
            report.problems
        );
    }
    // Bob's own value lost its record: the sweep keeps it and says why.
    let maintenance = store.maintenance().await.unwrap();
    assert!(
        maintenance
            .errors
            .iter()
            .any(|e| e.contains("nothing was deleted")),
        "{maintenance:?}"
    );
    store.close().await.unwrap();
    harness.store.close().await.unwrap();
}
