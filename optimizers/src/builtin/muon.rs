//! `muon`: Newton-Schulz orthogonalised momentum for 2-D hidden weight matrices, with an
//! auxiliary AdamW for everything else.
//!
//! burn's momentum is SGD-style (`v <- beta v + g`, starting at `g`) where the reference
//! interpolates (`b <- beta b + (1 - beta) g`, starting at zero). With dampening 0 the
//! reference buffer is exactly `(1 - beta) v` at every step (and the Nesterov input likewise), and
//! Newton-Schulz divides by the Frobenius norm, so the updates agree; the golden test confirms
//! it.

use burn::module::{Module, ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, MuonConfig as BurnMuonConfig};

use super::{
    AdamWConfig, BuiltinConfig, BuiltinOptimizer, ParamLayout, Scaled, beta, eps, lr, weight_decay,
};
use crate::error::SpecError;
use crate::schema::{HyperParam, Kind, Values};

/// Substrings of a parameter path that send a 2-D weight to Muon's auxiliary AdamW instead of
/// Muon: embeddings and the output head, as in the reference implementation.
pub const MUON_EXCLUDED_PATH_PARTS: [&str; 3] = ["embedding", "embed", "head"];

/// The typed config of `muon` (Jordan et al. 2024; burn-optim's `Muon` plus the fused AdamW).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MuonConfig {
    /// Base learning rate of the hidden matrices.
    pub lr: f64,
    /// Momentum coefficient of the hidden-matrix update, in `[0, 1)`.
    pub momentum: f64,
    /// Nesterov-style momentum.
    pub nesterov: bool,
    /// Newton-Schulz iterations, in `[1, 20]`.
    pub ns_steps: usize,
    /// Decoupled weight decay of the hidden matrices.
    pub weight_decay: f64,
    /// The auxiliary AdamW (embeddings, head, norms, biases); its `lr` is `adam_lr`, scaled by
    /// the same schedule as `lr`.
    pub adam: AdamWConfig,
}

impl BuiltinOptimizer for MuonConfig {
    const NAME: &'static str = "muon";
    const DOC: &'static str = "Muon (Jordan et al. 2024): Newton-Schulz orthogonalised momentum \
        for 2-D hidden weight matrices; embeddings, output head, norms and biases use an \
        auxiliary AdamW, as in the reference implementation.";

    fn params() -> Vec<HyperParam> {
        vec![
            lr(0.02),
            beta(
                "momentum",
                "momentum coefficient of the hidden-matrix update",
                0.95,
            ),
            HyperParam::bool("nesterov", "Nesterov-style momentum", true),
            HyperParam::int("ns_steps", "Newton-Schulz iterations", 1, 20, 5),
            weight_decay("decoupled weight decay of the hidden matrices", 0.0),
            HyperParam::float(
                "adam_lr",
                "learning rate of the auxiliary AdamW (scaled by the same schedule)",
                Kind::POSITIVE_LOG,
                3e-4,
            ),
            beta("adam_beta1", "auxiliary AdamW beta1", 0.9),
            beta("adam_beta2", "auxiliary AdamW beta2", 0.95),
            eps("adam_eps", 1e-10),
            HyperParam::float(
                "adam_weight_decay",
                "auxiliary AdamW decoupled weight decay",
                Kind::NON_NEGATIVE,
                0.0,
            ),
        ]
    }

    fn from_values(values: &Values<'_>) -> Result<Self, SpecError> {
        // The schema bounds ns_steps to [1, 20], so the conversion cannot fail.
        let ns_steps = values.int("ns_steps")?.clamp(1, 20) as usize;
        Ok(Self {
            lr: values.float("lr")?,
            momentum: values.float("momentum")?,
            nesterov: values.bool("nesterov")?,
            ns_steps,
            weight_decay: values.float("weight_decay")?,
            adam: AdamWConfig::read(values, "adam_")?,
        })
    }

    fn module_optimizer(&self, layout: &ParamLayout) -> ModuleOptimizer {
        let aux = Scaled {
            inner: self.adam.fused(),
            lr_ratio: self.adam.lr / self.lr,
        };
        // Dampening 0 makes burn's momentum a constant multiple of the reference's, which
        // the Frobenius normalisation of Newton-Schulz cancels (see the module docs).
        let muon = BurnMuonConfig::new()
            .with_momentum(MomentumConfig {
                momentum: self.momentum,
                dampening: 0.0,
                nesterov: self.nesterov,
            })
            .with_ns_steps(self.ns_steps)
            .with_weight_decay(
                (self.weight_decay != 0.0)
                    .then(|| WeightDecayConfig::new(self.weight_decay as f32)),
            )
            .build();
        let hidden = ParamGroup::from_ids(hidden_params(layout));
        ModuleOptimizer::from(aux).with_group(hidden, muon, None)
    }
}

impl From<MuonConfig> for BuiltinConfig {
    fn from(config: MuonConfig) -> Self {
        BuiltinConfig::Muon(config)
    }
}

/// The ids of the parameters Muon updates: 2-D float weights whose path contains none of
/// [`MUON_EXCLUDED_PATH_PARTS`]. Everything else goes to the auxiliary AdamW.
pub fn muon_hidden_params<M: Module>(module: &M) -> Vec<ParamId> {
    hidden_params(&ParamLayout::of(module))
}

fn hidden_params(layout: &ParamLayout) -> Vec<ParamId> {
    layout
        .params
        .iter()
        .filter(|p| {
            p.rank == 2
                && !p
                    .path
                    .iter()
                    .any(|part| MUON_EXCLUDED_PATH_PARTS.iter().any(|x| part.contains(x)))
        })
        .map(|p| p.id)
        .collect()
}
