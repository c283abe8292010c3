//! Single-pass Adam and AdamW for f32 parameters on the CPU backend (flex).
//!
//! burn-optim's Adam is a chain of tensor operations: about fifteen passes over memory per step
//! (`m * b1`, `g * (1 - b1)`, their sum, the same for `v`, a square root, a division, ...) and a
//! fresh buffer for most of them. On a CPU backend without operation fusion that moves about
//! 120 bytes per parameter element where the update needs 28 (read parameter, gradient, `m`,
//! `v`; write parameter, `m`, `v`): BENCHMARKS.md measures the difference.
//!
//! [`FusedAdam`] and [`FusedAdamW`] compute the same update in one pass over the four buffers,
//! on rayon's pool, in place (flex hands over a tensor's buffer without copying when nothing
//! else holds it). They keep burn's state types ([`AdamState`], [`AdamWState`]) and burn's
//! operation order, element by element, so they agree with burn-optim's Adam and AdamW bit for
//! bit (the tests check 20 steps); on every other device, or for other dtypes, they call
//! burn-optim's own implementation.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, Optimizer,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

/// Hyper-parameters shared by Adam and AdamW, as burn-optim stores them (f32).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamParams {
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub epsilon: f32,
    /// Adam: L2 penalty added to the gradient; AdamW: decoupled decay rate.
    pub weight_decay: f32,
}

/// Adam (L2 weight decay in the gradient) in one pass on flex; burn-optim's [`Adam`] elsewhere.
#[derive(Clone)]
pub struct FusedAdam {
    params: AdamParams,
    fallback: Adam,
}

/// AdamW (decoupled weight decay) in one pass on flex; burn-optim's [`AdamW`] elsewhere.
#[derive(Clone)]
pub struct FusedAdamW {
    params: AdamParams,
    fallback: AdamW,
}

impl FusedAdam {
    /// Adam with `params` (weight decay 0: none), and burn-optim's Adam with the same values
    /// for the devices it does not fuse.
    pub fn new(params: AdamParams) -> Self {
        let decay =
            (params.weight_decay != 0.0).then(|| WeightDecayConfig::new(params.weight_decay));
        let fallback = AdamConfig::new()
            .with_beta_1(params.beta1)
            .with_beta_2(params.beta2)
            .with_epsilon(params.epsilon)
            .with_weight_decay(decay)
            .build();
        Self { params, fallback }
    }
}

impl FusedAdamW {
    /// AdamW with `params`, and burn-optim's AdamW with the same values for the devices it
    /// does not fuse.
    pub fn new(params: AdamParams) -> Self {
        let fallback = AdamWConfig::new()
            .with_beta_1(params.beta1)
            .with_beta_2(params.beta2)
            .with_epsilon(params.epsilon)
            .with_weight_decay(params.weight_decay)
            .build();
        Self { params, fallback }
    }
}

/// The variant: where the weight decay enters and how the moments are bias-corrected, each
/// exactly as burn-optim writes it.
#[derive(Clone, Copy)]
enum Variant {
    /// Adam: `g + p * penalty` (L2, none when 0); update
    /// `(m * combined) / (sqrt(v) + eps * sqrt(1 - b2^t))`.
    Adam {
        penalty: Option<f32>,
        combined: f32,
        epsilon: f32,
    },
    /// AdamW: update `(m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`, then
    /// `p * (1 - lr * wd) - lr * update` (no decay factor when `lr * wd` is 0).
    AdamW {
        keep: Option<f32>,
        correction1: f32,
        correction2: f32,
        epsilon: f32,
    },
}

/// The per-step constants.
#[derive(Clone, Copy)]
struct Step {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    lr: f32,
    variant: Variant,
    first: bool,
}

impl Step {
    /// One element: updates `p`, `m`, `v` in place.
    #[inline(always)]
    fn apply(&self, p: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        let g = match self.variant {
            Variant::Adam {
                penalty: Some(penalty),
                ..
            } => *p * penalty + g,
            _ => g,
        };
        let gm = g * self.one_minus_beta1;
        let gv = (g * g) * self.one_minus_beta2;
        if self.first {
            *m = gm;
            *v = gv;
        } else {
            *m = *m * self.beta1 + gm;
            *v = *v * self.beta2 + gv;
        }
        *p = match self.variant {
            Variant::Adam {
                combined, epsilon, ..
            } => *p - ((*m * combined) / (v.sqrt() + epsilon)) * self.lr,
            Variant::AdamW {
                keep,
                correction1,
                correction2,
                epsilon,
            } => {
                let update = (*m / correction1) / ((*v / correction2).sqrt() + epsilon);
                match keep {
                    Some(keep) => *p * keep - update * self.lr,
                    None => *p - update * self.lr,
                }
            }
        };
    }
}

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

/// Whether [`FusedAdam`] and [`FusedAdamW`] take the single-pass path for a parameter
/// `tensor` with no state yet: an f32 tensor on flex. (Any other goes to burn-optim.)
pub fn fuses<const D: usize>(tensor: &Tensor<D>) -> bool {
    fusable(tensor, tensor, None)
}

/// Whether the fused path applies: f32 tensors on flex, no AMSGrad state.
fn fusable<const D: usize>(
    tensor: &Tensor<D>,
    grad: &Tensor<D>,
    momentum: Option<&AdaptiveMomentumState<D>>,
) -> bool {
    tensor.device() == Device::flex()
        && tensor.dtype() == DType::F32
        && grad.dtype() == DType::F32
        && momentum.is_none_or(|m| {
            m.max_moment_2.is_none()
                && m.moment_1.dtype() == DType::F32
                && m.moment_2.dtype() == DType::F32
        })
}

/// The fused step on tensors [`fusable`] accepted. `variant` gets the step number `t`.
fn fused_step<const D: usize>(
    params: &AdamParams,
    lr: f64,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    momentum: Option<AdaptiveMomentumState<D>>,
    variant: impl FnOnce(i32) -> Variant,
) -> (Tensor<D>, AdaptiveMomentumState<D>) {
    let device = tensor.device();
    let time = momentum.as_ref().map_or(1, |m| m.time + 1);
    let step = Step {
        beta1: params.beta1,
        one_minus_beta1: 1.0 - params.beta1,
        beta2: params.beta2,
        one_minus_beta2: 1.0 - params.beta2,
        lr: lr as f32,
        variant: variant(time as i32),
        first: time == 1,
    };
    let shape = tensor.shape();
    let n = shape.num_elements();
    // Owned buffers, without a copy when nothing else holds the tensor (flex's `into_data`).
    let mut p = tensor.into_data();
    let g = grad.into_data();
    let (mut m, mut v) = match momentum {
        Some(state) => (state.moment_1.into_data(), state.moment_2.into_data()),
        None => (
            TensorData::new(vec![0.0f32; n], shape.clone()),
            TensorData::new(vec![0.0f32; n], shape),
        ),
    };
    {
        let slices = (
            p.as_mut_slice::<f32>(),
            g.as_slice::<f32>(),
            m.as_mut_slice::<f32>(),
            v.as_mut_slice::<f32>(),
        );
        let (Ok(p), Ok(g), Ok(m), Ok(v)) = slices else {
            unreachable!("fusable checked the dtypes: f32 everywhere");
        };
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    step.apply(p, *g, m, v);
                }
            });
    }
    let state = AdaptiveMomentumState::new(
        time,
        Tensor::from_data(m, &device),
        Tensor::from_data(v, &device),
    );
    (Tensor::from_data(p, &device), state)
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !fusable(&tensor, &grad, state.as_ref().map(|s| &s.momentum)) {
            return self.fallback.step(lr, tensor, grad, state);
        }
        let params = self.params;
        let (tensor, momentum) =
            fused_step(&params, lr, tensor, grad, state.map(|s| s.momentum), |t| {
                let bias_correction2_sqrt = (1.0 - params.beta2.powi(t)).sqrt();
                Variant::Adam {
                    penalty: (params.weight_decay != 0.0).then_some(params.weight_decay),
                    combined: bias_correction2_sqrt / (1.0 - params.beta1.powi(t)),
                    epsilon: params.epsilon * bias_correction2_sqrt,
                }
            });
        (tensor, Some(AdamState { momentum }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Adam::to_device(state, device)
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !fusable(&tensor, &grad, state.as_ref().map(|s| &s.momentum)) {
            return self.fallback.step(lr, tensor, grad, state);
        }
        let params = self.params;
        let rate = lr * params.weight_decay as f64;
        let (tensor, momentum) =
            fused_step(&params, lr, tensor, grad, state.map(|s| s.momentum), |t| {
                Variant::AdamW {
                    keep: (rate != 0.0).then_some((1.0 - rate) as f32),
                    correction1: 1.0 - params.beta1.powi(t),
                    correction2: 1.0 - params.beta2.powi(t),
                    epsilon: params.epsilon,
                }
            });
        (tensor, Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}
