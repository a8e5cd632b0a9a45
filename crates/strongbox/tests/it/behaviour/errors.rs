//! Bad input gets a typed error and changes nothing.

use strongbox::{Error, Store};

pub async fn invalid_names_are_rejected(store: &Store) {
    let long_key = "k".repeat(strongbox::name::MAX_KEY_BYTES + 1);
    let long_collection = "c".repeat(strongbox::name::MAX_COLLECTION_BYTES + 1);
    for (collection, key) in [
        ("", "k"),
        ("c", ""),
        ("c", "a\0b"),
        ("c\0", "k"),
        ("c", long_key.as_str()),
        (long_collection.as_str(), "k"),
    ] {
        let error = store.store(collection, key, &1).await.unwrap_err();
        assert!(matches!(error, Error::InvalidName { .. }), "{error}");
        let error = store.retrieve::<i32>(collection, key).await.unwrap_err();
        assert!(matches!(error, Error::InvalidName { .. }), "{error}");
        let error = store.delete(collection, key).await.unwrap_err();
        assert!(matches!(error, Error::InvalidName { .. }), "{error}");
        assert!(store.transaction().store(collection, key, &1).is_err());
    }
    assert!(store.collections().await.unwrap().is_empty());
}

pub async fn oversized_values_are_rejected(store: &Store) {
    let max = store.config().max_value_bytes;
    // A JSON string of `max` characters serializes to max + 2 bytes.
    let too_big = "x".repeat(max);
    let error = store.store("big", "k", &too_big).await.unwrap_err();
    assert!(
        matches!(&error, Error::ValueTooLarge { size, max: limit, key, .. } if *size == max + 2 && *limit == max && key == "k"),
        "{error}"
    );
    assert!(!store.exists("big", "k").await.unwrap());
    let fits = "x".repeat(max - 2);
    store.store("big", "k", &fits).await.unwrap();
    assert_eq!(
        store
            .retrieve::<String>("big", "k")
            .await
            .unwrap()
            .map(|s| s.len()),
        Some(max - 2)
    );
}
