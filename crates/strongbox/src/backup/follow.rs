//! Continuous backup: a [`Follower`] ships the changes a store committed since the newest
//! backup of it, as a new backup, every few seconds (`strongbox backup follow`).
//!
//! A step reads the change feed from the position the newest backup of the store holds
//! (`Header::feed_seq`), reads the current record of every key changed, and writes a new
//! backup: the previous backup's records merged with the changed ones, in key order, through
//! the same writer as a snapshot's. Chunk boundaries depend only on the keys and chunks are
//! content addressed, so the new backup writes only the chunks that changed and the values
//! the repository lacks; every follow backup is a whole backup, restored, verified, listed
//! and pruned as any other.
//!
//! **Invariants:**
//! - A follow backup holds exactly the changes numbered up to its `feed_seq`: the changes
//!   and the record of every key they name are read in one snapshot of the store
//!   (`Feed::changes_with_records`), and that snapshot's last change is the feed's newest, so
//!   the records are the state those changes left. A store without a backup holding a feed
//!   position, a feed trimmed past it, and more than [`STEP_CHANGES`] changes waiting take a
//!   full snapshot instead.
//! - Its `created_at_ms` is the commit time of the newest change it holds, so that
//!   `BackupRef::At(t)` picks the newest state committed at or before `t`.
//! - The store's writers never wait for it: it reads as any reader does.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use super::create::BackupSummary;
use super::files::blocking;
use super::id::BackupId;
use super::manifest::ManifestReader;
use super::repository::{LockMode, Repository};
use crate::backend::{Engine, Feed, SnapshotItem, SnapshotRecord, StoredRecord};
use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::store::Store;

/// The most changes one step reads from the feed at a time.
const STEP_CHANGES: usize = 50_000;

/// What one [`Follower::step`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FollowStep {
    /// The backup written; `None` when nothing changed since the last one.
    pub backup: Option<BackupSummary>,
    /// Changes of the feed the backup added to the previous one (0 for a full snapshot).
    pub changes: u64,
    /// Whether the step took a full snapshot (no earlier backup of this store with a feed
    /// position, the feed trimmed past it, or keys that kept moving).
    pub is_full: bool,
    /// The feed position the repository now holds: every change up to it is backed up.
    pub feed_seq: u64,
}

/// Ships a store's committed changes into a repository, one backup per [`Follower::step`].
#[derive(Debug)]
pub struct Follower {
    repository: Repository,
    store: Store,
    /// The newest backup of the store and its feed position, once known.
    base: Option<(BackupId, u64)>,
}

impl Repository {
    /// A follower shipping `store`'s changes into this repository. It continues from the
    /// newest backup of the same store (same engine and location) that records a feed
    /// position, or starts with a full backup.
    pub fn follower(&self, store: &Store) -> Follower {
        Follower {
            repository: self.clone(),
            store: store.clone(),
            base: None,
        }
    }
}

impl Follower {
    /// Writes one backup holding every change committed so far, unless nothing changed
    /// since the previous one.
    ///
    /// # Errors
    /// `Error::InvalidConfig` when the store's change feed is off; the errors of
    /// [`Repository::backup`].
    ///
    /// # Cancel safety
    /// As [`Repository::backup`]: a dropped step publishes nothing (or the whole backup).
    pub async fn step(&mut self) -> Result<FollowStep> {
        if !self.store.config().change_feed {
            return Err(Error::InvalidConfig(
                "change_feed is off for this store, so there are no changes to follow; open it \
                 with change_feed on, or take scheduled backups instead"
                    .into(),
            ));
        }
        let base = match self.base.clone() {
            Some(base) => Some(base),
            None => self.newest_base().await?,
        };
        let Some((base_id, since)) = base else {
            return self.full().await;
        };
        let read = self
            .store
            .backend()
            .changes_with_records(since, STEP_CHANGES)
            .await?;
        let page = &read.page;
        let Some(last) = page.changes.last() else {
            if page.trimmed_through > since {
                return self.full().await;
            }
            return Ok(FollowStep {
                backup: None,
                changes: 0,
                is_full: false,
                feed_seq: since,
            });
        };
        // Changes trimmed before they were shipped, or more waiting than a step takes (the
        // records read are then past the page): a snapshot holds it all.
        if page.trimmed_through > since || last.seq < page.newest {
            return self.full().await;
        }
        let (feed_seq, changes) = (last.seq, page.changes.len() as u64);
        let at_ms = page
            .changes
            .iter()
            .map(|change| change.at_ms)
            .max()
            .unwrap_or(0);
        let mut settled = Settled::new();
        for ((collection, key), record) in read.records {
            let state = match record {
                None => None,
                Some(StoredRecord {
                    stored: None,
                    blob_id,
                    ..
                }) => {
                    return Err(Error::corrupt_at(
                        &collection,
                        &key,
                        format!("blob {blob_id} is missing"),
                    ));
                }
                Some(StoredRecord {
                    stored: Some(stored),
                    blob_id,
                    format,
                    meta,
                    ..
                }) => {
                    let record = SnapshotRecord {
                        collection: collection.clone(),
                        key: key.clone(),
                        blob_id,
                        format,
                        meta,
                    };
                    Some((record, stored))
                }
            };
            settled.insert((collection, key), state);
        }
        match self.ship(base_id, feed_seq, at_ms, settled).await {
            Ok(summary) => Ok(FollowStep {
                backup: Some(summary),
                changes,
                is_full: false,
                feed_seq,
            }),
            // A base that cannot be read whole is damage verify reports; a full snapshot
            // does not need it.
            Err(Error::Corrupt { .. }) => self.full().await,
            Err(error) => {
                // The base may be gone (pruned): the next step looks for the newest again.
                self.base = None;
                Err(error)
            }
        }
    }

    /// Writes the base backup's records merged with the settled ones as a new backup, taken
    /// at `at_ms`, holding the feed up to `feed_seq`.
    async fn ship(
        &mut self,
        base: BackupId,
        feed_seq: u64,
        at_ms: i64,
        settled: Settled,
    ) -> Result<BackupSummary> {
        let repository = self.repository.clone();
        let summary = self
            .repository
            .write_backup(
                &self.store,
                at_ms,
                |_| {},
                move |known, items| async move {
                    blocking(move || merge(&repository, &base, settled, &known, &items, feed_seq))
                        .await
                },
            )
            .await?;
        self.base = Some((summary.id.clone(), feed_seq));
        Ok(summary)
    }

    /// Takes a full snapshot and continues from it.
    async fn full(&mut self) -> Result<FollowStep> {
        let summary = self.repository.backup(&self.store, |_| {}).await?;
        let feed_seq = summary.feed_seq.unwrap_or(0);
        self.base = Some((summary.id.clone(), feed_seq));
        Ok(FollowStep {
            backup: Some(summary),
            changes: 0,
            is_full: true,
            feed_seq,
        })
    }

    /// The newest backup of this store whose manifest opens, with its feed position;
    /// `None` when there is none or the newest has no position.
    async fn newest_base(&self) -> Result<Option<(BackupId, u64)>> {
        let repository = self.repository.clone();
        let backend = self.store.backend().name().to_owned();
        let location = self.store.config().location();
        blocking(move || {
            let _lock = repository.lock(LockMode::Shared)?;
            let mut newest: Option<(i64, BackupId, Option<u64>)> = None;
            // Ids sort by their creation second: once a backup of this store is found, only
            // those of the same second or the one before can be newer.
            for id in repository.manifest_ids()?.into_iter().rev() {
                if let Some((at_ms, _, _)) = &newest
                    && id.time_ms() < at_ms - 2_000
                {
                    break;
                }
                let Ok(reader) = ManifestReader::open(&repository, &id) else {
                    continue;
                };
                let header = reader.header();
                if header.source.backend != backend || header.source.location != location {
                    continue;
                }
                let candidate = (header.created_at_ms, id.clone(), header.feed_seq);
                if newest.as_ref().is_none_or(|best| candidate > *best) {
                    newest = Some(candidate);
                }
            }
            Ok(newest.and_then(|(_, id, seq)| seq.map(|seq| (id, seq))))
        })
        .await
    }
}

/// Starts the background task of `backup_follow_secs` (none when it is 0): a step every
/// interval into the repository in `dir` (created if new), logged; the task keeps the base it
/// continues from between steps, and holds only a weak handle on the store.
pub(crate) fn follow_in_background(store: &Store) {
    let base: Arc<Mutex<Option<(BackupId, u64)>>> = Arc::default();
    store.tasks().every(
        "backup follow",
        store.config().backup_follow_secs,
        store.downgrade(),
        move |inner, _| {
            let base = Arc::clone(&base);
            async move {
                let store = Store::from_inner(inner);
                let mut base = base.lock().await;
                let stepped = async {
                    let configured = super::configured(&store, super::Work::Write).await?;
                    let mut follower = configured.repository.follower(&store);
                    // The mirror of an `s3://` repository may have lost it to a prune
                    // elsewhere: its base is found again each step.
                    follower.base = base.take().filter(|_| !configured.is_offsite());
                    let step = follower.step().await;
                    *base = follower.base;
                    configured.finish().await?;
                    step
                };
                match stepped.await {
                    Ok(FollowStep { backup: None, .. }) => {}
                    Ok(step) => tracing::debug!(
                        changes = step.changes,
                        is_full = step.is_full,
                        feed_seq = step.feed_seq,
                        "changes shipped to the backup repository"
                    ),
                    Err(error) => {
                        super::forget_unlocked(&store);
                        tracing::warn!(%error, "cannot ship changes to the backup repository")
                    }
                }
            }
        },
    );
}

/// The state of each changed key after the step: its record and stored blob, or `None`
/// once deleted; in (collection, key) order.
type Settled = BTreeMap<(String, String), Option<(SnapshotRecord, Vec<u8>)>>;

/// Sends the base backup's records with the settled ones merged in, as a snapshot would.
fn merge(
    repository: &Repository,
    base: &BackupId,
    settled: Settled,
    known: &HashSet<BlobId>,
    items: &mpsc::Sender<SnapshotItem>,
    feed_seq: u64,
) -> Result<()> {
    let send = |item| items.blocking_send(item).map_err(|_| Error::Closed);
    let mut reader = ManifestReader::open(repository, base)?;
    let estimate = reader.trailer().map_or(0, |trailer| trailer.records);
    send(SnapshotItem::Records(estimate))?;
    send(SnapshotItem::FeedPosition(feed_seq))?;
    let mut sent: HashSet<BlobId> = HashSet::new();
    let mut emit = |state: Option<(SnapshotRecord, Vec<u8>)>| -> Result<()> {
        let Some((record, stored)) = state else {
            return Ok(());
        };
        let id = record.blob_id;
        send(SnapshotItem::Record(record))?;
        if !known.contains(&id) && sent.insert(id) {
            send(SnapshotItem::Blob { id, stored })?;
        }
        Ok(())
    };
    let mut changed = settled.into_iter().peekable();
    while let Some(entry) = reader.next_entry()? {
        let name = (entry.collection.as_str(), entry.key.as_str());
        while let Some(((collection, key), _)) = changed.peek()
            && (collection.as_str(), key.as_str()) < name
        {
            if let Some((_, state)) = changed.next() {
                emit(state)?;
            }
        }
        if let Some(((collection, key), _)) = changed.peek()
            && (collection.as_str(), key.as_str()) == name
        {
            if let Some((_, state)) = changed.next() {
                emit(state)?;
            }
            continue;
        }
        send(SnapshotItem::Record(SnapshotRecord {
            collection: entry.collection,
            key: entry.key,
            blob_id: entry.blob_id,
            format: entry.format,
            meta: entry.meta,
        }))?;
    }
    for (_, state) in changed {
        emit(state)?;
    }
    Ok(())
}
