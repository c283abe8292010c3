//! `adamw`: Adam with decoupled weight decay.

use burn::optim::ModuleOptimizer;

use super::{BuiltinConfig, BuiltinOptimizer, ParamLayout, adam_params, adam_values};
use crate::error::SpecError;
use crate::fused::{AdamParams, FusedAdamW};
use crate::schema::{HyperParam, Values};

/// The typed config of `adamw` (torch.optim.AdamW semantics; burn-optim's `AdamW`, fused on
/// flex).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Base learning rate.
    pub lr: f64,
    /// Decay of the first-moment estimate, in `[0, 1)`.
    pub beta1: f64,
    /// Decay of the second-moment estimate, in `[0, 1)`.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay: `p <- p (1 - lr wd)`.
    pub weight_decay: f64,
}

impl BuiltinOptimizer for AdamWConfig {
    const NAME: &'static str = "adamw";
    const DOC: &'static str = "AdamW: Adam with decoupled weight decay, p <- p (1 - lr wd) \
        (torch.optim.AdamW semantics; burn-optim's AdamW).";

    fn params() -> Vec<HyperParam> {
        adam_params("decoupled weight decay", 0.01)
    }

    fn from_values(values: &Values<'_>) -> Result<Self, SpecError> {
        Self::read(values, "")
    }

    fn module_optimizer(&self, _layout: &ParamLayout) -> ModuleOptimizer {
        ModuleOptimizer::from(self.fused())
    }
}

impl AdamWConfig {
    /// The config from the values of its keys under `prefix` (`adam_` for Muon's auxiliary
    /// AdamW).
    pub(super) fn read(values: &Values<'_>, prefix: &str) -> Result<Self, SpecError> {
        let [lr, beta1, beta2, eps, weight_decay] = adam_values(values, prefix)?;
        Ok(Self {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        })
    }

    /// The fused AdamW with these values (its learning rate is the one each step is given).
    pub fn fused(&self) -> FusedAdamW {
        FusedAdamW::new(AdamParams::new(
            self.beta1,
            self.beta2,
            self.eps,
            self.weight_decay,
        ))
    }
}

impl From<AdamWConfig> for BuiltinConfig {
    fn from(config: AdamWConfig) -> Self {
        BuiltinConfig::AdamW(config)
    }
}
