//! Cache coherence across PostgreSQL servers when the change listener's connection is lost:
//! what was announced while nobody listened is read back from the change feed, and only the
//! keys written meanwhile leave the cache, unless the feed was trimmed past what the cache
//! accounted for.
//!
//! Each server's listener connection shows in `pg_stat_activity` as `strongbox listener`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use strongbox::{Config, Store};

use crate::common::{ScratchDatabase, postgres_server};

/// The listeners' backends connected to the database `database`.
const LISTENERS: &str = "SELECT pid FROM pg_stat_activity
                         WHERE datname = $1 AND application_name = 'strongbox listener'";

/// A connection to the server's `postgres` database, to watch and cut other connections and
/// to close the scratch database to new ones.
async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &format!("{}/postgres", postgres_server()),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    client
}

/// The pids of the listeners on `scratch`'s database.
async fn listeners(admin: &tokio_postgres::Client, scratch: &ScratchDatabase) -> HashSet<i32> {
    admin
        .query(LISTENERS, &[&scratch.name])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Waits (bounded) until a listener not in `known` is connected to `scratch`'s database, and
/// returns its pid.
async fn new_listener(
    admin: &tokio_postgres::Client,
    scratch: &ScratchDatabase,
    known: &HashSet<i32>,
) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(pid) = listeners(admin, scratch).await.difference(known).next() {
            return *pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no new listener connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ends the listener `pid`'s backend and waits (bounded) until it is gone.
async fn kill(admin: &tokio_postgres::Client, scratch: &ScratchDatabase, pid: i32) {
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed, "listener {pid} was there to kill");
    let started = Instant::now();
    while listeners(admin, scratch).await.contains(&pid) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{pid} lives on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `key` on `store` until it returns `expected` (bounded).
async fn wait_until_seen(store: &Store, key: &str, expected: &str) {
    let started = Instant::now();
    while store
        .retrieve::<String>("boards", key)
        .await
        .unwrap()
        .as_deref()
        != Some(expected)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{key} never became {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A server's configuration: no statistics task, so that nothing but the test and the cache
/// coherence uses its pool.
fn server(scratch: &ScratchDatabase) -> Config {
    let mut config = Config::postgres(scratch.url());
    config.stats_interval_secs = 0;
    config
}

/// `b` writes `k1` and `k2`, then `a` opens and caches both (a second read of each is a hit);
/// returns `a`'s listener pid, `b`'s listeners (none, or one) being in `known`.
async fn cached_by_a(
    admin: &tokio_postgres::Client,
    scratch: &ScratchDatabase,
    b: &Store,
    a_config: Config,
) -> (Store, i32) {
    b.store("boards", "k1", &"k1 first").await.unwrap();
    b.store("boards", "k2", &"k2 first").await.unwrap();
    let known = listeners(admin, scratch).await;
    let a = Store::open(a_config).await.unwrap();
    let pid = new_listener(admin, scratch, &known).await;
    for key in ["k1", "k2"] {
        a.retrieve::<String>("boards", key).await.unwrap();
    }
    let hits = a.stats().await.unwrap().cache.hits;
    assert_eq!(
        a.retrieve::<String>("boards", "k1")
            .await
            .unwrap()
            .as_deref(),
        Some("k1 first")
    );
    assert_eq!(
        a.retrieve::<String>("boards", "k2")
            .await
            .unwrap()
            .as_deref(),
        Some("k2 first")
    );
    assert_eq!(
        a.stats().await.unwrap().cache.hits,
        hits + 2,
        "a cached both"
    );
    (a, pid)
}

/// Waits (bounded) until `a` has applied the catch-up its listener `a_listener` sent once it
/// listened, and until that listener has no mark in flight: from then on, a change by `b`
/// (which announces nothing) reaches `a` only through a later catch-up.
///
/// A third server announces a change of a key `a` cached; the catch-up was sent before that
/// announcement could be heard, and `a` applies them in order, so once `a` reads the new value
/// the catch-up was applied. Hearing it (the only change `a`'s listener hears) makes the
/// listener mark its place once, which reads the feed's newest number: that statement must be
/// over before anything `a` is not to hear of is written.
async fn settled(
    admin: &tokio_postgres::Client,
    scratch: &ScratchDatabase,
    a: &Store,
    b: &Store,
    a_listener: i32,
) {
    b.store("boards", "k0", &"k0 first").await.unwrap();
    wait_until_seen(a, "k0", "k0 first").await;
    let c = Store::open(server(scratch)).await.unwrap();
    c.store("boards", "k0", &"k0 second").await.unwrap();
    wait_until_seen(a, "k0", "k0 second").await;
    c.close().await.unwrap();
    let started = Instant::now();
    loop {
        let marked: bool = admin
            .query_one(
                "SELECT count(*) = 1 FROM pg_stat_activity
                 WHERE pid = $1 AND state = 'idle' AND query LIKE '%pg_notify%'",
                &[&a_listener],
            )
            .await
            .unwrap()
            .get(0);
        if marked {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the listener never marked its place"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Store A's listener is cut and the database refuses new connections, so A cannot listen
/// while store B overwrites `k1` (B's announcement reaches nobody). Once A listens again it
/// reads the feed after what it had accounted for: it serves B's `k1`, and still serves `k2`
/// from its cache, which it did not clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_listener_invalidates_only_the_keys_written_meanwhile() {
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let admin = admin().await;
    let b = Store::open(server(&scratch)).await.unwrap();
    let (a, a_listener) = cached_by_a(&admin, &scratch, &b, server(&scratch)).await;
    let before = listeners(&admin, &scratch).await;

    let database = &scratch.name;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap();
    kill(&admin, &scratch, a_listener).await;
    b.store("boards", "k1", &"k1 second").await.unwrap();
    admin
        .batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();

    new_listener(&admin, &scratch, &before).await;
    wait_until_seen(&a, "k1", "k1 second").await;
    let stats = a.stats().await.unwrap().cache;
    assert_eq!(
        a.retrieve::<String>("boards", "k2")
            .await
            .unwrap()
            .as_deref(),
        Some("k2 first")
    );
    let after = a.stats().await.unwrap().cache;
    assert_eq!(
        (after.hits, after.misses),
        (stats.hits + 1, stats.misses),
        "k2 was served from the cache: only k1 was invalidated"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// When the feed was trimmed past what A had accounted for, A cannot tell which keys changed:
/// it clears its cache, and reads every value afresh and right. (B announces nothing here, so
/// A learns of B's writes only from the feed, once its listener is cut.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_trimmed_past_the_cache_clears_it() {
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let admin = admin().await;
    let b = Store::open(
        server(&scratch)
            .with_postgres_notify(false)
            .with_changes_retention_count(1),
    )
    .await
    .unwrap();
    let (a, a_listener) = cached_by_a(&admin, &scratch, &b, server(&scratch)).await;
    settled(&admin, &scratch, &a, &b, a_listener).await;
    b.store("boards", "k1", &"k1 second").await.unwrap();
    b.store("boards", "k3", &"k3 first").await.unwrap();
    assert!(b.trim_changes().await.unwrap() >= 2);

    let before = listeners(&admin, &scratch).await;
    kill(&admin, &scratch, a_listener).await;
    new_listener(&admin, &scratch, &before).await;
    wait_until_seen(&a, "k1", "k1 second").await;
    let stats = a.stats().await.unwrap().cache;
    assert_eq!(
        a.retrieve::<String>("boards", "k2")
            .await
            .unwrap()
            .as_deref(),
        Some("k2 first")
    );
    assert_eq!(
        a.stats().await.unwrap().cache.misses,
        stats.misses + 1,
        "the cache was cleared"
    );
    assert_eq!(
        a.retrieve::<String>("boards", "k3")
            .await
            .unwrap()
            .as_deref(),
        Some("k3 first")
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Both servers' listeners are cut; a write made then is still seen by the other server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_the_listeners_are_down_is_seen() {
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    let admin = admin().await;
    let first = Store::open(Config::postgres(scratch.url())).await.unwrap();
    let second = Store::open(Config::postgres(scratch.url())).await.unwrap();
    first.store("boards", "bob", &"one").await.unwrap();
    wait_until_seen(&second, "bob", "one").await;
    // Under load a listener may still be connecting: wait (bounded) until both listen.
    let first_listener = new_listener(&admin, &scratch, &HashSet::new()).await;
    let second_listener = new_listener(&admin, &scratch, &HashSet::from([first_listener])).await;
    for pid in [first_listener, second_listener] {
        kill(&admin, &scratch, pid).await;
    }
    first.store("boards", "bob", &"two").await.unwrap();
    wait_until_seen(&second, "bob", "two").await;
    first.close().await.unwrap();
    second.close().await.unwrap();
}
