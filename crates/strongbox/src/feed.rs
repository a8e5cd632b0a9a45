//! The change feed: [`Store::changes`] (a page of the log) and [`Store::subscribe`] (the log,
//! then live), with [`ChangeFilter`]; retention is a maintenance step
//! (`Store::trim_changes`).
//!
//! **Invariant:** a subscriber reads only changes with `seq` above the last one it handed
//! out, in ascending order, so it delivers each change once, in order; it never skips one
//! silently: when changes it has not read were trimmed it ends with `Error::ChangesTrimmed`.
//! Both rest on the engines' promise (`backend::Feed`) that no change below a number already
//! visible can commit later. A store opened with the feed off (`Config::change_feed`)
//! records no change, and its reads of the feed fail with `Error::InvalidConfig`.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use serde::de::DeserializeOwned;

use crate::backend::{Feed, FeedPage, FeedTrim};
use crate::change::{Change, ChangeKind};
use crate::clock::now_ms;
use crate::codec::Format;
use crate::error::{Error, Result};
use crate::store::Store;

/// Changes a subscriber reads from the database at a time.
pub const FEED_PAGE: usize = 512;

/// How often a subscriber that has caught up looks for changes committed by other processes
/// or servers; this process's own commits wake it at once.
pub const FEED_POLL: Duration = Duration::from_millis(20);

/// Which changes a subscriber receives: every collection's (the default) or one's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct ChangeFilter {
    collection: Option<String>,
}

impl ChangeFilter {
    /// Every change.
    pub fn all() -> Self {
        ChangeFilter::default()
    }

    /// Only the changes of `collection`.
    pub fn collection(mut self, collection: &str) -> Self {
        self.collection = Some(collection.to_owned());
        self
    }

    /// The one collection selected, if any.
    pub fn collection_name(&self) -> Option<&str> {
        self.collection.as_deref()
    }
}

impl Store {
    /// Up to `limit` changes with a sequence number above `since`, in ascending order: every
    /// committed put and delete of every collection (start with `since = 0`).
    ///
    /// # Errors
    /// `Error::ChangesTrimmed` when changes after `since` were already trimmed;
    /// `Error::InvalidConfig` when this store was opened with the feed off
    /// (`Config::change_feed`); the engine's errors.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn changes(&self, since: u64, limit: usize) -> Result<Vec<Change>> {
        self.check_feed_is_on()?;
        let page = self.backend().changes_after(since, limit, None).await?;
        check_not_trimmed(since, &page)?;
        Ok(page.changes)
    }

    /// A stream of the changes after `from` that `filter` selects: first those already in the
    /// log, read in pages of [`FEED_PAGE`], then each new one as it commits (this process's
    /// commits wake it at once; other processes' and servers' are found within
    /// [`FEED_POLL`]). Each change comes once, in sequence order, with none missing; a
    /// consumer that stores the `seq` of the last change it handled resumes from it.
    ///
    /// The stream ends after yielding an error: `Error::ChangesTrimmed` when changes it had
    /// not delivered were trimmed (at the start, or when it falls that far behind),
    /// `Error::InvalidConfig` at once when this store was opened with the feed off
    /// (`Config::change_feed`), or the engine's error (`Error::Closed` once the store is
    /// closed). It holds a handle on the store while it lives.
    ///
    /// # Cancel safety
    /// Cancel safe: a change is handed out only when the stream yields it, so dropping the
    /// stream or a `next()` loses nothing that a new subscription from the last `seq` seen
    /// would not deliver again.
    pub fn subscribe(&self, from: u64, filter: ChangeFilter) -> BoxStream<'static, Result<Change>> {
        if let Err(error) = self.check_feed_is_on() {
            return stream::once(async { Err(error) }).boxed();
        }
        let state = Subscription {
            store: self.clone(),
            commits: self.commits(),
            collection: filter.collection,
            position: from,
            ready: VecDeque::new(),
            is_done: false,
        };
        stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
        .boxed()
    }

    /// The value a put change wrote, even when its record was overwritten or deleted since:
    /// the store keeps a value while a record or a change of the feed names it. `None` for a
    /// delete or an expiry, and for a put whose value is gone (its change was trimmed, and no
    /// record held the value at the next maintenance run's orphan sweep).
    ///
    /// The value is checked as a read's is: its decoded bytes must hash to the change's
    /// `blob_id` (BLAKE3), then they are deserialized into a `T`.
    ///
    /// # Errors
    /// `Error::Corrupt` naming the change's collection and key when the stored value does not
    /// decode or does not match its id; `Error::Serialization` when it is not a `T`; the
    /// engine's errors (`Error::Closed` once the store is closed).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn change_value<T: DeserializeOwned>(&self, change: &Change) -> Result<Option<T>> {
        let (ChangeKind::Put, Some(blob_id)) = (change.kind, change.blob_id) else {
            return Ok(None);
        };
        let Some(stored) = self.backend().blob(blob_id).await? else {
            return Ok(None);
        };
        let (collection, key) = (&change.collection, &change.key);
        let raw = self
            .decode_blob(&blob_id, &stored)
            .await
            .map_err(|error| Error::corrupt_at(collection, key, error.to_string()))?;
        // Every value is stored in the one format there is; a change does not record it.
        Format::default()
            .deserialize(&raw)
            .map(Some)
            .map_err(|source| Error::Serialization {
                action: "deserialize",
                collection: collection.clone(),
                key: key.clone(),
                source: source.into(),
            })
    }

    /// Trims the change feed to the configured retention (`changes_retention_secs`,
    /// `changes_retention_count`; 0 keeps everything by that measure): a maintenance step.
    /// Returns how many changes were deleted. It trims with the feed off too (what was
    /// recorded before it was turned off).
    ///
    /// # Errors
    /// The engine's.
    ///
    /// # Cancel safety
    /// Cancel safe: the trim is one transaction.
    pub async fn trim_changes(&self) -> Result<u64> {
        let config = self.config();
        let older_than = (config.changes_retention_secs > 0).then(|| {
            let retention_ms = i64::try_from(config.changes_retention_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX);
            now_ms().saturating_sub(retention_ms)
        });
        let keep_count =
            (config.changes_retention_count > 0).then_some(config.changes_retention_count);
        if older_than.is_none() && keep_count.is_none() {
            return Ok(0);
        }
        self.backend()
            .trim_changes(FeedTrim {
                older_than_ms: older_than,
                keep_count,
            })
            .await
    }

    /// `Error::InvalidConfig` when this store records no changes: a feed read through it
    /// would silently miss its own writes.
    fn check_feed_is_on(&self) -> Result<()> {
        if self.config().change_feed {
            return Ok(());
        }
        Err(Error::InvalidConfig(
            "change_feed is off for this store, so it records no changes and reads none; \
             open it with change_feed on to use the change feed"
                .into(),
        ))
    }
}

/// `Error::ChangesTrimmed` when the page shows that changes after `since` were trimmed.
fn check_not_trimmed(since: u64, page: &FeedPage) -> Result<()> {
    if page.trimmed_through > since {
        return Err(Error::ChangesTrimmed {
            requested: since,
            oldest: page.oldest.unwrap_or_else(|| page.newest.saturating_add(1)),
        });
    }
    Ok(())
}

/// A subscriber's place in the feed.
struct Subscription {
    store: Store,
    /// Wakes when this process commits.
    commits: tokio::sync::watch::Receiver<u64>,
    collection: Option<String>,
    /// Every change up to here was handed to `ready` (or not selected by the filter).
    position: u64,
    /// Changes read and not yet yielded.
    ready: VecDeque<Change>,
    /// An error was yielded: the stream is over.
    is_done: bool,
}

impl Subscription {
    /// The next change (or the error that ends the stream); `None` once ended.
    async fn next(&mut self) -> Option<Result<Change>> {
        loop {
            if self.is_done {
                return None;
            }
            if let Some(change) = self.ready.pop_front() {
                return Some(Ok(change));
            }
            // Marked seen before reading, so a commit during the read wakes the wait below.
            self.commits.borrow_and_update();
            match self.read_page().await {
                Err(error) => {
                    self.is_done = true;
                    return Some(Err(error));
                }
                Ok(()) if self.ready.is_empty() => self.wait().await,
                Ok(()) => {}
            }
        }
    }

    /// Reads the next page after `position` into `ready`.
    async fn read_page(&mut self) -> Result<()> {
        let page = self
            .store
            .backend()
            .changes_after(self.position, FEED_PAGE, self.collection.as_deref())
            .await?;
        check_not_trimmed(self.position, &page)?;
        let is_last_page = page.changes.len() < FEED_PAGE;
        if let Some(last) = page.changes.last() {
            self.position = last.seq;
        }
        // A short page holds every selected change up to `newest` (same snapshot, and none
        // below it can commit later): a filtered subscriber skips the others' changes, so a
        // trim of them does not end it.
        if is_last_page {
            self.position = self.position.max(page.newest);
        }
        self.ready.extend(page.changes);
        Ok(())
    }

    /// Waits for a commit of this process, or the poll interval for other writers.
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.commits.changed() => {}
            () = tokio::time::sleep(FEED_POLL) => {}
        }
    }
}
