//! The dataset: JSON lines read into memory once, and the updates the workloads draw from it.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;

use anyhow::Context as _;
use rand::seq::IndexedRandom as _;
use rand::{Rng, RngExt as _};
use serde_json::value::RawValue;

/// The dataset in memory: values kept as raw JSON, so memory stays close to the file's size.
pub struct Dataset {
    /// `(collection, key, value)`, in file order.
    pub records: Vec<(String, String, Box<RawValue>)>,
    /// Indexes of the records of each collection, to pick realistic replacement values.
    by_collection: HashMap<String, Vec<usize>>,
    /// Bytes of JSON values in all.
    pub raw_bytes: u64,
}

/// One line of the file.
#[derive(serde::Deserialize)]
struct Line {
    collection: String,
    key: String,
    value: Box<RawValue>,
}

impl Dataset {
    /// Reads a JSON lines file of `{"collection": ..., "key": ..., "value": ...}`; blank lines
    /// are skipped.
    ///
    /// # Errors
    /// When the file cannot be read, a line is not such an object, or there is no record.
    pub fn load(path: &Path) -> anyhow::Result<Dataset> {
        let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut records = Vec::new();
        let mut by_collection: HashMap<String, Vec<usize>> = HashMap::new();
        let mut raw_bytes = 0u64;
        for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("read line {}", number + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line = serde_json::from_str(&line)
                .with_context(|| format!("line {}: parse JSON", number + 1))?;
            raw_bytes += parsed.value.get().len() as u64;
            by_collection
                .entry(parsed.collection.clone())
                .or_default()
                .push(records.len());
            records.push((parsed.collection, parsed.key, parsed.value));
        }
        anyhow::ensure!(!records.is_empty(), "{} holds no records", path.display());
        Ok(Dataset {
            records,
            by_collection,
            raw_bytes,
        })
    }

    /// An update: a random record's key, and the value of another record of its collection.
    pub fn update(&self, rng: &mut impl Rng) -> (&str, &str, &RawValue) {
        let target = rng.random_range(0..self.records.len());
        let (collection, key, _) = &self.records[target];
        (collection, key, self.replacement(target, rng))
    }

    /// The value of a random record of the same collection as record `index`.
    pub fn replacement(&self, index: usize, rng: &mut impl Rng) -> &RawValue {
        let same = self
            .by_collection
            .get(&self.records[index].0)
            .map_or(&[][..], Vec::as_slice);
        let source = same.choose(rng).copied().unwrap_or(index);
        &self.records[source].2
    }
}
