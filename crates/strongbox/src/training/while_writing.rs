//! Training while a collection fills: a collection written without a dictionary gets one as
//! soon as it holds `Config::dictionary_min_values` values, in the background, instead of at
//! the next maintenance run (an hour later by default).
//!
//! Without it, a bulk load of a million records is stored with plain zstd, and the first
//! maintenance run after it recompresses every value with the new dictionary at level 15: minutes
//! of work, and a file left with slack in every page of values. With it, the load trains once
//! its first values are in, the rest of the load is compressed with the dictionary as it is
//! written, and only the values written before are recompressed.
//!
//! - **When.** Each value committed without a dictionary counts for its collection (in this
//!   process, since it opened). At `dictionary_min_values` values the collection is trained
//!   ([`Store::train_collection`]: the same training, measurement and recompression as
//!   maintenance's); a training that did not pay is tried again at four times as many values,
//!   so a collection that never compresses costs a few attempts, not one per thousand writes.
//! - **One at a time, off the write path.** The write that crosses the mark only spawns the
//!   task (a store's task, which `close` stops after the page it is recompressing); one
//!   training runs at a time, and none while maintenance runs (it trains too).
//! - `Config::train_while_writing = false` leaves training to maintenance (and to explicit
//!   `Store::train_dictionaries` calls).

use crate::codec::Algorithm;
use crate::store::Store;
use crate::training::CollectionCompression;

impl Store {
    /// Notes a value of `collection` written without a dictionary, and starts its training in
    /// the background when it is due (see the module docs).
    pub(crate) fn note_plain_value(&self, collection: &str) {
        if !self.trains_while_writing() {
            return;
        }
        let trigger = self.training_trigger();
        if !trigger.note(collection, self.config().dictionary_min_values) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            trigger.finished();
            return;
        }
        let store = self.downgrade();
        let collection = collection.to_owned();
        let closing = self.tasks().cancellation();
        self.tasks().spawn_once(async move {
            let Some(store) = store.upgrade().map(Store::from_inner) else {
                return;
            };
            // Maintenance trains every collection: leave this one to a run in progress. A
            // close stops the recompression after its page in progress (rewriting is cancel
            // safe), so that closing never waits for a whole collection, and no read of it
            // outlives the store.
            if let Ok(_running) = store.maintenance_lock().try_lock() {
                match store.train_collection(&collection, &closing).await {
                    Ok(outcome) => tracing::debug!(
                        collection,
                        action = outcome.action,
                        values = outcome.values_recompressed,
                        "trained a dictionary while writing"
                    ),
                    Err(error) => {
                        tracing::warn!(collection, %error, "training a dictionary failed");
                    }
                }
            }
            store.training_trigger().finished();
        });
    }

    /// Whether this store trains dictionaries while writing (see the module docs).
    pub(crate) fn trains_while_writing(&self) -> bool {
        let config = self.config();
        config.train_while_writing
            && !config.read_only
            && config.dictionary_min_values > 0
            && config.compression.algorithm == Algorithm::Zstd
    }

    /// Trains `collection`'s dictionary if it has none (another process may have trained it
    /// meanwhile) and recompresses its values, as maintenance's training does.
    pub(crate) async fn train_collection(
        &self,
        collection: &str,
        stop: &tokio_util::sync::CancellationToken,
    ) -> crate::Result<CollectionCompression> {
        self.dictionaries().reload(self.backend()).await?;
        if self.dictionaries().load().current(collection).is_some() {
            return Ok(CollectionCompression::new(collection.to_owned(), 0, "kept"));
        }
        self.compress_collection(collection.to_owned(), 0, stop)
            .await
    }
}
