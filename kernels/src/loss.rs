//! Softmax cross-entropy at masked targets, reduced to its mean in the same pass.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use std::sync::Arc;

use crate::route::{self, Route};
use crate::simd;

/// Mean cross-entropy of `logits` at `targets` over the positions whose `mask` is non-zero
/// (weighted by the mask): `sum(mask * -log_softmax(logits)[target]) / max(sum(mask), 1)`.
/// Returns a `[1]` tensor.
///
/// Fused on flex (plain or autodiff, f32): one pass over the logits forward, one backward,
/// no logits-sized intermediate but the gradient itself. On other devices
/// [`masked_cross_entropy_reference`].
///
/// # Shapes
///
/// - logits: `[batch, seq, vocab]`
/// - targets, mask: `[batch, seq]`; targets below `vocab`
/// - output: `[1]`
///
/// # Panics
///
/// When shapes disagree or (on flex) a target is out of range.
pub fn masked_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    mask: Tensor<2>,
) -> Tensor<1> {
    let [rows, seq, vocab] = logits.dims();
    assert_eq!(
        targets.dims(),
        [rows, seq],
        "cross-entropy: targets against logits"
    );
    assert_eq!(
        mask.dims(),
        [rows, seq],
        "cross-entropy: mask against logits"
    );
    let device = logits.device();
    let Some(flavour) = route::route(&device, logits.dtype()) else {
        return masked_cross_entropy_reference(logits, targets, mask);
    };
    // Small host copies ([batch, seq]); the logits stay where they are.
    let targets: Vec<i64> = targets
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    let mask: Vec<f32> = mask
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let targets: Vec<u32> = targets
        .iter()
        .map(|&t| {
            assert!(
                t >= 0 && (t as usize) < vocab,
                "cross-entropy: target {t} not below vocab {vocab}"
            );
            t as u32
        })
        .collect();
    match flavour {
        Route::Plain => {
            let l = route::contiguous(route::plain(logits));
            let (loss, _) = forward_values(route::values(&l), &targets, &mask, vocab);
            route::from_plain(route::new_tensor(vec![loss], &[1]))
        }
        Route::Tracked => {
            let (l, node) = route::tracked(logits).into_parts();
            let l = route::contiguous(l);
            let (loss, lse) = forward_values(route::values(&l), &targets, &mask, vocab);
            let out = route::new_tensor(vec![loss], &[1]);
            let out = match CrossEntropyBackward
                .prepare::<NoCheckpointing>([node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(
                    CrossEntropyState {
                        logits: l,
                        targets: targets.into(),
                        mask: mask.into(),
                        log_sum_exp: lse.into(),
                        shape: [rows, seq, vocab],
                    },
                    out,
                ),
                OpsKind::UnTracked(prep) => prep.finish(out),
            };
            route::from_tracked(out)
        }
    }
}

/// [`masked_cross_entropy`] composed from burn's operations (log-softmax, gather, mask,
/// sums): the fallback on other devices and the tests' oracle; the models' loss before the
/// fused kernel existed.
pub fn masked_cross_entropy_reference(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    mask: Tensor<2>,
) -> Tensor<1> {
    let [rows, seq, _] = logits.dims();
    let target_log_probs = log_softmax(logits, 2)
        .gather(2, targets.unsqueeze_dim::<3>(2))
        .reshape([rows, seq]);
    let total = target_log_probs.neg().mul(mask.clone()).sum();
    // The clamp only keeps an all-zero mask from dividing by zero.
    let count = mask.sum().clamp_min(1.0);
    total.div(count)
}

/// Rows per task; the loss is summed per block, then over blocks in order.
const ROWS_PER_TASK: usize = 16;

/// The forward kernel: the masked mean loss, and each row's log-sum-exp.
pub fn forward_values(
    logits: &[f32],
    targets: &[u32],
    mask: &[f32],
    vocab: usize,
) -> (f32, Vec<f32>) {
    let mut lse = vec![0.0f32; targets.len()];
    if vocab == 0 || targets.is_empty() {
        return (0.0, lse);
    }
    let partial: Vec<f64> = lse
        .par_chunks_mut(ROWS_PER_TASK)
        .zip(logits.par_chunks(ROWS_PER_TASK * vocab))
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .zip(mask.par_chunks(ROWS_PER_TASK))
        .map(|(((lse, logits), targets), mask)| {
            let mut scratch = vec![0.0f32; vocab];
            let mut total = 0.0f64;
            for (((lse, row), &t), &m) in lse
                .iter_mut()
                .zip(logits.chunks(vocab))
                .zip(targets)
                .zip(mask)
            {
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
                scratch.copy_from_slice(row);
                let sum = simd::exp_shifted_sum(&mut scratch, max);
                *lse = max + sum.ln();
                if m != 0.0 {
                    total += m as f64 * (*lse - row[t as usize]) as f64;
                }
            }
            total
        })
        .collect();
    let total: f64 = partial.iter().sum();
    let count: f64 = mask.iter().map(|&m| m as f64).sum::<f64>().max(1.0);
    ((total / count) as f32, lse)
}

/// The backward kernel: `d logits = grad * mask / count * (softmax - onehot(target))`.
pub fn backward_values(
    logits: &[f32],
    targets: &[u32],
    mask: &[f32],
    lse: &[f32],
    vocab: usize,
    grad: f32,
) -> Vec<f32> {
    let mut d = vec![0.0f32; logits.len()];
    if vocab == 0 {
        return d;
    }
    let count: f64 = mask.iter().map(|&m| m as f64).sum::<f64>().max(1.0);
    let scale = grad / count as f32;
    d.par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab))
        .zip(targets.par_iter().zip(mask).zip(lse))
        .for_each(|((d, row), ((&t, &m), &lse))| {
            if m == 0.0 {
                return;
            }
            d.copy_from_slice(row);
            simd::exp_shifted_sum(d, lse);
            let w = scale * m;
            simd::scale_in_place(d, w);
            d[t as usize] -= w;
        });
    d
}

#[derive(Debug, Clone)]
struct CrossEntropyState {
    logits: FlexTensor,
    targets: Arc<[u32]>,
    mask: Arc<[f32]>,
    log_sum_exp: Arc<[f32]>,
    shape: [usize; 3],
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl Backward<Flex, 1> for CrossEntropyBackward {
    type State = CrossEntropyState;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let g = route::contiguous(grads.consume::<Flex>(&ops.node));
        let g = route::values(&g)[0];
        let s = ops.state;
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let d = backward_values(
                route::values(&s.logits),
                &s.targets,
                &s.mask,
                &s.log_sum_exp,
                s.shape[2],
                g,
            );
            grads.register::<Flex>(node.id, route::new_tensor(d, &s.shape));
        }
    }
}
