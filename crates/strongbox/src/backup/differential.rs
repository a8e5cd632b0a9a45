//! Differential manifests: a backup that names a `base` (a whole backup of the same store)
//! holds only the records that changed since it: its own lines add or replace records and
//! remove keys, in key order, and its records are the base's merged with them. A backup after
//! a small change then costs its changed records, not a list of every chunk of the store.
//!
//! [`Merge`] is the reading side, inside [`ManifestReader`]; [`choose_base`] decides, before a
//! backup is written, whether it is differential and on which base; `ManifestWriter` writes
//! the lines by comparing each record with the base's ([`BaseCursor`]).
//!
//! **Invariants:** a base is always a whole manifest (a chain is one link long, so a damaged
//! backup damages at most the differentials built on it); a differential's own lines are
//! checked like any manifest's (names, order, checksum, their count in the end line) and its
//! end line's totals are checked against the merged records; a removal of a key the base
//! does not hold is damage. Prune keeps the base of every backup it keeps.

use std::cmp::Ordering;

use super::id::BackupId;
use super::manifest::{Entry, Header, Source, manifest_corrupt, read_summary};
use super::reader::{ManifestReader, Own};
use super::repository::Repository;
use crate::backend::SnapshotRecord;
use crate::blob::BlobId;
use crate::error::Result;

/// A whole backup is taken instead of a differential one once the newest differential's
/// own lines are more than this share of its records (1/8): differentials hold every change
/// since their base, so they grow until a new whole backup resets them.
const MAX_CHANGED_SHARE: u64 = 8;

/// A differential manifest's base, as its reader merges it.
pub(crate) struct Merge {
    base: ManifestReader,
    base_next: Option<Entry>,
    own_next: Option<Own>,
    is_own_done: bool,
}

impl Merge {
    /// Opens the base `base` of the differential manifest of backup `id`.
    ///
    /// # Errors
    /// `Error::Corrupt` naming backup `id` when the base is not a backup id, cannot be read,
    /// or is itself differential.
    pub(super) fn open(repository: &Repository, id: &BackupId, base: &str) -> Result<Self> {
        let corrupt = |what: String| manifest_corrupt(id, what);
        let base_id = BackupId::parse(base)
            .map_err(|_| corrupt(format!("its base {base:?} is not a backup id")))?;
        let base = ManifestReader::open_own(repository, &base_id).map_err(|error| {
            corrupt(format!("its base backup {base_id} cannot be used: {error}"))
        })?;
        if base.header().base.is_some() {
            return Err(corrupt(format!(
                "its base backup {base_id} is itself differential"
            )));
        }
        Ok(Merge {
            base,
            base_next: None,
            own_next: None,
            is_own_done: false,
        })
    }

    /// The chunks of the base read so far.
    pub(super) fn base_chunk_ids(&self) -> Vec<BlobId> {
        self.base.chunk_ids()
    }

    /// Reads the base's next record into `base_next`, unless it holds one.
    fn fill_base(&mut self, id: &BackupId) -> Result<()> {
        if self.base_next.is_none() {
            self.base_next = self.base.next_entry().map_err(|error| {
                manifest_corrupt(
                    id,
                    format!("its base backup {} cannot be used: {error}", self.base.id),
                )
            })?;
        }
        Ok(())
    }
}

impl ManifestReader {
    /// The next record of a differential manifest: its own lines merged with its base's
    /// records, in key order.
    pub(super) fn next_merged(&mut self) -> Result<Option<Entry>> {
        let Some(mut merge) = self.merge.take() else {
            return Ok(None);
        };
        let next = self.merge_step(&mut merge);
        self.merge = Some(merge);
        next
    }

    fn merge_step(&mut self, merge: &mut Merge) -> Result<Option<Entry>> {
        loop {
            if merge.own_next.is_none() && !merge.is_own_done {
                merge.own_next = self.next_own()?;
                merge.is_own_done = merge.own_next.is_none();
            }
            merge.fill_base(&self.id)?;
            let order = match (&merge.own_next, &merge.base_next) {
                (None, None) => return Ok(None),
                (None, Some(_)) => Ordering::Greater,
                (Some(own), None) => {
                    if let Own::Removed(collection, key) = own {
                        return Err(removes_nothing(self, collection, key));
                    }
                    Ordering::Less
                }
                (Some(own), Some(base)) => own_name(own).cmp(&name(&base.collection, &base.key)),
            };
            if order.is_ge() {
                let base = merge.base_next.take();
                if order.is_gt() {
                    return Ok(base);
                }
            }
            match merge.own_next.take() {
                Some(Own::Put(entry)) => return Ok(Some(entry)),
                Some(Own::Removed(collection, key)) if order.is_lt() => {
                    return Err(removes_nothing(self, &collection, &key));
                }
                _ => {}
            }
        }
    }
}

/// The error for a removal of a key the base does not hold.
fn removes_nothing(reader: &ManifestReader, collection: &str, key: &str) -> crate::error::Error {
    reader.corrupt(format!(
        "it removes {collection}/{key}, which its base does not hold"
    ))
}

/// A name as the manifests order it: by bytes, collection first.
fn name<'a>(collection: &'a str, key: &'a str) -> (&'a [u8], &'a [u8]) {
    (collection.as_bytes(), key.as_bytes())
}

fn own_name(own: &Own) -> (&[u8], &[u8]) {
    match own {
        Own::Put(entry) => name(&entry.collection, &entry.key),
        Own::Removed(collection, key) => name(collection, key),
    }
}

/// Whether a new backup of `source` is differential, and on which base: the newest backup
/// of the same store (by creation time: ids of one second do not sort by it), if whole; the
/// base of the newest, if it is a differential holding at most an eighth of its records as
/// changes. `None` (a whole backup) otherwise, and when the newest or its base cannot be read
/// whole (a damaged backup is never built on). The caller holds the lock.
pub(super) fn choose_base(repository: &Repository, source: &Source) -> Option<BackupId> {
    let mut newest: Option<(i64, BackupId)> = None;
    // Ids sort by their creation second: once a backup of this store is found, only those of
    // the same second or the one before can be newer.
    for id in repository.manifest_ids().ok()?.into_iter().rev() {
        if newest
            .as_ref()
            .is_some_and(|(at_ms, _)| id.time_ms() < at_ms - 2_000)
        {
            break;
        }
        let Ok(reader) = ManifestReader::open_own(repository, &id) else {
            continue;
        };
        let header = reader.header();
        let candidate = (header.created_at_ms, id.clone());
        if &header.source == source && newest.as_ref().is_none_or(|best| candidate > *best) {
            newest = Some(candidate);
        }
    }
    let (_, newest) = newest?;
    let (header, lines, records) = own_summary(repository, &newest).ok()?;
    let base = match header.base {
        None => newest,
        Some(_) if lines.saturating_mul(MAX_CHANGED_SHARE) > records => return None,
        Some(base) => BackupId::parse(&base).ok()?,
    };
    let summary = read_summary(repository, &base).ok()?;
    summary.header.base.is_none().then_some(base)
}

/// A manifest's header, own lines and records, read without its base.
fn own_summary(repository: &Repository, id: &BackupId) -> Result<(Header, u64, u64)> {
    let mut reader = ManifestReader::open_own(repository, id)?;
    while reader.next_own()?.is_some() {}
    let records = reader.end.as_ref().map_or(0, |end| end.records);
    Ok((reader.header().clone(), reader.own_lines, records))
}

/// A base's records as a backup writer walks them beside the snapshot's, in key order.
pub(crate) struct BaseCursor {
    reader: ManifestReader,
    next: Option<Entry>,
}

impl BaseCursor {
    /// Opens the base's manifest.
    ///
    /// # Errors
    /// As [`ManifestReader::open`].
    pub(super) fn open(repository: &Repository, base: &BackupId) -> Result<Self> {
        Ok(BaseCursor {
            reader: ManifestReader::open(repository, base)?,
            next: None,
        })
    }

    /// Takes the base's records before `record` (they are removed) and says whether the
    /// base holds `record` unchanged (the differential then needs no line for it).
    ///
    /// # Errors
    /// `Error::Corrupt` when the base turns out damaged.
    pub(super) fn advance_to(
        &mut self,
        record: &SnapshotRecord,
        mut removed: impl FnMut(&Entry) -> Result<()>,
    ) -> Result<bool> {
        let wanted = name(&record.collection, &record.key);
        loop {
            if self.next.is_none() {
                self.next = self.reader.next_entry()?;
            }
            let Some(base) = &self.next else {
                return Ok(false);
            };
            match name(&base.collection, &base.key).cmp(&wanted) {
                Ordering::Less => {
                    removed(base)?;
                    self.next = None;
                }
                Ordering::Equal => {
                    let is_same = base.blob_id == record.blob_id
                        && base.format == record.format
                        && base.meta == record.meta;
                    self.next = None;
                    return Ok(is_same);
                }
                Ordering::Greater => return Ok(false),
            }
        }
    }

    /// Takes the base's records left after the snapshot's last (they are removed).
    ///
    /// # Errors
    /// `Error::Corrupt` when the base turns out damaged.
    pub(super) fn finish(mut self, mut removed: impl FnMut(&Entry) -> Result<()>) -> Result<()> {
        if let Some(base) = self.next.take() {
            removed(&base)?;
        }
        while let Some(base) = self.reader.next_entry()? {
            removed(&base)?;
        }
        Ok(())
    }
}
