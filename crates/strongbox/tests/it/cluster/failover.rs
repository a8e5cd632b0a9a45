//! Failover on a real replicated cluster: writers keep going through the multi-host URL while
//! the primary is SIGKILLed and the standby promoted, and with synchronous replication every
//! acknowledged write is on the new primary, exact. And several stores racing on the cluster
//! keep versions and reference counts exact.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strongbox::{Config, Error, Expect, Store, Version};
use tokio::task::JoinSet;

use super::Cluster;

/// Concurrent writers during the failover.
const WRITERS: u64 = 4;

/// What the writers share with the test.
#[derive(Default)]
struct Progress {
    stop: AtomicBool,
    acknowledged: AtomicU64,
    /// Calls that failed with a retryable error (`Error::Unavailable`, `Error::Busy`).
    retryable_failures: AtomicU64,
    /// Of those, `Error::Unavailable`.
    unavailable: AtomicU64,
    killed_at: Mutex<Option<Instant>>,
    /// From the kill to the first write acknowledged that was sent after it.
    first_write_after_kill: Mutex<Option<Duration>>,
}

impl Progress {
    /// Notes a write acknowledged at `now` that was sent at `sent`.
    fn acknowledged(&self, sent: Instant, now: Instant) {
        self.acknowledged.fetch_add(1, Ordering::Relaxed);
        let killed_at = *self.killed_at.lock().unwrap();
        if let Some(killed_at) = killed_at
            && sent > killed_at
        {
            let mut first = self.first_write_after_kill.lock().unwrap();
            let delay = now - killed_at;
            if first.is_none_or(|first| delay < first) {
                *first = Some(delay);
            }
        }
    }
}

/// Writes distinct keys `w{writer}-{i}` with `Expect::Absent` until told to stop, retrying a
/// retryable failure; returns every write that committed, as (key, version, value). A write
/// whose outcome was unknown is resolved through its version: a retry that finds the key
/// present (a conflict naming its version) means the earlier attempt committed.
async fn write_until_stopped(
    store: Store,
    writer: u64,
    progress: Arc<Progress>,
) -> Vec<(String, Version, u64)> {
    let mut committed = Vec::new();
    let mut i = 0u64;
    while !progress.stop.load(Ordering::Relaxed) {
        let key = format!("w{writer}-{i}");
        let value = writer * 1_000_000 + i;
        loop {
            let sent = Instant::now();
            match store.store_if("acks", &key, &value, Expect::Absent).await {
                Ok(version) => {
                    progress.acknowledged(sent, Instant::now());
                    committed.push((key, version, value));
                    break;
                }
                Err(Error::Conflict {
                    actual: Some(version),
                    ..
                }) => {
                    // Only this writer writes this key: an earlier attempt did commit.
                    committed.push((key, version, value));
                    break;
                }
                Err(error) if error.is_retryable() => {
                    progress.retryable_failures.fetch_add(1, Ordering::Relaxed);
                    if matches!(error, Error::Unavailable { .. }) {
                        progress.unavailable.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("{key}: a write failed with a non-retryable error: {error}"),
            }
        }
        i += 1;
    }
    committed
}

/// Waits until `done` holds, failing the test after `limit`.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_failover_with_synchronous_replication() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let store = Store::open(Config::postgres(cluster.url())).await.unwrap();
    // A value this store caches, to show below that its listener reconnects.
    store.store("flags", "shared", &1u64).await.unwrap();
    let progress = Arc::new(Progress::default());
    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        writers.spawn(write_until_stopped(
            store.clone(),
            writer,
            Arc::clone(&progress),
        ));
    }
    wait_until("writes before the crash", Duration::from_secs(20), || {
        progress.acknowledged.load(Ordering::Relaxed) >= 200
    })
    .await;
    let before_kill = progress.acknowledged.load(Ordering::Relaxed);

    *progress.killed_at.lock().unwrap() = Some(Instant::now());
    cluster.kill_primary();
    // The time an operator or a failover manager would take to decide.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let promoting = tokio::task::spawn_blocking(move || {
        cluster.promote_standby();
        cluster
    });
    let cluster = promoting.await.unwrap();
    wait_until(
        "the first write after the failover",
        Duration::from_secs(30),
        || progress.first_write_after_kill.lock().unwrap().is_some(),
    )
    .await;
    let after_failover = progress.acknowledged.load(Ordering::Relaxed);
    wait_until("writes after the failover", Duration::from_secs(20), || {
        progress.acknowledged.load(Ordering::Relaxed) >= after_failover + 200
    })
    .await;
    progress.stop.store(true, Ordering::Relaxed);
    let mut committed = Vec::new();
    while let Some(result) = writers.join_next().await {
        committed.extend(result.unwrap());
    }

    let first_write = progress.first_write_after_kill.lock().unwrap().unwrap();
    println!(
        "failover: {before_kill} writes acknowledged before the kill, {} in all; {} retryable \
         failures ({} unavailable); from the kill to the first successful write: {first_write:?} \
         (300 ms of it before the promotion)",
        progress.acknowledged.load(Ordering::Relaxed),
        progress.retryable_failures.load(Ordering::Relaxed),
        progress.unavailable.load(Ordering::Relaxed),
    );
    assert!(
        progress.unavailable.load(Ordering::Relaxed) > 0,
        "writes during the outage fail with Error::Unavailable"
    );

    // On the new primary alone, through a store with an empty cache: every write that
    // committed is there with its value and version, and nothing else.
    let new_primary = format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        cluster.standby.port
    );
    let check = Store::open(Config::postgres(new_primary)).await.unwrap();
    for (key, version, value) in &committed {
        let record = check.retrieve_record::<u64>("acks", key).await.unwrap();
        let record = record.unwrap_or_else(|| panic!("{key} was acknowledged and is lost"));
        assert_eq!(
            (record.meta.version, record.value),
            (*version, *value),
            "{key}"
        );
        assert_eq!(version.get(), 1, "{key} was written once");
    }
    assert_eq!(check.count("acks").await.unwrap(), committed.len() as u64);
    let report = check.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);

    // The first store's change listener reconnected to the new primary: another server's
    // write reaches its cache (whose entries otherwise live 300 s).
    assert_eq!(
        store.retrieve::<u64>("flags", "shared").await.unwrap(),
        Some(1)
    );
    check.store("flags", "shared", &2u64).await.unwrap();
    let started = Instant::now();
    while store.retrieve::<u64>("flags", "shared").await.unwrap() != Some(2) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first store never heard of the write on the new primary"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check.close().await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_servers_on_a_cluster_keep_versions_and_reference_counts_exact() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let first = Store::open(Config::postgres(cluster.url())).await.unwrap();
    let second = Store::open(Config::postgres(cluster.url())).await.unwrap();
    crate::postgres::race_two_servers(&first, &second).await;
    // The standby replays what the primary acknowledged (synchronous replication waits for
    // its flush; the replay follows).
    let standby = super::connect(cluster.standby.port).await;
    let seats = first.count("seats").await.unwrap();
    let started = Instant::now();
    loop {
        let row = standby
            .query_one(
                "SELECT count(*) FROM strongbox_records WHERE collection = 'seats'",
                &[],
            )
            .await
            .unwrap();
        if u64::try_from(row.get::<_, i64>(0)).unwrap() == seats {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the standby never replayed the primary's {seats} seats"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.close().await.unwrap();
    second.close().await.unwrap();
}
