//! Read replicas on a real cluster: reads go to the standby and read-your-writes holds under
//! 64 writing tasks; a standby that stops, or whose replay is paused, leaves reads to the
//! primary (counted as fallbacks), never an error and never an older value.

use std::time::Duration;

use strongbox::{Config, ReplicaStats, Store};
use tokio::task::JoinSet;

use super::{Cluster, connect};

/// Tasks writing and reading back at once.
const TASKS: u64 = 64;

/// Writes each task makes to its key.
const ROUNDS: u64 = 25;

/// A store on the cluster's primary reading from its standby, with no cache, so that every
/// read goes to a server.
async fn open_with_replica(cluster: &Cluster, wait: Duration) -> Store {
    let config = Config::postgres(Cluster::node_url(&cluster.primary))
        .with_postgres_replica(Cluster::node_url(&cluster.standby))
        .with_replica_wait(wait)
        .with_cache_capacity_bytes(0);
    Store::open(config).await.unwrap()
}

async fn replica_stats(store: &Store) -> ReplicaStats {
    store.replica_stats().await.expect("the store has replicas")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standbys_serve_reads_and_every_task_reads_its_own_writes() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let store = open_with_replica(&cluster, Duration::from_millis(100)).await;
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let key = format!("k{task}");
            let players = store.collection::<u64>("players").unwrap();
            for value in 1..=ROUNDS {
                store.store("players", &key, &value).await.unwrap();
                let read: Option<u64> = store.retrieve("players", &key).await.unwrap();
                assert_eq!(read, Some(value), "{key} read back an older value");
                let many = players.get_many([key.as_str()]).await.unwrap();
                assert_eq!(many, vec![Some(value)], "{key} through get_many");
                let version = store.version("players", &key).await.unwrap();
                assert_eq!(version.map(|version| version.get()), Some(value));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(store.count("players").await.unwrap(), TASKS);
    let stats = replica_stats(&store).await;
    eprintln!("replica reads under {TASKS} writing tasks: {stats:?}");
    assert!(
        stats.reads > 0,
        "no read was served by the standby: {stats:?}"
    );
    assert_eq!(stats.standbys, 1);
    assert_eq!(stats.healthy, 1);
    assert!(stats.lag_bytes.is_some());
    let snapshot = store.stats().await.unwrap();
    assert!(
        snapshot
            .replicas
            .is_some_and(|replicas| replicas.reads >= stats.reads)
    );

    // For the record (no assertion on timing): point reads from the standby against the
    // primary, the same 64 tasks, no cache, once to open the pools' connections, then again.
    let primary_only = Store::open(
        Config::postgres(Cluster::node_url(&cluster.primary)).with_cache_capacity_bytes(0),
    )
    .await
    .unwrap();
    for round in ["warm-up", "measured"] {
        for (label, reader) in [("standby", &store), ("primary", &primary_only)] {
            let rate = read_rate(reader).await;
            eprintln!("point reads from the {label} ({round}): {rate:.0}/s");
        }
    }
    primary_only.close().await.unwrap();
    store.close().await.unwrap();
}

/// Point reads per second: every task reads its key `ROUNDS * 4` times.
async fn read_rate(store: &Store) -> f64 {
    let started = std::time::Instant::now();
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            for _ in 0..ROUNDS * 4 {
                let read: Option<u64> = store
                    .retrieve("players", &format!("k{task}"))
                    .await
                    .unwrap();
                assert_eq!(read, Some(ROUNDS));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    (TASKS * ROUNDS * 4) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_standby_leaves_reads_to_the_primary() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // A long wait, so that the first read finds the standby however loaded the machine is;
    // once the standby is down, no read waits for it.
    let store = open_with_replica(&cluster, Duration::from_secs(5)).await;
    store.store("players", "before", &0u64).await.unwrap();
    assert_eq!(
        store.retrieve::<u64>("players", "before").await.unwrap(),
        Some(0)
    );
    let before = replica_stats(&store).await;
    assert_eq!(before.reads, 1, "{before:?}");

    cluster.make_replication_asynchronous().await;
    cluster.stop_standby();
    for value in 1..=20u64 {
        store.store("players", "after", &value).await.unwrap();
        let read = store.retrieve::<u64>("players", "after").await.unwrap();
        assert_eq!(read, Some(value));
        assert_eq!(store.count("players").await.unwrap(), 2);
    }
    let after = replica_stats(&store).await;
    eprintln!("with the standby stopped: {after:?}");
    assert_eq!(after.reads, before.reads, "{after:?}");
    assert!(after.fallbacks >= before.fallbacks + 40, "{after:?}");
    assert_eq!(after.healthy, 0);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_replay_is_paused_still_shows_this_stores_writes() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let store = open_with_replica(&cluster, Duration::from_millis(20)).await;
    store.store("players", "alice", &0u64).await.unwrap();
    assert_eq!(
        store.retrieve::<u64>("players", "alice").await.unwrap(),
        Some(0)
    );

    let standby = connect(cluster.standby.port).await;
    standby
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await
        .unwrap();
    let before = replica_stats(&store).await;
    for value in 1..=10u64 {
        store.store("players", "alice", &value).await.unwrap();
        let read = store.retrieve::<u64>("players", "alice").await.unwrap();
        assert_eq!(read, Some(value), "an older value from the paused standby");
    }
    let paused = replica_stats(&store).await;
    eprintln!("with the standby's replay paused: {paused:?}");
    assert!(paused.fallbacks >= before.fallbacks + 10, "{paused:?}");
    assert_eq!(paused.reads, before.reads, "{paused:?}");
    assert!(paused.lag_bytes.is_some_and(|lag| lag > 0), "{paused:?}");

    // Replay resumed, the standby catches up and serves reads again.
    standby
        .execute("SELECT pg_wal_replay_resume()", &[])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let read = store.retrieve::<u64>("players", "alice").await.unwrap();
        assert_eq!(read, Some(10));
        if replica_stats(&store).await.reads > paused.reads {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the standby never served reads again after its replay resumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.close().await.unwrap();
}

/// Another server's writes, heard through its notifications, are never hidden behind a
/// cached value that a lagging standby served: each one shows within the wait, with the
/// standby's replay paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_servers_writes_show_through_a_cache_filled_from_a_standby() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let reader = Store::open(
        Config::postgres(Cluster::node_url(&cluster.primary))
            .with_postgres_replica(Cluster::node_url(&cluster.standby))
            .with_replica_wait(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let writer = Store::open(Config::postgres(Cluster::node_url(&cluster.primary)))
        .await
        .unwrap();
    // The standby stays behind every write the writer makes: a read it served after the
    // invalidation would be stale, and would stay in the cache.
    let standby = connect(cluster.standby.port).await;
    standby
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await
        .unwrap();
    let mut last_seen = 0u64;
    for value in 1..=20u64 {
        writer.store("players", "bob", &value).await.unwrap();
        let started = std::time::Instant::now();
        loop {
            let seen = reader
                .retrieve::<u64>("players", "bob")
                .await
                .unwrap()
                .unwrap_or(0);
            assert!(seen >= last_seen, "went back from {last_seen} to {seen}");
            last_seen = seen;
            if seen == value {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the reader kept {seen}, not {value}: a stale value stuck in its cache"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    eprintln!(
        "another server's writes: {:?}",
        replica_stats(&reader).await
    );
    writer.close().await.unwrap();
    reader.close().await.unwrap();
}
