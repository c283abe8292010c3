//! The stage DAG of a sweep: every cell needs one base, one insertion and its own removal; cells
//! that agree on everything a stage depends on share that stage (keys: [`super::keys`]). A
//! grid of I insertion settings by R removal settings by S seeds therefore has S bases, I*S
//! insertions and I*R*S removals, and the sweep trains each exactly once.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::keys::{StageKeys, stage_keys};
use crate::error::HarnessError;
use crate::experiment::{Cell, Experiment, Stage, cells};

/// A level of the DAG; every node of a level depends only on nodes of earlier levels.
///
/// A level is named `base`, `insert` or `cell` where a machine reads it (`--level`, SLURM's
/// `jobs.json` and script names), and by the [`Stage`] it starts with where a person reads it
/// (`--dry-run`, the counts line): a cell node runs the removal (and probe) of one cell.
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

    /// The level's name on the command line and in SLURM files.
    pub fn name(self) -> &'static str {
        match self {
            Level::Base => "base",
            Level::Insert => "insert",
            Level::Cell => "cell",
        }
    }

    /// The stage a node of this level trains first (a cell: the removal).
    pub fn stage(self) -> Stage {
        match self {
            Level::Base => Stage::Base,
            Level::Insert => Stage::Insert,
            Level::Cell => Stage::Remove,
        }
    }

    /// The level before this one, which its nodes depend on.
    pub fn parent(self) -> Option<Level> {
        match self {
            Level::Base => None,
            Level::Insert => Some(Level::Base),
            Level::Cell => Some(Level::Insert),
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
