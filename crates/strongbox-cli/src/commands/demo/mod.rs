//! `strongbox demo`: a simulated BitCraps game night, end to end, on a temporary database.
//!
//! 1. **Setup** ([`setup`]): player profiles, chip balances, settings, avatars and
//!    achievements ([`fixtures`]), written in transactions by concurrent tasks.
//! 2. **Game night** ([`table`]): one task per table, all concurrent: bets, chat, dice rolls
//!    until the round is decided ([`rules`]), settlement against the table's bank ([`settle`]),
//!    and tips to players at other tables, so updates of one balance race: each is a
//!    `Store::transact` transaction, which runs again when what it read changed, so no update
//!    is lost ([`chips`]).
//! 3. **A deliberate conflict** ([`conflict`]): two transfers expecting the same version of one
//!    balance; exactly one commits, the other fails with `Error::Conflict`.
//! 4. **Read back** every record, compare each to what was last written ([`tally`]), check that
//!    the total of chips never changed ([`checks`]), show what compression and deduplication
//!    saved, and verify ([`report`] prints each phase).
//!
//! Randomness comes from rand's `SmallRng` seeded with `--seed` ([`dice`]), so one seed gives
//! one game (apart from the order in which concurrent tables interleave).

mod checks;
mod chips;
mod conflict;
mod dice;
mod fixtures;
mod report;
mod rules;
mod settle;
mod setup;
mod table;
mod tally;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use strongbox::Store;

use self::fixtures::Player;
use self::tally::Tally;
use crate::cli::GlobalOptions;
use crate::output::Output;

/// Options of `strongbox demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of players.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(2..=100_000))]
    pub players: u64,
    /// Rounds played at each table.
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub rounds: u64,
    /// Game tables running concurrently.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub tables: u64,
    /// Seed of the random number generator (same seed, same game).
    #[arg(long, value_name = "N", default_value_t = 0x00B1_7C4A)]
    pub seed: u64,
}

/// What every task shares.
#[derive(Debug)]
struct Ctx {
    store: Store,
    players: Vec<Player>,
}

/// Runs the demo and prints its report.
///
/// # Errors
/// [`Failure::Problems`](crate::commands::Failure) (exit code 4) when verify finds problems; an
/// error when the total of chips changed, a value read back differs, the `--db` file is not
/// empty, or a store call fails.
pub async fn run(global: &GlobalOptions, args: DemoArgs) -> anyhow::Result<()> {
    let loaded = crate::config::load(global)?;
    let mut out = Output::stdout();
    out.line("Strongbox demo: a BitCraps game night")?;
    // Dropped (and removed) at the end of this function, after the store is closed.
    let temporary;
    let config = if global.db_on_command_line {
        out.line(format_args!("  database  {}", loaded.location()))?;
        loaded
    } else {
        temporary = tempfile::Builder::new()
            .prefix("strongbox-demo-")
            .tempdir()
            .context("create a temporary directory for the demo database")?;
        let path = temporary.path().join("bitcraps.db");
        out.line(format_args!(
            "  database  {} (temporary, removed at exit)",
            path.display()
        ))?;
        crate::config::with_path(loaded, path)
    };
    out.line(format_args!(
        "  {} players, {} tables, {} rounds per table, seed {}",
        args.players, args.tables, args.rounds, args.seed
    ))?;
    out.line("")?;
    out.flush()?;
    let store = crate::commands::open_config(config).await?;
    let result = play(&store, &args, &mut out).await;
    let result = crate::commands::close(store, result).await;
    out.finish()?;
    result
}

/// The whole game night on an open store.
async fn play(store: &Store, args: &DemoArgs, out: &mut Output) -> anyhow::Result<()> {
    let started = Instant::now();
    checks::ensure_empty(store).await?;
    let mut rng = dice::seeded(args.seed);
    let players = fixtures::players(args.players, &mut rng);
    let ctx = Arc::new(Ctx {
        store: store.clone(),
        players,
    });
    let tables = usize::try_from(args.tables).context("count tables")?;
    let mut total = Tally::default();

    let phase = Instant::now();
    let (setup, initial_chips) = setup::setup(&ctx, tables, &mut rng).await?;
    report::setup(out, &setup, phase.elapsed())?;
    total.add(setup);

    let phase = Instant::now();
    let night = table::play_night(&ctx, tables, args.rounds, &mut rng).await?;
    report::night(out, tables, &night, phase.elapsed())?;
    total.add(night);

    let (conflict, lines) = conflict::deliberate_conflict(&ctx).await?;
    report::conflict(out, lines)?;
    total.add(conflict);

    let phase = Instant::now();
    let expected = total.take_expected();
    let read = checks::read_back(store, &expected).await?;
    report::read_back(out, &read, phase.elapsed())?;
    checks::ensure_all_read(&read, &expected)?;
    report::chips(out, initial_chips, &read)?;

    let stats = store
        .storage_stats()
        .await
        .context("read storage statistics")?;
    report::storage(out, &stats)?;
    // The workload's time, without the maintenance and the verification below.
    let elapsed = started.elapsed();
    // Collections with enough values get a compression dictionary.
    let maintenance = store.maintenance().await.context("run maintenance")?;
    let after = store
        .storage_stats()
        .await
        .context("read storage statistics")?;
    report::maintenance(out, &maintenance, &after)?;
    let verified = store.verify().await.context("verify the database")?;
    report::verify(out, &verified)?;
    report::total(out, total.writes, read.records, elapsed)?;
    checks::verdict(&verified, &read, initial_chips)
}
