//! [`Config`]: every setting of a store, with its default and unit, and the plain policies it
//! carries ([`Retention`], which `backup` re-exports and applies).
//!
//! The library reads no files; the CLI loads a `Config` from TOML (every field optional, under
//! its field name: the time settings keep their unit in the key, `busy_timeout_ms`,
//! `cache_ttl_secs`...). Programs build one with `Config::new(path)` and the `with_*` methods
//! (`builder`), which take `Duration`s for the time settings. Every field documents its
//! default, unit and valid range; `Config::validate` (`limits`), which `Store::open` calls
//! first, refuses a value out of range naming the field.
//! **Invariant:** settings are plain data: this module depends on nothing above `codec` and
//! `error`, so every layer may read a `Config`.

mod builder;
mod limits;
mod url;

use std::path::PathBuf;

pub use url::PostgresUrl;

use crate::codec::Compression;

/// How much a returned write is guaranteed to survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Durability {
    /// A returned write survives a crash of the process and a power loss (SQLite
    /// `synchronous=FULL`: the WAL is fsynced at every commit). Default.
    #[default]
    Full,
    /// A returned write survives a crash of the process; the last commits before a power loss
    /// may be lost, never corrupted (SQLite `synchronous=NORMAL` in WAL mode).
    Process,
}

/// How writes treat the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CacheMode {
    /// A committed write puts the new value in the cache (default): the next read is a hit.
    #[default]
    WriteThrough,
    /// A committed write removes the key from the cache: written data enters the cache only
    /// when read, so bulk writes do not push out the hot set.
    WriteAround,
}

/// The settings of a store. `Config::default()` opens `./strongbox.db` with full durability.
///
/// Build one with [`Config::new`] (a file) or [`Config::postgres`] (a database server) and the
/// `with_*` methods, or deserialize it (the CLI reads TOML; every field is optional). Each
/// field's doc gives its default, unit and valid range; [`Store::open`](crate::Store::open)
/// refuses a configuration out of range ([`Config::validate`]).
///
/// ```
/// use std::time::Duration;
/// use strongbox::{CacheMode, Config};
///
/// let config = Config::new("game.db")
///     .with_busy_timeout(Duration::from_secs(2))
///     .with_cache_ttl(Duration::from_secs(30))
///     .with_cache_mode(CacheMode::WriteAround)
///     .with_maintenance_interval(Duration::ZERO); // no background maintenance
/// assert_eq!(config.busy_timeout_ms, 2_000);
/// assert_eq!(config.maintenance_interval(), Duration::ZERO);
/// config.validate()?;
/// # Ok::<(), strongbox::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
#[must_use]
pub struct Config {
    /// The database file. Default `strongbox.db` (relative to the working directory).
    /// It is created, owner-only (mode 0600), if missing; the WAL and shared-memory files that
    /// SQLite places beside it get the same mode. Valid: not empty, no NUL byte.
    pub path: PathBuf,
    /// Whether a new database is created when nothing exists at `path`. Default true. Either
    /// way, an existing file must be a Strongbox database: an empty file (a truncated store),
    /// another format or another program's SQLite database is refused, never taken for a new,
    /// empty store. A new database is built under a temporary name and moved into place
    /// complete, so a file at `path` is never half-created. Valid: either.
    pub create_if_missing: bool,
    /// Opens the database read-only. Default false. Writes, maintenance and backups restored
    /// into it fail with `Error::ReadOnly`; reads, `stats`, `verify` and backups of it work,
    /// on a file this process may not write (SQLite then needs the `-wal` and `-shm` files to
    /// exist, or the directory to be writable, as for any WAL database). Valid: either.
    pub read_only: bool,
    /// The SQLite VFS (the layer through which SQLite reads, writes and syncs files) to open
    /// the database with; `None` (the default) is the operating system's. A VFS must have been
    /// registered with SQLite under this name first (the power-loss tests register one that
    /// drops unsynced writes). Valid: a name that is not empty and has no NUL byte.
    pub sqlite_vfs: Option<String>,
    /// A PostgreSQL database to use instead of the file at `path` (the scale-out backend for
    /// many application servers on one database). Default none. Valid: not empty (the driver
    /// then parses it).
    pub postgres_url: Option<PostgresUrl>,
    /// A PEM file of certificate authorities to trust, besides the web's roots, for a
    /// PostgreSQL URL with `sslmode=require` (for example a company CA, or a self-signed
    /// server certificate). Default none. Valid: a path that is not empty.
    pub postgres_tls_ca_file: Option<PathBuf>,
    /// Whether PostgreSQL writes are announced with `NOTIFY` and each store listens, so that
    /// other servers' caches drop a written key within one notification delay. Default true.
    /// Turn it off on engines without LISTEN/NOTIFY (CockroachDB): caches then rely on
    /// `cache_ttl_secs` alone, which should be short. Valid: either.
    pub postgres_notify: bool,
    /// Connections in the PostgreSQL pool. Default 16. Valid: 1 to 1,024 (more connections
    /// cost the server memory and buy one process no parallelism).
    pub postgres_pool_size: usize,
    /// Standbys of the PostgreSQL primary that serve this store's reads (point reads,
    /// `get_many`, scans, listings, counts), each through a small pool of read-only sessions;
    /// writes, conditional checks, the reads of `Store::transact`, the change feed, snapshots,
    /// maintenance and `verify` stay on `postgres_url`. Read-your-writes holds: a standby
    /// serves a read only once it has replayed every commit made through this store, else the
    /// read waits up to `replica_wait_ms` and then goes to the primary; a standby that fails
    /// is left alone for a short while and its reads go to the primary, never an error. In a
    /// TOML file: `postgres_replicas = ["postgres://app@standby1/game", "postgres://…"]`.
    /// Default none. Valid: `postgres://` or `postgresql://` URLs, only with `postgres_url`.
    pub postgres_replicas: Vec<PostgresUrl>,
    /// How long a read waits for a standby to replay this store's latest commit before it
    /// reads from the primary instead, in milliseconds (the standby's position is polled
    /// every millisecond). Default 50. Valid: 0 to 60,000 (0: a standby that is behind is
    /// skipped at once). Only with `postgres_replicas`.
    pub replica_wait_ms: u64,
    /// Durability of returned writes. Default [`Durability::Full`]. Valid: any.
    pub durability: Durability,
    /// Compression of new values. Default zstd, balanced. Changing it never affects reading.
    /// Valid: any.
    pub compression: Compression,
    /// A collection gets a zstd dictionary, trained on a sample of its values by maintenance (or
    /// while it is written, see `train_while_writing`), once it holds at least this many
    /// records (see `Store::train_dictionaries`). Default
    /// 1,000; 0 turns dictionaries off. Only with zstd compression. Valid: any.
    pub dictionary_min_values: u64,
    /// Whether a collection written without a dictionary is trained in the background as soon
    /// as this process has written `dictionary_min_values` of its values (then at four times as
    /// many while training does not pay), rather than at the next maintenance run: a bulk load
    /// is then compressed with its dictionary from its first thousands of values on. Default
    /// true. Valid: either.
    pub train_while_writing: bool,
    /// Largest serialized value accepted, in bytes; also the most a stored value may expand to
    /// when decompressed. Default 16 MiB (16,777,216). Valid: 1 to 1 GiB (1,073,741,824).
    pub max_value_bytes: usize,
    /// How long a call waits for a lock held by another connection or process, or for a free
    /// connection, before failing with `Error::Busy`, in milliseconds. Default 5,000. Valid: 1
    /// to 2,147,483,647 (about 24.8 days: SQLite and PostgreSQL take an `int` of milliseconds,
    /// and PostgreSQL reads 0 as "wait forever"). See [`Config::busy_timeout`].
    pub busy_timeout_ms: u64,
    /// Number of read-only connections, so that that many reads run in parallel while a write
    /// commits. Default 4. Valid: 1 to 1,024 (each is an open SQLite connection).
    pub read_connections: usize,
    /// Whether a SQLite point read (`retrieve`) runs on the calling task when a read connection
    /// is free, instead of on a blocking thread. The query then blocks the task for its length:
    /// microseconds when the pages are in memory, longer on a cold disk, and up to
    /// `busy_timeout_ms` while another process holds the file exclusively (WAL recovery). It
    /// saves two thread handoffs per read, which on 2 cores doubles the cold-read rate.
    /// Default true. Valid: either.
    pub inline_reads: bool,
    /// Largest number of queued write requests the writer commits together in one transaction
    /// (group commit). Default 256. A request waits for no one: the writer takes what is
    /// queued when it becomes free. Valid: 1 to 65,536.
    pub max_batch_requests: usize,
    /// How many times [`Store::transact`](crate::Store::transact) runs a transaction whose
    /// reads keep changing before it returns `Error::Conflict`. Default 1,000 (with a jittered
    /// pause of up to 50 ms between attempts). Valid: 1 to 1,000,000.
    pub transact_attempts: u32,
    /// Bytes of values the in-memory cache may hold, counting each entry's stored (compressed)
    /// size plus its key and a fixed overhead. Default 64 MiB (67,108,864); 0 turns it off.
    /// Valid: any.
    pub cache_capacity_bytes: u64,
    /// Seconds an entry stays in the cache after it was stored or fetched. This bounds how long
    /// a write made by *another process* can stay unseen here. Default 300. Valid: 1 to
    /// 31,536,000,000 (1,000 years, the cache's limit); to turn the cache off, set
    /// `cache_capacity_bytes` to 0. See [`Config::cache_ttl`].
    pub cache_ttl_secs: u64,
    /// Write-through (default) or write-around. Valid: any.
    pub cache_mode: CacheMode,
    /// Seconds between statistics reports (tracing event and metric gauges), which also flush
    /// read counts. Default 60; 0 turns the task off. Valid: 0 to 31,536,000 (365 days), as
    /// every interval. See [`Config::stats_interval`].
    pub stats_interval_secs: u64,
    /// Maintenance rebuilds the whole file (a full vacuum, which holds writes back while it runs)
    /// when more than this percentage of it is slack (free pages, and space left in half-empty
    /// pages, which an incremental vacuum cannot return) and nobody committed a write during the
    /// run, neither this store nor another process (under writes it is deferred, and the report
    /// says so). Default 25 (values recompressed smaller after training leave their pages part
    /// empty: on the bench's 20,000 records that was 30% of the file, which a full vacuum
    /// returned, 1,213 bytes a record becoming 919); 0 never does. Valid: 0 to 100. SQLite
    /// only: PostgreSQL's slack is not measured, so there a full vacuum runs only on request.
    pub vacuum_slack_percent: u8,
    /// A backup repository: a directory, or (with the `s3` feature) an `s3://bucket/prefix`
    /// URL. When set, maintenance takes a backup (then prunes with `backup_retention`)
    /// whenever the newest backup is older than `backup_interval_secs`, and the CLI's `backup`
    /// commands use it when `--repo` is not given. Default none. Valid: not empty.
    pub backup_repository: Option<PathBuf>,
    /// The key file of an encrypted `backup_repository` (32 bytes, or 64 hex digits): the
    /// store's scheduled backups, `follow` task and backup-age gauge open it with this key,
    /// and create it encrypted under it when it does not exist yet. Default none. Valid: a
    /// path that is not empty, with `backup_repository` set; not with the password file.
    pub backup_repository_key_file: Option<PathBuf>,
    /// As `backup_repository_key_file`, with a passphrase: the first line of this file.
    pub backup_repository_password_file: Option<PathBuf>,
    /// Where an `s3://` `backup_repository` is mirrored (`backup::Offsite`). Default none:
    /// `$XDG_CACHE_HOME/strongbox`, else `~/.cache/strongbox`.
    pub backup_cache_dir: Option<PathBuf>,
    /// Seconds between scheduled backups. Default 86,400 (a day); 0 turns scheduling off.
    /// Valid: 0 to 31,536,000 (365 days). See [`Config::backup_interval`].
    pub backup_interval_secs: u64,
    /// Seconds between continuous-backup steps: when not 0, a background task ships the
    /// changes committed since the newest backup into `backup_repository` as a new backup
    /// every interval (as `strongbox backup follow` does), so that at most about that many
    /// seconds of acknowledged writes are outside the repository. Default 0 (off). Valid: 0 to
    /// 31,536,000; when not 0, `backup_repository` must be set and `change_feed` on.
    pub backup_follow_secs: u64,
    /// Which backups a scheduled prune keeps. Default: the last 7, plus one a day for 7 days
    /// and one a week for 4 weeks. Valid: any count each, but while backups are scheduled
    /// (`backup_repository` set, `backup_interval_secs` not 0) at least one must be above 0,
    /// or the prune after each backup would delete them all.
    pub backup_retention: Retention,
    /// Seconds between background maintenance runs. Default 3,600; 0 turns the task off.
    /// Valid: 0 to 31,536,000 (365 days). See [`Config::maintenance_interval`].
    pub maintenance_interval_secs: u64,
    /// Seconds between sweeps of expired cache entries. Default 300; 0 turns the task off.
    /// Valid: 0 to 31,536,000 (365 days). See [`Config::cache_eviction_interval`].
    pub cache_eviction_interval_secs: u64,
    /// Seconds between sweeps of expired records (deleted in batches, each with an `expired`
    /// change; see [`Expiry`](crate::Expiry)). Default 60; 0 turns the task off (maintenance
    /// still sweeps). An expired record is absent for reads from its expiry instant whatever
    /// this says: the sweep only reclaims its space. Valid: 0 to 31,536,000 (365 days). See
    /// [`Config::expiry_sweep_interval`].
    pub expiry_sweep_interval_secs: u64,
    /// Seconds the change feed keeps a change (`Store::changes`, `Store::subscribe`);
    /// maintenance trims older ones. Default 604,800 (7 days); 0 keeps changes whatever their
    /// age. Valid: 0 to 31,536,000,000 (1,000 years). See [`Config::changes_retention`].
    pub changes_retention_secs: u64,
    /// The most changes the change feed keeps; maintenance trims the oldest beyond it.
    /// Default 1,000,000; 0 keeps any number. Valid: any.
    pub changes_retention_count: u64,
    /// Whether this store's writes are recorded in the change feed. Default true. Off, a write
    /// appends no change (one row less per write), and `Store::changes` and `Store::subscribe`
    /// fail with `Error::InvalidConfig`. Every process and server writing a database should
    /// agree: a subscriber elsewhere never sees the writes of a store with the feed off.
    /// Valid: either.
    pub change_feed: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: PathBuf::from("strongbox.db"),
            create_if_missing: true,
            read_only: false,
            sqlite_vfs: None,
            postgres_url: None,
            postgres_tls_ca_file: None,
            postgres_notify: true,
            postgres_pool_size: 16,
            postgres_replicas: Vec::new(),
            replica_wait_ms: 50,
            durability: Durability::Full,
            compression: Compression::default(),
            dictionary_min_values: 1_000,
            train_while_writing: true,
            max_value_bytes: 16 << 20,
            busy_timeout_ms: 5_000,
            read_connections: 4,
            inline_reads: true,
            max_batch_requests: 256,
            transact_attempts: 1_000,
            cache_capacity_bytes: 64 << 20,
            cache_ttl_secs: 300,
            cache_mode: CacheMode::WriteThrough,
            stats_interval_secs: 60,
            vacuum_slack_percent: 25,
            backup_repository: None,
            backup_repository_key_file: None,
            backup_repository_password_file: None,
            backup_cache_dir: None,
            backup_interval_secs: 86_400,
            backup_follow_secs: 0,
            backup_retention: Retention::default(),
            maintenance_interval_secs: 3_600,
            cache_eviction_interval_secs: 300,
            expiry_sweep_interval_secs: 60,
            changes_retention_secs: 7 * 24 * 3_600,
            changes_retention_count: 1_000_000,
            change_feed: true,
        }
    }
}

impl Config {
    /// The default configuration for a database file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Config {
            path: path.into(),
            ..Config::default()
        }
    }

    /// The default configuration for a PostgreSQL database, given by a `postgres://` URL.
    pub fn postgres(url: impl Into<String>) -> Self {
        Config {
            postgres_url: Some(PostgresUrl::new(url)),
            ..Config::default()
        }
    }

    /// A configuration for a `--db` argument: a `postgres://` URL or a file path.
    pub fn for_location(location: &str) -> Self {
        if PostgresUrl::is_postgres(location) {
            Config::postgres(location)
        } else {
            Config::new(location)
        }
    }

    /// Where the data lives, for messages: the file path or the redacted URL.
    pub fn location(&self) -> String {
        match &self.postgres_url {
            Some(url) => url.redacted(),
            None => self.path.display().to_string(),
        }
    }
}

/// Which backups a prune keeps ([`Repository::prune`](crate::backup::Repository::prune)), like
/// restic's `forget`: a backup kept by any rule is kept, and the newest backup is always
/// kept. Days and weeks are UTC; weeks start on Monday. In a configuration file every key is
/// optional, so files written before `keep_within_secs` read as they did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[must_use]
pub struct Retention {
    /// Keep the newest this many backups. Default 7.
    pub keep_last: usize,
    /// For each of the newest this many days that have backups, keep the newest backup of
    /// the day. Default 7.
    pub keep_daily: usize,
    /// For each of the newest this many weeks that have backups, keep the newest backup of
    /// the week. Default 4.
    pub keep_weekly: usize,
    /// Keep every backup taken within this many seconds before the newest backup (restic's
    /// `--keep-within`: measured from the newest backup, not from now, so that a repository
    /// whose backups stopped keeps what it had). Default 0 (off). See
    /// [`Retention::keep_within`].
    pub keep_within_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
            keep_within_secs: 0,
        }
    }
}

impl Retention {
    /// Keep only the newest `count` backups.
    pub fn last(count: usize) -> Self {
        Retention {
            keep_last: count,
            keep_daily: 0,
            keep_weekly: 0,
            keep_within_secs: 0,
        }
    }

    /// Also keep every backup taken within `window` before the newest one (to the second).
    pub fn with_keep_within(mut self, window: std::time::Duration) -> Self {
        self.keep_within_secs = window.as_secs();
        self
    }

    /// `keep_within_secs` as a [`Duration`](std::time::Duration).
    pub fn keep_within(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.keep_within_secs)
    }

    /// Whether any rule keeps a backup (a retention with none would delete every backup but
    /// the newest, which is refused as a mistake).
    pub fn has_rule(&self) -> bool {
        self.keep_last > 0
            || self.keep_daily > 0
            || self.keep_weekly > 0
            || self.keep_within_secs > 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A configuration file as users wrote them before the `Duration` methods: every key,
    /// with its unit in its name.
    const EVERY_KEY: &str = r#"
        path = "game.db"
        create_if_missing = false
        read_only = false
        sqlite_vfs = "unix"
        postgres_url = "postgres://app@db/game"
        postgres_tls_ca_file = "ca.pem"
        postgres_notify = false
        postgres_pool_size = 8
        postgres_replicas = ["postgres://app@standby1/game", "postgresql://app@standby2/game"]
        replica_wait_ms = 20
        durability = "process"
        dictionary_min_values = 500
        train_while_writing = false
        max_value_bytes = 1048576
        busy_timeout_ms = 1234
        read_connections = 2
        inline_reads = false
        max_batch_requests = 64
        transact_attempts = 50
        cache_capacity_bytes = 1000000
        cache_ttl_secs = 30
        cache_mode = "write_around"
        stats_interval_secs = 10
        vacuum_slack_percent = 30
        backup_repository = "backups"
        backup_repository_key_file = "backups.key"
        backup_interval_secs = 7200
        maintenance_interval_secs = 600
        cache_eviction_interval_secs = 20
        expiry_sweep_interval_secs = 5
        changes_retention_secs = 3600
        changes_retention_count = 5000
        change_feed = false

        [compression]
        algorithm = "gzip"
        level = "fast"

        [backup_retention]
        keep_last = 3
        keep_daily = 2
        keep_weekly = 1
    "#;

    #[test]
    fn a_toml_file_with_every_key_still_parses_in_its_units() -> Result<(), toml::de::Error> {
        let config: Config = toml::from_str(EVERY_KEY)?;
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        assert_eq!(config.busy_timeout(), Duration::from_millis(1_234));
        assert_eq!(config.cache_ttl(), Duration::from_secs(30));
        assert_eq!(config.stats_interval(), Duration::from_secs(10));
        assert_eq!(config.maintenance_interval(), Duration::from_secs(600));
        assert_eq!(config.cache_eviction_interval(), Duration::from_secs(20));
        assert_eq!(config.backup_interval(), Duration::from_secs(7_200));
        assert_eq!(config.changes_retention(), Duration::from_secs(3_600));
        assert_eq!(config.changes_retention_count, 5_000);
        assert_eq!(config.expiry_sweep_interval_secs, 5);
        assert!(!config.change_feed);
        assert!(!config.train_while_writing);
        assert_eq!(
            config.backup_retention,
            Retention {
                keep_last: 3,
                keep_daily: 2,
                keep_weekly: 1,
                keep_within_secs: 0
            }
        );
        assert_eq!(config.cache_mode, CacheMode::WriteAround);
        assert_eq!(config.durability, Durability::Process);
        assert_eq!(config.transact_attempts, 50);
        assert_eq!(config.postgres_replicas.len(), 2);
        assert_eq!(config.replica_wait_ms, 20);
        // What a configuration serializes to reads back the same, under the same keys.
        let text = toml::to_string(&config)
            .map_err(|error| <toml::de::Error as serde::de::Error>::custom(error.to_string()))?;
        assert!(text.contains("busy_timeout_ms = 1234"), "{text}");
        assert_eq!(toml::from_str::<Config>(&text)?, config);
        Ok(())
    }

    #[test]
    fn omitted_keys_keep_their_defaults() -> Result<(), toml::de::Error> {
        let config: Config = toml::from_str("cache_ttl_secs = 5\n")?;
        assert_eq!(
            config,
            Config::default().with_cache_ttl(Duration::from_secs(5))
        );
        Ok(())
    }
}
