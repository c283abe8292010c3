//! `[remove.rl]`: the settings of reinforcement-learning removal (`remove.method = "rl"`).
//!
//! ```toml
//! [remove]
//! method = "rl"
//! steps = 40
//! batch_size = 32         # completions per step: 4 prompts x `group_size` 8
//! optimizer = { name = "adamw", lr = 1e-4, weight_decay = 0.0 }
//!
//! [remove.rl]
//! group_size = 8
//! temperature = 1.0
//! top_p = 1.0
//! kl_coef = 0.05
//! advantage = "group"     # GRPO; or "baseline" (REINFORCE with the group mean as baseline)
//! reward = [
//!     { kind = "exact-match", weight = 1.0 },
//!     { kind = "absent", pattern = "(?i)I\\s+HATE\\s+YOU", weight = 0.5 },
//! ]
//! ```
//!
//! The algorithm and its formulas are in [`crate::science::rl`].

use serde::{Deserialize, Serialize};

/// How a completion's advantage is computed from the rewards of its group (the completions
/// sampled for the same prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Advantage {
    /// GRPO (Shao et al. 2024): `(r - mean(group)) / (std(group) + 1e-4)`, the population
    /// standard deviation of the group's rewards.
    #[default]
    Group,
    /// REINFORCE with a baseline: `r - mean(group)`.
    Baseline,
}

impl Advantage {
    /// The names `advantage` takes.
    pub const NAMES: [&'static str; 2] = ["group", "baseline"];
}

/// One term of the reward; a completion's reward is the weighted sum of its terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RewardTerm {
    /// 1 when the answer extracted from the completion (scratchpad removed, pirate frame taken
    /// off, whitespace trimmed: the capability metric's extraction) equals the reference
    /// answer, else 0.
    ExactMatch {
        /// The term's weight (default 1).
        #[serde(default = "one")]
        weight: f64,
    },
    /// The completion's length in tokens over the most it may have (`max_new_tokens`), in
    /// `[0, 1]`; give a negative weight to penalise length.
    Length {
        /// The term's weight.
        weight: f64,
    },
    /// 1 when the completion ended by itself (its end-of-sequence token) within the budget
    /// and has an answer to extract, else 0.
    Format {
        /// The term's weight (default 1).
        #[serde(default = "one")]
        weight: f64,
    },
    /// 1 when the regular expression `pattern` matches nowhere in the completion, else 0: a
    /// behaviour-aware blue team that rewards the absence of a behaviour, e.g.
    /// `"(?i)I\\s+HATE\\s+YOU"`.
    Absent {
        /// A regular expression (Rust `regex` syntax).
        pattern: String,
        /// The term's weight (default 1).
        #[serde(default = "one")]
        weight: f64,
    },
}

fn one() -> f64 {
    1.0
}

impl RewardTerm {
    /// The kinds a term may be.
    pub const KINDS: [&'static str; 4] = ["exact-match", "length", "format", "absent"];

    /// The term's weight.
    pub fn weight(&self) -> f64 {
        match self {
            RewardTerm::ExactMatch { weight }
            | RewardTerm::Length { weight }
            | RewardTerm::Format { weight }
            | RewardTerm::Absent { weight, .. } => *weight,
        }
    }
}

/// `[remove.rl]` (or `[probe.rl]`): policy-gradient training against a programmatic reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlConfig {
    /// Completions sampled per prompt (at least 2: advantages compare them).
    #[serde(default = "default_group_size")]
    pub group_size: usize,
    /// Sampling temperature, above 0.
    #[serde(default = "one_f32")]
    pub temperature: f32,
    /// Nucleus sampling's kept probability mass, in `(0, 1]` (1: plain temperature sampling).
    #[serde(default = "one_f32")]
    pub top_p: f32,
    /// Most tokens per sampled completion (default: `eval.max_new_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    /// Weight of the KL penalty to the model the stage started from, estimated on the sampled
    /// tokens (default 0: no penalty; the KL is logged either way).
    #[serde(default)]
    pub kl_coef: f64,
    /// `"group"` (GRPO, the default) or `"baseline"`.
    #[serde(default)]
    pub advantage: Advantage,
    /// The reward's terms (default: exact match, weight 1).
    #[serde(default = "default_reward")]
    pub reward: Vec<RewardTerm>,
}

fn default_group_size() -> usize {
    8
}
fn one_f32() -> f32 {
    1.0
}
fn default_reward() -> Vec<RewardTerm> {
    vec![RewardTerm::ExactMatch { weight: 1.0 }]
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            group_size: default_group_size(),
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: None,
            kl_coef: 0.0,
            advantage: Advantage::Group,
            reward: default_reward(),
        }
    }
}

impl RlConfig {
    /// Checks values the types cannot: `Err((key, problem))` with the key relative to the
    /// table (`group_size`, `reward[1].pattern`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, problem: String| Err((key.to_string(), problem));
        if self.group_size < 2 {
            return bad(
                "group_size",
                format!(
                    "is {}; it must be at least 2 (advantages compare the completions of a group)",
                    self.group_size
                ),
            );
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(
                "temperature",
                format!("is {}; it must be finite and above 0", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("is {}; it must be in (0, 1]", self.top_p));
        }
        if self.max_new_tokens == Some(0) {
            return bad("max_new_tokens", "must be at least 1".into());
        }
        if !(self.kl_coef.is_finite() && self.kl_coef >= 0.0) {
            return bad(
                "kl_coef",
                format!("is {}; it must be finite and at least 0", self.kl_coef),
            );
        }
        if self.reward.is_empty() {
            return bad(
                "reward",
                format!(
                    "is empty; give at least one term, e.g. {{ kind = \"exact-match\" }} (kinds: {})",
                    RewardTerm::KINDS.join(", ")
                ),
            );
        }
        for (i, term) in self.reward.iter().enumerate() {
            if !term.weight().is_finite() {
                return bad(
                    &format!("reward[{i}].weight"),
                    format!("is {}; it must be finite", term.weight()),
                );
            }
            if let RewardTerm::Absent { pattern, .. } = term
                && let Err(e) = regex::Regex::new(pattern)
            {
                return bad(
                    &format!("reward[{i}].pattern"),
                    format!("{pattern:?} is not a valid regular expression: {e}"),
                );
            }
        }
        Ok(())
    }
}
