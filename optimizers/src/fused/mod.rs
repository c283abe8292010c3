//! Single-pass SGD, Adam, AdamW and Lion for f32 parameters on the CPU backend (flex).
//!
//! burn-optim's optimizers are chains of tensor operations: Adam makes about fifteen passes over
//! memory per step (`m * b1`, `g * (1 - b1)`, their sum, the same for `v`, a square root, a
//! division, ...), Lion about eight, SGD with momentum about five, and most of them write a
//! fresh buffer. On a CPU backend without operation fusion that moves several times the bytes
//! the update needs (Adam: about 120 bytes per parameter element where 28 suffice; read
//! parameter, gradient, `m`, `v`; write parameter, `m`, `v`): BENCHMARKS.md measures the
//! difference.
//!
//! [`FusedSgd`], [`FusedAdam`], [`FusedAdamW`] and [`FusedLion`] compute the same updates in one
//! pass over their buffers, on rayon's pool, in place (flex hands over a tensor's buffer without
//! copying when nothing else holds it). They keep burn-optim's operation order, element by
//! element, with the same f32 scalars, so they agree with burn-optim's `Sgd`, `Adam`, `AdamW` and
//! `Lion` bit for bit (`tests/fused.rs` checks 20 steps of each). Adam, AdamW and Lion keep
//! burn's state types and call burn-optim's own implementation on every other device or dtype;
//! SGD keeps its momentum in [`FusedSgdState`] (burn's `MomentumState` does not expose its
//! buffer), checkpointed under the same names as burn's `SgdState`, and runs burn-optim's
//! operation chain, op for op, elsewhere.

mod adam;
mod lion;
mod sgd;

pub use adam::{AdamParams, FusedAdam, FusedAdamW};
pub use lion::{FusedLion, LionParams};
pub use sgd::{FusedSgd, FusedSgdState};

use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

/// Whether the fused optimizers take the single-pass path for a parameter `tensor` with no
/// state yet: an f32 tensor on flex. (Any other goes to burn-optim's arithmetic.)
pub fn fuses<const D: usize>(tensor: &Tensor<D>) -> bool {
    on_flex_f32(tensor)
}

/// Whether `tensor` is an f32 tensor on flex (the dtypes of its companions are checked by the
/// caller with [`is_f32`]).
fn on_flex_f32<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.device() == Device::flex() && is_f32(tensor)
}

fn is_f32<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.dtype() == DType::F32
}

/// The f32 values of `data`, writable; `None` for another dtype or misaligned bytes.
fn values_mut(data: &mut TensorData) -> Option<&mut [f32]> {
    data.as_mut_slice::<f32>().ok()
}

/// The f32 values of `data`; `None` for another dtype or misaligned bytes.
fn values(data: &TensorData) -> Option<&[f32]> {
    data.as_slice::<f32>().ok()
}

/// `f(p, g)` for every element, in parallel chunks; both buffers writable (the gradient's
/// buffer becomes state where the first step's state is the gradient).
fn zip2(p: &mut [f32], g: &mut [f32], f: impl Fn(&mut f32, &mut f32) + Sync) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks_mut(CHUNK))
        .for_each(|(p, g)| {
            for (p, g) in p.iter_mut().zip(g.iter_mut()) {
                f(p, g);
            }
        });
}

/// `f(p, g, m)` for every element, in parallel chunks.
fn zip3(p: &mut [f32], g: &[f32], m: &mut [f32], f: impl Fn(&mut f32, f32, &mut f32) + Sync) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .for_each(|((p, g), m)| {
            for ((p, g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
                f(p, *g, m);
            }
        });
}

/// `f(p, g, m, v)` for every element, in parallel chunks.
fn zip4(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    f: impl Fn(&mut f32, f32, &mut f32, &mut f32) + Sync,
) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                f(p, *g, m, v);
            }
        });
}

/// burn's `sign` on flex: 0 for 0 and NaN, else 1 with the sign of `x`.
#[inline(always)]
fn sign(x: f32) -> f32 {
    if x.is_nan() || x == 0.0 {
        0.0
    } else {
        1.0f32.copysign(x)
    }
}
