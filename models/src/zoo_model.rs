//! [`ZooModel`]: one module type for every architecture the experiments run, so that training,
//! evaluation and the checkpoint cache need not be generic.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::hf::{HfArchitecture, read_json};
use crate::{GenerateOptions, Gpt2, LanguageModel, Llama, LmBatch, ModelError, TinyGpt};

/// Name of the file that says which architecture a [`ZooModel`] checkpoint holds.
pub const ARCHITECTURE_FILE: &str = "architecture.json";

/// Any model of the zoo: a [`TinyGpt`] trained from scratch, or a model imported from a
/// Hugging Face directory ([`Llama`], [`Gpt2`]).
///
/// It is a [`Module`] (burn derives it for enums of one-field variants), so optimizers, LoRA
/// ([`attach_lora`](crate::attach_lora), [`merge_lora`](crate::merge_lora)) and `valid()` work
/// on it as on the models it wraps. Parameter paths gain the variant name as their first
/// segment (`Llama.model.layers.0.self_attn.q_proj.weight`); no variant name contains
/// `embed` or `head`, so the Muon grouping contract of the crate docs holds unchanged, and
/// LoRA targets (matched by name or path suffix) read as for the wrapped model.
#[derive(Module, Debug)]
pub enum ZooModel {
    /// The small GPT of this crate, byte-level vocabulary.
    TinyGpt(TinyGpt),
    /// A Llama-family model (`LlamaForCausalLM`, `Qwen2ForCausalLM`).
    Llama(Llama),
    /// GPT-2 (`GPT2LMHeadModel`).
    Gpt2(Gpt2),
}

/// What [`ARCHITECTURE_FILE`] records.
#[derive(Debug, Serialize, Deserialize)]
struct ArchitectureRecord {
    /// `TinyGpt`, or the `architectures` name of an imported family.
    architecture: String,
}

impl From<TinyGpt> for ZooModel {
    fn from(model: TinyGpt) -> Self {
        Self::TinyGpt(model)
    }
}

impl From<Llama> for ZooModel {
    fn from(model: Llama) -> Self {
        Self::Llama(model)
    }
}

impl From<Gpt2> for ZooModel {
    fn from(model: Gpt2) -> Self {
        Self::Gpt2(model)
    }
}

impl ZooModel {
    /// Loads the Hugging Face model in `dir` (any of
    /// [`SUPPORTED_ARCHITECTURES`](crate::SUPPORTED_ARCHITECTURES), detected from
    /// `config.json`) onto `device`.
    ///
    /// # Errors
    ///
    /// As [`HfArchitecture::detect`] and [`Llama::load_hf`].
    pub fn load_hf(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        Ok(match HfArchitecture::detect(dir)? {
            HfArchitecture::Llama | HfArchitecture::Qwen2 => {
                Self::Llama(Llama::load_hf(dir, device)?)
            }
            HfArchitecture::Gpt2 => Self::Gpt2(Gpt2::load_hf(dir, device)?),
        })
    }

    /// The model of the Hugging Face directory `dir` with every weight zero, built from its
    /// `config.json` alone (the weights files are not read): for checking parameter names, such
    /// as LoRA targets ([`lora_target_paths`](crate::lora_target_paths)), before loading.
    ///
    /// # Errors
    ///
    /// As [`HfArchitecture::detect`] and [`LlamaConfig::from_hf_dir`](crate::LlamaConfig::from_hf_dir).
    pub fn hf_skeleton(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        Ok(match HfArchitecture::detect(dir)? {
            HfArchitecture::Llama | HfArchitecture::Qwen2 => {
                Self::Llama(Llama::skeleton(dir, device)?)
            }
            HfArchitecture::Gpt2 => Self::Gpt2(Gpt2::skeleton(dir, device)?),
        })
    }

    /// The architecture's name: `TinyGpt`, `LlamaForCausalLM`, `Qwen2ForCausalLM` or
    /// `GPT2LMHeadModel`.
    pub fn architecture(&self) -> &'static str {
        match self {
            Self::TinyGpt(_) => "TinyGpt",
            Self::Llama(m) => m.config().architecture.name(),
            Self::Gpt2(_) => HfArchitecture::Gpt2.name(),
        }
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        match self {
            Self::TinyGpt(m) => m.device(),
            Self::Llama(m) => m.device(),
            Self::Gpt2(m) => m.device(),
        }
    }

    /// Saves the model into `dir`: the wrapped model's checkpoint ([`TinyGpt::save`],
    /// [`Llama::save`], [`Gpt2::save`]: `model.safetensors` and `config.json`), then
    /// [`ARCHITECTURE_FILE`], each file written atomically. The architecture file comes last,
    /// so a directory that has one has the rest.
    ///
    /// # Errors
    ///
    /// [`ModelError::Io`] or [`ModelError::Weights`] naming the file that could not be written.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        match self {
            Self::TinyGpt(m) => m.save(dir)?,
            Self::Llama(m) => m.save(dir)?,
            Self::Gpt2(m) => m.save(dir)?,
        }
        let record = ArchitectureRecord {
            architecture: self.architecture().into(),
        };
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|err| ModelError::Backend(format!("serialising the architecture: {err}")))?;
        write_atomic(&dir.join(ARCHITECTURE_FILE), &json)
    }

    /// Loads a checkpoint written by [`save`](Self::save) from `dir` onto `device`.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`] naming [`ARCHITECTURE_FILE`], `config.json` or the
    /// weights; [`ModelError::UnsupportedArchitecture`] for an architecture name this crate
    /// does not know; otherwise as [`TinyGpt::load`] and [`Llama::load`].
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let path = dir.join(ARCHITECTURE_FILE);
        let record: ArchitectureRecord = read_json(&path)?;
        match record.architecture.as_str() {
            "TinyGpt" => Ok(Self::TinyGpt(TinyGpt::load(dir, device)?)),
            name if name == HfArchitecture::Llama.name()
                || name == HfArchitecture::Qwen2.name() =>
            {
                Ok(Self::Llama(Llama::load(dir, device)?))
            }
            name if name == HfArchitecture::Gpt2.name() => Ok(Self::Gpt2(Gpt2::load(dir, device)?)),
            other => Err(ModelError::UnsupportedArchitecture {
                path,
                found: other.into(),
                supported: format!("TinyGpt, {}", crate::SUPPORTED_ARCHITECTURES.join(", ")),
            }),
        }
    }
}

impl LanguageModel for ZooModel {
    fn vocab_size(&self) -> usize {
        match self {
            Self::TinyGpt(m) => LanguageModel::vocab_size(m),
            Self::Llama(m) => LanguageModel::vocab_size(m),
            Self::Gpt2(m) => LanguageModel::vocab_size(m),
        }
    }

    fn max_seq_len(&self) -> usize {
        match self {
            Self::TinyGpt(m) => LanguageModel::max_seq_len(m),
            Self::Llama(m) => LanguageModel::max_seq_len(m),
            Self::Gpt2(m) => LanguageModel::max_seq_len(m),
        }
    }

    fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        match self {
            Self::TinyGpt(m) => m.forward(tokens),
            Self::Llama(m) => m.forward(tokens),
            Self::Gpt2(m) => m.forward(tokens),
        }
    }

    fn masked_loss(&self, batch: &LmBatch) -> Tensor<1> {
        match self {
            Self::TinyGpt(m) => m.masked_loss(batch),
            Self::Llama(m) => m.masked_loss(batch),
            Self::Gpt2(m) => m.masked_loss(batch),
        }
    }

    fn generate(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        match self {
            Self::TinyGpt(m) => m.generate(prompts, opts),
            Self::Llama(m) => m.generate(prompts, opts),
            Self::Gpt2(m) => m.generate(prompts, opts),
        }
    }
}
