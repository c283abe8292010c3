//! Activations with the vectorised `erf`/`exp` of `simd`, and their backward passes: GELU in
//! its exact and tanh forms, and SwiGLU's gate `silu(a) * b`.

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu as burn_gelu, gelu_approximate, silu};
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

/// Which GELU: the exact one or GPT-2's tanh approximation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeluForm {
    /// `x / 2 * (1 + erf(x / sqrt 2))` (PyTorch's `gelu`, Hugging Face's `gelu`).
    Exact,
    /// `x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))` (PyTorch's
    /// `gelu(approximate="tanh")`, Hugging Face's `gelu_new` and `gelu_pytorch_tanh`).
    Tanh,
}

/// Exact GELU, `x / 2 * (1 + erf(x / sqrt 2))`, fused on flex (plain or autodiff, f32); on
/// other devices burn's `gelu`.
pub fn gelu<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    gelu_unary(input, GeluForm::Exact)
}

/// GELU's tanh form, `x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`, fused on flex
/// (plain or autodiff, f32); on other devices burn's `gelu_approximate`.
pub fn gelu_tanh<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    gelu_unary(input, GeluForm::Tanh)
}

fn gelu_unary<const D: usize>(input: Tensor<D>, form: GeluForm) -> Tensor<D> {
    let device = input.device();
    let shape = input.dims();
    match route::route(&device, input.dtype()) {
        Some(Route::Plain) => {
            let x = route::contiguous(route::plain(input));
            let y = forward_values(route::values(&x), form);
            route::from_plain(route::new_tensor(y, &shape))
        }
        Some(Route::Tracked) => {
            let (x, node) = route::tracked(input).into_parts();
            let x = route::contiguous(x);
            let y = route::new_tensor(forward_values(route::values(&x), form), &shape);
            let out = match GeluBackward(form)
                .prepare::<NoCheckpointing>([node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish((x, shape.to_vec()), y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            route::from_tracked(out)
        }
        None => match form {
            GeluForm::Exact => burn_gelu(input),
            GeluForm::Tanh => gelu_approximate(input),
        },
    }
}

/// GELU's forward kernel on values.
pub fn forward_values(x: &[f32], form: GeluForm) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| match form {
            GeluForm::Exact => simd::gelu(x, y),
            GeluForm::Tanh => simd::gelu_tanh(x, y),
        });
    y
}

/// GELU's backward kernel: `dx = dy * gelu'(x)`.
pub fn backward_values(x: &[f32], dy: &[f32], form: GeluForm) -> Vec<f32> {
    let mut dx = dy.to_vec();
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(g, x)| match form {
            GeluForm::Exact => simd::gelu_backward(x, g),
            GeluForm::Tanh => simd::gelu_tanh_backward(x, g),
        });
    dx
}

#[derive(Debug)]
struct GeluBackward(GeluForm);

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
            let dx = backward_values(route::values(x), route::values(&dy), self.0);
            grads.register::<Flex>(node.id, route::new_tensor(dx, shape));
        }
    }
}

/// SwiGLU's gate, `silu(gate) * up` (Llama's MLP before `down_proj`), fused on flex (plain or
/// autodiff, f32) into one pass forward and one backward; on other devices burn's
/// `silu(gate) * up`.
///
/// # Shapes
///
/// - gate, up: the same shape
/// - output: that shape
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    let device = gate.device();
    let shape = gate.dims();
    assert_eq!(up.dims(), shape, "swiglu: gate against up");
    match route::route(&device, gate.dtype()) {
        Some(Route::Plain) => {
            let a = route::contiguous(route::plain(gate));
            let b = route::contiguous(route::plain(up));
            let y = swiglu_forward_values(route::values(&a), route::values(&b));
            route::from_plain(route::new_tensor(y, &shape))
        }
        Some(Route::Tracked) => {
            let (a, a_node) = route::tracked(gate).into_parts();
            let (b, b_node) = route::tracked(up).into_parts();
            let (a, b) = (route::contiguous(a), route::contiguous(b));
            let y = swiglu_forward_values(route::values(&a), route::values(&b));
            let y = route::new_tensor(y, &shape);
            let out = match SwigluBackward
                .prepare::<NoCheckpointing>([a_node, b_node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish((a, b, shape.to_vec()), y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            route::from_tracked(out)
        }
        None => silu(gate) * up,
    }
}

/// SwiGLU's forward kernel on values: `silu(a) * b`.
pub fn swiglu_forward_values(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "swiglu: gate against up");
    let mut y = vec![0.0f32; a.len()];
    y.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(y, (a, b))| simd::swiglu(a, b, y));
    y
}

/// SwiGLU's backward kernel: the gradients of the gate and the up projection.
pub fn swiglu_backward_values(a: &[f32], b: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut da = dy.to_vec();
    let mut db = vec![0.0f32; dy.len()];
    da.par_chunks_mut(CHUNK)
        .zip(db.par_chunks_mut(CHUNK))
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|((da, db), (a, b))| simd::swiglu_backward(a, b, da, db));
    (da, db)
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    type State = (FlexTensor, FlexTensor, Vec<usize>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = route::contiguous(grads.consume::<Flex>(&ops.node));
        let (a, b, shape) = &ops.state;
        let (da, db) =
            swiglu_backward_values(route::values(a), route::values(b), route::values(&dy));
        let [pa, pb] = ops.parents;
        if let Some(node) = pa {
            grads.register::<Flex>(node.id, route::new_tensor(da, shape));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, route::new_tensor(db, shape));
        }
    }
}
