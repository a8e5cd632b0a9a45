//! The walks and counts `verify` checks a PostgreSQL store with ([`Checks`]), and the engine's
//! own check of pages and indexes, which PostgreSQL offers through the `amcheck` extension.

use tokio_postgres::error::SqlState;

use super::PostgresBackend;
use super::convert::{Column, format, map_err, meta};
use super::schema::TABLES;
use crate::backend::types::Position;
use crate::backend::{BlobCursor, Checks, Measurement, RecordCheck, RefcountMismatch};
use crate::blob::BlobId;
use crate::error::{Error, Result};

/// Records after a `(collection, key)`, with whether their blob exists.
const RECORDS_AFTER: &str = "
    SELECT r.collection, r.key, r.blob_id, r.format, r.version, r.created_at, r.updated_at,
           r.size, r.access_count, r.last_accessed, r.expires_at, r.seal, b.id IS NOT NULL
    FROM strongbox_records r LEFT JOIN strongbox_blobs b ON b.id = r.blob_id
    WHERE (r.collection, r.key) > ($1, $2)
    ORDER BY r.collection, r.key LIMIT $3";

/// Blobs after an id, in id order.
const BLOBS_AFTER: &str = "SELECT id, data FROM strongbox_blobs WHERE id > $1 ORDER BY id LIMIT $2";

/// Blobs whose stored count differs from the number of records pointing at them.
const REFCOUNT_MISMATCHES: &str = "
    SELECT b.id, b.refcount, coalesce(r.actual, 0)
    FROM strongbox_blobs b
    LEFT JOIN (SELECT blob_id, count(*) AS actual FROM strongbox_records GROUP BY blob_id) r
      ON r.blob_id = b.id
    WHERE b.refcount <> coalesce(r.actual, 0)";

/// The records pointing at a blob.
const RECORDS_OF_BLOB: &str = "
    SELECT collection, key FROM strongbox_records WHERE blob_id = $1
    ORDER BY collection, key LIMIT $2";

/// Records pointing at a blob that does not exist.
const DANGLING_RECORDS: &str = "
    SELECT collection, key FROM strongbox_records r
    WHERE NOT EXISTS (SELECT 1 FROM strongbox_blobs b WHERE b.id = r.blob_id)
    ORDER BY collection, key";

/// The schema of the `amcheck` extension (quoted for SQL text), when it is installed in this
/// database with both functions the check needs (`verify_heapam` came in amcheck 1.3, with
/// PostgreSQL 14) and this role may run them (amcheck grants them to superusers only).
const AMCHECK: &str = "
    SELECT quote_ident(n.nspname)
    FROM pg_extension e
    JOIN pg_namespace n ON n.oid = e.extnamespace
    JOIN pg_proc p ON p.pronamespace = n.oid
    WHERE e.extname = 'amcheck'
      AND p.proname IN ('bt_index_check', 'verify_heapam')
      AND has_schema_privilege(n.oid, 'USAGE')
      AND has_function_privilege(p.oid, 'EXECUTE')
    GROUP BY n.nspname
    HAVING count(DISTINCT p.proname) = 2";

/// The tables named in `$1`, by oid and name.
const CHECKED_TABLES: &str = "
    SELECT c.oid, c.relname::TEXT FROM pg_class c
    WHERE c.oid = ANY ($1::TEXT[]::REGCLASS[])
    ORDER BY c.relname";

/// The B-tree indexes of the tables named in `$1` and of their TOAST tables, by oid and name.
const CHECKED_INDEXES: &str = "
    WITH tables AS (
        SELECT oid, reltoastrelid FROM pg_class WHERE oid = ANY ($1::TEXT[]::REGCLASS[])
    )
    SELECT i.indexrelid, i.indexrelid::REGCLASS::TEXT
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_am am ON am.oid = c.relam
    WHERE am.amname = 'btree'
      AND i.indrelid IN (SELECT oid FROM tables UNION SELECT reltoastrelid FROM tables)
    ORDER BY 2";

/// Checks a table's pages and the TOAST values its rows point at: one row per problem.
/// `{amcheck}` stands for the extension's schema.
const VERIFY_HEAPAM: &str = "
    SELECT blkno, offnum, msg
    FROM {amcheck}.verify_heapam(relation => $1::OID::REGCLASS, check_toast => true)";

/// Checks a B-tree index's structure, and that it holds every row of its table
/// (`heapallindexed`); it raises an error on the first problem. `{amcheck}` stands for the
/// extension's schema.
const BT_INDEX_CHECK: &str = "SELECT {amcheck}.bt_index_check($1::OID::REGCLASS, true)";

/// Why the integrity check does not run, when amcheck is not there to run it.
const NO_AMCHECK: &str = "PostgreSQL checks its pages and indexes only with the amcheck \
    extension (1.3 or later), which this database lacks or this role may not run (a superuser \
    can run CREATE EXTENSION amcheck)";

impl Checks for PostgresBackend {
    /// PostgreSQL checks the encoding of text, so names are always UTF-8 here.
    async fn records_after(
        &self,
        after: Option<(Vec<u8>, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<RecordCheck>> {
        let (collection, key) = after.unwrap_or_default();
        let collection = String::from_utf8_lossy(&collection).into_owned();
        let key = String::from_utf8_lossy(&key).into_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(RECORDS_AFTER, &[&collection, &key, &limit])
            .await
            .map_err(map_err("read records to verify"))?;
        rows.iter()
            .map(|row| {
                let collection: String = row.column(0)?;
                let key: String = row.column(1)?;
                let has_blob: bool = row.column(12)?;
                Ok(RecordCheck {
                    collection: collection.into_bytes(),
                    key: key.into_bytes(),
                    blob_id: BlobId::from_slice(row.column(2)?).filter(|_| has_blob),
                    format: format(row, 3)?,
                    meta: meta(row, 4)?,
                    seal: row.column(11)?,
                })
            })
            .collect()
    }

    /// In id order.
    async fn blobs_after(
        &self,
        after: BlobCursor,
        limit: usize,
    ) -> Result<(Vec<(BlobId, Vec<u8>)>, BlobCursor)> {
        let cursor = after;
        let after = match after.0 {
            Position::Start => Vec::new(),
            Position::Id(id) => id.as_bytes().to_vec(),
            Position::Ref(_) => {
                return Err(Error::backend(
                    "read blobs",
                    "a SQLite cursor was given to a PostgreSQL database",
                ));
            }
        };
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(BLOBS_AFTER, &[&after, &limit])
            .await
            .map_err(map_err("read blobs"))?;
        let blobs = rows
            .iter()
            .map(|row| {
                let id: &[u8] = row.column(0)?;
                let blob_id = BlobId::from_slice(id).ok_or_else(|| Error::Corrupt {
                    collection: None,
                    key: None,
                    detail: format!("a blob id is {} bytes long instead of 32", id.len()),
                })?;
                Ok((blob_id, row.column(1)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let next = blobs
            .last()
            .map_or(cursor, |(id, _)| BlobCursor(Position::Id(*id)));
        Ok((blobs, next))
    }

    async fn records_of_blob(
        &self,
        blob_id: BlobId,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(RECORDS_OF_BLOB, &[&blob_id.as_bytes().as_slice(), &limit])
            .await
            .map_err(map_err("find the records of a blob"))?;
        rows.iter()
            .map(|row| Ok((row.column(0)?, row.column(1)?)))
            .collect()
    }

    async fn refcount_mismatches(&self) -> Result<Vec<RefcountMismatch>> {
        let client = self.client().await?;
        let rows = client
            .query(REFCOUNT_MISMATCHES, &[])
            .await
            .map_err(map_err("recount blob references"))?;
        let mut mismatches = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(blob_id) = BlobId::from_slice(row.column(0)?) {
                mismatches.push(RefcountMismatch {
                    blob_id,
                    recorded: row.column(1)?,
                    actual: row.column(2)?,
                });
            }
        }
        Ok(mismatches)
    }

    async fn dangling_records(&self) -> Result<Vec<(String, String)>> {
        let client = self.client().await?;
        let rows = client
            .query(DANGLING_RECORDS, &[])
            .await
            .map_err(map_err("find records without a blob"))?;
        rows.iter()
            .map(|row| Ok((row.column(0)?, row.column(1)?)))
            .collect()
    }

    /// With the `amcheck` extension: `verify_heapam` on every Strongbox table (with the TOAST
    /// values its rows point at) and `bt_index_check` on every index of them, each under the
    /// same lock as a read, so writers carry on. Without it, the check does not apply.
    async fn integrity_check(&self) -> Result<Measurement<Vec<String>>> {
        let client = self.client().await?;
        let Some(amcheck) = client
            .query_opt(AMCHECK, &[])
            .await
            .map_err(map_err("look for the amcheck extension"))?
        else {
            return Ok(Measurement::NotApplicable(NO_AMCHECK));
        };
        let schema: String = amcheck.column(0)?;
        let mut problems = Vec::new();
        let tables = client
            .query(CHECKED_TABLES, &[&TABLES.as_slice()])
            .await
            .map_err(map_err("list the tables to check"))?;
        let verify_heapam = VERIFY_HEAPAM.replace("{amcheck}", &schema);
        for table in &tables {
            let (oid, name): (u32, String) = (table.column(0)?, table.column(1)?);
            let rows = match client.query(verify_heapam.as_str(), &[&oid]).await {
                Ok(rows) => rows,
                Err(error) => {
                    problems.push(corruption(&name, error)?);
                    continue;
                }
            };
            for row in &rows {
                let (block, item, message): (i64, Option<i32>, String) =
                    (row.column(0)?, row.column(1)?, row.column(2)?);
                problems.push(match item {
                    Some(item) => format!("{name}, page {block}, item {item}: {message}"),
                    None => format!("{name}, page {block}: {message}"),
                });
            }
        }
        let indexes = client
            .query(CHECKED_INDEXES, &[&TABLES.as_slice()])
            .await
            .map_err(map_err("list the indexes to check"))?;
        let bt_index_check = BT_INDEX_CHECK.replace("{amcheck}", &schema);
        for index in &indexes {
            let (oid, name): (u32, String) = (index.column(0)?, index.column(1)?);
            let checked = client.execute(bt_index_check.as_str(), &[&oid]).await;
            if let Err(error) = checked {
                problems.push(corruption(&name, error)?);
            }
        }
        Ok(Measurement::Measured(problems))
    }
}

/// The problem amcheck raised about a table or an index, as a line of the report; any other
/// error (the server is busy, the connection dropped) stops the check.
fn corruption(relation: &str, error: tokio_postgres::Error) -> Result<String> {
    let is_corruption = matches!(
        error.code(),
        Some(code) if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED
    );
    match error.as_db_error() {
        Some(db_error) if is_corruption => Ok(format!("{relation}: {}", db_error.message())),
        _ => Err(map_err(format!("check {relation} with amcheck"))(error)),
    }
}
