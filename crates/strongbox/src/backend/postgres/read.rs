//! Point reads and listings ([`Reads`]) on pooled connections with cached statements.
//!
//! Each read runs on a standby when one has replayed this store's writes (`routed!`, see
//! [`super::replicas`]), else on the primary; `get_latest`, `scan_latest` and `totals` always
//! run on the primary.

use deadpool_postgres::Client;

use super::PostgresBackend;
use super::convert::{Column, format, map_err, meta, unsigned};
use super::replicas::routed;
use crate::backend::{KeyRange, Reads, ScanRange, StorageTotals, StoredRecord};
use crate::blob::BlobId;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::name::prefix_successor;
use crate::record::Version;

/// Keys of a collection with a prefix (`key >= $2 AND key < $3`) after a cursor.
/// Several records of a collection with their blobs, by key.
const GET_MANY: &str = "
    SELECT r.key, r.blob_id, b.data, r.format, r.version, r.created_at, r.updated_at, r.size,
           r.access_count, r.last_accessed, r.expires_at, r.seal
    FROM strongbox_records r LEFT JOIN strongbox_blobs b ON b.id = r.blob_id
    WHERE r.collection = $1 AND r.key = ANY($2)";

/// Records of a collection between optional bounds (`NULL`: none) that have not expired at
/// `$7`, with their blobs, in the order given (`ASC` or `DESC`).
macro_rules! scan_sql {
    ($order:literal) => {
        concat!(
            "SELECT r.key, r.blob_id, b.data, r.format, r.version, r.created_at, r.updated_at,
                    r.size, r.access_count, r.last_accessed, r.expires_at, r.seal
             FROM strongbox_records r LEFT JOIN strongbox_blobs b ON b.id = r.blob_id
             WHERE r.collection = $1
               AND ($2::text IS NULL OR r.key >= $2) AND ($3::text IS NULL OR r.key > $3)
               AND ($4::text IS NULL OR r.key <= $4) AND ($5::text IS NULL OR r.key < $5)
               AND (r.expires_at IS NULL OR r.expires_at > $7)
             ORDER BY r.key ",
            $order,
            " LIMIT $6"
        )
    };
}

/// A scan up.
const SCAN_UP: &str = scan_sql!("ASC");

/// A scan down.
const SCAN_DOWN: &str = scan_sql!("DESC");

/// The four bounds of `SCAN_UP`/`SCAN_DOWN` (`key >= $2`, `key > $3`, `key <= $4`,
/// `key < $5`, each `NULL` when absent) and the limit, for a range.
pub(super) fn scan_bounds(range: &ScanRange) -> ([Option<String>; 4], i64) {
    use std::ops::Bound;
    let bound = |bound: &Bound<String>, included: bool| match bound {
        Bound::Included(key) if included => Some(key.clone()),
        Bound::Excluded(key) if !included => Some(key.clone()),
        _ => None,
    };
    let bounds = [
        bound(&range.start, true),
        bound(&range.start, false),
        bound(&range.end, true),
        bound(&range.end, false),
    ];
    (bounds, i64::try_from(range.limit).unwrap_or(i64::MAX))
}

const LIST_PREFIXED_KEYS: &str = "
    SELECT key FROM strongbox_records
    WHERE collection = $1 AND key >= $2 AND key < $3 AND key > $4
      AND (expires_at IS NULL OR expires_at > $6)
    ORDER BY key LIMIT $5";

/// Keys of a collection from `$2` on, after a cursor (a prefix with no upper bound).
const LIST_KEYS: &str = "
    SELECT key FROM strongbox_records WHERE collection = $1 AND key >= $2 AND key > $3
      AND (expires_at IS NULL OR expires_at > $5)
    ORDER BY key LIMIT $4";

/// Records, collections and their values' serialized size; records that expire after `$1`
/// and those expired at `$1`.
const RECORD_TOTALS: &str = "
    SELECT count(*), count(DISTINCT collection), coalesce(sum(size), 0)::BIGINT,
           count(*) FILTER (WHERE expires_at > $1), count(*) FILTER (WHERE expires_at <= $1)
    FROM strongbox_records";

/// Blobs in use, their raw and stored sizes, and the stored size of blobs left at zero
/// references (counted apart, as on SQLite).
const BLOB_TOTALS: &str = "
    SELECT count(*) FILTER (WHERE refcount > 0),
           coalesce(sum(raw_size) FILTER (WHERE refcount > 0), 0)::BIGINT,
           coalesce(sum(length(data)) FILTER (WHERE refcount > 0), 0)::BIGINT,
           coalesce(sum(length(data)) FILTER (WHERE refcount = 0), 0)::BIGINT
    FROM strongbox_blobs";

impl Reads for PostgresBackend {
    async fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        routed!(self, client => get_on(client, collection, key).await)
    }

    async fn get_latest(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        get_on(&mut self.client().await?, collection, key).await
    }

    async fn get_many(
        &self,
        collection: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<StoredRecord>>> {
        routed!(self, client => get_many_on(client, collection, &keys).await)
    }

    async fn scan(
        &self,
        collection: &str,
        range: ScanRange,
    ) -> Result<Vec<(String, StoredRecord)>> {
        routed!(self, client => scan_on(client, collection, &range).await)
    }

    async fn scan_latest(
        &self,
        collection: &str,
        range: ScanRange,
    ) -> Result<Vec<(String, StoredRecord)>> {
        scan_on(&mut self.client().await?, collection, &range).await
    }

    async fn version(&self, collection: &str, key: &str) -> Result<Option<Version>> {
        routed!(self, client => version_on(client, collection, key).await)
    }

    async fn list(&self, collection: &str, range: KeyRange) -> Result<Vec<String>> {
        routed!(self, client => list_on(client, collection, &range).await)
    }

    async fn count(&self, collection: &str) -> Result<u64> {
        routed!(self, client => count_on(client, collection).await)
    }

    async fn collections(&self) -> Result<Vec<String>> {
        routed!(self, client => collections_on(client).await)
    }

    async fn totals(&self) -> Result<StorageTotals> {
        let mut client = self.client().await?;
        // One snapshot for both queries.
        let tx = read_snapshot(&mut client, "begin a read").await?;
        let records = tx
            .query_one(RECORD_TOTALS, &[&now_ms()])
            .await
            .map_err(map_err("sum up the records"))?;
        let blobs = tx
            .query_one(BLOB_TOTALS, &[])
            .await
            .map_err(map_err("sum up the blobs"))?;
        tx.commit().await.map_err(map_err("end a read"))?;
        Ok(StorageTotals {
            records: unsigned(records.column(0)?),
            expiring: unsigned(records.column(3)?),
            expired: unsigned(records.column(4)?),
            collections: unsigned(records.column(1)?),
            logical_bytes: unsigned(records.column(2)?),
            blobs: unsigned(blobs.column(0)?),
            unique_bytes: unsigned(blobs.column(1)?),
            stored_bytes: unsigned(blobs.column(2)?),
            released_bytes: unsigned(blobs.column(3)?),
        })
    }
}

/// One record with its blob, read on `client` (a standby's or the primary's).
async fn get_on(client: &mut Client, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
    let statement = client
        .prepare_cached(
            "SELECT r.blob_id, b.data, r.format, r.version, r.created_at, r.updated_at, r.size,
                    r.access_count, r.last_accessed, r.expires_at, r.seal
             FROM strongbox_records r LEFT JOIN strongbox_blobs b ON b.id = r.blob_id
             WHERE r.collection = $1 AND r.key = $2",
        )
        .await
        .map_err(map_err("prepare a record read"))?;
    let Some(row) = client
        .query_opt(&statement, &[&collection, &key])
        .await
        .map_err(map_err("read a record"))?
    else {
        return Ok(None);
    };
    stored_record(collection, key, &row, 0).map(Some)
}

/// Several records of a collection from one snapshot, in the order of `keys`.
async fn get_many_on(
    client: &mut Client,
    collection: &str,
    keys: &[String],
) -> Result<Vec<Option<StoredRecord>>> {
    let tx = read_snapshot(client, "begin a read").await?;
    let records = get_many_in(&tx, collection, keys).await?;
    tx.commit().await.map_err(map_err("end a read"))?;
    Ok(records)
}

/// Several records of a collection, in the order of `keys`, inside the caller's transaction.
pub(super) async fn get_many_in(
    tx: &deadpool_postgres::Transaction<'_>,
    collection: &str,
    keys: &[String],
) -> Result<Vec<Option<StoredRecord>>> {
    let statement = tx
        .prepare_cached(GET_MANY)
        .await
        .map_err(map_err("prepare a read of several records"))?;
    let rows = tx
        .query(&statement, &[&collection, &keys])
        .await
        .map_err(map_err("read several records"))?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let key: String = row.column(0)?;
        let record = stored_record(collection, &key, row, 1)?;
        found.insert(key, record);
    }
    Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
}

/// A page of a collection's records in a range.
async fn scan_on(
    client: &mut Client,
    collection: &str,
    range: &ScanRange,
) -> Result<Vec<(String, StoredRecord)>> {
    let ([lowest, above, highest, below], limit) = scan_bounds(range);
    let sql = if range.reverse { SCAN_DOWN } else { SCAN_UP };
    let statement = client
        .prepare_cached(sql)
        .await
        .map_err(map_err("prepare a scan"))?;
    let rows = client
        .query(
            &statement,
            &[
                &collection,
                &lowest,
                &above,
                &highest,
                &below,
                &limit,
                &now_ms(),
            ],
        )
        .await
        .map_err(map_err("scan records"))?;
    rows.iter()
        .map(|row| {
            let key: String = row.column(0)?;
            let record = stored_record(collection, &key, row, 1)?;
            Ok((key, record))
        })
        .collect()
}

/// The current version of a record that has not expired.
async fn version_on(client: &mut Client, collection: &str, key: &str) -> Result<Option<Version>> {
    let statement = client
        .prepare_cached(
            "SELECT version FROM strongbox_records WHERE collection = $1 AND key = $2
             AND (expires_at IS NULL OR expires_at > $3)",
        )
        .await
        .map_err(map_err("prepare a version read"))?;
    client
        .query_opt(&statement, &[&collection, &key, &now_ms()])
        .await
        .map_err(map_err("read a record's version"))?
        .map(|row| Ok(Version::new(unsigned(row.column(0)?))))
        .transpose()
}

/// Keys of a collection in a range.
async fn list_on(client: &mut Client, collection: &str, range: &KeyRange) -> Result<Vec<String>> {
    let start_after = range.start_after.clone().unwrap_or_default();
    let limit = i64::try_from(range.limit).unwrap_or(i64::MAX);
    let prefix = range.prefix.clone().unwrap_or_default();
    let now = now_ms();
    let rows = match prefix_successor(&prefix) {
        Some(upper) => {
            let statement = client
                .prepare_cached(LIST_PREFIXED_KEYS)
                .await
                .map_err(map_err("prepare a key listing"))?;
            client
                .query(
                    &statement,
                    &[&collection, &prefix, &upper, &start_after, &limit, &now],
                )
                .await
        }
        None => {
            let statement = client
                .prepare_cached(LIST_KEYS)
                .await
                .map_err(map_err("prepare a key listing"))?;
            client
                .query(
                    &statement,
                    &[&collection, &prefix, &start_after, &limit, &now],
                )
                .await
        }
    }
    .map_err(map_err("list keys"))?;
    rows.iter().map(|row| row.column(0)).collect()
}

/// The number of a collection's records that have not expired.
async fn count_on(client: &mut Client, collection: &str) -> Result<u64> {
    let statement = client
        .prepare_cached(
            "SELECT count(*) FROM strongbox_records WHERE collection = $1
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .await
        .map_err(map_err("prepare a count"))?;
    let row = client
        .query_one(&statement, &[&collection, &now_ms()])
        .await
        .map_err(map_err("count records"))?;
    Ok(unsigned(row.column(0)?))
}

/// The collections holding a record that has not expired.
async fn collections_on(client: &mut Client) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT DISTINCT collection FROM strongbox_records
             WHERE expires_at IS NULL OR expires_at > $1 ORDER BY collection",
            &[&now_ms()],
        )
        .await
        .map_err(map_err("list collections"))?;
    rows.iter().map(|row| row.column(0)).collect()
}

/// A read-only REPEATABLE READ transaction: every query in it sees one snapshot.
pub(super) async fn read_snapshot<'a>(
    client: &'a mut Client,
    action: &'static str,
) -> Result<deadpool_postgres::Transaction<'a>> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(map_err(action))
}

/// A fetched record from the columns at `first` on (blob id, stored bytes, format, the seven
/// metadata columns, seal).
fn stored_record(
    collection: &str,
    key: &str,
    row: &tokio_postgres::Row,
    first: usize,
) -> Result<StoredRecord> {
    let blob_id = BlobId::from_slice(row.column(first)?).ok_or_else(|| {
        Error::corrupt_at(collection, key, "the record's blob id is not 32 bytes")
    })?;
    Ok(StoredRecord {
        blob_id,
        stored: row.column(first + 1)?,
        format: format(row, first + 2)?,
        meta: meta(row, first + 3)?,
        seal: row.column(first + 10)?,
    })
}
