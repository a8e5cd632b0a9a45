//! Adaptive compression: dictionaries are trained where they pay, values are recompressed in
//! place and stay readable everywhere: after a reopen, from another process, after retraining,
//! in backups, restores and copies, and a damaged dictionary is reported, not fatal.

use futures_util::TryStreamExt;
use serde_json::{Value, json};
use strongbox::backup::{BackupRef, Repository, RestoreOptions};
use strongbox::{Config, Error, Scan, Store};

use crate::common::Harness;

/// Player profiles like the sample data's: small, alike, individually poorly compressible.
fn player(i: u64) -> Value {
    let theme = ["dark", "light", "felt"][(i % 3) as usize];
    let achievements = &["first_roll", "hot_hand", "high_roller"][..(i % 3 + 1) as usize];
    json!({
        "id": format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        "name": format!("shooter_{i}"),
        "chips": i * 37 % 5000,
        "level": i % 40,
        "settings": {"sound": i.is_multiple_of(2), "theme": theme, "auto_roll": false},
        "stats": {"games": i % 300, "wins": i % 120, "biggest_pot": i * 13 % 9000},
        "achievements": achievements,
    })
}

/// A different shape, for drift.
fn ledger(i: u64) -> Value {
    json!({
        "tx": format!("{:016x}", i.wrapping_mul(0x2545_f491_4f6c_dd1d)),
        "from": format!("acct-{}", i % 97), "to": format!("acct-{}", (i * 7) % 97),
        "amount": i * 11 % 777, "memo": format!("settlement of round {}", i % 50),
        "signatures": [format!("{:064x}", i), format!("{:064x}", i + 1)],
    })
}

const PLAYERS: u64 = 600;

fn small_threshold(config: &mut Config) {
    config.dictionary_min_values = 200;
    // Training here is the explicit `train_dictionaries`, whose reports the tests check.
    config.train_while_writing = false;
    // Reads below must come from the database, not from the values cached at write time.
    config.cache_capacity_bytes = 0;
}

async fn fill(store: &Store, collection: &str, count: u64, make: fn(u64) -> Value) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(200) {
        let mut tx = store.transaction();
        for i in chunk {
            tx.store(collection, &format!("{i:05}"), &make(*i)).unwrap();
        }
        tx.commit().await.unwrap();
    }
}

async fn check_all(store: &Store, collection: &str, count: u64, make: fn(u64) -> Value) {
    for i in 0..count {
        let value: Option<Value> = store
            .retrieve(collection, &format!("{i:05}"))
            .await
            .unwrap();
        assert_eq!(value, Some(make(i)), "{collection}/{i:05}");
    }
}

async fn a_collection_gets_a_dictionary_and_shrinks(store: &Store) {
    fill(store, "players", PLAYERS, player).await;
    fill(store, "chat", 20, player).await;
    let before = store.storage_stats().await.unwrap();

    let report = store.train_dictionaries().await.unwrap();
    let players = report
        .collections
        .iter()
        .find(|c| c.collection == "players")
        .unwrap();
    assert_eq!(players.action, "trained", "{report:?}");
    assert!(players.dictionary.is_some());
    assert!(players.values_recompressed >= PLAYERS - 5, "{players:?}");
    let (ratio_before, ratio_after) = (players.ratio_before.unwrap(), players.ratio_after.unwrap());
    assert!(ratio_after < ratio_before * 0.9, "{players:?}");
    let chat = report
        .collections
        .iter()
        .find(|c| c.collection == "chat")
        .unwrap();
    assert_eq!(chat.action, "too_few_values");

    let after = store.storage_stats().await.unwrap();
    assert_eq!(after.records, before.records);
    assert_eq!(after.unique_bytes, before.unique_bytes);
    assert!(
        after.stored_bytes * 10 < before.stored_bytes * 8,
        "stored {} -> {}",
        before.stored_bytes,
        after.stored_bytes
    );
    check_all(store, "players", PLAYERS, player).await;
    check_all(store, "chat", 20, player).await;

    // A second run has nothing to do, and new writes use the dictionary (and read back).
    let again = store.train_dictionaries().await.unwrap();
    assert!(
        again
            .collections
            .iter()
            .all(|c| c.action != "trained" && c.action != "retrained"),
        "{again:?}"
    );
    store.store("players", "new", &player(9_999)).await.unwrap();
    let read: Option<Value> = store.retrieve("players", "new").await.unwrap();
    assert_eq!(read, Some(player(9_999)));
    assert!(store.verify().await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_collection_gets_a_dictionary_and_shrinks() {
    let harness = Harness::sqlite_with(small_threshold).await;
    a_collection_gets_a_dictionary_and_shrinks(&harness.store).await;
    // New values of the collection are written with the dictionary (codec tag 3).
    let conn = rusqlite::Connection::open(harness.path()).unwrap();
    let tags: Vec<(u8, i64)> = conn
        .prepare("SELECT unicode(substr(data, 1, 1)), count(*) FROM blobs GROUP BY 1 ORDER BY 1")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        tags.iter().any(|(tag, count)| *tag == 3 && *count > 500),
        "{tags:?}"
    );
    drop(conn);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_collection_gets_a_dictionary_and_shrinks() {
    let Some(harness) = Harness::postgres_with(small_threshold).await else {
        return;
    };
    a_collection_gets_a_dictionary_and_shrinks(&harness.store).await;
    harness.finish().await;
}

/// With `train_while_writing` (the default), a collection gets its dictionary while it is
/// written, with no maintenance run: the values written before it are recompressed, those
/// after are written with it, and every one reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_is_trained_while_it_is_written() {
    let harness = Harness::sqlite_with(|config| {
        config.dictionary_min_values = 200;
        config.cache_capacity_bytes = 0;
    })
    .await;
    let store = &harness.store;
    // One transaction: training is due once it has committed, and samples all of it.
    let mut tx = store.transaction();
    for i in 0..PLAYERS {
        tx.store("players", &format!("{i:05}"), &player(i)).unwrap();
    }
    tx.commit().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.stats().await.unwrap().storage.dictionary_collections == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no dictionary 60 s after the writes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Later writes use it; the training's recompression may still be finishing.
    let mut tx = store.transaction();
    for i in PLAYERS..PLAYERS + 200 {
        tx.store("players", &format!("{i:05}"), &player(i)).unwrap();
    }
    tx.commit().await.unwrap();
    let config = store.config().clone();
    store.close().await.unwrap();
    let store = Store::open(config).await.unwrap();
    check_all(&store, "players", PLAYERS + 200, player).await;
    let conn = rusqlite::Connection::open(harness.path()).unwrap();
    let plain: i64 = conn
        .query_row(
            "SELECT count(*) FROM blobs WHERE unicode(substr(data, 1, 1)) <> 3",
            [],
            |row| row.get(0),
        )
        .unwrap();
    // Only values stored before the dictionary, and not yet recompressed when the store
    // closed, may be without it: none of the last 200.
    assert!(plain <= 600, "{plain} values without the dictionary");
    let newest: i64 = conn
        .query_row(
            "SELECT count(*) FROM records r JOIN blobs b ON b.ref = r.blob
             WHERE r.key >= '00600' AND unicode(substr(b.data, 1, 1)) = 3",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(newest, 200);
    assert!(store.verify().await.unwrap().is_clean());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_do_not_compress_get_no_dictionary() {
    let harness = Harness::sqlite_with(small_threshold).await;
    let mut tx = harness.store.transaction();
    for i in 0..300u64 {
        // 48 bytes of BLAKE3 output as hex: no structure a dictionary could learn.
        let noise: String = (0..3)
            .map(|j| {
                blake3::hash(&(i * 3 + j).to_le_bytes())
                    .to_hex()
                    .to_string()
            })
            .collect();
        tx.store("noise", &format!("{i:05}"), &noise).unwrap();
    }
    tx.commit().await.unwrap();
    let report = harness.store.train_dictionaries().await.unwrap();
    assert_eq!(report.collections[0].action, "no_gain", "{report:?}");
    assert_eq!(report.collections[0].values_recompressed, 0);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifting_collection_is_retrained_and_old_values_stay_readable() {
    let mut harness = Harness::sqlite_with(small_threshold).await;
    let store = &harness.store;
    fill(store, "mixed", PLAYERS, player).await;
    let first = store.train_dictionaries().await.unwrap();
    assert_eq!(first.collections[0].action, "trained");
    // Half the keys now hold another shape: the newest values compress worse.
    for chunk in (0..PLAYERS / 2).collect::<Vec<_>>().chunks(100) {
        let mut tx = store.transaction();
        for i in chunk {
            tx.store("mixed", &format!("{i:05}"), &ledger(*i)).unwrap();
        }
        tx.commit().await.unwrap();
    }
    let second = store.train_dictionaries().await.unwrap();
    let mixed = &second.collections[0];
    assert_eq!(mixed.action, "retrained", "{second:?}");
    assert_ne!(mixed.dictionary, first.collections[0].dictionary);
    harness.reopen().await;
    let store = &harness.store;
    for i in 0..PLAYERS {
        let expected = if i < PLAYERS / 2 {
            ledger(i)
        } else {
            player(i)
        };
        let value: Option<Value> = store.retrieve("mixed", &format!("{i:05}")).await.unwrap();
        assert_eq!(value, Some(expected));
    }
    let conn = rusqlite::Connection::open(harness.path()).unwrap();
    let dictionaries: i64 = conn
        .query_row("SELECT count(*) FROM dictionaries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(dictionaries, 2, "old dictionaries are kept");
    drop(conn);
    harness.finish().await;
}

async fn another_store_reads_values_compressed_after_it_opened(config: Config) {
    let first = Store::open(config.clone()).await.unwrap();
    let second = Store::open(config.clone()).await.unwrap();
    let scanning = Store::open(config).await.unwrap();
    fill(&first, "players", PLAYERS, player).await;
    let report = first.train_dictionaries().await.unwrap();
    assert_eq!(report.collections[0].action, "trained");
    // A scan decodes its pages on other threads: it loads the dictionary on first sight too.
    let scanned: Vec<_> = scanning
        .collection::<Value>("players")
        .unwrap()
        .scan(Scan::all())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(scanned.len() as u64, PLAYERS);
    for entry in scanned {
        assert_eq!(entry.value, player(entry.key.parse().unwrap()));
    }
    scanning.close().await.unwrap();
    // `second` opened before the dictionary existed: it loads it on first sight.
    check_all(&second, "players", PLAYERS, player).await;
    // And writes with it after its own maintenance; `first` reads those.
    second.maintenance().await.unwrap();
    second
        .store("players", "from_second", &player(77_777))
        .await
        .unwrap();
    let read: Option<Value> = first.retrieve("players", "from_second").await.unwrap();
    assert_eq!(read, Some(player(77_777)));
    assert!(second.verify().await.unwrap().is_clean());
    second.close().await.unwrap();
    first.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_another_store_reads_values_compressed_after_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("shared.db"));
    small_threshold(&mut config);
    another_store_reads_values_compressed_after_it_opened(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_another_server_reads_values_compressed_after_it_opened() {
    let Some(scratch) = crate::common::ScratchDatabase::create().await else {
        return;
    };
    let mut config = Config::postgres(scratch.url());
    small_threshold(&mut config);
    another_store_reads_values_compressed_after_it_opened(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_carry_their_dictionaries_into_restores_and_copies() {
    let harness = Harness::sqlite_with(small_threshold).await;
    let store = &harness.store;
    fill(store, "players", PLAYERS, player).await;
    store.train_dictionaries().await.unwrap();
    let repository = Repository::open_or_create(harness.dir.path().join("repo"))
        .await
        .unwrap();
    repository.backup(store, |_| {}).await.unwrap();
    let dictionaries: Vec<_> = std::fs::read_dir(repository.dir().join("dictionaries"))
        .unwrap()
        .collect();
    assert_eq!(dictionaries.len(), 1);
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());

    // Restore into a new file: every value reads back, and the store has the dictionary.
    let mut target = Config::new(harness.dir.path().join("restored.db"));
    small_threshold(&mut target);
    repository
        .restore(&BackupRef::Latest, &target, &RestoreOptions::all(), |_| {})
        .await
        .unwrap();
    let restored = Store::open(target).await.unwrap();
    check_all(&restored, "players", PLAYERS, player).await;
    let again = restored.train_dictionaries().await.unwrap();
    assert_eq!(again.collections[0].action, "kept", "{again:?}");
    restored.close().await.unwrap();

    // Copy into PostgreSQL: values keep their encoding, so the dictionary goes along.
    let Some(scratch) = crate::common::ScratchDatabase::create().await else {
        return;
    };
    let mut pg = Config::postgres(scratch.url());
    small_threshold(&mut pg);
    let copy = Store::open(pg).await.unwrap();
    store.copy_into(&copy, |_, _| {}).await.unwrap();
    check_all(&copy, "players", PLAYERS, player).await;
    assert!(copy.verify().await.unwrap().is_clean());
    copy.close().await.unwrap();

    // Without its dictionary file the backup is damaged, and says why.
    for entry in std::fs::read_dir(repository.dir().join("dictionaries")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let report = repository.verify(None, |_| {}).await.unwrap();
    assert!(!report.is_clean());
    assert!(
        report.damage[0].detail.contains("dictionary"),
        "{:?}",
        report.damage
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_dictionary_is_reported_and_the_rest_keeps_working() {
    let mut harness = Harness::sqlite_with(small_threshold).await;
    fill(&harness.store, "players", PLAYERS, player).await;
    harness
        .store
        .store("other", "plain", &json!({"a": 1}))
        .await
        .unwrap();
    harness.store.train_dictionaries().await.unwrap();
    harness.store.close().await.unwrap();
    let conn = rusqlite::Connection::open(harness.path()).unwrap();
    conn.execute("UPDATE dictionaries SET data = zeroblob(length(data))", [])
        .unwrap();
    drop(conn);
    harness.store = Store::open(harness.store.config().clone()).await.unwrap();
    let store = &harness.store;
    // Values compressed with it are corrupt, by name; others read fine.
    let error = store
        .retrieve::<Value>("players", "00001")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { key: Some(key), .. } if key == "00001"),
        "{error:?}"
    );
    assert!(error.to_string().contains("dictionary"), "{error}");
    let plain: Option<Value> = store.retrieve("other", "plain").await.unwrap();
    assert_eq!(plain, Some(json!({"a": 1})));
    let report = store.verify().await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.detail.contains("dictionary")),
        "{:?}",
        report.problems
    );
    store.close().await.unwrap();
}
