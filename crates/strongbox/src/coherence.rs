//! Cache coherence across servers (PostgreSQL): the cache drops the keys other servers write,
//! as the backend hears of them ([`Invalidation`]), and catches up from the change feed on
//! what it may not have heard (while the backend's listener was disconnected).
//!
//! **Invariant:** the task keeps a *position* in the feed: no cached value is older than a
//! change numbered at or below it, because each such change's key was invalidated after the
//! change committed, or the whole cache was cleared after it committed. A catch-up reads the
//! changes after the position and invalidates exactly their keys; it clears the whole cache
//! only when it cannot (the changes were trimmed, or the read failed). Invalidating a key
//! again is harmless; missing one never happens: every change above the position is
//! announced to the listener or read by a later catch-up (see `backend::postgres::notify`).

use crate::backend::{Engine, Feed, Invalidation};
use crate::error::Result;
use crate::feed::FEED_PAGE;
use crate::store::Store;

/// Every change up to this sequence number is accounted for; `None`: not known.
type Position = Option<u64>;

/// Starts following the backend's invalidations, if it has any (other servers to hear from).
pub(crate) async fn start(store: &Store) {
    let Some(invalidations) = store.backend().take_invalidations() else {
        return;
    };
    // Read before anything is cached, so every read that fills the cache sees the changes up
    // to here.
    let position = match newest(store).await {
        Ok(newest) => Some(newest),
        Err(error) => {
            tracing::warn!(%error, "cannot read the change feed's position");
            None
        }
    };
    store.tasks().follow(
        "cache coherence",
        invalidations,
        store.downgrade(),
        position,
        |inner, position, invalidation| async move {
            apply(&Store::from_inner(inner), position, invalidation).await
        },
    );
}

/// Brings the cache in line with one invalidation; returns the new position.
async fn apply(store: &Store, position: Position, invalidation: Invalidation) -> Position {
    match invalidation {
        Invalidation::Key { collection, key } => {
            store.cache().invalidate(&collection, &key);
            position
        }
        Invalidation::All => {
            store.cache().clear();
            position
        }
        Invalidation::CatchUp => catch_up(store, position).await,
        Invalidation::HeardThrough(seq) => Some(position.map_or(seq, |position| position.max(seq))),
    }
}

/// Invalidates the keys of the changes after `position`, a page at a time; clears the whole
/// cache when it cannot. Returns the new position.
async fn catch_up(store: &Store, position: Position) -> Position {
    let Some(mut position) = position else {
        return clear(store).await;
    };
    loop {
        let page = match store
            .backend()
            .changes_after(position, FEED_PAGE, None)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "cannot read the change feed: the cache is cleared");
                store.cache().clear();
                return None;
            }
        };
        if page.trimmed_through > position {
            tracing::info!(
                position,
                trimmed_through = page.trimmed_through,
                "the change feed was trimmed past the cache's position: the cache is cleared"
            );
            // `newest` was read before the clear, so every change up to it is accounted for.
            store.cache().clear();
            return Some(page.newest);
        }
        for change in &page.changes {
            store.cache().invalidate(&change.collection, &change.key);
        }
        let is_last_page = page.changes.len() < FEED_PAGE;
        position = page.changes.last().map_or(position, |change| change.seq);
        if is_last_page {
            // The page's snapshot holds every change up to `newest`: none is left below it.
            return Some(position.max(page.newest));
        }
    }
}

/// Clears the cache, with a position read just before, so that every change up to it
/// committed before the clear (`None` when it cannot be read).
async fn clear(store: &Store) -> Position {
    let position = newest(store).await.ok();
    store.cache().clear();
    position
}

/// The newest sequence number committed (0 for an empty feed).
async fn newest(store: &Store) -> Result<u64> {
    Ok(store.backend().changes_after(0, 0, None).await?.newest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// Which of `keys` the cache holds.
    fn cached<'a>(store: &Store, keys: &[&'a str]) -> Vec<&'a str> {
        keys.iter()
            .copied()
            .filter(|key| store.cache().get("boards", key).is_some())
            .collect()
    }

    async fn write(store: &Store, key: &str) -> u64 {
        store.store("boards", key, &key).await.unwrap();
        newest(store).await.unwrap()
    }

    /// The position's rules on the feed of an SQLite store, which has no listener of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn catch_ups_invalidate_only_what_follows_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(dir.path().join("coherence.db")).with_changes_retention_count(1);
        let store = Store::open(config).await.unwrap();
        let keys = ["k1", "k2", "k3"];
        let start = Some(newest(&store).await.unwrap());
        write(&store, "k1").await;
        let heard = write(&store, "k2").await;
        assert_eq!(cached(&store, &keys), ["k1", "k2"], "written through");

        // A mark moves the position up (never down); a catch-up then reads only what follows.
        let position = apply(&store, start, Invalidation::HeardThrough(heard)).await;
        assert_eq!(position, Some(heard));
        assert_eq!(
            apply(&store, position, Invalidation::HeardThrough(1)).await,
            position
        );
        let newer = write(&store, "k3").await;
        let position = apply(&store, position, Invalidation::CatchUp).await;
        assert_eq!(position, Some(newer));
        assert_eq!(cached(&store, &keys), ["k1", "k2"]);
        assert_eq!(
            apply(&store, position, Invalidation::CatchUp).await,
            position
        );

        // From an unknown position: everything goes, and the position is the newest change.
        let position = apply(&store, None, Invalidation::CatchUp).await;
        assert_eq!(position, Some(newer));
        assert!(cached(&store, &keys).is_empty());

        // Trimmed past the position: everything goes.
        for key in keys {
            write(&store, key).await;
        }
        assert!(store.trim_changes().await.unwrap() > 0);
        let position = apply(&store, Some(newer), Invalidation::CatchUp).await;
        assert_eq!(position, Some(newest(&store).await.unwrap()));
        assert!(cached(&store, &keys).is_empty());

        // A feed that cannot be read: everything goes, and the position is unknown.
        store.store("boards", "k1", &"k1").await.unwrap();
        store.close().await.unwrap();
        assert_eq!(apply(&store, position, Invalidation::CatchUp).await, None);
        assert!(cached(&store, &keys).is_empty());
    }
}
