//! The valid range of every setting, and `Config::validate`, which enforces them.
//!
//! **Invariant:** every field of `Config` is checked here or documented as taking any value of
//! its type; each bound keeps a later conversion from overflowing (a timeout in a C `int`, a
//! deadline past what an `Instant` holds) or a dependency from panicking (moka's TTL), so a
//! configuration that validates opens without a panic and runs its background tasks.

use std::ops::RangeInclusive;
use std::path::Path;

use super::{Config, PostgresUrl};
use crate::error::{Error, Result};

/// Connections in a pool (the PostgreSQL pool, the SQLite readers).
pub(super) const CONNECTIONS: RangeInclusive<u64> = 1..=1_024;
/// Write requests in one group commit.
pub(super) const BATCH_REQUESTS: RangeInclusive<u64> = 1..=65_536;

/// Bounds of `transact_attempts`.
pub(super) const TRANSACT_ATTEMPTS: RangeInclusive<u64> = 1..=1_000_000;
/// Bytes of one serialized value: 1 GiB at most.
pub(super) const VALUE_BYTES: RangeInclusive<u64> = 1..=1 << 30;
/// Milliseconds of a busy timeout: both engines take a C `int`, and PostgreSQL's
/// `lock_timeout = 0` would mean "wait forever".
pub(super) const BUSY_TIMEOUT_MS: RangeInclusive<u64> = 1..=i32::MAX as u64;
/// Seconds of the cache's time to live: moka refuses more than 1,000 years (it panics).
pub(super) const CACHE_TTL_SECS: RangeInclusive<u64> = 1..=1_000 * YEAR_SECS;
/// Seconds between runs of a background task or scheduled backups; 0 turns it off.
pub(super) const INTERVAL_SECS: RangeInclusive<u64> = 0..=YEAR_SECS;
/// Seconds the change feed keeps a change (0: any age), bounded so that the age in
/// milliseconds fits an `i64`.
pub(super) const RETENTION_SECS: RangeInclusive<u64> = 0..=1_000 * YEAR_SECS;
/// Milliseconds a read waits for a standby to catch up before reading from the primary.
pub(super) const REPLICA_WAIT_MS: RangeInclusive<u64> = 0..=60_000;
/// Percent of the file that may be slack.
pub(super) const SLACK_PERCENT: RangeInclusive<u64> = 0..=100;

const YEAR_SECS: u64 = 365 * 24 * 3_600;

impl Config {
    /// Checks every setting against the valid range its documentation gives.
    /// [`Store::open`](crate::Store::open) calls it before touching anything.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for the first setting out of range, naming the field, its valid
    /// range and the value found.
    pub fn validate(&self) -> Result<()> {
        check_path("path", &self.path)?;
        if let Some(vfs) = &self.sqlite_vfs {
            check_text("sqlite_vfs", vfs)?;
        }
        if let Some(url) = &self.postgres_url
            && url.expose().is_empty()
        {
            return Err(invalid("postgres_url must not be empty".into()));
        }
        self.check_replicas()?;
        if let Some(file) = &self.postgres_tls_ca_file {
            check_path("postgres_tls_ca_file", file)?;
        }
        if let Some(repository) = &self.backup_repository {
            check_path("backup_repository", repository)?;
        }
        self.check_backup_key()?;
        let counts = [
            ("postgres_pool_size", self.postgres_pool_size, CONNECTIONS),
            ("read_connections", self.read_connections, CONNECTIONS),
            (
                "max_batch_requests",
                self.max_batch_requests,
                BATCH_REQUESTS,
            ),
            ("max_value_bytes", self.max_value_bytes, VALUE_BYTES),
            (
                "transact_attempts",
                usize::try_from(self.transact_attempts).unwrap_or(usize::MAX),
                TRANSACT_ATTEMPTS,
            ),
        ];
        for (field, value, range) in counts {
            check_range(field, u64::try_from(value).unwrap_or(u64::MAX), range, "")?;
        }
        let intervals = [
            ("stats_interval_secs", self.stats_interval_secs),
            ("maintenance_interval_secs", self.maintenance_interval_secs),
            (
                "cache_eviction_interval_secs",
                self.cache_eviction_interval_secs,
            ),
            (
                "expiry_sweep_interval_secs",
                self.expiry_sweep_interval_secs,
            ),
            ("backup_interval_secs", self.backup_interval_secs),
            ("backup_follow_secs", self.backup_follow_secs),
        ];
        for (field, value) in intervals {
            check_range(field, value, INTERVAL_SECS, " (365 days; 0 turns it off)")?;
        }
        check_range(
            "busy_timeout_ms",
            self.busy_timeout_ms,
            BUSY_TIMEOUT_MS,
            " (about 24.8 days)",
        )?;
        check_range(
            "cache_ttl_secs",
            self.cache_ttl_secs,
            CACHE_TTL_SECS,
            " (1,000 years; set cache_capacity_bytes = 0 to turn the cache off)",
        )?;
        check_range(
            "vacuum_slack_percent",
            u64::from(self.vacuum_slack_percent),
            SLACK_PERCENT,
            "",
        )?;
        check_range(
            "changes_retention_secs",
            self.changes_retention_secs,
            RETENTION_SECS,
            " (1,000 years; 0 keeps changes whatever their age)",
        )?;
        self.check_follow()?;
        self.check_retention()
    }

    /// Standbys read beside a primary, by PostgreSQL URL, for a bounded wait.
    fn check_replicas(&self) -> Result<()> {
        check_range(
            "replica_wait_ms",
            self.replica_wait_ms,
            REPLICA_WAIT_MS,
            " (a minute)",
        )?;
        if self.postgres_replicas.is_empty() {
            return Ok(());
        }
        if self.postgres_url.is_none() {
            return Err(invalid(
                "postgres_replicas needs postgres_url: standbys serve the reads of a \
                 PostgreSQL primary, not of an SQLite file"
                    .into(),
            ));
        }
        for url in &self.postgres_replicas {
            if !PostgresUrl::is_postgres(url.expose()) {
                return Err(invalid(format!(
                    "postgres_replicas must hold postgres:// or postgresql:// URLs, not {}",
                    url.redacted()
                )));
            }
        }
        Ok(())
    }

    /// A repository key is one file, of a configured repository.
    fn check_backup_key(&self) -> Result<()> {
        let files = [
            (
                "backup_repository_key_file",
                &self.backup_repository_key_file,
            ),
            (
                "backup_repository_password_file",
                &self.backup_repository_password_file,
            ),
        ];
        for (field, file) in files {
            if let Some(file) = file {
                check_path(field, file)?;
                if self.backup_repository.is_none() {
                    return Err(invalid(format!(
                        "{field} is set but backup_repository is not: set the repository it is \
                         the key of"
                    )));
                }
            }
        }
        if files.iter().all(|(_, file)| file.is_some()) {
            return Err(invalid(
                "backup_repository_key_file and backup_repository_password_file are both set: \
                 a repository has one key, give one of them"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Continuous backup needs a repository to ship to and a feed to ship from.
    fn check_follow(&self) -> Result<()> {
        if self.backup_follow_secs == 0 {
            return Ok(());
        }
        if self.backup_repository.is_none() {
            return Err(invalid(
                "backup_follow_secs is set but backup_repository is not: set the repository \
                 the changes are shipped to"
                    .into(),
            ));
        }
        if !self.change_feed {
            return Err(invalid(
                "backup_follow_secs needs change_feed on: continuous backup ships the changes \
                 the feed records"
                    .into(),
            ));
        }
        Ok(())
    }

    /// A scheduled prune must keep something, or each backup would delete them all.
    fn check_retention(&self) -> Result<()> {
        let retention = &self.backup_retention;
        let is_scheduled = self.backup_repository.is_some() && self.backup_interval_secs > 0;
        if is_scheduled && !retention.has_rule() {
            return Err(invalid(
                "backup_retention keeps no backup while backups are scheduled; set keep_last, \
                 keep_daily or keep_weekly to at least 1, or keep_within_secs above 0"
                    .into(),
            ));
        }
        check_range(
            "backup_retention.keep_within_secs",
            retention.keep_within_secs,
            RETENTION_SECS,
            " (1,000 years)",
        )
    }
}

fn check_range(field: &str, value: u64, range: RangeInclusive<u64>, note: &str) -> Result<()> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(invalid(format!(
        "{field} must be between {} and {}{note}, not {value}",
        range.start(),
        range.end()
    )))
}

fn check_path(field: &str, path: &Path) -> Result<()> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if bytes.contains(&0) {
        return Err(invalid(format!("{field} must not contain a NUL byte")));
    }
    Ok(())
}

fn check_text(field: &str, text: &str) -> Result<()> {
    check_path(field, Path::new(text))
}

fn invalid(message: String) -> Error {
    Error::InvalidConfig(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PostgresUrl, Retention};

    /// Sets one setting of a configuration to a value.
    type Setter = fn(&mut Config, u64);

    /// Changes one setting of a configuration.
    type Adjust = fn(&mut Config);

    /// Each bounded numeric setting, with a way to set it.
    fn bounded() -> Vec<(&'static str, RangeInclusive<u64>, Setter)> {
        fn size(value: u64) -> usize {
            usize::try_from(value).unwrap_or(usize::MAX)
        }
        vec![
            ("postgres_pool_size", CONNECTIONS, |c, v| {
                c.postgres_pool_size = size(v)
            }),
            ("read_connections", CONNECTIONS, |c, v| {
                c.read_connections = size(v)
            }),
            ("max_batch_requests", BATCH_REQUESTS, |c, v| {
                c.max_batch_requests = size(v)
            }),
            ("max_value_bytes", VALUE_BYTES, |c, v| {
                c.max_value_bytes = size(v)
            }),
            ("transact_attempts", TRANSACT_ATTEMPTS, |c, v| {
                c.transact_attempts = u32::try_from(v).unwrap_or(u32::MAX)
            }),
            ("busy_timeout_ms", BUSY_TIMEOUT_MS, |c, v| {
                c.busy_timeout_ms = v
            }),
            ("cache_ttl_secs", CACHE_TTL_SECS, |c, v| {
                c.cache_ttl_secs = v
            }),
            ("stats_interval_secs", INTERVAL_SECS, |c, v| {
                c.stats_interval_secs = v
            }),
            ("maintenance_interval_secs", INTERVAL_SECS, |c, v| {
                c.maintenance_interval_secs = v
            }),
            ("cache_eviction_interval_secs", INTERVAL_SECS, |c, v| {
                c.cache_eviction_interval_secs = v
            }),
            ("expiry_sweep_interval_secs", INTERVAL_SECS, |c, v| {
                c.expiry_sweep_interval_secs = v
            }),
            ("backup_interval_secs", INTERVAL_SECS, |c, v| {
                c.backup_interval_secs = v
            }),
            ("backup_follow_secs", INTERVAL_SECS, |c, v| {
                c.backup_follow_secs = v
            }),
            ("vacuum_slack_percent", SLACK_PERCENT, |c, v| {
                c.vacuum_slack_percent = u8::try_from(v).unwrap_or(u8::MAX)
            }),
            ("changes_retention_secs", RETENTION_SECS, |c, v| {
                c.changes_retention_secs = v
            }),
        ]
    }

    fn refusal(config: &Config) -> String {
        match config.validate() {
            Err(Error::InvalidConfig(message)) => message,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn every_bound_is_accepted_and_one_past_it_refused_naming_the_field() {
        assert!(Config::default().validate().is_ok());
        // With a repository, so that continuous backup (`backup_follow_secs`) may be on.
        let with_repository = || Config {
            backup_repository: Some("backups".into()),
            ..Config::default()
        };
        for (field, range, set) in bounded() {
            for edge in [*range.start(), *range.end()] {
                let mut config = with_repository();
                set(&mut config, edge);
                assert!(config.validate().is_ok(), "{field} = {edge}");
            }
            let mut past = vec![range.end() + 1, u64::MAX];
            past.extend(range.start().checked_sub(1));
            for value in past {
                let mut config = with_repository();
                set(&mut config, value);
                let message = refusal(&config);
                assert!(message.starts_with(field), "{field} = {value}: {message}");
            }
        }
    }

    #[test]
    fn the_documented_maxima_are_the_enforced_ones() {
        assert_eq!(*BUSY_TIMEOUT_MS.end(), 2_147_483_647);
        assert_eq!(*CACHE_TTL_SECS.end(), 31_536_000_000);
        assert_eq!(*INTERVAL_SECS.end(), 31_536_000);
        assert_eq!(*VALUE_BYTES.end(), 1_073_741_824);
    }

    #[test]
    fn names_and_paths_must_be_usable() {
        let cases: [(&str, Adjust); 7] = [
            ("path", |c| c.path = "".into()),
            ("path", |c| c.path = "a\0b".into()),
            ("sqlite_vfs", |c| c.sqlite_vfs = Some(String::new())),
            ("postgres_url", |c| {
                c.postgres_url = Some(PostgresUrl::new(""))
            }),
            ("postgres_tls_ca_file", |c| {
                c.postgres_tls_ca_file = Some("".into())
            }),
            ("backup_repository", |c| {
                c.backup_repository = Some("".into())
            }),
            ("backup_repository_key_file", |c| {
                c.backup_repository = Some("backups".into());
                c.backup_repository_key_file = Some("".into())
            }),
        ];
        for (field, set) in cases {
            let mut config = Config::default();
            set(&mut config);
            assert!(refusal(&config).starts_with(field), "{field}");
        }
    }

    #[test]
    fn replicas_are_postgres_urls_beside_a_primary() {
        let config = Config::postgres("postgres://primary/game")
            .with_postgres_replica("postgres://app:s3cret@standby/game");
        assert!(config.validate().is_ok());
        let message = refusal(
            &config
                .clone()
                .with_postgres_replica("mysql://app:s3cret@x/db"),
        );
        assert!(message.starts_with("postgres_replicas"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let on_a_file = Config::new("game.db").with_postgres_replica("postgres://standby/game");
        assert!(refusal(&on_a_file).starts_with("postgres_replicas"));
        let mut waits = config;
        waits.replica_wait_ms = 60_001;
        assert!(refusal(&waits).starts_with("replica_wait_ms"));
    }

    #[test]
    fn a_scheduled_prune_must_keep_a_backup() {
        let mut config = Config::default().with_backup_retention(Retention {
            keep_last: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_within_secs: 0,
        });
        assert!(config.validate().is_ok(), "nothing is scheduled");
        config.backup_repository = Some("backups".into());
        assert!(refusal(&config).starts_with("backup_retention"));
        config.backup_interval_secs = 0;
        assert!(config.validate().is_ok(), "scheduling is off");
    }

    #[test]
    fn a_repository_key_is_one_file_of_a_configured_repository() {
        let key_only = Config::default().with_backup_repository_key_file("backups.key");
        assert!(refusal(&key_only).starts_with("backup_repository_key_file is set"));
        let password_only = Config::default().with_backup_repository_password_file("pass");
        assert!(refusal(&password_only).starts_with("backup_repository_password_file is set"));
        let one = Config::default()
            .with_backup_repository("backups")
            .with_backup_repository_key_file("backups.key");
        assert!(one.validate().is_ok(), "{:?}", one.validate());
        let both = one.with_backup_repository_password_file("pass");
        assert!(refusal(&both).contains("both set"));
    }
}
