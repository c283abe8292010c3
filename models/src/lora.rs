//! LoRA adapters on chosen linear layers, through burn's built-in reparameterization
//! ([`burn::module::Lora`]): an adapted weight reads as `base + (alpha / rank) * a @ b`, the
//! base frozen, `a` drawn from the device's seeded generator and `b` zero.
//!
//! The three substrates of the removal stage (see [`Substrate`]):
//!
//! - continue an adapter: keep the adapters a model already has and train them further;
//! - merge an adapter: [`merge_lora`] folds them into the weights, after which a new adapter
//!   can be attached with [`attach_lora`];
//! - full weights: every parameter trains ([`merge_lora`] first if the model had adapters).

use std::collections::BTreeSet;
use std::sync::Mutex;

use burn::module::{Lora, Module, ParamGroup};
use burn::store::ModuleSnapshot;
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Where the blue team's training goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Substrate {
    /// Low-rank adapters on the chosen layers, the base frozen: the model's adapters are
    /// trained further when it has some, else new ones are attached.
    Lora,
    /// Every parameter (adapters, if any, are merged first).
    #[default]
    Full,
}

/// Prepares `model` for training on `substrate`: for [`Substrate::Full`], merges any
/// adapters and trains everything; for [`Substrate::Lora`], continues the model's adapters
/// when it has some, else attaches new ones from `lora`, their `a` factors drawn from the
/// model's device generator seeded with `seed` (see [`attach_lora_seeded`]).
///
/// # Errors
///
/// [`ModelError::InvalidLora`] when new adapters are needed and `lora` is `None` or invalid.
pub fn prepare_substrate<M: Module + ModuleSnapshot>(
    model: M,
    substrate: Substrate,
    lora: Option<&LoraConfig>,
    seed: u64,
) -> Result<M, ModelError> {
    match substrate {
        Substrate::Full if has_lora(&model) => Ok(merge_lora(model)),
        Substrate::Full => Ok(model),
        Substrate::Lora if has_lora(&model) => Ok(model),
        Substrate::Lora => {
            let Some(lora) = lora else {
                return Err(ModelError::InvalidLora {
                    field: "lora",
                    reason: "the lora substrate needs rank, alpha and targets".into(),
                });
            };
            attach_lora_seeded(model, lora, seed)
        }
    }
}

/// [`attach_lora`] with reproducible adapters: seeds the device of `model`'s parameters with
/// `seed` and attaches, both under one process-wide lock, so that threads attaching adapters
/// at the same time (parallel sweep jobs) cannot interleave their draws from the device's
/// generator. The same model, config and seed give the same adapters.
///
/// # Errors
///
/// As [`attach_lora`].
pub fn attach_lora_seeded<M: Module + ModuleSnapshot>(
    model: M,
    config: &LoraConfig,
    seed: u64,
) -> Result<M, ModelError> {
    static DEVICE_RNG: Mutex<()> = Mutex::new(());
    let _guard = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    for device in model.devices() {
        device.seed(seed);
    }
    attach_lora(model, config)
}

/// The accepted values of [`Substrate`] in configs.
pub const SUBSTRATE_NAMES: &[&str] = &["lora", "full"];

/// LoRA settings: `rank`, `alpha`, `dropout` and the `targets` (linear layers by name).
///
/// A target names a linear layer by its last path segment (`q_proj`, `query`, `c_attn`) or by
/// a longer suffix of its path (`self_attn.q_proj`, `blocks.0.attention.query`); its `weight`
/// gets the adapter. Biases, norms and every other parameter stay frozen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the update, above 0.
    pub rank: usize,
    /// Scale numerator: the update is `(alpha / rank) * a @ b`; finite and above 0.
    pub alpha: f64,
    /// Dropout on the adapter's input. Only 0 is supported: burn's LoRA adds the update to the
    /// weight itself, so there is no separate adapter input to drop.
    #[serde(default)]
    pub dropout: f64,
    /// Linear layers to adapt, by name or path suffix; at least one.
    pub targets: Vec<String>,
}

impl LoraConfig {
    /// Checks the values.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidLora`] naming the field: `rank` 0, `alpha` not finite and above 0,
    /// `dropout` other than 0, `targets` empty.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &'static str, reason: String| ModelError::InvalidLora { field, reason };
        if self.rank == 0 {
            return Err(bad("rank", "must be above 0".into()));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(bad(
                "alpha",
                format!("is {}; it must be finite and above 0", self.alpha),
            ));
        }
        if self.dropout != 0.0 {
            return Err(bad(
                "dropout",
                format!(
                    "is {}; only 0.0 is supported (burn's LoRA adds the update to the weight, so \
                     there is no adapter input to drop)",
                    self.dropout
                ),
            ));
        }
        if self.targets.is_empty() {
            return Err(bad("targets", "must name at least one linear layer".into()));
        }
        Ok(())
    }
}

/// Paths of the 2-D `weight` parameters of `model`'s linear layers, without the `.weight`.
fn linear_layers<M: ModuleSnapshot>(model: &M) -> Vec<String> {
    model
        .collect(None, None, false)
        .into_iter()
        .filter(|tensor| tensor.shape.len() == 2 && !tensor.name.contains(".lora."))
        .filter_map(|tensor| tensor.name.strip_suffix(".weight").map(str::to_owned))
        // Embeddings are lookups, not linear layers.
        .filter(|layer| !layer.contains("embed"))
        .collect()
}

/// The weight paths that `targets` select in `model`.
///
/// # Errors
///
/// [`ModelError::InvalidLora`] for a target that matches no linear layer, listing the layer
/// names the model has.
pub fn lora_target_paths<M: ModuleSnapshot>(
    model: &M,
    targets: &[String],
) -> Result<Vec<String>, ModelError> {
    let layers = linear_layers(model);
    let mut selected = BTreeSet::new();
    for target in targets {
        let matching: Vec<&String> = layers
            .iter()
            .filter(|layer| *layer == target || layer.ends_with(&format!(".{target}")))
            .collect();
        if matching.is_empty() {
            let names: BTreeSet<&str> = layers
                .iter()
                .map(|layer| layer.rsplit('.').next().unwrap_or(layer))
                .collect();
            return Err(ModelError::InvalidLora {
                field: "targets",
                reason: format!(
                    "`{target}` matches no linear layer; this model's linear layers are: {}",
                    names.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        selected.extend(matching.into_iter().map(|layer| format!("{layer}.weight")));
    }
    Ok(selected.into_iter().collect())
}

/// Attaches LoRA adapters to the target layers of `model` and freezes every other parameter
/// (and the adapted weights' bases). Seed the device (`device.seed(..)`) first for
/// reproducible `a` factors.
///
/// # Errors
///
/// [`ModelError::InvalidLora`] for a bad config, a target matching no layer, or a model that
/// already has adapters (merge them first with [`merge_lora`]).
pub fn attach_lora<M: Module + ModuleSnapshot>(
    model: M,
    config: &LoraConfig,
) -> Result<M, ModelError> {
    config.validate()?;
    if has_lora(&model) {
        return Err(ModelError::InvalidLora {
            field: "targets",
            reason: "the model already has LoRA adapters; merge them first".into(),
        });
    }
    let paths = lora_target_paths(&model, &config.targets)?;
    let lora = Lora::new(config.rank, config.alpha).set_param_group(ParamGroup::from_paths(paths));
    Ok(model.apply_lora(lora))
}

/// Whether `model` has LoRA adapters.
pub fn has_lora<M: ModuleSnapshot>(model: &M) -> bool {
    model
        .collect(None, None, false)
        .iter()
        .any(|tensor| tensor.name.contains(".lora."))
}

/// Folds every adapter into its weight (`base + scale * a @ b`) and makes every parameter
/// trainable again: the model is then a plain dense model (the "merged" substrate), ready for
/// full training or a new [`attach_lora`].
pub fn merge_lora<M: Module>(model: M) -> M {
    model.materialize().unfreeze()
}
