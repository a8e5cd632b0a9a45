//! [`Repository::restore`]: a backup, or chosen collections of it, into a new database.
//!
//! Into a file, the restore builds a new database beside the target under a temporary name,
//! verifies it (`Store::verify` and the record count), checkpoints it into one file, and only
//! then renames it into place: the target is never half-written, and with
//! [`IfExists::Refuse`] an existing file is never touched. Into PostgreSQL, where there is no
//! rename, the backup is verified whole first and the database must hold no records.
//!
//! A restore into a file first removes the temporaries of earlier restores into the same file
//! that were killed, when it can prove them abandoned ([`super::temporary`]).
//!
//! **Invariant:** every record passed the manifest reader's checks (`check_record`), and every
//! blob is read within bounds, decoded, re-hashed and its size checked against the manifest
//! ([`super::check`], shared with verify), before it is handed to the target's backend as a
//! `WriteOp::Restore`.

use std::collections::{HashMap, HashSet};

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::check::load_entry_blob;
use super::files::{blocking, io_error};
use super::id::BackupId;
use super::index::Packs;
use super::manifest::{Entry, ManifestReader};
use super::options::{BackupRef, IfExists, RestoreOptions, RestoreSummary};
use super::pack::PackReader;
use super::repository::{LockMode, Repository};
use super::select::Selection;
use super::target::{check_target, put_in_place};
use super::temporary::{Temporary, remove_abandoned};
use super::{Progress, ProgressFn, Stage};
use crate::backend::{
    Checkpoint, DictionaryStorage, Measurement, Reads, StoredDictionary, Upkeep, WriteOp, Writes,
};
use crate::blob::{BlobId, EncodedBlob};
use crate::clock::now_ms;
use crate::codec::Dictionary;
use crate::config::{Config, Durability};
use crate::error::{Error, Result};
use crate::store::Store;

/// Records per write batch.
const BATCH_RECORDS: usize = 512;

/// Stored bytes per write batch, at most (a batch always holds at least one record).
const BATCH_BYTES: usize = 8 << 20;

/// A checked manifest and what of it will be restored.
#[derive(Debug, Clone)]
struct Plan {
    id: BackupId,
    selection: Selection,
    records: u64,
    blobs: u64,
    logical_bytes: u64,
    /// When the restore started: a record that had expired by then is not restored.
    now_ms: i64,
}

impl Plan {
    fn wants(&self, entry: &Entry) -> bool {
        self.selection.wants(&entry.collection, &entry.key)
            && !entry.meta.is_expired_at(self.now_ms)
    }
}

impl Repository {
    /// Restores a backup (or chosen collections or keys of it: see [`RestoreOptions`]) into
    /// the database `target` names:
    /// a file that must not exist (see [`IfExists`]) or an empty PostgreSQL database. Keeps
    /// every record's version and metadata. `progress` is called as records are written and
    /// while the result is verified.
    ///
    /// # Errors
    /// `Error::Io` when the backup does not exist or the target file exists (and
    /// `IfExists::Refuse`) or is open, `Error::InvalidName` for a collection the backup does
    /// not hold (`what: "key"` for a key), `Error::Corrupt` for a damaged manifest or blob (naming the record),
    /// `Error::ValueTooLarge` for a value over the target's `max_value_bytes`,
    /// `Error::InvalidConfig` for a non-empty PostgreSQL target, and the target's errors.
    /// Into a file, nothing is left behind on error; into PostgreSQL, the records written
    /// before a failure stay.
    ///
    /// Into a file, the database is built beside the target as `.<name>.restore-<8 hex>`,
    /// reserved by a locked `.<name>.restore-<8 hex>.lock`. Each restore into a file first
    /// deletes such files that killed restores into the same target left, once it has
    /// locked their lock file (or, with none, checked that no process has the database open).
    ///
    /// # Cancel safety
    /// Not cancel safe: a dropped restore into a file deletes its temporary files as it is
    /// dropped, and never leaves a partial target; a killed one leaves them for the next
    /// restore into the same file to delete.
    pub async fn restore(
        &self,
        backup: &BackupRef,
        target: &Config,
        options: &RestoreOptions,
        progress: impl Fn(Progress) + Send + Sync + 'static,
    ) -> Result<RestoreSummary> {
        let started = Instant::now();
        target.validate()?;
        let selection = Selection::new(options)?;
        let progress: ProgressFn = Arc::new(progress);
        let repository = self.clone();
        let backup = backup.clone();
        let (_lock, plan) = blocking(move || {
            let lock = repository.lock(LockMode::Shared)?;
            let id = repository.resolve(&backup)?;
            let plan = repository.plan(id, selection)?;
            Ok((lock, plan))
        })
        .await?;
        let restoring = Restoring {
            repository: self,
            plan: &plan,
            progress: &progress,
        };
        match &target.postgres_url {
            None => restoring.restore_to_file(target, options.if_exists).await?,
            Some(_) => {
                restoring
                    .restore_to_database(target, options.if_exists)
                    .await?
            }
        }
        Ok(RestoreSummary {
            backup_id: plan.id,
            target: target.location(),
            records: plan.records,
            blobs: plan.blobs,
            logical_bytes: plan.logical_bytes,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The id a [`BackupRef`] names.
    pub(super) fn resolve(&self, backup: &BackupRef) -> Result<BackupId> {
        match backup {
            BackupRef::Id(id) => {
                std::fs::symlink_metadata(self.manifest_path(id)).map_err(io_error(format!(
                    "find backup {id} in {} (see the list of backups)",
                    self.dir().display()
                )))?;
                Ok(id.clone())
            }
            BackupRef::Latest => self.newest_at(i64::MAX),
            BackupRef::At(ms) => self.newest_at(*ms),
        }
    }

    /// Reads the whole manifest once, checking it, and counts what will be restored.
    fn plan(&self, id: BackupId, selection: Selection) -> Result<Plan> {
        let mut plan = Plan {
            selection,
            id,
            records: 0,
            blobs: 0,
            logical_bytes: 0,
            now_ms: now_ms(),
        };
        let mut blobs: HashSet<BlobId> = HashSet::new();
        let mut reader = ManifestReader::open(self, &plan.id)?;
        let selection = plan.selection.clone();
        let mut presence = selection.presence();
        while let Some(entry) = reader.next_entry()? {
            presence.see(&entry.collection, &entry.key);
            if plan.wants(&entry) {
                plan.records += 1;
                plan.logical_bytes += entry.meta.size_bytes;
                blobs.insert(entry.blob_id);
            }
        }
        plan.blobs = blobs.len() as u64;
        presence.check()?;
        Ok(plan)
    }
}

/// One restore under way: the repository it reads, its checked plan, and the progress callback.
struct Restoring<'a> {
    repository: &'a Repository,
    plan: &'a Plan,
    progress: &'a ProgressFn,
}

impl Restoring<'_> {
    /// Into a file: builds the database under a temporary name, then moves it into place.
    async fn restore_to_file(&self, target: &Config, if_exists: IfExists) -> Result<()> {
        let path = target.path.clone();
        let checked = path.clone();
        let temporary = blocking(move || {
            remove_abandoned(&checked);
            check_target(&checked, if_exists)?;
            Temporary::create(&checked)
        })
        .await?;
        let mut config = target.clone();
        config.path = temporary.path().to_owned();
        quiet(&mut config);
        // Durability comes from the checkpoint and file sync at the end, not from each batch.
        config.durability = Durability::Process;
        let built = self.build(config).await;
        let placed = match built {
            Ok(()) => {
                let (built, path) = (temporary.path().to_owned(), path.clone());
                blocking(move || put_in_place(&built, &path, if_exists)).await
            }
            Err(error) => Err(error),
        };
        // Whatever is left of the temporary database goes, then its lock file.
        blocking(move || {
            drop(temporary);
            Ok(())
        })
        .await?;
        placed
    }

    /// Restores into a new store at `config`, verifies it, and leaves it closed as one file.
    async fn build(&self, config: Config) -> Result<()> {
        let store = Store::open(config).await?;
        let filled = match self.fill(&store).await {
            Ok(()) => store.backend().checkpoint().await.and_then(|checkpoint| {
                // An engine that checkpoints its own log leaves nothing to finish here.
                if let Measurement::Measured(Checkpoint {
                    is_complete: false, ..
                }) = checkpoint
                {
                    Err(Error::backend(
                        "finish the restored database",
                        "its write-ahead log could not be checkpointed",
                    ))
                } else {
                    Ok(())
                }
            }),
            Err(error) => Err(error),
        };
        let closed = store.close().await;
        drop(store);
        filled.and(closed)
    }

    /// Into PostgreSQL: checks the whole backup first, then fills the (empty) database.
    async fn restore_to_database(&self, target: &Config, if_exists: IfExists) -> Result<()> {
        if if_exists == IfExists::Replace {
            return Err(Error::InvalidConfig(
                "replacing a PostgreSQL database is not supported; restore into an empty database"
                    .into(),
            ));
        }
        // No rename makes a database appear whole: check every blob before writing any.
        let repository = self.repository.clone();
        let (id, verify_progress) = (self.plan.id.clone(), Arc::clone(self.progress));
        let report = blocking(move || repository.verify_blocking(&[id], &verify_progress)).await?;
        if let Some(damage) = report.damage.first() {
            return Err(Error::Corrupt {
                collection: damage.collection.clone(),
                key: damage.key.clone(),
                detail: damage.detail.clone(),
            });
        }
        let mut config = target.clone();
        quiet(&mut config);
        let store = Store::open(config).await?;
        let filled = async {
            let records = store.backend().totals().await?.records;
            if records > 0 {
                return Err(Error::InvalidConfig(format!(
                    "the target database {} already holds {records} records; restore into an \
                     empty database",
                    target.location()
                )));
            }
            self.fill(&store).await
        }
        .await;
        let closed = store.close().await;
        filled.and(closed)
    }

    /// Writes the plan's records into `store` in batches, then verifies the store.
    async fn fill(&self, store: &Store) -> Result<()> {
        let (plan, progress) = (self.plan, self.progress);
        // Values keep their encoding, so the store gets the backup's dictionaries first.
        let repository = self.repository.clone();
        let id = plan.id.clone();
        let (refs, dictionaries) = blocking(move || {
            let refs = ManifestReader::open(&repository, &id)?
                .header()
                .dictionaries
                .clone();
            let dictionaries = repository.read_dictionaries(&id, &refs)?;
            Ok((refs, dictionaries))
        })
        .await?;
        for dictionary_ref in refs {
            let Some(dictionary) = dictionary_ref
                .parse_id()
                .and_then(|id| dictionaries.get(&id))
            else {
                continue;
            };
            store
                .backend()
                .add_dictionary(StoredDictionary {
                    id: dictionary.id(),
                    collection: dictionary_ref.collection,
                    bytes: dictionary.bytes().to_vec(),
                    created_at_ms: dictionary_ref.created_at_ms,
                    ratio: dictionary_ref.ratio,
                })
                .await?;
        }
        store.dictionaries().reload(store.backend()).await?;
        let (batches, mut received) = mpsc::channel::<Vec<WriteOp>>(2);
        let repository = self.repository.clone();
        let reading = plan.clone();
        let max_value_bytes = store.config().max_value_bytes;
        let reader = tokio::task::spawn_blocking(move || {
            repository.read_batches(&reading, max_value_bytes, &dictionaries, &batches)
        });
        progress(Progress::new(Stage::Restore, 0, plan.records));
        let mut done = 0u64;
        let mut written = Ok(());
        while let Some(batch) = received.recv().await {
            let count = batch.len() as u64;
            if let Err(error) = store.backend().write(batch).await {
                written = Err(error);
                break;
            }
            done += count;
            progress(Progress::new(Stage::Restore, done, plan.records));
        }
        // A failed write stops the reader (its sends fail), and is the error to report.
        drop(received);
        let read = reader
            .await
            .map_err(|join_error| Error::backend("read a backup", join_error.to_string()))?;
        written?;
        read?;
        progress(Progress::new(Stage::Check, 0, 1));
        let report = store.verify().await?;
        if let Some(problem) = report.problems.first() {
            return Err(Error::Corrupt {
                collection: problem.collection.clone(),
                key: problem.key.clone(),
                detail: format!(
                    "the restored database failed verification: {}",
                    problem.detail
                ),
            });
        }
        let restored = store.backend().totals().await?.records;
        if restored != plan.records || done != plan.records {
            return Err(Error::backend(
                "check the restored database",
                format!(
                    "it holds {restored} records where backup {} has {}",
                    plan.id, plan.records
                ),
            ));
        }
        progress(Progress::new(Stage::Check, 1, 1));
        Ok(())
    }
}

impl Repository {
    /// Reads the plan's records with their verified blobs and sends them in batches.
    fn read_batches(
        &self,
        plan: &Plan,
        max_value_bytes: usize,
        dictionaries: &HashMap<u32, Arc<Dictionary>>,
        batches: &mpsc::Sender<Vec<WriteOp>>,
    ) -> Result<()> {
        let send = |batch| batches.blocking_send(batch).map_err(|_| Error::Closed);
        let packs = Packs::load(self)?;
        let mut reader = ManifestReader::open(self, &plan.id)?;
        let mut batch = Vec::with_capacity(BATCH_RECORDS);
        let mut batch_bytes = 0;
        // Values come in key order, as a backup wrote them: mostly one pack after another.
        let mut pack_reader = PackReader::default();
        while let Some(entry) = reader.next_entry()? {
            if !plan.wants(&entry) {
                continue;
            }
            let blob = self.read_blob(
                &mut pack_reader,
                &packs,
                &entry,
                max_value_bytes,
                dictionaries,
            )?;
            batch_bytes += blob.stored.len();
            batch.push(WriteOp::Restore {
                collection: entry.collection,
                key: entry.key,
                blob,
                format: entry.format,
                meta: entry.meta,
            });
            if batch.len() >= BATCH_RECORDS || batch_bytes >= BATCH_BYTES {
                send(std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            send(batch)?;
        }
        Ok(())
    }

    /// A record's blob from the repository, checked against its id and the manifest (the
    /// checks verify makes too), reading no more than its value can be stored in.
    fn read_blob(
        &self,
        reader: &mut PackReader,
        packs: &Packs,
        entry: &Entry,
        max_value_bytes: usize,
        dictionaries: &HashMap<u32, Arc<Dictionary>>,
    ) -> Result<EncodedBlob> {
        let (collection, key, blob_id) = (&entry.collection, &entry.key, entry.blob_id);
        let size_bytes = entry.meta.size_bytes;
        if size_bytes > max_value_bytes as u64 {
            return Err(Error::ValueTooLarge {
                collection: collection.clone(),
                key: key.clone(),
                size: usize::try_from(size_bytes).unwrap_or(usize::MAX),
                max: max_value_bytes,
            });
        }
        let (stored, raw_len) = load_entry_blob(self, reader, packs, entry, dictionaries)?;
        Ok(EncodedBlob {
            id: blob_id,
            stored,
            raw_len,
        })
    }
}

/// Turns off what a store does on its own (cache, background tasks): a restore target is
/// written once and closed.
fn quiet(config: &mut Config) {
    config.cache_capacity_bytes = 0;
    config.stats_interval_secs = 0;
    config.maintenance_interval_secs = 0;
    config.cache_eviction_interval_secs = 0;
    config.expiry_sweep_interval_secs = 0;
}
