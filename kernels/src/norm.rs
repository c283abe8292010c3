//! Layer norm and RMS norm over the last axis, one pass per row forward and backward.

use burn::tensor::module::layer_norm as burn_layer_norm;
use burn::tensor::{DType, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use std::sync::Arc;

use crate::route::{self, Route};

/// Rows per task in the backward pass; the parameter gradients are summed per block of this
/// many rows, then over blocks in order, so their bits do not depend on the thread count.
const ROWS_PER_TASK: usize = 32;

/// `(x - mean) / sqrt(var + epsilon) * gamma + beta` over the last axis (biased variance),
/// fused on flex (plain or autodiff, f32); on other devices burn's `layer_norm`.
///
/// # Shapes
///
/// - input: `[..., d]`
/// - gamma, beta: `[d]`
/// - output: `[..., d]`
pub fn layer_norm<const D: usize>(
    input: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    let device = input.device();
    let [d] = gamma.dims();
    assert_eq!(
        input.dims()[D - 1],
        d,
        "layer_norm: last axis against gamma"
    );
    assert_eq!(beta.dims(), [d], "layer_norm: beta against gamma");
    let shape = input.dims();
    match route::route(&device, input.dtype()) {
        Some(Route::Plain) => {
            let x = route::contiguous(route::plain(input));
            let g = route::contiguous(route::plain(gamma));
            let b = route::contiguous(route::plain(beta));
            let (y, _) = forward(&x, &g, &b, &shape, epsilon as f32);
            route::from_plain(y)
        }
        Some(Route::Tracked) => {
            let (x, x_node) = route::tracked(input).into_parts();
            let (g, g_node) = route::tracked(gamma).into_parts();
            let (b, b_node) = route::tracked(beta).into_parts();
            let (x, g, b) = (
                route::contiguous(x),
                route::contiguous(g),
                route::contiguous(b),
            );
            let (y, rstd) = forward(&x, &g, &b, &shape, epsilon as f32);
            let out = match LayerNormBackward
                .prepare::<NoCheckpointing>([x_node, g_node, b_node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(
                    LayerNormState {
                        input: x,
                        gamma: g,
                        stats: Arc::new(rstd),
                        shape: shape.to_vec(),
                    },
                    y,
                ),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            route::from_tracked(out)
        }
        None => burn_layer_norm(input, gamma, Some(beta), epsilon),
    }
}

fn forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    shape: &[usize],
    epsilon: f32,
) -> (FlexTensor, Vec<f32>) {
    let (y, stats) = forward_values(
        route::values(x),
        route::values(gamma),
        route::values(beta),
        epsilon,
    );
    (route::new_tensor(y, shape), stats)
}

/// The forward kernel on row-major values (`x.len()` a multiple of `gamma.len()`): the
/// output, and per row its mean and `1 / sqrt(var + epsilon)` (interleaved).
pub fn forward_values(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let mut y = vec![0.0f32; x.len()];
    let mut stats = vec![0.0f32; 2 * (x.len() / d.max(1))];
    if d == 0 {
        return (y, stats);
    }
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .zip(stats.par_chunks_mut(2))
        .for_each(|((y, x), stats)| {
            let mean = crate::simd::sum(x) / d as f32;
            let var = crate::simd::centered_square_sum(x, mean) / d as f32;
            let rstd = 1.0 / (var + epsilon).sqrt();
            crate::simd::normalize_affine(x, y, mean, rstd, gamma, beta);
            stats[0] = mean;
            stats[1] = rstd;
        });
    (y, stats)
}

/// The backward kernel: gradients of input, gamma and beta from the output's gradient.
pub fn backward_values(
    x: &[f32],
    gamma: &[f32],
    stats: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let mut dx = vec![0.0f32; x.len()];
    if d == 0 || x.is_empty() {
        return (dx, vec![0.0; d], vec![0.0; d]);
    }
    let block = ROWS_PER_TASK * d;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(dy.par_chunks(block))
        .zip(stats.par_chunks(2 * ROWS_PER_TASK))
        .map(|(((dx, x), dy), stats)| {
            let mut dgamma = vec![0.0f32; d];
            let mut dbeta = vec![0.0f32; d];
            let mut g = vec![0.0f32; d];
            for (((dx, x), dy), s) in dx
                .chunks_mut(d)
                .zip(x.chunks(d))
                .zip(dy.chunks(d))
                .zip(stats.chunks(2))
            {
                crate::simd::layer_norm_backward_row(
                    x,
                    dy,
                    gamma,
                    s[0],
                    s[1],
                    dx,
                    &mut g,
                    &mut dgamma,
                    &mut dbeta,
                );
            }
            (dgamma, dbeta)
        })
        .collect();
    let mut dgamma = vec![0.0f32; d];
    let mut dbeta = vec![0.0f32; d];
    for (pg, pb) in &partials {
        for i in 0..d {
            dgamma[i] += pg[i];
            dbeta[i] += pb[i];
        }
    }
    (dx, dgamma, dbeta)
}

/// What a norm's backward keeps: its input, gamma, and per-row statistics (layer norm: mean
/// and `rstd` interleaved; RMS norm: `rstd`).
#[derive(Debug, Clone)]
struct LayerNormState {
    input: FlexTensor,
    gamma: FlexTensor,
    stats: Arc<Vec<f32>>,
    shape: Vec<usize>,
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    type State = LayerNormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = route::contiguous(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let (dx, dgamma, dbeta) = backward_values(
            route::values(&s.input),
            route::values(&s.gamma),
            &s.stats,
            route::values(&dy),
        );
        let d = dgamma.len();
        let [px, pg, pb] = ops.parents;
        if let Some(node) = px {
            grads.register::<Flex>(node.id, route::new_tensor(dx, &s.shape));
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, route::new_tensor(dgamma, &[d]));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, route::new_tensor(dbeta, &[d]));
        }
    }
}

/// `x / sqrt(mean(x^2) + epsilon) * gamma` over the last axis (burn's `RmsNorm`, Llama's
/// `LlamaRMSNorm`), fused on flex (plain or autodiff, f32); on other devices burn's
/// composition, `x * (mean(x^2) + epsilon)^-1/2 * gamma`.
///
/// # Shapes
///
/// - input: `[..., d]`
/// - gamma: `[d]`
/// - output: `[..., d]`
pub fn rms_norm<const D: usize>(input: Tensor<D>, gamma: Tensor<1>, epsilon: f64) -> Tensor<D> {
    let device = input.device();
    let [d] = gamma.dims();
    assert_eq!(input.dims()[D - 1], d, "rms_norm: last axis against gamma");
    let shape = input.dims();
    match route::route(&device, input.dtype()) {
        Some(Route::Plain) => {
            let x = route::contiguous(route::plain(input));
            let g = route::contiguous(route::plain(gamma));
            let (y, _) =
                rms_norm_forward_values(route::values(&x), route::values(&g), epsilon as f32);
            route::from_plain(route::new_tensor(y, &shape))
        }
        Some(Route::Tracked) => {
            let (x, x_node) = route::tracked(input).into_parts();
            let (g, g_node) = route::tracked(gamma).into_parts();
            let (x, g) = (route::contiguous(x), route::contiguous(g));
            let (y, rstd) =
                rms_norm_forward_values(route::values(&x), route::values(&g), epsilon as f32);
            let y = route::new_tensor(y, &shape);
            let out = match RmsNormBackward
                .prepare::<NoCheckpointing>([x_node, g_node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(
                    LayerNormState {
                        input: x,
                        gamma: g,
                        stats: Arc::new(rstd),
                        shape: shape.to_vec(),
                    },
                    y,
                ),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            route::from_tracked(out)
        }
        None => rms_norm_reference(input, gamma, epsilon),
    }
}

/// burn's composition of RMS norm (what `burn::nn::RmsNorm::forward` computes), the path
/// [`rms_norm`] replaces.
pub fn rms_norm_reference<const D: usize>(
    input: Tensor<D>,
    gamma: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    let dtype = input.dtype();
    let rms = (input.clone().cast(DType::F32).square().mean_dim(D - 1) + epsilon).sqrt();
    (input / rms.cast(dtype)) * gamma.unsqueeze()
}

/// RMS norm's forward kernel on row-major values (`x.len()` a multiple of `gamma.len()`): the
/// output, and per row `1 / sqrt(mean(x^2) + epsilon)`.
pub fn rms_norm_forward_values(x: &[f32], gamma: &[f32], epsilon: f32) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let mut y = vec![0.0f32; x.len()];
    let mut rstd = vec![0.0f32; x.len() / d.max(1)];
    if d == 0 {
        return (y, rstd);
    }
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .zip(rstd.par_iter_mut())
        .for_each(|((y, x), rstd)| {
            // `x - 0.0` is `x` bit for bit: the centred sum at 0 is the plain sum of squares.
            let r = 1.0 / (crate::simd::centered_square_sum(x, 0.0) / d as f32 + epsilon).sqrt();
            crate::simd::scale_by_gamma(x, y, r, gamma);
            *rstd = r;
        });
    (y, rstd)
}

/// RMS norm's backward kernel: gradients of input and gamma from the output's gradient.
pub fn rms_norm_backward_values(
    x: &[f32],
    gamma: &[f32],
    rstd: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let mut dx = vec![0.0f32; x.len()];
    if d == 0 || x.is_empty() {
        return (dx, vec![0.0; d]);
    }
    let block = ROWS_PER_TASK * d;
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(dy.par_chunks(block))
        .zip(rstd.par_chunks(ROWS_PER_TASK))
        .map(|(((dx, x), dy), rstd)| {
            let mut dgamma = vec![0.0f32; d];
            let mut g = vec![0.0f32; d];
            for (((dx, x), dy), &r) in dx
                .chunks_mut(d)
                .zip(x.chunks(d))
                .zip(dy.chunks(d))
                .zip(rstd)
            {
                crate::simd::rms_norm_backward_row(x, dy, gamma, r, dx, &mut g, &mut dgamma);
            }
            dgamma
        })
        .collect();
    let mut dgamma = vec![0.0f32; d];
    for partial in &partials {
        for (total, p) in dgamma.iter_mut().zip(partial) {
            *total += p;
        }
    }
    (dx, dgamma)
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    type State = LayerNormState;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = route::contiguous(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let (dx, dgamma) = rms_norm_backward_values(
            route::values(&s.input),
            route::values(&s.gamma),
            &s.stats,
            route::values(&dy),
        );
        let d = dgamma.len();
        let [px, pg] = ops.parents;
        if let Some(node) = px {
            grads.register::<Flex>(node.id, route::new_tensor(dx, &s.shape));
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, route::new_tensor(dgamma, &[d]));
        }
    }
}
