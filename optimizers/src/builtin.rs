//! The built-in optimizers: their schemas and how each becomes a burn [`ModuleOptimizer`].
//!
//! Every built-in is burn-optim's own implementation, configured from the spec and checked
//! against torch / the published references by the golden trajectories of the conformance suite
//! (`tests/conformance.rs`). Adam and AdamW run through [`crate::fused`] on flex: the same
//! arithmetic as burn-optim's, element for element, in one pass over memory instead of about
//! fifteen (bit-identical; the tests check it).
//!
//! Muon: burn's momentum is SGD-style (`v <- beta v + g`, starting at `g`) where the reference
//! interpolates (`b <- beta b + (1 - beta) g`, starting at zero). With dampening 0 the
//! reference buffer is exactly `(1 - beta) v` at every step (and the Nesterov input likewise), and
//! Newton-Schulz divides by the Frobenius norm, so the updates agree; the golden test confirms
//! it.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{LionConfig, ModuleOptimizer, MuonConfig, Optimizer, SgdConfig};
use burn::tensor::{Device, Tensor};

use crate::error::SpecError;
use crate::fused::{AdamParams, FusedAdam, FusedAdamW};
use crate::schema::{HyperParam, Kind, Schema};
use crate::spec::OptimizerSpec;

/// The names of the built-in optimizers, in display order.
pub const BUILTIN_NAMES: [&str; 5] = ["sgd", "adam", "adamw", "lion", "muon"];

/// Substrings of a parameter path that send a 2-D weight to Muon's auxiliary AdamW instead of
/// Muon: embeddings and the output head, as in the reference implementation.
pub const MUON_EXCLUDED_PATH_PARTS: [&str; 3] = ["embedding", "embed", "head"];

/// The built-in names, comma-separated, for error messages.
pub fn known_names() -> String {
    BUILTIN_NAMES.join(", ")
}

fn lr(default: f64) -> HyperParam {
    HyperParam::float(
        "lr",
        "base learning rate (a schedule scales it)",
        Kind::POSITIVE_LOG,
        default,
    )
}

fn weight_decay(doc: &str, default: f64) -> HyperParam {
    HyperParam::float("weight_decay", doc, Kind::NON_NEGATIVE, default)
}

fn beta(name: &str, doc: &str, default: f64) -> HyperParam {
    HyperParam::float(name, doc, Kind::UNIT_HALF_OPEN, default)
}

fn eps(name: &str, default: f64) -> HyperParam {
    HyperParam::float(
        name,
        "added to the denominator for numerical stability",
        Kind::POSITIVE_LOG,
        default,
    )
}

/// The schema of a built-in optimizer.
pub fn schema(name: &str) -> Result<Schema, SpecError> {
    let (doc, params) = match name {
        "sgd" => (
            "Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay \
             (torch.optim.SGD semantics; burn-optim's Sgd).",
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
            ],
        ),
        "adam" => (
            "Adam with L2 weight decay added to the gradient (torch.optim.Adam semantics; \
             burn-optim's Adam).",
            vec![
                lr(1e-3),
                beta("beta1", "decay of the first-moment estimate", 0.9),
                beta("beta2", "decay of the second-moment estimate", 0.999),
                eps("eps", 1e-8),
                weight_decay("L2 penalty added to the gradient", 0.0),
            ],
        ),
        "adamw" => (
            "AdamW: Adam with decoupled weight decay, p <- p (1 - lr wd) (torch.optim.AdamW \
             semantics; burn-optim's AdamW).",
            vec![
                lr(1e-3),
                beta("beta1", "decay of the first-moment estimate", 0.9),
                beta("beta2", "decay of the second-moment estimate", 0.999),
                eps("eps", 1e-8),
                weight_decay("decoupled weight decay", 0.01),
            ],
        ),
        "lion" => (
            "Lion (Chen et al. 2023): the sign of an interpolated momentum, decoupled weight decay \
             (burn-optim's Lion, checked against the authors' reference).",
            vec![
                lr(1e-4),
                beta(
                    "beta1",
                    "interpolation between momentum and gradient for the update",
                    0.9,
                ),
                beta("beta2", "decay of the momentum", 0.99),
                weight_decay("decoupled weight decay", 0.0),
            ],
        ),
        "muon" => (
            "Muon (Jordan et al. 2024): Newton-Schulz orthogonalised momentum for 2-D hidden weight \
             matrices; embeddings, output head, norms and biases use an auxiliary AdamW, as in the \
             reference implementation.",
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
            ],
        ),
        _ => {
            return Err(SpecError::UnknownOptimizer {
                name: name.to_string(),
                known: known_names(),
            });
        }
    };
    Ok(Schema {
        name: name.to_string(),
        doc: doc.to_string(),
        params,
    })
}

/// Cross-field checks that a per-key range cannot express.
pub(crate) fn check_consistency(spec: &OptimizerSpec) -> Result<(), SpecError> {
    if spec.name() == "sgd"
        && spec.bool("nesterov")
        && (spec.f64("momentum") <= 0.0 || spec.f64("dampening") != 0.0)
    {
        return Err(SpecError::Inconsistent {
            optimizer: "sgd".into(),
            message: format!(
                "nesterov = true needs momentum > 0 and dampening = 0 (got momentum = {}, dampening = {})",
                spec.f64("momentum"),
                spec.f64("dampening")
            ),
        });
    }
    Ok(())
}

fn decay(penalty: f64) -> Option<WeightDecayConfig> {
    (penalty != 0.0).then(|| WeightDecayConfig::new(penalty as f32))
}

fn adam_params(beta1: f64, beta2: f64, eps: f64, wd: f64) -> AdamParams {
    AdamParams {
        beta1: beta1 as f32,
        beta2: beta2 as f32,
        epsilon: eps as f32,
        weight_decay: wd as f32,
    }
}

fn adamw(lr_ratio: f64, beta1: f64, beta2: f64, eps: f64, wd: f64) -> Scaled<FusedAdamW> {
    Scaled {
        inner: FusedAdamW::new(adam_params(beta1, beta2, eps, wd)),
        lr_ratio,
    }
}

/// Build the whole-module optimizer a spec describes. `module` is needed to pick parameter
/// groups (Muon's hidden matrices).
pub fn module_optimizer<M: Module>(spec: &OptimizerSpec, module: &M) -> ModuleOptimizer {
    match spec.name() {
        "sgd" => {
            let momentum = spec.f64("momentum");
            SgdConfig::new()
                .with_weight_decay(decay(spec.f64("weight_decay")))
                .with_momentum((momentum > 0.0).then(|| MomentumConfig {
                    momentum,
                    dampening: spec.f64("dampening"),
                    nesterov: spec.bool("nesterov"),
                }))
                .init()
        }
        "adam" => ModuleOptimizer::from(FusedAdam::new(adam_params(
            spec.f64("beta1"),
            spec.f64("beta2"),
            spec.f64("eps"),
            spec.f64("weight_decay"),
        ))),
        "adamw" => adamw(
            1.0,
            spec.f64("beta1"),
            spec.f64("beta2"),
            spec.f64("eps"),
            spec.f64("weight_decay"),
        )
        .into(),
        "lion" => LionConfig::new()
            .with_beta_1(spec.f64("beta1") as f32)
            .with_beta_2(spec.f64("beta2") as f32)
            .with_weight_decay(spec.f64("weight_decay") as f32)
            .init(),
        "muon" => {
            let aux = adamw(
                spec.f64("adam_lr") / spec.lr(),
                spec.f64("adam_beta1"),
                spec.f64("adam_beta2"),
                spec.f64("adam_eps"),
                spec.f64("adam_weight_decay"),
            );
            // Dampening 0 makes burn's momentum a constant multiple of the reference's, which
            // the Frobenius normalisation of Newton-Schulz cancels (see the module docs).
            let muon = MuonConfig::new()
                .with_momentum(MomentumConfig {
                    momentum: spec.f64("momentum"),
                    dampening: 0.0,
                    nesterov: spec.bool("nesterov"),
                })
                .with_ns_steps(spec.int("ns_steps") as usize)
                .with_weight_decay(decay(spec.f64("weight_decay")))
                .build();
            let hidden = ParamGroup::from_ids(muon_hidden_params(module));
            ModuleOptimizer::from(aux).with_group(hidden, muon, None)
        }
        other => unreachable!("spec names unregistered optimizer `{other}`"),
    }
}

/// The ids of the parameters Muon updates: 2-D float weights whose path contains none of
/// [`MUON_EXCLUDED_PATH_PARTS`]. Everything else goes to the auxiliary AdamW.
pub fn muon_hidden_params<M: Module>(module: &M) -> Vec<ParamId> {
    #[derive(Default)]
    struct Collector {
        path: Vec<String>,
        ids: Vec<ParamId>,
    }
    impl ModuleVisitor for Collector {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_lowercase());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let excluded = self
                .path
                .iter()
                .any(|part| MUON_EXCLUDED_PATH_PARTS.iter().any(|x| part.contains(x)));
            if D == 2 && !excluded {
                self.ids.push(param.id);
            }
        }
    }
    let mut collector = Collector::default();
    module.visit(&mut collector);
    collector.ids
}

/// An optimizer whose learning rate is a fixed multiple of the one it is given: Muon's
/// auxiliary AdamW runs at `adam_lr` while the schedule drives `lr`.
#[derive(Clone)]
pub struct Scaled<O> {
    /// The wrapped optimizer.
    pub inner: O,
    /// Multiplier applied to every learning rate passed in.
    pub lr_ratio: f64,
}

impl<O: Optimizer> Optimizer for Scaled<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        self.inner.step(lr * self.lr_ratio, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}
