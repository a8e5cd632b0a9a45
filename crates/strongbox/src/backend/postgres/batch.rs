//! One group of write requests in one PostgreSQL transaction: what [`super::group`] commits.
//!
//! The group costs four round trips whatever its size: `BEGIN`; one statement that locks the
//! rows of every key the group names (`FOR UPDATE`, in key order, so two groups on two servers
//! queue instead of deadlocking); one pipelined flight of set-based statements (the record
//! rows deleted, updated and inserted, the reference counts, the notifications, the feed's
//! changes, in that order); `COMMIT`.
//!
//! Between the lock and the flight, every request is planned in memory with
//! `backend::plan`, the rule both engines share, against the rows as the group's earlier
//! requests left them. A request whose plan fails (a conflict, a condition on a damaged
//! record) leaves no trace and fails alone, exactly as a request rolled back to its savepoint
//! does on SQLite; its neighbours still commit.
//!
//! **Invariant:** a range check reads the database, which holds none of the group's planned
//! writes; so a request with checks runs in a group of its own (see `group`), and its range
//! checks come before its writes (as `transact` builds them). A range check after a planned
//! write is refused rather than answered wrongly.

use std::collections::BTreeMap;

use deadpool_postgres::Transaction;

use super::convert::{Column, format, meta};
use super::feed::NewChanges;
use super::refs::RefChanges;
use super::rows::RowWrites;
use super::write::{Failure, classify, range_rows};
use crate::backend::plan::{Current, Plan, Reference, has_expired, plan};
use crate::backend::range::check_range;
use crate::backend::{WriteOp, WriteOutcome};
use crate::blob::BlobId;
use crate::change::ChangeKind;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::record::Version;

/// The rows of the keys named in `$1`/`$2` (collections and keys), locked in key order.
const LOCK_ROWS: &str = "
    SELECT r.collection, r.key, r.blob_id, r.format, r.version, r.created_at, r.updated_at,
           r.size, r.access_count, r.last_accessed, r.expires_at, r.seal
    FROM strongbox_records r
    JOIN unnest($1::text[], $2::text[]) AS k(collection, key)
      ON r.collection = k.collection AND r.key = k.key
    ORDER BY r.collection, r.key
    FOR UPDATE OF r";

/// The group's planner options, for its transaction only: nested loops over the primary
/// key's index, never a hash or merge join. Every set-based statement of a group joins an
/// `unnest` of the group's keys with a table; once a group names about a hundred keys, the
/// planner's costs prefer reading the whole table into a hash join, which at 15,000 records
/// made each such statement read every row (docs/benchmarks.md has the figures before and
/// after). At SERIALIZABLE a whole-table read also takes a predicate lock on the whole table.
/// Options only choose plans: results are the same whichever plan runs.
const PLANNER: &str = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// A record as PostgreSQL's writes handle it: the handle on its blob is the blob's id.
pub(super) type Row = Current<Option<BlobId>>;

/// A `(collection, key)` of the group.
type Key<'a> = (&'a str, &'a str);

/// What the store's settings say a write does besides its rows.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Tags this server's notifications.
    pub instance_id: u64,
    /// Whether written keys are announced with `pg_notify`.
    pub notifies: bool,
    /// Whether changes go to the change feed.
    pub is_change_feed_on: bool,
}

/// A key's record as the group sees it.
#[derive(Debug)]
struct Slot {
    /// Whether a row existed when the group locked the keys.
    existed: bool,
    /// The record after the requests planned so far (`None`: absent).
    now: Option<Row>,
    /// Whether a planned request changed it.
    written: bool,
}

/// The group's state: every key it names, with its record.
#[derive(Debug, Default)]
struct Slots<'a> {
    slots: BTreeMap<Key<'a>, Slot>,
    /// Whether any request's writes were planned (a later range check would not see them).
    dirty: bool,
}

/// What one request adds to its group, once planned whole.
struct Effects<'a> {
    /// The records it leaves, by key (a later operation on the same key overrides).
    rows: BTreeMap<Key<'a>, Option<Row>>,
    refs: RefChanges<'a>,
    changes: Vec<(Key<'a>, ChangeKind, Version, Option<BlobId>)>,
    announced: Vec<Key<'a>>,
    outcomes: Vec<WriteOutcome>,
}

/// Applies a group of requests in `tx` (not committed): the outcome of each request, in order,
/// and whether anything was written (a group whose every request failed, or only checked,
/// wrote nothing: it need not commit, nor flush); or the failure that ends the whole
/// transaction (a race to retry, or a real error).
pub(super) async fn apply(
    tx: &Transaction<'_>,
    requests: &[&[WriteOp]],
    settings: Settings,
) -> Result<(Vec<Result<Vec<WriteOutcome>>>, bool), Failure> {
    let now = now_ms();
    // Sent ahead of the lock in one flight (a request is sent when its future is first
    // polled, and `join` polls in order), so the options cost no round trip of their own.
    let (planner, locked) =
        futures_util::future::join(tx.batch_execute(PLANNER), lock(tx, requests)).await;
    planner.map_err(classify("set the planner options of a write transaction"))?;
    let mut slots = locked?;
    let mut refs = RefChanges::default();
    let mut changes = NewChanges::new(settings.is_change_feed_on);
    let mut announced = Vec::new();
    let mut results: Vec<Option<Result<Vec<WriteOutcome>>>> =
        requests.iter().map(|_| None).collect();
    for (index, (ops, result)) in requests.iter().zip(results.iter_mut()).enumerate() {
        match plan_request(tx, &slots, index, ops, now).await? {
            Err(error) => *result = Some(Err(error)),
            Ok(effects) => {
                for (key, row) in effects.rows {
                    if let Some(slot) = slots.slots.get_mut(&key) {
                        slot.now = row;
                        slot.written = true;
                        slots.dirty = true;
                    }
                }
                refs.merge(effects.refs);
                for (key, kind, version, blob_id) in effects.changes {
                    changes.push(key, kind, version, blob_id.as_ref());
                }
                announced.extend(effects.announced);
                *result = Some(Ok(effects.outcomes));
            }
        }
    }
    let wrote = slots.slots.values().any(|slot| slot.written);
    let mut rows = RowWrites::default();
    for (key, slot) in &slots.slots {
        if slot.written {
            rows.push(*key, slot.existed, slot.now.as_ref());
        }
    }
    let deduplicated = rows
        .execute(tx, refs, &announced, settings, changes, now)
        .await?;
    let mut results: Vec<Result<Vec<WriteOutcome>>> = results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| Err(Error::backend("write", "a request was not planned")))
        })
        .collect();
    for (request, op) in deduplicated {
        if let Some(Ok(outcomes)) = results.get_mut(request)
            && let Some(WriteOutcome::Stored { deduplicated, .. }) = outcomes.get_mut(op)
        {
            *deduplicated = true;
        }
    }
    Ok((results, wrote))
}

/// Locks the rows of every key the group names, and returns them as the group's state.
async fn lock<'a>(tx: &Transaction<'_>, requests: &[&'a [WriteOp]]) -> Result<Slots<'a>, Failure> {
    let mut slots = Slots::default();
    for op in requests.iter().flat_map(|ops| ops.iter()) {
        if !matches!(op, WriteOp::CheckRange { .. }) {
            slots.slots.entry(op.target()).or_insert(Slot {
                existed: false,
                now: None,
                written: false,
            });
        }
    }
    if slots.slots.is_empty() {
        return Ok(slots);
    }
    let (collections, keys): (Vec<&str>, Vec<&str>) = slots.slots.keys().copied().unzip();
    let statement = tx
        .prepare_cached(LOCK_ROWS)
        .await
        .map_err(classify("prepare locking the records"))?;
    let found = tx
        .query(&statement, &[&collections, &keys])
        .await
        .map_err(classify("lock the records written"))?;
    let mut rows = BTreeMap::new();
    for row in &found {
        let (collection, key): (String, String) = (row.column(0)?, row.column(1)?);
        let blob_id = BlobId::from_slice(row.column(2)?);
        let current = Current {
            blob_id,
            blob_ref: blob_id,
            format: format(row, 3)?,
            meta: meta(row, 4)?,
            seal: row.column(11)?,
        };
        rows.insert((collection, key), current);
    }
    for ((collection, key), slot) in &mut slots.slots {
        if let Some(current) = rows.remove(&((*collection).to_owned(), (*key).to_owned())) {
            slot.existed = true;
            slot.now = Some(current);
        }
    }
    Ok(slots)
}

/// Plans one request against the group's state: its effects, or the error that fails it
/// alone (`Ok(Err)`); `Err` is a failure of the whole transaction.
async fn plan_request<'a>(
    tx: &Transaction<'_>,
    slots: &Slots<'a>,
    request: usize,
    ops: &'a [WriteOp],
    now: i64,
) -> Result<Result<Effects<'a>>, Failure> {
    let mut effects = Effects {
        rows: BTreeMap::new(),
        refs: RefChanges::default(),
        changes: Vec::new(),
        announced: Vec::new(),
        outcomes: Vec::with_capacity(ops.len()),
    };
    for (index, op) in ops.iter().enumerate() {
        if let WriteOp::CheckRange {
            collection,
            range,
            seen,
        } = op
        {
            if slots.dirty || !effects.rows.is_empty() {
                return Ok(Err(Error::backend(
                    "check a scanned range",
                    "a range check came after writes in the same group",
                )));
            }
            let found = range_rows(tx, collection, range, now).await?;
            if let Err(error) = check_range(collection, range.reverse, seen, &found) {
                return Ok(Err(error));
            }
            effects.outcomes.push(WriteOutcome::Checked);
            continue;
        }
        if let Err(error) = plan_op(slots, &mut effects, (request, index), op, now) {
            return Ok(Err(error));
        }
    }
    Ok(Ok(effects))
}

/// Plans one operation (`at`: its request and position), adding to the request's effects.
fn plan_op<'a>(
    slots: &Slots<'a>,
    effects: &mut Effects<'a>,
    at: (usize, usize),
    op: &'a WriteOp,
    now: i64,
) -> Result<()> {
    let key = op.target();
    let mut current = match effects.rows.get(&key) {
        Some(row) => *row,
        None => slots.slots.get(&key).and_then(|slot| slot.now),
    };
    if let Some(found) = current.filter(|found| has_expired(Some(found), key.0, key.1, now)) {
        if let Some(blob_id) = found.blob_ref {
            effects.refs.release(blob_id);
        }
        let expired = (key, ChangeKind::Expired, found.meta.version, None);
        effects.changes.push(expired);
        effects.rows.insert(key, None);
        effects.announced.push(key);
        current = None;
    }
    let outcome = match plan(op, current.as_ref(), now)? {
        Plan::Absent => WriteOutcome::Deleted(false),
        Plan::Checked => WriteOutcome::Checked,
        Plan::Delete { release } => {
            if let Some(Some(blob_id)) = release {
                effects.refs.release(blob_id);
            }
            let version = current.map_or(Version::FIRST, |current| current.meta.version);
            effects
                .changes
                .push((key, ChangeKind::Delete, version, None));
            effects.rows.insert(key, None);
            WriteOutcome::Deleted(true)
        }
        Plan::Put {
            blob,
            format,
            meta,
            seal,
            reference,
            release,
            ..
        } => {
            if reference == Reference::Add {
                effects.refs.add(blob, at);
            }
            if let Some(Some(blob_id)) = release {
                effects.refs.release(blob_id);
            }
            let change = (key, ChangeKind::Put, meta.version, Some(blob.id));
            effects.changes.push(change);
            let row = Current {
                blob_id: Some(blob.id),
                blob_ref: Some(blob.id),
                format,
                meta,
                seal,
            };
            effects.rows.insert(key, Some(row));
            WriteOutcome::Stored {
                meta,
                deduplicated: matches!(reference, Reference::Keep(_)),
            }
        }
    };
    if !matches!(outcome, WriteOutcome::Checked) {
        effects.announced.push(key);
    }
    effects.outcomes.push(outcome);
    Ok(())
}
