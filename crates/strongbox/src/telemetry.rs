//! Operation counters and latency histograms, and the names of the metrics Strongbox reports.
//!
//! Everything is recorded twice, cheaply: into lock-free counters read by `Store::stats`, and
//! through the `metrics` facade, so that an application can install any exporter (the CLI's
//! `serve-metrics` installs a Prometheus one). Without an installed recorder the facade costs
//! one atomic load per call. [`describe_metrics`] gives the exporter each metric's help text
//! and unit; `Store::open` calls it.
//!
//! Metric names (all prefixed `strongbox_`; the constants of [`name`] spell them):
//! - `operations_total{op}` and `operation_duration_seconds{op}` (histogram), `op` being
//!   `store`, `retrieve`, `delete` or `commit`;
//! - `errors_total{kind}`, `kind` being `ErrorKind::as_str` of `Error::kind`;
//! - `cache_hits_total`, `cache_misses_total`, `cache_evictions_total` (counted as they
//!   happen), `cache_entries`, `cache_bytes`;
//! - `dedup_writes_total`, `dedup_saved_bytes_total`, `written_raw_bytes_total`,
//!   `written_stored_bytes_total`;
//! - `records`, `blobs`, `logical_bytes`, `stored_bytes`, `file_bytes`,
//!   `dictionary_collections`, `released_bytes`, and `backup_age_seconds` when a backup
//!   repository is configured (gauges, refreshed by the statistics task);
//! - with PostgreSQL read replicas: `replica_lag_bytes` (gauge), `replica_reads_total` and
//!   `replica_fallbacks_total` (counters), refreshed by the statistics task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, ErrorKind};

/// The name of every metric, as reported through the `metrics` facade.
pub(crate) mod name {
    pub const OPERATIONS: &str = "strongbox_operations_total";
    pub const OPERATION_DURATION: &str = "strongbox_operation_duration_seconds";
    pub const ERRORS: &str = "strongbox_errors_total";
    pub const CACHE_HITS: &str = "strongbox_cache_hits_total";
    pub const CACHE_MISSES: &str = "strongbox_cache_misses_total";
    pub const CACHE_EVICTIONS: &str = "strongbox_cache_evictions_total";
    pub const CACHE_ENTRIES: &str = "strongbox_cache_entries";
    pub const CACHE_BYTES: &str = "strongbox_cache_bytes";
    pub const DEDUP_WRITES: &str = "strongbox_dedup_writes_total";
    pub const DEDUP_SAVED_BYTES: &str = "strongbox_dedup_saved_bytes_total";
    pub const WRITTEN_RAW_BYTES: &str = "strongbox_written_raw_bytes_total";
    pub const WRITTEN_STORED_BYTES: &str = "strongbox_written_stored_bytes_total";
    pub const RECORDS: &str = "strongbox_records";
    pub const EXPIRED_RECORDS: &str = "strongbox_expired_records";
    pub const BLOBS: &str = "strongbox_blobs";
    pub const LOGICAL_BYTES: &str = "strongbox_logical_bytes";
    pub const STORED_BYTES: &str = "strongbox_stored_bytes";
    pub const FILE_BYTES: &str = "strongbox_file_bytes";
    pub const RELEASED_BYTES: &str = "strongbox_released_bytes";
    pub const DICTIONARY_COLLECTIONS: &str = "strongbox_dictionary_collections";
    pub const BACKUP_AGE: &str = "strongbox_backup_age_seconds";
    pub const REPLICA_LAG_BYTES: &str = "strongbox_replica_lag_bytes";
    pub const REPLICA_READS: &str = "strongbox_replica_reads_total";
    pub const REPLICA_FALLBACKS: &str = "strongbox_replica_fallbacks_total";
}

/// The kind of a metric, for its description.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric's kind, unit and help text.
const DESCRIPTIONS: [(&str, Kind, metrics::Unit, &str); 24] = {
    use Kind::{Counter, Gauge, Histogram};
    use metrics::Unit::{Bytes, Count, Seconds};
    use name::*;
    [
        (
            OPERATIONS,
            Counter,
            Count,
            "Calls completed (successful or not), by operation",
        ),
        (
            OPERATION_DURATION,
            Histogram,
            Seconds,
            "Latency of calls, by operation",
        ),
        (ERRORS, Counter, Count, "Failed calls, by error kind"),
        (CACHE_HITS, Counter, Count, "Reads served from the cache"),
        (
            CACHE_MISSES,
            Counter,
            Count,
            "Reads that went to the database",
        ),
        (
            CACHE_EVICTIONS,
            Counter,
            Count,
            "Cache entries removed because they expired or the byte bound was reached",
        ),
        (CACHE_ENTRIES, Gauge, Count, "Entries held by the cache"),
        (
            CACHE_BYTES,
            Gauge,
            Bytes,
            "Weighted bytes held by the cache",
        ),
        (
            DEDUP_WRITES,
            Counter,
            Count,
            "Writes whose value was already stored, so only a reference was added",
        ),
        (
            DEDUP_SAVED_BYTES,
            Counter,
            Bytes,
            "Serialized bytes that deduplicated writes did not store again",
        ),
        (
            WRITTEN_RAW_BYTES,
            Counter,
            Bytes,
            "Serialized bytes of every value written",
        ),
        (
            WRITTEN_STORED_BYTES,
            Counter,
            Bytes,
            "Encoded bytes of every value written, after compression, before deduplication",
        ),
        (RECORDS, Gauge, Count, "Records in the store"),
        (
            EXPIRED_RECORDS,
            Gauge,
            Count,
            "Records past their expiry, waiting for the sweep",
        ),
        (BLOBS, Gauge, Count, "Unique values stored"),
        (
            LOGICAL_BYTES,
            Gauge,
            Bytes,
            "Serialized size of every record's value, counting a shared value once per record",
        ),
        (
            STORED_BYTES,
            Gauge,
            Bytes,
            "Bytes of stored values, after compression and deduplication",
        ),
        (
            FILE_BYTES,
            Gauge,
            Bytes,
            "Bytes the database occupies on disk",
        ),
        (
            RELEASED_BYTES,
            Gauge,
            Bytes,
            "Stored bytes of values no record refers to, which the next maintenance removes",
        ),
        (
            DICTIONARY_COLLECTIONS,
            Gauge,
            Count,
            "Collections compressed with a trained zstd dictionary",
        ),
        (
            BACKUP_AGE,
            Gauge,
            Seconds,
            "Seconds since the newest backup in the configured repository (+Inf when it has none)",
        ),
        (
            REPLICA_LAG_BYTES,
            Gauge,
            Bytes,
            "How far the furthest behind PostgreSQL standby is from the primary's WAL",
        ),
        (
            REPLICA_READS,
            Counter,
            Count,
            "Reads served by a PostgreSQL standby",
        ),
        (
            REPLICA_FALLBACKS,
            Counter,
            Count,
            "Reads that went to the primary because no standby had this store's writes or answered",
        ),
    ]
};

/// Gives the installed `metrics` recorder the help text and unit of every metric Strongbox
/// reports (Prometheus's `# HELP` lines). `Store::open` calls it, so an exporter installed
/// before the first store opens has them; call it after installing an exporter later.
pub fn describe_metrics() {
    for (name, kind, unit, help) in DESCRIPTIONS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, unit, help),
            Kind::Gauge => metrics::describe_gauge!(name, unit, help),
            Kind::Histogram => metrics::describe_histogram!(name, unit, help),
        }
    }
}

/// The operations whose count and latency are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Store,
    Retrieve,
    Delete,
    Commit,
}

impl Operation {
    const ALL: [Operation; 4] = [
        Operation::Store,
        Operation::Retrieve,
        Operation::Delete,
        Operation::Commit,
    ];

    fn name(self) -> &'static str {
        match self {
            Operation::Store => "store",
            Operation::Retrieve => "retrieve",
            Operation::Delete => "delete",
            Operation::Commit => "commit",
        }
    }
}

/// Count and latency percentiles of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct OpStats {
    /// Calls completed (successful or not).
    pub count: u64,
    /// Median latency, in microseconds (within 12.5%).
    pub p50_us: u64,
    /// 99th percentile latency, in microseconds (within 12.5%).
    pub p99_us: u64,
}

/// A latency histogram with lock-free recording: exact below 16 µs, then 8 buckets per power of
/// two (12.5% resolution) up to about 2^44 µs.
#[derive(Debug)]
struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
}

const SUB_BUCKETS: u64 = 8;
const LINEAR_BELOW: u64 = 16;
const N_BUCKETS: usize = 16 + 40 * 8;

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: (0..N_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
        }
    }

    fn bucket_of(micros: u64) -> usize {
        if micros < LINEAR_BELOW {
            return usize::try_from(micros).unwrap_or(0);
        }
        let exponent = u64::from(63 - micros.leading_zeros()); // >= 4
        let sub = (micros >> (exponent - 3)) & (SUB_BUCKETS - 1);
        let index = LINEAR_BELOW + (exponent - 4) * SUB_BUCKETS + sub;
        usize::try_from(index)
            .unwrap_or(N_BUCKETS - 1)
            .min(N_BUCKETS - 1)
    }

    /// The smallest value that falls in bucket `index`.
    fn lower_bound(index: usize) -> u64 {
        let index = index as u64;
        if index < LINEAR_BELOW {
            return index;
        }
        let exponent = (index - LINEAR_BELOW) / SUB_BUCKETS + 4;
        let sub = (index - LINEAR_BELOW) % SUB_BUCKETS;
        (1u64 << exponent) + (sub << (exponent - 3))
    }

    fn record(&self, micros: u64) {
        if let Some(bucket) = self.buckets.get(Self::bucket_of(micros)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn percentile(&self, fraction: f64) -> u64 {
        let total: u64 = self
            .buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64 * fraction).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return Self::lower_bound(index);
            }
        }
        0
    }

    fn stats(&self) -> OpStats {
        OpStats {
            count: self.count.load(Ordering::Relaxed),
            p50_us: self.percentile(0.50),
            p99_us: self.percentile(0.99),
        }
    }
}

/// The counters of one store.
#[derive(Debug)]
pub(crate) struct Recorder {
    operations: [Histogram; 4],
    errors: [AtomicU64; ErrorKind::ALL.len()],
    dedup_writes: AtomicU64,
    dedup_saved_bytes: AtomicU64,
    written_raw_bytes: AtomicU64,
    written_stored_bytes: AtomicU64,
}

/// Counters of the write path, as reported in `StatsSnapshot`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct WriteStats {
    /// Writes whose value was already stored, so only a reference was added.
    pub dedup_writes: u64,
    /// Serialized bytes those writes did not store again.
    pub dedup_saved_bytes: u64,
    /// Serialized bytes of every value written.
    pub raw_bytes: u64,
    /// Encoded bytes of every value written (after compression, before deduplication).
    pub stored_bytes: u64,
    /// `stored_bytes / raw_bytes`, 1.0 before any write.
    pub compression_ratio: f64,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            operations: Operation::ALL.map(|_| Histogram::new()),
            errors: ErrorKind::ALL.map(|_| AtomicU64::new(0)),
            dedup_writes: AtomicU64::new(0),
            dedup_saved_bytes: AtomicU64::new(0),
            written_raw_bytes: AtomicU64::new(0),
            written_stored_bytes: AtomicU64::new(0),
        }
    }

    /// Records a finished operation and, if it failed, its error kind.
    pub fn finish<T>(&self, operation: Operation, elapsed: Duration, result: &Result<T, Error>) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(histogram) = self.operations.get(operation as usize) {
            histogram.record(micros);
        }
        metrics::counter!(name::OPERATIONS, "op" => operation.name()).increment(1);
        metrics::histogram!(name::OPERATION_DURATION, "op" => operation.name())
            .record(elapsed.as_secs_f64());
        if let Err(error) = result {
            let kind = error.kind();
            if let Some(counter) = self.errors.get(kind as usize) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            metrics::counter!(name::ERRORS, "kind" => kind.as_str()).increment(1);
        }
    }

    /// Records a value handed to the writer.
    pub fn written(&self, raw_bytes: u64, stored_bytes: u64) {
        self.written_raw_bytes
            .fetch_add(raw_bytes, Ordering::Relaxed);
        self.written_stored_bytes
            .fetch_add(stored_bytes, Ordering::Relaxed);
        metrics::counter!(name::WRITTEN_RAW_BYTES).increment(raw_bytes);
        metrics::counter!(name::WRITTEN_STORED_BYTES).increment(stored_bytes);
    }

    /// Records a write that found its value already stored.
    pub fn deduplicated(&self, raw_bytes: u64) {
        self.dedup_writes.fetch_add(1, Ordering::Relaxed);
        self.dedup_saved_bytes
            .fetch_add(raw_bytes, Ordering::Relaxed);
        metrics::counter!(name::DEDUP_WRITES).increment(1);
        metrics::counter!(name::DEDUP_SAVED_BYTES).increment(raw_bytes);
    }

    pub fn op_stats(&self, operation: Operation) -> OpStats {
        self.operations
            .get(operation as usize)
            .map(Histogram::stats)
            .unwrap_or_default()
    }

    pub fn write_stats(&self) -> WriteStats {
        let raw_bytes = self.written_raw_bytes.load(Ordering::Relaxed);
        let stored_bytes = self.written_stored_bytes.load(Ordering::Relaxed);
        WriteStats {
            dedup_writes: self.dedup_writes.load(Ordering::Relaxed),
            dedup_saved_bytes: self.dedup_saved_bytes.load(Ordering::Relaxed),
            raw_bytes,
            stored_bytes,
            compression_ratio: if raw_bytes == 0 {
                1.0
            } else {
                stored_bytes as f64 / raw_bytes as f64
            },
        }
    }

    /// Error counts by kind, omitting kinds that never occurred.
    pub fn errors(&self) -> std::collections::BTreeMap<String, u64> {
        ErrorKind::ALL
            .iter()
            .zip(&self.errors)
            .map(|(kind, count)| (kind.as_str().to_owned(), count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bounds_round_trip() {
        let mut previous = 0;
        for micros in (0..100_000u64).chain([1 << 30, u64::MAX / 2]) {
            let bucket = Histogram::bucket_of(micros);
            assert!(bucket >= previous, "{micros}");
            previous = bucket;
            let lower = Histogram::lower_bound(bucket);
            assert!(lower <= micros, "{micros} {lower}");
            if micros < 1 << 40 {
                assert!(micros - lower <= micros / 8, "{micros} {lower}");
            }
        }
    }

    #[test]
    fn percentiles_come_from_the_recorded_values() {
        let histogram = Histogram::new();
        for micros in 1..=100 {
            histogram.record(micros * 100);
        }
        let stats = histogram.stats();
        assert_eq!(stats.count, 100);
        assert!((4_400..=5_000).contains(&stats.p50_us), "{stats:?}");
        assert!((8_700..=9_900).contains(&stats.p99_us), "{stats:?}");
    }
}
