//! Micro-benchmarks of the write path's CPU work on a realistic value (a BitCraps game session
//! from the sample data): serialize, hash, compress with each codec and level, and decode.
//! Run: `cargo bench -p strongbox --bench codec`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strongbox::blob::{BlobId, EncodedBlob};
use strongbox::codec::{self, Algorithm, Compression, Level};

/// A game session like the sample data's: nested, repetitive JSON of about 2 KiB.
fn session() -> serde_json::Value {
    let bets: Vec<_> = (0..12)
        .map(|i| serde_json::json!({"player": format!("{i:032x}"), "kind": "Pass", "amount": 25 * i, "odds": [1, 1]}))
        .collect();
    serde_json::json!({
        "phase": "Point", "point": 6, "round": 14, "shooter": "d23a1868ef8e11b9b3b07fad9fb32654",
        "bets": bets,
        "rolls": [[3, 3], [2, 5], [6, 1], [4, 2]],
        "config": {"table_type": "classic", "min_bet": 10, "max_bet": 5000, "house_edge_bps": 141},
    })
}

fn codec(c: &mut Criterion) {
    let value = session();
    let raw = serde_json::to_vec(&value).expect("a JSON value serializes");
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("serialize", |b| {
        b.iter(|| serde_json::to_vec(black_box(&value)))
    });
    group.bench_function("blake3", |b| b.iter(|| BlobId::of(black_box(&raw))));
    for (name, algorithm, level) in [
        ("zstd_fast", Algorithm::Zstd, Level::Fast),
        ("zstd_balanced", Algorithm::Zstd, Level::Balanced),
        ("gzip_balanced", Algorithm::Gzip, Level::Balanced),
    ] {
        let compression = Compression { algorithm, level };
        group.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| EncodedBlob::encode(black_box(&raw), compression))
        });
        let stored = codec::encode(&raw, compression);
        group.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| codec::decode(black_box(&stored), 1 << 20))
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
