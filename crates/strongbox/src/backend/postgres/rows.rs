//! The statements that write a group's effects, sent in one pipelined flight: the record rows
//! deleted, updated and inserted (each set in one statement over arrays), the reference
//! counts, the notifications to other servers, and last the change feed (whose lock is then
//! held only until `COMMIT`).
//!
//! Every statement is prepared before the flight, so the flight holds executions only, sent
//! in order: the first error to come back is the statement that failed, not one of the
//! executions the server then refused in the aborted transaction.

use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::Transaction;
use futures_util::future::try_join_all;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::batch::{Row as Record, Settings};
use super::convert::to_i64;
use super::feed::{APPEND, NewChanges};
use super::refs::{CHANGE_REFS, RefChanges, Tag};
use super::write::{CHANGES_CHANNEL, Failure, classify};

/// Removes records, by collection and key.
const DELETE_ROWS: &str = "
    DELETE FROM strongbox_records r
    USING unnest($1::text[], $2::text[]) AS d(collection, key)
    WHERE r.collection = d.collection AND r.key = d.key";

/// Replaces records' rows (the columns of [`INSERT_ROWS`], in its order).
const UPDATE_ROWS: &str = "
    UPDATE strongbox_records r SET blob_id = u.blob_id, format = u.format, version = u.version,
        created_at = u.created_at, updated_at = u.updated_at, size = u.size,
        access_count = u.access_count, last_accessed = u.last_accessed,
        expires_at = u.expires_at, seal = u.seal
    FROM unnest($1::text[], $2::text[], $3::bytea[], $4::smallint[], $5::bigint[],
                $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
                $11::bigint[], $12::bigint[])
         AS u(collection, key, blob_id, format, version, created_at, updated_at, size,
              access_count, last_accessed, expires_at, seal)
    WHERE r.collection = u.collection AND r.key = u.key";

/// Creates records' rows; a key another server created meanwhile is a unique violation, and
/// the group is retried.
const INSERT_ROWS: &str = "
    INSERT INTO strongbox_records (collection, key, blob_id, format, version, created_at,
        updated_at, size, access_count, last_accessed, expires_at, seal)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::smallint[], $5::bigint[],
                         $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[],
                         $10::bigint[], $11::bigint[], $12::bigint[])";

/// Announces keys to other servers, at commit (`$2`: one payload per key).
const NOTIFY: &str = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload";

/// Records' rows as columns.
#[derive(Debug, Default)]
struct Columns {
    collections: Vec<String>,
    keys: Vec<String>,
    blob_ids: Vec<Vec<u8>>,
    formats: Vec<i16>,
    versions: Vec<i64>,
    created: Vec<i64>,
    updated: Vec<i64>,
    sizes: Vec<i64>,
    access_counts: Vec<i64>,
    last_accessed: Vec<i64>,
    expires: Vec<Option<i64>>,
    seals: Vec<i64>,
}

impl Columns {
    fn push(&mut self, (collection, key): (&str, &str), record: &Record) {
        let meta = &record.meta;
        self.collections.push(collection.to_owned());
        self.keys.push(key.to_owned());
        self.blob_ids.push(
            record
                .blob_id
                .map_or_else(Vec::new, |id| id.as_bytes().to_vec()),
        );
        self.formats.push(i16::from(record.format));
        self.versions.push(to_i64(meta.version.get()));
        self.created.push(meta.created_at_ms);
        self.updated.push(meta.updated_at_ms);
        self.sizes.push(to_i64(meta.size_bytes));
        self.access_counts.push(to_i64(meta.access_count));
        self.last_accessed.push(meta.last_accessed_ms);
        self.expires.push(meta.expires_at_ms);
        self.seals.push(record.seal);
    }

    fn params(&self) -> Option<[&(dyn ToSql + Sync); 12]> {
        (!self.keys.is_empty()).then_some([
            &self.collections,
            &self.keys,
            &self.blob_ids,
            &self.formats,
            &self.versions,
            &self.created,
            &self.updated,
            &self.sizes,
            &self.access_counts,
            &self.last_accessed,
            &self.expires,
            &self.seals,
        ])
    }
}

/// The rows a group changes, sorted by what happens to them.
#[derive(Debug, Default)]
pub(super) struct RowWrites {
    deleted: (Vec<String>, Vec<String>),
    updated: Columns,
    inserted: Columns,
}

/// A statement's parameters.
type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// One statement of the flight: its SQL, its action (for errors), its parameters (`None`: it
/// has nothing to do).
type Step<'p> = (&'static str, &'static str, Option<Params<'p>>);

/// One statement of the flight, running.
type Flight<'f> = Pin<Box<dyn Future<Output = Result<Vec<Row>, Failure>> + Send + 'f>>;

impl RowWrites {
    /// A key the group wrote: its row existed when locked (`existed`) and the record it
    /// leaves (`None`: none).
    pub fn push(&mut self, key: (&str, &str), existed: bool, record: Option<&Record>) {
        match (existed, record) {
            (true, Some(record)) => self.updated.push(key, record),
            (false, Some(record)) => self.inserted.push(key, record),
            (true, None) => {
                self.deleted.0.push(key.0.to_owned());
                self.deleted.1.push(key.1.to_owned());
            }
            (false, None) => {}
        }
    }

    /// Writes the rows, then the reference counts (`refs`), the notifications of `announced`
    /// keys and the `changes` at `now`, in one pipelined flight; returns the deduplicated
    /// writes.
    pub async fn execute(
        &self,
        tx: &Transaction<'_>,
        refs: RefChanges<'_>,
        announced: &[(&str, &str)],
        settings: Settings,
        changes: NewChanges,
        now: i64,
    ) -> Result<Vec<Tag>, Failure> {
        let payloads: Vec<String> = if settings.notifies {
            let id = settings.instance_id.to_string();
            announced
                .iter()
                .map(|(collection, key)| serde_json::json!([id, collection, key]).to_string())
                .collect()
        } else {
            Vec::new()
        };
        let deleted: [&(dyn ToSql + Sync); 2] = [&self.deleted.0, &self.deleted.1];
        let notify: [&(dyn ToSql + Sync); 2] = [&CHANGES_CHANNEL, &payloads];
        let (updated, inserted) = (self.updated.params(), self.inserted.params());
        let refs_columns = refs.columns();
        let refs_params: Option<[&(dyn ToSql + Sync); 4]> = refs_columns
            .as_ref()
            .map(|(ids, datas, sizes, deltas)| [ids as _, datas as _, sizes as _, deltas as _]);
        let feed = changes.params(&now);
        let all: [Step<'_>; 6] = [
            (
                DELETE_ROWS,
                "delete records",
                (!self.deleted.0.is_empty()).then_some(&deleted[..]),
            ),
            (
                UPDATE_ROWS,
                "update records",
                updated.as_ref().map(|p| &p[..]),
            ),
            (
                INSERT_ROWS,
                "insert records",
                inserted.as_ref().map(|p| &p[..]),
            ),
            (
                CHANGE_REFS,
                "change reference counts",
                refs_params.as_ref().map(|p| &p[..]),
            ),
            (
                NOTIFY,
                "announce changes",
                (!payloads.is_empty()).then_some(&notify[..]),
            ),
            (APPEND, "record the changes", feed.as_ref().map(|p| &p[..])),
        ];
        let steps: Vec<_> = all
            .into_iter()
            .filter_map(|(sql, action, params)| params.map(|params| (sql, action, params)))
            .collect();
        let mut statements = Vec::with_capacity(steps.len());
        for (sql, _, _) in &steps {
            let statement = tx
                .prepare_cached(sql)
                .await
                .map_err(classify("prepare a group's writes"))?;
            statements.push(statement);
        }
        let flight: Vec<Flight<'_>> = steps
            .iter()
            .zip(&statements)
            .map(|(&(_, action, params), statement)| -> Flight<'_> {
                Box::pin(async move { tx.query(statement, params).await.map_err(classify(action)) })
            })
            .collect();
        let answers = try_join_all(flight).await?;
        let refs_answer = steps
            .iter()
            .position(|(sql, _, _)| *sql == CHANGE_REFS)
            .and_then(|index| answers.get(index));
        match refs_answer {
            Some(rows) => refs.deduplicated(rows),
            None => refs.deduplicated(&[]),
        }
    }
}
