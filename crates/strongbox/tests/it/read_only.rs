//! A store opened with `Config::read_only`: reads work, every write is `Error::ReadOnly`, and
//! the file is not changed.

use strongbox::{Config, Error, ListOptions, Store};

use crate::common::Harness;

/// The database file's bytes (the WAL is checkpointed into it at close).
fn contents(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_reads_and_refuses_every_write() {
    let harness = Harness::sqlite().await;
    for i in 0..20 {
        harness
            .store
            .store("players", &format!("p{i:02}"), &i)
            .await
            .unwrap();
    }
    let path = harness.path();
    harness.store.close().await.unwrap();
    let before = contents(&path);

    let mut config = Config::new(&path);
    config.read_only = true;
    let store = Store::open(config).await.unwrap();
    assert_eq!(
        store.retrieve::<i32>("players", "p07").await.unwrap(),
        Some(7)
    );
    assert_eq!(
        store
            .list("players", ListOptions::all())
            .await
            .unwrap()
            .len(),
        20
    );
    assert_eq!(store.stats().await.unwrap().storage.records, 20);
    assert!(store.verify().await.unwrap().is_clean());

    let refused = [
        store.store("players", "p99", &99).await.map(|_| ()),
        store.delete("players", "p01").await.map(|_| ()),
        {
            let mut tx = store.transaction();
            tx.store("players", "p98", &98).unwrap();
            tx.commit().await.map(|_| ())
        },
    ];
    let maintenance = store.maintenance().await;
    assert!(
        matches!(maintenance, Err(Error::ReadOnly { .. })),
        "{maintenance:?}"
    );
    for result in refused {
        assert!(matches!(result, Err(Error::ReadOnly { .. })), "{result:?}");
    }
    assert_eq!(
        store.retrieve::<i32>("players", "p01").await.unwrap(),
        Some(1)
    );
    store.close().await.unwrap();
    assert_eq!(
        contents(&path),
        before,
        "a read-only store changed its file"
    );
}

#[tokio::test]
async fn read_only_never_creates_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let mut config = Config::new(&path);
    config.read_only = true;
    let error = Store::open(config).await.unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(!path.exists());
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_read_only_store_reads_and_refuses_writes() {
    let Some(scratch) = crate::common::ScratchDatabase::create().await else {
        return;
    };
    // A database without the schema cannot be opened read-only: creating it would write.
    let error = Store::open(Config::postgres(scratch.url()).with_read_only(true))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ReadOnly { .. }), "{error:?}");
    let writer = Store::open(Config::postgres(scratch.url())).await.unwrap();
    writer.store("players", "alice", &1).await.unwrap();
    let reader = Store::open(Config::postgres(scratch.url()).with_read_only(true))
        .await
        .unwrap();
    assert_eq!(
        reader.retrieve::<i32>("players", "alice").await.unwrap(),
        Some(1)
    );
    let refused = reader.store("players", "bob", &2).await;
    assert!(
        matches!(refused, Err(Error::ReadOnly { .. })),
        "{refused:?}"
    );
    assert!(matches!(
        reader.maintenance().await,
        Err(Error::ReadOnly { .. })
    ));
    assert!(!writer.exists("players", "bob").await.unwrap());
    reader.close().await.unwrap();
    writer.close().await.unwrap();
}
