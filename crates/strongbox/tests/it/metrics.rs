//! What a store reports through the `metrics` facade, read back with `metrics-util`'s
//! `DebuggingRecorder`. Each test installs its recorder on its own thread only
//! (`metrics::with_local_recorder`) and runs the store on a current-thread runtime there, so
//! its background tasks report to the same recorder and tests running beside it do not.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use strongbox::{Config, Error, Expect, Store};

/// Runs `test` with `recorder` as this thread's recorder.
fn recorded<F: Future<Output = ()>>(recorder: &DebuggingRecorder, test: F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(recorder, || runtime.block_on(test));
}

/// A store with no background task, unless the test turns one on.
fn quiet_config(dir: &tempfile::TempDir) -> Config {
    Config::new(dir.path().join("metrics.db"))
        .with_stats_interval(Duration::ZERO)
        .with_maintenance_interval(Duration::ZERO)
        .with_cache_eviction_interval(Duration::ZERO)
}

/// One reading of every metric: `name{label=value,...}` to its description and value.
/// Counters count from the previous reading (the recorder resets them as it reads).
struct Reading(HashMap<String, (Option<String>, DebugValue)>);

impl Reading {
    fn take(snapshotter: &Snapshotter) -> Self {
        let metrics = snapshotter.snapshot().into_vec().into_iter();
        Reading(
            metrics
                .map(|(key, _unit, description, value)| {
                    let key = key.key();
                    let labels: Vec<String> = key
                        .labels()
                        .map(|label| format!("{}={}", label.key(), label.value()))
                        .collect();
                    let name = match labels.is_empty() {
                        true => key.name().to_owned(),
                        false => format!("{}{{{}}}", key.name(), labels.join(",")),
                    };
                    (name, (description.map(|d| d.to_string()), value))
                })
                .collect(),
        )
    }

    fn counter(&self, name: &str) -> u64 {
        match self.0.get(name) {
            Some((_, DebugValue::Counter(count))) => *count,
            None => 0,
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, name: &str) -> f64 {
        match self.0.get(name) {
            Some((_, DebugValue::Gauge(value))) => value.into_inner(),
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    fn histogram(&self, name: &str) -> Vec<f64> {
        match self.0.get(name) {
            Some((_, DebugValue::Histogram(values))) => {
                values.iter().map(|value| value.into_inner()).collect()
            }
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }
}

#[test]
fn reads_writes_and_the_cache_are_counted_in_the_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorded(&recorder, async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(quiet_config(&dir)).await.unwrap();
        for i in 0..4 {
            store.store("players", &format!("p{i}"), &i).await.unwrap();
        }
        store.store("players", "copy", &0).await.unwrap();
        for _ in 0..2 {
            for i in 0..4 {
                store
                    .retrieve::<i32>("players", &format!("p{i}"))
                    .await
                    .unwrap();
            }
        }
        assert_eq!(
            store.retrieve::<i32>("players", "nobody").await.unwrap(),
            None
        );
        let conflict = store.store_if("players", "p0", &9, Expect::Absent).await;
        assert!(matches!(conflict, Err(Error::Conflict { .. })));
        store.publish_metrics().await;
        store.close().await.unwrap();
    });

    let reading = Reading::take(&snapshotter);
    assert_eq!(reading.counter("strongbox_operations_total{op=store}"), 6);
    assert_eq!(
        reading.counter("strongbox_operations_total{op=retrieve}"),
        9
    );
    assert_eq!(reading.counter("strongbox_cache_hits_total"), 8);
    assert_eq!(reading.counter("strongbox_cache_misses_total"), 1);
    assert_eq!(reading.counter("strongbox_cache_evictions_total"), 0);
    assert_eq!(reading.counter("strongbox_errors_total{kind=conflict}"), 1);
    assert_eq!(reading.counter("strongbox_dedup_writes_total"), 1);
    let store_latencies = reading.histogram("strongbox_operation_duration_seconds{op=store}");
    assert_eq!(store_latencies.len(), 6);
    assert!(
        store_latencies.iter().all(|s| *s > 0.0 && *s < 60.0),
        "{store_latencies:?}"
    );
    assert_eq!(reading.gauge("strongbox_records"), 5.0);
    // The failed conditional write dropped its key from the cache.
    assert_eq!(reading.gauge("strongbox_cache_entries"), 4.0);
    // No repository is configured: no backup age.
    assert!(!reading.0.contains_key("strongbox_backup_age_seconds"));
    // Every metric reported has its help text (`Store::open` described them).
    for (name, (description, _)) in &reading.0 {
        assert!(
            description.as_ref().is_some_and(|text| !text.is_empty()),
            "{name} has no description"
        );
    }
}

#[test]
fn the_backup_age_is_reported_once_a_repository_is_configured() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorded(&recorder, async {
        let dir = tempfile::tempdir().unwrap();
        let repository = dir.path().join("backups");
        let store = Store::open(quiet_config(&dir).with_backup_repository(&repository))
            .await
            .unwrap();
        store.store("players", "alice", &1).await.unwrap();
        // No backup yet (not even the directory): infinitely old, so an alert fires.
        store.publish_metrics().await;
        let age = Reading::take(&snapshotter).gauge("strongbox_backup_age_seconds");
        assert_eq!(age, f64::INFINITY);

        let backups = strongbox::backup::Repository::open_or_create(&repository)
            .await
            .unwrap();
        backups.backup(&store, |_| {}).await.unwrap();
        store.publish_metrics().await;
        let age = Reading::take(&snapshotter).gauge("strongbox_backup_age_seconds");
        assert!((0.0..600.0).contains(&age), "{age}");
        store.close().await.unwrap();
    });
}

#[test]
fn the_backup_age_of_an_encrypted_repository_is_read_with_the_configured_key() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorded(&recorder, async {
        let dir = tempfile::tempdir().unwrap();
        let (repository, password) = (dir.path().join("backups"), dir.path().join("password"));
        std::fs::write(&password, "correct horse\n").unwrap();
        let key = strongbox::backup::RepositoryKey::passphrase("correct horse");
        let backups = strongbox::backup::Repository::create_encrypted(&repository, &key)
            .await
            .unwrap();
        let config = quiet_config(&dir)
            .with_backup_repository(&repository)
            .with_backup_repository_password_file(&password);
        let store = Store::open(config).await.unwrap();
        store.store("players", "alice", &1).await.unwrap();
        store.publish_metrics().await;
        let age = Reading::take(&snapshotter).gauge("strongbox_backup_age_seconds");
        assert_eq!(age, f64::INFINITY, "no backup yet");
        backups.backup(&store, |_| {}).await.unwrap();
        store.publish_metrics().await;
        let age = Reading::take(&snapshotter).gauge("strongbox_backup_age_seconds");
        assert!((0.0..600.0).contains(&age), "{age}");
        store.close().await.unwrap();
    });
}

#[test]
fn the_eviction_task_removes_expired_entries_in_the_background() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorded(&recorder, async {
        let dir = tempfile::tempdir().unwrap();
        let config = quiet_config(&dir)
            .with_cache_ttl(Duration::from_secs(1))
            .with_cache_eviction_interval(Duration::from_secs(1));
        let store = Store::open(config).await.unwrap();
        for i in 0..5 {
            store.store("players", &format!("p{i}"), &i).await.unwrap();
            store
                .retrieve::<i32>("players", &format!("p{i}"))
                .await
                .unwrap();
        }
        // Nothing touches the cache from here on but the eviction task (`stats` would sweep
        // too, so it is read only at the end): every eviction counted is the task's.
        let mut evicted = 0;
        for _ in 0..100 {
            evicted += Reading::take(&snapshotter).counter("strongbox_cache_evictions_total");
            if evicted >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(evicted, 5);
        let cache = store.stats().await.unwrap().cache;
        assert_eq!(
            (cache.entries, cache.evictions, cache.hits),
            (0, 5, 5),
            "{cache:?}"
        );
        store.close().await.unwrap();
    });
}
