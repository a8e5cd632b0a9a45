//! What stays on disk: reopening, permissions, settings changes, schema versions.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use strongbox::codec::{Algorithm, Compression, Level};
use strongbox::{Config, Error, Store};

use crate::common::Harness;

#[tokio::test]
async fn data_and_read_counts_survive_reopening() {
    let mut harness = Harness::sqlite().await;
    harness.store.store("players", "alice", &42).await.unwrap();
    for _ in 0..3 {
        harness
            .store
            .retrieve::<i32>("players", "alice")
            .await
            .unwrap();
    }
    harness.reopen().await;
    let record = harness
        .store
        .retrieve_record::<i32>("players", "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.value, 42);
    assert_eq!(record.meta.access_count, 3);
    assert!(record.meta.last_accessed_ms >= record.meta.created_at_ms);
    harness.finish().await;
}

#[tokio::test]
async fn database_files_are_owner_only() {
    let harness = Harness::sqlite().await;
    harness.store.store("k", "k", &1).await.unwrap();
    let dir = harness.dir.path().to_owned();
    for name in ["test.db", "test.db-wal", "test.db-shm"] {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    harness.finish().await;
}

#[tokio::test]
async fn changing_compression_never_makes_old_data_unreadable() {
    let mut harness = Harness::sqlite_with(|config| {
        config.compression = Compression {
            algorithm: Algorithm::Gzip,
            level: Level::Maximum,
        };
    })
    .await;
    let text = "seven out, line away ".repeat(50);
    harness.store.store("chat", "gzip", &text).await.unwrap();
    for algorithm in [Algorithm::Zstd, Algorithm::None] {
        harness.store.close().await.unwrap();
        let mut config = harness.store.config().clone();
        config.compression = Compression {
            algorithm,
            level: Level::Fast,
        };
        harness.store = Store::open(config).await.unwrap();
        let key = format!("{algorithm:?}");
        harness
            .store
            .store("chat", &key, &format!("{text}{key}"))
            .await
            .unwrap();
    }
    for key in ["gzip", "Zstd", "None"] {
        let value: String = harness.store.retrieve("chat", key).await.unwrap().unwrap();
        assert!(value.starts_with(&text), "{key}");
    }
    harness.finish().await;
}

#[tokio::test]
async fn a_database_of_a_newer_schema_is_refused() {
    let harness = Harness::sqlite().await;
    harness.store.close().await.unwrap();
    let conn = rusqlite::Connection::open(harness.path()).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = Store::open(Config::new(harness.path())).await.unwrap_err();
    assert!(
        matches!(error, Error::InvalidConfig(ref message) if message.contains("99")),
        "{error}"
    );
}

#[tokio::test]
async fn a_closed_store_refuses_calls() {
    let harness = Harness::sqlite().await;
    let clone = harness.store.clone();
    // Written through to the cache: the close must not leave it answering.
    harness.store.store("k", "cached", &1).await.unwrap();
    harness.store.close().await.unwrap();
    assert!(matches!(
        clone.retrieve::<i32>("k", "cached").await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        clone.store("k", "k", &1).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        clone.retrieve::<i32>("k", "k").await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn invalid_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("x.db"));
    config.read_connections = 0;
    assert!(matches!(
        Store::open(config).await,
        Err(Error::InvalidConfig(_))
    ));
    assert!(!dir.path().join("x.db").exists());
}

/// Regression: a huge `cache_ttl_secs` made the cache panic at open, a `busy_timeout_ms` above
/// `i32::MAX` overflowed, and an interval near `u64::MAX` killed its background task silently.
#[tokio::test]
async fn settings_at_their_maxima_open_and_run_and_one_past_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("max.db"));
    config.busy_timeout_ms = i32::MAX as u64;
    config.cache_ttl_secs = 1_000 * 365 * 24 * 3_600;
    config.stats_interval_secs = 365 * 24 * 3_600;
    config.maintenance_interval_secs = 365 * 24 * 3_600;
    config.cache_eviction_interval_secs = 365 * 24 * 3_600;
    config.expiry_sweep_interval_secs = 365 * 24 * 3_600;
    config.backup_interval_secs = 365 * 24 * 3_600;
    config.max_batch_requests = 65_536;
    config.max_value_bytes = 1 << 30;
    config.vacuum_slack_percent = 100;
    config.cache_capacity_bytes = u64::MAX;
    config.dictionary_min_values = u64::MAX;
    let store = Store::open(config).await.unwrap();
    store.store("k", "x", &1.5).await.unwrap();
    assert_eq!(store.retrieve::<f64>("k", "x").await.unwrap(), Some(1.5));
    tokio::task::yield_now().await;
    assert_eq!(store.running_tasks(), 4, "every background task is alive");
    store.close().await.unwrap();

    let refused = Config::new(dir.path().join("refused.db"));
    let past = [
        (
            "busy_timeout_ms",
            refused
                .clone()
                .with_busy_timeout(Duration::from_millis(i32::MAX as u64 + 1)),
        ),
        (
            "cache_ttl_secs",
            refused.clone().with_cache_ttl(Duration::MAX),
        ),
        (
            "stats_interval_secs",
            refused
                .clone()
                .with_stats_interval(Duration::from_secs(u64::MAX)),
        ),
        (
            "maintenance_interval_secs",
            refused
                .clone()
                .with_maintenance_interval(Duration::from_secs(u64::MAX - 1)),
        ),
        (
            "cache_eviction_interval_secs",
            refused
                .clone()
                .with_cache_eviction_interval(Duration::from_secs(365 * 24 * 3_600 + 1)),
        ),
        (
            "expiry_sweep_interval_secs",
            refused
                .clone()
                .with_expiry_sweep_interval(Duration::from_secs(365 * 24 * 3_600 + 1)),
        ),
        (
            "read_connections",
            refused.clone().with_read_connections(usize::MAX),
        ),
    ];
    for (field, config) in past {
        match Store::open(config).await {
            Err(Error::InvalidConfig(message)) => {
                assert!(message.starts_with(field), "{field}: {message}")
            }
            other => panic!("{field}: {:?}", other.map(|_| "opened")),
        }
    }
    assert!(!dir.path().join("refused.db").exists());
}

/// A database written by schema version 1 (blobs referenced by hash, with `records_by_blob`),
/// as the first release wrote it, byte for byte in its SQL.
const SCHEMA_V1: &str = "
CREATE TABLE blobs (
    id BLOB NOT NULL UNIQUE CHECK (length(id) = 32),
    data BLOB NOT NULL,
    raw_size INTEGER NOT NULL,
    refcount INTEGER NOT NULL CHECK (refcount > 0)
);
CREATE TABLE records (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    blob_id BLOB NOT NULL,
    format INTEGER NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    size INTEGER NOT NULL,
    access_count INTEGER NOT NULL DEFAULT 0,
    last_accessed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (collection, key)
) WITHOUT ROWID;
CREATE INDEX records_by_blob ON records (blob_id);
PRAGMA user_version = 1;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_migrated_with_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    let shared = serde_json::to_vec(&serde_json::json!({"chips": 1000})).unwrap();
    let alone = serde_json::to_vec(&serde_json::json!("the house always wins".repeat(20))).unwrap();
    for (raw, refcount) in [(&shared, 2), (&alone, 1)] {
        let blob = strongbox::blob::EncodedBlob::encode(raw, Compression::default(), None);
        conn.execute(
            "INSERT INTO blobs (id, data, raw_size, refcount) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![blob.id.as_bytes(), blob.stored, raw.len() as i64, refcount],
        )
        .unwrap();
    }
    for (key, raw, version) in [
        ("alice", &shared, 3),
        ("bob", &shared, 1),
        ("carol", &alone, 7),
    ] {
        conn.execute(
            "INSERT INTO records (collection, key, blob_id, format, version, created_at, updated_at, size)
             VALUES ('players', ?1, ?2, 1, ?3, 1000, 2000, ?4)",
            rusqlite::params![key, strongbox::blob::BlobId::of(raw).as_bytes(), version, raw.len() as i64],
        )
        .unwrap();
    }
    drop(conn);

    let store = Store::open(Config::new(&path)).await.unwrap();
    // Version 5: the change feed starts empty, and records written from now on are in it.
    assert!(store.changes(0, 10).await.unwrap().is_empty());
    let alice = store
        .retrieve_record::<serde_json::Value>("players", "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.value, serde_json::json!({"chips": 1000}));
    assert_eq!(alice.meta.version.get(), 3);
    assert_eq!(alice.meta.created_at_ms, 1000);
    let carol: Option<serde_json::Value> = store.retrieve("players", "carol").await.unwrap();
    assert_eq!(
        carol,
        Some(serde_json::json!("the house always wins".repeat(20)))
    );
    // Reference counting carries on from the migrated counts.
    store.delete("players", "bob").await.unwrap();
    store.store("players", "alice", &1).await.unwrap();
    let stats = store.storage_stats().await.unwrap();
    assert_eq!((stats.records, stats.blobs), (2, 2));
    // A migrated blob is found by its id: the same value again is deduplicated.
    store
        .store("players", "dave", &"the house always wins".repeat(20))
        .await
        .unwrap();
    let stats = store.storage_stats().await.unwrap();
    assert_eq!((stats.records, stats.blobs), (3, 2));
    assert!(store.verify().await.unwrap().is_clean());
    store.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 7);
    let changes: i64 = conn
        .query_row("SELECT count(*) FROM changes", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        changes, 3,
        "the delete and the two puts after the migration"
    );
    // Version 3: the blob ids are indexed by their first 8 bytes only.
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'blobs'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["blobs_by_id"]);
}

/// Rewrites a store's change feed as schema version 6 kept it (each value named by its whole
/// id), with `sqlite_sequence` at `counter`.
fn feed_as_in_version_6(path: &std::path::Path, counter: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE changes_v6 (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             collection TEXT NOT NULL,
             key TEXT NOT NULL,
             kind INTEGER NOT NULL,
             version INTEGER NOT NULL,
             at INTEGER NOT NULL,
             blob_id BLOB
         );
         INSERT INTO changes_v6
             SELECT c.seq, c.collection, c.key, c.kind, c.version, c.at, b.id
             FROM changes c LEFT JOIN blobs b ON b.ref = c.blob;
         DROP TABLE changes;
         ALTER TABLE changes_v6 RENAME TO changes;
         UPDATE sqlite_sequence SET seq = {counter} WHERE name = 'changes';
         PRAGMA user_version = 6;"
    ))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_6_feed_is_migrated_with_every_change_its_value_and_its_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6.db");
    let store = Store::open(Config::new(&path)).await.unwrap();
    store.store("players", "alice", &"first").await.unwrap();
    store.store("players", "alice", &"second").await.unwrap();
    store.store("players", "bob", &"first").await.unwrap();
    store.delete("players", "bob").await.unwrap();
    let before = store.changes(0, 10).await.unwrap();
    store.close().await.unwrap();
    // As if changes 5 to 9 had been handed out and trimmed (by another process's writes).
    feed_as_in_version_6(&path, 9);

    let store = Store::open(Config::new(&path)).await.unwrap();
    let after = store.changes(0, 10).await.unwrap();
    assert_eq!(after, before);
    // The overwritten value is still the first change's.
    let first: Option<String> = store.change_value(&after[0]).await.unwrap();
    assert_eq!(first.as_deref(), Some("first"));
    // Numbering carries on from the counter, not from the rows left.
    store.store("players", "carol", &"first").await.unwrap();
    let newest = store.changes(4, 10).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].seq, 10);
    // The orphan sweep keeps what the changes name, and the feed's values stay readable.
    store.maintenance().await.unwrap();
    let first: Option<String> = store.change_value(&after[0]).await.unwrap();
    assert_eq!(first.as_deref(), Some("first"));
    assert!(store.verify().await.unwrap().is_clean());
    store.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 7);
}
