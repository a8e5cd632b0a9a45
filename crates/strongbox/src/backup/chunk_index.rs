//! [`ChunkIndexCache`]: the chunk index a repository handle last loaded, kept for the next
//! manifest it reads.
//!
//! A backup, a follow step or a restore opens several manifests (the newest backup, its base,
//! the base the new backup is compared with), and each needs the index of manifest chunks;
//! reading every index file was most of opening one. So [`Packs::load_chunks`] (and
//! [`Packs::load`], which reads the same files) leave what they read here, shared by the
//! handle's clones.
//!
//! **Invariant:** a cached index is used only while `index/` lists exactly the files it was
//! read from, each with the length and modification time it had before it was read (its
//! [`Stamp`]), and none of them was damaged. Index files are named by the hash of their bytes,
//! so the same names hold the same entries; the length and time catch a file damaged in place,
//! which is then read again and reported as damaged. Every chunk read through the index is
//! still checked against its id.

use std::fs::FileType;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::index::Packs;
use crate::blob::BlobId;

/// What `index/` listed: each index file's name, length and modification time, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp(Vec<(BlobId, u64, Option<SystemTime>)>);

impl Stamp {
    /// The stamp of a listing of `index/` (entries that are not index files are left out:
    /// loading skips them too; one that cannot be read makes the load damaged, never cached).
    pub(crate) fn of(listing: &[(PathBuf, FileType)]) -> Self {
        let mut files: Vec<_> = listing
            .iter()
            .filter_map(|(path, _)| {
                let id = path.file_name()?.to_str().and_then(BlobId::from_hex)?;
                let meta = std::fs::symlink_metadata(path).ok();
                let length = meta.as_ref().map_or(0, std::fs::Metadata::len);
                Some((id, length, meta.and_then(|meta| meta.modified().ok())))
            })
            .collect();
        files.sort_unstable();
        Stamp(files)
    }
}

/// A chunk index with the [`Stamp`] of the files it was read from.
type Stamped = (Stamp, Arc<Packs>);

/// The chunk index a repository handle last loaded, with the [`Stamp`] of the files it was
/// read from; shared by the handle's clones.
#[derive(Debug, Default, Clone)]
pub(crate) struct ChunkIndexCache(Arc<Mutex<Option<Stamped>>>);

impl PartialEq for ChunkIndexCache {
    /// A cache says nothing about what a repository is: any two are equal.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ChunkIndexCache {}

impl ChunkIndexCache {
    /// The cached index, if it was read from the files `stamp` describes.
    pub(crate) fn get(&self, stamp: &Stamp) -> Option<Arc<Packs>> {
        let cached = self.0.lock().ok()?;
        let (cached_stamp, packs) = cached.as_ref()?;
        (cached_stamp == stamp).then(|| Arc::clone(packs))
    }

    /// Keeps `packs` (loaded without values' entries from the files `stamp` describes); forgets
    /// what it held when an index file was damaged, so that the next reader reads them again.
    pub(crate) fn put(&self, stamp: Stamp, packs: &Arc<Packs>) {
        if let Ok(mut cached) = self.0.lock() {
            *cached = packs.damaged.is_empty().then(|| (stamp, Arc::clone(packs)));
        }
    }
}
