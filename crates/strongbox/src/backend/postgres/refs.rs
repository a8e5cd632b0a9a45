//! The reference-count changes of one write request: net deltas per blob, applied together in
//! blob-id order (rules 1 and 2 of `crate::blob`).
//!
//! A reference is added with an `INSERT ... ON CONFLICT DO UPDATE` of the count, which locks
//! the blob row; a release decrements under the same lock. A blob left at zero stays, as on
//! SQLite, until maintenance's orphan sweep deletes it, and only once no change of the feed
//! names it: a put's value stays readable while its change is held (finding out here would
//! cost every write a look through the feed). A writer adding a reference to a blob the sweep
//! is deleting waits for that commit and then inserts the blob afresh (it has the bytes), or
//! makes the sweep fail, so a blob is never freed under a reference.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use deadpool_postgres::Transaction;

use super::convert::{Column, to_i64};
use super::write::{Failure, classify};
use crate::blob::{BlobId, EncodedBlob};

/// Adds references, inserting the blob when it is new; returns the count after.
const ADD_REFS: &str = "
    INSERT INTO strongbox_blobs (id, data, raw_size, refcount) VALUES ($1, $2, $3, $4)
    ON CONFLICT (id) DO UPDATE SET refcount = strongbox_blobs.refcount + excluded.refcount
    RETURNING refcount";

/// Releases references (`$2` is negative).
const RELEASE_REFS: &str = "UPDATE strongbox_blobs SET refcount = refcount + $2 WHERE id = $1";

/// The net change of one blob: the delta, the bytes to insert it with, and the outcomes (by
/// index) whose writes added it.
type Delta<'a> = (i64, Option<&'a EncodedBlob>, Vec<usize>);

/// The reference-count changes of one request, applied by [`RefChanges::apply`].
#[derive(Default)]
pub(super) struct RefChanges<'a> {
    deltas: BTreeMap<BlobId, Delta<'a>>,
}

impl<'a> RefChanges<'a> {
    /// One more reference to `blob`, added by the write whose outcome is at `outcome`.
    pub fn add(&mut self, blob: &'a EncodedBlob, outcome: usize) {
        let entry = self.deltas.entry(blob.id).or_insert((0, None, Vec::new()));
        entry.0 += 1;
        entry.1 = Some(blob);
        entry.2.push(outcome);
    }

    /// One reference less to `blob_id`.
    pub fn release(&mut self, blob_id: BlobId) {
        self.deltas
            .entry(blob_id)
            .or_insert((0, None, Vec::new()))
            .0 -= 1;
    }

    /// Applies the changes, in blob-id order (two requests touching the same values queue
    /// behind each other instead of deadlocking); returns the outcomes whose value already
    /// existed (deduplicated).
    pub async fn apply(self, tx: &Transaction<'_>) -> Result<Vec<usize>, Failure> {
        let mut deduplicated = Vec::new();
        for (blob_id, (delta, blob, outcomes)) in self.deltas {
            let id = blob_id.as_bytes().as_slice();
            match (delta.cmp(&0), blob) {
                (Ordering::Greater, Some(blob)) => {
                    let statement = tx
                        .prepare_cached(ADD_REFS)
                        .await
                        .map_err(classify("prepare a blob write"))?;
                    let refcount: i64 = tx
                        .query_one(
                            &statement,
                            &[&id, &blob.stored, &to_i64(blob.raw_len), &delta],
                        )
                        .await
                        .map_err(classify("add a blob reference"))?
                        .column(0)?;
                    if refcount > delta {
                        deduplicated.extend(outcomes);
                    }
                }
                (Ordering::Less, _) => release(tx, id, delta).await?,
                // No net change (added and released in the same request), or an increase
                // without bytes, which `add` never records.
                _ => {}
            }
        }
        Ok(deduplicated)
    }
}

/// Releases `-delta` references to a blob; one left at zero waits for the orphan sweep.
async fn release(tx: &Transaction<'_>, id: &[u8], delta: i64) -> Result<(), Failure> {
    let statement = tx
        .prepare_cached(RELEASE_REFS)
        .await
        .map_err(classify("prepare a blob release"))?;
    tx.execute(&statement, &[&id, &delta])
        .await
        .map_err(classify("release a blob reference"))?;
    Ok(())
}
