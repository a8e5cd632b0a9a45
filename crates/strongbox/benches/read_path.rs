//! Micro-benchmarks of the read path on a real SQLite file: a cache hit against a cold read
//! (cache off) of the same value, in one run. Run: `cargo bench -p strongbox-store --bench read_path`.

use criterion::{Criterion, criterion_group, criterion_main};
use strongbox::{Config, Store};

fn read_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime starts");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bench.db");
    let value =
        serde_json::json!({"name": "royal_shooter693", "chips": 1000, "history": vec![[3, 4]; 40]});
    let (cached, cold) = runtime.block_on(async {
        let cached = Store::open(Config::new(&path))
            .await
            .expect("the store opens");
        for i in 0..1000 {
            cached
                .store("players", &format!("p{i:04}"), &value)
                .await
                .expect("a store");
        }
        let mut config = Config::new(&path);
        config.cache_capacity_bytes = 0;
        let cold = Store::open(config).await.expect("a second handle opens");
        (cached, cold)
    });
    let mut group = c.benchmark_group("retrieve");
    for (name, store) in [("cache_hit", &cached), ("cold", &cold)] {
        group.bench_function(name, |b| {
            let mut i = 0u32;
            b.iter(|| {
                i = (i + 1) % 1000;
                runtime
                    .block_on(store.retrieve::<serde_json::Value>("players", &format!("p{i:04}")))
                    .expect("a read")
            })
        });
    }
    group.finish();
    runtime.block_on(async {
        cached.close().await.expect("close");
        cold.close().await.expect("close");
    });
}

criterion_group!(benches, read_path);
criterion_main!(benches);
