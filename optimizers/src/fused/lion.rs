//! [`FusedLion`]: burn-optim's Lion in one pass (see the [module docs](super)).

use burn::optim::{Lion, LionConfig, LionState, Optimizer};
use burn::tensor::{Device, Tensor};

use super::{is_f32, on_flex_f32, sign, values, values_mut, zip2, zip3};

/// Lion's hyper-parameters, as burn-optim stores them (f32).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LionParams {
    /// Interpolation between momentum and gradient for the update.
    pub beta1: f32,
    /// Decay of the momentum.
    pub beta2: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
}

/// Lion in one pass on flex; burn-optim's [`Lion`] elsewhere.
#[derive(Clone)]
pub struct FusedLion {
    params: LionParams,
    fallback: Lion,
}

impl FusedLion {
    /// Lion with `params`, and burn-optim's Lion with the same values for the devices it does
    /// not fuse.
    pub fn new(params: LionParams) -> Self {
        let fallback = LionConfig::new()
            .with_beta_1(params.beta1)
            .with_beta_2(params.beta2)
            .with_weight_decay(params.weight_decay)
            .build();
        Self { params, fallback }
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
        momentum: Option<Tensor<D>>,
    ) -> Result<(Tensor<D>, LionState<D>), (Tensor<D>, Tensor<D>, Option<Tensor<D>>)> {
        let device = tensor.device();
        let back = |data| Tensor::from_data(data, &device);
        let LionParams {
            beta1,
            beta2,
            weight_decay,
        } = self.params;
        let (one_minus_beta1, one_minus_beta2) = (1.0 - beta1, 1.0 - beta2);
        // burn: `p * (1 - lr wd)` (in f64, then as f32), skipped when the factor is 1.
        let decay = 1.0 - lr * weight_decay as f64;
        let keep = (decay != 1.0).then_some(decay as f32);
        let lr = lr as f32;
        let apply = move |p: &mut f32, update: f32| {
            let kept = match keep {
                Some(keep) => *p * keep,
                None => *p,
            };
            *p = kept - update * lr;
        };
        let mut p = tensor.into_data();
        let mut g = grad.into_data();
        match momentum {
            None => {
                // The first momentum is `(1 - beta2) g`: kept in the gradient's buffer.
                let Some((ps, gs)) = values_mut(&mut p).zip(values_mut(&mut g)) else {
                    return Err((back(p), back(g), None));
                };
                zip2(ps, gs, |p, g| {
                    let update = sign(*g * one_minus_beta1);
                    *g *= one_minus_beta2;
                    apply(p, update);
                });
                Ok((back(p), LionState::new(back(g))))
            }
            Some(momentum) => {
                let mut m = momentum.into_data();
                let (Some(ps), Some(gs), Some(ms)) =
                    (values_mut(&mut p), values(&g), values_mut(&mut m))
                else {
                    return Err((back(p), back(g), Some(back(m))));
                };
                zip3(ps, gs, ms, |p, g, m| {
                    let update = sign(*m * beta1 + g * one_minus_beta1);
                    *m = *m * beta2 + g * one_minus_beta2;
                    apply(p, update);
                });
                Ok((back(p), LionState::new(back(m))))
            }
        }
    }
}

impl Optimizer for FusedLion {
    type State<const D: usize> = LionState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let fusable = on_flex_f32(&tensor)
            && is_f32(&grad)
            && state.as_ref().is_none_or(|s| is_f32(&s.momentum));
        if !fusable {
            return self.fallback.step(lr, tensor, grad, state);
        }
        match self.fused_step(lr, tensor, grad, state.map(|s| s.momentum)) {
            Ok((tensor, state)) => (tensor, Some(state)),
            Err((tensor, grad, momentum)) => {
                self.fallback
                    .step(lr, tensor, grad, momentum.map(LionState::new))
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Lion::to_device(state, device)
    }
}
