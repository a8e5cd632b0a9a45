//! Micro-benchmarks of the write path's CPU work on a realistic value (a BitCraps game session
//! from the sample data): serialize, hash, compress with each codec and level (and with a
//! dictionary trained on similar sessions), and decode. `serialize` is the store's path
//! (`Format::serialize`, which refuses NaN and infinities); `serialize_unchecked` is plain
//! `serde_json::to_vec` in the same run, so the ratio is the check's cost, on the session and
//! on a float-heavy value.
//! Run: `cargo bench -p strongbox-store --bench codec`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strongbox::blob::{BlobId, EncodedBlob};
use strongbox::codec::{self, Algorithm, Compression, Format, Level};

/// A float-heavy typed value: a sensor reading with a few hundred samples.
#[derive(serde::Serialize)]
struct Reading {
    sensor: String,
    position: [f64; 3],
    samples: Vec<f32>,
    mean: f64,
    calibrated: Option<f64>,
}

fn reading() -> Reading {
    Reading {
        sensor: "table-7/dice-cam".to_owned(),
        position: [1.25, -0.5, 3.0e-3],
        samples: (0..256u16).map(|i| f32::from(i) * 0.37 - 12.5).collect(),
        mean: 35.114_583_333,
        calibrated: Some(0.998),
    }
}

/// A game session like the sample data's: nested, repetitive JSON of about 2 KiB.
fn session() -> serde_json::Value {
    session_numbered(14)
}

fn session_numbered(round: u64) -> serde_json::Value {
    let bets: Vec<_> = (0..12)
        .map(|i| serde_json::json!({"player": format!("{:032x}", i * round), "kind": "Pass", "amount": 25 * i + round, "odds": [1, 1]}))
        .collect();
    serde_json::json!({
        "phase": "Point", "point": 6, "round": round, "shooter": "d23a1868ef8e11b9b3b07fad9fb32654",
        "bets": bets,
        "rolls": [[3, 3], [2, 5], [6, 1], [4, 2]],
        "config": {"table_type": "classic", "min_bet": 10, "max_bet": 5000, "house_edge_bps": 141},
    })
}

fn codec(c: &mut Criterion) {
    let value = session();
    let raw = serde_json::to_vec(&value).expect("a JSON value serializes");
    let samples: Vec<Vec<u8>> = (0..500)
        .map(|round| serde_json::to_vec(&session_numbered(round)).expect("a JSON value serializes"))
        .collect();
    let dictionary = codec::dictionary::train(&samples)
        .and_then(|bytes| codec::Dictionary::new(bytes, 3).ok())
        .expect("sessions train a dictionary");
    let mut dictionaries = std::collections::HashMap::new();
    dictionaries.insert(dictionary.id(), std::sync::Arc::new(dictionary));
    let dictionary = dictionaries.values().next().cloned();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("serialize", |b| {
        b.iter(|| Format::Json.serialize(black_box(&value)))
    });
    group.bench_function("serialize_unchecked", |b| {
        b.iter(|| serde_json::to_vec(black_box(&value)))
    });
    let floats = reading();
    group.bench_function("serialize_floats", |b| {
        b.iter(|| Format::Json.serialize(black_box(&floats)))
    });
    group.bench_function("serialize_floats_unchecked", |b| {
        b.iter(|| serde_json::to_vec(black_box(&floats)))
    });
    group.bench_function("blake3", |b| b.iter(|| BlobId::of(black_box(&raw))));
    for (name, algorithm, level, with_dictionary) in [
        ("zstd_fast", Algorithm::Zstd, Level::Fast, false),
        ("zstd_balanced", Algorithm::Zstd, Level::Balanced, false),
        ("zstd_dictionary", Algorithm::Zstd, Level::Balanced, true),
        ("gzip_balanced", Algorithm::Gzip, Level::Balanced, false),
    ] {
        let compression = Compression { algorithm, level };
        let dictionary = dictionary.as_deref().filter(|_| with_dictionary);
        group.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| EncodedBlob::encode(black_box(&raw), compression, dictionary))
        });
        let stored = codec::encode(&raw, compression, dictionary);
        println!("{name}: {} of {} bytes", stored.len(), raw.len());
        group.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| codec::decode(black_box(&stored), 1 << 20, &dictionaries))
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
