//! Which records a restore writes: [`Selection`], from the collections and keys of
//! [`RestoreOptions`], and [`Presence`], which proves each one named is in the backup.
//!
//! A record is restored when its collection is one of `RestoreOptions::collections`, or its
//! (collection, key) one of `RestoreOptions::keys`; with neither, every record is. Naming a
//! collection or a key the backup does not hold is an error, found before anything is
//! written.

use std::collections::HashSet;

use super::options::RestoreOptions;
use crate::error::{Error, Result};
use crate::name::{validate_collection, validate_key};

/// The collections and keys a restore is asked for.
#[derive(Debug, Clone, Default)]
pub(super) struct Selection {
    collections: HashSet<String>,
    keys: HashSet<(String, String)>,
}

impl Selection {
    /// The selection `options` ask for, every name checked.
    ///
    /// # Errors
    /// `Error::InvalidName` for an invalid collection name or key.
    pub(super) fn new(options: &RestoreOptions) -> Result<Self> {
        for collection in &options.collections {
            validate_collection(collection)?;
        }
        for (collection, key) in &options.keys {
            validate_collection(collection)?;
            validate_key(key)?;
        }
        Ok(Selection {
            collections: options.collections.iter().cloned().collect(),
            keys: options.keys.iter().cloned().collect(),
        })
    }

    /// Whether the record `collection`/`key` is restored.
    pub(super) fn wants(&self, collection: &str, key: &str) -> bool {
        (self.collections.is_empty() && self.keys.is_empty())
            || self.collections.contains(collection)
            || self.keys.contains(&(collection.to_owned(), key.to_owned()))
    }

    /// A tracker of which names the backup holds.
    pub(super) fn presence(&self) -> Presence<'_> {
        Presence {
            selection: self,
            collections: HashSet::new(),
            keys: HashSet::new(),
        }
    }
}

/// The collections and keys of a [`Selection`] seen in a backup so far.
pub(super) struct Presence<'a> {
    selection: &'a Selection,
    collections: HashSet<String>,
    keys: HashSet<(String, String)>,
}

impl Presence<'_> {
    /// Notes a record of the backup.
    pub(super) fn see(&mut self, collection: &str, key: &str) {
        if self.selection.collections.contains(collection) && !self.collections.contains(collection)
        {
            self.collections.insert(collection.to_owned());
        }
        if !self.selection.keys.is_empty() {
            let name = (collection.to_owned(), key.to_owned());
            if self.selection.keys.contains(&name) {
                self.keys.insert(name);
            }
        }
    }

    /// Checks that the backup held every collection and key asked for.
    ///
    /// # Errors
    /// `Error::InvalidName` naming the first one it lacks.
    pub(super) fn check(&self) -> Result<()> {
        let mut missing_collections: Vec<&String> = self
            .selection
            .collections
            .difference(&self.collections)
            .collect();
        missing_collections.sort();
        if let Some(missing) = missing_collections.first() {
            return Err(Error::InvalidName {
                what: "collection",
                name: (*missing).clone(),
                reason: "is not in this backup",
            });
        }
        let mut missing_keys: Vec<&(String, String)> =
            self.selection.keys.difference(&self.keys).collect();
        missing_keys.sort();
        if let Some((collection, key)) = missing_keys.first() {
            return Err(Error::InvalidName {
                what: "key",
                name: format!("{collection}/{key}"),
                reason: "is not in this backup",
            });
        }
        Ok(())
    }
}
