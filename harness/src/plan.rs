//! The stage DAG of a sweep: every cell needs one base, one insertion and its own removal; cells
//! that agree on everything a stage depends on share that stage.
//!
//! Each stage is keyed by the sha256 of its inputs ([`stage_keys`]): the base by the seed, model
//! (a preset's config; an imported model's architecture and the sha256 of its config, weights
//! and tokenizer files),
//! tasks, user data, device and base settings; the insertion by its base's key, the seed, the
//! backdoor and the insert settings; the removal (the cell itself: remove, probe and their eval
//! points) by its insertion's key, the remove/probe settings and the eval key. A grid of I
//! insertion settings by R removal settings by S seeds therefore has S bases, I*S insertions and
//! I*R*S removals, and the sweep trains each exactly once.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::cache::stage_key;
use crate::config::Experiment;
use crate::error::HarnessError;
use crate::files::sha256_hex;
use crate::model::ModelSource;
use crate::sweep::{Cell, cells};

/// The content keys of one cell's stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageKeys {
    /// The base stage.
    pub base: String,
    /// The insertion stage (depends on the base).
    pub insert: String,
    /// The removal and probe of the cell (depends on the insertion and the eval key).
    pub remove: String,
    /// The evaluation settings (prompts, decoding, backdoor trigger...).
    pub eval: String,
}

/// The inputs hashed into each key, as JSON (also stored in cache entries for inspection).
#[derive(Debug, Clone)]
pub struct StageInputs {
    /// Inputs of the base stage.
    pub base: Value,
    /// Inputs of the insertion stage.
    pub insert: Value,
    /// Inputs of the removal stage.
    pub remove: Value,
    /// Inputs of the evaluation.
    pub eval: Value,
}

/// The inputs of every stage of `experiment` (reads `data.base_jsonl` to hash its content).
pub fn stage_inputs(experiment: &Experiment) -> Result<StageInputs, HarnessError> {
    let base_jsonl_sha = match &experiment.data.base_jsonl {
        Some(path) => Some(sha256_hex(
            &std::fs::read(path).map_err(|e| HarnessError::io(path, e))?,
        )),
        None => None,
    };
    let device = experiment.device.trim().to_lowercase();
    // A preset by its full config; an imported model by the hashes of its files (see
    // `ModelSource::identity`), never by its path.
    let model = ModelSource::identity_of(experiment)?;
    let base = json!({
        "stage": "base", "seed": experiment.seed, "device": device,
        "model": model, "tasks": experiment.tasks,
        "base_jsonl_sha256": base_jsonl_sha, "base": experiment.base,
    });
    let base_key = stage_key(&base);
    let insert = json!({
        "stage": "insert", "base_key": base_key, "seed": experiment.seed,
        "backdoor": experiment.backdoor, "insert": experiment.insert,
    });
    let insert_key = stage_key(&insert);
    let eval = json!({
        "stage": "eval", "seed": experiment.seed, "tasks": experiment.tasks,
        "backdoor": experiment.backdoor, "eval": experiment.eval,
    });
    let eval_key = stage_key(&eval);
    let remove = json!({
        "stage": "remove", "insert_key": insert_key, "seed": experiment.seed,
        "backdoor": experiment.backdoor, "remove": experiment.remove,
        "probe": experiment.probe, "eval_key": eval_key,
    });
    Ok(StageInputs {
        base,
        insert,
        remove,
        eval,
    })
}

/// The keys of every stage of `experiment`.
pub fn stage_keys(experiment: &Experiment) -> Result<StageKeys, HarnessError> {
    Ok(StageKeys::of(&stage_inputs(experiment)?))
}

impl StageKeys {
    /// The keys of already computed stage inputs.
    pub fn of(inputs: &StageInputs) -> Self {
        Self {
            base: stage_key(&inputs.base),
            insert: stage_key(&inputs.insert),
            remove: stage_key(&inputs.remove),
            eval: stage_key(&inputs.eval),
        }
    }
}

/// A level of the DAG; every node of a level depends only on nodes of earlier levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    /// Base training.
    Base,
    /// Backdoor insertion.
    Insert,
    /// A cell: removal, probe and their eval points.
    Cell,
}

impl Level {
    /// Every level, in dependency order.
    pub const ALL: [Level; 3] = [Level::Base, Level::Insert, Level::Cell];

    /// The level's name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Base => "base",
            Level::Insert => "insert",
            Level::Cell => "cell",
        }
    }
}

/// The cells of a sweep with their stage keys, and the unique nodes of each level.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The cells, in grid order.
    pub cells: Vec<Cell>,
    /// The keys of each cell.
    pub keys: Vec<StageKeys>,
    bases: Vec<usize>,
    inserts: Vec<usize>,
}

impl Plan {
    /// Expand `experiment`'s grid and key every stage.
    pub fn new(experiment: &Experiment, origin: &str) -> Result<Self, HarnessError> {
        let cells = cells(experiment, origin)?;
        if cells.is_empty() {
            return Err(HarnessError::Invalid {
                origin: origin.to_string(),
                key: "sweep".into(),
                problem: "the grid has zero cells".into(),
            });
        }
        let keys = cells
            .iter()
            .map(|c| stage_keys(&c.experiment))
            .collect::<Result<Vec<_>, _>>()?;
        let first = |key: fn(&StageKeys) -> &String| -> Vec<usize> {
            let mut seen = BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                seen.entry(key(k).clone()).or_insert(i);
            }
            let mut out: Vec<usize> = seen.into_values().collect();
            out.sort_unstable();
            out
        };
        let bases = first(|k| &k.base);
        let inserts = first(|k| &k.insert);
        Ok(Self {
            cells,
            keys,
            bases,
            inserts,
        })
    }

    /// The nodes of a level, each as the index of the first cell that needs it.
    pub fn nodes(&self, level: Level) -> Vec<usize> {
        match level {
            Level::Base => self.bases.clone(),
            Level::Insert => self.inserts.clone(),
            Level::Cell => (0..self.cells.len()).collect(),
        }
    }

    /// The key of the node of `level` that cell `cell` needs.
    pub fn key(&self, level: Level, cell: usize) -> &str {
        let k = &self.keys[cell];
        match level {
            Level::Base => &k.base,
            Level::Insert => &k.insert,
            Level::Cell => &k.remove,
        }
    }

    /// What `--dry-run` prints: the cells, then the unique stages per level.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        writeln!(out, "{} cells:", self.cells.len()).unwrap();
        for (cell, keys) in self.cells.iter().zip(&self.keys) {
            writeln!(
                out,
                "  {:<28} base {} insert {} remove {}  {}",
                cell.slug,
                &keys.base[..8],
                &keys.insert[..8],
                &keys.remove[..8],
                cell.label
            )
            .unwrap();
        }
        writeln!(
            out,
            "unique stages: {} base, {} insert, {} remove",
            self.bases.len(),
            self.inserts.len(),
            self.cells.len()
        )
        .unwrap();
        out
    }
}
