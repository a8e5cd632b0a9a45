//! How the store's connections are made: the session settings every connection carries, and
//! the bounds that keep a dead or vanished server from stalling a call (failover).
//!
//! A multi-host URL (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`) is
//! tokio-postgres's own: each new connection tries the hosts in order and keeps the first that
//! accepts writes. Pooled connections to a server that died are closed, and the pool's
//! recycling discards closed connections, so after a failover new connections reach the new
//! primary without a restart.
//!
//! **Invariant:** no connection attempt or in-flight statement waits on a silent host without
//! bound: the connect timeout, TCP keepalives and `TCP_USER_TIMEOUT` close it instead, unless
//! the URL sets them itself.

use std::time::Duration;

use tokio_postgres::config::TargetSessionAttrs;

use crate::config::{Config, Durability, PostgresUrl};
use crate::error::{Error, Result};

/// How long connecting to one host may take, unless the URL says `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long sent data may stay unacknowledged before the connection counts as dead (Linux's
/// `TCP_USER_TIMEOUT`), unless the URL says `tcp_user_timeout`: a server that vanished (a
/// power loss, a network partition) fails an in-flight call after this, not after the
/// kernel's retransmissions (about 15 minutes).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle time before TCP keepalive probes start, unless the URL says `keepalives_idle`, so that
/// an idle pooled or listening connection to a vanished server is noticed within seconds.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(5);

/// The driver's configuration for the store's connections: the URL's, plus the store's
/// session settings (lock timeout, synchronous commit, read-only) and the failover bounds.
///
/// # Errors
/// `Error::InvalidConfig` for a malformed URL.
pub(super) fn pg_config(url: &PostgresUrl, config: &Config) -> Result<tokio_postgres::Config> {
    let mut pg_config: tokio_postgres::Config = url.expose().parse().map_err(|error| {
        Error::InvalidConfig(format!(
            "cannot parse the PostgreSQL URL {}: {error}",
            url.redacted()
        ))
    })?;
    let synchronous_commit = match config.durability {
        Durability::Full => "on",
        Durability::Process => "off",
    };
    // A read-only store's sessions are read-only too, so that nothing can write through
    // them even past this code's own refusals.
    let read_only = if config.read_only {
        " -c default_transaction_read_only=on"
    } else {
        ""
    };
    let options = format!(
        "{} -c lock_timeout={} -c synchronous_commit={synchronous_commit}{read_only}",
        pg_config.get_options().unwrap_or_default(),
        config.busy_timeout_ms
    );
    pg_config.options(options.trim());
    // Those read-only sessions would fail `target_session_attrs=read-write` on every host; a
    // store that only reads may read any of them, a standby included.
    if config.read_only && pg_config.get_target_session_attrs() == TargetSessionAttrs::ReadWrite {
        pg_config.target_session_attrs(TargetSessionAttrs::Any);
    }
    if pg_config.get_connect_timeout().is_none() {
        pg_config.connect_timeout(CONNECT_TIMEOUT);
    }
    if pg_config.get_tcp_user_timeout().is_none() {
        pg_config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if !url.expose().contains("keepalives_idle") {
        pg_config.keepalives_idle(KEEPALIVES_IDLE);
    }
    Ok(pg_config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_host_url_keeps_its_hosts_and_gets_the_failover_bounds() -> Result<()> {
        let url = PostgresUrl::new(
            "postgres://app@127.0.0.1:5432,127.0.0.1:5433/game?target_session_attrs=read-write",
        );
        let settings = pg_config(&url, &Config::postgres(url.expose()))?;
        assert_eq!(settings.get_hosts().len(), 2);
        assert_eq!(settings.get_ports(), [5432, 5433]);
        assert_eq!(
            settings.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert_eq!(settings.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(settings.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));

        let url = PostgresUrl::new("postgres://app@db/game?connect_timeout=2");
        let settings = pg_config(&url, &Config::postgres(url.expose()).with_read_only(true))?;
        assert_eq!(
            settings.get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
        assert!(
            settings
                .get_options()
                .is_some_and(|options| options.contains("default_transaction_read_only=on"))
        );
        Ok(())
    }

    #[test]
    fn the_key_value_form_names_several_hosts_too() -> Result<()> {
        let url = PostgresUrl::new(
            "host=127.0.0.1,127.0.0.1 port=5432,5433 user=app dbname=game \
             target_session_attrs=read-write",
        );
        let settings = pg_config(&url, &Config::postgres(url.expose()))?;
        assert_eq!(settings.get_ports(), [5432, 5433]);
        assert_eq!(
            settings.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        Ok(())
    }

    #[test]
    fn a_read_only_store_reads_from_any_host() -> Result<()> {
        let url = PostgresUrl::new("postgres://app@h1,h2/game?target_session_attrs=read-write");
        let settings = pg_config(&url, &Config::postgres(url.expose()).with_read_only(true))?;
        assert_eq!(settings.get_target_session_attrs(), TargetSessionAttrs::Any);
        Ok(())
    }
}
