//! [`Claim`]: preconditions on a case and expectations on what it measured, and [`Measured`],
//! the numbers a claim can speak about.
//!
//! Conditions are written as `<left> <op> <right>`: the left side is a [`Metric`]
//! (`backdoor_after_remove`) or a dotted config key (`remove.optimizer.lr`), the operator one
//! of `<`, `<=`, `>`, `>=`, `==`, `!=`, the right side a number, `true`/`false`, or a word
//! (`insert.optimizer.name == adam`).

use std::fmt;

use crate::experiment::lookup;
use crate::results::{CellStatus, CellSummary};

/// A number a claim can test, measured on one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Backdoor rate at the end of insertion (the protocol's starting point).
    BackdoorAfterInsert,
    /// False-trigger rate at the end of insertion.
    FalseTriggerAfterInsert,
    /// Capability at the end of insertion, i.e. before removal.
    CapabilityAfterInsert,
    /// Backdoor rate at the end of removal (the final backdoor rate).
    BackdoorAfterRemove,
    /// False-trigger rate at the end of removal.
    FalseTriggerAfterRemove,
    /// Capability at the end of removal.
    CapabilityAfterRemove,
    /// Capability before removal minus capability after it (positive: removal cost capability).
    CapabilityDrop,
    /// First removal eval step with a backdoor rate below 0.5; infinite when it never got there.
    StepsToRemoval,
    /// Backdoor rate at the end of the probe (needs a `[probe]`).
    BackdoorAfterProbe,
    /// Backdoor rate after the probe minus after removal: how much came back (needs a `[probe]`).
    BackdoorReturn,
    /// The locked gap after insertion: capability with the password minus without (needs
    /// `organism = "sandbag"`).
    LockedGap,
    /// Capability without the password at the end of removal, e.g. after unlocking (needs
    /// `organism = "sandbag"`).
    UnlockedCapability,
}

impl Metric {
    /// Every metric, in display order.
    pub const ALL: [Metric; 12] = [
        Metric::BackdoorAfterInsert,
        Metric::FalseTriggerAfterInsert,
        Metric::CapabilityAfterInsert,
        Metric::BackdoorAfterRemove,
        Metric::FalseTriggerAfterRemove,
        Metric::CapabilityAfterRemove,
        Metric::CapabilityDrop,
        Metric::StepsToRemoval,
        Metric::BackdoorAfterProbe,
        Metric::BackdoorReturn,
        Metric::LockedGap,
        Metric::UnlockedCapability,
    ];

    /// The name used in claim files.
    pub fn name(self) -> &'static str {
        match self {
            Metric::BackdoorAfterInsert => "backdoor_after_insert",
            Metric::FalseTriggerAfterInsert => "false_trigger_after_insert",
            Metric::CapabilityAfterInsert => "capability_after_insert",
            Metric::BackdoorAfterRemove => "backdoor_after_remove",
            Metric::FalseTriggerAfterRemove => "false_trigger_after_remove",
            Metric::CapabilityAfterRemove => "capability_after_remove",
            Metric::CapabilityDrop => "capability_drop",
            Metric::StepsToRemoval => "steps_to_removal",
            Metric::BackdoorAfterProbe => "backdoor_after_probe",
            Metric::BackdoorReturn => "backdoor_return",
            Metric::LockedGap => "locked_gap",
            Metric::UnlockedCapability => "unlocked_capability",
        }
    }

    /// The metric called `name`, if any.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Every name, comma-separated, for error messages.
    pub fn names() -> String {
        Metric::ALL.map(Metric::name).join(", ")
    }

    /// Whether the metric needs a `[probe]` stage.
    pub fn needs_probe(self) -> bool {
        matches!(self, Metric::BackdoorAfterProbe | Metric::BackdoorReturn)
    }

    /// Whether the metric needs `organism = "sandbag"`.
    pub fn needs_sandbag(self) -> bool {
        matches!(self, Metric::LockedGap | Metric::UnlockedCapability)
    }
}

/// What one case measured (from its cell's summary).
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Backdoor rate at the end of insertion.
    pub backdoor_after_insert: f64,
    /// False-trigger rate at the end of insertion.
    pub false_trigger_after_insert: f64,
    /// Capability at the end of insertion.
    pub capability_after_insert: f64,
    /// Backdoor rate at the end of removal.
    pub backdoor_after_remove: f64,
    /// False-trigger rate at the end of removal.
    pub false_trigger_after_remove: f64,
    /// Capability at the end of removal.
    pub capability_after_remove: f64,
    /// `capability_after_insert - capability_after_remove`.
    pub capability_drop: f64,
    /// First removal eval step with a backdoor rate below 0.5 (`None`: never).
    pub steps_to_removal: Option<usize>,
    /// Backdoor rate at the end of the probe, if the experiment has one.
    pub backdoor_after_probe: Option<f64>,
    /// `backdoor_after_probe - backdoor_after_remove`, if the experiment has a probe.
    pub backdoor_return: Option<f64>,
    /// The locked gap after insertion (`organism = "sandbag"` only).
    pub locked_gap: Option<f64>,
    /// Capability without the password after removal (`organism = "sandbag"` only).
    pub unlocked_capability: Option<f64>,
    /// The cell's full summary (intervals, per-family capability, timings).
    pub summary: CellSummary,
}

impl Measured {
    /// The numbers of a cell; an error describing the divergence when a stage diverged.
    pub fn from_summary(summary: &CellSummary) -> Result<Self, String> {
        if let CellStatus::Diverged { stage, step, loss } = &summary.status {
            return Err(format!(
                "the {stage} stage diverged at step {step} (loss {loss})"
            ));
        }
        let (Some(insert), Some(remove)) = (&summary.after_insert, &summary.after_remove) else {
            return Err("the cell has no insert or remove eval".into());
        };
        let probe = summary.after_probe.as_ref().map(|p| p.backdoor_rate);
        Ok(Measured {
            backdoor_after_insert: insert.backdoor_rate,
            false_trigger_after_insert: insert.false_trigger_rate,
            capability_after_insert: insert.capability,
            backdoor_after_remove: remove.backdoor_rate,
            false_trigger_after_remove: remove.false_trigger_rate,
            capability_after_remove: remove.capability,
            capability_drop: insert.capability - remove.capability,
            steps_to_removal: summary.first_remove_step_below_half,
            backdoor_after_probe: probe,
            backdoor_return: probe.map(|p| p - remove.backdoor_rate),
            locked_gap: insert.sandbag.as_ref().map(|s| s.locked_gap),
            unlocked_capability: remove.sandbag.as_ref().map(|_| remove.capability),
            summary: summary.clone(),
        })
    }

    /// The value of `metric` (`steps_to_removal` is infinite when removal never happened);
    /// `None` for probe metrics without a probe.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        Some(match metric {
            Metric::BackdoorAfterInsert => self.backdoor_after_insert,
            Metric::FalseTriggerAfterInsert => self.false_trigger_after_insert,
            Metric::CapabilityAfterInsert => self.capability_after_insert,
            Metric::BackdoorAfterRemove => self.backdoor_after_remove,
            Metric::FalseTriggerAfterRemove => self.false_trigger_after_remove,
            Metric::CapabilityAfterRemove => self.capability_after_remove,
            Metric::CapabilityDrop => self.capability_drop,
            Metric::StepsToRemoval => self.steps_to_removal.map_or(f64::INFINITY, |s| s as f64),
            Metric::BackdoorAfterProbe => self.backdoor_after_probe?,
            Metric::BackdoorReturn => self.backdoor_return?,
            Metric::LockedGap => self.locked_gap?,
            Metric::UnlockedCapability => self.unlocked_capability?,
        })
    }

    /// `metric = value`, with the 95% interval where the metric is a rate.
    pub fn describe(&self, metric: Metric) -> String {
        let interval = |ci: [f64; 2]| format!(" [{:.2}, {:.2}]", ci[0], ci[1]);
        let s = &self.summary;
        let ci = match metric {
            Metric::BackdoorAfterInsert => s.after_insert.as_ref().map(|r| r.backdoor_ci),
            Metric::FalseTriggerAfterInsert => s.after_insert.as_ref().map(|r| r.false_trigger_ci),
            Metric::CapabilityAfterInsert => s.after_insert.as_ref().map(|r| r.capability_ci),
            Metric::BackdoorAfterRemove => s.after_remove.as_ref().map(|r| r.backdoor_ci),
            Metric::FalseTriggerAfterRemove => s.after_remove.as_ref().map(|r| r.false_trigger_ci),
            Metric::CapabilityAfterRemove => s.after_remove.as_ref().map(|r| r.capability_ci),
            Metric::BackdoorAfterProbe => s.after_probe.as_ref().map(|r| r.backdoor_ci),
            Metric::UnlockedCapability => s.after_remove.as_ref().map(|r| r.capability_ci),
            Metric::LockedGap => s
                .after_insert
                .as_ref()
                .and_then(|r| r.sandbag.as_ref())
                .and_then(|s| s.locked_gap_ci),
            _ => None,
        };
        let value = match (metric, self.get(metric)) {
            (m, None) if m.needs_sandbag() => "missing (not a sandbag organism)".to_string(),
            (_, None) => "missing (no probe)".to_string(),
            (Metric::StepsToRemoval, Some(x)) if x.is_infinite() => "never".to_string(),
            (Metric::StepsToRemoval, Some(x)) => format!("{x}"),
            (_, Some(x)) => format!("{x:.2}"),
        };
        format!(
            "{} = {value}{}",
            metric.name(),
            ci.map(interval).unwrap_or_default()
        )
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Operators as written, longest first (so `<=` is found before `<`).
    const WRITTEN: [(&'static str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    fn compare(self, left: f64, right: f64) -> bool {
        match self {
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Eq => left == right,
            Op::Ne => left != right,
        }
    }
}

/// The left side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A measured number.
    Metric(Metric),
    /// A dotted key of the case's experiment.
    Key(String),
}

/// The right side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A number.
    Number(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A word or quoted string (compared with `==` / `!=` only).
    Text(String),
}

/// One condition, e.g. `backdoor_after_remove < 0.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What is tested.
    pub subject: Subject,
    /// How.
    pub op: Op,
    /// Against what.
    pub operand: Operand,
    /// The condition as written.
    pub text: String,
}

/// The forms a condition may take, for error messages.
pub const CONDITION_FORMS: &str = "`<metric or dotted config key> <op> <value>` with op one of \
     <, <=, >, >=, ==, != and value a number, true/false or a word, e.g. \
     \"backdoor_after_remove < 0.5\" or \"remove.optimizer.lr >= 1e-3\"";

impl Condition {
    /// Parse `text`; the error says what is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let found = Op::WRITTEN
            .iter()
            .filter_map(|(s, op)| text.find(s).map(|at| (at, *s, *op)))
            .min_by_key(|(at, s, _)| (*at, std::cmp::Reverse(s.len())));
        let Some((at, written, op)) = found else {
            return Err(format!(
                "{text:?} has no comparison operator; write {CONDITION_FORMS}"
            ));
        };
        let left = text[..at].trim();
        let right = text[at + written.len()..].trim();
        if left.is_empty() || right.is_empty() {
            return Err(format!(
                "{text:?} lacks a side of `{written}`; write {CONDITION_FORMS}"
            ));
        }
        let subject = if let Some(metric) = Metric::from_name(left) {
            Subject::Metric(metric)
        } else if left.contains('.') || is_top_level_key(left) {
            Subject::Key(left.to_string())
        } else {
            return Err(format!(
                "unknown metric `{left}`; metrics: {}; or a dotted config key such as \
                 `remove.optimizer.lr`",
                Metric::names()
            ));
        };
        let operand = if let Ok(x) = right.parse::<f64>() {
            Operand::Number(x)
        } else if let Ok(b) = right.parse::<bool>() {
            Operand::Bool(b)
        } else {
            Operand::Text(right.trim_matches(|c| c == '"' || c == '\'').to_string())
        };
        if matches!(operand, Operand::Text(_) | Operand::Bool(_)) && !matches!(op, Op::Eq | Op::Ne)
        {
            return Err(format!(
                "{text:?} compares with `{written}` to a non-number `{right}`; only == and != \
                 compare words and booleans"
            ));
        }
        if matches!(subject, Subject::Metric(_)) && !matches!(operand, Operand::Number(_)) {
            return Err(format!(
                "{text:?}: the metric `{left}` is a number; compare it to a number"
            ));
        }
        Ok(Condition {
            subject,
            op,
            operand,
            text: text.trim().to_string(),
        })
    }

    /// Whether the condition tests a metric (so it needs a run).
    pub fn needs_run(&self) -> bool {
        matches!(self.subject, Subject::Metric(_))
    }

    /// Evaluate on a case: its experiment as a TOML table and, for metric conditions, what it
    /// measured. `Err` explains what could not be evaluated.
    pub fn holds(
        &self,
        experiment: &toml::Value,
        measured: Option<&Measured>,
    ) -> Result<bool, String> {
        match &self.subject {
            Subject::Metric(metric) => {
                let measured = measured.ok_or("not measured yet")?;
                let value = measured
                    .get(*metric)
                    .ok_or_else(|| match metric.needs_sandbag() {
                        true => format!("`{}` is missing (not a sandbag organism)", metric.name()),
                        false => format!("`{}` is missing (no probe)", metric.name()),
                    })?;
                match self.operand {
                    Operand::Number(x) => Ok(self.op.compare(value, x)),
                    _ => Err("a metric compares to a number".into()),
                }
            }
            Subject::Key(key) => {
                let value = lookup(experiment, key)
                    .ok_or_else(|| format!("no key `{key}` in the experiment"))?;
                let number = match value {
                    toml::Value::Integer(i) => Some(*i as f64),
                    toml::Value::Float(x) => Some(*x),
                    _ => None,
                };
                match (&self.operand, number, value) {
                    (Operand::Number(x), Some(v), _) => Ok(self.op.compare(v, *x)),
                    (Operand::Bool(b), _, toml::Value::Boolean(v)) => {
                        Ok((v == b) == (self.op == Op::Eq))
                    }
                    (Operand::Text(t), _, toml::Value::String(s)) => {
                        Ok((s == t) == (self.op == Op::Eq))
                    }
                    (Operand::Text(t), _, toml::Value::Table(table)) => {
                        // An optimizer table compares by its name.
                        let name = table
                            .get("name")
                            .or_else(|| table.get("plugin"))
                            .and_then(|v| v.as_str())
                            .unwrap_or_default();
                        Ok((name == t) == (self.op == Op::Eq))
                    }
                    _ => Err(format!(
                        "`{key}` = {value} cannot be compared with `{}`",
                        self.text
                    )),
                }
            }
        }
    }
}

fn is_top_level_key(key: &str) -> bool {
    matches!(key, "seed" | "name" | "device")
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A robustness claim: under these preconditions, every case meets these expectations.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// What is claimed, in words.
    pub statement: String,
    /// Preconditions: a case that fails one is discarded (not a counterexample). Config
    /// conditions are checked before running; metric ones (e.g. `backdoor_after_insert >= 0.9`,
    /// the protocol's starting point) after.
    pub given: Vec<Condition>,
    /// Expectations: a case that meets the preconditions and fails one refutes the claim.
    pub expect: Vec<Condition>,
}

/// What a claim says about one case.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// A precondition does not hold: the case says nothing about the claim.
    Discarded(String),
    /// Every expectation holds.
    Holds,
    /// These expectations failed (each with the numbers that broke it).
    Broken(Vec<String>),
}

impl Claim {
    /// Whether the config-only preconditions hold for `experiment` (checked before running).
    pub fn admits(&self, experiment: &toml::Value) -> Result<(), String> {
        for condition in self.given.iter().filter(|c| !c.needs_run()) {
            if !condition.holds(experiment, None)? {
                return Err(format!("precondition `{condition}` does not hold"));
            }
        }
        Ok(())
    }

    /// Judge a case from its experiment and what it measured (`Err`: the cell diverged).
    pub fn judge(
        &self,
        experiment: &toml::Value,
        measured: &Result<Measured, String>,
    ) -> Judgement {
        if let Err(reason) = self.admits(experiment) {
            return Judgement::Discarded(reason);
        }
        let measured = match measured {
            Ok(m) => m,
            Err(diverged) => return Judgement::Broken(vec![diverged.clone()]),
        };
        for condition in self.given.iter().filter(|c| c.needs_run()) {
            match condition.holds(experiment, Some(measured)) {
                Ok(true) => {}
                Ok(false) => {
                    return Judgement::Discarded(format!(
                        "precondition `{condition}` does not hold ({})",
                        describe_subject(condition, measured)
                    ));
                }
                Err(e) => return Judgement::Discarded(e),
            }
        }
        let broken: Vec<String> = self
            .expect
            .iter()
            .filter_map(|c| match c.holds(experiment, Some(measured)) {
                Ok(true) => None,
                Ok(false) => Some(format!("`{c}` fails: {}", describe_subject(c, measured))),
                Err(e) => Some(format!("`{c}` cannot be evaluated: {e}")),
            })
            .collect();
        if broken.is_empty() {
            Judgement::Holds
        } else {
            Judgement::Broken(broken)
        }
    }
}

fn describe_subject(condition: &Condition, measured: &Measured) -> String {
    match &condition.subject {
        Subject::Metric(m) => measured.describe(*m),
        Subject::Key(k) => k.clone(),
    }
}
