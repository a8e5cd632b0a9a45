//! `Store::open`: build a store over its backend, load its dictionaries, and start the
//! background schedule the configuration asks for (statistics, maintenance, cache sweeps and,
//! on PostgreSQL, cache coherence).
//!
//! **Invariant:** a store is handed out only whole: its backend open and migrated, its
//! dictionaries loaded, its tasks started. The tasks hold weak handles (see `tasks`), so this
//! module may name what sits above `store` (maintenance) without `store` naming it.

use crate::backend::Backend;
use crate::config::Config;
use crate::error::Result;
use crate::maintenance::MaintenanceOptions;
use crate::store::Store;

impl Store {
    /// Opens the store the configuration names, creating the database if needed.
    ///
    /// # Errors
    /// `Error::InvalidConfig` for a bad setting or a database of a newer schema, `Error::Io` or
    /// `Error::Backend` when the file cannot be created or opened, `Error::Busy` when another
    /// process holds it locked for longer than the busy timeout.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled open may still create the file.
    pub async fn open(config: Config) -> Result<Self> {
        config.validate()?;
        crate::telemetry::describe_metrics();
        let backend = Backend::open(&config).await?;
        let store = Store::assemble(config, backend);
        store.dictionaries().reload(store.backend()).await?;
        start_tasks(&store);
        crate::coherence::start(&store).await;
        Ok(store)
    }
}

/// Starts the background tasks the configuration turns on.
fn start_tasks(store: &Store) {
    let config = store.config();
    let tasks = store.tasks();
    tasks.every(
        "statistics",
        config.stats_interval_secs,
        store.downgrade(),
        |inner, _| async move {
            Store::from_inner(inner).publish_metrics().await;
        },
    );
    // A read-only store cannot be maintained: it is someone else's to maintain.
    let maintenance_interval_secs = if config.read_only {
        0
    } else {
        config.maintenance_interval_secs
    };
    tasks.every(
        "maintenance",
        maintenance_interval_secs,
        store.downgrade(),
        |inner, cancel| async move {
            let store = Store::from_inner(inner);
            match store
                .run_maintenance(MaintenanceOptions::default(), &cancel)
                .await
            {
                Ok(report) if report.errors.is_empty() => {
                    tracing::info!(
                        elapsed_ms = report.elapsed_ms,
                        "background maintenance done"
                    );
                }
                Ok(report) => {
                    tracing::warn!(errors = ?report.errors, "background maintenance had failures");
                }
                Err(error) => tracing::error!(%error, "background maintenance failed"),
            }
        },
    );
    let expiry_sweep_interval_secs = if config.read_only {
        0
    } else {
        config.expiry_sweep_interval_secs
    };
    tasks.every(
        "expiry sweep",
        expiry_sweep_interval_secs,
        store.downgrade(),
        |inner, _| async move {
            match Store::from_inner(inner).sweep_expired().await {
                Ok(0) => {}
                Ok(swept) => tracing::debug!(swept, "expired records swept"),
                Err(error) => tracing::warn!(%error, "cannot sweep expired records"),
            }
        },
    );
    if config.backup_repository.is_some() && !config.read_only {
        crate::backup::follow_in_background(store);
    }
    tasks.every(
        "cache eviction",
        config.cache_eviction_interval_secs,
        store.downgrade(),
        |inner, _| async move {
            let evicted = Store::from_inner(inner).cache().sweep();
            tracing::debug!(evicted, "cache swept");
        },
    );
}
