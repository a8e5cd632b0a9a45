//! A change-feed subscriber in a process of its own, SIGKILLed and resumed again and again,
//! while two other processes write: every acknowledged write reaches it exactly once, in
//! commit order, with no gap. On one SQLite file (two writer processes that share it only
//! through SQLite's file locks) and on one PostgreSQL database (two servers).
//!
//! The parent runs this test binary again as children, as `processes` does: two writers
//! (`a_child_writes_and_prints_every_acknowledged_write`, 8 tasks each), which print a line
//! for each write once it returned, and a subscriber (`a_child_logs_every_change_after_its_last`),
//! which appends each change it receives to a log, a line per change, its `seq` first. The log
//! is also the subscriber's saved position: started again, it resumes after the `seq` of the
//! last whole line (cutting off a line the kill tore), so there is no moment at which a change
//! was handled and its position not yet saved, or saved and not handled. A kill loses nothing
//! the subscriber wrote (the page cache outlives the process), so it does not fsync; an
//! application that must survive a power loss too would. The parent kills the subscriber with
//! SIGKILL at random moments while the writers run and starts it again each time; at the end
//! it checks the log against the writers' acknowledgements and against the feed itself.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use strongbox::{Change, ChangeFilter, Config, Store};

use crate::common::{Harness, ScratchDatabase, child_command, run_child};

/// Where the children find the store: a file path or a PostgreSQL URL.
const FEED_DB: &str = "STRONGBOX_TEST_FEED_DB";

/// A writer child's name, which prefixes its keys.
const WRITER_NAME: &str = "STRONGBOX_TEST_FEED_WRITER";

/// The subscriber child's log (and saved position).
const SUBSCRIBER_LOG: &str = "STRONGBOX_TEST_FEED_LOG";

/// Set for the subscriber's last run: the `seq` after which it exits.
const SUBSCRIBER_UNTIL: &str = "STRONGBOX_TEST_FEED_UNTIL";

/// The writer child, by its path in this binary.
const WRITER: &str = "feed_processes::a_child_writes_and_prints_every_acknowledged_write";

/// The subscriber child, by its path in this binary.
const SUBSCRIBER: &str = "feed_processes::a_child_logs_every_change_after_its_last";

/// The collection the writers write.
const COLLECTION: &str = "feed_writes";

/// Writer tasks per writer process.
const TASKS: u64 = 8;

/// Keys each writer task writes: three puts each (versions 1 to 3), then a delete.
const KEYS_PER_TASK: u64 = 12;

/// The fewest times the subscriber is killed; more while the writers still run.
const KILLS: u32 = 5;

/// Two processes on one SQLite file write while a subscriber in a third is killed and
/// resumed: see the module's documentation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscriber_resumes_without_a_gap_or_a_repeat_on_sqlite() {
    let harness = Harness::sqlite().await;
    let path = harness.path();
    subscribe_through_kills(path.to_str().unwrap(), &harness.store).await;
    harness.finish().await;
}

/// The same with two servers on one PostgreSQL database. Skipped, saying so, when no
/// PostgreSQL server answers (see `common`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscriber_resumes_without_a_gap_or_a_repeat_on_postgres() {
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    // The parent creates the schema; the children open the database it made.
    let store = Store::open(Config::postgres(scratch.url())).await.unwrap();
    subscribe_through_kills(&scratch.url(), &store).await;
    let report = store.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    store.close().await.unwrap();
}

/// Runs the two writers and the subscriber (killed at least [`KILLS`] times) on the store at
/// `location`, then checks the subscriber's log against the acknowledgements and against the
/// feed as `store` reads it.
async fn subscribe_through_kills(location: &str, store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("subscriber.log");
    let log_name = log.to_str().unwrap();
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let location = location.to_owned();
            tokio::spawn(async move {
                run_child(WRITER, &[(FEED_DB, &location), (WRITER_NAME, name)]).await
            })
        })
        .collect();

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill moments drawn with seed {seed}");
    let mut rng = Rng(seed | 1);
    let (mut kills, mut kills_while_consuming) = (0, 0);
    while kills < KILLS || !writers.iter().all(|writer| writer.is_finished()) {
        let logged_before = logged_bytes(&log);
        let mut child = child_command(
            SUBSCRIBER,
            &[(FEED_DB, location), (SUBSCRIBER_LOG, log_name)],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
        // Wait until this run has logged something (it is consuming), unless the writers are
        // done (there may be nothing left to consume); then kill it a random moment later.
        let started = Instant::now();
        while logged_bytes(&log) == logged_before
            && !writers.iter().all(|writer| writer.is_finished())
        {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the subscriber exited by itself: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the subscriber logged nothing in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if logged_bytes(&log) > logged_before {
            kills_while_consuming += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        // SIGKILL; a child that already exited is caught by its status below.
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "the subscriber exited by itself: {status}"
        );
        kills += 1;
    }
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(acknowledgements(&writer.await.unwrap()));
    }
    assert_eq!(acknowledged.len() as u64, 2 * TASKS * KEYS_PER_TASK * 4);

    let feed = read_feed(store).await;
    let last = feed.last().expect("the feed holds the writes").seq;
    // The last run resumes once more and exits when it has logged the newest change.
    let until = last.to_string();
    run_child(
        SUBSCRIBER,
        &[
            (FEED_DB, location),
            (SUBSCRIBER_LOG, log_name),
            (SUBSCRIBER_UNTIL, &until),
        ],
    )
    .await;
    let logged = read_log(&log);
    check_log(&logged, &feed, &acknowledged);
    println!(
        "{kills} kills ({kills_while_consuming} while the subscriber was consuming), {} changes \
         logged once each",
        logged.len()
    );
}

/// A change as the subscriber logs it and the parent compares it: seq, collection, key,
/// kind, version.
type Logged = (u64, String, String, String, u64);

/// A write a writer task acknowledged, in the order the task made them: task, kind, key,
/// version.
type Ack = (String, String, String, u64);

/// The checks: the log is the feed, line for line (so strictly increasing, nothing missing,
/// nothing repeated); each acknowledged write is in it exactly once, and each task's writes
/// in the order they were acknowledged; nothing else was written.
fn check_log(logged: &[Logged], feed: &[Change], acknowledged: &[Ack]) {
    for pair in logged.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "the subscriber logged {:?} after {:?}: a repeat or a change out of order",
            pair[1],
            pair[0]
        );
    }
    let feed: Vec<Logged> = feed.iter().map(logged_form).collect();
    if let Some(at) = (0..logged.len().max(feed.len())).find(|&at| logged.get(at) != feed.get(at)) {
        panic!(
            "the log and the feed differ at change {at}: logged {:?}, the feed holds {:?} \
             ({} logged, {} in the feed)",
            logged.get(at),
            feed.get(at),
            logged.len(),
            feed.len()
        );
    }
    let mut seq_of: HashMap<(&str, &str, u64), u64> = HashMap::new();
    for (seq, collection, key, kind, version) in logged {
        assert_eq!(collection, COLLECTION, "only the writers wrote");
        let earlier = seq_of.insert((kind, key, *version), *seq);
        assert!(earlier.is_none(), "{kind} {key} {version} logged twice");
    }
    assert_eq!(
        seq_of.len(),
        acknowledged.len(),
        "every logged write was acknowledged"
    );
    let mut last_seq_of_task: HashMap<&str, u64> = HashMap::new();
    for (task, kind, key, version) in acknowledged {
        let seq = *seq_of
            .get(&(kind.as_str(), key.as_str(), *version))
            .unwrap_or_else(|| panic!("the acknowledged {kind} {key} {version} is missing"));
        let previous = last_seq_of_task.insert(task, seq).unwrap_or(0);
        assert!(
            previous < seq,
            "{task}'s {kind} {key} {version} is numbered {seq}, before its previous write ({previous})"
        );
    }
}

/// Every change in the feed, read in pages.
async fn read_feed(store: &Store) -> Vec<Change> {
    let mut feed: Vec<Change> = Vec::new();
    loop {
        let since = feed.last().map_or(0, |change| change.seq);
        let page = store.changes(since, 1_000).await.unwrap();
        if page.is_empty() {
            return feed;
        }
        feed.extend(page);
    }
}

fn logged_form(change: &Change) -> Logged {
    (
        change.seq,
        change.collection.clone(),
        change.key.clone(),
        change.kind.as_str().to_owned(),
        change.version.get(),
    )
}

/// The subscriber's log, every line whole.
fn read_log(log: &Path) -> Vec<Logged> {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "a torn last line");
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [seq, collection, key, kind, version] = fields[..] else {
                panic!("a malformed line in the log: {line:?}");
            };
            (
                seq.parse().unwrap(),
                collection.to_owned(),
                key.to_owned(),
                kind.to_owned(),
                version.parse().unwrap(),
            )
        })
        .collect()
}

/// What a writer printed: `acknowledged TASK KIND KEY VERSION` a line, in order.
fn acknowledgements(stdout: &str) -> Vec<Ack> {
    stdout
        .lines()
        .filter_map(|line| {
            let (_, ack) = line.split_once("acknowledged ")?;
            let fields: Vec<&str> = ack.split(' ').collect();
            let [task, kind, key, version] = fields[..] else {
                panic!("a malformed acknowledgement: {line:?}");
            };
            Some((
                task.to_owned(),
                kind.to_owned(),
                key.to_owned(),
                version.parse().unwrap(),
            ))
        })
        .collect()
}

/// The log's length in bytes (0 before it exists).
fn logged_bytes(log: &Path) -> u64 {
    std::fs::metadata(log).map_or(0, |metadata| metadata.len())
}

/// xorshift64: enough randomness to pick the moments of the kills.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The writer child, which does nothing unless `STRONGBOX_TEST_FEED_DB` names a store: 8
/// tasks each put [`KEYS_PER_TASK`] keys of their own three times and delete them, and print
/// each write once it returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_writes_and_prints_every_acknowledged_write() {
    let (Ok(location), Ok(name)) = (std::env::var(FEED_DB), std::env::var(WRITER_NAME)) else {
        return;
    };
    // Under two processes' contention on a loaded machine, a write may wait for the file's
    // lock longer than the default 5 s; what is tested is the feed, not the wait.
    let config = Config::for_location(&location).with_busy_timeout(Duration::from_secs(60));
    let store = Store::open(config).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (store, task) = (store.clone(), format!("{name}-t{task}"));
        tasks.spawn(async move {
            for number in 0..KEYS_PER_TASK {
                let key = format!("{task}-k{number:02}");
                let mut version = 0;
                for value in 0..3 {
                    version = store.store(COLLECTION, &key, &value).await.unwrap().get();
                    println!("acknowledged {task} put {key} {version}");
                }
                assert!(store.delete(COLLECTION, &key).await.unwrap());
                println!("acknowledged {task} delete {key} {version}");
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    store.close().await.unwrap();
}

/// The subscriber child, which does nothing unless `STRONGBOX_TEST_FEED_LOG` names its log:
/// subscribes after the last `seq` of its log and appends each change to it, a whole line in
/// one write, until killed (or, with `STRONGBOX_TEST_FEED_UNTIL`, until it logged that `seq`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_logs_every_change_after_its_last() {
    let (Ok(location), Ok(log)) = (std::env::var(FEED_DB), std::env::var(SUBSCRIBER_LOG)) else {
        return;
    };
    let until: Option<u64> = std::env::var(SUBSCRIBER_UNTIL)
        .ok()
        .map(|until| until.parse().unwrap());
    let log = Path::new(&log);
    let resume_after = last_logged_seq(log);
    if until.is_some_and(|until| resume_after >= until) {
        return;
    }
    let config = Config::for_location(&location).with_busy_timeout(Duration::from_secs(60));
    let store = Store::open(config).await.unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut changes = store.subscribe(resume_after, ChangeFilter::all());
    while let Some(change) = changes.next().await {
        let change = change.unwrap();
        let (seq, collection, key, kind, version) = logged_form(&change);
        // The change and its seq in one line, in one write: handled and saved at once.
        file.write_all(format!("{seq} {collection} {key} {kind} {version}\n").as_bytes())
            .unwrap();
        if until.is_some_and(|until| seq >= until) {
            break;
        }
    }
    drop(changes);
    store.close().await.unwrap();
}

/// The `seq` of the log's last whole line (0 when there is none), after cutting off a last
/// line that a kill tore.
fn last_logged_seq(log: &Path) -> u64 {
    let text = match std::fs::read(log) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(error) => panic!("read the log: {error}"),
    };
    let whole = text
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    if whole < text.len() {
        let file = std::fs::OpenOptions::new().write(true).open(log).unwrap();
        file.set_len(whole as u64).unwrap();
    }
    let text = std::str::from_utf8(&text[..whole]).unwrap();
    text.lines()
        .last()
        .map_or(0, |line| line.split(' ').next().unwrap().parse().unwrap())
}
