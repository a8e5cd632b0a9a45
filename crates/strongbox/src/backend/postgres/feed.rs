//! The change feed on PostgreSQL ([`Feed`]): `strongbox_changes`, appended to as the last
//! statement of each write transaction, numbered from `strongbox_changes_seq` under a
//! transaction-scoped advisory lock.
//!
//! **Why numbers follow commit order:** a write takes [`FEED_LOCK`] in the same statement
//! that numbers its changes, just before `COMMIT`, and PostgreSQL releases a transaction's
//! locks only after its commit is visible. So the next writer takes its numbers only once
//! every lower number has committed (or rolled back, leaving a gap that nothing fills): a
//! reader that sees a number never later finds a new change below it. Unlike a counter row,
//! the lock and the sequence are outside the snapshot, so SERIALIZABLE transactions (a
//! `transact` commit) do not fail on each other's numbering.

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::PostgresBackend;
use super::convert::{Column, map_err, to_i64, unsigned};
use super::read::{get_many_in, read_snapshot};
use super::write::{Failure, classify};
use crate::backend::{ChangedRecords, Feed, FeedPage, FeedTrim};
use crate::blob::BlobId;
use crate::change::{Change, ChangeKind};
use crate::error::{Error, Result};
use crate::record::Version;

/// Arbitrary, fixed key of the advisory lock that orders the feed ("STRFEED" in ASCII).
const FEED_LOCK: i64 = 0x0053_5452_4645_4544;

/// Takes the feed's lock, then appends a write's changes with consecutive numbers in
/// operation order (volatile expressions are evaluated after `ORDER BY`).
pub(super) const APPEND: &str = "
    WITH feed_lock AS (SELECT pg_advisory_xact_lock($7))
    INSERT INTO strongbox_changes (seq, collection, key, kind, version, at, blob_id)
    SELECT nextval('strongbox_changes_seq'), c.collection, c.key, c.kind, c.version, $6,
           c.blob_id
    FROM feed_lock,
         unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[], $5::bytea[])
             WITH ORDINALITY AS c(collection, key, kind, version, blob_id, ord)
    ORDER BY c.ord";

/// Changes after a sequence number (of one collection when `$3` is not null), ascending.
const AFTER: &str = "
    SELECT seq, collection, key, kind, version, at, blob_id FROM strongbox_changes
    WHERE seq > $1 AND ($3::text IS NULL OR collection = $3) ORDER BY seq LIMIT $2";

/// Where the feed stands: trimmed through, oldest held, newest committed (this snapshot).
pub(super) const BOUNDS: &str = "
    SELECT t.value, (SELECT min(seq) FROM strongbox_changes),
           GREATEST(t.value, coalesce((SELECT max(seq) FROM strongbox_changes), 0))
    FROM strongbox_meta t WHERE t.name = 'changes_trimmed_through'";

/// The highest sequence number committed before a time.
const LAST_BEFORE: &str = "SELECT max(seq) FROM strongbox_changes WHERE at < $1";

/// The newest sequence number held.
const NEWEST: &str = "SELECT max(seq) FROM strongbox_changes";

/// Deletes the changes up to a sequence number.
const TRIM: &str = "DELETE FROM strongbox_changes WHERE seq <= $1";

/// Records how far the feed was trimmed.
const RECORD_TRIM: &str = "
    UPDATE strongbox_meta SET value = GREATEST(value, $1)
    WHERE name = 'changes_trimmed_through'";

/// The stored bytes of a blob.
const BLOB: &str = "SELECT data FROM strongbox_blobs WHERE id = $1";

/// The changes one write transaction makes, gathered as columns; none when the store's
/// change feed is off (`Config::change_feed`).
#[derive(Debug)]
pub(super) struct NewChanges {
    /// Whether the changes are recorded at all.
    is_on: bool,
    collections: Vec<String>,
    keys: Vec<String>,
    kinds: Vec<i16>,
    versions: Vec<i64>,
    blob_ids: Vec<Option<Vec<u8>>>,
}

impl NewChanges {
    /// No changes yet; with `is_on` false (the feed is off) none is ever added.
    pub(super) fn new(is_on: bool) -> Self {
        NewChanges {
            is_on,
            collections: Vec::new(),
            keys: Vec::new(),
            kinds: Vec::new(),
            versions: Vec::new(),
            blob_ids: Vec::new(),
        }
    }

    /// Adds a change, after those already added (nothing when the feed is off).
    pub(super) fn push(
        &mut self,
        (collection, key): (&str, &str),
        kind: ChangeKind,
        version: Version,
        blob_id: Option<&BlobId>,
    ) {
        if !self.is_on {
            return;
        }
        self.collections.push(collection.to_owned());
        self.keys.push(key.to_owned());
        self.kinds.push(i16::from(kind.code()));
        self.versions.push(to_i64(version.get()));
        self.blob_ids.push(blob_id.map(|id| id.as_bytes().to_vec()));
    }

    /// The parameters of [`APPEND`] for these changes at `at_ms`, or `None` when there are
    /// none (the feed is off, or nothing changed): then no statement runs and no lock is taken.
    pub(super) fn params<'s>(&'s self, at_ms: &'s i64) -> Option<[&'s (dyn ToSql + Sync); 7]> {
        if self.keys.is_empty() {
            return None;
        }
        Some([
            &self.collections,
            &self.keys,
            &self.kinds,
            &self.versions,
            &self.blob_ids,
            at_ms,
            &FEED_LOCK,
        ])
    }

    /// Numbers and appends the changes: the write transaction's last statement before
    /// `COMMIT`, so that the feed's lock is held as briefly as possible. With none (the feed
    /// is off, or the write changed no record) it takes no lock.
    pub(super) async fn append(self, tx: &Transaction<'_>, at_ms: i64) -> Result<(), Failure> {
        let Some(params) = self.params(&at_ms) else {
            return Ok(());
        };
        let statement = tx
            .prepare_cached(APPEND)
            .await
            .map_err(classify("prepare recording the changes"))?;
        tx.execute(&statement, &params)
            .await
            .map_err(classify("record the changes"))?;
        Ok(())
    }
}

impl Feed for PostgresBackend {
    async fn changes_after(
        &self,
        since: u64,
        limit: usize,
        collection: Option<&str>,
    ) -> Result<FeedPage> {
        let mut client = self.client().await?;
        let tx = read_snapshot(&mut client, "begin reading the change feed").await?;
        let page = read_page(&tx, since, limit, collection).await?;
        tx.commit()
            .await
            .map_err(map_err("end reading the change feed"))?;
        Ok(page)
    }

    async fn changes_with_records(&self, since: u64, limit: usize) -> Result<ChangedRecords> {
        let mut client = self.client().await?;
        let tx = read_snapshot(&mut client, "begin reading the change feed").await?;
        let page = read_page(&tx, since, limit, None).await?;
        let mut by_collection: std::collections::BTreeMap<String, Vec<String>> =
            std::collections::BTreeMap::new();
        for (collection, key) in page.changed_keys() {
            by_collection.entry(collection).or_default().push(key);
        }
        let mut records = Vec::new();
        for (collection, keys) in by_collection {
            let found = get_many_in(&tx, &collection, &keys).await?;
            for (key, record) in keys.into_iter().zip(found) {
                records.push(((collection.clone(), key), record));
            }
        }
        tx.commit()
            .await
            .map_err(map_err("end reading the change feed"))?;
        Ok(ChangedRecords { page, records })
    }

    async fn trim_changes(&self, trim: FeedTrim) -> Result<u64> {
        if self.read_only {
            return Err(Error::ReadOnly {
                action: "trim the change feed".into(),
            });
        }
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(map_err("begin trimming the change feed"))?;
        let by_count = match trim.keep_count {
            None => None,
            Some(keep) => tx
                .query_one(NEWEST, &[])
                .await
                .map_err(map_err("read the newest change"))?
                .column::<Option<i64>>(0)?
                .map(|newest| newest.saturating_sub(to_i64(keep))),
        };
        let by_age = match trim.older_than_ms {
            None => None,
            Some(before) => tx
                .query_one(LAST_BEFORE, &[&before])
                .await
                .map_err(map_err("find the changes to trim"))?
                .column::<Option<i64>>(0)?,
        };
        let Some(through) = by_count.max(by_age).filter(|through| *through > 0) else {
            return Ok(0);
        };
        let deleted = tx
            .execute(TRIM, &[&through])
            .await
            .map_err(map_err("trim the change feed"))?;
        tx.execute(RECORD_TRIM, &[&through])
            .await
            .map_err(map_err("record the trim"))?;
        tx.commit()
            .await
            .map_err(map_err("commit the trim of the change feed"))?;
        Ok(deleted)
    }

    async fn blob(&self, blob_id: BlobId) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(BLOB)
            .await
            .map_err(map_err("prepare reading the value of a change"))?;
        client
            .query_opt(&statement, &[&blob_id.as_bytes().as_slice()])
            .await
            .map_err(map_err("read the value of a change"))?
            .map(|row| row.column(0))
            .transpose()
    }
}

/// A page of changes and the bounds, inside the caller's snapshot.
async fn read_page(
    tx: &Transaction<'_>,
    since: u64,
    limit: usize,
    collection: Option<&str>,
) -> Result<FeedPage> {
    let limit = to_i64(u64::try_from(limit).unwrap_or(u64::MAX));
    let rows = tx
        .query(AFTER, &[&to_i64(since), &limit, &collection])
        .await
        .map_err(map_err("read the change feed"))?;
    let changes = rows.iter().map(change).collect::<Result<Vec<_>>>()?;
    let bounds = tx
        .query_one(BOUNDS, &[])
        .await
        .map_err(map_err("read the change feed's bounds"))?;
    let oldest: Option<i64> = bounds.column(1)?;
    Ok(FeedPage {
        changes,
        trimmed_through: unsigned(bounds.column(0)?),
        oldest: oldest.map(unsigned),
        newest: unsigned(bounds.column(2)?),
    })
}

/// A change from its row; an unknown kind or a malformed blob id is damage.
fn change(row: &tokio_postgres::Row) -> Result<Change> {
    let seq: i64 = row.column(0)?;
    let collection: String = row.column(1)?;
    let key: String = row.column(2)?;
    let kind: i16 = row.column(3)?;
    let version: i64 = row.column(4)?;
    let blob_id: Option<&[u8]> = row.column(6)?;
    let damaged = |detail: &str| Error::Corrupt {
        collection: Some(collection.clone()),
        key: Some(key.clone()),
        detail: format!("change {seq} of the feed {detail}"),
    };
    let kind =
        ChangeKind::from_code(i64::from(kind)).ok_or_else(|| damaged("has an unknown kind"))?;
    let blob_id = match blob_id {
        None => None,
        Some(bytes) => {
            Some(BlobId::from_slice(bytes).ok_or_else(|| damaged("names a malformed value id"))?)
        }
    };
    Ok(Change {
        seq: unsigned(seq),
        kind,
        version: Version::new(unsigned(version)),
        at_ms: row.column(5)?,
        blob_id,
        collection,
        key,
    })
}
