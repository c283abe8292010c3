//! Plumbing for results on disk: every file is written atomically (temporary name, then
//! rename), so a killed run never leaves a half-written file.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::error::HarnessError;

/// Write `bytes` to `path` atomically: a temporary file in the same folder, synced, renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HarnessError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and per call, so concurrent writers (threads of one sweep, tasks of a
    // SLURM array) never share a temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(|e| HarnessError::io(&tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| HarnessError::io(&tmp, e))?;
    file.sync_all().map_err(|e| HarnessError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| HarnessError::io(path, e))
}

/// Write one JSON document, pretty-printed.
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

/// Read JSON lines back.
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

/// The sha256 of a byte string, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read one JSON document.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, HarnessError> {
    let text = std::fs::read_to_string(path).map_err(|e| HarnessError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| HarnessError::io(path, e))
}
