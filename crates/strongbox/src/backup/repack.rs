//! Prune's sweep of the packs: drop what no remaining backup needs from the index, delete packs
//! that hold nothing needed, and repack those that became mostly garbage.
//!
//! **Invariant (crash safety):** the steps run in an order where a crash between any two leaves
//! every remaining backup whole: (1) live entries of mostly-garbage packs are copied into new
//! packs, synced and renamed into place; (2) one new index naming every live entry (in the old
//! packs kept and in the new ones) is written durably; (3) the old index files are deleted;
//! (4) the packs no longer named are deleted. Before (2) the new packs are unnamed garbage;
//! between (2) and (3) two indexes name some entries, which readers accept (any copy will do);
//! after (3) the old packs are unnamed garbage, which the next prune deletes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;

use super::files::{create_dir, io_error, sync_dir};
use super::index::{EntryKind, PackRecord, Packs, write_index};
use super::pack::{Location, PackReader, PackWriter};
use super::repository::Repository;
use super::retention::PruneReport;
use crate::blob::BlobId;
use crate::error::{Error, Result};

/// A live entry: what it is, its id, where it is.
type Live = (EntryKind, BlobId, Location);

/// What the entries needed are: blob ids and manifest chunk ids.
pub(crate) struct Needed<'a> {
    /// Blobs the remaining backups need.
    pub(crate) blobs: &'a HashSet<BlobId>,
    /// Manifest chunks the remaining backups need.
    pub(crate) chunks: &'a HashSet<BlobId>,
}

impl Repository {
    /// Drops unneeded entries from the index, deletes packs holding nothing needed and those no
    /// index names, and repacks packs less than half live, in the order the module documents.
    /// Does nothing (and says why in the report) while an index file is damaged.
    pub(crate) fn sweep_packs(&self, needed: &Needed<'_>, report: &mut PruneReport) -> Result<()> {
        let packs = Packs::load(self)?;
        if let Some(first) = packs.damaged.first() {
            report.sweep_skipped = Some(format!(
                "an index of the repository cannot be read ({first}), so what the packs hold \
                 is unknown"
            ));
            return Ok(());
        }
        let (live, dropped) = live_entries(&packs, needed, report);
        let mut on_disk: BTreeMap<BlobId, (PathBuf, u64)> = BTreeMap::new();
        self.for_each_pack(|pack_id, path| {
            let size = std::fs::symlink_metadata(&path).map_or(0, |meta| meta.len());
            on_disk.insert(pack_id, (path, size));
            Ok(())
        })?;
        let unindexed = on_disk
            .keys()
            .filter(|id| !packs.packs.contains_key(id))
            .count();
        let is_mostly_garbage = |pack_id: &BlobId, entries: &[Live]| {
            let live_bytes: u64 = entries.iter().map(|entry| entry.2.length).sum();
            let size = on_disk.get(pack_id).map_or(0, |(_, size)| *size);
            live_bytes.saturating_mul(2) < size
        };
        let needs_repack = live
            .iter()
            .any(|(id, entries)| is_mostly_garbage(id, entries));
        if dropped == 0 && unindexed == 0 && !needs_repack && packs.index_files.len() <= 1 {
            return Ok(());
        }
        // (1) Copy the live entries of mostly-garbage packs into new packs.
        let tmp = self.tmp_dir().join("repack");
        create_dir(&tmp)?;
        let mut data = PackWriter::new(self, &tmp, "data");
        let mut tree = PackWriter::new(self, &tmp, "tree");
        let mut records = Vec::new();
        let mut doomed: Vec<(PathBuf, u64)> = Vec::new();
        let mut reader = PackReader::default();
        for (pack_id, entries) in &live {
            if on_disk.contains_key(pack_id) && is_mostly_garbage(pack_id, entries) {
                for (kind, id, location) in entries {
                    let bytes = reader
                        .read(self, location, location.length)
                        .map_err(|error| {
                            Error::backend(
                                "repack a pack",
                                format!("entry {id} of pack {pack_id} cannot be read: {error}"),
                            )
                        })?;
                    let writer = match kind {
                        EntryKind::Blob => &mut data,
                        EntryKind::Chunk => &mut tree,
                    };
                    writer.add(*kind, *id, &bytes)?;
                }
                report.packs_repacked += 1;
            } else {
                // Kept as it is (a missing pack stays named, so verify names what is lost).
                let mut record = PackRecord {
                    id: pack_id.to_hex(),
                    ..PackRecord::default()
                };
                for (kind, id, location) in entries {
                    record.push(*kind, *id, location.offset, location.length);
                }
                records.push(record);
            }
        }
        let mut written = data.finish()?;
        written.extend(tree.finish()?);
        let new_packs: HashSet<String> = written.iter().map(|record| record.id.clone()).collect();
        let new_bytes: u64 = written
            .iter()
            .flat_map(|record| record.blobs.iter().chain(&record.chunks))
            .map(|entry| entry.2)
            .sum();
        records.extend(written);
        let kept: HashSet<String> = records.iter().map(|record| record.id.clone()).collect();
        for (pack_id, (path, size)) in &on_disk {
            let hex = pack_id.to_hex();
            if !kept.contains(&hex) && !new_packs.contains(&hex) {
                doomed.push((path.clone(), *size));
            }
        }
        // (2) One index naming every live entry; (3) the old indexes go; (4) then the packs
        // nothing names.
        let new_index = write_index(self, records)?.map(|(id, _)| id);
        self.delete_old_indexes(&packs, new_index)?;
        let freed = self.delete_packs(doomed, report)?;
        report.pack_bytes_freed = freed.saturating_sub(new_bytes);
        if let Err(error) = std::fs::remove_dir_all(&tmp) {
            tracing::warn!(%error, dir = %tmp.display(), "could not remove a repack's temporary directory");
        }
        Ok(())
    }

    /// Deletes the index files `packs` was read from, but `kept`, and syncs `index/`.
    fn delete_old_indexes(&self, packs: &Packs, kept: Option<BlobId>) -> Result<()> {
        let index_dir = self.index_dir();
        for old in &packs.index_files {
            if Some(*old) != kept {
                let path = index_dir.join(old.to_hex());
                std::fs::remove_file(&path)
                    .map_err(io_error(format!("delete {}", path.display())))?;
            }
        }
        sync_dir(&index_dir)
    }

    /// Deletes packs (path and size) and syncs their shards; returns the bytes freed.
    fn delete_packs(&self, doomed: Vec<(PathBuf, u64)>, report: &mut PruneReport) -> Result<u64> {
        let mut shards = BTreeSet::new();
        let mut freed = 0u64;
        for (path, size) in doomed {
            std::fs::remove_file(&path).map_err(io_error(format!("delete {}", path.display())))?;
            report.packs_removed += 1;
            freed += size;
            if let Some(shard) = path.parent() {
                shards.insert(shard.to_owned());
            }
        }
        for shard in shards {
            sync_dir(&shard)?;
        }
        Ok(freed)
    }
}

/// The live entries of each pack, and how many entries are dropped (counted in `report`).
fn live_entries(
    packs: &Packs,
    needed: &Needed<'_>,
    report: &mut PruneReport,
) -> (BTreeMap<BlobId, Vec<Live>>, u64) {
    let mut live: BTreeMap<BlobId, Vec<Live>> = BTreeMap::new();
    let mut dropped = 0;
    for (kind, entries, wanted) in [
        (EntryKind::Blob, &packs.blobs, needed.blobs),
        (EntryKind::Chunk, &packs.chunks, needed.chunks),
    ] {
        for (id, location) in entries {
            if wanted.contains(id) {
                live.entry(location.pack)
                    .or_default()
                    .push((kind, *id, *location));
            } else {
                dropped += 1;
                if kind == EntryKind::Blob {
                    report.blobs_removed += 1;
                    report.bytes_removed += location.length;
                }
            }
        }
    }
    report.blobs_kept = needed
        .blobs
        .iter()
        .filter(|id| packs.blobs.contains_key(id))
        .count() as u64;
    (live, dropped)
}
