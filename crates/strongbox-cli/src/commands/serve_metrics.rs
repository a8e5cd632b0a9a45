//! `strongbox serve-metrics`: the database's statistics in Prometheus text format over HTTP.
//!
//! The served figures are what this process's own store computes: the storage gauges (records,
//! bytes, dictionaries), read from the database every `--interval-secs`, and the counters of the
//! operations this process itself runs (none but its refreshes). Other processes' operation
//! counters and latencies live in their own memory and are not seen here. Background work
//! (the refreshes, and maintenance when `--maintenance-interval-secs` asks for it) logs its
//! failures on standard error.

use std::net::SocketAddr;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::cli::GlobalOptions;

/// Options of `strongbox serve-metrics`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeMetricsArgs {
    /// Address to serve `/metrics` on.
    #[arg(long, default_value = "127.0.0.1:9898")]
    pub addr: SocketAddr,
    /// Seconds between refreshes of the storage gauges (records, bytes, cache).
    #[arg(long, default_value_t = 5)]
    pub interval_secs: u64,
    /// Also run maintenance on the database every N seconds (it may rebuild the file and holds
    /// writes back while it does) [default: never, unless maintenance_interval_secs is set in
    /// --config].
    #[arg(long, value_name = "N")]
    pub maintenance_interval_secs: Option<u64>,
}

/// Serves `/metrics` until interrupted (Ctrl-C or SIGTERM).
///
/// # Errors
/// When the address cannot be bound or the database cannot be opened.
pub async fn run(global: &GlobalOptions, args: ServeMetricsArgs) -> anyhow::Result<()> {
    let mut config = crate::config::load(global)?;
    config.stats_interval_secs = args.interval_secs.max(1);
    config.create_if_missing = false;
    if let Some(secs) = args.maintenance_interval_secs {
        config.maintenance_interval_secs = secs;
    }
    if config.maintenance_interval_secs == 0 {
        // Nothing but reads, so a file this user may not write is served all the same.
        config = crate::config::for_reading(config);
    }
    PrometheusBuilder::new()
        .with_http_listener(args.addr)
        .install()
        .with_context(|| format!("serve metrics on {}", args.addr))?;
    let store = crate::commands::open_config(config).await?;
    store.publish_metrics().await;
    let maintenance = match store.config().maintenance_interval_secs {
        0 => "no maintenance".to_owned(),
        secs => format!("maintenance every {secs} s"),
    };
    if !global.quiet {
        eprintln!(
            "serving the metrics of {} on http://{}/metrics, {maintenance} (Ctrl-C stops)",
            store.config().location(),
            args.addr
        );
    }
    let stopped = stop_signal().await;
    crate::commands::close(store, stopped).await
}

/// Waits for Ctrl-C or SIGTERM.
async fn stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listen for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}
