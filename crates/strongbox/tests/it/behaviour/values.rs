//! Typed values survive the round trip exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strongbox::{Error, Store, Version};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Phase {
    ComeOut,
    Point(u8),
    Resolved { winner: String, payout: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Session {
    id: u128,
    phase: Phase,
    players: Vec<String>,
    bets: BTreeMap<String, i64>,
    odds: f64,
    shooter: Option<String>,
    blob: Vec<u8>,
}

pub async fn round_trips_of_many_value_types(store: &Store) {
    let session = Session {
        id: u128::MAX - 7,
        phase: Phase::Resolved {
            winner: "żółw 🎲".into(),
            payout: u64::MAX,
        },
        players: vec!["alice".into(), "bob".into()],
        bets: BTreeMap::from([("pass".into(), -5), ("field".into(), i64::MIN)]),
        odds: 1.0 / 3.0,
        shooter: None,
        blob: (0..=255).collect(),
    };
    store.store("sessions", "s1", &session).await.unwrap();
    assert_eq!(
        store.retrieve::<Session>("sessions", "s1").await.unwrap(),
        Some(session)
    );

    store.store("phases", "p", &Phase::Point(6)).await.unwrap();
    assert_eq!(
        store.retrieve::<Phase>("phases", "p").await.unwrap(),
        Some(Phase::Point(6))
    );

    for (key, value) in [
        ("tiny", f64::MIN_POSITIVE),
        ("big", f64::MAX),
        ("neg", -0.1),
    ] {
        store.store("floats", key, &value).await.unwrap();
        let read: f64 = store.retrieve("floats", key).await.unwrap().unwrap();
        assert_eq!(read.to_bits(), value.to_bits(), "{key}");
    }

    store
        .store("strings", "s", "quote \" backslash \\ nul-free")
        .await
        .unwrap();
    assert_eq!(
        store
            .retrieve::<String>("strings", "s")
            .await
            .unwrap()
            .as_deref(),
        Some("quote \" backslash \\ nul-free")
    );
    store.store("units", "u", &()).await.unwrap();
    assert_eq!(store.retrieve::<()>("units", "u").await.unwrap(), Some(()));
    let json = serde_json::json!({"nested": {"list": [1, "two", null, true, 3.5]}});
    store.store("json", "j", &json).await.unwrap();
    assert_eq!(
        store
            .retrieve::<serde_json::Value>("json", "j")
            .await
            .unwrap(),
        Some(json)
    );
    assert_eq!(store.retrieve::<u64>("json", "absent").await.unwrap(), None);
}

pub async fn overwrite_bumps_the_version_and_keeps_created_at(store: &Store) {
    assert_eq!(
        store.store("players", "alice", &1).await.unwrap(),
        Version::FIRST
    );
    let first = store
        .retrieve_record::<u32>("players", "alice")
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        store.store("players", "alice", &2).await.unwrap(),
        Version::new(2)
    );
    let second = store
        .retrieve_record::<u32>("players", "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.value, 2);
    assert_eq!(second.meta.version, Version::new(2));
    assert_eq!(second.meta.created_at_ms, first.meta.created_at_ms);
    assert!(second.meta.updated_at_ms > first.meta.updated_at_ms);
    assert_eq!(second.meta.size_bytes, 1);
    assert_eq!(
        store.version("players", "alice").await.unwrap(),
        Some(Version::new(2))
    );
}

pub async fn a_value_of_another_type_is_a_serialization_error(store: &Store) {
    store
        .store("players", "alice", "not a number")
        .await
        .unwrap();
    let error = store.retrieve::<u64>("players", "alice").await.unwrap_err();
    assert!(
        matches!(&error, Error::Serialization { action: "deserialize", collection, key, .. }
            if collection == "players" && key == "alice"),
        "{error}"
    );
    // A map with non-string keys cannot be JSON: the write is refused before touching the database.
    let map = BTreeMap::from([((1, 2), "x")]);
    let error = store.store("maps", "m", &map).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Serialization {
                action: "serialize",
                ..
            }
        ),
        "{error}"
    );
    assert!(!store.exists("maps", "m").await.unwrap());
}

pub async fn compression_is_kept_only_when_smaller(store: &Store) {
    store.store("small", "k", &7).await.unwrap();
    let stats = store.storage_stats().await.unwrap();
    // One tag byte over the serialized size: stored raw.
    assert_eq!(stats.stored_bytes, stats.unique_bytes + 1);

    let big = vec!["the same chat line, again and again"; 500];
    store.store("big", "k", &big).await.unwrap();
    let stats = store.storage_stats().await.unwrap();
    let big_raw = serde_json::to_vec(&big).unwrap().len() as u64;
    assert_eq!(stats.unique_bytes, big_raw + 1);
    assert!(stats.stored_bytes < big_raw / 10, "{stats:?}");
    assert_eq!(
        store
            .retrieve::<Vec<String>>("big", "k")
            .await
            .unwrap()
            .unwrap()
            .len(),
        500
    );
}
