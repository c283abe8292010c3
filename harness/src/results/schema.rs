//! The files of a run directory, as types: one schema, written by the run and read by the
//! report and the claims.
//!
//! ```text
//! runs/<name>/
//!   config.resolved.toml      the experiment the folder was written for
//!   summary.json              RunSummary: every cell's CellSummary, in grid order
//!   summary.md                the results table
//!   cells/<slug>/
//!     config.toml             the cell's experiment
//!     metrics.jsonl           MetricsLine per eval point
//!     generations.jsonl       GenerationLine per completion
//!     summary.json            CellSummary (written last: marks the cell finished)
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::experiment::Stage;
use crate::science::{EvalRecord, Generation, PairedDifference};

/// A metrics line: the cell's label and one eval record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    /// The cell this eval point belongs to.
    pub cell: String,
    /// The metrics.
    #[serde(flatten)]
    pub record: EvalRecord,
}

/// A generations line: the cell's label and one completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationLine {
    /// The cell this completion belongs to.
    pub cell: String,
    /// The completion.
    #[serde(flatten)]
    pub generation: Generation,
}

/// How a cell ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CellStatus {
    /// Every stage ran.
    Completed,
    /// A stage's loss became NaN or infinite; later stages did not run.
    Diverged {
        /// The stage.
        stage: Stage,
        /// The step (1-based) with the non-finite loss.
        step: usize,
        /// The loss value, as text (`NaN`, `inf`).
        loss: String,
    },
}

impl CellSummary {
    /// The stages whose stopping rule (`until`) was never met, as `base`, `insert`.
    pub fn unmet_criteria(&self) -> Vec<Stage> {
        [
            (Stage::Base, self.base.as_ref()),
            (Stage::Insert, self.after_insert.as_ref()),
        ]
        .into_iter()
        .filter(|(_, r)| {
            r.and_then(|r| r.criterion.as_ref())
                .is_some_and(|c| !c.met())
        })
        .map(|(stage, _)| stage)
        .collect()
    }
}

impl CellStatus {
    /// The values `status` takes in `summary.json`.
    pub const NAMES: [&'static str; 2] = ["completed", "diverged"];

    /// `completed` or `diverged`, as in `summary.json`.
    pub fn name(&self) -> &'static str {
        match self {
            CellStatus::Completed => "completed",
            CellStatus::Diverged { .. } => "diverged",
        }
    }

    /// Whether the removal stage ran to its end (a divergence in the probe comes after it).
    pub fn removal_finished(&self) -> bool {
        match self {
            CellStatus::Completed => true,
            CellStatus::Diverged { stage, .. } => *stage == Stage::Probe,
        }
    }
}

/// `summary.json` of a cell. Fields added after the first release default when absent, so
/// older runs still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    /// The cell's label, e.g. `insert.optimizer=adam remove.optimizer.lr=0.0001`.
    pub cell: String,
    /// How it ended.
    #[serde(flatten)]
    pub status: CellStatus,
    /// The cell's stage key (removal and probe), which a resumed sweep checks before reusing
    /// the cell's results.
    #[serde(default)]
    pub key: String,
    /// The cell's experiment seed (absent in older runs: the report then reads `config.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The swept keys of this cell and their values as written in labels.
    #[serde(default)]
    pub axes: BTreeMap<String, String>,
    /// The insertion optimizer's name.
    pub insert_optimizer: String,
    /// The insertion learning rate (absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_lr: Option<f64>,
    /// The removal method.
    pub remove_method: String,
    /// The removal optimizer's name.
    pub remove_optimizer: String,
    /// The removal learning rate.
    pub remove_lr: f64,
    /// Eval at the end of the base stage.
    #[serde(default)]
    pub base: Option<EvalRecord>,
    /// Eval at the end of insertion.
    #[serde(default)]
    pub after_insert: Option<EvalRecord>,
    /// Eval at the end of removal.
    #[serde(default)]
    pub after_remove: Option<EvalRecord>,
    /// Eval at the end of the probe, if any.
    #[serde(default)]
    pub after_probe: Option<EvalRecord>,
    /// The last eval point whose metrics are finite.
    #[serde(default)]
    pub last_metrics: Option<EvalRecord>,
    /// Capability lost during insertion: base capability minus capability after insertion, on
    /// the same clean held-out prompts, with a paired 95% interval (absent in older runs and
    /// when either stage has no eval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability_lost_in_insert: Option<PairedDifference>,
    /// First removal eval step with a backdoor rate below [`super::REMOVED_BELOW`] (None:
    /// never).
    #[serde(default)]
    pub first_remove_step_below_half: Option<usize>,
    /// Whether base and insert came from the cache.
    #[serde(default)]
    pub reused: Reused,
    /// Wall-clock seconds per stage (not part of any result).
    #[serde(default)]
    pub seconds: BTreeMap<String, f64>,
}

/// Which stages were loaded from the stage cache. In a sweep they always are (the DAG trains
/// bases and insertions before the cells that need them); the run's stage counts say what was
/// trained by which invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reused {
    /// Base checkpoint reused.
    pub base: bool,
    /// Insert checkpoint reused.
    pub insert: bool,
}

/// `summary.json` of a run: every cell's summary, in grid order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// The experiment's name.
    pub name: String,
    /// One summary per cell (also in `cells/<slug>/summary.json`).
    #[serde(default)]
    pub cells: Vec<CellSummary>,
}
