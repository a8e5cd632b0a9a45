//! [`Tasks`]: the owner of a store's background tasks (a `TaskTracker` and the
//! `CancellationToken` they all watch). It runs what it is given and knows nothing of what the
//! tasks do: `open` decides that (statistics, maintenance, cache sweeps, cache coherence).
//!
//! **Invariant:** no task outlives its store. Tasks hold only a weak handle and upgrade it for
//! the length of one run; they stop when `Store::close` cancels them (which then waits for
//! them, so an in-flight maintenance step finishes first) or when the last handle is dropped.
//! None blocks the async runtime: database work runs on the writer thread or blocking threads.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

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

    /// Runs `run` every `interval_secs` (never when 0), each time with a strong handle
    /// upgraded from `handle`, until cancelled or the handle's owner is gone. Each run is in a
    /// `strongbox_task` span named `name`.
    pub fn every<H, F, Fut>(&self, name: &'static str, interval_secs: u64, handle: Weak<H>, run: F)
    where
        H: Send + Sync + 'static,
        F: Fn(Arc<H>, CancellationToken) -> Fut + Send + 'static,
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
                let Some(strong) = handle.upgrade() else {
                    break;
                };
                run(strong, cancel.clone())
                    .instrument(tracing::info_span!("strongbox_task", task = name))
                    .await;
            }
        });
    }

    /// Folds the events of `events` into a state, from `state`: `step` takes a strong handle
    /// upgraded from `handle`, the state and an event, and returns the next state. Runs until
    /// cancelled (a step in progress is dropped), the sender is gone or the handle's owner is
    /// gone; one step at a time, in the events' order. The whole loop is in a
    /// `strongbox_task` span named `name`.
    pub fn follow<T, H, S, F, Fut>(
        &self,
        name: &'static str,
        mut events: mpsc::UnboundedReceiver<T>,
        handle: Weak<H>,
        state: S,
        step: F,
    ) where
        T: Send + 'static,
        H: Send + Sync + 'static,
        S: Send + 'static,
        F: Fn(Arc<H>, S, T) -> Fut + Send + 'static,
        Fut: Future<Output = S> + Send,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(
            async move {
                let mut state = state;
                loop {
                    let event = tokio::select! {
                        () = cancel.cancelled() => break,
                        event = events.recv() => event,
                    };
                    let (Some(event), Some(strong)) = (event, handle.upgrade()) else {
                        break;
                    };
                    state = tokio::select! {
                        () = cancel.cancelled() => break,
                        state = step(strong, state, event) => state,
                    };
                }
            }
            .instrument(tracing::info_span!("strongbox_task", task = name)),
        );
    }

    /// Runs a one-off piece of work that `stop` waits for.
    pub fn spawn_once(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(work);
    }

    /// The token every task watches: cancelled when the store closes.
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
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
