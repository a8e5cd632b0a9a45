//! The checks around the game night: the database starts empty; afterwards every record is read
//! back and compared with what was last written, the total of chips must not have changed and
//! no bet may be left open, and verify must find no problem.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde_json::Value;
use strongbox::{Store, VerifyReport};

use crate::commands::{Failure, KeyPages, retrieve_values};

/// What reading every record back found.
#[derive(Debug, Default)]
pub struct ReadBack {
    /// Records read.
    pub records: u64,
    /// Collections read.
    pub collections: usize,
    /// Values compared with what was last written.
    pub checked: u64,
    /// Values that differed from what was last written.
    pub mismatched: u64,
    /// Total of all balances.
    pub chips: i64,
    /// Bets still open.
    pub open_bets: u64,
}

impl ReadBack {
    /// Whether the chips invariant holds: the total is what it was at the start, and no bet
    /// holds chips any more.
    pub fn chips_hold(&self, initial_chips: i64) -> bool {
        self.chips == initial_chips && self.open_bets == 0
    }

    /// Counts one record read back and compares it with what was last written.
    fn check(
        &mut self,
        collection: &str,
        key: String,
        value: &Value,
        expected: &BTreeMap<(String, String), Value>,
    ) -> anyhow::Result<()> {
        self.records += 1;
        match collection {
            "balances" => {
                self.chips += value
                    .as_i64()
                    .with_context(|| format!("balances/{key} is not a number"))?;
            }
            "bets" if value["status"] == "open" => self.open_bets += 1,
            _ => {}
        }
        if let Some(written) = expected.get(&(collection.to_owned(), key)) {
            self.checked += 1;
            if written != value {
                self.mismatched += 1;
            }
        }
        Ok(())
    }
}

/// Refuses a database that already holds records: the demo's checks count everything.
///
/// # Errors
/// When the database holds records, or its statistics cannot be read.
pub async fn ensure_empty(store: &Store) -> anyhow::Result<()> {
    let existing = store
        .storage_stats()
        .await
        .context("read storage statistics")?;
    if existing.records > 0 {
        bail!(
            "the demo needs an empty database, and {} holds {} records; pass a new file to --db, \
             or omit --db to use a temporary one",
            store.config().location(),
            existing.records
        );
    }
    Ok(())
}

/// Reads every record of every collection, page by page, comparing with `expected`.
///
/// # Errors
/// When a read fails or a balance is not a number.
pub async fn read_back(
    store: &Store,
    expected: &BTreeMap<(String, String), Value>,
) -> anyhow::Result<ReadBack> {
    let collections = store.collections().await.context("list collections")?;
    let mut read = ReadBack {
        collections: collections.len(),
        ..ReadBack::default()
    };
    for collection in &collections {
        let mut pages = KeyPages::new(store, collection);
        while let Some(keys) = pages.next().await? {
            for (key, value) in retrieve_values(store, collection, &keys).await? {
                read.check(collection, key, &value, expected)?;
            }
        }
    }
    Ok(read)
}

/// Fails unless every value read back equals what was written and none is missing.
///
/// # Errors
/// When some differ or are missing.
pub fn ensure_all_read(
    read: &ReadBack,
    expected: &BTreeMap<(String, String), Value>,
) -> anyhow::Result<()> {
    if read.mismatched > 0 || read.checked != expected.len() as u64 {
        bail!(
            "read back {} values different from what was written, and missed {} records",
            read.mismatched,
            expected.len() as u64 - read.checked.min(expected.len() as u64)
        );
    }
    Ok(())
}

/// The demo's verdict, once everything is printed.
///
/// # Errors
/// [`Failure::Problems`] (exit code 4) when verify found problems; an error when the chips
/// invariant is broken.
pub fn verdict(report: &VerifyReport, read: &ReadBack, initial_chips: i64) -> anyhow::Result<()> {
    if !report.is_clean() {
        return Err(Failure::Problems {
            count: report.problems.len(),
        }
        .into());
    }
    if !read.chips_hold(initial_chips) {
        bail!(
            "the total of chips changed from {initial_chips} to {} ({} bets open)",
            read.chips,
            read.open_bets
        );
    }
    Ok(())
}
