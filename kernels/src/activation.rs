//! Exact GELU with the vectorised `erf`/`exp` of `simd`, and its backward.

use burn::tensor::Tensor;
use burn::tensor::activation::gelu as burn_gelu;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::route::{self, Route};
use crate::simd;

/// Elements per task.
const CHUNK: usize = 16 * 1024;

/// Exact GELU, `x / 2 * (1 + erf(x / sqrt 2))`, fused on flex (plain or autodiff, f32); on
/// other devices burn's `gelu`.
pub fn gelu<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    let device = input.device();
    let shape = input.dims();
    match route::route(&device, input.dtype()) {
        Some(Route::Plain) => {
            let x = route::contiguous(route::plain(input));
            route::from_plain(route::new_tensor(forward_values(route::values(&x)), &shape))
        }
        Some(Route::Tracked) => {
            let (x, node) = route::tracked(input).into_parts();
            let x = route::contiguous(x);
            let y = route::new_tensor(forward_values(route::values(&x)), &shape);
            let out = match GeluBackward
                .prepare::<NoCheckpointing>([node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish((x, shape.to_vec()), y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            route::from_tracked(out)
        }
        None => burn_gelu(input),
    }
}

/// The forward kernel on values.
pub fn forward_values(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| simd::gelu(x, y));
    y
}

/// The backward kernel: `dx = dy * gelu'(x)`.
pub fn backward_values(x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = dy.to_vec();
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(g, x)| simd::gelu_backward(x, g));
    dx
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = (FlexTensor, Vec<usize>);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = route::contiguous(grads.consume::<Flex>(&ops.node));
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let (x, shape) = &ops.state;
            let dx = backward_values(route::values(x), route::values(&dy));
            grads.register::<Flex>(node.id, route::new_tensor(dx, shape));
        }
    }
}
