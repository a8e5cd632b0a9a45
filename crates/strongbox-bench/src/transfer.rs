//! The transfer workload: money moved between accounts in serializable read-write
//! transactions, on Strongbox (`Store::transact`) and, as its baseline, on rusqlite written the
//! obvious way (`BEGIN IMMEDIATE`, two `SELECT`s, two `UPDATE`s, `COMMIT` on a connection per
//! thread).
//!
//! [`ACCOUNTS`] accounts start with [`INITIAL_BALANCE`] each. A transfer draws two different
//! accounts from a Zipfian distribution (theta 0.99: account 0 takes about a tenth of the draws)
//! and an amount from 1 to [`MAX_AMOUNT`] (at most what the payer holds), reads both balances
//! and writes both. Both sides draw the same transfers: operation `n` of task (or thread) `i`
//! uses the same generator on each. After the run the balances must add up to what they started
//! at, else the bench fails: a lost update would show there.
//!
//! The two sides run in turns, [`ROUNDS`] rounds of the whole duration each (ours, then the
//! baseline's, each round starting with both files' pages on the disk), and their ratio is the
//! median of the rounds' ratios: the baseline commits one transfer per fsync, so its rate
//! follows the disk's fsync latency of the moment, which on a shared machine moved 3x between
//! runs of the same build on 4 December 2026 (2,130 to 7,152/s), far more than either side
//! moves within one round. Rounds of a third of the duration were tried that day and dropped:
//! the baseline's 64 threads need more than a second to reach their pace (2,000 to 3,000/s in
//! one-second rounds, 5,200 to 5,800/s in three-second ones, minutes apart).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use rand::RngExt as _;
use rand::rngs::SmallRng;
use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};
use strongbox::{Scan, Store};

use crate::workload::{Measured, Zipf, run_for, run_threads_with};

/// The shortest `--duration` whose rounds compare the two sides fairly (see above: the
/// baseline's threads take more than a second to reach their pace); the bench warns below it.
pub const PACED_SECONDS: f64 = 3.0;

/// Rounds of the transfers, each side in turn for the whole duration.
pub const ROUNDS: u32 = 3;

/// Accounts transferred between.
pub const ACCOUNTS: u64 = 10_000;

/// Each account's balance before the run.
pub const INITIAL_BALANCE: u64 = 1_000;

/// The largest amount a transfer moves.
pub const MAX_AMOUNT: u64 = 100;

/// The collection (in Strongbox) of the accounts.
const COLLECTION: &str = "accounts";

/// Accounts created per transaction before the run.
const LOAD_BATCH: u64 = 1_000;

/// How long a baseline connection waits for SQLite's write lock before `BEGIN IMMEDIATE`
/// fails (then it begins again).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Our transfers, and the baseline's beside them.
#[derive(Debug, Clone, Default)]
pub struct TransferFigures {
    /// Committed transfers, all rounds; a transfer's latency includes its retries.
    pub measured: Measured,
    /// Closure runs that did not commit, per committed transfer.
    pub retry_rate: f64,
    /// The baseline's transfers, all rounds; `None` when it was not run (PostgreSQL).
    pub baseline: Option<Measured>,
    /// Each round's rates: ours, the baseline's (transfers per second).
    pub rounds: Vec<(f64, f64)>,
}

/// One transfer: from, to (account numbers), and the amount asked for.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    from: u64,
    to: u64,
    amount: u64,
}

impl Transfer {
    /// Two different Zipfian accounts and an amount.
    fn draw(zipf: &Zipf, rng: &mut SmallRng) -> Transfer {
        let from = zipf.sample(rng);
        let mut to = zipf.sample(rng);
        while to == from {
            to = zipf.sample(rng);
        }
        Transfer {
            from,
            to,
            amount: rng.random_range(1..=MAX_AMOUNT),
        }
    }
}

/// The key of account `number`, in both stores.
fn account_key(number: u64) -> String {
    format!("account-{number:05}")
}

/// What every task of our transfers shares.
#[derive(Clone)]
struct Bank {
    store: Store,
    zipf: Arc<Zipf>,
    /// Closure runs, committed or not.
    runs: Arc<AtomicU64>,
}

/// Creates the accounts in `store` (and, with `baseline`, in a new rusqlite database there),
/// runs transfers on `tasks` tasks (and as many threads) in [`ROUNDS`] turns of `duration` a
/// side, and checks that the balances still add up on each side.
///
/// # Errors
/// When a store or database call fails, or the balances do not add up after the run.
pub async fn run_ours(
    store: &Store,
    tasks: usize,
    duration: Duration,
    baseline: Option<&Path>,
) -> anyhow::Result<TransferFigures> {
    for first in (0..ACCOUNTS).step_by(LOAD_BATCH as usize) {
        let mut tx = store.transaction();
        for number in first..(first + LOAD_BATCH).min(ACCOUNTS) {
            tx.store(COLLECTION, &account_key(number), &INITIAL_BALANCE)?;
        }
        tx.commit().await.context("create the accounts")?;
    }
    if let Some(path) = baseline {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || create_baseline(&path)).await??;
    }
    let bank = Bank {
        store: store.clone(),
        zipf: Arc::new(Zipf::new(ACCOUNTS, 0.99)),
        runs: Arc::new(AtomicU64::new(0)),
    };
    // Without a baseline (PostgreSQL) there is nothing to take turns with: one round.
    let round_count = if baseline.is_some() { ROUNDS } else { 1 };
    // Each side's round starts with both databases' written pages on the disk, so that
    // neither pays for the other's writeback.
    let mut files = Vec::new();
    if let (Some(path), None) = (baseline, &store.config().postgres_url) {
        files.extend([store.config().path.clone(), path.to_owned()]);
    }
    let (mut ours, mut theirs, mut rounds) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..round_count {
        settle(&files)?;
        let measured = transfer_round(&bank, tasks, duration).await?;
        ours.push(measured);
        let Some(path) = baseline else {
            continue;
        };
        settle(&files)?;
        let path = path.to_owned();
        let threads = tasks;
        let baseline =
            tokio::task::spawn_blocking(move || baseline_round(&path, threads, duration))
                .await
                .context("run the transfers on rusqlite")??;
        rounds.push((measured.ops_per_s, baseline.ops_per_s));
        theirs.push(baseline);
    }
    let (accounts, total) = total_balance(store).await?;
    check_total(accounts, total)?;
    if let Some(path) = baseline {
        check_baseline(path)?;
    }
    let measured = Measured::combine(&ours);
    let retries = bank
        .runs
        .load(Ordering::Relaxed)
        .saturating_sub(measured.ops);
    Ok(TransferFigures {
        measured,
        retry_rate: if measured.ops > 0 {
            retries as f64 / measured.ops as f64
        } else {
            0.0
        },
        baseline: baseline.map(|_| Measured::combine(&theirs)),
        rounds,
    })
}

/// Writes the dirty pages of each database file and its WAL to the disk (`fsync`).
fn settle(databases: &[std::path::PathBuf]) -> anyhow::Result<()> {
    for database in databases {
        let mut wal = database.clone().into_os_string();
        wal.push("-wal");
        for file in [database.as_os_str(), wal.as_os_str()] {
            if let Ok(file) = std::fs::File::open(file) {
                file.sync_all()
                    .context("write a database's pages to the disk")?;
            }
        }
    }
    Ok(())
}

/// One round of our transfers on `tasks` tasks for `duration`.
async fn transfer_round(bank: &Bank, tasks: usize, duration: Duration) -> anyhow::Result<Measured> {
    run_for(tasks, duration, bank.clone(), |bank, mut rng| async move {
        let transfer = Transfer::draw(&bank.zipf, &mut rng);
        let (from, to) = (account_key(transfer.from), account_key(transfer.to));
        let runs = bank.runs;
        let found = bank
            .store
            .transact(async move |tx| {
                runs.fetch_add(1, Ordering::Relaxed);
                let from_balance: Option<u64> = tx.get(COLLECTION, &from).await?;
                let to_balance: Option<u64> = tx.get(COLLECTION, &to).await?;
                let (Some(from_balance), Some(to_balance)) = (from_balance, to_balance) else {
                    return Ok(false);
                };
                let moved = transfer.amount.min(from_balance);
                tx.put(COLLECTION, &from, &(from_balance - moved))?;
                tx.put(COLLECTION, &to, &(to_balance + moved))?;
                Ok(true)
            })
            .await?;
        anyhow::ensure!(found, "an account vanished");
        Ok(())
    })
    .await
}

/// The number of accounts in `store` and the sum of their balances.
async fn total_balance(store: &Store) -> anyhow::Result<(u64, u64)> {
    let mut entries = store.collection::<u64>(COLLECTION)?.scan(Scan::all());
    let (mut accounts, mut total) = (0u64, 0u64);
    while let Some(entry) = entries.try_next().await.context("read the balances")? {
        accounts += 1;
        total += entry.value;
    }
    Ok((accounts, total))
}

/// Fails unless there are [`ACCOUNTS`] accounts holding what they started with.
fn check_total(accounts: u64, total: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        accounts == ACCOUNTS && total == ACCOUNTS * INITIAL_BALANCE,
        "the transfers lost money: {accounts} accounts hold {total}, expected {ACCOUNTS} holding {}",
        ACCOUNTS * INITIAL_BALANCE
    );
    Ok(())
}

/// The baseline's database: a new rusqlite database at `path` (WAL) holding the same accounts.
fn create_baseline(path: &Path) -> anyhow::Result<()> {
    let mut setup = open_baseline(path)?;
    setup
        .pragma_update(None, "journal_mode", "WAL")
        .context("set WAL")?;
    let load = setup.transaction().context("begin")?;
    load.execute_batch("CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL)")
        .context("create the accounts table")?;
    for number in 0..ACCOUNTS {
        load.execute(
            "INSERT INTO accounts (id, balance) VALUES (?1, ?2)",
            params![account_key(number), INITIAL_BALANCE as i64],
        )
        .context("create an account")?;
    }
    load.commit().context("commit the accounts")
}

/// One round of the baseline: the transfers on `threads` threads for `duration`, each thread
/// on a connection of its own (`synchronous=FULL`).
fn baseline_round(path: &Path, threads: usize, duration: Duration) -> anyhow::Result<Measured> {
    let connections = (0..threads.max(1))
        .map(|_| open_baseline(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let zipf = Zipf::new(ACCOUNTS, 0.99);
    run_threads_with(connections, duration, |connection, mut rng| {
        transfer_in_sqlite(connection, Transfer::draw(&zipf, &mut rng))
    })
}

/// Fails unless the baseline's balances add up.
fn check_baseline(path: &Path) -> anyhow::Result<()> {
    let (accounts, total): (i64, i64) = open_baseline(path)?
        .query_row("SELECT COUNT(*), SUM(balance) FROM accounts", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .context("read the balances")?;
    check_total(accounts as u64, total as u64)
}

/// A baseline connection: `synchronous=FULL` and [`BUSY_TIMEOUT`].
fn open_baseline(path: &Path) -> anyhow::Result<Connection> {
    let connection = Connection::open(path).context("open the transfer database")?;
    connection
        .pragma_update(None, "synchronous", "FULL")
        .context("set synchronous")?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .context("set the busy timeout")?;
    Ok(connection)
}

/// One transfer the obvious way: `BEGIN IMMEDIATE` (again while SQLite says busy), two
/// `SELECT`s, two `UPDATE`s, `COMMIT`.
fn transfer_in_sqlite(connection: &mut Connection, transfer: Transfer) -> anyhow::Result<()> {
    let tx = loop {
        match connection.transaction_with_behavior(TransactionBehavior::Immediate) {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == ErrorCode::DatabaseBusy => {}
            begun => break begun.context("begin")?,
        }
    };
    let (from, to) = (account_key(transfer.from), account_key(transfer.to));
    let balance = |key: &str| -> anyhow::Result<i64> {
        tx.prepare_cached("SELECT balance FROM accounts WHERE id = ?1")
            .and_then(|mut select| select.query_row([key], |row| row.get(0)))
            .context("select a balance")
    };
    let (from_balance, to_balance) = (balance(&from)?, balance(&to)?);
    let moved = (transfer.amount as i64).min(from_balance);
    let set = |key: &str, balance: i64| -> anyhow::Result<()> {
        tx.prepare_cached("UPDATE accounts SET balance = ?2 WHERE id = ?1")
            .and_then(|mut update| update.execute(params![key, balance]))
            .context("update a balance")?;
        Ok(())
    };
    set(&from, from_balance - moved)?;
    set(&to, to_balance + moved)?;
    tx.commit().context("commit")
}
