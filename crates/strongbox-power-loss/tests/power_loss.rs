//! Power-loss harness: every acknowledged write survives a power cut, not only a process death.
//!
//! The store runs on [`vfs::PowerCutVfs`], an SQLite VFS that keeps every file in memory and
//! knows, for each, its *durable* content (as of its last sync) apart from the writes issued
//! since. In each round, 8 tasks write through one store with `Durability::Full` — transfers
//! between accounts (two balances and a ledger entry in one transaction), new values, and
//! overwrites of a few hot keys — while task 0 runs maintenance now and then (dictionary
//! training and recompression, vacuum, a `TRUNCATE` checkpoint). At random moments the test
//! takes a *cut*: it notes which writes were acknowledged so far, then freezes what the disk
//! would hold after a power loss at that instant: every file's durable content, plus some
//! unsynced writes (all of them dropped; or a torn tail of the file written last; or any subset
//! of every file's unsynced writes, torn by 512-byte sectors — see [`vfs::CutMode`]). A file
//! never synced does not exist after a cut.
//!
//! Each cut's files are written to a directory of their own (database and `-wal`, no `-shm`),
//! opened with a plain `Store::open` on the operating system's VFS, and checked:
//! - `verify` is clean;
//! - every write acknowledged before the cut reads back: a new value or ledger entry equal, a
//!   hot key at a version at least the acknowledged one (and equal to it at that version);
//! - no value is wrong: each key holds a value that some task wrote to it, and each balance
//!   equals its opening amount plus the ledger entries present (every transaction whole).
//!
//! A control then runs a few rounds with `Durability::Process` (`synchronous=NORMAL`: commits
//! are not synced) and requires the cuts to lose acknowledged writes: the harness can fail.
//!
//! `STRONGBOX_POWER_CUTS` sets the number of cuts (default 200; soak: thousands);
//! `STRONGBOX_POWER_SEED` the random seed (printed at the start).

#[path = "power_loss/vfs.rs"]
mod vfs;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use strongbox::{Config, Durability, Error, Expect, ListOptions, Store};

use self::vfs::{CutMode, Disk, Image, Random};

const VFS_NAME: &str = "strongbox-power-cut";
const ACCOUNTS: u64 = 16;
const OPENING_BALANCE: i64 = 1_000;
const HOT_KEYS: u64 = 12;
const WRITERS: u64 = 8;
const CUTS_PER_ROUND: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Transfer {
    from: String,
    to: String,
    amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    writer: String,
    text: String,
}

fn account(i: u64) -> String {
    format!("acct-{i:02}")
}

/// xorshift64*: enough randomness to pick moments, keys and torn writes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
}

impl Random for Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A write whose `store` or `commit` returned `Ok`.
#[derive(Debug, Clone)]
enum Acked {
    /// A key written once (collection `values`).
    Value { key: String, value: Payload },
    /// A hot key, overwritten by every task (collection `hot`), and the version it got.
    Hot {
        key: String,
        value: Payload,
        version: u64,
    },
    /// A transfer: its ledger entry (and the two balances, checked against the ledger).
    Transfer { key: String, entry: Transfer },
}

/// What the writers did in one round.
#[derive(Debug, Default)]
struct Log {
    /// In the order the acknowledgements came.
    acked: Vec<Acked>,
    /// Every value any task tried to write to each key (JSON), acknowledged or not.
    attempted: HashMap<(&'static str, String), HashSet<String>>,
}

impl Log {
    fn attempt(&mut self, collection: &'static str, key: &str, value: &impl Serialize) {
        self.attempted
            .entry((collection, key.to_owned()))
            .or_default()
            .insert(json(value));
    }
}

/// A value's JSON with its object keys sorted, as read back through `serde_json::Value`.
fn json(value: &impl Serialize) -> String {
    serde_json::to_value(value).unwrap().to_string()
}

/// One cut: how many writes were acknowledged before it, and the files it left.
struct Cut {
    mode: CutMode,
    /// Taken from inside a write rather than between writes.
    mid_write: bool,
    acked: usize,
    image: Image,
}

/// Totals over many cuts.
#[derive(Debug, Default)]
struct Tally {
    cuts: u64,
    checked: u64,
    lost: u64,
    wrong: u64,
    /// Unsynced writes at the cuts: to the WAL, to the database file (a checkpoint's).
    unsynced_wal: u64,
    unsynced_db: u64,
    mid_write: u64,
    /// Cuts that fell while the database file had unsynced writes (during a checkpoint).
    cuts_in_checkpoint: u64,
    modes: HashMap<&'static str, u64>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test -- --list` and filters: this binary has one test.
    if args.iter().any(|arg| arg == "--list") {
        println!("power_loss_harness: test");
        return;
    }
    let cuts: usize = std::env::var("STRONGBOX_POWER_CUTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let started = Instant::now();
    let disk = vfs::register(VFS_NAME);
    // The seed picks moments, keys and torn writes; the tasks' interleaving is the scheduler's,
    // so a seed replays a run only roughly.
    let seed_value = std::env::var("STRONGBOX_POWER_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("power loss: seed {seed_value} (STRONGBOX_POWER_SEED)");
    let mut rng = Rng::new(seed_value);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seed = runtime.block_on(seed_database(dir.path()));

    let mut tally = Tally::default();
    let rounds = cuts.div_ceil(CUTS_PER_ROUND);
    for round in 0..rounds {
        let round_dir = dir.path().join(format!("round-{round}"));
        runtime.block_on(run_round(
            &disk,
            &round_dir,
            &seed,
            Durability::Full,
            &mut rng,
            &mut tally,
        ));
    }
    let elapsed = started.elapsed();
    println!(
        "power loss: {} cuts, {} acknowledged writes checked, {} lost, {} wrong",
        tally.cuts, tally.checked, tally.lost, tally.wrong
    );
    let mut modes: Vec<_> = tally.modes.iter().collect();
    modes.sort();
    println!(
        "power loss: cuts by mode {modes:?}; {} taken inside a write, {} during a checkpoint; \
         unsynced writes at the cuts: {} to WALs, {} to databases; {} syncs; in {:.1} s",
        tally.mid_write,
        tally.cuts_in_checkpoint,
        tally.unsynced_wal,
        tally.unsynced_db,
        disk.syncs(),
        elapsed.as_secs_f64()
    );
    assert_eq!(tally.lost, 0, "acknowledged writes were lost");
    assert_eq!(tally.wrong, 0, "wrong values were read");
    assert!(tally.cuts as usize >= cuts && tally.checked > 0);

    // The control: without a sync at each commit, cuts must lose acknowledged writes.
    let mut control = Tally::default();
    for round in 0..2 {
        let round_dir = dir.path().join(format!("control-{round}"));
        runtime.block_on(run_round(
            &disk,
            &round_dir,
            &seed,
            Durability::Process,
            &mut rng,
            &mut control,
        ));
    }
    println!(
        "power loss control (Durability::Process): {} cuts, {} acknowledged writes checked, {} lost, {} wrong",
        control.cuts, control.checked, control.lost, control.wrong
    );
    assert!(
        control.lost > 0,
        "without fsync at commit the cuts lost nothing: the harness cannot see a loss"
    );
    assert_eq!(control.wrong, 0, "wrong values were read in the control");
    // The closing line in the format CI counts.
    println!("power_loss: 1 passed, 0 failed");
}

/// A store with the opening balances, created with the operating system's VFS and closed;
/// returns its files (name suffix, content).
async fn seed_database(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let db = dir.join("seed.db");
    let store = Store::open(Config::new(&db)).await.unwrap();
    let mut tx = store.transaction();
    for i in 0..ACCOUNTS {
        tx.store("balances", &account(i), &OPENING_BALANCE).unwrap();
    }
    tx.commit().await.unwrap();
    store.close().await.unwrap();
    let mut files = vec![("", std::fs::read(&db).unwrap())];
    let wal = dir.join("seed.db-wal");
    if wal.exists() {
        files.push(("-wal", std::fs::read(wal).unwrap()));
    }
    files
}

/// One round: a fresh store on the VFS, writers, `CUTS_PER_ROUND` cuts, then every cut checked.
async fn run_round(
    disk: &Disk,
    round_dir: &Path,
    seed: &[(&'static str, Vec<u8>)],
    durability: Durability,
    rng: &mut Rng,
    tally: &mut Tally,
) {
    std::fs::create_dir_all(round_dir).unwrap();
    let db = round_dir.join("power.db");
    let db_name = db.to_str().unwrap().to_owned();
    // The real file too: the library looks for the database on the real path before SQLite
    // opens it through the VFS (and would build a new one there, with the OS's VFS).
    std::fs::write(&db, &seed[0].1).unwrap();
    for (suffix, content) in seed {
        disk.load(&format!("{db_name}{suffix}"), content.clone());
    }
    let mut config = Config::new(&db);
    config.sqlite_vfs = Some(VFS_NAME.to_owned());
    config.durability = durability;
    // Maintenance then trains dictionaries and recompresses values (writes to the database
    // file that a cut may tear), as in the crash harness.
    config.dictionary_min_values = 50;
    let store = Store::open(config).await.unwrap();

    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for task in 0..WRITERS {
        let store = store.clone();
        let log = log.clone();
        let stop = stop.clone();
        let seed = rng.next_u64();
        writers.push(tokio::spawn(async move {
            write_until_stopped(&store, task, seed, &log, &stop).await;
        }));
    }

    let mut cuts = Vec::new();
    let mut acked_before = 0;
    for _ in 0..CUTS_PER_ROUND {
        tokio::time::sleep(Duration::from_millis(2 + rng.below(40) as u64)).await;
        // Each cut comes after at least one more acknowledged write, so each checks something.
        while log.lock().unwrap().acked.len() == acked_before {
            if writers.iter().any(|writer| writer.is_finished()) {
                // Only a panic ends a writer before `stop`: show it.
                for writer in writers {
                    writer.await.unwrap();
                }
                unreachable!("a writer stopped early");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mode = match rng.below(4) {
            0 => CutMode::Synced,
            1 => CutMode::TornTail,
            _ => CutMode::Scrambled,
        };
        let acked_now = {
            let log = log.clone();
            move || log.lock().unwrap().acked.len()
        };
        let (acked, image, mid_write) = if rng.below(2) == 0 {
            // Now, most likely between two writes.
            let (acked, image) = disk.cut(mode, rng, acked_now);
            (acked, image, false)
        } else {
            // In the middle of a coming write: a commit's frames half issued, or (counting
            // database writes only) a checkpoint's pages. A checkpoint may not come soon: after
            // a while, the cut falls now instead.
            let database_only = rng.below(3) == 0;
            let writes = if database_only {
                1 + rng.below(40)
            } else {
                1 + rng.below(300)
            };
            let answer = disk.cut_within(
                writes,
                database_only,
                mode,
                Box::new(Rng::new(rng.next_u64())),
                Box::new(acked_now.clone()),
            );
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match answer.try_recv() {
                    Ok((acked, image)) => break (acked, image, true),
                    Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        disk.disarm();
                        // It may have fallen just before the disarm.
                        if let Ok((acked, image)) = answer.try_recv() {
                            break (acked, image, true);
                        }
                        let (acked, image) = disk.cut(mode, rng, acked_now);
                        break (acked, image, false);
                    }
                    Err(error) => panic!("the armed cut was dropped: {error}"),
                }
            }
        };
        acked_before = acked;
        cuts.push(Cut {
            mode,
            mid_write,
            acked,
            image,
        });
    }
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    store.close().await.unwrap();
    disk.forget(&db_name);

    let log = Arc::try_unwrap(log).unwrap().into_inner().unwrap();
    for (index, cut) in cuts.into_iter().enumerate() {
        let cut_dir = round_dir.join(format!("cut-{index}"));
        let checked = check_cut(&cut_dir, &db_name, &cut, &log).await;
        assert!(checked.acked > 0, "a cut checked no acknowledged write");
        tally.cuts += 1;
        tally.checked += checked.acked;
        tally.lost += checked.lost;
        tally.wrong += checked.wrong;
        for (path, count) in &cut.image.unsynced {
            if path.ends_with("-wal") {
                tally.unsynced_wal += *count as u64;
            } else if *count > 0 {
                tally.unsynced_db += *count as u64;
                tally.cuts_in_checkpoint += 1;
            }
        }
        tally.mid_write += u64::from(cut.mid_write);
        *tally.modes.entry(mode_name(cut.mode)).or_default() += 1;
        if durability == Durability::Full {
            // Fail at the first bad cut, with its story.
            assert!(
                checked.lost == 0 && checked.wrong == 0,
                "cut {index} ({:?}, inside a write: {}) of {}: {} lost, {} wrong, e.g. {:#?}",
                cut.mode,
                cut.mid_write,
                round_dir.display(),
                checked.lost,
                checked.wrong,
                checked.examples
            );
        }
        std::fs::remove_dir_all(&cut_dir).unwrap();
    }
    std::fs::remove_dir_all(round_dir).unwrap();
}

fn mode_name(mode: CutMode) -> &'static str {
    match mode {
        CutMode::Synced => "synced",
        CutMode::TornTail => "torn tail",
        CutMode::Scrambled => "scrambled",
    }
}

/// A writer task: transfers, new values and hot-key overwrites until `stop`.
async fn write_until_stopped(
    store: &Store,
    task: u64,
    seed: u64,
    log: &Mutex<Log>,
    stop: &AtomicBool,
) {
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let name = format!("t{task}-{n:05}");
        if task == 0 && n % 20 == 19 {
            let report = store.maintenance().await.unwrap();
            assert!(report.errors.is_empty(), "maintenance: {:?}", report.errors);
            assert!(
                report.integrity_problems.is_empty(),
                "maintenance: {:?}",
                report.integrity_problems
            );
        }
        match rng.below(10) {
            0..=3 => transfer(store, &mut rng, &name, log).await,
            4..=6 => {
                let value = payload(&mut rng, &name);
                log.lock().unwrap().attempt("values", &name, &value);
                store.store("values", &name, &value).await.unwrap();
                log.lock()
                    .unwrap()
                    .acked
                    .push(Acked::Value { key: name, value });
            }
            _ => {
                let key = format!("hot-{:02}", rng.below(HOT_KEYS as usize));
                let value = payload(&mut rng, &name);
                log.lock().unwrap().attempt("hot", &key, &value);
                let version = store.store("hot", &key, &value).await.unwrap();
                log.lock().unwrap().acked.push(Acked::Hot {
                    key,
                    value,
                    version: version.get(),
                });
            }
        }
        n += 1;
    }
}

/// A value of a few bytes to a few pages, compressible or not.
fn payload(rng: &mut Rng, writer: &str) -> Payload {
    let len = if rng.below(8) == 0 {
        2_000 + rng.below(10_000)
    } else {
        10 + rng.below(600)
    };
    let mut text = String::with_capacity(len + 16);
    let words = [
        "power", "cut", "sync", "wal", "frame", "page", "commit", "torn",
    ];
    let random = rng.below(2) == 0;
    while text.len() < len {
        if random {
            text.push_str(&format!("{:016x}", rng.next_u64()));
        } else {
            text.push_str(words[rng.below(words.len())]);
            text.push(' ');
        }
    }
    Payload {
        writer: writer.to_owned(),
        text,
    }
}

/// Moves chips between two accounts and writes the ledger entry, in one transaction.
async fn transfer(store: &Store, rng: &mut Rng, ledger_key: &str, log: &Mutex<Log>) {
    loop {
        let from = account(rng.below(ACCOUNTS as usize) as u64);
        let to = account(rng.below(ACCOUNTS as usize) as u64);
        if from == to {
            continue;
        }
        let source = store
            .retrieve_record::<i64>("balances", &from)
            .await
            .unwrap()
            .unwrap();
        let target = store
            .retrieve_record::<i64>("balances", &to)
            .await
            .unwrap()
            .unwrap();
        let amount = (rng.below(50) as i64 + 1).min(source.value);
        let entry = Transfer { from, to, amount };
        let mut tx = store.transaction();
        tx.store_if(
            "balances",
            &entry.from,
            &(source.value - amount),
            Expect::Version(source.meta.version),
        )
        .unwrap();
        tx.store_if(
            "balances",
            &entry.to,
            &(target.value + amount),
            Expect::Version(target.meta.version),
        )
        .unwrap();
        tx.store_if("ledger", ledger_key, &entry, Expect::Absent)
            .unwrap();
        log.lock().unwrap().attempt("ledger", ledger_key, &entry);
        match tx.commit().await {
            Ok(_) => {
                log.lock().unwrap().acked.push(Acked::Transfer {
                    key: ledger_key.to_owned(),
                    entry,
                });
                return;
            }
            // Another task moved chips meanwhile: read again and retry.
            Err(Error::Conflict { .. }) => continue,
            Err(error) => panic!("transfer failed: {error}"),
        }
    }
}

/// What one cut's check found.
struct Checked {
    /// Acknowledged writes checked.
    acked: u64,
    lost: u64,
    wrong: u64,
    /// The first few problems, described.
    examples: Vec<String>,
}

/// Writes a cut's files out, opens them with the operating system's VFS and checks them;
/// panics when the store does not open or `verify` finds a problem.
async fn check_cut(cut_dir: &Path, db_name: &str, cut: &Cut, log: &Log) -> Checked {
    std::fs::create_dir_all(cut_dir).unwrap();
    let db = cut_dir.join("power.db");
    for (path, content) in &cut.image.files {
        let suffix = path
            .strip_prefix(db_name)
            .unwrap_or_else(|| panic!("a cut left an unexpected file {path}"));
        assert!(
            suffix.is_empty() || suffix == "-wal",
            "a cut left an unexpected file {path}"
        );
        std::fs::write(cut_dir.join(format!("power.db{suffix}")), content).unwrap();
    }
    let context = format!("cut ({:?}) in {}", cut.mode, cut_dir.display());
    let store = Store::open(Config::new(&db))
        .await
        .unwrap_or_else(|error| panic!("{context}: the store does not open: {error}"));
    let report = store.verify().await.unwrap();
    assert!(report.is_clean(), "{context}: {:?}", report.problems);

    let mut problems = Vec::new();
    let mut wrong = 0;
    // Every record present, as JSON, with its version; each must be a value written to it.
    let mut present: HashMap<(&'static str, String), (String, u64)> = HashMap::new();
    for collection in ["values", "hot", "ledger"] {
        for key in store.list(collection, ListOptions::all()).await.unwrap() {
            let record = store
                .retrieve_record::<serde_json::Value>(collection, &key)
                .await
                .unwrap_or_else(|error| panic!("{context}: {collection}/{key}: {error}"))
                .unwrap_or_else(|| panic!("{context}: {collection}/{key} listed but absent"));
            let json = record.value.to_string();
            let written = log
                .attempted
                .get(&(collection, key.clone()))
                .is_some_and(|values| values.contains(&json));
            if !written {
                wrong += 1;
                problems.push(format!(
                    "{collection}/{key} holds a value never written: {json}"
                ));
            }
            present.insert((collection, key), (json, record.meta.version.get()));
        }
    }

    // Every acknowledged write is there.
    let mut lost = 0;
    let mut hot_acked: HashMap<&str, (u64, String)> = HashMap::new();
    for acked in &log.acked[..cut.acked] {
        let (collection, key, json) = match acked {
            Acked::Value { key, value } => ("values", key, json(value)),
            Acked::Transfer { key, entry } => ("ledger", key, json(entry)),
            Acked::Hot {
                key,
                value,
                version,
            } => {
                let json = json(value);
                let newest = hot_acked.entry(key).or_insert((*version, json.clone()));
                if *version >= newest.0 {
                    *newest = (*version, json);
                }
                continue;
            }
        };
        match present.get(&(collection, key.clone())) {
            Some((found, _)) if *found == json => {}
            Some((found, _)) => {
                // A key written once can hold no other value.
                lost += 1;
                problems.push(format!(
                    "{collection}/{key}: acknowledged {json}, found {found}"
                ));
            }
            None => {
                lost += 1;
                problems.push(format!("{collection}/{key}: acknowledged, missing"));
            }
        }
    }
    for (key, (version, json)) in &hot_acked {
        match present.get(&("hot", (*key).to_owned())) {
            // A later write (its value was checked above as one written to the key).
            Some((_, found_version)) if *found_version > *version => {}
            Some((found, found_version)) if *found_version == *version && *found == *json => {}
            Some((found, found_version)) => {
                lost += 1;
                problems.push(format!(
                    "hot/{key}: acknowledged version {version} {json}, found version \
                     {found_version} {found}"
                ));
            }
            None => {
                lost += 1;
                problems.push(format!(
                    "hot/{key}: acknowledged version {version}, missing"
                ));
            }
        }
    }

    // Every transaction whole: each balance is its opening amount plus the ledger present.
    let mut expected = vec![OPENING_BALANCE; ACCOUNTS as usize];
    for ((collection, _), (json, _)) in &present {
        if *collection == "ledger" {
            let entry: Transfer = serde_json::from_str(json).unwrap();
            let index = |name: &str| name.trim_start_matches("acct-").parse::<usize>().unwrap();
            expected[index(&entry.from)] -= entry.amount;
            expected[index(&entry.to)] += entry.amount;
        }
    }
    for (i, expected) in expected.iter().enumerate() {
        let balance: i64 = store
            .retrieve("balances", &account(i as u64))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{context}: balance {} missing", account(i as u64)));
        if balance != *expected {
            wrong += 1;
            problems.push(format!(
                "{}: balance {balance}, the ledger says {expected}",
                account(i as u64)
            ));
        }
    }
    store.close().await.unwrap();
    problems.truncate(5);
    Checked {
        acked: cut.acked as u64,
        lost,
        wrong,
        examples: problems,
    }
}
