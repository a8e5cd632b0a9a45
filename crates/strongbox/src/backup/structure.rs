//! [`Repository::check`]: restic's `check`: the repository's structure, and as much of its
//! data as asked ([`ReadData`]).
//!
//! Without reading data, every manifest is read through (its chunks and checksum, every
//! record checked), each dictionary it names is loaded, every blob it needs must be named by
//! an index, and each pack holding them must be a regular file at least as long as the
//! entries the index gives it: everything but the values' bytes. With [`ReadData::All`] every
//! blob is then read, decoded and re-hashed with [`Repository::verify`]'s checks (the same
//! code, [`super::check`]); with [`ReadData::Subset`], the blobs of a random share of the
//! packs. A damaged blob is named by the first record needing it (`verify` names one in each
//! backup), and a pack found damaged is not read again.
//!
//! **Invariant:** a check only reads, holding the lock shared; it reports damage in its
//! report and fails only when the repository cannot be listed.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use super::check::{BlobError, check_size, load_blob};
use super::files::{blocking, io_error};
use super::id::BackupId;
use super::index::Packs;
use super::manifest::ManifestReader;
use super::pack::PackReader;
use super::repository::{LockMode, Repository};
use super::verify::Damage;
use super::{Progress, ProgressFn, Stage};
use crate::blob::BlobId;
use crate::codec::Dictionary;
use crate::error::{Error, Result};

/// Blobs read between two progress reports.
const PROGRESS_EVERY: u64 = 256;

/// How much of the packs' data [`Repository::check`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadData {
    /// None: the structure only (default).
    #[default]
    None,
    /// Every blob the backups need, read with [`Repository::verify`]'s checks.
    All,
    /// The blobs in a random `percent` of the packs holding what the backups need (1 to
    /// 100; at least one pack).
    Subset {
        /// The share of packs to read, in percent.
        percent: u8,
    },
}

/// What [`Repository::check`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// Backups whose manifests were read.
    pub backups_checked: u64,
    /// Unique blobs the backups need whose index entry and pack were checked.
    pub blobs_located: u64,
    /// Packs whose existence and size were checked.
    pub packs_checked: u64,
    /// Packs whose blobs were read (every sound one with [`ReadData::All`]).
    pub packs_read: u64,
    /// Unique blobs read, decoded and re-hashed.
    pub blobs_read: u64,
    /// Their stored bytes.
    pub bytes_read: u64,
    /// Everything found wrong; empty when nothing was.
    pub damage: Vec<Damage>,
}

impl CheckReport {
    /// Whether nothing checked was found damaged.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// A blob some backup needs: the first record needing it, the records, the sizes claimed.
struct Need {
    backup: BackupId,
    collection: String,
    key: String,
    records: u64,
    smallest: u64,
    largest: u64,
}

impl Repository {
    /// Checks one backup (`Some(id)`) or all of them: their structure always, and the data
    /// `read_data` asks for (see [`ReadData`]). `progress` is called from a blocking thread.
    ///
    /// # Errors
    /// `Error::InvalidConfig` for a subset outside 1 to 100 percent, `Error::Io` when the
    /// repository cannot be listed or `id` names no backup, `Error::LockTimeout` when a prune
    /// holds the lock too long; what the checks find is in the report.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads (a dropped check finishes its current file on its thread).
    pub async fn check(
        &self,
        id: Option<&BackupId>,
        read_data: ReadData,
        progress: impl Fn(Progress) + Send + Sync + 'static,
    ) -> Result<CheckReport> {
        if let ReadData::Subset { percent } = read_data
            && !(1..=100).contains(&percent)
        {
            return Err(Error::InvalidConfig(format!(
                "a read-data subset is 1 to 100 percent of the packs, not {percent}"
            )));
        }
        let repository = self.clone();
        let id = id.cloned();
        let progress: ProgressFn = Arc::new(progress);
        blocking(move || {
            let _lock = repository.lock(LockMode::Shared)?;
            let ids = match id {
                Some(id) => {
                    std::fs::symlink_metadata(repository.manifest_path(&id)).map_err(io_error(
                        format!(
                            "find backup {id} in {} (see the list of backups)",
                            repository.dir().display()
                        ),
                    ))?;
                    vec![id]
                }
                None => repository.manifest_ids()?,
            };
            repository.check_blocking(&ids, read_data, &progress)
        })
        .await
    }

    fn check_blocking(
        &self,
        ids: &[BackupId],
        read_data: ReadData,
        progress: &ProgressFn,
    ) -> Result<CheckReport> {
        let packs = Packs::load(self)?;
        let mut report = CheckReport::default();
        let mut needs: BTreeMap<BlobId, Need> = BTreeMap::new();
        let mut dictionaries = HashMap::new();
        for id in ids {
            report.backups_checked += 1;
            if let Err(error) = self.needs_of(id, &mut needs, &mut dictionaries) {
                report.damage.push(damage(id, None, error.to_string()));
            }
        }
        // Each pack holding a needed blob, with the end of its last needed entry.
        let mut pack_ends: BTreeMap<BlobId, u64> = BTreeMap::new();
        for (blob_id, need) in &needs {
            match packs.blobs.get(blob_id) {
                Some(location) => {
                    let end = location.offset.saturating_add(location.length);
                    let known = pack_ends.entry(location.pack).or_insert(end);
                    *known = (*known).max(end);
                    report.blobs_located += 1;
                }
                None => report.damage.push(need.damage(
                    blob_id,
                    format!(
                        "blob {blob_id} is missing (no index names it){}",
                        packs.missing_hint()
                    ),
                )),
            }
        }
        let mut sound_packs = Vec::new();
        for (pack_id, end) in &pack_ends {
            report.packs_checked += 1;
            let Some(detail) = self.pack_problem(pack_id, *end) else {
                sound_packs.push(*pack_id);
                continue;
            };
            // Named by the first blob needed from it.
            let first = needs.iter().find(|(blob_id, _)| {
                packs.blobs.get(*blob_id).map(|location| location.pack) == Some(*pack_id)
            });
            if let Some((blob_id, need)) = first {
                report.damage.push(need.damage(blob_id, detail));
            }
        }
        // A pack found damaged above is not read again.
        let chosen = match read_data {
            ReadData::None => None,
            ReadData::All => Some(sound_packs),
            ReadData::Subset { percent } => Some(choose(sound_packs, percent)),
        };
        if let Some(chosen) = chosen {
            let reading = Reading {
                packs: &packs,
                needs: &needs,
                dictionaries: &dictionaries,
                progress,
            };
            self.read_subset(&reading, &chosen, &mut report);
        }
        Ok(report)
    }

    /// Adds the blobs backup `id` needs to `needs`, and its dictionaries; counted in only once
    /// its whole manifest checked out.
    fn needs_of(
        &self,
        id: &BackupId,
        needs: &mut BTreeMap<BlobId, Need>,
        dictionaries: &mut HashMap<u32, Arc<Dictionary>>,
    ) -> Result<()> {
        let mut reader = ManifestReader::open(self, id)?;
        dictionaries.extend(self.read_dictionaries(id, &reader.header().dictionaries)?);
        let mut entries = Vec::new();
        while let Some(entry) = reader.next_entry()? {
            entries.push(entry);
        }
        for entry in entries {
            let size = entry.meta.size_bytes;
            let need = needs.entry(entry.blob_id).or_insert_with(|| Need {
                backup: id.clone(),
                collection: entry.collection,
                key: entry.key,
                records: 0,
                smallest: size,
                largest: size,
            });
            need.records += 1;
            need.smallest = need.smallest.min(size);
            need.largest = need.largest.max(size);
        }
        Ok(())
    }

    /// What is wrong with pack `pack_id`, whose needed entries end at byte `end`: missing, not
    /// a regular file in a real shard directory, or shorter than its entries.
    fn pack_problem(&self, pack_id: &BlobId, end: u64) -> Option<String> {
        let path = self.pack_path(pack_id);
        let shard_is_dir = path
            .parent()
            .and_then(|shard| std::fs::symlink_metadata(shard).ok())
            .is_some_and(|meta| meta.is_dir());
        let meta = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|_| shard_is_dir);
        match meta {
            None => Some(format!("pack {pack_id} is missing")),
            Some(meta) if !meta.is_file() => Some(format!("pack {pack_id} is not a regular file")),
            Some(meta) if meta.len() < end => Some(format!(
                "pack {pack_id} is {} bytes, shorter than the {end} its index entries need",
                meta.len()
            )),
            Some(_) => None,
        }
    }

    /// Reads, decodes and re-hashes every needed blob in the `chosen` packs.
    fn read_subset(&self, reading: &Reading<'_>, chosen: &[BlobId], report: &mut CheckReport) {
        let Reading {
            packs,
            needs,
            dictionaries,
            progress,
        } = *reading;
        let to_read: Vec<(&BlobId, &Need)> = needs
            .iter()
            .filter(|(blob_id, _)| {
                packs
                    .blobs
                    .get(*blob_id)
                    .is_some_and(|location| chosen.binary_search(&location.pack).is_ok())
            })
            .collect();
        let total = to_read.len() as u64;
        report.packs_read = chosen.len() as u64;
        progress(Progress::new(Stage::Verify, 0, total));
        let mut reader = PackReader::default();
        for (blob_id, need) in to_read {
            let problem = match load_blob(
                self,
                &mut reader,
                packs,
                blob_id,
                need.largest,
                dictionaries,
            ) {
                Ok((stored, raw_len)) => {
                    report.bytes_read += stored.len() as u64;
                    check_size(blob_id, raw_len, need.smallest)
                        .and_then(|()| check_size(blob_id, raw_len, need.largest))
                        .err()
                }
                Err(BlobError::Missing) => Some(format!("blob {blob_id} is missing")),
                Err(BlobError::Damaged(detail)) => Some(detail),
                Err(BlobError::Unreadable(error)) => {
                    Some(format!("blob {blob_id} cannot be read: {error}"))
                }
            };
            if let Some(detail) = problem {
                report.damage.push(need.damage(blob_id, detail));
            }
            report.blobs_read += 1;
            if report.blobs_read.is_multiple_of(PROGRESS_EVERY) {
                progress(Progress::new(Stage::Verify, report.blobs_read, total));
            }
        }
        progress(Progress::new(Stage::Verify, total, total));
    }
}

/// What reading a subset of the packs reads from.
struct Reading<'a> {
    packs: &'a Packs,
    needs: &'a BTreeMap<BlobId, Need>,
    dictionaries: &'a HashMap<u32, Arc<Dictionary>>,
    progress: &'a ProgressFn,
}

impl Need {
    /// A damage report for blob `blob_id`, naming the first record needing it.
    fn damage(&self, blob_id: &BlobId, detail: String) -> Damage {
        let mut damage = damage(&self.backup, Some(blob_id), detail);
        damage.collection = Some(self.collection.clone());
        damage.key = Some(self.key.clone());
        damage.records_affected = self.records;
        damage
    }
}

fn damage(id: &BackupId, blob_id: Option<&BlobId>, detail: String) -> Damage {
    Damage {
        backup_id: id.clone(),
        blob_id: blob_id.map(BlobId::to_hex),
        collection: None,
        key: None,
        records_affected: 0,
        detail,
    }
}

/// A random `percent` of `packs` (at least one when there are any), sorted: the packs in the
/// order of a hash keyed at random for this call, the first ones taken.
fn choose(packs: Vec<BlobId>, percent: u8) -> Vec<BlobId> {
    let count = (packs.len() * usize::from(percent)).div_ceil(100);
    let keyed = std::hash::RandomState::new();
    let mut shuffled: Vec<(u64, BlobId)> = packs
        .into_iter()
        .map(|pack| (keyed.hash_one(pack), pack))
        .collect();
    shuffled.sort();
    let mut chosen: Vec<BlobId> = shuffled
        .into_iter()
        .take(count)
        .map(|(_, pack)| pack)
        .collect();
    chosen.sort();
    chosen
}
