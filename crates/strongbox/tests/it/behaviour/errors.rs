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

/// A float JSON cannot hold, anywhere in a value.
#[derive(serde::Serialize)]
struct Reading {
    sensor: &'static str,
    mean: f64,
}

pub async fn nan_and_infinite_floats_are_refused_and_nothing_is_written(store: &Store) {
    fn refused(error: &Error, key: &str) -> bool {
        let explained = std::error::Error::source(error).is_some_and(|source| {
            source
                .to_string()
                .starts_with("NaN and infinite numbers cannot be stored exactly")
        });
        explained
            && matches!(error, Error::Serialization { action: "serialize", collection, key: k, .. }
                if collection == "floats" && k == key)
    }
    let errors = [
        ("nan", store.store("floats", "nan", &f64::NAN).await),
        ("inf", store.store("floats", "inf", &f64::INFINITY).await),
        (
            "field",
            store
                .store(
                    "floats",
                    "field",
                    &Reading {
                        sensor: "dice",
                        mean: f64::NAN,
                    },
                )
                .await,
        ),
        (
            "samples",
            store
                .store("floats", "samples", &vec![1.0f32, f32::NEG_INFINITY])
                .await,
        ),
    ];
    for (key, result) in errors {
        let error = result.unwrap_err();
        assert!(refused(&error, key), "{key}: {error:?}");
    }
    let mut tx = store.transaction();
    tx.store("floats", "ok", &1.5).unwrap();
    let error = tx
        .store("floats", "tx", &[f64::NAN])
        .map(|_| ())
        .unwrap_err();
    assert!(refused(&error, "tx"), "{error:?}");
    assert_eq!(tx.len(), 1, "the refused write was not added");
    drop(tx);
    assert_eq!(
        store.count("floats").await.unwrap(),
        0,
        "nothing was written"
    );

    // Ordinary floats, extreme ones included, still round-trip exactly.
    let finite = vec![0.1, -0.0, f64::MAX, f64::MIN_POSITIVE, 5e-324, 1.0 / 3.0];
    store.store("floats", "finite", &finite).await.unwrap();
    let back: Vec<f64> = store.retrieve("floats", "finite").await.unwrap().unwrap();
    assert_eq!(
        back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
        finite.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
    );
}
