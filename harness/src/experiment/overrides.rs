//! Replacing dotted keys of an experiment (`remove.optimizer.lr = 1e-3`): the one path by which
//! sweep cells and claim cases become experiments. The experiment is turned into its TOML
//! table, each key is replaced (parents before children, in key order), and the table is
//! parsed and validated again, so an override is checked exactly like a value in the file.

use std::collections::BTreeMap;

use super::config::Experiment;
use crate::error::HarnessError;

impl Experiment {
    /// This experiment with every key of `overrides` (dotted, e.g. `insert.optimizer.lr`)
    /// replaced, parsed and validated again. Errors name `origin` (with `[label]` appended for
    /// errors of the resulting experiment), and a key that does not exist is an error naming
    /// it; `what` says in that error which keys may be named (e.g. "axes", "varied keys").
    pub fn with_overrides(
        &self,
        overrides: &BTreeMap<String, toml::Value>,
        origin: &str,
        label: &str,
        what: &str,
    ) -> Result<Experiment, HarnessError> {
        let invalid = |key: String, problem: String| HarnessError::Invalid {
            origin: origin.to_string(),
            key,
            problem,
        };
        let mut table =
            toml::Value::try_from(self).map_err(|e| invalid("experiment".into(), e.to_string()))?;
        for (key, value) in overrides {
            if !names_a_key(&table, key, value) {
                return Err(invalid(key.clone(), missing_key(what)));
            }
            set(&mut table, key, value.clone());
        }
        // A method swept away from `rl` leaves its stage's `rl` table behind (a sweep over
        // `remove.method = ["hhh", "rl"]` gives the table to the rl cells only).
        for stage in ["remove", "probe"] {
            let method = overrides.get(&format!("{stage}.method"));
            if method.is_some_and(|m| m.as_str() != Some("rl"))
                && let Some(section) = table.get_mut(stage).and_then(|t| t.as_table_mut())
            {
                section.remove("rl");
            }
        }
        let cell_origin = format!("{origin} [{label}]");
        let experiment: Experiment =
            table
                .try_into()
                .map_err(|e: toml::de::Error| HarnessError::Invalid {
                    origin: cell_origin.clone(),
                    key: overrides.keys().cloned().collect::<Vec<_>>().join(", "),
                    problem: e.message().to_string(),
                })?;
        experiment.validate(&cell_origin)?;
        Ok(experiment)
    }
}

/// The error text for a dotted key that names nothing.
pub(crate) fn missing_key(what: &str) -> String {
    format!(
        "no such key in the experiment ({what} name keys like `seed`, `insert.optimizer`, \
         `remove.steps`, `remove.optimizer.lr`, `backdoor.style`)"
    )
}

/// The value at a dotted key (`remove.optimizer.lr`) of a config table, if it exists.
pub fn lookup<'a>(value: &'a toml::Value, dotted: &str) -> Option<&'a toml::Value> {
    dotted
        .split('.')
        .try_fold(value, |v, part| v.as_table()?.get(part))
}

/// Whether `dotted` names a key of the experiment `table`: one it holds, or an optional key
/// it leaves out when unset (`base.until`, `base.pack`...) whose table exists and accepts it.
pub fn names_a_key(table: &toml::Value, dotted: &str, value: &toml::Value) -> bool {
    if lookup(table, dotted).is_some() {
        return true;
    }
    let parent = dotted.rsplit_once('.').map_or("", |(parent, _)| parent);
    if !parent.is_empty() && lookup(table, parent).and_then(|v| v.as_table()).is_none() {
        return false;
    }
    let mut probe = table.clone();
    set(&mut probe, dotted, value.clone());
    match probe.try_into::<Experiment>() {
        Ok(_) => true,
        Err(e) => !e.message().contains("unknown field"),
    }
}

/// Replace the value at a dotted key whose parent exists; a key whose parent is missing is left
/// alone (check with [`lookup`] first).
pub fn set(value: &mut toml::Value, dotted: &str, new: toml::Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut v = value;
    for part in parts {
        match v.as_table_mut().and_then(|t| t.get_mut(part)) {
            Some(next) => v = next,
            None => return,
        }
    }
    if let Some(table) = v.as_table_mut() {
        table.insert(last.to_string(), new);
    }
}

/// A value in a label: an optimizer table by its name (a plugin by its file's stem or crate
/// name), anything else as written.
pub fn short(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(t) => match (t.get("name"), t.get("plugin")) {
            (Some(toml::Value::String(name)), _) => name.clone(),
            // A plugin by its file's stem: `target/release/libsoap.so` -> `soap`.
            (_, Some(toml::Value::String(path))) => {
                let stem = std::path::Path::new(path)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.clone());
                stem.strip_prefix("lib").unwrap_or(&stem).to_string()
            }
            _ => value.to_string(),
        },
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
