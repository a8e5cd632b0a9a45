//! The blocking API (`strongbox::blocking`): plain `#[test]` functions on plain threads, no
//! runtime of the test's own, each run on a temporary SQLite file and on a scratch PostgreSQL
//! database (skipped where no server answers, as `common` says). Inside a tokio runtime every
//! call is `Error::BlockingInAsync`, never a panic.

use std::collections::BTreeMap;
use std::ops::Bound;

use strongbox::blocking::{Collection, ScanIter, Store, Transaction};
use strongbox::{Config, Error, ErrorKind, Expect, ListOptions, Scan};
use tempfile::TempDir;

use crate::common::{Player, ScratchDatabase, player};

/// Where a test's store lives, cleaned up when dropped (after the store is closed).
struct Place {
    config: Config,
    _dir: TempDir,
    _scratch: Option<ScratchDatabase>,
}

fn sqlite() -> Place {
    let dir = tempfile::tempdir().unwrap();
    Place {
        config: Config::new(dir.path().join("blocking.db")),
        _dir: dir,
        _scratch: None,
    }
}

/// A scratch PostgreSQL database, created on a runtime of its own that is gone before the
/// test starts; `None` when skipped.
fn postgres() -> Option<Place> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scratch = runtime.block_on(ScratchDatabase::create())?;
    drop(runtime);
    Some(Place {
        config: Config::postgres(scratch.url()),
        _dir: tempfile::tempdir().unwrap(),
        _scratch: Some(scratch),
    })
}

/// One `#[test]` per test function per engine.
macro_rules! on_every_engine {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(super::sqlite());
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(place) = super::postgres() {
                        super::$name(place);
                    }
                }
            )*
        }
    };
}

on_every_engine!(
    the_store_and_a_collection_read_and_write_without_async,
    eight_threads_count_to_four_hundred_through_transact_and_update,
    scans_walk_pages_and_match_a_model,
    a_transaction_body_that_fails_or_panics_writes_nothing,
);

/// Checks that the store is consistent, and closes it.
fn finish(store: Store) {
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    store.close().unwrap();
}

fn the_store_and_a_collection_read_and_write_without_async(place: Place) {
    let store = Store::open(place.config.clone()).unwrap();
    let first = store
        .store("players", "alice", &player("alice", 100))
        .unwrap();
    assert_eq!(
        store.retrieve::<Player>("players", "alice").unwrap(),
        Some(player("alice", 100))
    );
    let record = store
        .retrieve_record::<Player>("players", "alice")
        .unwrap()
        .unwrap();
    assert_eq!(record.meta.version, first);
    assert!(store.exists("players", "alice").unwrap());
    assert_eq!(store.version("players", "alice").unwrap(), Some(first));
    let refused = store.store_if("players", "alice", &player("alice", 1), Expect::Absent);
    assert!(
        matches!(refused, Err(Error::Conflict { .. })),
        "{refused:?}"
    );
    store
        .store_if(
            "players",
            "alice",
            &player("alice", 150),
            Expect::Version(first),
        )
        .unwrap();
    store.store("players", "bob", &player("bob", 50)).unwrap();
    assert_eq!(
        store.list("players", ListOptions::all()).unwrap(),
        ["alice", "bob"]
    );
    assert_eq!(store.count("players").unwrap(), 2);

    let mut tx: Transaction = store.transaction();
    tx.store("ledger", "t1", &("alice", "bob", 10))
        .unwrap()
        .delete("players", "bob")
        .unwrap();
    assert_eq!(tx.len(), 2);
    let versions = tx.commit().unwrap();
    assert!(
        versions[0].is_some() && versions[1].is_none(),
        "{versions:?}"
    );
    assert!(!store.exists("players", "bob").unwrap());
    assert_eq!(store.collections().unwrap(), ["ledger", "players"]);
    let refused = store.delete_if("ledger", "t1", Expect::Absent);
    assert!(
        matches!(refused, Err(Error::Conflict { .. })),
        "{refused:?}"
    );
    assert_eq!(store.drop_collection("ledger").unwrap(), 1);
    assert!(store.delete("players", "alice").unwrap());
    assert!(!store.delete("players", "alice").unwrap());

    let players: Collection<Player> = store.collection("players").unwrap();
    assert!(matches!(
        store.collection::<Player>(""),
        Err(Error::InvalidName { .. })
    ));
    assert_eq!(players.name(), "players");
    players.put("alice", &player("alice", 100)).unwrap();
    players.put("carol", &player("carol", 70)).unwrap();
    assert_eq!(players.get("alice").unwrap(), Some(player("alice", 100)));
    assert_eq!(
        players.get_many(["carol", "nobody", "alice"]).unwrap(),
        [Some(player("carol", 70)), None, Some(player("alice", 100))]
    );
    let richer = players.update("alice", |current| {
        current.map(|alice| player("alice", alice.chips + 5))
    });
    assert_eq!(richer.unwrap(), Some(player("alice", 105)));
    assert_eq!(players.update("dave", |current| current).unwrap(), None);
    assert!(!store.exists("players", "dave").unwrap());
    assert_eq!(players.update("carol", |_| None).unwrap(), None);
    assert_eq!(players.get("carol").unwrap(), None);
    assert!(players.delete("alice").unwrap());
    for key in ["t:1", "t:2", "u:1"] {
        players.put(key, &player(key, 1)).unwrap();
    }
    assert_eq!(players.delete_prefix("t:").unwrap(), 2);
    assert_eq!(players.clear().unwrap(), 1);
    assert_eq!(store.count("players").unwrap(), 0);

    let stats = store.stats().unwrap();
    assert!(stats.store.count >= 4, "{stats:?}");
    assert!(store.maintenance().unwrap().errors.is_empty());
    let inner = store.inner().clone();
    store.store("players", "erin", &player("erin", 5)).unwrap();
    assert_eq!(store.block_on(inner.count("players")).unwrap(), 1);

    let other = store.clone();
    finish(store);
    let closed = other.count("players");
    assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");
    let cached = other.retrieve::<Player>("players", "erin");
    assert!(matches!(cached, Err(Error::Closed)), "{cached:?}");
    drop(place);
}

fn eight_threads_count_to_four_hundred_through_transact_and_update(place: Place) {
    let store = Store::open(place.config.clone()).unwrap();
    let counters = store.collection::<u64>("counters").unwrap();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let store = store.clone();
            scope.spawn(move || {
                let mut runs = 0;
                for _ in 0..50 {
                    store
                        .transact(|tx| {
                            runs += 1;
                            let count: u64 = tx.get("counters", "transact")?.unwrap_or(0);
                            tx.put("counters", "transact", &(count + 1))
                        })
                        .unwrap();
                }
                assert!(runs >= 50);
            });
            let counters = counters.clone();
            scope.spawn(move || {
                for _ in 0..50 {
                    counters
                        .update("update", |count| Some(count.unwrap_or(0) + 1))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(counters.get("transact").unwrap(), Some(400));
    assert_eq!(counters.get("update").unwrap(), Some(400));
    finish(store);
    drop(place);
}

/// What `scan` should yield from `model`: the keys `selects` accepts, in order or reversed,
/// at most `limit`.
fn expected(
    model: &BTreeMap<String, u32>,
    selects: impl Fn(&str) -> bool,
    reverse: bool,
    limit: usize,
) -> Vec<(String, u32)> {
    let selected = model
        .iter()
        .filter(|(key, _)| selects(key))
        .map(|(key, value)| (key.clone(), *value));
    if reverse {
        selected.rev().take(limit).collect()
    } else {
        selected.take(limit).collect()
    }
}

fn walked(scan: ScanIter<u32>) -> Vec<(String, u32)> {
    scan.map(|entry| entry.map(|entry| (entry.key, entry.value)))
        .collect::<strongbox::Result<_>>()
        .unwrap()
}

fn scans_walk_pages_and_match_a_model(place: Place) {
    let store = Store::open(place.config.clone()).unwrap();
    let mut model = BTreeMap::new();
    let mut tx = store.transaction();
    for n in 0..300u32 {
        let key = format!("{}:{n:04}", ["a", "b", "c"][n as usize % 3]);
        tx.store("scores", &key, &n).unwrap();
        model.insert(key, n);
    }
    tx.commit().unwrap();
    let scores = store.collection::<u32>("scores").unwrap();
    let in_range = |key: &str| ("a:0100".."c:0000").contains(&key);
    let cases: Vec<(Scan, Vec<(String, u32)>)> = vec![
        (Scan::all(), expected(&model, |_| true, false, usize::MAX)),
        (
            Scan::all().reverse(),
            expected(&model, |_| true, true, usize::MAX),
        ),
        (
            Scan::all().limit(260),
            expected(&model, |_| true, false, 260),
        ),
        (
            Scan::prefix("b:"),
            expected(&model, |key| key.starts_with("b:"), false, usize::MAX),
        ),
        (
            Scan::prefix("a:").reverse().limit(7),
            expected(&model, |key| key.starts_with("a:"), true, 7),
        ),
        (
            Scan::range("a:0100".."c:0000"),
            expected(&model, in_range, false, usize::MAX),
        ),
        (
            Scan::range((Bound::Excluded("b:0100"), Bound::Unbounded))
                .reverse()
                .limit(30),
            expected(&model, |key| key > "b:0100", true, 30),
        ),
        (Scan::prefix("z"), Vec::new()),
    ];
    for (scan, want) in cases {
        assert_eq!(walked(scores.scan(scan.clone())), want, "{scan:?}");
    }
    let mut all = scores.scan(Scan::all());
    assert_eq!(all.by_ref().count(), 300);
    assert!(all.next().is_none(), "a finished scan stays finished");
    finish(store);
    drop(place);
}

fn a_transaction_body_that_fails_or_panics_writes_nothing(place: Place) {
    let store = Store::open(place.config.clone()).unwrap();
    store.store("t", "a", &1u32).unwrap();
    let failed: strongbox::Result<()> = store.transact(|tx| {
        tx.put("t", "c", &3u32)?;
        tx.delete("t", "a")?;
        Err(Error::Closed)
    });
    assert!(matches!(failed, Err(Error::Closed)), "{failed:?}");
    assert_eq!(store.retrieve::<u32>("t", "c").unwrap(), None);
    assert_eq!(store.retrieve::<u32>("t", "a").unwrap(), Some(1));

    let bad = store.transact(|tx| {
        tx.put("t", "d", &4u32)?;
        tx.put("", "k", &1u32)
    });
    assert!(matches!(bad, Err(Error::InvalidName { .. })), "{bad:?}");
    assert_eq!(store.retrieve::<u32>("t", "d").unwrap(), None);

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.transact(|tx| -> strongbox::Result<()> {
            tx.put("t", "e", &5u32)?;
            panic!("the body panics after a write");
        })
    }));
    assert!(panicked.is_err());
    assert_eq!(store.retrieve::<u32>("t", "e").unwrap(), None);

    let seen = store
        .transact(|tx| {
            tx.put("t", "b", &2u32)?;
            let b: Option<u32> = tx.get("t", "b")?;
            tx.delete("t", "b")?;
            let gone: Option<u32> = tx.get("t", "b")?;
            Ok((b, gone))
        })
        .unwrap();
    assert_eq!(seen, (Some(2), None));
    assert_eq!(store.list("t", ListOptions::all()).unwrap(), ["a"]);

    // A scan sees the transaction's own writes.
    let scanned = store
        .transact(|tx| {
            tx.put("t", "f", &6u32)?;
            tx.scan::<u32>("t", strongbox::Scan::all())
        })
        .unwrap();
    let scanned: Vec<(String, u32)> = scanned.into_iter().map(|e| (e.key, e.value)).collect();
    assert_eq!(scanned, [("a".to_owned(), 1), ("f".to_owned(), 6)]);
    finish(store);
    drop(place);
}

/// Asserts that a call was refused as a blocking call inside a runtime.
macro_rules! assert_refused {
    ($call:expr) => {
        match $call {
            Err(Error::BlockingInAsync { .. }) => {}
            other => panic!("{} returned {other:?}", stringify!($call)),
        }
    };
}

#[test]
fn every_call_inside_a_tokio_runtime_is_an_error_not_a_panic() {
    let place = sqlite();
    let store = Store::open(place.config.clone()).unwrap();
    store.store("k", "a", &1u32).unwrap();
    let numbers = store.collection::<u32>("k").unwrap();
    let mut scan = numbers.scan(Scan::all());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = place.config.clone();
    let inside = store.clone();
    let numbers_inside = numbers.clone();
    let mut ran = false;
    runtime.block_on(async {
        assert_refused!(Store::open(config));
        assert_refused!(inside.store("k", "b", &2u32));
        assert_refused!(inside.store_if("k", "b", &2u32, Expect::Absent));
        assert_refused!(inside.retrieve::<u32>("k", "a"));
        assert_refused!(inside.retrieve_record::<u32>("k", "a"));
        assert_refused!(inside.exists("k", "a"));
        assert_refused!(inside.version("k", "a"));
        assert_refused!(inside.delete("k", "a"));
        assert_refused!(inside.delete_if("k", "a", Expect::Absent));
        assert_refused!(inside.list("k", ListOptions::all()));
        assert_refused!(inside.count("k"));
        assert_refused!(inside.collections());
        assert_refused!(inside.drop_collection("k"));
        assert_refused!(inside.stats());
        assert_refused!(inside.maintenance());
        assert_refused!(inside.verify());
        assert_refused!(inside.block_on(async { Ok(()) }));
        assert_refused!(inside.transact(|_| {
            ran = true;
            Ok(())
        }));
        let mut tx = inside.transaction();
        tx.store("k", "c", &3u32).unwrap();
        assert_refused!(tx.commit());
        assert_refused!(numbers_inside.put("b", &2));
        assert_refused!(numbers_inside.get("a"));
        assert_refused!(numbers_inside.get_many(["a"]));
        assert_refused!(numbers_inside.update("a", |_| Some(9)));
        assert_refused!(numbers_inside.delete("a"));
        assert_refused!(numbers_inside.delete_prefix(""));
        assert_refused!(numbers_inside.clear());
        assert_refused!(scan.next().unwrap());
        assert!(scan.next().is_none(), "a refused scan ends");
        assert_refused!(inside.clone().close());
    });
    assert!(!ran, "a refused transaction does not run its body");

    // A current-thread runtime (`#[tokio::test]`'s) and tokio's blocking threads are inside too.
    let single = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let error = single
        .block_on(async { store.count("k") })
        .expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::BlockingInAsync);
    assert!(
        error.to_string().contains("inside a tokio runtime"),
        "{error}"
    );
    let on_blocking_thread = store.clone();
    let refused = runtime
        .block_on(runtime.spawn_blocking(move || on_blocking_thread.count("k")))
        .unwrap();
    assert_refused!(refused);

    // Nothing was done, and the store still works outside.
    assert_eq!(
        store.list("k", ListOptions::all()).unwrap(),
        ["a"],
        "a refused call wrote nothing"
    );
    finish(store);
    drop(place);
}

#[test]
fn the_last_handle_may_be_dropped_inside_a_runtime() {
    let place = sqlite();
    let store = Store::open(place.config.clone()).unwrap();
    store.store("k", "a", &1u32).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move { drop(store) });
    drop(runtime);
    let store = Store::open(place.config.clone()).unwrap();
    assert_eq!(store.retrieve::<u32>("k", "a").unwrap(), Some(1));
    finish(store);
}

#[test]
fn the_handles_may_cross_threads() {
    fn shared<T: Clone + Send + Sync>() {}
    fn sent<T: Send>() {}
    shared::<Store>();
    shared::<Collection<u32>>();
    sent::<Transaction>();
    sent::<ScanIter<u32>>();
}
