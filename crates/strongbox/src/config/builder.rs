//! Building a `Config` in code: a `with_*` method per setting, chained from `Config::new` or
//! `Config::postgres`, and the time settings as `Duration`s.
//!
//! The fields keep their units in their names (`busy_timeout_ms`, `cache_ttl_secs`), which are
//! also the TOML keys; the `Duration` methods convert. A duration is stored rounded *up* to
//! the field's unit, so that a nonzero duration never becomes 0 (which turns a task off).

use std::path::PathBuf;
use std::time::Duration;

use super::{CacheMode, Config, Durability, PostgresUrl, Retention};
use crate::codec::Compression;

impl Config {
    /// How long a call waits for a lock or a free connection (`busy_timeout_ms`).
    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout_ms)
    }

    /// How long the change feed keeps a change (`changes_retention_secs`; zero: any age).
    pub fn changes_retention(&self) -> Duration {
        Duration::from_secs(self.changes_retention_secs)
    }

    /// How long an entry stays in the cache (`cache_ttl_secs`).
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    /// Time between statistics reports (`stats_interval_secs`); zero when the task is off.
    pub fn stats_interval(&self) -> Duration {
        Duration::from_secs(self.stats_interval_secs)
    }

    /// Time between maintenance runs (`maintenance_interval_secs`); zero when the task is off.
    pub fn maintenance_interval(&self) -> Duration {
        Duration::from_secs(self.maintenance_interval_secs)
    }

    /// Time between cache sweeps (`cache_eviction_interval_secs`); zero when the task is off.
    pub fn cache_eviction_interval(&self) -> Duration {
        Duration::from_secs(self.cache_eviction_interval_secs)
    }

    /// Time between sweeps of expired records (`expiry_sweep_interval_secs`); zero when the
    /// task is off.
    pub fn expiry_sweep_interval(&self) -> Duration {
        Duration::from_secs(self.expiry_sweep_interval_secs)
    }

    /// Time between scheduled backups (`backup_interval_secs`); zero when scheduling is off.
    pub fn backup_interval(&self) -> Duration {
        Duration::from_secs(self.backup_interval_secs)
    }

    /// Sets `busy_timeout_ms`, rounded up to a whole millisecond.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout_ms = millis_rounded_up(timeout);
        self
    }

    /// Sets `cache_ttl_secs`, rounded up to a whole second.
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl_secs = secs_rounded_up(ttl);
        self
    }

    /// Sets `stats_interval_secs`, rounded up to a whole second; `Duration::ZERO` turns the
    /// statistics task off.
    pub fn with_stats_interval(mut self, interval: Duration) -> Self {
        self.stats_interval_secs = secs_rounded_up(interval);
        self
    }

    /// Sets `maintenance_interval_secs`, rounded up to a whole second; `Duration::ZERO` turns
    /// background maintenance off.
    pub fn with_maintenance_interval(mut self, interval: Duration) -> Self {
        self.maintenance_interval_secs = secs_rounded_up(interval);
        self
    }

    /// Sets `cache_eviction_interval_secs`, rounded up to a whole second; `Duration::ZERO`
    /// turns the sweeps off.
    pub fn with_cache_eviction_interval(mut self, interval: Duration) -> Self {
        self.cache_eviction_interval_secs = secs_rounded_up(interval);
        self
    }

    /// Sets `expiry_sweep_interval_secs`, rounded up to a whole second; `Duration::ZERO` turns
    /// the expiry task off (maintenance still sweeps).
    pub fn with_expiry_sweep_interval(mut self, interval: Duration) -> Self {
        self.expiry_sweep_interval_secs = secs_rounded_up(interval);
        self
    }

    /// Sets `backup_interval_secs`, rounded up to a whole second; `Duration::ZERO` turns
    /// scheduled backups off.
    pub fn with_backup_interval(mut self, interval: Duration) -> Self {
        self.backup_interval_secs = secs_rounded_up(interval);
        self
    }

    /// Sets `create_if_missing`.
    pub fn with_create_if_missing(mut self, create_if_missing: bool) -> Self {
        self.create_if_missing = create_if_missing;
        self
    }

    /// Sets `read_only`.
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets `sqlite_vfs` to a registered VFS's name.
    pub fn with_sqlite_vfs(mut self, name: impl Into<String>) -> Self {
        self.sqlite_vfs = Some(name.into());
        self
    }

    /// Sets `postgres_tls_ca_file`.
    pub fn with_postgres_tls_ca_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.postgres_tls_ca_file = Some(file.into());
        self
    }

    /// Sets `postgres_notify`.
    pub fn with_postgres_notify(mut self, notify: bool) -> Self {
        self.postgres_notify = notify;
        self
    }

    /// Sets `postgres_pool_size`.
    pub fn with_postgres_pool_size(mut self, connections: usize) -> Self {
        self.postgres_pool_size = connections;
        self
    }

    /// Sets `postgres_replicas`: the standbys that serve reads.
    pub fn with_postgres_replicas<I, U>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        self.postgres_replicas = urls.into_iter().map(PostgresUrl::new).collect();
        self
    }

    /// Adds one standby to `postgres_replicas`.
    pub fn with_postgres_replica(mut self, url: impl Into<String>) -> Self {
        self.postgres_replicas.push(PostgresUrl::new(url));
        self
    }

    /// Sets `replica_wait_ms`, rounded up to a whole millisecond.
    pub fn with_replica_wait(mut self, wait: Duration) -> Self {
        self.replica_wait_ms = millis_rounded_up(wait);
        self
    }

    /// `replica_wait_ms` as a `Duration`.
    pub fn replica_wait(&self) -> Duration {
        Duration::from_millis(self.replica_wait_ms)
    }

    /// Sets `durability`.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets `compression`.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets `dictionary_min_values`.
    pub fn with_dictionary_min_values(mut self, records: u64) -> Self {
        self.dictionary_min_values = records;
        self
    }

    /// Sets `max_value_bytes`.
    pub fn with_max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Sets `read_connections`.
    pub fn with_read_connections(mut self, connections: usize) -> Self {
        self.read_connections = connections;
        self
    }

    /// Sets `train_while_writing`.
    pub fn with_train_while_writing(mut self, train: bool) -> Self {
        self.train_while_writing = train;
        self
    }

    /// Sets `inline_reads`.
    pub fn with_inline_reads(mut self, inline_reads: bool) -> Self {
        self.inline_reads = inline_reads;
        self
    }

    /// Sets `transact_attempts`.
    pub fn with_transact_attempts(mut self, attempts: u32) -> Self {
        self.transact_attempts = attempts;
        self
    }

    /// Sets `max_batch_requests`.
    pub fn with_max_batch_requests(mut self, requests: usize) -> Self {
        self.max_batch_requests = requests;
        self
    }

    /// Sets `cache_capacity_bytes`; 0 turns the cache off.
    pub fn with_cache_capacity_bytes(mut self, bytes: u64) -> Self {
        self.cache_capacity_bytes = bytes;
        self
    }

    /// Sets `cache_mode`.
    pub fn with_cache_mode(mut self, mode: CacheMode) -> Self {
        self.cache_mode = mode;
        self
    }

    /// Sets `vacuum_slack_percent`.
    pub fn with_vacuum_slack_percent(mut self, percent: u8) -> Self {
        self.vacuum_slack_percent = percent;
        self
    }

    /// Sets `backup_repository`, which turns scheduled backups on (see `backup_interval_secs`).
    pub fn with_backup_repository(mut self, dir: impl Into<PathBuf>) -> Self {
        self.backup_repository = Some(dir.into());
        self
    }

    /// Sets `backup_repository_key_file`: the repository is encrypted under this key file.
    pub fn with_backup_repository_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.backup_repository_key_file = Some(path.into());
        self
    }

    /// Sets `backup_repository_password_file`: the repository is encrypted under the
    /// passphrase on this file's first line.
    pub fn with_backup_repository_password_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.backup_repository_password_file = Some(path.into());
        self
    }

    /// Sets `backup_retention`.
    pub fn with_backup_retention(mut self, retention: Retention) -> Self {
        self.backup_retention = retention;
        self
    }

    /// Sets `changes_retention_secs`, rounded up to a whole second (`Duration::ZERO` keeps
    /// changes whatever their age).
    pub fn with_changes_retention(mut self, retention: Duration) -> Self {
        self.changes_retention_secs = secs_rounded_up(retention);
        self
    }

    /// Sets `changes_retention_count` (0 keeps any number).
    pub fn with_changes_retention_count(mut self, count: u64) -> Self {
        self.changes_retention_count = count;
        self
    }

    /// Sets `change_feed`: `false` records no change of this store's writes.
    pub fn with_change_feed(mut self, change_feed: bool) -> Self {
        self.change_feed = change_feed;
        self
    }
}

/// Whole milliseconds, rounded up; saturating (validation then refuses the value).
fn millis_rounded_up(duration: Duration) -> u64 {
    let millis = duration.as_millis().saturating_add(u128::from(
        !duration.subsec_nanos().is_multiple_of(1_000_000),
    ));
    u64::try_from(millis).unwrap_or(u64::MAX)
}

/// Whole seconds, rounded up; saturating (validation then refuses the value).
fn secs_rounded_up(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() != 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn durations_round_up_to_the_unit_of_their_field() {
        let config = Config::new("x.db")
            .with_busy_timeout(Duration::from_micros(1_500))
            .with_cache_ttl(Duration::from_millis(1))
            .with_stats_interval(Duration::from_millis(2_500))
            .with_maintenance_interval(Duration::ZERO)
            .with_cache_eviction_interval(Duration::from_secs(7))
            .with_backup_interval(Duration::from_secs(3_600));
        assert_eq!(config.busy_timeout_ms, 2);
        assert_eq!(config.cache_ttl_secs, 1);
        assert_eq!(config.stats_interval_secs, 3);
        assert_eq!(config.maintenance_interval_secs, 0);
        assert_eq!(config.cache_eviction_interval(), Duration::from_secs(7));
        assert_eq!(config.backup_interval(), Duration::from_secs(3_600));
        assert_eq!(config.busy_timeout(), Duration::from_millis(2));
    }

    #[test]
    fn a_huge_duration_saturates_and_is_refused_naming_the_field() {
        let config = Config::new("x.db").with_busy_timeout(Duration::MAX);
        assert_eq!(config.busy_timeout_ms, u64::MAX);
        assert!(
            matches!(config.validate(), Err(Error::InvalidConfig(m)) if m.starts_with("busy_timeout_ms"))
        );
        let config = Config::new("x.db").with_cache_eviction_interval(Duration::MAX);
        assert!(
            matches!(config.validate(), Err(Error::InvalidConfig(m)) if m.starts_with("cache_eviction_interval_secs"))
        );
    }

    #[test]
    fn every_setter_sets_its_field() {
        let built = Config::postgres("postgres://db/app")
            .with_create_if_missing(false)
            .with_read_only(true)
            .with_sqlite_vfs("memory")
            .with_postgres_tls_ca_file("ca.pem")
            .with_postgres_notify(false)
            .with_postgres_pool_size(3)
            .with_postgres_replicas(["postgres://standby1/app"])
            .with_postgres_replica("postgres://standby2/app")
            .with_replica_wait(Duration::from_micros(2_500))
            .with_durability(Durability::Process)
            .with_compression(Compression::default())
            .with_dictionary_min_values(5)
            .with_train_while_writing(false)
            .with_max_value_bytes(1_000)
            .with_read_connections(2)
            .with_inline_reads(false)
            .with_max_batch_requests(8)
            .with_transact_attempts(7)
            .with_cache_capacity_bytes(0)
            .with_cache_mode(CacheMode::WriteAround)
            .with_vacuum_slack_percent(10)
            .with_backup_repository("backups")
            .with_backup_retention(Retention::last(2))
            .with_change_feed(false);
        let mut expected = Config::postgres("postgres://db/app");
        expected.create_if_missing = false;
        expected.read_only = true;
        expected.sqlite_vfs = Some("memory".into());
        expected.postgres_tls_ca_file = Some("ca.pem".into());
        expected.postgres_notify = false;
        expected.postgres_pool_size = 3;
        expected.postgres_replicas = vec![
            PostgresUrl::new("postgres://standby1/app"),
            PostgresUrl::new("postgres://standby2/app"),
        ];
        expected.replica_wait_ms = 3;
        expected.durability = Durability::Process;
        expected.dictionary_min_values = 5;
        expected.train_while_writing = false;
        expected.max_value_bytes = 1_000;
        expected.read_connections = 2;
        expected.inline_reads = false;
        expected.max_batch_requests = 8;
        expected.transact_attempts = 7;
        expected.cache_capacity_bytes = 0;
        expected.cache_mode = CacheMode::WriteAround;
        expected.vacuum_slack_percent = 10;
        expected.backup_repository = Some("backups".into());
        expected.backup_retention = Retention::last(2);
        expected.change_feed = false;
        assert_eq!(built, expected);
    }
}
