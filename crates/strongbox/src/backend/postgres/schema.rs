//! The PostgreSQL schema and its versioned migrations.
//!
//! Migrations run in one transaction holding a transaction-scoped advisory lock, so several
//! servers starting at once migrate exactly once; a database of a newer version is refused.
//! Tables carry a `strongbox_` prefix, so they can live beside an application's own.

use deadpool_postgres::Client;

use super::convert::{Column, format, map_err, meta};
use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::record::seal;

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 7;

/// Every table Strongbox creates: what maintenance vacuums, measures and checks.
pub(super) const TABLES: [&str; 5] = [
    "strongbox_records",
    "strongbox_changes",
    "strongbox_blobs",
    "strongbox_dictionaries",
    "strongbox_meta",
];

/// Arbitrary, fixed key of the advisory lock that serializes migrations ("STRONG" in ASCII).
const MIGRATION_LOCK: i64 = 0x5354_524F_4E47;

/// Version 1, the same model as SQLite's: `COLLATE "C"` makes key order bytewise, as there.
const V1: &str = r#"
CREATE TABLE strongbox_blobs (
    id BYTEA PRIMARY KEY CHECK (length(id) = 32),
    data BYTEA NOT NULL,
    raw_size BIGINT NOT NULL,
    refcount BIGINT NOT NULL CHECK (refcount >= 0)
);

CREATE TABLE strongbox_records (
    collection TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    blob_id BYTEA NOT NULL,
    format SMALLINT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    size BIGINT NOT NULL,
    access_count BIGINT NOT NULL DEFAULT 0,
    last_accessed BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (collection, key)
);

CREATE INDEX strongbox_records_by_blob ON strongbox_records (blob_id);
"#;

/// Version 2: compression dictionaries, as on SQLite (see its schema).
const V2: &str = r#"
CREATE TABLE strongbox_dictionaries (
    id BIGINT PRIMARY KEY,
    collection TEXT COLLATE "C" NOT NULL,
    data BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    ratio DOUBLE PRECISION NOT NULL
);
"#;

/// Version 3: every record carries its seal, as on SQLite (schema version 4 there; see
/// `record::seal`). Existing records are sealed as they are by [`seal_every_record`].
const V3: &str = "ALTER TABLE strongbox_records ADD COLUMN seal BIGINT NOT NULL DEFAULT 0;";

/// Version 4: the change feed (see `super::feed`). `strongbox_changes` holds one row per
/// committed put or delete, numbered from `strongbox_changes_seq` (a number is never handed
/// out twice, so none is reused after a trim); `kind` is `ChangeKind::code`, `at` the commit
/// time in milliseconds, `blob_id` the value written (a put). `changes_trimmed_through` in
/// `strongbox_meta` is the highest number trimmed. An existing store starts with an empty feed.
const V4: &str = r#"
CREATE SEQUENCE strongbox_changes_seq AS BIGINT;
CREATE TABLE strongbox_changes (
    seq BIGINT PRIMARY KEY,
    collection TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    kind SMALLINT NOT NULL,
    version BIGINT NOT NULL,
    at BIGINT NOT NULL,
    blob_id BYTEA
);
INSERT INTO strongbox_meta (name, value) VALUES ('changes_trimmed_through', 0)
    ON CONFLICT (name) DO NOTHING;
"#;

/// Version 5: records that expire, as on SQLite (schema version 6 there). `expires_at` is the
/// instant in milliseconds since the epoch (`NULL`: never, every record written before), and a
/// partial index holds only the records that expire, for the sweep.
const V5: &str = "
ALTER TABLE strongbox_records ADD COLUMN expires_at BIGINT;
CREATE INDEX strongbox_records_by_expiry ON strongbox_records (expires_at)
    WHERE expires_at IS NOT NULL;
";

/// Version 6: reference counts change through one function call per write transaction (see
/// `super::refs`): each blob's net delta, in blob-id order, so that two transactions sharing
/// values lock their rows in the same order and queue instead of deadlocking. A positive delta
/// inserts the blob (with its bytes) or adds to its count, and returns the count after; a
/// negative one subtracts (a blob left at zero waits for the orphan sweep).
const V6: &str = r#"
CREATE FUNCTION strongbox_change_refs(ids BYTEA[], datas BYTEA[], raw_sizes BIGINT[],
                                      deltas BIGINT[])
RETURNS TABLE (blob_id BYTEA, refcount_after BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    d RECORD;
BEGIN
    FOR d IN SELECT u.id, u.data, u.raw_size, u.delta
             FROM unnest(ids, datas, raw_sizes, deltas) AS u(id, data, raw_size, delta)
             ORDER BY u.id
    LOOP
        IF d.delta > 0 THEN
            INSERT INTO strongbox_blobs AS b (id, data, raw_size, refcount)
            VALUES (d.id, d.data, d.raw_size, d.delta)
            ON CONFLICT (id) DO UPDATE SET refcount = b.refcount + excluded.refcount
            RETURNING b.refcount INTO refcount_after;
            blob_id := d.id;
            RETURN NEXT;
        ELSIF d.delta < 0 THEN
            UPDATE strongbox_blobs SET refcount = refcount + d.delta WHERE id = d.id;
        END IF;
    END LOOP;
END
$$;
"#;

/// Version 7: no index of records by blob, as on SQLite since its version 2. It made every
/// update of a record's row insert into two indexes, so none could be a heap-only (HOT)
/// update: without it almost every overwrite is one (measured in docs/benchmarks.md). What
/// looked records up by blob (the orphan sweep's anti-joins, verify's records of a damaged
/// blob, its reference counts) reads `strongbox_records` in one pass instead.
const V7: &str = "DROP INDEX IF EXISTS strongbox_records_by_blob;";

/// The schema version recorded in `strongbox_meta` (0: none recorded).
async fn schema_version(client: &impl deadpool_postgres::GenericClient) -> Result<i64> {
    client
        .query_opt(
            "SELECT value FROM strongbox_meta WHERE name = 'schema_version'",
            &[],
        )
        .await
        .map_err(map_err("read the schema version"))?
        .map_or(Ok(0), |row| row.column(0))
}

/// Checks that a database opened read-only holds a Strongbox store at this code's schema
/// version: it cannot be created or migrated without writing.
pub async fn check_is_current(client: &Client) -> Result<()> {
    let needs_writing = |what: String| Error::ReadOnly {
        action: format!("{what} (open it once without read_only)"),
    };
    let has_schema = client
        .query_opt("SELECT to_regclass('strongbox_meta')::text", &[])
        .await
        .map_err(map_err("look for the schema"))?
        .map(|row| row.column::<Option<String>>(0))
        .transpose()?
        .flatten()
        .is_some();
    if !has_schema {
        return Err(needs_writing("create the schema".to_owned()));
    }
    let version = schema_version(client).await?;
    match version.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(Error::InvalidConfig(format!(
            "the database has schema version {version}, newer than this Strongbox understands \
             ({SCHEMA_VERSION}); upgrade Strongbox"
        ))),
        std::cmp::Ordering::Less => Err(needs_writing(format!(
            "upgrade the schema from version {version} to {SCHEMA_VERSION}"
        ))),
    }
}

/// Brings the database to [`SCHEMA_VERSION`].
pub async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client
        .transaction()
        .await
        .map_err(map_err("begin the schema migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(map_err("lock the schema for migration"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS strongbox_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    )
    .await
    .map_err(map_err("create the schema table"))?;
    let version = schema_version(&tx).await?;
    if version > SCHEMA_VERSION {
        return Err(Error::InvalidConfig(format!(
            "the database has schema version {version}, newer than this Strongbox understands \
             ({SCHEMA_VERSION}); upgrade Strongbox"
        )));
    }
    if version < 1 {
        tx.batch_execute(V1)
            .await
            .map_err(map_err("create the schema"))?;
    }
    if version < 2 {
        tx.batch_execute(V2)
            .await
            .map_err(map_err("migrate the schema to version 2"))?;
    }
    if version < 3 {
        tx.batch_execute(V3)
            .await
            .map_err(map_err("migrate the schema to version 3"))?;
        seal_every_record(&tx).await?;
    }
    if version < 4 {
        tx.batch_execute(V4)
            .await
            .map_err(map_err("migrate the schema to version 4"))?;
    }
    if version < 5 {
        tx.batch_execute(V5)
            .await
            .map_err(map_err("migrate the schema to version 5"))?;
    }
    if version < 6 {
        tx.batch_execute(V6)
            .await
            .map_err(map_err("migrate the schema to version 6"))?;
    }
    if version < 7 {
        tx.batch_execute(V7)
            .await
            .map_err(map_err("migrate the schema to version 7"))?;
    }
    if version < SCHEMA_VERSION {
        tx.execute(
            "INSERT INTO strongbox_meta (name, value) VALUES ('schema_version', $1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(map_err("record the schema version"))?;
    }
    tx.commit()
        .await
        .map_err(map_err("commit the schema migration"))
}

/// Seals every record as it stands (schema version 3).
async fn seal_every_record(tx: &deadpool_postgres::Transaction<'_>) -> Result<()> {
    let rows = tx
        .query(
            "SELECT collection, key, blob_id, format, version, created_at, updated_at, size,
                    access_count, last_accessed, NULL::BIGINT
             FROM strongbox_records",
            &[],
        )
        .await
        .map_err(map_err("read the records to seal"))?;
    let update = tx
        .prepare("UPDATE strongbox_records SET seal = $3 WHERE collection = $1 AND key = $2")
        .await
        .map_err(map_err("prepare sealing the records"))?;
    for row in rows {
        let collection: String = row.column(0)?;
        let key: String = row.column(1)?;
        let Some(blob_id) = BlobId::from_slice(row.column(2)?) else {
            continue;
        };
        let meta = meta(&row, 4)?;
        let format = format(&row, 3)?;
        let seal = seal(
            collection.as_bytes(),
            key.as_bytes(),
            &blob_id,
            format,
            &meta,
        );
        tx.execute(&update, &[&collection, &key, &seal])
            .await
            .map_err(map_err("seal a record"))?;
    }
    Ok(())
}
