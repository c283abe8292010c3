//! `adam`: Adam with L2 weight decay added to the gradient.

use burn::optim::ModuleOptimizer;

use super::{BuiltinConfig, BuiltinOptimizer, ParamLayout, adam_params, adam_values};
use crate::error::SpecError;
use crate::fused::{AdamParams, FusedAdam};
use crate::schema::{HyperParam, Values};

/// The typed config of `adam` (torch.optim.Adam semantics; burn-optim's `Adam`, fused on flex).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Base learning rate.
    pub lr: f64,
    /// Decay of the first-moment estimate, in `[0, 1)`.
    pub beta1: f64,
    /// Decay of the second-moment estimate, in `[0, 1)`.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl BuiltinOptimizer for AdamConfig {
    const NAME: &'static str = "adam";
    const DOC: &'static str = "Adam with L2 weight decay added to the gradient \
        (torch.optim.Adam semantics; burn-optim's Adam).";

    fn params() -> Vec<HyperParam> {
        adam_params("L2 penalty added to the gradient", 0.0)
    }

    fn from_values(values: &Values<'_>) -> Result<Self, SpecError> {
        let [lr, beta1, beta2, eps, weight_decay] = adam_values(values, "")?;
        Ok(Self {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        })
    }

    fn module_optimizer(&self, _layout: &ParamLayout) -> ModuleOptimizer {
        ModuleOptimizer::from(FusedAdam::new(AdamParams::new(
            self.beta1,
            self.beta2,
            self.eps,
            self.weight_decay,
        )))
    }
}

impl From<AdamConfig> for BuiltinConfig {
    fn from(config: AdamConfig) -> Self {
        BuiltinConfig::Adam(config)
    }
}
