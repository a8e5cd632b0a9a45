//! [`Repository::verify`]: prove backups restorable by re-reading everything they need.
//!
//! Every manifest is read through (its checksum and every record checked as a restore checks
//! them), then every blob the backups need is read, decoded and re-hashed once, however many
//! backups share it, with the checks a restore makes ([`super::check`]). Only when something
//! is damaged are the manifests read a second time, to name the records that need each bad
//! blob.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::check::{BlobError, check_size, load_blob};
use super::files::blocking;
use super::id::BackupId;
use super::index::Packs;
use super::manifest::ManifestReader;
use super::pack::PackReader;
use super::repository::{LockMode, Repository};
use super::{Progress, ProgressFn, Stage};
use crate::blob::BlobId;
use crate::codec::Dictionary;
use crate::error::Result;

/// Blobs between two progress reports.
const PROGRESS_EVERY: u64 = 256;

/// What is wrong with a blob some backup needs.
enum Bad {
    /// Missing, unreadable or damaged, whatever record needs it.
    Unusable(String),
    /// Sound, but its value is this many bytes, which some records do not claim.
    Size(u64),
}

/// The smallest and largest value size the records needing a blob claim.
type Claims = (u64, u64);

/// A damaged or missing piece of a repository, named.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// The backup that cannot be fully restored.
    pub backup_id: BackupId,
    /// The damaged or missing blob, when the damage is a blob (64 hex digits).
    pub blob_id: Option<String>,
    /// Collection of the first record of the backup needing that blob.
    pub collection: Option<String>,
    /// Key of that record.
    pub key: Option<String>,
    /// Records of the backup needing that blob.
    pub records_affected: u64,
    /// What is wrong.
    pub detail: String,
}

/// What [`Repository::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Backups whose manifests were read.
    pub backups_checked: u64,
    /// Unique blobs read, decoded and re-hashed.
    pub blobs_checked: u64,
    /// Their stored bytes.
    pub bytes_checked: u64,
    /// Everything found wrong; empty when every backup checked is restorable.
    pub damage: Vec<Damage>,
}

impl VerifyReport {
    /// Whether every backup checked can be restored.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }

    /// The backups that cannot be fully restored; the others can.
    pub fn damaged_backups(&self) -> BTreeSet<BackupId> {
        self.damage
            .iter()
            .map(|damage| damage.backup_id.clone())
            .collect()
    }
}

impl Repository {
    /// Checks one backup (`Some(id)`) or all of them: each manifest's checksum and records, and
    /// every blob they need (a regular file, decodable, matching its hash and the size the
    /// records give), which is everything a restore checks. Each problem is reported by name:
    /// the backup, the blob, and the first record needing it. `progress` is called from a
    /// blocking thread as blobs are checked.
    ///
    /// # Errors
    /// `Error::Io` when the repository cannot be listed or `id` names no backup; what the
    /// checks find is in the report.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads (a dropped verify finishes its current file on its thread).
    pub async fn verify(
        &self,
        id: Option<&BackupId>,
        progress: impl Fn(Progress) + Send + Sync + 'static,
    ) -> Result<VerifyReport> {
        let repository = self.clone();
        let id = id.cloned();
        let progress: ProgressFn = std::sync::Arc::new(progress);
        blocking(move || {
            let _lock = repository.lock(LockMode::Shared)?;
            let ids = match id {
                Some(id) => {
                    // A missing backup is the caller's mistake, not damage.
                    std::fs::symlink_metadata(repository.manifest_path(&id)).map_err(
                        super::files::io_error(format!(
                            "find backup {id} in {} (see the list of backups)",
                            repository.dir().display()
                        )),
                    )?;
                    vec![id]
                }
                None => repository.manifest_ids()?,
            };
            repository.verify_blocking(&ids, &progress)
        })
        .await
    }

    /// Checks the backups `ids`; only listing failures are errors.
    pub(crate) fn verify_blocking(
        &self,
        ids: &[BackupId],
        progress: &ProgressFn,
    ) -> Result<VerifyReport> {
        let packs = Packs::load(self)?;
        let mut report = VerifyReport::default();
        let mut needed: BTreeMap<BlobId, Claims> = BTreeMap::new();
        let mut dictionaries = HashMap::new();
        let mut readable = Vec::new();
        for id in ids {
            report.backups_checked += 1;
            match self.blobs_of(id, &mut needed, &mut dictionaries) {
                Ok(()) => readable.push(id),
                Err(error) => report.damage.push(Damage {
                    backup_id: id.clone(),
                    blob_id: None,
                    collection: None,
                    key: None,
                    records_affected: 0,
                    detail: error.to_string(),
                }),
            }
        }
        let total = needed.len() as u64;
        progress(Progress::new(Stage::Verify, 0, total));
        // Sorted ids read the blob directories in order.
        let mut bad: BTreeMap<BlobId, Bad> = BTreeMap::new();
        let mut reader = PackReader::default();
        for (blob_id, &(smallest, largest)) in &needed {
            // Read no more than the largest value a record claims can be stored in.
            match load_blob(self, &mut reader, &packs, blob_id, largest, &dictionaries) {
                Ok((stored, raw_len)) => {
                    report.bytes_checked += stored.len() as u64;
                    if raw_len != smallest || raw_len != largest {
                        bad.insert(*blob_id, Bad::Size(raw_len));
                    }
                }
                Err(BlobError::Missing) => {
                    bad.insert(
                        *blob_id,
                        Bad::Unusable(format!(
                            "blob {blob_id} is missing (no index names it){}",
                            packs.missing_hint()
                        )),
                    );
                }
                Err(BlobError::Damaged(detail)) => {
                    bad.insert(*blob_id, Bad::Unusable(detail));
                }
                Err(BlobError::Unreadable(error)) => {
                    let detail = format!("blob {blob_id} cannot be read: {error}");
                    bad.insert(*blob_id, Bad::Unusable(detail));
                }
            }
            report.blobs_checked += 1;
            if report.blobs_checked.is_multiple_of(PROGRESS_EVERY) {
                progress(Progress::new(Stage::Verify, report.blobs_checked, total));
            }
        }
        progress(Progress::new(Stage::Verify, total, total));
        if !bad.is_empty() {
            for id in readable {
                self.name_damage(id, &bad, &mut report);
            }
        }
        Ok(report)
    }

    /// Adds the blobs backup `id` needs to `needed` with the sizes its records claim, and its
    /// dictionaries to `dictionaries` (a missing or damaged dictionary damages the backup).
    fn blobs_of(
        &self,
        id: &BackupId,
        needed: &mut BTreeMap<BlobId, Claims>,
        dictionaries: &mut HashMap<u32, Arc<Dictionary>>,
    ) -> Result<()> {
        let mut reader = ManifestReader::open(self, id)?;
        dictionaries.extend(self.read_dictionaries(id, &reader.header().dictionaries)?);
        // Counted in only once the whole manifest checked out.
        let mut claims: Vec<(BlobId, u64)> = Vec::new();
        while let Some(entry) = reader.next_entry()? {
            claims.push((entry.blob_id, entry.meta.size_bytes));
        }
        for (blob_id, size) in claims {
            let claimed = needed.entry(blob_id).or_insert((size, size));
            claimed.0 = claimed.0.min(size);
            claimed.1 = claimed.1.max(size);
        }
        Ok(())
    }

    /// Reports each bad blob backup `id` needs, with the first record needing it.
    fn name_damage(&self, id: &BackupId, bad: &BTreeMap<BlobId, Bad>, report: &mut VerifyReport) {
        // For each bad blob: the first record needing it, the records, and what is wrong.
        let mut found: BTreeMap<BlobId, (String, String, u64, String)> = BTreeMap::new();
        let mut reader = match ManifestReader::open(self, id) {
            Ok(reader) => reader,
            Err(error) => {
                report.damage.push(manifest_damage(id, error.to_string()));
                return;
            }
        };
        loop {
            match reader.next_entry() {
                Ok(Some(entry)) => {
                    let detail = match bad.get(&entry.blob_id) {
                        None => continue,
                        Some(Bad::Unusable(detail)) => detail.clone(),
                        Some(Bad::Size(raw_len)) => {
                            match check_size(&entry.blob_id, *raw_len, entry.meta.size_bytes) {
                                Ok(()) => continue,
                                Err(detail) => detail,
                            }
                        }
                    };
                    found
                        .entry(entry.blob_id)
                        .or_insert((entry.collection, entry.key, 0, detail))
                        .2 += 1;
                }
                Ok(None) => break,
                Err(error) => {
                    report.damage.push(manifest_damage(id, error.to_string()));
                    break;
                }
            }
        }
        for (blob_id, (collection, key, records, detail)) in found {
            report.damage.push(Damage {
                backup_id: id.clone(),
                blob_id: Some(blob_id.to_hex()),
                detail,
                collection: Some(collection),
                key: Some(key),
                records_affected: records,
            });
        }
    }
}

fn manifest_damage(id: &BackupId, detail: String) -> Damage {
    Damage {
        backup_id: id.clone(),
        blob_id: None,
        collection: None,
        key: None,
        records_affected: 0,
        detail,
    }
}
