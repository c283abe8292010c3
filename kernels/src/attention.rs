//! Causal scaled dot-product attention, tiled (flash-attention style), with its own backward.
//!
//! The forward pass walks `TILE x TILE` blocks of the score matrix with an online softmax and
//! keeps, per query row, only the log-sum-exp; the backward pass recomputes each block's
//! probabilities from it. Neither ever holds more than one block of scores per thread, and
//! blocks above the causal diagonal are never computed. Grouped-query attention reads the
//! shared key/value head directly (no repeated copy); left padding masks the first keys of a
//! row, and packed rows (several sequences end to end, [`packed_causal_attention`]) give each
//! query its own first key, so a sequence never sees its neighbours.

use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::TensorMetadata;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use std::sync::Arc;

use crate::route::{self, Route};
use crate::simd;

/// Rows and columns of one block of the score matrix.
const TILE: usize = 64;

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
    /// Batch rows.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; divides `heads` (grouped-query attention when smaller).
    pub kv_heads: usize,
    /// Query positions.
    pub q_len: usize,
    /// Key/value positions, at least `q_len`: query `i` sits at position `i + kv_len - q_len`.
    pub kv_len: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl AttentionDims {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
    fn offset(&self) -> usize {
        self.kv_len - self.q_len
    }
    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Causal attention `softmax(q k^T / sqrt(d_head) + mask) v`, fused on flex.
///
/// Query `i` attends keys `key_start[b] ..= i + kv_len - q_len` of its batch row `b`
/// (`key_start`: the left padding of each row, all zero when `None`). A query row without any
/// key (inside the padding) gets zeros. Query head `h` uses key/value head
/// `h / (heads / kv_heads)`, as Hugging Face's `repeat_kv`.
///
/// On flex (plain or autodiff, f32) this runs the tiled kernels; on any other device it runs
/// [`attention_reference`], burn's own composition.
///
/// # Shapes
///
/// - query: `[batch, heads, q_len, head_dim]`
/// - key, value: `[batch, kv_heads, kv_len, head_dim]`, `kv_len >= q_len`
/// - key_start: `batch` entries
/// - output: `[batch, heads, q_len, head_dim]`
///
/// # Panics
///
/// When the shapes disagree as above.
pub fn causal_attention(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    key_start: Option<&[usize]>,
) -> Tensor<4> {
    let dims = check_dims(&query, &key, &value, key_start);
    let starts = per_query(dims, key_start);
    match route::route(&query.device(), query.dtype()) {
        Some(route) => fused(query, key, value, dims, starts, route),
        None => attention_reference(query, key, value, key_start),
    }
}

/// Causal attention over *packed* rows: several sequences laid end to end in one batch row,
/// each seeing only its own keys.
///
/// Query `i` of batch row `b` attends keys `query_start[b * q_len + i] ..= i + kv_len - q_len`:
/// for a packed row, `query_start` of every position is the first position of the sequence it
/// belongs to. The result for each sequence is the result [`causal_attention`] gives for that
/// sequence alone (up to the order of floating-point sums). A query whose start is past its
/// own position sees no key and gets zeros.
///
/// On flex (plain or autodiff, f32) this runs the same tiled kernels as [`causal_attention`];
/// on any other device [`packed_attention_reference`], burn's composition with an explicit
/// mask.
///
/// # Shapes
///
/// - query: `[batch, heads, q_len, head_dim]`
/// - key, value: `[batch, kv_heads, kv_len, head_dim]`, `kv_len >= q_len`
/// - query_start: `batch * q_len` entries
/// - output: `[batch, heads, q_len, head_dim]`
///
/// # Panics
///
/// When the shapes disagree as above.
pub fn packed_causal_attention(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    query_start: &[usize],
) -> Tensor<4> {
    let dims = check_packed_dims(&query, &key, &value, query_start);
    match route::route(&query.device(), query.dtype()) {
        Some(route) => fused(query, key, value, dims, query_start.into(), route),
        None => packed_attention_reference(query, key, value, query_start),
    }
}

/// Each query's first visible key, `batch * q_len` entries, from one start per row.
fn per_query(dims: AttentionDims, key_start: Option<&[usize]>) -> Arc<[usize]> {
    (0..dims.batch)
        .flat_map(|b| std::iter::repeat_n(key_start.map_or(0, |s| s[b]), dims.q_len))
        .collect()
}

/// The fused kernels, plain or tracked.
fn fused(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    dims: AttentionDims,
    starts: Arc<[usize]>,
    route: Route,
) -> Tensor<4> {
    match route {
        Route::Plain => {
            let (q, k, v) = (plain(query), plain(key), plain(value));
            let (out, _) = forward(&q, &k, &v, dims, &starts);
            route::from_plain(out)
        }
        Route::Tracked => tracked_forward(query, key, value, dims, starts),
    }
}

/// [`causal_attention`] composed from burn's operations (its attention with a mask, the
/// key/value heads repeated for grouped-query attention): the fallback for other devices and
/// the oracle of the tests. With no padding and `q_len == kv_len` this is exactly the call the
/// models made before the fused kernel existed.
///
/// Unlike the fused kernel, a query row without any key is not defined here (burn's softmax
/// over an all-masked row).
pub fn attention_reference(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    key_start: Option<&[usize]>,
) -> Tensor<4> {
    let dims = check_dims(&query, &key, &value, key_start);
    let padded = key_start.is_some_and(|s| s.iter().any(|&s| s > 0));
    let (key, value) = repeat_kv(key, value, dims);
    if !padded && dims.q_len == dims.kv_len {
        let options = AttentionModuleOptions {
            is_causal: true,
            ..Default::default()
        };
        return burn_attention(query, key, value, None, None, options);
    }
    masked_reference(query, key, value, dims, &per_query(dims, key_start))
}

/// [`packed_causal_attention`] composed from burn's operations: its attention with the
/// explicit mask of each query's visible keys. The fallback for other devices and the oracle
/// of the tests; a query without any key is not defined here.
pub fn packed_attention_reference(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    query_start: &[usize],
) -> Tensor<4> {
    let dims = check_packed_dims(&query, &key, &value, query_start);
    let (key, value) = repeat_kv(key, value, dims);
    masked_reference(query, key, value, dims, query_start)
}

/// [`check_dims`] of a packed call, and one `query_start` per batch row and query position.
fn check_packed_dims(
    query: &Tensor<4>,
    key: &Tensor<4>,
    value: &Tensor<4>,
    query_start: &[usize],
) -> AttentionDims {
    let dims = check_dims(query, key, value, None);
    assert_eq!(
        query_start.len(),
        dims.batch * dims.q_len,
        "one query_start per batch row and query position"
    );
    dims
}

/// Keys and values with each key/value head repeated for its query heads.
fn repeat_kv(key: Tensor<4>, value: Tensor<4>, dims: AttentionDims) -> (Tensor<4>, Tensor<4>) {
    if dims.kv_heads == dims.heads {
        return (key, value);
    }
    let AttentionDims {
        batch,
        heads,
        kv_heads,
        kv_len,
        head_dim,
        ..
    } = dims;
    let group = dims.group();
    let repeat = |x: Tensor<4>| {
        x.unsqueeze_dim::<5>(2)
            .expand([batch, kv_heads, group, kv_len, head_dim])
            .reshape([batch, heads, kv_len, head_dim])
    };
    (repeat(key), repeat(value))
}

/// burn's attention with query `i` of row `b` blocked from keys before
/// `query_start[b * q_len + i]` and after its own position.
fn masked_reference(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    dims: AttentionDims,
    query_start: &[usize],
) -> Tensor<4> {
    let AttentionDims {
        batch,
        heads,
        q_len,
        kv_len,
        ..
    } = dims;
    let offset = dims.offset();
    let mut blocked = Vec::with_capacity(batch * q_len * kv_len);
    for (row, &start) in query_start.iter().enumerate() {
        let i = row % q_len;
        blocked.extend((0..kv_len).map(|j| j > i + offset || j < start));
    }
    let mask = Tensor::<4, Bool>::from_data(
        TensorData::new(blocked, [batch, 1, q_len, kv_len]),
        &query.device(),
    )
    .expand([batch, heads, q_len, kv_len]);
    burn_attention(query, key, value, Some(mask), None, Default::default())
}

fn check_dims(
    query: &Tensor<4>,
    key: &Tensor<4>,
    value: &Tensor<4>,
    key_start: Option<&[usize]>,
) -> AttentionDims {
    let [batch, heads, q_len, head_dim] = query.dims();
    let [kb, kv_heads, kv_len, kd] = key.dims();
    assert_eq!(key.dims(), value.dims(), "key and value shapes differ");
    assert!(
        kb == batch && kd == head_dim && kv_heads > 0 && heads % kv_heads == 0,
        "attention shapes: query {:?}, key {:?}",
        query.dims(),
        key.dims()
    );
    assert!(
        kv_len >= q_len,
        "attention: kv_len {kv_len} < q_len {q_len}"
    );
    if let Some(starts) = key_start {
        assert_eq!(starts.len(), batch, "one key_start per batch row");
    }
    AttentionDims {
        batch,
        heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim,
    }
}

fn plain(tensor: Tensor<4>) -> FlexTensor {
    route::contiguous(route::plain(tensor))
}

/// What the backward pass needs: the inputs, the output and each row's log-sum-exp.
#[derive(Debug, Clone)]
struct AttentionState {
    query: FlexTensor,
    key: FlexTensor,
    value: FlexTensor,
    output: FlexTensor,
    log_sum_exp: Arc<Vec<f32>>,
    dims: AttentionDims,
    query_start: Arc<[usize]>,
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = route::contiguous(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let (dq, dk, dv) = backward(
            route::values(&s.query),
            route::values(&s.key),
            route::values(&s.value),
            route::values(&s.output),
            route::values(&grad),
            &s.log_sum_exp,
            s.dims,
            &s.query_start,
        );
        let d = s.dims;
        let [pq, pk, pv] = ops.parents;
        let q_shape = [d.batch, d.heads, d.q_len, d.head_dim];
        let kv_shape = [d.batch, d.kv_heads, d.kv_len, d.head_dim];
        if let Some(node) = pq {
            grads.register::<Flex>(node.id, route::new_tensor(dq, &q_shape));
        }
        if let Some(node) = pk {
            grads.register::<Flex>(node.id, route::new_tensor(dk, &kv_shape));
        }
        if let Some(node) = pv {
            grads.register::<Flex>(node.id, route::new_tensor(dv, &kv_shape));
        }
    }
}

fn tracked_forward(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    dims: AttentionDims,
    query_start: Arc<[usize]>,
) -> Tensor<4> {
    let (q, q_node) = route::tracked(query).into_parts();
    let (k, k_node) = route::tracked(key).into_parts();
    let (v, v_node) = route::tracked(value).into_parts();
    let (q, k, v) = (
        route::contiguous(q),
        route::contiguous(k),
        route::contiguous(v),
    );
    let (output, log_sum_exp) = forward(&q, &k, &v, dims, &query_start);
    let tracked = match AttentionBackward
        .prepare::<NoCheckpointing>([q_node, k_node, v_node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = AttentionState {
                query: q,
                key: k,
                value: v,
                output: output.clone(),
                log_sum_exp: Arc::new(log_sum_exp),
                dims,
                query_start,
            };
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    debug_assert_eq!(tracked.shape().num_dims(), 4);
    route::from_tracked(tracked)
}

fn forward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    dims: AttentionDims,
    query_start: &[usize],
) -> (FlexTensor, Vec<f32>) {
    let (out, lse) = forward_values(
        route::values(q),
        route::values(k),
        route::values(v),
        dims,
        query_start,
    );
    let shape = [dims.batch, dims.heads, dims.q_len, dims.head_dim];
    (route::new_tensor(out, &shape), lse)
}

/// The forward kernel on row-major values: the output and each query row's log-sum-exp of
/// its scaled scores (`+inf` for a row without keys). Query `i` of batch row `b` sees keys
/// `query_start[b * q_len + i] ..= i + kv_len - q_len` (`batch * q_len` entries).
pub fn forward_values(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: AttentionDims,
    query_start: &[usize],
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(
        query_start.len(),
        dims.batch * dims.q_len,
        "one query_start per query"
    );
    let AttentionDims {
        heads,
        q_len,
        kv_len,
        head_dim: dh,
        ..
    } = dims;
    let mut out = vec![0.0f32; dims.batch * heads * q_len * dh];
    let mut lse = vec![0.0f32; dims.batch * heads * q_len];
    if out.is_empty() {
        return (out, lse);
    }
    out.par_chunks_mut(q_len * dh)
        .zip(lse.par_chunks_mut(q_len))
        .enumerate()
        .for_each(|(bh, (out, lse))| {
            let (b, h) = (bh / heads, bh % heads);
            let kvh = b * dims.kv_heads + h / dims.group();
            let q = &q[bh * q_len * dh..][..q_len * dh];
            let k = &k[kvh * kv_len * dh..][..kv_len * dh];
            let v = &v[kvh * kv_len * dh..][..kv_len * dh];
            forward_head(q, k, v, out, lse, dims, &query_start[b * q_len..][..q_len]);
        });
    (out, lse)
}

/// The keys of block `kj0..kj0 + nk` that query position `pos`, whose first visible key is
/// `start`, may see: `lo..hi` within the block (empty when `lo == hi`).
#[inline]
fn seen(pos: usize, start: usize, kj0: usize, nk: usize) -> (usize, usize) {
    let hi = (pos + 1).saturating_sub(kj0).min(nk);
    (start.saturating_sub(kj0).min(hi), hi)
}

/// The first key any query of a block sees (where the block's walk over keys begins).
#[inline]
fn first_key(starts: &[usize]) -> usize {
    starts.iter().copied().min().unwrap_or(0)
}

fn forward_head(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    lse: &mut [f32],
    dims: AttentionDims,
    starts: &[usize],
) {
    let dh = dims.head_dim;
    let (offset, scale) = (dims.offset(), dims.scale());
    let mut scores = vec![0.0f32; TILE * TILE];
    let mut max = [f32::NEG_INFINITY; TILE];
    let mut sum = [0.0f32; TILE];
    for qi0 in (0..dims.q_len).step_by(TILE) {
        let nq = TILE.min(dims.q_len - qi0);
        let acc = &mut out[qi0 * dh..(qi0 + nq) * dh];
        max[..nq].fill(f32::NEG_INFINITY);
        sum[..nq].fill(0.0);
        let key_end = dims.kv_len.min(qi0 + nq + offset);
        let first = first_key(&starts[qi0..qi0 + nq]);
        for kj0 in (first..key_end).step_by(TILE) {
            let nk = TILE.min(key_end - kj0);
            // scores = scale * q_block k_block^T
            matmul(
                nq,
                nk,
                dh,
                &mut scores,
                TILE,
                false,
                (&q[qi0 * dh..], dh, 1),
                (&k[kj0 * dh..], 1, dh),
                scale,
            );
            for i in 0..nq {
                let row = &mut scores[i * TILE..i * TILE + nk];
                let (lo, hi) = seen(qi0 + i + offset, starts[qi0 + i], kj0, nk);
                if lo == hi {
                    row.fill(0.0);
                    continue;
                }
                let block_max = row[lo..hi].iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let new_max = max[i].max(block_max);
                let correction = simd::exp(max[i] - new_max);
                let block_sum = simd::exp_shifted_sum(&mut row[lo..hi], new_max);
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                if correction != 1.0 {
                    simd::scale_in_place(&mut acc[i * dh..(i + 1) * dh], correction);
                }
                sum[i] = sum[i] * correction + block_sum;
                max[i] = new_max;
            }
            // acc += p v_block
            matmul(
                nq,
                dh,
                nk,
                acc,
                dh,
                true,
                (&scores, TILE, 1),
                (&v[kj0 * dh..], dh, 1),
                1.0,
            );
        }
        for i in 0..nq {
            if sum[i] > 0.0 {
                simd::scale_in_place(&mut acc[i * dh..(i + 1) * dh], 1.0 / sum[i]);
                lse[qi0 + i] = max[i] + sum[i].ln();
            } else {
                acc[i * dh..(i + 1) * dh].fill(0.0);
                lse[qi0 + i] = f32::INFINITY;
            }
        }
    }
}

/// The backward kernel on row-major values: gradients of query, key and value from the
/// output's gradient `d_out`. `query_start` as for [`forward_values`].
#[allow(clippy::too_many_arguments)]
pub fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    d_out: &[f32],
    lse: &[f32],
    dims: AttentionDims,
    query_start: &[usize],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let AttentionDims {
        q_len,
        kv_len,
        head_dim: dh,
        ..
    } = dims;
    let group = dims.group();
    let mut dq = vec![0.0f32; q.len()];
    let mut dk = vec![0.0f32; k.len()];
    let mut dv = vec![0.0f32; v.len()];
    if dq.is_empty() || dk.is_empty() {
        return (dq, dk, dv);
    }
    // One task per key/value head: it owns that head's dk, dv and its group's dq rows.
    dq.par_chunks_mut(group * q_len * dh)
        .zip(dk.par_chunks_mut(kv_len * dh))
        .zip(dv.par_chunks_mut(kv_len * dh))
        .enumerate()
        .for_each(|(bkv, ((dq, dk), dv))| {
            let b = bkv / dims.kv_heads;
            let k = &k[bkv * kv_len * dh..][..kv_len * dh];
            let v = &v[bkv * kv_len * dh..][..kv_len * dh];
            for r in 0..group {
                let bh = bkv * group + r;
                let rows = bh * q_len * dh..(bh + 1) * q_len * dh;
                backward_head(
                    HeadInputs {
                        q: &q[rows.clone()],
                        k,
                        v,
                        out: &out[rows.clone()],
                        d_out: &d_out[rows],
                        lse: &lse[bh * q_len..(bh + 1) * q_len],
                    },
                    &mut dq[r * q_len * dh..(r + 1) * q_len * dh],
                    dk,
                    dv,
                    dims,
                    &query_start[b * q_len..][..q_len],
                );
            }
        });
    (dq, dk, dv)
}

struct HeadInputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a [f32],
    d_out: &'a [f32],
    lse: &'a [f32],
}

fn backward_head(
    x: HeadInputs<'_>,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dims: AttentionDims,
    starts: &[usize],
) {
    let dh = dims.head_dim;
    let (offset, scale) = (dims.offset(), dims.scale());
    // delta_i = sum_d dO_id O_id: softmax's backward term, once per row.
    let delta: Vec<f32> = (0..dims.q_len)
        .map(|i| simd::dot(&x.d_out[i * dh..(i + 1) * dh], &x.out[i * dh..(i + 1) * dh]))
        .collect();
    let mut p = vec![0.0f32; TILE * TILE];
    let mut ds = vec![0.0f32; TILE * TILE];
    for qi0 in (0..dims.q_len).step_by(TILE) {
        let nq = TILE.min(dims.q_len - qi0);
        let key_end = dims.kv_len.min(qi0 + nq + offset);
        let first = first_key(&starts[qi0..qi0 + nq]);
        for kj0 in (first..key_end).step_by(TILE) {
            let nk = TILE.min(key_end - kj0);
            matmul(
                nq,
                nk,
                dh,
                &mut p,
                TILE,
                false,
                (&x.q[qi0 * dh..], dh, 1),
                (&x.k[kj0 * dh..], 1, dh),
                scale,
            );
            for i in 0..nq {
                let row = &mut p[i * TILE..i * TILE + nk];
                let lse = x.lse[qi0 + i];
                let (lo, hi) = if lse.is_finite() {
                    seen(qi0 + i + offset, starts[qi0 + i], kj0, nk)
                } else {
                    (0, 0)
                };
                simd::exp_shifted_sum(&mut row[lo..hi], lse);
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
            }
            // dv_block += p^T dO
            matmul(
                nk,
                dh,
                nq,
                &mut dv[kj0 * dh..],
                dh,
                true,
                (&p, 1, TILE),
                (&x.d_out[qi0 * dh..], dh, 1),
                1.0,
            );
            // dp = dO v_block^T
            matmul(
                nq,
                nk,
                dh,
                &mut ds,
                TILE,
                false,
                (&x.d_out[qi0 * dh..], dh, 1),
                (&x.v[kj0 * dh..], 1, dh),
                1.0,
            );
            for i in 0..nq {
                simd::softmax_backward_row(
                    &p[i * TILE..i * TILE + nk],
                    &mut ds[i * TILE..i * TILE + nk],
                    delta[qi0 + i],
                    scale,
                );
            }
            // dq_block += ds k_block
            matmul(
                nq,
                dh,
                nk,
                &mut dq[qi0 * dh..],
                dh,
                true,
                (&ds, TILE, 1),
                (&x.k[kj0 * dh..], dh, 1),
                1.0,
            );
            // dk_block += ds^T q_block
            matmul(
                nk,
                dh,
                nq,
                &mut dk[kj0 * dh..],
                dh,
                true,
                (&ds, 1, TILE),
                (&x.q[qi0 * dh..], dh, 1),
                1.0,
            );
        }
    }
}

/// `dst[m x n] = (accumulate ? dst : 0) + scale * lhs[m x k] rhs[k x n]`, single-threaded.
/// `dst` rows are `dst_rs` apart (columns adjacent); each operand is `(values, row stride,
/// column stride)`. Bounds are checked before the unchecked product.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    scale: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(m, n, dst_rs, 1) < dst.len(), "matmul: dst too short");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    assert!(
        last(m, k, lhs.1, lhs.2) < lhs.0.len(),
        "matmul: lhs too short"
    );
    assert!(
        last(k, n, rhs.1, rhs.2) < rhs.0.len(),
        "matmul: rhs too short"
    );
    // SAFETY: every index the product touches is within the slices (checked above), and `dst`
    // does not alias the operands (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
