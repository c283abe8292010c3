//! `lion`: the sign of an interpolated momentum, with decoupled weight decay.

use burn::optim::ModuleOptimizer;

use super::{BuiltinConfig, BuiltinOptimizer, ParamLayout, beta, lr, weight_decay};
use crate::error::SpecError;
use crate::fused::{FusedLion, LionParams};
use crate::schema::{HyperParam, Values};

/// The typed config of `lion` (Chen et al. 2023; burn-optim's `Lion`, fused on flex).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LionConfig {
    /// Base learning rate.
    pub lr: f64,
    /// Interpolation between momentum and gradient for the update, in `[0, 1)`.
    pub beta1: f64,
    /// Decay of the momentum, in `[0, 1)`.
    pub beta2: f64,
    /// Decoupled weight decay: `p <- p (1 - lr wd)`.
    pub weight_decay: f64,
}

impl BuiltinOptimizer for LionConfig {
    const NAME: &'static str = "lion";
    const DOC: &'static str = "Lion (Chen et al. 2023): the sign of an interpolated momentum, \
        decoupled weight decay (burn-optim's Lion, checked against the authors' reference).";

    fn params() -> Vec<HyperParam> {
        vec![
            lr(1e-4),
            beta(
                "beta1",
                "interpolation between momentum and gradient for the update",
                0.9,
            ),
            beta("beta2", "decay of the momentum", 0.99),
            weight_decay("decoupled weight decay", 0.0),
        ]
    }

    fn from_values(values: &Values<'_>) -> Result<Self, SpecError> {
        Ok(Self {
            lr: values.float("lr")?,
            beta1: values.float("beta1")?,
            beta2: values.float("beta2")?,
            weight_decay: values.float("weight_decay")?,
        })
    }

    fn module_optimizer(&self, _layout: &ParamLayout) -> ModuleOptimizer {
        // burn-optim's Lion keeps its hyper-parameters in f32.
        ModuleOptimizer::from(FusedLion::new(LionParams {
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            weight_decay: self.weight_decay as f32,
        }))
    }
}

impl From<LionConfig> for BuiltinConfig {
    fn from(config: LionConfig) -> Self {
        BuiltinConfig::Lion(config)
    }
}
