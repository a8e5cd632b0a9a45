//! `strongbox serve-metrics`: the database's statistics in Prometheus text format over HTTP.

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
}

/// Serves `/metrics` until interrupted (Ctrl-C or SIGTERM).
///
/// # Errors
/// When the address cannot be bound or the database cannot be opened.
pub async fn run(global: &GlobalOptions, args: ServeMetricsArgs) -> anyhow::Result<()> {
    let mut config = crate::config::load(global)?;
    config.stats_interval_secs = args.interval_secs.max(1);
    config.create_if_missing = false;
    PrometheusBuilder::new()
        .with_http_listener(args.addr)
        .install()
        .with_context(|| format!("serve metrics on {}", args.addr))?;
    let store = crate::commands::open_config(config).await?;
    store.publish_metrics().await;
    eprintln!(
        "serving the metrics of {} on http://{}/metrics (Ctrl-C stops)",
        store.config().location(),
        args.addr
    );
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
