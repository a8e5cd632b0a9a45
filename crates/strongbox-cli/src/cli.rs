//! The command line: the top-level `Cli`, the global options, the list of subcommands and the
//! exit codes. Each subcommand's options live beside it, in `commands/`.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands;
use crate::location::{Location, LocationParser};

/// The exit codes, shown at the end of `strongbox --help`. `main::exit_code` implements them.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other error (I/O, invalid input such as a number that would not be stored exactly,
     invalid configuration, a write to a read-only database, too few open files allowed...)
  2  usage error (unknown option, missing argument, a database URL of another scheme, an
     invalid collection name or --from after --to for scan, get --meta with several keys)
  3  key not found (get, delete, backup dump; get with several keys: any of them, after
     printing them all)
  4  verify found problems (verify, demo, backup verify, backup check)
  5  conflict: a conditional write found another version (put --if-version/--if-absent)
  6  busy: the database stayed locked by another process for too long, or the backup
     repository's lock for longer than --lock-timeout
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
    /// Database: a file [default: ./strongbox.db], or a postgres:// (postgresql://) URL; any
    /// other scheme:// is refused (write a file named like a URL as ./name). Overrides the
    /// `path` (or `postgres_url`) of --config.
    #[arg(long, global = true, env = "STRONGBOX_DB", hide_env_values = true,
          value_name = "PATH|URL", value_parser = LocationParser)]
    pub db: Option<Location>,
    /// TOML file of settings (durability, compression, busy_timeout_ms...; see the README).
    #[arg(
        long,
        global = true,
        env = "STRONGBOX_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Open the database read-only: commands that write fail (exit code 1). Reading commands
    /// open a database file this user may not write read-only by themselves.
    #[arg(long, global = true)]
    pub read_only: bool,
    /// Log more on standard error: -v informational messages, -vv debugging [default:
    /// warnings; RUST_LOG applies when neither -v nor -q is given].
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Log errors only, and draw no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Whether --db was given on the command line (not by STRONGBOX_DB); set by [`parse`].
    #[arg(skip)]
    pub db_on_command_line: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a JSON value under COLLECTION/KEY and print its new version.
    Put(commands::put::PutArgs),
    /// Print the JSON value stored under COLLECTION/KEY, or under several keys (exit code 3
    /// when any is absent).
    Get(commands::get::GetArgs),
    /// Delete COLLECTION/KEY (exit code 3 when absent).
    Delete(commands::delete::DeleteArgs),
    /// List the keys of a collection, in order, one per line.
    List(commands::list::ListArgs),
    /// Print a collection's records (key, version, value) in key order, as they are read.
    ///
    /// Print the records of a collection with their versions and values, in key (byte) order
    /// or reversed, as they are read, a page at a time: memory stays bounded whatever the
    /// collection's size. --prefix, --from (inclusive) and --to (exclusive) select keys, and
    /// together the keys that satisfy each; an empty range prints nothing (exit code 0).
    Scan(commands::scan::ScanArgs),
    /// List the collections with their record counts.
    Collections(commands::collections::CollectionsArgs),
    /// Import JSON lines {"collection":..., "key":..., "value":...} in batched transactions.
    Import(commands::import::ImportArgs),
    /// Export records as JSON lines, collections and keys in order.
    Export(commands::export::ExportArgs),
    /// Show what the database holds and what compression and deduplication save.
    Stats(commands::stats::StatsArgs),
    /// Print the change feed after a sequence number: one line (or JSON object) per change.
    Changes(commands::changes::ChangesArgs),
    /// Follow the change feed (of one collection, or all) until interrupted (Ctrl-C: exit 0).
    Watch(commands::watch::WatchArgs),
    /// Check every stored value against its hash and every reference (exit code 4 on problems).
    Verify(commands::verify::VerifyArgs),
    /// Simulate a BitCraps game night on a temporary database (or on --db) and report.
    #[command(
        long_about = "Simulate a BitCraps game night: player profiles, concurrent game \
    tables with bets and dice rolls, chip transfers in versioned transactions, chat, a deliberate \
    conflict; then read everything back, check the total of chips and verify the store.\n\n\
    It runs on a fresh temporary database, removed at exit, unless --db is given on the command \
    line (STRONGBOX_DB is ignored here, so the demo never writes into your database by accident). \
    Exit code 0 only if verify is clean and the total of chips held."
    )]
    Demo(commands::demo::DemoArgs),
    /// Optimize, vacuum, checkpoint, check integrity and collect orphans, then print the report.
    Maintenance(commands::maintenance::MaintenanceArgs),
    /// Serve the database's metrics in Prometheus text format on http://ADDR/metrics.
    ServeMetrics(commands::serve_metrics::ServeMetricsArgs),
    /// Back up, list, verify, restore and prune backups in a repository directory.
    Backup(commands::backup::BackupArgs),
    /// Copy a store into another (empty) database, SQLite or PostgreSQL, verified.
    Migrate(commands::migrate::MigrateArgs),
    /// Print a shell completion script (for example `strongbox completions bash`).
    Completions(commands::completions::CompletionsArgs),
    /// Print the manual page (roff; `strongbox man | man -l -`).
    Man,
    /// The benchmark moved to its own binary; this only says how to run it.
    #[command(hide = true)]
    Bench {
        /// Whatever followed `bench`: ignored.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ignored: Vec<String>,
    },
}

impl Command {
    /// What clap cannot check alone: options that are refused together, with the name of the
    /// subcommand and why.
    fn usage_error(&self) -> Option<(&'static str, String)> {
        match self {
            Command::Get(args) => args.usage_error().map(|message| ("get", message)),
            Command::Scan(args) => args.usage_error().map(|message| ("scan", message)),
            _ => None,
        }
    }
}

/// The command-line definition, for help, completions and the manual page.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses the command line, exiting with code 2 (after printing why) on a usage error.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if let Some((name, message)) = cli.command.usage_error() {
        let mut command = command();
        command.build();
        let error_kind = clap::error::ErrorKind::ArgumentConflict;
        match command.find_subcommand_mut(name) {
            Some(subcommand) => subcommand.error(error_kind, message).exit(),
            None => command.error(error_kind, message).exit(),
        }
    }
    let on_command_line =
        |matches: &clap::ArgMatches| matches.value_source("db") == Some(ValueSource::CommandLine);
    cli.global.db_on_command_line = on_command_line(&matches)
        || matches
            .subcommand()
            .is_some_and(|(_, sub)| on_command_line(sub));
    cli
}
