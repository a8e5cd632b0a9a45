//! The reference-count changes of one write transaction: net deltas per blob, applied together
//! in blob-id order (rules 1 and 2 of `crate::blob`) by one call of the schema's
//! `strongbox_change_refs` function.
//!
//! A reference is added with an `INSERT ... ON CONFLICT DO UPDATE` of the count, which locks
//! the blob row; a release decrements under the same lock. Every transaction locks its blobs
//! in id order, so two sharing popular values queue instead of deadlocking. A blob left at
//! zero stays, as on SQLite, until maintenance's orphan sweep deletes it, and only once no
//! change of the feed names it: a put's value stays readable while its change is held (finding
//! out here would cost every write a look through the feed). A writer adding a reference to a
//! blob the sweep is deleting waits for that commit and then inserts the blob afresh (it has
//! the bytes), or makes the sweep fail, so a blob is never freed under a reference.

use std::collections::BTreeMap;

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::convert::{Column, to_i64};
use super::write::{Failure, classify};
use crate::blob::{BlobId, EncodedBlob};

/// Applies net deltas in blob-id order; returns each added blob's count after.
pub(super) const CHANGE_REFS: &str =
    "SELECT blob_id, refcount_after FROM strongbox_change_refs($1, $2, $3, $4)";

/// Which write added a reference: its request in the group and its position in the request.
pub(super) type Tag = (usize, usize);

/// The net change of one blob: the delta, the bytes to insert it with, and the writes that
/// added it, in order.
type Delta<'a> = (i64, Option<&'a EncodedBlob>, Vec<Tag>);

/// The reference-count changes of one request or group, applied by [`RefChanges::apply`].
#[derive(Default)]
pub(super) struct RefChanges<'a> {
    deltas: BTreeMap<BlobId, Delta<'a>>,
}

/// The statement's parameters: ids, bytes (empty for a release), raw sizes, deltas.
pub(super) type Columns<'a> = (Vec<&'a [u8]>, Vec<&'a [u8]>, Vec<i64>, Vec<i64>);

impl<'a> RefChanges<'a> {
    /// One more reference to `blob`, added by the write `tag`.
    pub fn add(&mut self, blob: &'a EncodedBlob, tag: Tag) {
        let entry = self.deltas.entry(blob.id).or_insert((0, None, Vec::new()));
        entry.0 += 1;
        entry.1 = Some(blob);
        entry.2.push(tag);
    }

    /// One reference less to `blob_id`.
    pub fn release(&mut self, blob_id: BlobId) {
        self.deltas
            .entry(blob_id)
            .or_insert((0, None, Vec::new()))
            .0 -= 1;
    }

    /// Adds another request's changes after these.
    pub fn merge(&mut self, other: RefChanges<'a>) {
        for (blob_id, (delta, blob, tags)) in other.deltas {
            let entry = self.deltas.entry(blob_id).or_insert((0, None, Vec::new()));
            entry.0 += delta;
            entry.1 = entry.1.or(blob);
            entry.2.extend(tags);
        }
    }

    /// The statement's parameters, or `None` when no count changes. A net increase always
    /// has bytes (`add` records them); one without (which nothing makes) is left out.
    pub fn columns(&self) -> Option<Columns<'_>> {
        let mut columns: Columns<'_> = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (blob_id, (delta, blob, _)) in &self.deltas {
            let data = match (*delta, blob) {
                (0, _) | (1.., None) => continue,
                (1.., Some(blob)) => blob.stored.as_slice(),
                (..0, _) => &[],
            };
            columns.0.push(blob_id.as_bytes().as_slice());
            columns.1.push(data);
            columns.2.push(blob.map_or(0, |blob| to_i64(blob.raw_len)));
            columns.3.push(*delta);
        }
        (!columns.0.is_empty()).then_some(columns)
    }

    /// The writes whose value already existed (deduplicated), from the counts the statement
    /// returned: every adder when the blob was there before, every one but the first when
    /// the group stored it, and every adder of a blob whose count did not change (another
    /// write of the group released it).
    pub fn deduplicated(&self, rows: &[Row]) -> Result<Vec<Tag>, Failure> {
        let mut after = BTreeMap::new();
        for row in rows {
            if let Some(blob_id) = BlobId::from_slice(row.column(0)?) {
                after.insert(blob_id, row.column::<i64>(1)?);
            }
        }
        let mut deduplicated = Vec::new();
        for (blob_id, (delta, _, tags)) in &self.deltas {
            let existed = match after.get(blob_id) {
                Some(count) => count > delta,
                None => *delta == 0,
            };
            let skip = usize::from(!existed);
            deduplicated.extend(tags.iter().skip(skip).copied());
        }
        Ok(deduplicated)
    }

    /// Applies the changes alone (the expiry sweep); returns the deduplicated writes.
    pub async fn apply(self, tx: &Transaction<'_>) -> Result<Vec<Tag>, Failure> {
        let Some((ids, datas, sizes, deltas)) = self.columns() else {
            return Ok(Vec::new());
        };
        let statement = tx
            .prepare_cached(CHANGE_REFS)
            .await
            .map_err(classify("prepare changing reference counts"))?;
        let rows = tx
            .query(&statement, &[&ids, &datas, &sizes, &deltas])
            .await
            .map_err(classify("change reference counts"))?;
        self.deduplicated(&rows)
    }
}
