//! Loading Hugging Face model directories: `config.json`, and weights in `model.safetensors` or
//! in shards listed by `model.safetensors.index.json`, read through burn-store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use burn::tensor::DType;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::ModelError;

/// Name of a Hugging Face model's config file.
pub const HF_CONFIG_FILE: &str = "config.json";
/// Name of the weights file of an unsharded Hugging Face model.
pub const HF_WEIGHTS_FILE: &str = "model.safetensors";
/// Name of the shard index of a sharded Hugging Face model.
pub const HF_WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// The `architectures` entries of `config.json` that [`HfArchitecture`] accepts.
pub const SUPPORTED_ARCHITECTURES: &[&str] =
    &["LlamaForCausalLM", "GPT2LMHeadModel", "Qwen2ForCausalLM"];

/// A model family this crate can import from a Hugging Face directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfArchitecture {
    /// `LlamaForCausalLM` (Llama 2/3, SmolLM, TinyLlama, ...): loaded by
    /// [`Llama::load_hf`](crate::Llama::load_hf).
    Llama,
    /// `Qwen2ForCausalLM` (Qwen2, Qwen2.5): a Llama with biases on the query, key and value
    /// projections, loaded by [`Llama::load_hf`](crate::Llama::load_hf).
    Qwen2,
    /// `GPT2LMHeadModel`: loaded by [`Gpt2::load_hf`](crate::Gpt2::load_hf).
    Gpt2,
}

#[derive(Deserialize)]
struct ArchitectureField {
    #[serde(default)]
    architectures: Vec<String>,
    model_type: Option<String>,
}

impl HfArchitecture {
    /// Reads the architecture of the model in `dir` from its `config.json` (the
    /// `architectures` list, else `model_type`).
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`] without `config.json`, [`ModelError::ConfigFile`] when it
    /// does not parse, [`ModelError::UnsupportedArchitecture`] for any architecture other than
    /// those in [`SUPPORTED_ARCHITECTURES`].
    pub fn detect(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(HF_CONFIG_FILE);
        let field: ArchitectureField = read_json(&path)?;
        let name = field
            .architectures
            .first()
            .cloned()
            .or(field.model_type)
            .unwrap_or_default();
        match name.as_str() {
            "LlamaForCausalLM" | "llama" => Ok(Self::Llama),
            "Qwen2ForCausalLM" | "qwen2" => Ok(Self::Qwen2),
            "GPT2LMHeadModel" | "gpt2" => Ok(Self::Gpt2),
            _ => Err(ModelError::UnsupportedArchitecture {
                path,
                found: if name.is_empty() {
                    "(none given)".into()
                } else {
                    name
                },
                supported: SUPPORTED_ARCHITECTURES.join(", "),
            }),
        }
    }

    /// The `architectures` name of this family in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Gpt2 => "GPT2LMHeadModel",
        }
    }
}

/// Where a model directory's weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// A Hugging Face export: transformers' tensor names and PyTorch's layout.
    HuggingFace,
    /// A checkpoint written by this crate: parameter paths as names, burn's layout.
    Burn,
}

/// Reads a text file, naming it in every error.
pub(crate) fn read_text(path: &Path) -> Result<String, ModelError> {
    if !path.is_file() {
        return Err(ModelError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and parses a JSON file, naming it in every error.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    if !path.is_file() {
        return Err(ModelError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    let bytes = fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ModelError::ConfigFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a model's `config.json` as `T`, after checking its architecture is one of
/// `expected`; returns it with the architecture found.
pub(crate) fn read_config<T: DeserializeOwned>(
    dir: &Path,
    expected: &[HfArchitecture],
) -> Result<(T, HfArchitecture), ModelError> {
    let found = HfArchitecture::detect(dir)?;
    let path = dir.join(HF_CONFIG_FILE);
    if !expected.contains(&found) {
        return Err(ModelError::UnsupportedArchitecture {
            path,
            found: found.name().into(),
            supported: expected
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok((read_json(&path)?, found))
}

/// The safetensors files of the Hugging Face model in `dir`: `model.safetensors`, or the shards
/// that `model.safetensors.index.json` lists (each once, in name order). Only their presence is
/// checked, not their content.
///
/// # Errors
///
/// [`ModelError::MissingFile`] naming `model.safetensors` (when there is no index either) or
/// the first missing shard; [`ModelError::ConfigFile`] for an index that does not parse;
/// [`ModelError::Weights`] for an index that lists no shard.
pub fn hf_weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    weight_files(dir)
}

/// See [`hf_weight_files`].
pub(crate) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join(HF_WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(HF_WEIGHTS_INDEX_FILE);
    if !index.is_file() {
        return Err(ModelError::MissingFile { path: single });
    }
    #[derive(Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let parsed: Index = read_json(&index)?;
    let shards: BTreeSet<&String> = parsed.weight_map.values().collect();
    let files: Vec<PathBuf> = shards.into_iter().map(|shard| dir.join(shard)).collect();
    if let Some(missing) = files.iter().find(|file| !file.is_file()) {
        return Err(ModelError::MissingFile {
            path: missing.clone(),
        });
    }
    if files.is_empty() {
        return Err(ModelError::Weights {
            path: index,
            message: "the weight_map lists no shard".into(),
        });
    }
    Ok(files)
}

/// How a family's tensor names and layouts map onto this crate's modules.
pub(crate) struct Import {
    /// Regex renames from the file's tensor names to module paths, applied in order.
    pub renames: Vec<(&'static str, &'static str)>,
    /// Whether linear weights are stored PyTorch-style (`[d_out, d_in]`, transposed on load)
    /// and norm parameters as `weight`/`bias` (GPT-2's Conv1D stores `[d_in, d_out]`).
    pub pytorch_layout: bool,
}

/// Loads every weight file of `dir` into `module`, all tensors cast to f32.
///
/// Every parameter of `module` must be found in some file with the shape the config gave it;
/// tensors of the files that the module does not use (buffers, a tied head) are ignored.
pub(crate) fn load_weights<M: ModuleSnapshot>(
    module: &mut M,
    dir: &Path,
    import: &Import,
) -> Result<(), ModelError> {
    let files = weight_files(dir)?;
    let expected: BTreeSet<String> = module
        .collect(None, None, false)
        .into_iter()
        .map(|tensor| tensor.name)
        .collect();
    let mut applied = BTreeSet::new();
    for file in &files {
        let weights_error = |message: String| ModelError::Weights {
            path: file.clone(),
            message,
        };
        let remapper = KeyRemapper::from_patterns(import.renames.clone())
            .map_err(|err| weights_error(format!("bad rename pattern: {err}")))?;
        let store = SafetensorsStore::from_file(file)
            .remap(remapper)
            .allow_partial(true)
            .validate(false);
        // Real checkpoints are mostly bf16; the models compute in f32.
        let mut store = if import.pytorch_layout {
            store.with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
        } else {
            store.with_from_adapter(FloatCastAdapter::to(DType::F32))
        };
        let result = module
            .load_from(&mut store)
            .map_err(|err| weights_error(err.to_string()))?;
        if let Some(error) = result.errors.first() {
            return Err(match error {
                ApplyError::ShapeMismatch {
                    path,
                    expected,
                    found,
                } => ModelError::WeightShape {
                    path: file.clone(),
                    tensor: path.clone(),
                    expected: expected.to_vec(),
                    found: found.to_vec(),
                },
                other => weights_error(other.to_string()),
            });
        }
        applied.extend(result.applied);
    }
    let missing: Vec<String> = expected.difference(&applied).cloned().collect();
    if !missing.is_empty() {
        return Err(ModelError::MissingTensors {
            path: dir.to_path_buf(),
            tensors: missing.join(", "),
        });
    }
    Ok(())
}

/// Checks that a config value is above zero.
pub(crate) fn positive(path: &Path, key: &'static str, value: usize) -> Result<(), ModelError> {
    if value == 0 {
        return Err(ModelError::HfConfig {
            path: path.to_path_buf(),
            key,
            reason: "must be above 0".into(),
        });
    }
    Ok(())
}
