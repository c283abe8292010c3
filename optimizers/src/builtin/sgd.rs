//! `sgd`: stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay.

use burn::optim::ModuleOptimizer;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;

use super::{BuiltinConfig, BuiltinOptimizer, ParamLayout, lr, weight_decay};
use crate::error::SpecError;
use crate::fused::FusedSgd;
use crate::schema::{HyperParam, Kind, Values};

/// The typed config of `sgd` (torch.optim.SGD semantics; burn-optim's `Sgd`, fused on flex).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Base learning rate.
    pub lr: f64,
    /// Momentum factor in `[0, 1)`; 0 is plain SGD.
    pub momentum: f64,
    /// Dampening of the momentum's gradient term, in `[0, 1]`.
    pub dampening: f64,
    /// Nesterov momentum (needs `momentum > 0` and `dampening = 0`).
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl BuiltinOptimizer for SgdConfig {
    const NAME: &'static str = "sgd";
    const DOC: &'static str = "Stochastic gradient descent with optional momentum, Nesterov and \
        L2 weight decay (torch.optim.SGD semantics; burn-optim's Sgd).";

    fn params() -> Vec<HyperParam> {
        vec![
            lr(0.01),
            HyperParam::float(
                "momentum",
                "momentum factor (0: none)",
                Kind::UNIT_HALF_OPEN,
                0.0,
            ),
            HyperParam::float(
                "dampening",
                "dampening of the momentum's gradient term",
                Kind::UNIT_CLOSED,
                0.0,
            ),
            HyperParam::bool(
                "nesterov",
                "Nesterov momentum (needs momentum > 0, dampening 0)",
                false,
            ),
            weight_decay("L2 penalty added to the gradient", 0.0),
        ]
    }

    fn from_values(values: &Values<'_>) -> Result<Self, SpecError> {
        let config = Self {
            lr: values.float("lr")?,
            momentum: values.float("momentum")?,
            dampening: values.float("dampening")?,
            nesterov: values.bool("nesterov")?,
            weight_decay: values.float("weight_decay")?,
        };
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(SpecError::Inconsistent {
                optimizer: Self::NAME.into(),
                message: format!(
                    "nesterov = true needs momentum > 0 and dampening = 0 (got momentum = {}, \
                     dampening = {})",
                    config.momentum, config.dampening
                ),
            });
        }
        Ok(config)
    }

    fn module_optimizer(&self, _layout: &ParamLayout) -> ModuleOptimizer {
        let momentum = (self.momentum > 0.0).then_some(MomentumConfig {
            momentum: self.momentum,
            dampening: self.dampening,
            nesterov: self.nesterov,
        });
        ModuleOptimizer::from(FusedSgd::new(self.l2_penalty(), momentum))
    }
}

impl SgdConfig {
    /// burn-optim's weight decay config: none when the penalty is 0.
    pub fn l2_penalty(&self) -> Option<WeightDecayConfig> {
        (self.weight_decay != 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32))
    }
}

impl From<SgdConfig> for BuiltinConfig {
    fn from(config: SgdConfig) -> Self {
        BuiltinConfig::Sgd(config)
    }
}
