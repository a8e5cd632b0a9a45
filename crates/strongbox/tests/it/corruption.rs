//! Damaged data is found and named, never returned and never a panic.

use rusqlite::Connection;
use strongbox::{Config, Error, Store};

use crate::common::Harness;

/// Runs SQL on the closed store's file, as a disk error or a careless tool would.
fn tamper(harness: &Harness, sql: &str) {
    let conn = Connection::open(harness.path()).unwrap();
    conn.execute_batch(sql).unwrap();
}

async fn seeded() -> Harness {
    let harness = Harness::sqlite().await;
    harness
        .store
        .store("players", "alice", &"alice's profile ".repeat(40))
        .await
        .unwrap();
    harness
        .store
        .store("players", "bob", &"bob's profile")
        .await
        .unwrap();
    harness
        .store
        .store("players", "carol", &"bob's profile")
        .await
        .unwrap();
    harness.store.close().await.unwrap();
    harness
}

#[tokio::test]
async fn a_flipped_byte_in_a_blob_fails_retrieve_and_verify_with_the_key() {
    let mut harness = seeded().await;
    // Flip one bit in the middle of alice's (compressed) blob.
    let conn = Connection::open(harness.path()).unwrap();
    let (id, mut data): (Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT id, data FROM blobs WHERE length(data) > 20",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    data[10] ^= 1;
    conn.execute("UPDATE blobs SET data = ?1 WHERE id = ?2", (data, id))
        .unwrap();
    drop(conn);
    harness.reopen().await;
    let error = harness
        .store
        .retrieve::<String>("players", "alice")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { collection: Some(c), key: Some(k), .. } if c == "players" && k == "alice"),
        "{error}"
    );
    // What is intact still reads.
    assert_eq!(
        harness
            .store
            .retrieve::<String>("players", "bob")
            .await
            .unwrap()
            .as_deref(),
        Some("bob's profile")
    );
    let report = harness.store.verify().await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].key.as_deref(), Some("alice"));
    assert_eq!(report.blobs_checked, 2);
}

#[tokio::test]
async fn a_flipped_byte_in_a_raw_blob_is_a_hash_mismatch_for_every_sharer() {
    let mut harness = seeded().await;
    tamper(
        &harness,
        "UPDATE blobs SET data = CAST(replace(CAST(data AS TEXT), 'bob', 'rob') AS BLOB)",
    );
    harness.reopen().await;
    for key in ["bob", "carol"] {
        let error = harness
            .store
            .retrieve::<String>("players", key)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    }
    let report = harness.store.verify().await.unwrap();
    let keys: Vec<_> = report
        .problems
        .iter()
        .filter_map(|p| p.key.as_deref())
        .collect();
    assert_eq!(keys, ["bob", "carol"]);
    assert!(
        report.problems[0].detail.contains("hash mismatch"),
        "{}",
        report.problems[0].detail
    );
}

#[tokio::test]
async fn a_missing_blob_and_a_wrong_count_are_reported() {
    let mut harness = seeded().await;
    tamper(
        &harness,
        "DELETE FROM blobs WHERE length(data) > 20; UPDATE blob_refs SET refcount = 5;",
    );
    harness.reopen().await;
    let error = harness
        .store
        .retrieve::<String>("players", "alice")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    let report = harness.store.verify().await.unwrap();
    let details: Vec<String> = report
        .problems
        .iter()
        .map(|p| format!("{:?}/{:?}: {}", p.collection, p.key, p.detail))
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("\"alice\"") && d.contains("missing blob")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("\"bob\"") && d.contains("reference count 5 but 2")),
        "{details:?}"
    );
}

#[tokio::test]
async fn a_truncated_or_foreign_file_is_an_error_not_a_panic() {
    let harness = seeded().await;
    let path = harness.path();
    let length = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(length / 3).unwrap();
    drop(file);
    // Either the open or the reads report the damage; nothing panics and no wrong value appears.
    match Store::open(Config::new(&path)).await {
        Err(error) => assert!(
            matches!(error, Error::Backend { .. } | Error::Corrupt { .. }),
            "{error}"
        ),
        Ok(store) => {
            for key in ["alice", "bob", "carol"] {
                if let Ok(Some(value)) = store.retrieve::<String>("players", key).await {
                    assert!(value.contains("profile"));
                }
            }
            let _ = store.verify().await;
            store.close().await.unwrap();
        }
    }

    let foreign = harness.dir.path().join("notes.txt");
    std::fs::write(
        &foreign,
        "this is not a database, just some text ".repeat(200),
    )
    .unwrap();
    let error = Store::open(Config::new(&foreign)).await.unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("notes.txt"), "{error}");
}

/// Copies a live store's files, as a crash would leave them (the WAL not yet checkpointed).
fn crash_copy(harness: &Harness, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let copy = dir.join(name);
    std::fs::copy(harness.path(), &copy).unwrap();
    let mut wal = harness.path().into_os_string();
    wal.push("-wal");
    let mut copy_wal = copy.clone().into_os_string();
    copy_wal.push("-wal");
    std::fs::copy(&wal, &copy_wal).unwrap();
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_truncated_wal_loses_its_tail_but_never_returns_a_wrong_value() {
    let harness = Harness::sqlite().await;
    let value = |i: u32| format!("record {i} ").repeat(20);
    for i in 0..60u32 {
        harness
            .store
            .store("wal", &format!("k{i:02}"), &value(i))
            .await
            .unwrap();
    }
    let copies = tempfile::tempdir().unwrap();
    let flipped = crash_copy(&harness, copies.path(), "flipped.db");
    let truncated = crash_copy(&harness, copies.path(), "truncated.db");
    harness.finish().await;

    let wal_of = |path: &std::path::Path| {
        let mut wal = path.to_owned().into_os_string();
        wal.push("-wal");
        std::path::PathBuf::from(wal)
    };
    let mut bytes = std::fs::read(wal_of(&flipped)).unwrap();
    assert!(bytes.len() > 8192, "the crash left a WAL");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(wal_of(&flipped), bytes).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(wal_of(&truncated))
        .unwrap();
    let length = file.metadata().unwrap().len();
    file.set_len(length / 2).unwrap();
    drop(file);

    for copy in [flipped, truncated] {
        let store = Store::open(Config::new(&copy)).await.unwrap();
        let mut present = 0;
        for i in 0..60u32 {
            // SQLite stops replaying the WAL at the first bad frame: later commits are gone,
            // whole, and every value that is there is exactly what was written.
            if let Some(found) = store
                .retrieve::<String>("wal", &format!("k{i:02}"))
                .await
                .unwrap()
            {
                assert_eq!(found, value(i));
                present += 1;
            }
        }
        assert!(present < 60, "the damaged tail was dropped");
        let report = store.verify().await.unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        store.close().await.unwrap();
    }
}

/// A damaged value that only the change feed still names is `Error::Corrupt` naming the
/// change's collection and key from `Store::change_value`, never another value, and `verify`
/// reports it.
#[tokio::test]
async fn a_damaged_value_kept_for_the_feed_is_an_error_from_change_value() {
    let mut harness = Harness::sqlite().await;
    let old = "the first profile of alice ".repeat(40);
    harness.store.store("players", "alice", &old).await.unwrap();
    harness
        .store
        .store("players", "alice", &"the second")
        .await
        .unwrap();
    let first = harness.store.changes(0, 1).await.unwrap().remove(0);
    assert_eq!(
        harness.store.change_value::<String>(&first).await.unwrap(),
        Some(old)
    );
    harness.store.close().await.unwrap();
    let conn = Connection::open(harness.path()).unwrap();
    let (id, mut data): (Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT id, data FROM blobs WHERE ref NOT IN (SELECT blob FROM records)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 1;
    conn.execute("UPDATE blobs SET data = ?1 WHERE id = ?2", (data, id))
        .unwrap();
    drop(conn);
    harness.reopen().await;
    let error = harness
        .store
        .change_value::<String>(&first)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { collection: Some(c), key: Some(k), .. } if c == "players" && k == "alice"),
        "{error}"
    );
    assert!(!harness.store.verify().await.unwrap().is_clean());
    harness.store.close().await.unwrap();
}
