//! The dataset: JSON lines read into memory once (or generated, see `generate`), and the
//! updates the workloads draw from it.

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::path::Path;

use anyhow::Context as _;
use rand::seq::IndexedRandom as _;
use rand::{Rng, RngExt as _};
use serde_json::value::RawValue;

/// The dataset in memory: values kept as raw JSON, so memory stays close to the file's size.
#[derive(Default)]
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
        let mut dataset = Dataset::default();
        for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("read line {}", number + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line = serde_json::from_str(&line)
                .with_context(|| format!("line {}: parse JSON", number + 1))?;
            dataset.add(parsed.collection, parsed.key, parsed.value);
        }
        anyhow::ensure!(
            !dataset.records.is_empty(),
            "{} holds no records",
            path.display()
        );
        Ok(dataset)
    }

    /// The generated game world of `records` records (see `generate`): the same every run.
    ///
    /// # Errors
    /// When `records` is 0.
    pub fn generate(records: usize) -> anyhow::Result<Dataset> {
        anyhow::ensure!(records > 0, "--records must be at least 1");
        let mut dataset = Dataset::default();
        for (collection, key, value) in crate::generate::generate(records) {
            let value = RawValue::from_string(value.to_string()).context("encode a value")?;
            dataset.add(collection.to_owned(), key, value);
        }
        Ok(dataset)
    }

    /// Writes the records as JSON lines, the format `load` (and `strongbox import`) reads.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let file =
            std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
        let mut writer = std::io::BufWriter::new(file);
        for (collection, key, value) in &self.records {
            let line = serde_json::json!({"collection": collection, "key": key, "value": value});
            writeln!(writer, "{line}").with_context(|| format!("write {}", path.display()))?;
        }
        writer
            .flush()
            .with_context(|| format!("write {}", path.display()))
    }

    /// Appends a record.
    fn add(&mut self, collection: String, key: String, value: Box<RawValue>) {
        self.raw_bytes += value.get().len() as u64;
        self.by_collection
            .entry(collection.clone())
            .or_default()
            .push(self.records.len());
        self.records.push((collection, key, value));
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
