//! Background tasks: periodic statistics, maintenance and cache sweeps.
//!
//! **Invariant:** no task outlives its store. Tasks hold only a weak handle and upgrade it for
//! the length of one run; they stop when `Store::close` cancels them (which then waits for
//! them, so an in-flight maintenance step finishes first) or when the last handle is dropped.
//! None blocks the async runtime: database work runs on the writer thread or blocking threads.

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backend::{Change, Engine};
use crate::store::{Inner, Store};

/// The background tasks of one store.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    pub fn new() -> Self {
        Tasks::default()
    }

    /// Starts the tasks the configuration turns on.
    pub fn start(&self, store: &Store) {
        let config = store.config();
        self.spawn(
            "statistics",
            config.stats_interval_secs,
            store.downgrade(),
            |store, _| async move {
                store.publish_metrics().await;
            },
        );
        self.spawn("maintenance", config.maintenance_interval_secs, store.downgrade(), |store, cancel| {
            async move {
                match store.run_maintenance(crate::maintenance::MaintenanceOptions::default(), &cancel).await {
                    Ok(report) if report.errors.is_empty() => {
                        tracing::info!(elapsed_ms = report.elapsed_ms, "background maintenance done");
                    }
                    Ok(report) => tracing::warn!(errors = ?report.errors, "background maintenance had failures"),
                    Err(error) => tracing::error!(%error, "background maintenance failed"),
                }
            }
        });
        self.spawn(
            "cache eviction",
            config.cache_eviction_interval_secs,
            store.downgrade(),
            |store, _| async move {
                let evicted = store.cache().sweep();
                tracing::debug!(evicted, "cache swept");
            },
        );
        if let Some(changes) = store.backend().take_changes() {
            self.follow_changes(changes, store.downgrade());
        }
    }

    /// Drops cache entries that other servers' writes made stale, as the backend hears of them.
    fn follow_changes(&self, mut changes: mpsc::UnboundedReceiver<Change>, store: Weak<Inner>) {
        let cancel = self.cancel.clone();
        self.tracker.spawn(
            async move {
                loop {
                    let change = tokio::select! {
                        () = cancel.cancelled() => break,
                        change = changes.recv() => change,
                    };
                    let (Some(change), Some(inner)) = (change, store.upgrade()) else {
                        break;
                    };
                    let store = Store::from_inner(inner);
                    match change {
                        Change::Key { collection, key } => {
                            store.cache().written(&collection, &key, None)
                        }
                        Change::All => store.cache().clear(),
                    }
                }
            }
            .instrument(tracing::info_span!(
                "strongbox_task",
                task = "cache coherence"
            )),
        );
    }

    /// Runs a one-off piece of work that `stop` waits for.
    pub fn spawn_once(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(work);
    }

    /// Runs `run` every `interval_secs` (never when 0) until cancelled or the store is gone.
    fn spawn<F, Fut>(&self, name: &'static str, interval_secs: u64, store: Weak<Inner>, run: F)
    where
        F: Fn(Store, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        if interval_secs == 0 {
            return;
        }
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            let period = Duration::from_secs(interval_secs);
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let Some(inner) = store.upgrade() else { break };
                run(Store::from_inner(inner), cancel.clone())
                    .instrument(tracing::info_span!("strongbox_task", task = name))
                    .await;
            }
        });
    }

    /// Asks every task to stop at its next step.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Stops every task and waits until they have all finished.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Number of tasks still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }
}
