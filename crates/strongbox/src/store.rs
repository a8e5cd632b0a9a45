//! [`Store`]: the front door. Typed values in named collections, by key.
//!
//! **Boundary:** the public API speaks of collections, keys, values and versions. Validation,
//! serialization, hashing and compression happen here, on the caller's task, before anything is
//! handed to the backend; verification and decoding happen here after a read.
//!
//! This module holds the handle and what every path shares (`Inner`); the read path is
//! `store::read`, the write path `store::write`. It sits on `codec`, `blob`, `cache`,
//! `dictionaries`, `access`, `tasks` and `backend`, and names no module above it: opening a
//! store (`open`), transactions, maintenance, statistics, verification, migration and backups
//! are `impl Store` blocks or functions in their own modules, which depend on this one.

mod read;
mod write;

use std::sync::Arc;

pub use read::ListOptions;
pub(crate) use read::{Checked, Source, has_expired};
pub(crate) use write::delete_op;

use crate::access::AccessLog;
use crate::backend::{Backend, Engine, Writes};
use crate::cache::Cache;
use crate::config::Config;
use crate::dictionaries::Dictionaries;
use crate::error::Result;
use crate::tasks::Tasks;
use crate::telemetry::Recorder;

/// A handle to an open store. Cheap to clone; all clones share one database.
///
/// Dropping the last handle stops the writer after it committed what was queued; call
/// [`Store::close`] to also wait for that and to save pending read counts.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// What every handle of one store shares.
#[derive(Debug)]
pub(crate) struct Inner {
    config: Config,
    backend: Backend,
    cache: Cache,
    dictionaries: Dictionaries,
    recorder: Recorder,
    access: AccessLog,
    /// Held while maintenance runs, so that it never runs twice at once.
    maintenance: tokio::sync::Mutex<()>,
    tasks: Tasks,
    /// Counts values written without a dictionary, to train while writing.
    training: crate::training_trigger::TrainingTrigger,
    /// Bumped after each write this process committed, to wake the change feed's subscribers.
    committed: tokio::sync::watch::Sender<u64>,
    /// The encrypted backup repository of the configuration, once unlocked (the backup
    /// module's; typed there, so that this module does not depend on it).
    unlocked_repository: std::sync::Mutex<Option<Arc<dyn std::any::Any + Send + Sync>>>,
    /// The writes of this store's transactions being committed (`crate::staged`).
    staged: crate::staged::Staged,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Background tasks hold only weak handles; this tells them to stop now.
        self.tasks.cancel();
    }
}

impl Store {
    /// A store over an opened backend, with an empty cache and dictionary registry and no
    /// background task yet (`Store::open` loads the one and starts the others).
    pub(crate) fn assemble(config: Config, backend: Backend) -> Self {
        let staged = crate::staged::Staged::new(backend.applies_in_order());
        Store {
            inner: Arc::new(Inner {
                cache: Cache::new(&config),
                dictionaries: Dictionaries::new(config.compression),
                recorder: Recorder::new(),
                config,
                backend,
                access: AccessLog::default(),
                maintenance: tokio::sync::Mutex::new(()),
                tasks: Tasks::new(),
                training: crate::training_trigger::TrainingTrigger::default(),
                committed: tokio::sync::watch::Sender::new(0),
                unlocked_repository: std::sync::Mutex::default(),
                staged,
            }),
        }
    }

    /// A handle from the shared state, for background tasks.
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Store { inner }
    }

    /// A handle that does not keep the store open.
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    pub(crate) fn training_trigger(&self) -> &crate::training_trigger::TrainingTrigger {
        &self.inner.training
    }

    pub(crate) fn dictionaries(&self) -> &Dictionaries {
        &self.inner.dictionaries
    }

    pub(crate) fn recorder(&self) -> &Recorder {
        &self.inner.recorder
    }

    pub(crate) fn maintenance_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.maintenance
    }

    /// Wakes when this process commits a write (see `Store::subscribe`).
    pub(crate) fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.committed.subscribe()
    }

    /// Wakes this process's subscribers: a write of this process added to the change feed.
    pub(crate) fn note_commit(&self) {
        self.inner
            .committed
            .send_modify(|commits| *commits = commits.wrapping_add(1));
    }

    /// Writes this process has committed since the store opened (wrapping).
    pub(crate) fn commit_count(&self) -> u64 {
        *self.inner.committed.borrow()
    }

    pub(crate) fn tasks(&self) -> &Tasks {
        &self.inner.tasks
    }

    /// The writes of this store's transactions being committed.
    pub(crate) fn staged(&self) -> &crate::staged::Staged {
        &self.inner.staged
    }

    /// Where `backup::configured` keeps the configured repository once unlocked.
    pub(crate) fn unlocked_repository(
        &self,
    ) -> &std::sync::Mutex<Option<Arc<dyn std::any::Any + Send + Sync>>> {
        &self.inner.unlocked_repository
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// Number of background tasks still running: 0 once `close` returned.
    pub fn running_tasks(&self) -> usize {
        self.inner.tasks.running()
    }

    /// Saves pending read counts, commits what is queued and stops the writer. Every handle of
    /// this store then fails with `Error::Closed`.
    ///
    /// # Errors
    /// `Error::Backend` when the writer cannot be stopped cleanly.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled close may leave the store closed.
    pub async fn close(&self) -> Result<()> {
        self.inner.tasks.stop().await;
        let updates = self.inner.access.take();
        if !updates.is_empty()
            && let Err(error) = self.inner.backend.record_access(updates).await
        {
            tracing::warn!(%error, "could not save read counts at close");
        }
        let closed = self.inner.backend.close().await;
        // A cached value would otherwise still answer a read after the close.
        self.inner.cache.clear();
        closed
    }

    /// Counts a read in memory; hands the counts on once enough accumulated.
    fn note_access(&self, collection: &str, key: &str) {
        if self.inner.access.note(collection, key) {
            self.flush_access();
        }
    }

    /// Hands the read counts gathered so far to the backend, without waiting for them.
    pub(crate) fn flush_access(&self) {
        let updates = self.inner.access.take();
        if updates.is_empty() {
            return;
        }
        let store = self.clone();
        self.inner.tasks.spawn_once(async move {
            if let Err(error) = store.inner.backend.record_access(updates).await {
                tracing::debug!(%error, "read counts dropped");
            }
        });
    }
}
