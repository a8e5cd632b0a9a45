//! Test scaffolding: a store on a fresh SQLite file in a temporary directory, or on a scratch
//! PostgreSQL database created for the test and dropped after it; and a test of this binary
//! run again as a child process (`run_child`), for what one process cannot show.
//!
//! The PostgreSQL server is `$STRONGBOX_TEST_POSTGRES` (a server URL without a database
//! name), by default `postgres://postgres@127.0.0.1:5432`, the one `.ci/run` starts. When no
//! server answers there, a PostgreSQL test prints "skipped: no PostgreSQL at URL" and passes,
//! so that a laptop without one gets a green run; with `STRONGBOX_REQUIRE_POSTGRES=1` (which
//! `.ci/run` sets) a missing server fails the test instead.

use std::io::Write;
use std::path::PathBuf;
#[cfg(feature = "postgres")]
use std::sync::atomic::{AtomicU64, Ordering};

use strongbox::{Config, Store};
use tempfile::TempDir;

/// Increments per task of the shared-counter tests: `STRONGBOX_TRANSACT_INCREMENTS`, default
/// 200 (64 tasks make 12,800 in all, every one a conflict for most of them on one contended
/// row; on PostgreSQL in a debug build that takes a few minutes).
pub fn increments_per_task() -> u64 {
    std::env::var("STRONGBOX_TRANSACT_INCREMENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200)
}

/// `tasks` tasks each add one to the counter `counters/shared` `increments` times through
/// `Store::transact`; returns how many times the closures ran (a run past the first is a retry
/// after a conflict).
pub async fn increment_shared_counter(store: &Store, tasks: u64, increments: u64) -> u64 {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let runs = Arc::new(AtomicU64::new(0));
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (store, runs) = (store.clone(), Arc::clone(&runs));
        running.spawn(async move {
            for _ in 0..increments {
                let runs = Arc::clone(&runs);
                store
                    .transact(async move |tx| {
                        runs.fetch_add(1, Ordering::Relaxed);
                        let count: u64 = tx.get("counters", "shared").await?.unwrap_or(0);
                        tx.put("counters", "shared", &(count + 1))?;
                        Ok(())
                    })
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(result) = running.join_next().await {
        result.unwrap();
    }
    runs.load(Ordering::Relaxed)
}

/// The typed value of the collection tests.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Player {
    pub name: String,
    pub chips: u64,
}

/// A player with `chips`.
pub fn player(name: &str, chips: u64) -> Player {
    Player {
        name: name.to_owned(),
        chips,
    }
}

/// Runs the test `name` of this test binary again, as a child process with `env` set, and
/// returns what it printed. Fails unless the child ran exactly that one test and it passed.
///
/// `name` is the test's path in the binary (`module::function`), as `--exact` matches it.
pub async fn run_child(name: &str, env: &[(&str, &str)]) -> String {
    let mut command = child_command(name, env);
    // The child runs for seconds: wait for it on a blocking thread, not a runtime worker.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "the child {name} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The command that runs the test `name` of this test binary alone, with `env` set (see
/// [`run_child`]); for a child the test starts, kills and waits for itself.
pub fn child_command(name: &str, env: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .envs(env.iter().copied());
    command
}

/// The number a child printed after `label`, as in `child: committed 640` (the test harness
/// may have printed the test's name before it on the same line).
pub fn reported(stdout: &str, label: &str) -> u64 {
    stdout
        .lines()
        .find_map(|line| {
            let (_, after) = line.split_once(label)?;
            after.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("the child did not report {label:?}:\n{stdout}"))
}

/// A store and what it lives in, cleaned up at the end of the test.
pub struct Harness {
    pub store: Store,
    pub dir: TempDir,
    /// Kept for its `Drop`, which drops the database.
    pub _scratch: Option<ScratchDatabase>,
}

/// The PostgreSQL server the tests use.
pub fn postgres_server() -> String {
    std::env::var("STRONGBOX_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A database created for one test, dropped (with `FORCE`) when this is dropped.
pub struct ScratchDatabase {
    pub name: String,
}

/// Whether a missing PostgreSQL server fails the tests instead of skipping them.
fn postgres_is_required() -> bool {
    std::env::var_os("STRONGBOX_REQUIRE_POSTGRES")
        .is_some_and(|value| !value.is_empty() && value != "0")
}

/// Says that a test was skipped, past the test harness's capture, so that a passing run still
/// says what it did not test.
fn skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}

#[cfg(not(feature = "postgres"))]
impl ScratchDatabase {
    /// Without the `postgres` feature there is no PostgreSQL engine to test.
    pub async fn create() -> Option<Self> {
        assert!(
            !postgres_is_required(),
            "STRONGBOX_REQUIRE_POSTGRES is set, and the tests were built without the postgres feature"
        );
        skipped("built without the postgres feature (cargo test --features postgres)");
        None
    }

    pub fn url(&self) -> String {
        format!("{}/{}", postgres_server(), self.name)
    }
}

#[cfg(not(feature = "postgres"))]
impl Drop for ScratchDatabase {
    fn drop(&mut self) {}
}

#[cfg(feature = "postgres")]
impl ScratchDatabase {
    /// A new database on the test server; `None` (after printing why) when no server answers
    /// and none is required.
    pub async fn create() -> Option<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "strongbox_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros()
                % 1_000_000
        );
        let server = postgres_server();
        match connect_admin().await {
            Ok(_) => {}
            Err(error) if !postgres_is_required() => {
                skipped(&format!(
                    "no PostgreSQL at {server} ({error}); set STRONGBOX_TEST_POSTGRES to a \
                     server, or STRONGBOX_REQUIRE_POSTGRES=1 to fail instead"
                ));
                return None;
            }
            Err(error) => panic!(
                "no PostgreSQL at {server} ({error}), and STRONGBOX_REQUIRE_POSTGRES is set \
                 (.ci/run starts the server)"
            ),
        }
        admin(&format!("CREATE DATABASE {name}")).await;
        Some(ScratchDatabase { name })
    }

    pub fn url(&self) -> String {
        format!("{}/{}", postgres_server(), self.name)
    }

    /// A connection to this database as the server's superuser, to look at or alter its tables
    /// by hand; the connection's driver task ends when the client is dropped.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

#[cfg(feature = "postgres")]
impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside a runtime: do the async cleanup on a thread of its own.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(admin(&sql));
        })
        .join()
        .unwrap();
    }
}

/// A connection to the server's `postgres` database, and the task driving it.
#[cfg(feature = "postgres")]
async fn connect_admin()
-> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(
        &format!("{}/postgres", postgres_server()),
        tokio_postgres::NoTls,
    )
    .await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

/// Runs one statement on the server's `postgres` database.
#[cfg(feature = "postgres")]
async fn admin(sql: &str) {
    let (client, driver) = connect_admin()
        .await
        .expect("PostgreSQL is reachable (run .ci/run, which starts it)");
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let _ = driver.await;
}

/// The harness of each backend, `None` when its tests are skipped (the conformance suite's
/// macro picks one by name).
pub mod available {
    use super::Harness;

    /// A store on a fresh SQLite file: always available.
    pub async fn sqlite() -> Option<Harness> {
        Some(Harness::sqlite().await)
    }

    /// A store on a scratch PostgreSQL database, when a server answers.
    pub async fn postgres() -> Option<Harness> {
        Harness::postgres().await
    }
}

impl Harness {
    /// A store with the default configuration.
    pub async fn sqlite() -> Self {
        Self::sqlite_with(|_| {}).await
    }

    /// A store with a configuration adjusted by `adjust`.
    pub async fn sqlite_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("test.db"));
        adjust(&mut config);
        let store = Store::open(config).await.unwrap();
        Harness {
            store,
            dir,
            _scratch: None,
        }
    }

    /// A store on a scratch PostgreSQL database with the default configuration; `None` when
    /// the test is skipped (see [`ScratchDatabase::create`]).
    pub async fn postgres() -> Option<Self> {
        Self::postgres_with(|_| {}).await
    }

    /// A store on a scratch PostgreSQL database, configured by `adjust`; `None` when skipped.
    pub async fn postgres_with(adjust: impl FnOnce(&mut Config)) -> Option<Self> {
        let scratch = ScratchDatabase::create().await?;
        let mut config = Config::postgres(scratch.url());
        adjust(&mut config);
        let store = Store::open(config).await.unwrap();
        Some(Harness {
            store,
            dir: tempfile::tempdir().unwrap(),
            _scratch: Some(scratch),
        })
    }

    /// The database file.
    pub fn path(&self) -> PathBuf {
        self.store.config().path.clone()
    }

    /// Closes and reopens the store with the same configuration.
    pub async fn reopen(&mut self) {
        self.store.close().await.unwrap();
        self.store = Store::open(self.store.config().clone()).await.unwrap();
    }

    /// Closes the store, checking that it is still consistent.
    pub async fn finish(self) {
        let report = self.store.verify().await.unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        self.store.close().await.unwrap();
    }
}

/// `len` printable bytes that compress poorly, different for each `i` (xorshift).
pub fn noise(i: u64, len: usize) -> String {
    let mut seed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b'!' + (seed % 90) as u8)
        })
        .collect()
}
