//! Two processes on one store: each runs 32 tasks that add one to a shared counter through
//! `Store::transact`, and not one increment is lost, on one SQLite file (two processes that
//! share it only through SQLite's file locks) and on one PostgreSQL database (two servers).
//!
//! A parent test runs this test binary twice at once as child processes, on
//! `a_child_increments_the_shared_counter`, naming the store in `STRONGBOX_TEST_COUNTER_DB`
//! (a file path or a `postgres://` URL); without that variable the child test does nothing.

use std::time::{Duration, Instant};

use strongbox::{Config, Store};

use crate::common::{
    Harness, ScratchDatabase, increment_shared_counter, increments_per_task, reported, run_child,
};

/// Where the child finds the store: a file path or a PostgreSQL URL.
const COUNTER_DB: &str = "STRONGBOX_TEST_COUNTER_DB";

/// The child test, by its path in this binary.
const CHILD: &str = "processes::a_child_increments_the_shared_counter";

/// Tasks per child process.
const TASKS: u64 = 32;

/// Two processes on one SQLite file each run 32 tasks that add one to a shared counter
/// `STRONGBOX_TRANSACT_INCREMENTS` times (default 200) through `Store::transact`: the counter
/// ends at exactly 2 × 32 × N.
///
/// The processes share nothing but the file: each has its own writer, its own group commits
/// and its own cache, and they take turns through SQLite's locks. A transaction that read the
/// counter before the other process committed (from the file, or from its cache, which does
/// not see the other process's writes) fails its version check at commit and runs again, so a
/// lost update across processes would show as a total short of 2 × 32 × N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_sqlite_file_lose_no_increment() {
    let harness = Harness::sqlite().await;
    let path = harness.path();
    let total = increment_from_two_children(path.to_str().unwrap()).await;
    // This store never read the counter, so the read below is not served from its cache.
    assert_eq!(
        harness
            .store
            .retrieve::<u64>("counters", "shared")
            .await
            .unwrap(),
        Some(total)
    );
    harness.finish().await;
}

/// Two processes, standing for two application servers, on one PostgreSQL database: the same
/// count as on SQLite, exactly 2 × 32 × N. Each server's transactions run at SERIALIZABLE on
/// its own connection pool, and the counter's version check catches the other server's
/// commits. Skipped, saying so, when no PostgreSQL server answers (see `common`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_database_lose_no_increment() {
    let Some(scratch) = ScratchDatabase::create().await else {
        return;
    };
    // The parent creates the schema; the children open the database it made.
    let store = Store::open(Config::postgres(scratch.url())).await.unwrap();
    let total = increment_from_two_children(&scratch.url()).await;
    assert_eq!(
        store.retrieve::<u64>("counters", "shared").await.unwrap(),
        Some(total)
    );
    let report = store.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    store.close().await.unwrap();
}

/// Runs two children at once on the store at `location`; checks that each committed all its
/// increments, prints how many retries each needed, and returns the total: 2 × 32 × N.
async fn increment_from_two_children(location: &str) -> u64 {
    let env = [(COUNTER_DB, location)];
    let (first, second) = tokio::join!(run_child(CHILD, &env), run_child(CHILD, &env));
    let per_child = TASKS * increments_per_task();
    for stdout in [first, second] {
        let committed = reported(&stdout, "child: committed");
        let runs = reported(&stdout, "child: runs");
        assert_eq!(committed, per_child, "{stdout}");
        println!(
            "a child committed {committed} transactions, {} runs after a conflict",
            runs - committed
        );
    }
    2 * per_child
}

/// The child of the two-process tests, which does nothing unless `STRONGBOX_TEST_COUNTER_DB`
/// names a store: opens it, waits until the other child has opened it too, runs 32 tasks that
/// each add one to the counter N times through `Store::transact`, and prints how many
/// transactions committed and how many times their closures ran (a run past the first is a
/// retry after a conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_increments_the_shared_counter() {
    let Ok(location) = std::env::var(COUNTER_DB) else {
        return;
    };
    // Under two processes' contention on a loaded machine, a writer may wait for the file's
    // lock longer than the default 5 s; what is tested is the count, not the wait.
    let config = Config::for_location(&location).with_busy_timeout(Duration::from_secs(60));
    let store = Store::open(config).await.unwrap();
    wait_for_the_other_child(&store).await;
    let increments = increments_per_task();
    let runs = increment_shared_counter(&store, TASKS, increments).await;
    println!("child: committed {}", TASKS * increments);
    println!("child: runs {runs}");
    store.close().await.unwrap();
}

/// Registers this process in the store and waits until both children have, so that their
/// increments overlap instead of one process starting after the other finished.
async fn wait_for_the_other_child(store: &Store) {
    let pid = std::process::id();
    store
        .store("children", &pid.to_string(), &pid)
        .await
        .unwrap();
    let started = Instant::now();
    while store.count("children").await.unwrap() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the other child never opened the store"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
