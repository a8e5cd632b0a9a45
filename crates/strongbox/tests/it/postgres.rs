//! PostgreSQL as the scale-out backend: several `Store`s (standing for several application
//! servers) on one database, racing writes and keeping their caches coherent.

use std::time::{Duration, Instant};

use strongbox::{Config, Error, Expect, Store};
use tokio::task::JoinSet;

use crate::common::ScratchDatabase;

/// Two stores on one scratch database; `None` when PostgreSQL tests are skipped.
async fn two_servers() -> Option<(ScratchDatabase, Store, Store)> {
    let scratch = ScratchDatabase::create().await?;
    let first = Store::open(Config::postgres(scratch.url())).await.unwrap();
    let second = Store::open(Config::postgres(scratch.url())).await.unwrap();
    Some((scratch, first, second))
}

/// Reads `key` on `store` until it returns `expected`; returns how long that took.
async fn time_until_seen(store: &Store, key: &str, expected: Option<i64>) -> Duration {
    let started = Instant::now();
    while store.retrieve::<i64>("scores", key).await.unwrap() != expected {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{key} never became {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_server_invalidates_the_others_cache() {
    let Some((_scratch, first, second)) = two_servers().await else {
        return;
    };
    first.store("scores", "alice", &1i64).await.unwrap();
    let mut delays = Vec::new();
    for round in 2..=21i64 {
        // The second server caches the current value...
        time_until_seen(&second, "alice", Some(round - 1)).await;
        assert_eq!(
            second.retrieve::<i64>("scores", "alice").await.unwrap(),
            Some(round - 1)
        );
        // ...and hears of the first server's write well before the cache's TTL (300 s).
        if round % 2 == 0 {
            first.store("scores", "alice", &round).await.unwrap();
        } else {
            let mut tx = first.transaction();
            tx.store("scores", "alice", &round).unwrap();
            tx.commit().await.unwrap();
        }
        delays.push(time_until_seen(&second, "alice", Some(round)).await);
    }
    first.delete("scores", "alice").await.unwrap();
    time_until_seen(&second, "alice", None).await;
    delays.sort();
    println!(
        "invalidation delay between two servers: median {:?}, max {:?} over {} writes",
        delays[delays.len() / 2],
        delays[delays.len() - 1],
        delays.len()
    );
    let stats = second.stats().await.unwrap();
    assert!(
        stats.cache.hits > 0,
        "the second server did serve from its cache: {:?}",
        stats.cache
    );
    first.close().await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_servers_keep_versions_and_reference_counts_exact() {
    let Some((_scratch, first, second)) = two_servers().await else {
        return;
    };
    race_two_servers(&first, &second).await;
    first.close().await.unwrap();
    second.close().await.unwrap();
}

/// Two stores (servers) on one database race optimistic increments of one counter and
/// transactions over shared keys; then the counter is exact, the store verifies clean and
/// the reference counts hold only the values in use. Also run on a replicated cluster.
pub async fn race_two_servers(first: &Store, second: &Store) {
    first.store("counters", "pot", &0i64).await.unwrap();
    let mut tasks = JoinSet::new();
    for (server, store) in [(0, first.clone()), (1, second.clone())] {
        for task in 0..4 {
            let store = store.clone();
            tasks.spawn(async move {
                for i in 0..15 {
                    // Optimistic increments of one shared counter.
                    loop {
                        let record = store
                            .retrieve_record::<i64>("counters", "pot")
                            .await
                            .unwrap()
                            .unwrap();
                        match store
                            .store_if(
                                "counters",
                                "pot",
                                &(record.value + 1),
                                Expect::Version(record.meta.version),
                            )
                            .await
                        {
                            Ok(_) => break,
                            Err(Error::Conflict { .. }) => continue,
                            Err(error) => panic!("{error}"),
                        }
                    }
                    // The same few values under shared keys, from both servers at once.
                    let key = format!("seat-{}", (task + i) % 5);
                    let value = format!("default-{}", (server + i) % 3);
                    let mut tx = store.transaction();
                    tx.store("seats", &key, &value).unwrap();
                    tx.store("seats", &format!("own-{server}-{task}-{i}"), &value)
                        .unwrap();
                    if i % 4 == 3 {
                        tx.delete("seats", &format!("seat-{}", (task + i + 1) % 5))
                            .unwrap();
                    }
                    tx.commit().await.unwrap();
                }
            });
        }
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    assert_eq!(
        first.retrieve::<i64>("counters", "pot").await.unwrap(),
        Some(2 * 4 * 15)
    );
    let report = first.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let stats = first.storage_stats().await.unwrap();
    // Values in use: the counter's, and at most the three defaults.
    assert!(stats.blobs <= 4, "{stats:?}");
    assert_eq!(stats.records, first.count("seats").await.unwrap() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_starting_at_once_migrate_once() {
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let mut opening = JoinSet::new();
    for _ in 0..4 {
        let url = scratch.url();
        opening.spawn(async move { Store::open(Config::postgres(url)).await });
    }
    let mut stores = Vec::new();
    while let Some(result) = opening.join_next().await {
        stores.push(result.unwrap().unwrap());
    }
    stores[0].store("k", "k", &1).await.unwrap();
    for store in &stores {
        assert_eq!(store.retrieve::<i32>("k", "k").await.unwrap(), Some(1));
        store.close().await.unwrap();
    }
}

/// A database of schema version 3, from before the change feed, expiry and the reference-count
/// function: a store of today with those dropped and the version set back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_database_migrates_with_its_records_and_an_empty_feed() {
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let store = Store::open(Config::postgres(scratch.url())).await.unwrap();
    store.store("players", "alice", &1000).await.unwrap();
    store.store("players", "bob", &500).await.unwrap();
    store.close().await.unwrap();
    let client = scratch.connect().await;
    client
        .batch_execute(
            "DROP TABLE strongbox_changes; DROP SEQUENCE strongbox_changes_seq;
             DELETE FROM strongbox_meta WHERE name = 'changes_trimmed_through';
             ALTER TABLE strongbox_records DROP COLUMN expires_at;
             DROP FUNCTION strongbox_change_refs;
             UPDATE strongbox_meta SET value = 3 WHERE name = 'schema_version';",
        )
        .await
        .unwrap();

    let store = Store::open(Config::postgres(scratch.url())).await.unwrap();
    assert_eq!(
        store.retrieve::<i64>("players", "alice").await.unwrap(),
        Some(1000)
    );
    assert!(store.changes(0, 10).await.unwrap().is_empty());
    store.store("players", "carol", &250).await.unwrap();
    let changes = store.changes(0, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].key, "carol");
    assert!(store.verify().await.unwrap().is_clean());
    store.close().await.unwrap();
    let version: i64 = client
        .query_one(
            "SELECT value FROM strongbox_meta WHERE name = 'schema_version'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 7);
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error_without_the_password() {
    let error = Store::open(Config::postgres(
        "postgres://app:s3cret@127.0.0.1:1/nowhere",
    ))
    .await
    .unwrap_err();
    let message = format!("{error} {error:?}");
    assert!(!message.contains("s3cret"), "{message}");
    assert!(matches!(error, Error::Unavailable { .. }), "{error}");
    assert!(error.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moves_sqlite_to_postgres_and_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(Config::new(dir.path().join("source.db")))
        .await
        .unwrap();
    for i in 0..300 {
        let value = serde_json::json!({"player": i % 17, "bets": vec![i; i % 9], "note": "seven out ".repeat(i % 30)});
        source
            .store(
                if i % 3 == 0 { "sessions" } else { "players" },
                &format!("k{i:04}"),
                &value,
            )
            .await
            .unwrap();
    }
    source
        .store("players", "k0001", &"overwritten")
        .await
        .unwrap();
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let middle = Store::open(Config::postgres(scratch.url())).await.unwrap();
    let there = source.copy_into(&middle, |_, _| {}).await.unwrap();
    assert_eq!(there.records, 300);
    let back = Store::open(Config::new(dir.path().join("back.db")))
        .await
        .unwrap();
    let again = middle.copy_into(&back, |_, _| {}).await.unwrap();
    assert_eq!((again.records, again.blobs), (there.records, there.blobs));
    for collection in ["players", "sessions"] {
        let keys = source
            .list(collection, strongbox::ListOptions::all())
            .await
            .unwrap();
        assert_eq!(
            back.list(collection, strongbox::ListOptions::all())
                .await
                .unwrap(),
            keys
        );
        for key in keys {
            let original = source
                .retrieve_record::<serde_json::Value>(collection, &key)
                .await
                .unwrap()
                .unwrap();
            let copied = back
                .retrieve_record::<serde_json::Value>(collection, &key)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(copied.value, original.value);
            assert_eq!(copied.meta.version, original.meta.version);
            assert_eq!(copied.meta.created_at_ms, original.meta.created_at_ms);
        }
    }
    assert_eq!(
        back.storage_stats().await.unwrap().blobs,
        source.storage_stats().await.unwrap().blobs
    );
    for store in [source, middle, back] {
        store.close().await.unwrap();
    }
}

/// The server's certificate (Debian's snakeoil, for `localhost`), which the tests trust.
const SERVER_CERTIFICATE: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_verify_the_server() {
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let url = scratch.url().replace("127.0.0.1", "localhost") + "?sslmode=require";

    // Without trusting the server's certificate, a TLS connection is refused.
    let error = Store::open(Config::postgres(&url)).await.unwrap_err();
    assert!(matches!(error, Error::Backend { .. }), "{error}");

    let mut config = Config::postgres(&url);
    config.postgres_tls_ca_file = Some(SERVER_CERTIFICATE.into());
    let store = Store::open(config).await.unwrap();
    store.store("secrets", "k", &"over TLS").await.unwrap();
    assert_eq!(
        store
            .retrieve::<String>("secrets", "k")
            .await
            .unwrap()
            .as_deref(),
        Some("over TLS")
    );

    let (client, connection) = tokio_postgres::connect(&scratch.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // The listener connects in the background: wait (bounded) for it.
    let mut encrypted = 0i64;
    for _ in 0..200 {
        encrypted = client
            .query_one(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
                 WHERE a.datname = current_database() AND s.ssl",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if encrypted >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        encrypted >= 2,
        "the pool and the listener connect over TLS: {encrypted}"
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_caches_fall_back_to_their_ttl() {
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let quiet = |ttl| {
        let mut config = Config::postgres(scratch.url());
        config.postgres_notify = false;
        config.cache_ttl_secs = ttl;
        config
    };
    let first = Store::open(quiet(300)).await.unwrap();
    let second = Store::open(quiet(1)).await.unwrap();
    assert_eq!(second.running_tasks(), 4, "no change listener");
    first.store("scores", "carol", &1i64).await.unwrap();
    time_until_seen(&second, "carol", Some(1)).await;
    first.store("scores", "carol", &2i64).await.unwrap();
    // Seen once the second server's entry expires (1 s), not through a notification.
    time_until_seen(&second, "carol", Some(2)).await;
    first.close().await.unwrap();
    second.close().await.unwrap();
}

/// A table altered by hand (a column retyped) makes reads fail with a typed error naming the
/// column, never a panic; `verify` reports it as a problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_altered_by_hand_is_an_error_not_a_panic() {
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let store = Store::open(Config::postgres(scratch.url())).await.unwrap();
    store.store("players", "alice", &1i64).await.unwrap();
    store.store("players", "bob", &2i64).await.unwrap();
    store.close().await.unwrap();
    let admin = scratch.connect().await;
    admin
        .batch_execute("ALTER TABLE strongbox_records ALTER COLUMN size TYPE TEXT USING size::text")
        .await
        .unwrap();
    // A store opened afterwards, so that no cache or prepared statement predates the change.
    let store = Store::open(Config::postgres(scratch.url())).await.unwrap();
    let error = store.retrieve::<i64>("players", "alice").await.unwrap_err();
    assert!(matches!(error, Error::Backend { .. }), "{error}");
    assert!(error.to_string().contains("`size`"), "{error}");
    let error = store.storage_stats().await.unwrap_err();
    assert!(matches!(error, Error::Backend { .. }), "{error}");
    let report = store.verify().await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.detail.contains("`size`")),
        "{:?}",
        report.problems
    );
    store.close().await.unwrap();

    admin
        .batch_execute(
            "ALTER TABLE strongbox_records ALTER COLUMN size TYPE BIGINT USING size::bigint;
             ALTER TABLE strongbox_records
                 ALTER COLUMN collection TYPE BYTEA USING convert_to(collection, 'UTF8')",
        )
        .await
        .unwrap();
    let store = Store::open(Config::postgres(scratch.url())).await.unwrap();
    let error = store.collections().await.unwrap_err();
    assert!(matches!(error, Error::Backend { .. }), "{error}");
    assert!(error.to_string().contains("`collection`"), "{error}");
    let error = store
        .list("players", strongbox::ListOptions::all())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Backend { .. }), "{error}");
    assert!(!store.verify().await.unwrap().is_clean());
    store.close().await.unwrap();
}

/// How many times `strongbox_records` was read whole, once every connection that read it
/// has closed (a closing backend flushes its statistics).
async fn whole_reads_of_records(scratch: &ScratchDatabase) -> i64 {
    let client = scratch.connect().await;
    let mut last = -1;
    // Backends flush their counts as they exit, just after the store closed: wait until
    // the count holds still.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let row = client
            .query_one(
                "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'strongbox_records'",
                &[],
            )
            .await
            .unwrap();
        let now: i64 = row.get(0);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_groups_find_their_records_through_the_index_not_by_reading_the_table() {
    const RECORDS: usize = 15_000;
    const GROUPS: usize = 10;
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let store = Store::open(Config::postgres(scratch.url())).await.unwrap();
    for first in (0..RECORDS).step_by(1_000) {
        let mut tx = store.transaction();
        for n in first..first + 1_000 {
            tx.store("scores", &format!("player-{n:05}"), &(n as i64))
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    store.close().await.unwrap();
    scratch
        .connect()
        .await
        .batch_execute("ANALYZE strongbox_records")
        .await
        .unwrap();
    let before = whole_reads_of_records(&scratch).await;

    // Each transaction is one group naming 300 keys: past a hundred or so, the planner's
    // costs prefer reading the whole table into a hash join for the lock and the updates.
    let store = Store::open(Config::postgres(scratch.url())).await.unwrap();
    for group in 0..GROUPS {
        let mut tx = store.transaction();
        for n in (group..RECORDS).step_by(RECORDS / 300).take(300) {
            tx.store("scores", &format!("player-{n:05}"), &-(n as i64))
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    assert_eq!(
        store
            .retrieve::<i64>("scores", "player-00050")
            .await
            .unwrap(),
        Some(-50)
    );
    store.close().await.unwrap();
    let whole_reads = whole_reads_of_records(&scratch).await - before;
    assert!(
        whole_reads < GROUPS as i64,
        "{GROUPS} groups of 300 keys read the records' table whole {whole_reads} times"
    );
}
