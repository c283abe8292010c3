//! [`FusedAdam`] and [`FusedAdamW`]: burn-optim's Adam and AdamW in one pass (see the
//! [module docs](super)).

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, Optimizer,
};
use burn::tensor::{Device, Tensor, TensorData};

use super::{is_f32, on_flex_f32, values, values_mut, zip4};

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

impl AdamParams {
    /// The values in burn-optim's precision (f32) from a config's f64s.
    pub fn new(beta1: f64, beta2: f64, epsilon: f64, weight_decay: f64) -> Self {
        Self {
            beta1: beta1 as f32,
            beta2: beta2 as f32,
            epsilon: epsilon as f32,
            weight_decay: weight_decay as f32,
        }
    }
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
    /// The moments of one element: `m`, `v` updated from the gradient `g` (the first step
    /// writes them without reading).
    #[inline(always)]
    fn moments<const FIRST: bool>(&self, g: f32, m: &mut f32, v: &mut f32) {
        let gm = g * self.one_minus_beta1;
        let gv = (g * g) * self.one_minus_beta2;
        if FIRST {
            *m = gm;
            *v = gv;
        } else {
            *m = *m * self.beta1 + gm;
            *v = *v * self.beta2 + gv;
        }
    }

    /// Every element: updates `p`, `m`, `v` in place. The variant and the first-step flag
    /// are matched once, outside the loop, so that each of the eight loops is straight-line
    /// arithmetic the compiler vectorises (square root and division included: both are
    /// correctly rounded in every lane, so the result is the scalar one, bit for bit).
    fn apply(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        if self.first {
            self.apply_with::<true>(p, g, m, v)
        } else {
            self.apply_with::<false>(p, g, m, v)
        }
    }

    fn apply_with<const FIRST: bool>(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let s = *self;
        let lr = s.lr;
        match s.variant {
            Variant::Adam {
                penalty: None,
                combined,
                epsilon,
            } => zip4(p, g, m, v, move |p, g, m, v| {
                s.moments::<FIRST>(g, m, v);
                *p -= ((*m * combined) / (v.sqrt() + epsilon)) * lr;
            }),
            Variant::Adam {
                penalty: Some(penalty),
                combined,
                epsilon,
            } => zip4(p, g, m, v, move |p, g, m, v| {
                s.moments::<FIRST>(*p * penalty + g, m, v);
                *p -= ((*m * combined) / (v.sqrt() + epsilon)) * lr;
            }),
            Variant::AdamW {
                keep: None,
                correction1,
                correction2,
                epsilon,
            } => zip4(p, g, m, v, move |p, g, m, v| {
                s.moments::<FIRST>(g, m, v);
                let update = (*m / correction1) / ((*v / correction2).sqrt() + epsilon);
                *p -= update * lr;
            }),
            Variant::AdamW {
                keep: Some(keep),
                correction1,
                correction2,
                epsilon,
            } => zip4(p, g, m, v, move |p, g, m, v| {
                s.moments::<FIRST>(g, m, v);
                let update = (*m / correction1) / ((*v / correction2).sqrt() + epsilon);
                *p = *p * keep - update * lr;
            }),
        }
    }
}

/// Whether the fused path applies: f32 tensors on flex, no AMSGrad state.
fn fusable<const D: usize>(
    tensor: &Tensor<D>,
    grad: &Tensor<D>,
    momentum: Option<&AdaptiveMomentumState<D>>,
) -> bool {
    on_flex_f32(tensor)
        && is_f32(grad)
        && momentum
            .is_none_or(|m| m.max_moment_2.is_none() && is_f32(&m.moment_1) && is_f32(&m.moment_2))
}

/// The fused step on tensors [`fusable`] accepted. `variant` gets the step number `t`. `Err`
/// hands the tensors back when their bytes cannot be viewed as f32 (misaligned), for
/// burn-optim to step.
// The `Err` hands the (moved) tensors back on a path that does not happen on flex in
// practice; boxing them would cost an allocation per step on the path that does.
#[allow(clippy::type_complexity, clippy::result_large_err)]
fn fused_step<const D: usize>(
    params: &AdamParams,
    lr: f64,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    momentum: Option<AdaptiveMomentumState<D>>,
    variant: impl FnOnce(i32) -> Variant,
) -> Result<
    (Tensor<D>, AdaptiveMomentumState<D>),
    (Tensor<D>, Tensor<D>, Option<AdaptiveMomentumState<D>>),
> {
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
    let had_state = momentum.is_some();
    let (mut m, mut v) = match momentum {
        Some(state) => (state.moment_1.into_data(), state.moment_2.into_data()),
        None => (
            TensorData::new(vec![0.0f32; n], shape.clone()),
            TensorData::new(vec![0.0f32; n], shape),
        ),
    };
    let fused = match (
        values_mut(&mut p),
        values(&g),
        values_mut(&mut m),
        values_mut(&mut v),
    ) {
        (Some(p), Some(g), Some(m), Some(v)) => {
            step.apply(p, g, m, v);
            true
        }
        _ => false,
    };
    let back = |data| Tensor::from_data(data, &device);
    if !fused {
        let momentum = had_state.then(|| AdaptiveMomentumState::new(time - 1, back(m), back(v)));
        return Err((back(p), back(g), momentum));
    }
    let state = AdaptiveMomentumState::new(time, back(m), back(v));
    Ok((back(p), state))
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
        let fused = fused_step(&params, lr, tensor, grad, state.map(|s| s.momentum), |t| {
            let bias_correction2_sqrt = (1.0 - params.beta2.powi(t)).sqrt();
            Variant::Adam {
                penalty: (params.weight_decay != 0.0).then_some(params.weight_decay),
                combined: bias_correction2_sqrt / (1.0 - params.beta1.powi(t)),
                epsilon: params.epsilon * bias_correction2_sqrt,
            }
        });
        match fused {
            Ok((tensor, momentum)) => (tensor, Some(AdamState { momentum })),
            Err((tensor, grad, momentum)) => {
                let state = momentum.map(|momentum| AdamState { momentum });
                self.fallback.step(lr, tensor, grad, state)
            }
        }
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
        let fused = fused_step(&params, lr, tensor, grad, state.map(|s| s.momentum), |t| {
            Variant::AdamW {
                keep: (rate != 0.0).then_some((1.0 - rate) as f32),
                correction1: 1.0 - params.beta1.powi(t),
                correction2: 1.0 - params.beta2.powi(t),
                epsilon: params.epsilon,
            }
        });
        match fused {
            Ok((tensor, momentum)) => (tensor, Some(AdamWState { momentum })),
            Err((tensor, grad, momentum)) => {
                let state = momentum.map(|momentum| AdamWState { momentum });
                self.fallback.step(lr, tensor, grad, state)
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}
