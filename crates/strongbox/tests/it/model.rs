//! Model-based tests: random sequences of writes, transactions, read-write transactions
//! (disturbed by another writer between their reads and their commit), reopenings and
//! maintenance against a `BTreeMap` of values and versions, checking every read, `list`, `count`, the
//! deduplication counts and the cache after each step.
//!
//! `STRONGBOX_PROPTEST_CASES` sets the number of sequences (default 100).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use strongbox::{CacheMode, Config, Error, Expect, ListOptions, Scan, Store, Version};

const KEYS: u8 = 10;

#[derive(Debug, Clone, Copy)]
enum Condition {
    Absent,
    Current,
    Stale,
}

#[derive(Debug, Clone)]
enum Step {
    Store {
        key: u8,
        value: u8,
    },
    StoreIf {
        key: u8,
        value: u8,
        condition: Condition,
    },
    Delete {
        key: u8,
    },
    DeleteIf {
        key: u8,
        condition: Condition,
    },
    Transaction(Vec<(u8, Option<u8>)>),
    Transact(Transact),
    Reopen,
    Maintenance,
}

/// What a read-write transaction (`Store::transact`) does in one step.
#[derive(Debug, Clone)]
struct Transact {
    ops: Vec<TxOp>,
    /// A plain write of another writer, made between the first run's reads and its commit:
    /// `(key, Some(value))` stores, `(key, None)` deletes.
    disturbance: Option<(u8, Option<u8>)>,
    /// Whether the closure ends with an error (so nothing it wrote may land).
    fails: bool,
}

/// One call inside a transaction. What a `Put` writes depends on what was read before it, so
/// a transaction that read stale data would write a value the model does not expect.
#[derive(Debug, Clone)]
enum TxOp {
    Get(u8),
    Put(u8, u8),
    Delete(u8),
    Scan {
        from: u8,
        to: u8,
        reverse: bool,
        limit: Option<usize>,
    },
}

fn tx_op() -> impl Strategy<Value = TxOp> {
    prop_oneof![
        3 => (0..KEYS).prop_map(TxOp::Get),
        3 => (0..KEYS, 0..8u8).prop_map(|(key, value)| TxOp::Put(key, value)),
        1 => (0..KEYS).prop_map(TxOp::Delete),
        2 => (0..KEYS, 0..=KEYS, any::<bool>(), prop::option::of(0..4usize))
            .prop_map(|(from, to, reverse, limit)| TxOp::Scan { from, to, reverse, limit }),
    ]
}

fn transact() -> impl Strategy<Value = Transact> {
    (
        prop::collection::vec(tx_op(), 1..8),
        prop::option::of((0..KEYS, prop::option::weighted(0.75, 0..8u8))),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(ops, disturbance, fails)| Transact {
            ops,
            disturbance,
            fails,
        })
}

fn key_name(key: u8) -> String {
    format!("k{key:02}")
}

/// A small pool of values, some large and compressible, so deduplication and compression
/// both happen.
fn value_of(value: u8) -> serde_json::Value {
    match value % 4 {
        0 => serde_json::json!(value),
        1 => serde_json::json!({"chips": 1000, "flags": [true, false], "v": value}),
        2 => serde_json::json!("the house always wins ".repeat(40 + usize::from(value))),
        _ => serde_json::json!(null),
    }
}

fn condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        Just(Condition::Absent),
        Just(Condition::Current),
        Just(Condition::Stale)
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..KEYS, 0..8u8).prop_map(|(key, value)| Step::Store { key, value }),
        3 => (0..KEYS, 0..8u8, condition()).prop_map(|(key, value, condition)| Step::StoreIf { key, value, condition }),
        3 => (0..KEYS).prop_map(|key| Step::Delete { key }),
        2 => (0..KEYS, condition()).prop_map(|(key, condition)| Step::DeleteIf { key, condition }),
        3 => prop::collection::vec((0..KEYS, prop::option::weighted(0.75, 0..8u8)), 1..6).prop_map(Step::Transaction),
        4 => transact().prop_map(Step::Transact),
        1 => Just(Step::Reopen),
        1 => Just(Step::Maintenance),
    ]
}

/// The model: key → (value, version).
type Model = BTreeMap<String, (u8, u64)>;

fn expect_for(model: &Model, key: &str, condition: Condition) -> Expect {
    match (condition, model.get(key)) {
        (Condition::Absent, _) => Expect::Absent,
        (Condition::Current, Some((_, version))) => Expect::Version(Version::new(*version)),
        (Condition::Current, None) => Expect::Absent,
        (Condition::Stale, Some((_, version))) => Expect::Version(Version::new(version + 7)),
        (Condition::Stale, None) => Expect::Version(Version::new(3)),
    }
}

fn apply_store(model: &mut Model, key: &str, value: u8) -> u64 {
    let version = model.get(key).map_or(1, |(_, version)| version + 1);
    model.insert(key.to_owned(), (value, version));
    version
}

async fn run(steps: Vec<Step>, cache_mode: CacheMode) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("model.db"));
    config.cache_mode = cache_mode;
    // Maintenance then trains dictionaries on a handful of values, and recompresses.
    config.dictionary_min_values = 4;
    let mut store = Store::open(config.clone()).await.unwrap();
    let mut model = Model::new();
    for step in steps {
        match step {
            Step::Store { key, value } => {
                let key = key_name(key);
                let version = store.store("m", &key, &value_of(value)).await.unwrap();
                assert_eq!(version.get(), apply_store(&mut model, &key, value));
            }
            Step::StoreIf {
                key,
                value,
                condition,
            } => {
                let key = key_name(key);
                let expect = expect_for(&model, &key, condition);
                let actual = model.get(&key).map(|(_, version)| Version::new(*version));
                match store.store_if("m", &key, &value_of(value), expect).await {
                    Ok(version) => {
                        assert!(expect.is_met_by(actual));
                        assert_eq!(version.get(), apply_store(&mut model, &key, value));
                    }
                    Err(Error::Conflict { actual: found, .. }) => {
                        assert!(!expect.is_met_by(actual));
                        assert_eq!(found, actual);
                    }
                    Err(error) => panic!("{error}"),
                }
            }
            Step::Delete { key } => {
                let key = key_name(key);
                let existed = store.delete("m", &key).await.unwrap();
                assert_eq!(existed, model.remove(&key).is_some());
            }
            Step::DeleteIf { key, condition } => {
                let key = key_name(key);
                let expect = expect_for(&model, &key, condition);
                let actual = model.get(&key).map(|(_, version)| Version::new(*version));
                match store.delete_if("m", &key, expect).await {
                    Ok(existed) => {
                        assert!(expect.is_met_by(actual));
                        assert_eq!(existed, model.remove(&key).is_some());
                    }
                    Err(Error::Conflict { .. }) => assert!(!expect.is_met_by(actual)),
                    Err(error) => panic!("{error}"),
                }
            }
            Step::Transaction(writes) => {
                let mut tx = store.transaction();
                for (key, value) in &writes {
                    match value {
                        Some(value) => tx.store("m", &key_name(*key), &value_of(*value)).unwrap(),
                        None => tx.delete("m", &key_name(*key)).unwrap(),
                    };
                }
                let versions = tx.commit().await.unwrap();
                for ((key, value), version) in writes.iter().zip(versions) {
                    let key = key_name(*key);
                    match value {
                        Some(value) => assert_eq!(
                            version.map(Version::get),
                            Some(apply_store(&mut model, &key, *value))
                        ),
                        None => {
                            model.remove(&key);
                            assert_eq!(version, None);
                        }
                    }
                }
            }
            Step::Transact(transact) => run_transact(&store, &mut model, transact).await,
            Step::Reopen => {
                store.close().await.unwrap();
                store = Store::open(config.clone()).await.unwrap();
            }
            Step::Maintenance => {
                let report = store.maintenance().await.unwrap();
                assert!(report.errors.is_empty(), "{:?}", report.errors);
                assert_eq!(report.orphan_blobs_removed, 0);
            }
        }
        check(&store, &model).await;
    }
    let report = store.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    store.close().await.unwrap();
}

/// A store (`Some`) or a delete (`None`) of `key` in the model.
fn apply_write(model: &mut Model, key: &str, value: Option<u8>) {
    match value {
        Some(value) => drop(apply_store(model, key, value)),
        None => drop(model.remove(key)),
    }
}

/// What a transaction observed: each `Get`'s value, each `Scan`'s `(key, version, value)`s.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Value(Option<serde_json::Value>),
    Entries(Vec<(String, u64, serde_json::Value)>),
}

/// The value a `Put` writes: its own number, shifted by how many records were read before.
fn put_value(value: u8, present: usize) -> u8 {
    ((usize::from(value) + present) % 8) as u8
}

/// Runs the transaction serially on `model`: what it observes and what it leaves pending.
fn simulate(model: &Model, ops: &[TxOp]) -> (Vec<Seen>, BTreeMap<String, Option<u8>>) {
    let mut pending: BTreeMap<String, Option<u8>> = BTreeMap::new();
    let mut seen = Vec::new();
    let mut present = 0;
    for op in ops {
        match op {
            TxOp::Get(key) => {
                let key = key_name(*key);
                let value = match pending.get(&key) {
                    Some(value) => *value,
                    None => model.get(&key).map(|(value, _)| *value),
                };
                present += usize::from(value.is_some());
                seen.push(Seen::Value(value.map(value_of)));
            }
            TxOp::Put(key, value) => {
                pending.insert(key_name(*key), Some(put_value(*value, present)));
            }
            TxOp::Delete(key) => {
                pending.insert(key_name(*key), None);
            }
            TxOp::Scan {
                from,
                to,
                reverse,
                limit,
            } => {
                let (from, to) = (key_name(*from), key_name(*to));
                let mut entries: Vec<(String, u64, serde_json::Value)> = (0..KEYS)
                    .map(key_name)
                    .filter(|key| *key >= from && *key < to)
                    .filter_map(|key| {
                        let committed = model.get(&key).copied();
                        let value = match pending.get(&key) {
                            Some(value) => (*value)?,
                            None => committed?.0,
                        };
                        let version = match (pending.contains_key(&key), committed) {
                            (false, Some((_, version))) => version,
                            (true, Some((_, version))) => version + 1,
                            (_, None) => 1,
                        };
                        Some((key, version, value_of(value)))
                    })
                    .collect();
                if *reverse {
                    entries.reverse();
                }
                entries.truncate(limit.unwrap_or(usize::MAX));
                present += entries.len();
                seen.push(Seen::Entries(entries));
            }
        }
    }
    (seen, pending)
}

/// Runs `transact` on the store, disturbing its first run as it says, and checks it against
/// the serial model: the run that committed observed exactly what the transaction observes
/// when run alone after the disturbance, and the store then holds that run's writes.
async fn run_transact(store: &Store, model: &mut Model, transact: Transact) {
    let runs = std::sync::atomic::AtomicU32::new(0);
    let last_seen = std::sync::Mutex::new(Vec::new());
    let result = store
        .transact(async |tx| {
            let run = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut seen = Vec::new();
            let mut present = 0;
            for op in &transact.ops {
                match op {
                    TxOp::Get(key) => {
                        let value = tx.get::<serde_json::Value>("m", &key_name(*key)).await?;
                        present += usize::from(value.is_some());
                        seen.push(Seen::Value(value));
                    }
                    TxOp::Put(key, value) => {
                        tx.put("m", &key_name(*key), &value_of(put_value(*value, present)))?
                    }
                    TxOp::Delete(key) => tx.delete("m", &key_name(*key))?,
                    TxOp::Scan {
                        from,
                        to,
                        reverse,
                        limit,
                    } => {
                        let (from, to) = (key_name(*from), key_name(*to));
                        let mut scan = Scan::range(from.as_str()..to.as_str());
                        if *reverse {
                            scan = scan.reverse();
                        }
                        if let Some(limit) = limit {
                            scan = scan.limit(*limit);
                        }
                        let entries = tx.scan::<serde_json::Value>("m", scan).await?;
                        present += entries.len();
                        let entries = entries
                            .into_iter()
                            .map(|entry| (entry.key, entry.version.get(), entry.value));
                        seen.push(Seen::Entries(entries.collect()));
                    }
                }
            }
            if run == 0
                && let Some((key, value)) = transact.disturbance
            {
                match value {
                    Some(value) => drop(store.store("m", &key_name(key), &value_of(value)).await?),
                    None => drop(store.delete("m", &key_name(key)).await?),
                }
            }
            *last_seen.lock().unwrap() = seen;
            if transact.fails {
                Err(Error::Closed)
            } else {
                Ok(())
            }
        })
        .await;
    let runs = runs.into_inner();
    if transact.fails {
        // The closure's error ends the transaction at its first run, which read before the
        // disturbance.
        assert!(matches!(result, Err(Error::Closed)), "{result:?}");
        assert_eq!(runs, 1);
        let (expected, _) = simulate(model, &transact.ops);
        assert_eq!(
            *last_seen.lock().unwrap(),
            expected,
            "what the failed run saw"
        );
    }
    if let Some((key, value)) = transact.disturbance {
        apply_write(model, &key_name(key), value);
    }
    if transact.fails {
        return;
    }
    assert!(runs <= 2, "{runs} runs for one disturbance");
    let (expected, pending) = simulate(model, &transact.ops);
    assert_eq!(
        *last_seen.lock().unwrap(),
        expected,
        "what the committed run saw"
    );
    result.unwrap();
    for (key, value) in pending {
        apply_write(model, &key, value);
    }
}

async fn check(store: &Store, model: &Model) {
    for key in (0..KEYS).map(key_name) {
        let record = store
            .retrieve_record::<serde_json::Value>("m", &key)
            .await
            .unwrap();
        match (record, model.get(&key)) {
            (None, None) => {}
            (Some(record), Some((value, version))) => {
                assert_eq!(record.value, value_of(*value), "{key}");
                assert_eq!(record.meta.version.get(), *version, "{key}");
            }
            (found, expected) => panic!("{key}: found {found:?}, expected {expected:?}"),
        }
    }
    let keys: Vec<String> = model.keys().cloned().collect();
    assert_eq!(store.list("m", ListOptions::all()).await.unwrap(), keys);
    assert_eq!(store.count("m").await.unwrap(), model.len() as u64);
    let stats = store.storage_stats().await.unwrap();
    let distinct: BTreeSet<String> = model
        .values()
        .map(|(value, _)| value_of(*value).to_string())
        .collect();
    assert_eq!(stats.records, model.len() as u64);
    assert_eq!(
        stats.blobs,
        distinct.len() as u64,
        "one blob per distinct value"
    );
}

fn cases() -> u32 {
    std::env::var("STRONGBOX_PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(100)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_a_map_of_versioned_values(
        steps in prop::collection::vec(step(), 1..40),
        write_around in any::<bool>(),
    ) {
        let mode = if write_around { CacheMode::WriteAround } else { CacheMode::WriteThrough };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(run(steps, mode));
    }
}
