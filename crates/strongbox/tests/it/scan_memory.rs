//! A scan of a million keys streams: every key once and in order, in memory that does not
//! grow with the collection.
//!
//! The parent test fills a collection, then runs this test binary again as child processes on
//! `a_child_scans_the_collection`, naming the file in `STRONGBOX_TEST_SCAN_DB` and what to do
//! in `STRONGBOX_TEST_SCAN_MODE`; without them that test does nothing. Each child reports its
//! peak resident memory, which only a process of its own can measure.

use std::path::Path;

use futures_util::TryStreamExt;
use futures_util::stream::BoxStream;
use strongbox::codec::Algorithm;
use strongbox::{CacheMode, Config, Durability, Entry, Result, Scan, Store};

use crate::common::{reported, run_child};

/// The file the child scans.
const SCAN_DB: &str = "STRONGBOX_TEST_SCAN_DB";

/// What the child does: `first` (stream the first `BASELINE_KEYS`), `all` (stream every key)
/// or `collect` (gather every entry in a `Vec`, the control).
const SCAN_MODE: &str = "STRONGBOX_TEST_SCAN_MODE";

/// The child test, by its path in this binary.
const CHILD: &str = "scan_memory::a_child_scans_the_collection";

/// The collection scanned.
const COLLECTION: &str = "million";

/// Records in the collection.
const KEYS: u64 = 1_000_000;

/// Records the baseline child reads.
const BASELINE_KEYS: u64 = 10_000;

/// Records per transaction of the fill.
const FILL_BATCH: u64 = 50_000;

/// How far the full scan's peak may rise above the baseline's, in bytes.
const BOUND_BYTES: u64 = 64 << 20;

/// The key of record `n`: zero-padded, so that byte order is numeric order.
fn key(n: u64) -> String {
    format!("k{n:07}")
}

/// The value of record `n`: 100 bytes, different for each record.
fn value(n: u64) -> String {
    format!("{n:0100}")
}

/// `Collection::scan(Scan::all())` over 1,000,000 records yields each key exactly once, in
/// strictly increasing order, each with its own value, and its peak memory stays within
/// 64 MiB of a scan that stops after 10,000 keys: the scan streams, page by page, instead of
/// holding the collection.
///
/// How the memory is measured, so that the assertion means something and holds on a shared,
/// noisy machine:
/// - Each scan runs in a child process of its own, which reports its peak resident set
///   (`VmHWM`, Linux). A peak belongs to one process: other processes' builds do not add to
///   it, and the test measures no time.
/// - The full scan is compared with the same child reading the first 10,000 keys (40 pages):
///   the same binary, runtime, store, connections and code paths, so their fixed costs (the
///   mapped debug binary, the runtime's threads, the connections) cancel out, and what grows
///   with the number of keys read remains. Of that, a correct scan has only bounded parts
///   (SQLite's page cache, at most 2 MiB a connection; the allocator's slack), far below the
///   bound. An absolute threshold would measure the binary instead.
/// - The bound is below what holding the records would cost: their keys and values alone are
///   108 MB (asserted below), before any `String`'s or row's overhead. A control child that
///   collects the same stream into a `Vec` must rise above the bound, which shows that the
///   measurement sees a million entries held at once, so the test cannot pass by being blind.
///
/// SQLite only: the paging is above the engine (`ScanState` asks the backend for one page of
/// `SCAN_PAGE` records at a time, the next starting after the last key yielded), and
/// PostgreSQL's backend answers each page with one `LIMIT`ed statement just as SQLite's does.
/// Filling a million records on PostgreSQL would only make the test slower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_a_million_keys_streams_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("million.db");
    fill(&path).await;
    let path = path.to_str().unwrap();
    let scan = async |mode: &str| run_child(CHILD, &[(SCAN_DB, path), (SCAN_MODE, mode)]).await;
    let first = scan("first").await;
    let all = scan("all").await;
    let collected = scan("collect").await;
    assert_eq!(reported(&first, "child: scanned"), BASELINE_KEYS);
    assert_eq!(reported(&all, "child: scanned"), KEYS);
    assert_eq!(reported(&collected, "child: scanned"), KEYS);

    let held_bytes = KEYS * (key(0).len() + value(0).len()) as u64;
    assert!(held_bytes > BOUND_BYTES, "the bound must be below the data");
    if !first.contains("child: peak_rss_kib") {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipped: the memory bound (peak RSS is read from /proc/self/status, on Linux)\n",
        );
        return;
    }
    let peak = |stdout: &str| reported(stdout, "child: peak_rss_kib") << 10;
    let (baseline, streamed, held) = (peak(&first), peak(&all), peak(&collected));
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    println!(
        "peak RSS: {:.1} MiB for {BASELINE_KEYS} keys, {:.1} MiB streaming {KEYS}, \
         {:.1} MiB collecting {KEYS}",
        mib(baseline),
        mib(streamed),
        mib(held)
    );
    assert!(
        streamed < baseline + BOUND_BYTES,
        "streaming {KEYS} keys peaked at {:.1} MiB, {:.1} MiB above {BASELINE_KEYS} keys",
        mib(streamed),
        mib(streamed.saturating_sub(baseline))
    );
    assert!(
        held > baseline + BOUND_BYTES,
        "the control, which holds every entry, peaked at only {:.1} MiB: the measurement is blind",
        mib(held)
    );
}

/// Fills `COLLECTION` with `KEYS` records as fast as the library writes: transactions of
/// `FILL_BATCH` puts, each encoded while the one before commits, without fsync, compression
/// or caching (none of which a scan depends on).
async fn fill(path: &Path) {
    let mut config = Config::new(path)
        .with_durability(Durability::Process)
        .with_cache_mode(CacheMode::WriteAround)
        .with_cache_capacity_bytes(0);
    config.compression.algorithm = Algorithm::None;
    let store = Store::open(config).await.unwrap();
    let mut committing = None;
    for batch in 0..KEYS / FILL_BATCH {
        let mut tx = store.transaction();
        for n in batch * FILL_BATCH..(batch + 1) * FILL_BATCH {
            tx.store(COLLECTION, &key(n), &value(n)).unwrap();
        }
        if let Some(previous) = committing.replace(tokio::spawn(tx.commit())) {
            previous.await.unwrap().unwrap();
        }
    }
    if let Some(last) = committing {
        last.await.unwrap().unwrap();
    }
    store.close().await.unwrap();
}

/// The child of the scan test, which does nothing unless `STRONGBOX_TEST_SCAN_DB` names a
/// file: opens it with the default configuration, scans as `STRONGBOX_TEST_SCAN_MODE` says,
/// and prints how many entries it read and its peak resident set in KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_scans_the_collection() {
    let Ok(path) = std::env::var(SCAN_DB) else {
        return;
    };
    let store = Store::open(Config::new(path)).await.unwrap();
    let records = store.collection::<String>(COLLECTION).unwrap();
    let scanned = match std::env::var(SCAN_MODE).unwrap().as_str() {
        "first" => check_in_order(records.scan(Scan::all().limit(BASELINE_KEYS as usize))).await,
        "all" => check_in_order(records.scan(Scan::all())).await,
        "collect" => {
            let entries: Vec<Entry<String>> =
                records.scan(Scan::all()).try_collect().await.unwrap();
            entries.len() as u64
        }
        mode => panic!("unknown scan mode {mode}"),
    };
    println!("child: scanned {scanned}");
    if let Some(peak) = peak_rss_kib() {
        println!("child: peak_rss_kib {peak}");
    }
    store.close().await.unwrap();
}

/// Walks `entries`, checking that keys strictly increase and each value is its key's; returns
/// how many there were. Holds one entry at a time.
async fn check_in_order(mut entries: BoxStream<'static, Result<Entry<String>>>) -> u64 {
    let mut previous = String::new();
    let mut count = 0;
    while let Some(entry) = entries.try_next().await.unwrap() {
        assert!(entry.key > previous, "{} after {previous}", entry.key);
        let n: u64 = entry.key[1..].parse().unwrap();
        assert_eq!(entry.value, value(n), "the value of {}", entry.key);
        previous = entry.key;
        count += 1;
    }
    count
}

/// This process's peak resident set in KiB (`VmHWM` in `/proc/self/status`); `None` where
/// there is no procfs.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
