//! The compression dictionaries a store knows: every one by id (for reading) and the current
//! one of each collection (for writing). Every read and write consults it; `training` adds to
//! it.
//!
//! **Invariants:** readers never lock: the registry is swapped whole ([`ArcSwap`]) when the
//! database's dictionaries are reloaded. It only reads dictionaries from the backend, never
//! writes or deletes one, and knows nothing of the store above it. A stored dictionary that
//! cannot be loaded is listed as broken, never a reason to fail the others.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::backend::{Backend, DictionaryStorage};
use crate::codec::{Compression, Dictionary, DictionaryLookup};
use crate::error::Result;

/// The dictionaries a store knows: every one by id (for reading), and the newest of each
/// collection (for writing). Swapped whole when one is added, so readers never lock.
#[derive(Debug, Default)]
pub(crate) struct Known {
    by_id: HashMap<u32, Arc<Dictionary>>,
    current: HashMap<String, (Arc<Dictionary>, f64)>,
    /// Stored dictionaries that cannot be loaded (damaged), with the reason.
    broken: Vec<(u32, String)>,
}

impl DictionaryLookup for Known {
    fn dictionary(&self, id: u32) -> Option<&Dictionary> {
        self.by_id.get(&id).map(|dictionary| &**dictionary)
    }
}

impl Known {
    /// Stored dictionaries that cannot be loaded, with the reason: `verify` reports them.
    pub(crate) fn broken(&self) -> &[(u32, String)] {
        &self.broken
    }

    /// How many collections compress new values with a dictionary.
    pub(crate) fn collections(&self) -> usize {
        self.current.len()
    }

    /// The dictionary new values of `collection` are compressed with, and its compressed/raw
    /// ratio on held-out values when it was trained.
    pub(crate) fn current(&self, collection: &str) -> Option<&(Arc<Dictionary>, f64)> {
        self.current.get(collection)
    }

    /// The dictionary new values of `collection` are compressed with.
    pub(crate) fn for_collection(&self, collection: &str) -> Option<&Dictionary> {
        self.current
            .get(collection)
            .map(|(dictionary, _)| &**dictionary)
    }
}

/// A store's dictionaries, loaded from its database.
#[derive(Debug)]
pub(crate) struct Dictionaries {
    level: i32,
    known: ArcSwap<Known>,
}

impl Dictionaries {
    /// Empty, for compression `level`; call [`Dictionaries::reload`] to fill it.
    pub(crate) fn new(compression: Compression) -> Self {
        Dictionaries {
            level: compression.level.zstd_level(),
            known: ArcSwap::from_pointee(Known::default()),
        }
    }

    /// The dictionaries known now.
    pub(crate) fn load(&self) -> Arc<Known> {
        self.known.load_full()
    }

    /// Reads every dictionary from the database (keeping those already prepared). A damaged
    /// one is left out and listed in [`Known::broken`]: the values compressed with it fail to
    /// decode, as corrupt, and everything else keeps working.
    pub(crate) async fn reload(&self, backend: &Backend) -> Result<()> {
        let stored = backend.dictionaries().await?;
        let known = self.load();
        let mut by_id = known.by_id.clone();
        let mut current = HashMap::new();
        let mut broken = Vec::new();
        for row in stored {
            let dictionary = match by_id.get(&row.id) {
                Some(dictionary) => Arc::clone(dictionary),
                None => match Dictionary::new(row.bytes, self.level) {
                    Ok(dictionary) if dictionary.id() == row.id => {
                        let dictionary = Arc::new(dictionary);
                        by_id.insert(row.id, Arc::clone(&dictionary));
                        dictionary
                    }
                    Ok(dictionary) => {
                        let detail = format!("its bytes carry id {:08x}", dictionary.id());
                        broken.push((row.id, detail));
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(id = row.id, %error, "a compression dictionary is damaged");
                        broken.push((row.id, error.to_string()));
                        continue;
                    }
                },
            };
            // Rows come oldest first: the last one of a collection is its current dictionary.
            current.insert(row.collection, (dictionary, row.ratio));
        }
        self.known.store(Arc::new(Known {
            by_id,
            current,
            broken,
        }));
        Ok(())
    }
}
