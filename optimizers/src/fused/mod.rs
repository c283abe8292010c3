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
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just now).
                return unsafe { chunk2_avx2(p, g, &f) };
            }
            chunk2(p, g, &f)
        });
}

/// One chunk of [`zip2`] (see [`chunk4`]).
#[inline(always)]
fn chunk2(p: &mut [f32], g: &mut [f32], f: &impl Fn(&mut f32, &mut f32)) {
    let n = p.len();
    let g = &mut g[..n];
    for i in 0..n {
        f(&mut p[i], &mut g[i]);
    }
}

/// [`chunk2`] for AVX2 (see [`chunk4_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn chunk2_avx2(p: &mut [f32], g: &mut [f32], f: &impl Fn(&mut f32, &mut f32)) {
    chunk2(p, g, f)
}

/// `f(p, g, m)` for every element, in parallel chunks.
fn zip3(p: &mut [f32], g: &[f32], m: &mut [f32], f: impl Fn(&mut f32, f32, &mut f32) + Sync) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .for_each(|((p, g), m)| {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just now).
                return unsafe { chunk3_avx2(p, g, m, &f) };
            }
            chunk3(p, g, m, &f)
        });
}

/// One chunk of [`zip3`] (see [`chunk4`]).
#[inline(always)]
fn chunk3(p: &mut [f32], g: &[f32], m: &mut [f32], f: &impl Fn(&mut f32, f32, &mut f32)) {
    let n = p.len();
    let (g, m) = (&g[..n], &mut m[..n]);
    for i in 0..n {
        f(&mut p[i], g[i], &mut m[i]);
    }
}

/// [`chunk3`] for AVX2 (see [`chunk4_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn chunk3_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], f: &impl Fn(&mut f32, f32, &mut f32)) {
    chunk3(p, g, m, f)
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
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just now).
                return unsafe { chunk4_avx2(p, g, m, v, &f) };
            }
            chunk4(p, g, m, v, &f)
        });
}

/// One chunk of [`zip4`]. Indexing four slices re-sliced to one length (no bounds checks
/// left) vectorises where a chain of four zipped iterators did not.
#[inline(always)]
fn chunk4(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    f: &impl Fn(&mut f32, f32, &mut f32, &mut f32),
) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        f(&mut p[i], g[i], &mut m[i], &mut v[i]);
    }
}

/// [`chunk4`] compiled for AVX2: eight lanes where the baseline has four. Only lane width
/// changes: no fused multiply-add is formed (Rust never contracts `a * b + c`), and square
/// roots and divisions are correctly rounded in every lane, so results equal the scalar loop's
/// bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn chunk4_avx2(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    f: &impl Fn(&mut f32, f32, &mut f32, &mut f32),
) {
    chunk4(p, g, m, v, f)
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
