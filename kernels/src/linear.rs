//! Linear layers, `y = x W + b`, on flex with their backward pass, every product written
//! straight into a new f32 buffer.
//!
//! burn 0.22 already has a linear node in autodiff, and flex runs its products with the
//! `gemm` crate. What this module saves is around the products: flex allocates each product's
//! output as bytes (`FlexTensor::empty`: a zeroed `Vec<u8>`, then copied into an aligned
//! buffer because a `Vec<u8>` reports alignment 1), so every output is written three times
//! (zeroed, copied, computed). Here the output is a `Vec<f32>` handed to `gemm` uninitialised
//! and written once. The forward product and the input's gradient are the same `gemm` calls
//! as flex's (same operand strides, same rule for going parallel) folded over every row, and
//! the bias is added after the product as burn adds it; the weight's and the bias's gradients
//! follow burn's own choice between a folded and a batched product (see
//! `LinearState::backward`). So the output and every gradient are burn's bits on the shapes
//! training and generation use (`tests/linear.rs` checks batched and folded cases; on tiny
//! shapes, a few inputs per row, `gemm` may order a folded and a batched product's sums
//! differently, and the results agree to 1e-5 relative). The input
//! is kept for the backward pass only when the weight needs a gradient, and the weight only
//! when the input does, as burn does.

use burn::tensor::Tensor;
use burn::tensor::module::linear as burn_linear;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::ops::FloatTensorOps;
use burn_flex::{Flex, FlexTensor};
use burn_std::{MatmulTransformAction, MatmulTransformAnalysis, MatmulTransformPolicy, Shape};
use rayon::prelude::*;

use crate::route::{self, Route};

/// Below this many multiply-adds a product runs on one thread: flex's own threshold, so
/// that the products are the ones flex would run.
const PARALLEL_MIN: usize = 192 * 192 * 192;

/// Rows per task when adding the bias.
const BIAS_ROWS: usize = 256;

/// The sizes of one linear layer's product: `rows` input rows (every leading dimension of
/// the input folded in), `d_in` inputs and `d_out` outputs per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearDims {
    /// Rows of the input and output (the product of the input's leading dimensions).
    pub rows: usize,
    /// Features in (the input's last dimension, the weight's first).
    pub d_in: usize,
    /// Features out (the weight's second dimension, the output's last).
    pub d_out: usize,
}

/// `y = x W + b` (burn's layout: `weight` is `[d_in, d_out]`), fused on flex (plain or
/// autodiff, f32; each output written once, burn's bits); on other devices burn's
/// [`linear`](burn::tensor::module::linear), unchanged.
///
/// # Shapes
///
/// - input: `[..., d_in]`
/// - weight: `[d_in, d_out]`
/// - bias: `[d_out]`
/// - output: `[..., d_out]`
///
/// # Panics
///
/// If the input's last dimension is not the weight's first, or the bias is not `[d_out]`
/// (programming errors: a model's layers are built with matching sizes).
pub fn linear<const D: usize>(
    input: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let device = input.device();
    let in_shape = input.dims();
    let [d_in, d_out] = weight.dims();
    assert_eq!(
        in_shape[D - 1],
        d_in,
        "linear: input's last dimension against weight"
    );
    if let Some(bias) = &bias {
        assert_eq!(bias.dims(), [d_out], "linear: bias against weight");
    }
    let same_dtype =
        weight.dtype() == input.dtype() && bias.as_ref().is_none_or(|b| b.dtype() == input.dtype());
    let route = if same_dtype {
        route::route(&device, input.dtype())
    } else {
        None
    };
    let dims = LinearDims {
        rows: in_shape[..D - 1].iter().product(),
        d_in,
        d_out,
    };
    let mut out_shape = in_shape.to_vec();
    out_shape[D - 1] = d_out;
    match route {
        Some(Route::Plain) => {
            let x = route::contiguous(route::plain(input));
            let w = route::contiguous(route::plain(weight));
            let b = bias.map(|b| route::contiguous(route::plain(b)));
            let y = forward_values(
                route::values(&x),
                route::values(&w),
                b.as_ref().map(route::values),
                dims,
            );
            route::from_plain(route::new_tensor(y, &out_shape))
        }
        Some(Route::Tracked) => {
            let (input, weight) = (route::tracked(input), route::tracked(weight));
            let (keep_x, keep_w) = (weight.is_tracked(), input.is_tracked());
            let (x, x_node) = input.into_parts();
            let (w, w_node) = weight.into_parts();
            let (x, w) = (route::contiguous(x), route::contiguous(w));
            let y = |bias: Option<&FlexTensor>| {
                let y = forward_values(
                    route::values(&x),
                    route::values(&w),
                    bias.map(route::values),
                    dims,
                );
                route::new_tensor(y, &out_shape)
            };
            let state = |x: FlexTensor, w: FlexTensor| LinearState {
                x: keep_x.then_some(x),
                w: keep_w.then_some(w),
                dims,
                in_shape: in_shape.to_vec(),
            };
            let out = match bias {
                None => {
                    let y = y(None);
                    match LinearBackward
                        .prepare::<NoCheckpointing>([x_node, w_node])
                        .compute_bound()
                        .stateful()
                    {
                        OpsKind::Tracked(prep) => prep.finish(state(x, w), y),
                        OpsKind::UnTracked(prep) => prep.finish(y),
                    }
                }
                Some(bias) => {
                    let (b, b_node) = route::tracked(bias).into_parts();
                    let y = y(Some(&route::contiguous(b)));
                    match LinearBiasBackward
                        .prepare::<NoCheckpointing>([x_node, w_node, b_node])
                        .compute_bound()
                        .stateful()
                    {
                        OpsKind::Tracked(prep) => prep.finish(state(x, w), y),
                        OpsKind::UnTracked(prep) => prep.finish(y),
                    }
                }
            };
            route::from_tracked(out)
        }
        None => burn_linear(input, weight, bias),
    }
}

/// `gemm`'s parallelism for an `m x k` by `k x n` product, by flex's rule.
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// The last index a strided `rows x cols` operand reads, plus one.
fn extent(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    (rows - 1) * row_stride + (cols - 1) * col_stride + 1
}

/// The row-major `m x n` product of `lhs` (`m x k`, element `(i, p)` at
/// `lhs[i * lhs_rs + p * lhs_cs]`) and `rhs` (`k x n`, `(p, j)` at
/// `rhs[p * rhs_rs + j * rhs_cs]`), written into a new buffer without zeroing it first.
fn product(
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    product_into(
        out.spare_capacity_mut(),
        (m, n, k),
        lhs,
        lhs_strides,
        rhs,
        rhs_strides,
        parallelism(m, n, k),
    );
    // SAFETY: `product_into` wrote all `m * n` elements.
    unsafe { out.set_len(m * n) };
    out
}

/// [`product`] into `dst` (at least `m * n` elements, row-major), every element written.
fn product_into(
    dst: &mut [std::mem::MaybeUninit<f32>],
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    parallelism: gemm::Parallelism,
) {
    assert!(dst.len() >= m * n, "product: destination too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(std::mem::MaybeUninit::new(0.0));
        return;
    }
    assert!(
        lhs.len() >= extent(m, k, lhs_rs, lhs_cs),
        "product: lhs too short"
    );
    assert!(
        rhs.len() >= extent(k, n, rhs_rs, rhs_cs),
        "product: rhs too short"
    );
    // SAFETY: the operands cover every index the product reads (asserted above), the
    // destination has room for `m * n` row-major elements, and `read_dst` is false, so gemm
    // writes every destination element without reading it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The weight's gradient as burn computes it where it keeps the batched product: for each
/// batch (every leading dimension of the input but the last two), `x_b^T dy_b` (`d_in x
/// d_out`), written into one new buffer (the same `gemm` calls as flex's batched product;
/// batches in parallel), then summed over the batches by flex's own `sum_dim`/`sum_dims`, as
/// burn-autodiff reduces a broadcast operand's gradient.
fn batched_weight_grad(x: &[f32], dy: &[f32], in_shape: &[usize], dims: LinearDims) -> FlexTensor {
    let LinearDims { rows, d_in, d_out } = dims;
    let rank = in_shape.len();
    let t = in_shape[rank - 2];
    let batches = rows / t.max(1);
    let mut per: Vec<f32> = Vec::with_capacity(batches * d_in * d_out);
    if d_in * d_out > 0 {
        per.spare_capacity_mut()
            .par_chunks_mut(d_in * d_out)
            .enumerate()
            .for_each(|(b, dst)| {
                product_into(
                    dst,
                    (d_in, d_out, t),
                    &x[b * t * d_in..(b + 1) * t * d_in],
                    (1, d_in),
                    &dy[b * t * d_out..(b + 1) * t * d_out],
                    (d_out, 1),
                    gemm::Parallelism::None,
                )
            });
    }
    // SAFETY: every chunk of `d_in * d_out` elements was written above.
    unsafe { per.set_len(batches * d_in * d_out) };
    let mut shape = in_shape[..rank - 2].to_vec();
    shape.extend([d_in, d_out]);
    sum_leading(route::new_tensor(per, &shape), rank - 2)
}

/// The forward kernel: `x` row-major `[rows, d_in]`, `w` row-major `[d_in, d_out]`, optional
/// `bias` `[d_out]`; returns `y` row-major `[rows, d_out]`.
///
/// # Panics
///
/// If a slice's length does not match `dims`.
pub fn forward_values(x: &[f32], w: &[f32], bias: Option<&[f32]>, dims: LinearDims) -> Vec<f32> {
    let LinearDims { rows, d_in, d_out } = dims;
    assert_eq!(x.len(), rows * d_in, "linear: input length");
    assert_eq!(w.len(), d_in * d_out, "linear: weight length");
    let mut y = product((rows, d_out, d_in), x, (d_in, 1), w, (d_out, 1));
    if let Some(bias) = bias {
        assert_eq!(bias.len(), d_out, "linear: bias length");
        if d_out > 0 {
            y.par_chunks_mut(BIAS_ROWS * d_out).for_each(|rows| {
                for row in rows.chunks_exact_mut(d_out) {
                    for (y, b) in row.iter_mut().zip(bias) {
                        *y += b;
                    }
                }
            });
        }
    }
    y
}

/// The gradients [`backward_values`] computes; each only where asked for.
#[derive(Debug, Default)]
pub struct LinearGrads {
    /// `dx = dy W^T`, row-major `[rows, d_in]`.
    pub input: Option<Vec<f32>>,
    /// `dW = x^T dy` over all rows folded together, row-major `[d_in, d_out]`.
    pub weight: Option<Vec<f32>>,
}

/// The backward kernel: from the output's gradient `dy` (row-major `[rows, d_out]`), the
/// input's gradient where the weight `w` is given (`dx = dy W^T`) and the weight's where the
/// input `x` is given (`dW = x^T dy`, all rows folded into one product). The bias's gradient
/// is the sum of `dy`'s rows; [`linear`]'s backward takes it, and the weight's for a batched
/// input, from flex's own sums, as burn does.
///
/// # Panics
///
/// If a slice's length does not match `dims`.
pub fn backward_values(
    x: Option<&[f32]>,
    w: Option<&[f32]>,
    dy: &[f32],
    dims: LinearDims,
) -> LinearGrads {
    let LinearDims { rows, d_in, d_out } = dims;
    assert_eq!(dy.len(), rows * d_out, "linear backward: gradient length");
    LinearGrads {
        input: w.map(|w| {
            assert_eq!(w.len(), d_in * d_out, "linear backward: weight length");
            // dy [rows, d_out] times W^T: element (p, j) of W^T is w[j * d_out + p].
            product((rows, d_in, d_out), dy, (d_out, 1), w, (1, d_out))
        }),
        weight: x.map(|x| {
            assert_eq!(x.len(), rows * d_in, "linear backward: input length");
            // x^T: element (i, p) is x[p * d_in + i]; times dy [rows, d_out].
            product((d_in, d_out, rows), x, (1, d_in), dy, (d_out, 1))
        }),
    }
}

/// What the backward pass keeps: the input (contiguous) if the weight needs a gradient, the
/// weight if the input does, the sizes, and the input's shape for its gradient.
#[derive(Debug, Clone)]
struct LinearState {
    x: Option<FlexTensor>,
    w: Option<FlexTensor>,
    dims: LinearDims,
    in_shape: Vec<usize>,
}

impl LinearState {
    /// Computes the gradients asked for and registers them with the given nodes.
    ///
    /// The input's gradient is always [`backward_values`]' product (the same bits as burn's,
    /// whether burn runs it batched or folded). The weight's and the bias's follow what burn's
    /// linear does for this shape: where it folds the leading dimensions into rows (its
    /// matmul transform policy), or the input is 2-D, the weight's gradient is the folded
    /// product too and the bias's one column sum over rows, flex's `sum_dim`; where it keeps
    /// the batched product, both are flex's own batched product and sums, called as burn's
    /// autodiff calls them.
    fn backward(
        &self,
        dy: FlexTensor,
        grads: &mut Gradients,
        [x_node, w_node, b_node]: [Option<burn_autodiff::NodeId>; 3],
    ) {
        let LinearDims { rows, d_in, d_out } = self.dims;
        let rank = self.in_shape.len();
        let batched = rank > 2 && {
            let analysis = MatmulTransformAnalysis::from_shapes(
                &Shape::from(self.in_shape.clone()),
                &Shape::from(vec![d_in, d_out]),
            );
            MatmulTransformPolicy::default().action(&analysis) == MatmulTransformAction::Keep
        };
        let out = backward_values(
            self.x
                .as_ref()
                .filter(|_| w_node.is_some() && !batched)
                .map(route::values),
            self.w
                .as_ref()
                .filter(|_| x_node.is_some())
                .map(route::values),
            route::values(&dy),
            self.dims,
        );
        if let (Some(id), Some(dx)) = (x_node, out.input) {
            grads.register::<Flex>(id, route::new_tensor(dx, &self.in_shape));
        }
        if let Some(id) = w_node {
            let dw = match (out.weight, &self.x) {
                (Some(dw), _) => route::new_tensor(dw, &[d_in, d_out]),
                (None, Some(x)) => {
                    let summed = batched_weight_grad(
                        route::values(x),
                        route::values(&dy),
                        &self.in_shape,
                        self.dims,
                    );
                    Flex::float_reshape(summed, Shape::from(vec![d_in, d_out]))
                }
                (None, None) => unreachable!("the input is kept when the weight is tracked"),
            };
            grads.register::<Flex>(id, dw);
        }
        if let Some(id) = b_node {
            let db = if batched {
                sum_leading(dy, rank - 1)
            } else {
                Flex::float_sum_dim(Flex::float_reshape(dy, Shape::from(vec![rows, d_out])), 0)
            };
            grads.register::<Flex>(id, Flex::float_reshape(db, Shape::from(vec![d_out])));
        }
    }
}

/// The sum over the first `count` dimensions, as burn-autodiff reduces a broadcast operand's
/// gradient (one `sum_dim` for one dimension, one `sum_dims` for several).
fn sum_leading(tensor: FlexTensor, count: usize) -> FlexTensor {
    match count {
        0 => tensor,
        1 => Flex::float_sum_dim(tensor, 0),
        _ => Flex::float_sum_dims(tensor, &(0..count).collect::<Vec<_>>()),
    }
}

/// The backward of a linear layer without bias.
#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 2> for LinearBackward {
    type State = LinearState;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = route::contiguous(grads.consume::<Flex>(&ops.node));
        let [x, w] = ops.parents.map(|p| p.map(|node| node.id));
        ops.state.backward(dy, grads, [x, w, None]);
    }
}

/// The backward of a linear layer with bias.
#[derive(Debug)]
struct LinearBiasBackward;

impl Backward<Flex, 3> for LinearBiasBackward {
    type State = LinearState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = route::contiguous(grads.consume::<Flex>(&ops.node));
        let ids = ops.parents.map(|p| p.map(|node| node.id));
        ops.state.backward(dy, grads, ids);
    }
}
