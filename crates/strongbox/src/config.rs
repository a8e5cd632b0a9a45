//! [`Config`]: every setting of a store, with its default and unit, and the plain policies it
//! carries ([`Retention`], which `backup` re-exports and applies).
//!
//! The library reads no files; the CLI loads a `Config` from TOML (every field optional).
//! **Invariant:** settings are plain data: this module depends on nothing above `codec` and
//! `error`, so every layer may read a `Config`.

use std::path::PathBuf;

use crate::codec::Compression;
use crate::error::{Error, Result};

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

/// A `postgres://` connection URL. Its `Debug` form hides the password, so that a logged
/// configuration never shows it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Wraps a URL such as `postgres://user:secret@host:5432/db`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresUrl(url.into())
    }

    /// The URL, with its password.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for messages.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
            return "***".to_owned();
        };
        let rest = url.get(scheme_end..).unwrap_or_default();
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = rest.get(..authority_end).unwrap_or_default();
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => format!(
                "{}{}:***{}",
                url.get(..scheme_end).unwrap_or_default(),
                authority.get(..colon).unwrap_or_default(),
                rest.get(at..).unwrap_or_default()
            ),
            _ if url.contains("password=") => {
                "postgres://*** (the URL holds a password)".to_owned()
            }
            _ => url.clone(),
        }
    }

    /// Whether a `--db` argument names a PostgreSQL database rather than a file.
    pub fn is_postgres(location: &str) -> bool {
        location.starts_with("postgres://") || location.starts_with("postgresql://")
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The settings of a store. `Config::default()` opens `./strongbox.db` with full durability.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The database file. Default `strongbox.db` (relative to the working directory).
    /// It is created, owner-only (mode 0600), if missing; the WAL and shared-memory files that
    /// SQLite places beside it get the same mode.
    pub path: PathBuf,
    /// Whether a new database is created when nothing exists at `path`. Default true. Either
    /// way, an existing file must be a Strongbox database: an empty file (a truncated store),
    /// another format or another program's SQLite database is refused, never taken for a new,
    /// empty store. A new database is built under a temporary name and moved into place
    /// complete, so a file at `path` is never half-created.
    pub create_if_missing: bool,
    /// Opens the database read-only. Default false. Writes, maintenance and backups restored
    /// into it fail with `Error::ReadOnly`; reads, `stats`, `verify` and backups of it work,
    /// on a file this process may not write (SQLite then needs the `-wal` and `-shm` files to
    /// exist, or the directory to be writable, as for any WAL database).
    pub read_only: bool,
    /// The SQLite VFS (the layer through which SQLite reads, writes and syncs files) to open
    /// the database with; `None` (the default) is the operating system's. A VFS must have been
    /// registered with SQLite under this name first (the power-loss tests register one that
    /// drops unsynced writes).
    pub sqlite_vfs: Option<String>,
    /// A PostgreSQL database to use instead of the file at `path` (the scale-out backend for
    /// many application servers on one database). Default none.
    pub postgres_url: Option<PostgresUrl>,
    /// A PEM file of certificate authorities to trust, besides the web's roots, for a
    /// PostgreSQL URL with `sslmode=require` (for example a company CA, or a self-signed
    /// server certificate). Default none.
    pub postgres_tls_ca_file: Option<PathBuf>,
    /// Whether PostgreSQL writes are announced with `NOTIFY` and each store listens, so that
    /// other servers' caches drop a written key within one notification delay. Default true.
    /// Turn it off on engines without LISTEN/NOTIFY (CockroachDB): caches then rely on
    /// `cache_ttl_secs` alone, which should be short.
    pub postgres_notify: bool,
    /// Connections in the PostgreSQL pool. Default 16; at least 1.
    pub postgres_pool_size: usize,
    /// Durability of returned writes. Default [`Durability::Full`].
    pub durability: Durability,
    /// Compression of new values. Default zstd, balanced. Changing it never affects reading.
    pub compression: Compression,
    /// A collection gets a zstd dictionary, trained on a sample of its values by maintenance,
    /// once it holds at least this many records (see `Store::train_dictionaries`). Default
    /// 1,000; 0 turns dictionaries off. Only with zstd compression.
    pub dictionary_min_values: u64,
    /// Largest serialized value accepted, in bytes; also the most a stored value may expand to
    /// when decompressed. Default 16 MiB (16,777,216).
    pub max_value_bytes: usize,
    /// How long a call waits for a lock held by another connection or process, or for a free
    /// connection, before failing with `Error::Busy`, in milliseconds. Default 5,000.
    pub busy_timeout_ms: u64,
    /// Number of read-only connections, so that that many reads run in parallel while a write
    /// commits. Default 4; at least 1.
    pub read_connections: usize,
    /// Whether a SQLite point read (`retrieve`) runs on the calling task when a read connection
    /// is free, instead of on a blocking thread. The query then blocks the task for its length:
    /// microseconds when the pages are in memory, longer on a cold disk, and up to
    /// `busy_timeout_ms` while another process holds the file exclusively (WAL recovery). It
    /// saves two thread handoffs per read, which on 2 cores doubles the cold-read rate.
    /// Default true.
    pub inline_reads: bool,
    /// Largest number of queued write requests the writer commits together in one transaction
    /// (group commit). Default 256; at least 1. A request waits for no one: the writer takes
    /// what is queued when it becomes free.
    pub max_batch_requests: usize,
    /// Bytes of values the in-memory cache may hold, counting each entry's stored (compressed)
    /// size plus its key and a fixed overhead. Default 64 MiB (67,108,864); 0 turns it off.
    pub cache_capacity_bytes: u64,
    /// Seconds an entry stays in the cache after it was stored or fetched. This bounds how long
    /// a write made by *another process* can stay unseen here. Default 300.
    pub cache_ttl_secs: u64,
    /// Write-through (default) or write-around.
    pub cache_mode: CacheMode,
    /// Seconds between statistics reports (tracing event and metric gauges), which also flush
    /// read counts. Default 60; 0 turns the task off.
    pub stats_interval_secs: u64,
    /// Maintenance rebuilds the whole file (a full vacuum, which holds writes back while it runs)
    /// when more than this percentage of it is slack: free pages, and space left in half-empty
    /// pages, which an incremental vacuum cannot return. Default 40; 0 never does. SQLite only:
    /// PostgreSQL's slack is not measured, so there a full vacuum runs only on request.
    pub vacuum_slack_percent: u8,
    /// A backup repository directory. When set, maintenance takes a backup (then prunes with
    /// `backup_retention`) whenever the newest backup is older than `backup_interval_secs`,
    /// and the CLI's `backup` commands use it when `--repo` is not given. Default none.
    pub backup_repository: Option<PathBuf>,
    /// Seconds between scheduled backups. Default 86,400 (a day); 0 turns scheduling off.
    pub backup_interval_secs: u64,
    /// Which backups a scheduled prune keeps. Default: the last 7, plus one a day for 7 days
    /// and one a week for 4 weeks.
    pub backup_retention: Retention,
    /// Seconds between background maintenance runs. Default 3,600; 0 turns the task off.
    pub maintenance_interval_secs: u64,
    /// Seconds between sweeps of expired cache entries. Default 300; 0 turns the task off.
    pub cache_eviction_interval_secs: u64,
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
            durability: Durability::Full,
            compression: Compression::default(),
            dictionary_min_values: 1_000,
            max_value_bytes: 16 << 20,
            busy_timeout_ms: 5_000,
            read_connections: 4,
            inline_reads: true,
            max_batch_requests: 256,
            cache_capacity_bytes: 64 << 20,
            cache_ttl_secs: 300,
            cache_mode: CacheMode::WriteThrough,
            stats_interval_secs: 60,
            vacuum_slack_percent: 40,
            backup_repository: None,
            backup_interval_secs: 86_400,
            backup_retention: Retention::default(),
            maintenance_interval_secs: 3_600,
            cache_eviction_interval_secs: 300,
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

    /// Checks the settings that have a valid range.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.path.as_os_str().is_empty() {
            return Err(Error::InvalidConfig("path must not be empty".into()));
        }
        if self.read_connections == 0 {
            return Err(Error::InvalidConfig(
                "read_connections must be at least 1".into(),
            ));
        }
        if self.postgres_pool_size == 0 {
            return Err(Error::InvalidConfig(
                "postgres_pool_size must be at least 1".into(),
            ));
        }
        if self.max_batch_requests == 0 {
            return Err(Error::InvalidConfig(
                "max_batch_requests must be at least 1".into(),
            ));
        }
        if self.vacuum_slack_percent > 100 {
            return Err(Error::InvalidConfig(
                "vacuum_slack_percent must be between 0 and 100".into(),
            ));
        }
        if self.cache_ttl_secs == 0 {
            return Err(Error::InvalidConfig(
                "cache_ttl_secs must be at least 1 (set cache_capacity_bytes = 0 to turn the cache off)".into(),
            ));
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > 1 << 30 {
            return Err(Error::InvalidConfig(
                "max_value_bytes must be between 1 and 1073741824 (1 GiB)".into(),
            ));
        }
        Ok(())
    }
}

/// Which backups a prune keeps ([`Repository::prune`](crate::backup::Repository::prune)): the
/// union of the three rules. Days and weeks are UTC; weeks start on Monday.
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
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let url = PostgresUrl::new("postgres://app:s3cret@db.example:5432/game");
        assert_eq!(url.redacted(), "postgres://app:***@db.example:5432/game");
        assert!(!format!("{url:?}").contains("s3cret"));
        let config = Config::postgres("postgresql://app:s3cret@db/game");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert!(!config.location().contains("s3cret"));
        assert_eq!(
            PostgresUrl::new("postgres://app@db/game").redacted(),
            "postgres://app@db/game"
        );
        assert!(
            !PostgresUrl::new("postgres:///game?password=s3cret")
                .redacted()
                .contains("s3cret")
        );
    }
}
