//! What stays on disk: reopening, permissions, settings changes, schema versions.

use std::os::unix::fs::PermissionsExt;

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
    harness.store.close().await.unwrap();
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
