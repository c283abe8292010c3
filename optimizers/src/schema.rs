//! Hyper-parameter schemas: one description shared by built-in and plugin optimizers.
//!
//! A schema lists every hyper-parameter with its doc, kind, default and range. Specs are
//! validated against it at the edge (when a config is parsed), so that everything downstream
//! works with typed, in-range values.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// A hyper-parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A boolean flag.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            // Small and large reals read better in exponent form: 1e-8, not 0.00000001.
            Value::Float(x) if *x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) => {
                write!(f, "{x:e}")
            }
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// One end of a real interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// The end value is allowed.
    Inclusive(f64),
    /// The end value is not allowed.
    Exclusive(f64),
    /// No bound on this side.
    Unbounded,
}

/// The type and range of a hyper-parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A real number in `[min, max]` with the given inclusiveness. `log_scale` says that the
    /// natural way to sample it (sweeps, property tests) is log-uniform.
    Float {
        /// Lower end.
        min: Bound,
        /// Upper end.
        max: Bound,
        /// Sample log-uniformly rather than uniformly.
        log_scale: bool,
    },
    /// An integer in `[min, max]`, both inclusive.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A boolean flag.
    Bool,
}

impl Kind {
    /// A positive real, `(0, inf)`, sampled log-uniformly: learning rates, epsilons.
    pub const POSITIVE_LOG: Kind = Kind::Float {
        min: Bound::Exclusive(0.0),
        max: Bound::Unbounded,
        log_scale: true,
    };
    /// A non-negative real, `[0, inf)`: weight decay.
    pub const NON_NEGATIVE: Kind = Kind::Float {
        min: Bound::Inclusive(0.0),
        max: Bound::Unbounded,
        log_scale: false,
    };
    /// A decay coefficient, `[0, 1)`: betas, momentum.
    pub const UNIT_HALF_OPEN: Kind = Kind::Float {
        min: Bound::Inclusive(0.0),
        max: Bound::Exclusive(1.0),
        log_scale: false,
    };
    /// A fraction, `[0, 1]`.
    pub const UNIT_CLOSED: Kind = Kind::Float {
        min: Bound::Inclusive(0.0),
        max: Bound::Inclusive(1.0),
        log_scale: false,
    };

    /// The range in interval notation, e.g. `(0, inf)` or `[0, 1)`.
    pub fn range_string(&self) -> String {
        match self {
            Kind::Float { min, max, .. } => {
                let lo = match min {
                    Bound::Inclusive(v) => format!("[{v}"),
                    Bound::Exclusive(v) => format!("({v}"),
                    Bound::Unbounded => "(-inf".to_string(),
                };
                let hi = match max {
                    Bound::Inclusive(v) => format!("{v}]"),
                    Bound::Exclusive(v) => format!("{v})"),
                    Bound::Unbounded => "inf)".to_string(),
                };
                format!("{lo}, {hi}")
            }
            Kind::Int { min, max } => format!("integer in [{min}, {max}]"),
            Kind::Bool => "true or false".to_string(),
        }
    }

    /// A short description of the type, e.g. `a number in (0, inf)`.
    pub fn expected(&self) -> String {
        match self {
            Kind::Float { .. } => format!("a number in {}", self.range_string()),
            Kind::Int { .. } => format!("an {}", self.range_string()),
            Kind::Bool => "a boolean (true or false)".to_string(),
        }
    }

    /// Whether a real value lies within this kind's range.
    pub fn contains(&self, x: f64) -> bool {
        match self {
            Kind::Float { min, max, .. } => {
                let lo = match min {
                    Bound::Inclusive(v) => x >= *v,
                    Bound::Exclusive(v) => x > *v,
                    Bound::Unbounded => true,
                };
                let hi = match max {
                    Bound::Inclusive(v) => x <= *v,
                    Bound::Exclusive(v) => x < *v,
                    Bound::Unbounded => true,
                };
                x.is_finite() && lo && hi
            }
            Kind::Int { min, max } => x.fract() == 0.0 && x >= *min as f64 && x <= *max as f64,
            Kind::Bool => false,
        }
    }
}

/// One hyper-parameter of an optimizer.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperParam {
    /// The key in a spec table, e.g. `beta1`.
    pub name: String,
    /// What it does, one line.
    pub doc: String,
    /// Its type and range.
    pub kind: Kind,
    /// The value used when a spec leaves it out.
    pub default: Value,
}

impl HyperParam {
    /// A real-valued hyper-parameter.
    pub fn float(name: &str, doc: &str, kind: Kind, default: f64) -> Self {
        Self {
            name: name.into(),
            doc: doc.into(),
            kind,
            default: Value::Float(default),
        }
    }

    /// An integer hyper-parameter in `[min, max]`.
    pub fn int(name: &str, doc: &str, min: i64, max: i64, default: i64) -> Self {
        Self {
            name: name.into(),
            doc: doc.into(),
            kind: Kind::Int { min, max },
            default: Value::Int(default),
        }
    }

    /// A boolean hyper-parameter.
    pub fn bool(name: &str, doc: &str, default: bool) -> Self {
        Self {
            name: name.into(),
            doc: doc.into(),
            kind: Kind::Bool,
            default: Value::Bool(default),
        }
    }
}

/// A raw value as written in a config file, before it is checked against a schema.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// A boolean.
    Bool(bool),
    /// An integer literal.
    Int(i64),
    /// A real literal.
    Float(f64),
    /// A string.
    String(String),
    /// Anything else (arrays, tables, dates), described for the error message.
    Other(String),
}

impl RawValue {
    fn describe(&self) -> String {
        match self {
            RawValue::Bool(b) => format!("boolean {b}"),
            RawValue::Int(i) => format!("integer {i}"),
            RawValue::Float(x) => format!("number {x}"),
            RawValue::String(s) => format!("string {s:?}"),
            RawValue::Other(what) => what.clone(),
        }
    }
}

/// The hyper-parameters an optimizer accepts, in display order.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// The optimizer's name as written in a spec (`name = "lion"`).
    pub name: String,
    /// One paragraph: what the optimizer is and which reference it follows.
    pub doc: String,
    /// Its hyper-parameters. Every schema has `lr`.
    pub params: Vec<HyperParam>,
}

impl Schema {
    /// The hyper-parameter called `name`, if any.
    pub fn param(&self, name: &str) -> Option<&HyperParam> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The allowed keys, comma-separated, for error messages.
    pub fn allowed_keys(&self) -> String {
        self.params
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The defaults of every hyper-parameter.
    pub fn defaults(&self) -> BTreeMap<String, Value> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.default))
            .collect()
    }

    /// Check `given` against the schema and fill in defaults.
    ///
    /// Unknown keys, wrong types and out-of-range values are errors naming the key and what is
    /// allowed. An integer literal is accepted for a real parameter (`weight_decay = 0`).
    pub fn resolve(
        &self,
        given: &BTreeMap<String, RawValue>,
    ) -> Result<BTreeMap<String, Value>, SpecError> {
        let mut values = self.defaults();
        for (key, raw) in given {
            let param = self.param(key).ok_or_else(|| SpecError::UnknownKey {
                optimizer: self.name.clone(),
                key: key.clone(),
                allowed: self.allowed_keys(),
            })?;
            let value = self.check(param, raw)?;
            values.insert(key.clone(), value);
        }
        Ok(values)
    }

    fn check(&self, param: &HyperParam, raw: &RawValue) -> Result<Value, SpecError> {
        let wrong_type = || SpecError::WrongType {
            optimizer: self.name.clone(),
            key: param.name.clone(),
            expected: param.kind.expected(),
            got: raw.describe(),
        };
        let value = match (param.kind, raw) {
            (Kind::Bool, RawValue::Bool(b)) => Value::Bool(*b),
            (Kind::Int { .. }, RawValue::Int(i)) => Value::Int(*i),
            (Kind::Float { .. }, RawValue::Float(x)) => Value::Float(*x),
            (Kind::Float { .. }, RawValue::Int(i)) => Value::Float(*i as f64),
            _ => return Err(wrong_type()),
        };
        self.in_range(param, value, &raw.describe())
    }

    /// `value` if it lies in `param`'s range; `given` is how the error message shows it.
    fn in_range(&self, param: &HyperParam, value: Value, given: &str) -> Result<Value, SpecError> {
        let as_f64 = match value {
            Value::Int(i) => i as f64,
            Value::Float(x) => x,
            Value::Bool(_) => return Ok(value),
        };
        if !param.kind.contains(as_f64) {
            return Err(SpecError::OutOfRange {
                optimizer: self.name.clone(),
                key: param.name.clone(),
                value: given.replace("number ", "").replace("integer ", ""),
                range: param.kind.range_string(),
            });
        }
        Ok(value)
    }

    /// A typed reader over `values` (normally what [`resolve`](Self::resolve) returned): how a
    /// built-in's typed config reads its fields, once, when a spec is parsed.
    pub fn reader<'a>(&'a self, values: &'a BTreeMap<String, Value>) -> Values<'a> {
        Values {
            schema: self,
            values,
        }
    }
}

/// Resolved hyper-parameter values read by key and type against their [`Schema`].
///
/// Every accessor returns an `Err` naming the optimizer, the key and the allowed range when the
/// key is not in the schema, is missing from the values, has another type or lies outside its
/// range: a typed config built through it cannot panic on a typo.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    schema: &'a Schema,
    values: &'a BTreeMap<String, Value>,
}

impl Values<'_> {
    /// The schema's declaration of `key`, and its value.
    fn get(&self, key: &str) -> Result<(&HyperParam, Value), SpecError> {
        let missing = |expected: String| SpecError::MissingKey {
            optimizer: self.schema.name.clone(),
            key: key.to_string(),
            expected,
        };
        let param = self.schema.param(key).ok_or_else(|| {
            missing(format!(
                "a key of the schema, which declares only: {}",
                self.schema.allowed_keys()
            ))
        })?;
        let value = *self
            .values
            .get(key)
            .ok_or_else(|| missing(param.kind.expected()))?;
        let value = self.schema.in_range(param, value, &value.to_string())?;
        Ok((param, value))
    }

    fn wrong_type(&self, param: &HyperParam, value: Value) -> SpecError {
        SpecError::WrongType {
            optimizer: self.schema.name.clone(),
            key: param.name.clone(),
            expected: param.kind.expected(),
            got: value.to_string(),
        }
    }

    /// A real hyper-parameter (an integer value is accepted, as in a config file).
    pub fn float(&self, key: &str) -> Result<f64, SpecError> {
        match self.get(key)? {
            (_, Value::Float(x)) => Ok(x),
            (param, Value::Int(i)) if matches!(param.kind, Kind::Float { .. }) => Ok(i as f64),
            (param, value) => Err(self.wrong_type(param, value)),
        }
    }

    /// An integer hyper-parameter.
    pub fn int(&self, key: &str) -> Result<i64, SpecError> {
        match self.get(key)? {
            (_, Value::Int(i)) => Ok(i),
            (param, value) => Err(self.wrong_type(param, value)),
        }
    }

    /// A boolean hyper-parameter.
    pub fn bool(&self, key: &str) -> Result<bool, SpecError> {
        match self.get(key)? {
            (_, Value::Bool(b)) => Ok(b),
            (param, value) => Err(self.wrong_type(param, value)),
        }
    }

    /// The optimizer these values belong to, for messages.
    pub fn optimizer(&self) -> &str {
        &self.schema.name
    }
}
