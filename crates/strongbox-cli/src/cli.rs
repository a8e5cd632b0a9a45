//! The command line: clap definitions of the global options and of every subcommand.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// The exit codes, shown at the end of `strongbox --help`. `main::exit_code` implements them.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other error (I/O, invalid input such as a number that would not be stored exactly,
     invalid configuration, too few open files allowed...)
  2  usage error (unknown option, missing argument)
  3  key not found (get, delete)
  4  verify found problems (verify, demo)
  5  conflict: a conditional write found another version (put --if-version/--if-absent)
  6  busy: the database stayed locked by another process for too long
  7  corrupt data: a stored value failed its integrity check, or the database file is damaged
  8  storage full: the disk (or file size limit) is full; nothing of the failed write was stored";

/// `strongbox`: inspect, import, export, verify and demo a Strongbox database.
#[derive(Debug, Parser)]
#[command(name = "strongbox", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// The options shared by every command.
    #[command(flatten)]
    pub global: GlobalOptions,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after any subcommand.
#[derive(Debug, Args)]
pub struct GlobalOptions {
    /// Database file [default: ./strongbox.db], or a postgres:// URL. Overrides the `path` (or
    /// `postgres_url`) of --config.
    #[arg(long, global = true, env = "STRONGBOX_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// TOML file with the fields of strongbox::Config (durability, compression, busy_timeout_ms...).
    #[arg(long, global = true, env = "STRONGBOX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Whether --db was given on the command line (not by STRONGBOX_DB); set by [`parse`].
    #[arg(skip)]
    pub db_on_command_line: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a JSON value under COLLECTION/KEY and print its new version.
    Put(PutArgs),
    /// Print the JSON value stored under COLLECTION/KEY (exit code 3 when absent).
    Get(GetArgs),
    /// Delete COLLECTION/KEY (exit code 3 when absent).
    Delete(DeleteArgs),
    /// List the keys of a collection, in order, one per line.
    List(ListArgs),
    /// List the collections with their record counts.
    Collections(CollectionsArgs),
    /// Import JSON lines {"collection":..., "key":..., "value":...} in batched transactions.
    Import(ImportArgs),
    /// Export records as JSON lines, collections and keys in order.
    Export(ExportArgs),
    /// Show what the database holds and what compression and deduplication save.
    Stats(StatsArgs),
    /// Check every stored value against its hash and every reference (exit code 4 on problems).
    Verify(VerifyArgs),
    /// Simulate a BitCraps game night on a temporary database (or on --db) and report.
    #[command(
        long_about = "Simulate a BitCraps game night: player profiles, concurrent game \
    tables with bets and dice rolls, chip transfers in versioned transactions, chat, a deliberate \
    conflict; then read everything back, check the total of chips and verify the store.\n\n\
    It runs on a fresh temporary database, removed at exit, unless --db is given on the command \
    line (STRONGBOX_DB is ignored here, so the demo never writes into your database by accident). \
    Exit code 0 only if verify is clean and the total of chips held."
    )]
    Demo(DemoArgs),
    /// Optimize, vacuum, checkpoint, check integrity and collect orphans, then print the report.
    Maintenance(crate::commands::maintenance::MaintenanceArgs),
    /// Serve the database's metrics in Prometheus text format on http://ADDR/metrics.
    ServeMetrics(crate::commands::serve_metrics::ServeMetricsArgs),
    /// Back up, list, verify, restore and prune backups in a repository directory.
    Backup(crate::commands::backup::BackupArgs),
    /// Copy a store into another (empty) database, SQLite or PostgreSQL, verified.
    Migrate(crate::commands::migrate::MigrateArgs),
    /// Benchmark Strongbox against the seed's approach on a dataset (fresh temporary databases).
    Bench(crate::commands::bench::BenchArgs),
}

/// `put COLLECTION KEY [JSON]`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// The value, as JSON; read from standard input when omitted. Refused when it would not be
    /// stored exactly as written: a number beyond 64-bit integers and doubles
    /// (123456789012345678901234567890, 1e-400; write such numbers as strings) or an object
    /// with a duplicate key.
    pub json: Option<String>,
    /// Store only if the record is currently at this version (else exit code 5).
    #[arg(long, value_name = "N", conflicts_with = "if_absent")]
    pub if_version: Option<u64>,
    /// Store only if the key does not exist yet (else exit code 5).
    #[arg(long)]
    pub if_absent: bool,
}

/// `get COLLECTION KEY`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// Print indented JSON instead of one line.
    #[arg(long)]
    pub pretty: bool,
    /// Print {"value":..., "version":..., "created_at_ms":..., ...} instead of the bare value.
    #[arg(long)]
    pub meta: bool,
}

/// `delete COLLECTION KEY`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// Delete only if the record is currently at this version (else exit code 5).
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
}

/// `list COLLECTION`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Collection name.
    pub collection: String,
    /// Only keys starting with this prefix.
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// Only keys after this one (pass the last key of a page to get the next page).
    #[arg(long, value_name = "KEY")]
    pub start_after: Option<String>,
    /// At most this many keys.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print a JSON array instead of one key per line.
    #[arg(long)]
    pub json: bool,
}

/// `collections`.
#[derive(Debug, Args)]
pub struct CollectionsArgs {
    /// Print a JSON array of {"collection":..., "records":...} instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `import FILE`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON lines file; `-` reads standard input. A value is refused, like `put` refuses it, when
    /// it would not be stored exactly as written; a line longer than max_value_bytes plus
    /// 64 KiB is refused without being read whole.
    pub file: PathBuf,
    /// Lines per transaction: a bad line discards its whole batch, earlier batches stay.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Skip bad lines (unparseable, missing fields, invalid names, too large), report how many.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Do not run maintenance afterwards. By default the import ends with one: collections that
    /// now hold enough values get a compression dictionary and are recompressed with it, and the
    /// space that frees goes back to the file system.
    #[arg(long)]
    pub no_maintenance: bool,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `export [COLLECTION]`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Export only this collection (default: all of them).
    pub collection: Option<String>,
    /// Output file, created owner-only (mode 0600) and moved into place when complete; a device
    /// or FIFO (/dev/null) is written directly; `-` or nothing writes to standard output.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print the strongbox::StorageStats fields as a JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print again every SECS seconds until interrupted (a JSON object per line with --json).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the report as a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `demo`.
#[derive(Debug, Args)]
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

/// Parses the command line, exiting with code 2 (after printing why) on a usage error.
pub fn parse() -> Cli {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let on_command_line =
        |matches: &clap::ArgMatches| matches.value_source("db") == Some(ValueSource::CommandLine);
    cli.global.db_on_command_line = on_command_line(&matches)
        || matches
            .subcommand()
            .is_some_and(|(_, sub)| on_command_line(sub));
    cli
}
