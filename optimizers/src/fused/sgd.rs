//! [`FusedSgd`]: burn-optim's SGD (L2 weight decay, momentum with dampening or Nesterov) in one
//! pass (see the [module docs](super)).

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{Optimizer, RecordState, StateSink, StateSource, join_path};
use burn::tensor::{Device, Tensor};

use super::{is_f32, on_flex_f32, values, values_mut, zip2, zip3};

/// SGD as burn-optim's `Sgd` computes it: one pass on flex, the same operation chain elsewhere.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedSgd {
    /// L2 penalty added to the gradient (burn keeps it in f32).
    penalty: Option<f32>,
    momentum: Option<Momentum>,
}

/// burn-optim's `Momentum`: the factor in f32 as burn stores it, the dampening in f64 as burn
/// stores it (its tensor op rounds `1 - dampening` to the tensor's dtype), and that rounding for
/// f32.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Momentum {
    momentum: f32,
    dampening: f64,
    one_minus_dampening: f32,
    nesterov: bool,
}

/// The state of [`FusedSgd`]: the momentum buffer, if momentum is on and a step was taken.
///
/// Checkpointed as burn-optim's `SgdState` is (`{prefix}.momentum.velocity`), so a state saved
/// by either loads into the other.
#[derive(Clone)]
pub struct FusedSgdState<const D: usize> {
    /// The velocity `v` of `v <- momentum v + (1 - dampening) g`.
    pub velocity: Option<Tensor<D>>,
}

impl<const D: usize> RecordState for FusedSgdState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        if let Some(velocity) = &self.velocity {
            let momentum = join_path(prefix, "momentum");
            out.push_tensor(&momentum, "velocity", velocity.clone().into_data());
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let momentum = join_path(prefix, "momentum");
        let velocity = src
            .take_tensor(&momentum, "velocity")
            .map(|data| Tensor::from_data(data, device));
        Some(Self { velocity })
    }
}

impl FusedSgd {
    /// SGD with burn-optim's weight decay and momentum configs (as `SgdConfig` takes them).
    pub fn new(weight_decay: Option<WeightDecayConfig>, momentum: Option<MomentumConfig>) -> Self {
        Self {
            penalty: weight_decay.map(|w| w.penalty),
            momentum: momentum.map(|m| Momentum {
                momentum: m.momentum as f32,
                dampening: m.dampening,
                one_minus_dampening: (1.0 - m.dampening) as f32,
                nesterov: m.nesterov,
            }),
        }
    }

    /// burn-optim's `Sgd::step`, op for op: weight decay, momentum, `p - lr g`.
    fn burn_step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        mut grad: Tensor<D>,
        velocity: Option<Tensor<D>>,
    ) -> (Tensor<D>, FusedSgdState<D>) {
        if let Some(penalty) = self.penalty {
            grad = tensor.clone().mul_scalar(penalty).add(grad);
        }
        let mut new_velocity = None;
        if let Some(m) = self.momentum {
            let v = match velocity {
                Some(v) => grad
                    .clone()
                    .mul_scalar(1.0 - m.dampening)
                    .add(v.mul_scalar(m.momentum)),
                None => grad.clone(),
            };
            grad = if m.nesterov {
                v.clone().mul_scalar(m.momentum).add(grad)
            } else {
                v.clone()
            };
            new_velocity = Some(v);
        }
        let state = FusedSgdState {
            velocity: new_velocity,
        };
        (tensor - grad.mul_scalar(lr), state)
    }

    /// The single pass; `Err` hands the tensors back when their bytes cannot be viewed as f32.
    // The `Err` hands the (moved) tensors back on a path that does not happen on flex in
    // practice; boxing them would cost an allocation per step on the path that does.
    #[allow(clippy::type_complexity, clippy::result_large_err)]
    fn fused_step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        velocity: Option<Tensor<D>>,
    ) -> Result<(Tensor<D>, FusedSgdState<D>), (Tensor<D>, Tensor<D>, Option<Tensor<D>>)> {
        let device = tensor.device();
        let back = |data| Tensor::from_data(data, &device);
        let lr = lr as f32;
        let penalty = self.penalty;
        // burn: `p * penalty + g`.
        let decayed = move |p: f32, g: f32| match penalty {
            Some(penalty) => p * penalty + g,
            None => g,
        };
        let mut p = tensor.into_data();
        let mut g = grad.into_data();
        match (self.momentum, velocity) {
            (None, velocity) => {
                let Some((ps, gs)) = values_mut(&mut p).zip(values_mut(&mut g)) else {
                    return Err((back(p), back(g), velocity));
                };
                zip2(ps, gs, |p, g| *p -= decayed(*p, *g) * lr);
                Ok((back(p), FusedSgdState { velocity }))
            }
            (Some(m), None) => {
                // The first velocity is the (decayed) gradient: kept in the gradient's buffer.
                let Some((ps, gs)) = values_mut(&mut p).zip(values_mut(&mut g)) else {
                    return Err((back(p), back(g), None));
                };
                zip2(ps, gs, |p, g| {
                    *g = decayed(*p, *g);
                    let update = if m.nesterov { *g * m.momentum + *g } else { *g };
                    *p -= update * lr;
                });
                let velocity = Some(back(g));
                Ok((back(p), FusedSgdState { velocity }))
            }
            (Some(m), Some(velocity)) => {
                let mut v = velocity.into_data();
                let (Some(ps), Some(gs), Some(vs)) =
                    (values_mut(&mut p), values(&g), values_mut(&mut v))
                else {
                    return Err((back(p), back(g), Some(back(v))));
                };
                zip3(ps, gs, vs, |p, g, v| {
                    let g = decayed(*p, g);
                    *v = g * m.one_minus_dampening + *v * m.momentum;
                    let update = if m.nesterov { *v * m.momentum + g } else { *v };
                    *p -= update * lr;
                });
                let velocity = Some(back(v));
                Ok((back(p), FusedSgdState { velocity }))
            }
        }
    }
}

impl Optimizer for FusedSgd {
    type State<const D: usize> = FusedSgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let velocity = state.and_then(|s| s.velocity);
        let fusable = on_flex_f32(&tensor) && is_f32(&grad) && velocity.as_ref().is_none_or(is_f32);
        let (tensor, grad, velocity) = if fusable {
            match self.fused_step(lr, tensor, grad, velocity) {
                Ok((tensor, state)) => return (tensor, Some(state)),
                Err(handed_back) => handed_back,
            }
        } else {
            (tensor, grad, velocity)
        };
        let (tensor, state) = self.burn_step(lr, tensor, grad, velocity);
        (tensor, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.velocity = state.velocity.map(|v| v.to_device(device));
        state
    }
}
