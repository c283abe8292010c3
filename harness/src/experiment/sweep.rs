//! Grids over config keys: `[sweep]` axes, each a dotted key and a list of values; the cells
//! are their product, each a full experiment with those keys replaced and validated again.

use std::collections::BTreeMap;

use super::config::Experiment;
use super::overrides::{missing_key, names_a_key, short};
use super::paths::to_plain_name;
use crate::error::HarnessError;

/// One cell of a sweep.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Human-readable label, e.g. `insert.optimizer=adam remove.optimizer.lr=0.0001`.
    pub label: String,
    /// A short folder name, e.g. `03-adam-0.0001`.
    pub slug: String,
    /// The swept keys of this cell and their values as written in labels (empty without a
    /// `[sweep]`), e.g. `{"insert.optimizer": "adam", "seed": "2"}`.
    pub axes: std::collections::BTreeMap<String, String>,
    /// The experiment of this cell (no `[sweep]` left).
    pub experiment: Experiment,
}

impl Cell {
    /// A single cell, labelled `default`, for an experiment without a grid.
    pub fn single(experiment: Experiment) -> Self {
        Self {
            label: "default".into(),
            slug: "00-default".into(),
            axes: Default::default(),
            experiment,
        }
    }
}

/// The cells of `experiment`'s grid (one cell, labelled `default`, without a `[sweep]`).
pub fn cells(experiment: &Experiment, origin: &str) -> Result<Vec<Cell>, HarnessError> {
    let mut base = experiment.clone();
    let axes = std::mem::take(&mut base.sweep);
    let invalid = |key: &str, problem: String| HarnessError::Invalid {
        origin: origin.to_string(),
        key: format!("sweep.\"{key}\""),
        problem,
    };
    for (key, values) in &axes {
        if values.is_empty() {
            return Err(invalid(
                key,
                "the axis is empty, so the grid would have zero cells; give at least one value"
                    .into(),
            ));
        }
    }
    let table = toml::Value::try_from(&base).map_err(|e| invalid("", e.to_string()))?;
    // Check every axis path exists before expanding, so the error names the axis.
    for (key, values) in &axes {
        if !names_a_key(&table, key, &values[0]) {
            return Err(invalid(key, missing_key("axes")));
        }
    }
    let mut combos: Vec<Vec<(&String, &toml::Value)>> = vec![vec![]];
    for (key, values) in &axes {
        combos = combos
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push((key, v));
                    next
                })
            })
            .collect();
    }
    let mut out = Vec::with_capacity(combos.len());
    for (index, combo) in combos.into_iter().enumerate() {
        let label = if combo.is_empty() {
            "default".to_string()
        } else {
            combo
                .iter()
                .map(|(k, v)| format!("{k}={}", short(v)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let overrides: BTreeMap<String, toml::Value> = combo
            .iter()
            .map(|(k, v)| ((*k).clone(), (*v).clone()))
            .collect();
        let experiment =
            base.with_overrides(&overrides, origin, &format!("sweep cell {label}"), "axes")?;
        let slug_parts: Vec<String> = if combo.is_empty() {
            vec!["default".into()]
        } else {
            combo.iter().map(|(_, v)| short(v)).collect()
        };
        // Values can hold `/` and `..` (plugin paths, triggers): the slug is a plain name.
        let slug = format!("{index:02}-{}", to_plain_name(&slug_parts.join("-")));
        out.push(Cell {
            label,
            slug: slug.trim_end_matches('-').to_string(),
            axes: combo
                .iter()
                .map(|(k, v)| ((*k).clone(), short(v)))
                .collect(),
            experiment,
        });
    }
    Ok(out)
}
