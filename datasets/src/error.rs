//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while building or loading data.
///
/// Every variant says what to change: a config value names its key and the allowed values, a
/// file error names the file and the 1-based line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// A config value (or a value passed through the API) is outside what is allowed.
    #[error("invalid `{key}`: {problem} (allowed: {allowed})")]
    Invalid {
        /// The config key, e.g. `backdoor.trigger`.
        key: &'static str,
        /// What is wrong with the given value.
        problem: String,
        /// The allowed values or range.
        allowed: String,
    },
    /// Fewer distinct held-out prompts exist than were asked for.
    #[error(
        "asked for {requested} distinct held-out prompts but only {available} exist for families \
         [{families}]; ask for fewer or add families"
    )]
    NotEnoughHeldout {
        /// How many were asked for.
        requested: usize,
        /// How many distinct held-out prompts the families have in total.
        available: usize,
        /// The families, comma separated.
        families: String,
    },
    /// A tokenized example does not fit the maximum length. Responses are never truncated
    /// silently: a cut-off backdoor answer would change what is being trained.
    #[error(
        "example is {len} tokens long, more than max_len {max_len}; raise max_len or use shorter \
         prompts or responses"
    )]
    TooLong {
        /// Length of the example in tokens.
        len: usize,
        /// The limit it was checked against.
        max_len: usize,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a JSONL file is not a valid example.
    #[error("{}:{line}: {message}", path.display())]
    Jsonl {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (bad JSON, missing field, wrong type, unknown field).
        message: String,
    },
    /// A JSONL file holds no examples at all.
    #[error("{} holds no examples (it is empty or has only blank lines)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

impl DatasetError {
    /// Shorthand for [`DatasetError::Invalid`].
    pub(crate) fn invalid(
        key: &'static str,
        problem: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Self {
        DatasetError::Invalid {
            key,
            problem: problem.into(),
            allowed: allowed.into(),
        }
    }
}
