//! Typed collections: put, get, get_many, update, delete, and scans as streams.

use futures_util::TryStreamExt;
use strongbox::{Entry, Error, SCAN_PAGE, Scan, Store};

use crate::common::{Player, player};

/// The keys a scan yields, in order.
async fn keys(
    stream: futures_util::stream::BoxStream<'static, strongbox::Result<Entry<u32>>>,
) -> Vec<String> {
    stream
        .map_ok(|entry| entry.key)
        .try_collect()
        .await
        .unwrap()
}

pub async fn a_typed_collection_puts_gets_updates_and_deletes(store: &Store) {
    let players = store.collection::<Player>("players").unwrap();
    assert!(matches!(
        store.collection::<Player>(""),
        Err(Error::InvalidName { .. })
    ));
    let version = players.put("alice", &player("alice", 100)).await.unwrap();
    players.put("bob", &player("bob", 50)).await.unwrap();
    assert_eq!(
        players.get("alice").await.unwrap(),
        Some(player("alice", 100))
    );
    let many = players
        .get_many(["bob", "nobody", "alice", "bob"])
        .await
        .unwrap();
    assert_eq!(
        many,
        [
            Some(player("bob", 50)),
            None,
            Some(player("alice", 100)),
            Some(player("bob", 50))
        ],
        "in the order asked, a repeated key each time"
    );
    assert!(matches!(
        players.get_many(["alice", ""]).await,
        Err(Error::InvalidName { .. })
    ));
    let updated = players
        .update("alice", |p| {
            p.map(|mut p| {
                p.chips += 10;
                p
            })
        })
        .await
        .unwrap();
    assert_eq!(updated, Some(player("alice", 110)));
    assert_eq!(
        store.version("players", "alice").await.unwrap(),
        Some(version.next())
    );
    // `None` out deletes; `None` in creates.
    players.update("bob", |_| None).await.unwrap();
    assert_eq!(players.get("bob").await.unwrap(), None);
    players
        .update("carol", |p| Some(p.unwrap_or_else(|| player("carol", 1))))
        .await
        .unwrap();
    assert_eq!(
        players.get("carol").await.unwrap(),
        Some(player("carol", 1))
    );
    assert!(players.delete("carol").await.unwrap());
    assert!(!players.delete("carol").await.unwrap());
}

pub async fn scans_honour_bounds_prefixes_order_and_limits(store: &Store) {
    let numbers = store.collection::<u32>("numbers").unwrap();
    for (i, key) in ["a", "b", "ba", "bb", "c", "d/1", "d/2", "é"]
        .iter()
        .enumerate()
    {
        numbers.put(key, &(i as u32)).await.unwrap();
    }
    let all = keys(numbers.scan(Scan::all())).await;
    assert_eq!(all, ["a", "b", "ba", "bb", "c", "d/1", "d/2", "é"]);
    assert_eq!(
        keys(numbers.scan(Scan::prefix("b"))).await,
        ["b", "ba", "bb"]
    );
    assert_eq!(keys(numbers.scan(Scan::prefix("d/"))).await, ["d/1", "d/2"]);
    assert_eq!(
        keys(numbers.scan(Scan::range("b".."c"))).await,
        ["b", "ba", "bb"]
    );
    assert_eq!(
        keys(numbers.scan(Scan::range("b"..="c"))).await,
        ["b", "ba", "bb", "c"]
    );
    assert_eq!(
        keys(numbers.scan(Scan::range("d/1"..))).await,
        ["d/1", "d/2", "é"]
    );
    assert_eq!(keys(numbers.scan(Scan::range(.."b"))).await, ["a"]);
    assert_eq!(
        keys(numbers.scan(Scan::prefix("b").reverse())).await,
        ["bb", "ba", "b"]
    );
    assert_eq!(
        keys(numbers.scan(Scan::all().reverse().limit(2))).await,
        ["é", "d/2"]
    );
    assert_eq!(
        keys(numbers.scan(Scan::all().limit(0))).await,
        Vec::<String>::new()
    );
    assert!(keys(numbers.scan(Scan::range("x".."y"))).await.is_empty());
    assert!(keys(numbers.scan(Scan::prefix("zz"))).await.is_empty());
    assert!(
        keys(store.collection::<u32>("empty").unwrap().scan(Scan::all()))
            .await
            .is_empty()
    );
    // Entries carry their versions and values.
    let first: Entry<u32> = numbers
        .scan(Scan::prefix("c"))
        .try_next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.key.as_str(), first.value), ("c", 4));
    assert_eq!(
        Some(first.version),
        store.version("numbers", "c").await.unwrap()
    );
}

pub async fn scans_page_through_large_collections_and_concurrent_deletes(store: &Store) {
    // Enough pages that some are read only after the consumer has taken the first: a scan
    // reads at most two pages ahead of the one it is yielding (one in its channel, one
    // fetched and waiting), so pages from the fourth on are read after the deletes.
    let total = 8 * SCAN_PAGE as u32;
    let unread = 5 * SCAN_PAGE as u32;
    let numbers = store.collection::<u32>("many").unwrap();
    let mut tx = store.transaction();
    for i in 0..total {
        tx.store("many", &format!("k{i:04}"), &i).unwrap();
    }
    tx.commit().await.unwrap();
    let forward = keys(numbers.scan(Scan::all())).await;
    assert_eq!(forward.len(), total as usize);
    assert!(forward.windows(2).all(|pair| pair[0] < pair[1]));
    let backward = keys(numbers.scan(Scan::all().reverse())).await;
    assert_eq!(backward.iter().rev().cloned().collect::<Vec<_>>(), forward);
    assert_eq!(
        keys(numbers.scan(Scan::all().limit(300))).await,
        forward[..300]
    );

    // Deleting keys while a scan pages through: no key twice, order kept, every key not
    // deleted is yielded, and the deleted keys of pages read after the deletes are not.
    let mut stream = numbers.scan(Scan::all());
    let mut seen = Vec::new();
    while let Some(entry) = stream.try_next().await.unwrap() {
        if seen.is_empty() {
            for i in (unread..total).step_by(2) {
                numbers.delete(&format!("k{i:04}")).await.unwrap();
            }
        }
        seen.push(entry.key);
    }
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "keys out of order"
    );
    let numbers: Vec<u32> = seen.iter().map(|key| key[1..].parse().unwrap()).collect();
    assert!(numbers.iter().all(|&n| n < unread || n % 2 == 1));
    assert_eq!(seen.len() as u32, unread + (total - unread) / 2);
}

pub async fn prefixes_collections_and_whole_stores_are_deleted_with_exact_counts(store: &Store) {
    let numbers = store.collection::<u32>("doomed").unwrap();
    // More keys than one delete batch, and values shared between keys (deduplicated blobs).
    let mut tx = store.transaction();
    for i in 0..2_500u32 {
        let prefix = if i % 2 == 0 { "even" } else { "odd" };
        tx.store("doomed", &format!("{prefix}/{i:05}"), &(i % 7))
            .unwrap();
    }
    tx.commit().await.unwrap();
    store.store("kept", "shared", &3u32).await.unwrap();

    assert_eq!(numbers.delete_prefix("even/").await.unwrap(), 1_250);
    assert_eq!(store.count("doomed").await.unwrap(), 1_250);
    assert_eq!(numbers.delete_prefix("even/").await.unwrap(), 0);
    assert!(matches!(
        numbers.delete_prefix(&"x".repeat(100_000)).await,
        Err(Error::InvalidName { .. })
    ));
    assert_eq!(numbers.clear().await.unwrap(), 1_250);
    assert_eq!(store.count("doomed").await.unwrap(), 0);

    store.store("dropped", "a", &1u32).await.unwrap();
    store.store("dropped", "b", &3u32).await.unwrap();
    assert_eq!(store.drop_collection("dropped").await.unwrap(), 2);
    assert!(
        !store
            .collections()
            .await
            .unwrap()
            .contains(&"dropped".to_owned())
    );
    // The value shared with a dropped key is still there, and every count is exact (the
    // harness verifies the store after the test).
    assert_eq!(
        store.retrieve::<u32>("kept", "shared").await.unwrap(),
        Some(3)
    );
    assert!(store.verify().await.unwrap().is_clean());
}
