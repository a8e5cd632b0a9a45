//! Crash harness: nothing acknowledged is ever lost, whatever moment a process dies at.
//!
//! This test binary re-runs itself as child processes that move chips between accounts in
//! transactions (each transfer also writes a ledger entry, in the same transaction), run
//! maintenance (which trains compression dictionaries from 50 values on, and recompresses) and
//! take backups, continuous-backup steps and prunes now and then, and print `ack <ledger key>` only after `commit` returned. The
//! parent kills them with SIGKILL at random moments — two processes on one database at once —
//! then reopens the database and checks that:
//! - every acknowledged ledger entry is present;
//! - the total of all balances never changed, and each balance equals its opening amount plus
//!   the ledger entries that moved chips in or out (so every committed transaction is whole);
//! - `verify` is clean: every blob matches its hash and every reference count is exact;
//! - the backup repository, killed mid-backup, mid-`follow` step, mid-copy (to an offsite
//!   directory) and mid-prune (repacks included) any number of times, still verifies, and
//!   every backup it lists restores to a state the children committed (each balance equal to
//!   its ledger); so does the offsite copy; and so does, read through a fresh mirror, the
//!   `s3://` repository the children back up to, follow and prune through killed
//!   `backup::Offsite` sessions (with the `s3` feature and the S3 server `.ci/run` starts);
//! - the change feed agrees with the records: its sequence numbers strictly increase, and a
//!   record exists at version v exactly when the last change of its key is a put of version v
//!   (a key whose last change is a delete has no record). The children keep every change
//!   (no retention), so each key's history is complete.
//!
//! `STRONGBOX_CRASH_KILLS` sets the number of kill rounds (default 100; soak: thousands).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use strongbox::backup::{BackupRef, Repository, RestoreOptions, Retention};
use strongbox::{ChangeKind, Config, Error, Expect, ListOptions, Scan, Store, Version};

#[cfg(feature = "s3")]
#[path = "crash/offsite.rs"]
mod offsite;

const ACCOUNTS: u64 = 16;
const OPENING_BALANCE: i64 = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Transfer {
    from: String,
    to: String,
    amount: i64,
}

fn account(i: u64) -> String {
    format!("acct-{i:02}")
}

/// xorshift64*: enough randomness to pick moments and accounts.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|arg| arg == "--crash-child") {
        let db = &args[position + 1];
        let name = &args[position + 2];
        let seed: u64 = args[position + 3].parse().unwrap();
        child(Path::new(db), name, seed, &repository_of(Path::new(db)));
        return;
    }
    // `cargo test -- --list` and filters: this binary has one test.
    if args.iter().any(|arg| arg == "--list") {
        println!("crash_harness: test");
        return;
    }
    parent();
}

fn parent() {
    let rounds: u64 = std::env::var("STRONGBOX_CRASH_KILLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    #[cfg(feature = "s3")]
    let offsite_url = offsite::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(Config::new(&db)).await.unwrap();
        let mut tx = store.transaction();
        for i in 0..ACCOUNTS {
            tx.store("balances", &account(i), &OPENING_BALANCE).unwrap();
        }
        tx.commit().await.unwrap();
        store.close().await.unwrap();
    });

    let started = Instant::now();
    let mut rng = Rng::new(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut feed = FeedSoFar::default();
    let mut kills = 0u64;
    // Backups of the offsite repository restored and checked.
    #[cfg_attr(not(feature = "s3"), allow(unused_mut))]
    let mut offsite_checked = 0usize;
    // Repository work the children began and finished (the difference was killed midway).
    let mut completed: std::collections::BTreeMap<String, u64> = Default::default();
    for round in 0..rounds / 2 {
        // Two processes on one database; each is killed at its own random moment.
        let mut children = Vec::new();
        for process in 0..2 {
            let name = format!("r{round}p{process}");
            let mut command = Command::new(std::env::current_exe().unwrap());
            #[cfg(feature = "s3")]
            if let Some(url) = &offsite_url {
                command.env(offsite::URL_VARIABLE, url);
            }
            let child = command
                .args([
                    "--crash-child",
                    db.to_str().unwrap(),
                    &name,
                    &rng.next().to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            children.push(child);
        }
        let mut readers = Vec::new();
        for child in &mut children {
            let stdout = child.stdout.take().unwrap();
            readers.push(std::thread::spawn(move || {
                // Only whole lines count: a line cut by the kill was never acknowledged.
                let (mut acks, mut done) = (Vec::new(), Vec::new());
                for line in BufReader::new(stdout).split(b'\n') {
                    let Ok(line) = line else { break };
                    let Ok(line) = std::str::from_utf8(&line) else {
                        continue;
                    };
                    if let Some(key) = line.strip_prefix("ack ") {
                        acks.push(key.to_owned());
                    } else if let Some(what) = line.strip_prefix("done ") {
                        done.push(what.to_owned());
                    } else if let Some(what) = line.strip_prefix("begin ") {
                        done.push(format!("begun: {what}"));
                    }
                }
                (acks, done)
            }));
        }
        for child in &mut children {
            std::thread::sleep(Duration::from_millis(20 + rng.below(250)));
            // The child may already have failed; a kill then finds it gone.
            let _ = child.kill();
            let status = child.wait().unwrap();
            kills += 1;
            assert!(
                status.code().is_none(),
                "a child exited by itself: {status}"
            );
        }
        for reader in readers {
            let (acks, done) = reader.join().unwrap();
            acknowledged.extend(acks);
            for what in done {
                *completed.entry(what).or_insert(0u64) += 1;
            }
        }
        // The full reconciliation reads the whole ledger; every round checks the cheap invariants.
        let is_full = round % 5 == 4 || round + 1 == rounds / 2;
        runtime.block_on(check(&db, &acknowledged, is_full, &mut feed));
        #[cfg(feature = "s3")]
        if let (true, Some(url)) = (is_full, &offsite_url) {
            let db = &db;
            let check_all = |repository: Repository| async move {
                check_backups(&repository, db).await;
            };
            offsite_checked += runtime.block_on(offsite::check(url, dir.path(), check_all));
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "no transfer was acknowledged in {kills} runs: the harness tested nothing"
    );
    println!(
        "crash harness: {kills} kills survived, {} acknowledged transfers checked, 0 lost, \
         {} changes in the feed agreeing with the records, repository work begun and finished by the \
         children {completed:?}, {offsite_checked} offsite backups restored and checked, in {:.1} s",
        acknowledged.len(),
        feed.changes,
        started.elapsed().as_secs_f64()
    );
    // The closing line in the format CI counts.
    println!("crash: {} passed, 0 failed", 1);
}

/// Reopens the database and checks the invariants: acknowledged entries present, the total
/// unchanged and the feed in agreement with the records always; with `is_full`, every balance
/// against the ledger and `verify`.
async fn check(db: &Path, acknowledged: &HashSet<String>, is_full: bool, feed: &mut FeedSoFar) {
    let store = Store::open(keep_every_change(Config::new(db)))
        .await
        .unwrap();
    feed.check(&store).await;
    let ledger_keys = store.list("ledger", ListOptions::all()).await.unwrap();
    let present: HashSet<&String> = ledger_keys.iter().collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|key| !present.contains(key))
        .collect();
    assert!(lost.is_empty(), "acknowledged transfers lost: {lost:?}");
    if !is_full {
        let mut total = 0;
        for i in 0..ACCOUNTS {
            total += store
                .retrieve::<i64>("balances", &account(i))
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(total, OPENING_BALANCE * ACCOUNTS as i64);
        store.close().await.unwrap();
        return;
    }

    let mut expected: Vec<i64> = vec![OPENING_BALANCE; ACCOUNTS as usize];
    for key in &ledger_keys {
        let transfer: Transfer = store.retrieve("ledger", key).await.unwrap().unwrap();
        let index = |name: &str| name.trim_start_matches("acct-").parse::<usize>().unwrap();
        expected[index(&transfer.from)] -= transfer.amount;
        expected[index(&transfer.to)] += transfer.amount;
    }
    let mut total = 0;
    for i in 0..ACCOUNTS {
        let balance: i64 = store
            .retrieve("balances", &account(i))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            balance,
            expected[i as usize],
            "balance of {} disagrees with the ledger",
            account(i)
        );
        total += balance;
    }
    assert_eq!(total, OPENING_BALANCE * ACCOUNTS as i64);
    let report = store.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    store.close().await.unwrap();
    if let Ok(repository) = Repository::open(repository_of(db)).await {
        let report = repository.verify(None, |_| {}).await.unwrap();
        assert!(report.is_clean(), "{:?}", report.damage);
        repository.prune(&Retention::last(3)).await.unwrap();
        check_backups(&repository, db).await;
    }
    // A copy killed midway leaves only whole backups at the destination.
    if let Ok(offsite) = Repository::open(offsite_of(&repository_of(db))).await {
        let report = offsite.verify(None, |_| {}).await.unwrap();
        assert!(report.is_clean(), "offsite: {:?}", report.damage);
        offsite.prune(&Retention::last(3)).await.unwrap();
        check_backups(&offsite, db).await;
    }
}

/// Every backup the repository lists restores, and what it restores is a state the children
/// committed: the total unchanged and each balance equal to its ledger's.
async fn check_backups(repository: &Repository, db: &Path) {
    for backup in repository.list().await.unwrap() {
        let target = db.with_extension(format!("restored-{}", backup.id));
        repository
            .restore(
                &BackupRef::Id(backup.id.clone()),
                &Config::new(&target),
                &RestoreOptions::all(),
                |_| {},
            )
            .await
            .unwrap();
        let store = Store::open(Config::new(&target)).await.unwrap();
        let mut expected: Vec<i64> = vec![OPENING_BALANCE; ACCOUNTS as usize];
        for key in store.list("ledger", ListOptions::all()).await.unwrap() {
            let transfer: Transfer = store.retrieve("ledger", &key).await.unwrap().unwrap();
            let index = |name: &str| name.trim_start_matches("acct-").parse::<usize>().unwrap();
            expected[index(&transfer.from)] -= transfer.amount;
            expected[index(&transfer.to)] += transfer.amount;
        }
        for i in 0..ACCOUNTS {
            let balance: i64 = store
                .retrieve("balances", &account(i))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                balance,
                expected[i as usize],
                "backup {}: the balance of {} disagrees with its ledger",
                backup.id,
                account(i)
            );
        }
        store.close().await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", target.display()));
        }
    }
}

/// The change feed read so far: the last change of each key, up to `seq`. The feed only
/// grows (nothing is trimmed), so each check reads only what was added since the last.
#[derive(Default)]
struct FeedSoFar {
    seq: u64,
    /// Changes read.
    changes: u64,
    last: HashMap<(String, String), (ChangeKind, Version)>,
}

impl FeedSoFar {
    /// Reads the changes after `seq`, checking that their numbers strictly increase, then
    /// checks every record against the last change of its key, and every key whose last
    /// change is no put against the absence of its record.
    async fn check(&mut self, store: &Store) {
        loop {
            // `ChangesTrimmed` here would mean the harness lost the history it checks.
            let page = store.changes(self.seq, 1_000).await.unwrap();
            if page.is_empty() {
                break;
            }
            for change in page {
                assert!(
                    change.seq > self.seq,
                    "change {} came after change {}",
                    change.seq,
                    self.seq
                );
                self.seq = change.seq;
                self.changes += 1;
                self.last.insert(
                    (change.collection, change.key),
                    (change.kind, change.version),
                );
            }
        }
        let mut with_record = HashSet::new();
        for collection in store.collections().await.unwrap() {
            let mut entries = store
                .collection::<serde_json::Value>(&collection)
                .unwrap()
                .scan(Scan::all());
            while let Some(entry) = entries.try_next().await.unwrap() {
                let id = (collection.clone(), entry.key);
                let last = self.last.get(&id);
                assert_eq!(
                    last,
                    Some(&(ChangeKind::Put, entry.version)),
                    "{}/{} is at version {}, and the last change of its key in the feed is {last:?}",
                    id.0,
                    id.1,
                    entry.version.get()
                );
                with_record.insert(id);
            }
        }
        for (id, (kind, version)) in &self.last {
            assert!(
                with_record.contains(id) || *kind != ChangeKind::Put,
                "{}/{} has no record, and the last change of its key is a put of version {}",
                id.0,
                id.1,
                version.get()
            );
        }
    }
}

/// `config` keeping every change of the feed, whatever its age and number, so that the
/// harness checks every key's whole history.
fn keep_every_change(config: Config) -> Config {
    config
        .with_changes_retention(Duration::ZERO)
        .with_changes_retention_count(0)
}

/// Whether the children have an offsite repository (the `s3` feature, and a URL from the
/// parent).
fn has_offsite() -> bool {
    #[cfg(feature = "s3")]
    return std::env::var_os(offsite::URL_VARIABLE).is_some();
    #[cfg(not(feature = "s3"))]
    false
}

/// An offsite session ([`offsite::session`]); nothing without the `s3` feature.
async fn offsite_session(store: &Store, db: &Path, pick: u64) -> Option<&'static str> {
    #[cfg(feature = "s3")]
    return offsite::session(store, db, pick).await;
    #[cfg(not(feature = "s3"))]
    {
        let _ = (store, db, pick);
        None
    }
}

/// The backup repository beside the database.
fn repository_of(db: &Path) -> std::path::PathBuf {
    db.with_extension("backups")
}

/// Where children copy the repository `repo` to.
fn offsite_of(repo: &Path) -> String {
    repo.with_extension("offsite").display().to_string()
}

/// The child: transfers until killed.
fn child(db: &Path, name: &str, seed: u64, repo: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = keep_every_change(Config::new(db));
        config.busy_timeout_ms = 30_000;
        // Maintenance then trains dictionaries and recompresses values, and gets killed doing it.
        config.dictionary_min_values = 50;
        let store = Store::open(config).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..8u64 {
            let store = store.clone();
            let name = name.to_owned();
            let repo = repo.to_owned();
            let db = db.to_owned();
            tasks.spawn(async move {
                let mut rng = Rng::new(seed ^ (task + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                for n in 0.. {
                    if task == 0 && n % 40 == 39 {
                        store.maintenance().await.unwrap();
                    }
                    // The repository's work, often enough to be killed in the middle of it:
                    // full backups and continuous-backup steps, and prunes (with repacks).
                    let say = |line: String| {
                        let mut stdout = std::io::stdout().lock();
                        writeln!(stdout, "{line}").unwrap();
                        stdout.flush().unwrap();
                    };
                    let done = if task == 1 && n % 8 == 7 {
                        let repository = Repository::open_or_create(&repo).await.unwrap();
                        say("begin backup or follow".into());
                        if rng.below(2) == 0 {
                            repository.backup(&store, |_| {}).await.unwrap();
                            Some("backup")
                        } else {
                            repository.follower(&store).step().await.unwrap();
                            Some("follow")
                        }
                    } else if task == 2 && n % 12 == 11 {
                        let repository = Repository::open_or_create(&repo).await.unwrap();
                        say("begin prune".into());
                        repository.prune(&Retention::last(2)).await.unwrap();
                        Some("prune")
                    } else if task == 3
                        && n % 10 == 9
                        && repo.join("strongbox-backup.json").exists()
                    {
                        // An offsite copy, killed midway too: what it lists must be whole.
                        say("begin copy".into());
                        let (from, to) = (repo.display().to_string(), offsite_of(&repo));
                        strongbox::backup::copy(&from, &to, |_| {}).await.unwrap();
                        Some("copy")
                    } else if task == 4 && n % 10 == 9 && has_offsite() {
                        // Sessions on an offsite repository (when there is an S3 server).
                        say("begin offsite".into());
                        offsite_session(&store, &db, rng.below(6)).await
                    } else {
                        None
                    };
                    if let Some(done) = done {
                        say(format!("done {done}"));
                    }
                    transfer(&store, &mut rng, &format!("{name}-t{task}-{n:06}")).await;
                }
            });
        }
        // The tasks only end by failing: whichever fails first ends the process with an exit
        // code, which the parent reports (a killed child has none).
        if let Some(result) = tasks.join_next().await {
            eprintln!("a crash-harness task ended: {result:?}");
            std::process::exit(101);
        }
    });
}

async fn transfer(store: &Store, rng: &mut Rng, ledger_key: &str) {
    loop {
        let from = account(rng.below(ACCOUNTS));
        let to = account(rng.below(ACCOUNTS));
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
        let mut tx = store.transaction();
        tx.store_if(
            "balances",
            &from,
            &(source.value - amount),
            Expect::Version(source.meta.version),
        )
        .unwrap();
        tx.store_if(
            "balances",
            &to,
            &(target.value + amount),
            Expect::Version(target.meta.version),
        )
        .unwrap();
        let entry = Transfer { from, to, amount };
        tx.store_if("ledger", ledger_key, &entry, Expect::Absent)
            .unwrap();
        match tx.commit().await {
            Ok(_) => {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "ack {ledger_key}").unwrap();
                stdout.flush().unwrap();
                return;
            }
            // Another task or process moved chips meanwhile (its cached read was stale too):
            // read again and retry.
            Err(Error::Conflict { .. }) => continue,
            Err(error) => panic!("transfer failed: {error}"),
        }
    }
}
