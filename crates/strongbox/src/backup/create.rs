//! [`Repository::backup`]: an online, incremental backup of a store.
//!
//! The store streams a point-in-time snapshot (`Snapshots::snapshot`) to a blocking thread that
//! writes the blobs the repository lacks into data packs and the manifest's new chunks into
//! tree packs (each pack synced and renamed into `packs/` as it fills). Only when the snapshot
//! completed are the pack directories synced, then the index naming the new packs written,
//! and only then is the manifest renamed into `manifests/`: that rename is the moment the
//! backup exists.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::differential::{BaseCursor, choose_base};
use super::files::{blocking, create_dir, io_error, sync_dir};
use super::id::BackupId;
use super::index::{EntryKind, Packs, write_index};
use super::manifest::{DictionaryRef, Header, ManifestWriter, Source};
use super::pack::PackWriter;
use super::repository::{LockMode, Repository, RepositoryLock};
use super::{Progress, ProgressFn, Stage};
use crate::backend::{DictionaryStorage, Engine, SnapshotItem, Snapshots, StoredDictionary};
use crate::blob::{self, BlobId};
use crate::clock::now_ms;
use crate::dictionaries::Known;
use crate::error::{Error, Result};
use crate::store::Store;

/// Snapshot items in flight between the store and the repository writer.
const CHANNEL_ITEMS: usize = 64;

/// Records between two progress reports.
const PROGRESS_EVERY: u64 = 1024;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupSummary {
    /// The new backup's id.
    pub id: BackupId,
    /// Records in the backup.
    pub records: u64,
    /// Unique blobs the backup refers to.
    pub blobs_total: u64,
    /// Blobs the repository did not have, now written.
    pub blobs_written: u64,
    /// Bytes written: the new blobs plus the manifest.
    pub bytes_written: u64,
    /// Of `bytes_written`, the manifest's.
    pub manifest_bytes: u64,
    /// Serialized size of every record's value, counting shared values once per record.
    pub logical_bytes: u64,
    /// How long the backup took, in milliseconds.
    pub elapsed_ms: u64,
    /// The store's change-feed position the backup holds (every change up to it is in it),
    /// when the engine reported one.
    pub feed_seq: Option<u64>,
}

impl Repository {
    /// Backs `store` up while it keeps serving reads and writes: a point-in-time snapshot in
    /// which every transaction is wholly in or wholly out. Writes only the blobs the
    /// repository lacks, each checked against its hash first, then the manifest.
    /// `progress` is called from a blocking thread as records are read and blobs synced.
    ///
    /// # Errors
    /// `Error::Corrupt` when a value in the store fails its hash check (the backup stops and
    /// nothing of it is published), `Error::Io` or `Error::StorageFull` when the repository
    /// cannot be written, and the store's errors (`Error::Busy`, `Error::Backend`,
    /// `Error::Closed`).
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped backup stops at its next step and, unless it was already
    /// publishing its manifest (its last step), leaves no backup; blobs it had moved into
    /// place stay unreferenced until a prune.
    pub async fn backup(
        &self,
        store: &Store,
        progress: impl Fn(Progress) + Send + Sync + 'static,
    ) -> Result<BackupSummary> {
        self.write_backup(store, now_ms(), progress, |known, items| {
            store.backend().snapshot(known, items)
        })
        .await
    }

    /// Writes a backup of `store` taken at `created_at_ms` whose items `produce` sends, as
    /// a snapshot does ([`Snapshots::snapshot`]): given the blobs the repository holds, it
    /// sends the record count, the feed position, then the records in (collection, key) order
    /// with each blob the repository lacks after the first record naming it.
    pub(super) async fn write_backup<F, Fut>(
        &self,
        store: &Store,
        created_at_ms: i64,
        progress: impl Fn(Progress) + Send + Sync + 'static,
        produce: F,
    ) -> Result<BackupSummary>
    where
        F: FnOnce(Arc<HashSet<BlobId>>, mpsc::Sender<SnapshotItem>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let started = Instant::now();
        let repository = self.clone();
        let source = Source {
            backend: store.backend().name().to_owned(),
            location: store.config().location(),
        };
        let of = source.clone();
        let (lock, (known, known_chunks), base) = blocking(move || {
            let lock = repository.lock(LockMode::Shared)?;
            let packs = Packs::load(&repository)?;
            let chunks: HashSet<BlobId> = packs.chunks.into_keys().collect();
            let base = choose_base(&repository, &of);
            Ok((
                lock,
                (packs.blobs.into_keys().collect::<HashSet<_>>(), chunks),
                base,
            ))
        })
        .await?;
        let known = Arc::new(known);
        // Every dictionary goes with the backup: values compressed with one need it.
        store.dictionaries().reload(store.backend()).await?;
        let dictionaries = store.backend().dictionaries().await?;
        let refs = dictionaries
            .iter()
            .map(|dictionary| DictionaryRef {
                id: format!("{:08x}", dictionary.id),
                collection: dictionary.collection.clone(),
                created_at_ms: dictionary.created_at_ms,
                ratio: dictionary.ratio,
            })
            .collect();
        // A differential backup's id sorts after its base's (a copy publishes manifests in
        // name order, so a base is at the destination before what is built on it); when no
        // id can, the backup is whole.
        let after_base = base
            .as_ref()
            .and_then(|base| BackupId::generate_after(created_at_ms, base));
        let base = base.filter(|_| after_base.is_some());
        let id = after_base.unwrap_or_else(|| BackupId::generate(created_at_ms));
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(Arc::clone(&cancelled));
        let (items, received) = mpsc::channel(CHANNEL_ITEMS);
        let (verdict, snapshot_done) = oneshot::channel();
        let job = Job {
            tmp: self.tmp_dir().join(id.as_str()),
            repository: self.clone(),
            header: Header::new(&id, created_at_ms, source).with_dictionaries(refs),
            dictionaries,
            lookup: store.dictionaries().load(),
            id,
            known: Arc::clone(&known),
            known_chunks,
            base,
            max_value_bytes: store.config().max_value_bytes,
            progress: Arc::new(progress),
            cancelled,
            _lock: lock,
        };
        let writer = tokio::task::spawn_blocking(move || job.run(received, snapshot_done));
        let snapshot = produce(known, items).await;
        let _ = verdict.send(snapshot.is_ok());
        let written = writer
            .await
            .map_err(|join_error| Error::backend("write a backup", join_error.to_string()))?;
        // When the writer fails it drops its end of the channel, and the snapshot then fails
        // with `Closed`: the writer's error is the cause. When the snapshot fails, the writer
        // stops with `Closed`: the snapshot's error is the cause.
        match snapshot {
            Err(error) if !matches!(error, Error::Closed) => return Err(error),
            _ => {}
        }
        let written = written?;
        Ok(BackupSummary {
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..written
        })
    }
}

/// Sets the flag when the backup future is dropped (or finishes, when it no longer matters).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What the snapshot brought, as [`Job::receive`] took it.
#[derive(Default)]
struct Received {
    /// Record lines appended to the manifest.
    records: u64,
    /// Sum of their values' sizes.
    logical_bytes: u64,
    /// Every blob the records point at.
    blobs: HashSet<BlobId>,
    /// Blobs announced by a record but not received yet, with that record's name.
    awaited: HashMap<BlobId, (String, String)>,
    /// Blobs written into packs (those the repository lacked).
    written: u64,
    /// Their stored bytes.
    blob_bytes: u64,
}

/// What a snapshot sends before its first record.
struct Start {
    /// Records in the snapshot (for progress).
    records: u64,
    /// Its change-feed position, when the engine sent one.
    feed_seq: Option<u64>,
    /// The first item after those, if any.
    first: Option<SnapshotItem>,
}

impl Start {
    /// Reads the items a snapshot sends first: the record count and the feed position.
    fn read(items: &mut mpsc::Receiver<SnapshotItem>) -> Start {
        let mut start = Start {
            records: 0,
            feed_seq: None,
            first: None,
        };
        while let Some(item) = items.blocking_recv() {
            match item {
                SnapshotItem::Records(count) => start.records = count,
                SnapshotItem::FeedPosition(seq) => start.feed_seq = Some(seq),
                other => {
                    start.first = Some(other);
                    break;
                }
            }
        }
        start
    }
}

/// The repository side of a backup, run on a blocking thread.
struct Job {
    repository: Repository,
    id: BackupId,
    tmp: PathBuf,
    header: Header,
    known: Arc<HashSet<BlobId>>,
    /// The manifest chunks the repository holds.
    known_chunks: HashSet<BlobId>,
    /// The whole backup this one is differential on, if any ([`choose_base`]).
    base: Option<BackupId>,
    /// The store's dictionaries, written to the repository with the backup.
    dictionaries: Vec<StoredDictionary>,
    /// The same, prepared for checking blobs.
    lookup: Arc<Known>,
    max_value_bytes: usize,
    progress: ProgressFn,
    cancelled: Arc<AtomicBool>,
    /// Held until the job ends, even when the backup future was dropped.
    _lock: RepositoryLock,
}

impl Job {
    fn run(
        self,
        items: mpsc::Receiver<SnapshotItem>,
        snapshot_done: oneshot::Receiver<bool>,
    ) -> Result<BackupSummary> {
        let result = self.write(items, snapshot_done);
        // Whatever happened, the temporary directory goes: on success it is empty.
        if let Err(error) = std::fs::remove_dir_all(&self.tmp)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, dir = %self.tmp.display(), "could not remove a backup's temporary files");
        }
        result
    }

    fn check_cancelled(&self) -> Result<()> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(Error::backend(
                "finish a backup",
                "the backup was cancelled; nothing was published",
            ));
        }
        Ok(())
    }

    /// Writes the snapshot into `tmp/<id>/`, then publishes it: blobs, dictionaries, manifest.
    fn write(
        &self,
        items: mpsc::Receiver<SnapshotItem>,
        snapshot_done: oneshot::Receiver<bool>,
    ) -> Result<BackupSummary> {
        create_dir(&self.tmp)?;
        let mut items = items;
        let start = Start::read(&mut items);
        (self.progress)(Progress::new(Stage::Snapshot, 0, start.records));
        let mut header = self.header.clone();
        header.feed_seq = start.feed_seq;
        header.base = self.base.as_ref().map(ToString::to_string);
        let base = match &self.base {
            Some(base) => Some(BaseCursor::open(&self.repository, base)?),
            None => None,
        };
        let manifest_tmp = self.tmp.join("manifest");
        let mut manifest = ManifestWriter::create(
            &self.repository,
            &manifest_tmp,
            &header,
            self.known_chunks.clone(),
            base,
        )?;
        // Values and manifest chunks go into packs of their own, as restic keeps data and
        // trees apart: damage to a value's pack leaves the manifests readable.
        let mut packs = PackWriter::new(&self.repository, &self.tmp, "data");
        let mut tree = PackWriter::new(&self.repository, &self.tmp, "tree");
        let received = self.receive(start, items, &mut manifest, &mut packs, &mut tree)?;
        if !matches!(snapshot_done.blocking_recv(), Ok(true)) {
            // The snapshot failed (its own error is the one reported) or the store closed.
            return Err(Error::Closed);
        }
        if let Some((blob_id, (collection, key))) = received.awaited.into_iter().next() {
            return Err(Error::backend(
                "take a snapshot",
                format!("blob {blob_id} of {collection}/{key} was never sent"),
            ));
        }
        let records = received.records;
        (self.progress)(Progress::new(Stage::Snapshot, records, records));
        let blobs = received.blobs.len() as u64;
        let manifest_bytes = manifest.finish(&mut tree, records, blobs, received.logical_bytes)?;
        self.check_cancelled()?;
        let index_bytes = self.publish([packs, tree], &manifest_tmp)?;
        Ok(BackupSummary {
            id: self.id.clone(),
            records,
            blobs_total: blobs,
            blobs_written: received.written,
            bytes_written: received.blob_bytes
                + index_bytes
                + manifest_bytes.file
                + manifest_bytes.chunks,
            manifest_bytes: manifest_bytes.file + manifest_bytes.chunks,
            logical_bytes: received.logical_bytes,
            elapsed_ms: 0,
            feed_seq: header.feed_seq,
        })
    }

    /// Takes the snapshot's items as they come: appends each record to the manifest and
    /// writes each blob the repository lacks, checked against its id, into a pack.
    fn receive(
        &self,
        start: Start,
        mut items: mpsc::Receiver<SnapshotItem>,
        manifest: &mut ManifestWriter,
        packs: &mut PackWriter,
        tree: &mut PackWriter,
    ) -> Result<Received> {
        let total_records = start.records;
        let mut received = Received::default();
        let mut next = start.first;
        while let Some(item) = next.take().or_else(|| items.blocking_recv()) {
            self.check_cancelled()?;
            match item {
                SnapshotItem::Records(_) | SnapshotItem::FeedPosition(_) => {
                    return Err(Error::backend(
                        "take a snapshot",
                        "the snapshot sent its record count or feed position after a record",
                    ));
                }
                SnapshotItem::Record(record) => {
                    manifest.append(&record, tree)?;
                    received.records += 1;
                    received.logical_bytes += record.meta.size_bytes;
                    if received.blobs.insert(record.blob_id)
                        && !self.known.contains(&record.blob_id)
                    {
                        let name = (record.collection, record.key);
                        received.awaited.insert(record.blob_id, name);
                    }
                    let records = received.records;
                    if records.is_multiple_of(PROGRESS_EVERY) {
                        (self.progress)(Progress::new(
                            Stage::Snapshot,
                            records,
                            total_records.max(records),
                        ));
                    }
                }
                SnapshotItem::Blob { id, stored } => {
                    let (collection, key) = received.awaited.remove(&id).ok_or_else(|| {
                        Error::backend(
                            "take a snapshot",
                            format!("blob {id} was sent without a record pointing at it"),
                        )
                    })?;
                    self.check_blob(&id, &stored, &collection, &key)?;
                    packs.add(EntryKind::Blob, id, &stored)?;
                    received.blob_bytes += stored.len() as u64;
                    received.written += 1;
                }
            }
        }
        Ok(received)
    }

    /// Checks a blob of the snapshot against its id before it goes into the repository.
    fn check_blob(&self, id: &BlobId, stored: &[u8], collection: &str, key: &str) -> Result<()> {
        match blob::decode_verified(id, stored, self.max_value_bytes, &*self.lookup) {
            Ok(_) => Ok(()),
            Err(error) => Err(Error::corrupt_at(
                collection,
                key,
                format!(
                    "blob {id}: {error}; the backup stopped (see the store's verify report, and \
                     restore or rewrite this key first)"
                ),
            )),
        }
    }

    /// Makes the new packs, their index and the dictionaries durable, then publishes the
    /// manifest: the backup exists from that rename on. Returns the index's size.
    fn publish(&self, writers: [PackWriter; 2], manifest_tmp: &Path) -> Result<u64> {
        (self.progress)(Progress::new(Stage::Flush, 0, 1));
        let mut records = Vec::new();
        for writer in writers {
            records.extend(writer.finish()?);
        }
        // The packs' names are durable: the index may name them.
        let index_bytes = write_index(&self.repository, records)?.map_or(0, |(_, bytes)| bytes);
        for dictionary in &self.dictionaries {
            self.repository
                .write_dictionary(dictionary.id, &dictionary.bytes)?;
        }
        self.check_cancelled()?;
        // The backup exists from this rename on, and every blob it names is already durable.
        let manifest_path = self.repository.manifest_path(&self.id);
        if manifest_path.exists() {
            return Err(Error::backend(
                "publish a backup",
                format!("a backup named {} already exists", self.id),
            ));
        }
        std::fs::rename(manifest_tmp, &manifest_path)
            .map_err(io_error(format!("publish {}", manifest_path.display())))?;
        sync_dir(&self.repository.manifests_dir())?;
        (self.progress)(Progress::new(Stage::Flush, 1, 1));
        Ok(index_bytes)
    }
}
