//! Keys, listing and collections.

use strongbox::{ListOptions, Store};

pub async fn list_is_in_byte_order_with_prefix_cursor_and_limit(store: &Store) {
    let keys = [
        "b",
        "a",
        "ab",
        "a/1",
        "a/2",
        "a/10",
        "é",
        "Z",
        "a\u{10FFFF}x",
        "c",
    ];
    for key in keys {
        store.store("k", key, &key).await.unwrap();
    }
    store.store("other", "a/3", &0).await.unwrap();
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort_unstable();
    assert_eq!(store.list("k", ListOptions::all()).await.unwrap(), expected);

    assert_eq!(
        store
            .list("k", ListOptions::all().prefix("a/"))
            .await
            .unwrap(),
        ["a/1", "a/10", "a/2"]
    );
    assert_eq!(
        store
            .list("k", ListOptions::all().prefix("a"))
            .await
            .unwrap(),
        ["a", "a/1", "a/10", "a/2", "ab", "a\u{10FFFF}x"]
    );
    assert_eq!(
        store
            .list("k", ListOptions::all().prefix("a/").start_after("a/1"))
            .await
            .unwrap(),
        ["a/10", "a/2"]
    );
    assert!(
        store
            .list("k", ListOptions::all().prefix("zz"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list("k", ListOptions::all().limit(0))
            .await
            .unwrap()
            .is_empty()
    );

    // Paging with a cursor visits every key exactly once, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut options = ListOptions::all().limit(3);
        if let Some(after) = cursor.take() {
            options = options.start_after(after);
        }
        let page = store.list("k", options).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last().cloned() else {
            break;
        };
        paged.extend(page);
        cursor = Some(last);
    }
    assert_eq!(paged, expected);
}

pub async fn count_collections_exists_and_delete(store: &Store) {
    assert!(store.collections().await.unwrap().is_empty());
    for i in 0..5 {
        store.store("players", &format!("p{i}"), &i).await.unwrap();
    }
    store.store("chat", "m1", "hi").await.unwrap();
    assert_eq!(store.count("players").await.unwrap(), 5);
    assert_eq!(store.count("nobody").await.unwrap(), 0);
    assert_eq!(store.collections().await.unwrap(), ["chat", "players"]);
    assert!(store.exists("chat", "m1").await.unwrap());
    assert!(store.delete("chat", "m1").await.unwrap());
    assert!(!store.delete("chat", "m1").await.unwrap());
    assert!(!store.exists("chat", "m1").await.unwrap());
    assert_eq!(store.retrieve::<String>("chat", "m1").await.unwrap(), None);
    assert_eq!(store.collections().await.unwrap(), ["players"]);
}

pub async fn names_with_sql_metacharacters_and_unicode_are_plain_data(store: &Store) {
    let hostile = [
        "'; DROP TABLE records; --",
        "\" OR 1=1 --",
        "%_*?[]",
        "Robert'); DELETE FROM blobs;--",
        "日本語のキー",
        "emoji 🎲🎲",
        "tab\tand\nnewline",
    ];
    for (i, key) in hostile.iter().enumerate() {
        store
            .store("x'; DROP TABLE blobs; --", key, &i)
            .await
            .unwrap();
    }
    for (i, key) in hostile.iter().enumerate() {
        assert_eq!(
            store
                .retrieve::<usize>("x'; DROP TABLE blobs; --", key)
                .await
                .unwrap(),
            Some(i)
        );
    }
    assert_eq!(
        store.count("x'; DROP TABLE blobs; --").await.unwrap(),
        hostile.len() as u64
    );
    // A LIKE-style prefix has no wildcard meaning.
    assert_eq!(
        store
            .list("x'; DROP TABLE blobs; --", ListOptions::all().prefix("%"))
            .await
            .unwrap(),
        ["%_*?[]"]
    );
    let long_key = "k".repeat(strongbox::name::MAX_KEY_BYTES);
    store.store("long", &long_key, &1).await.unwrap();
    assert_eq!(
        store.retrieve::<i32>("long", &long_key).await.unwrap(),
        Some(1)
    );
}
