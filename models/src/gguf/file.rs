//! [`GgufFile`]: an opened GGUF file, its metadata and its tensors as f32.
//!
//! The container (header, metadata key/value pairs, tensor descriptors, alignment) is parsed by
//! the `gguf-rs-lib` crate, chosen over the other GGUF readers on crates.io because it is
//! maintained (0.3, 2026), MIT licensed, has no dependencies outside this tree but `thiserror`
//! and `serde`, knows every ggml type id up to MXFP4/NVFP4, and bounds its allocations on
//! hostile headers (metadata size limits, checked arithmetic). `ggus` parses as well but pulls
//! in `ggml-quants`, whose K-quant dequantisers are unimplemented; `gguf` and `gguf-rs` are
//! metadata-only and unmaintained; candle-core's `gguf_file` would bring all of candle. None
//! of them dequantises every type needed here, so [`dequantize`](super::dequantize) is ours.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use gguf_rs_lib::format::metadata::MetadataValue;
use gguf_rs_lib::reader::{GGUFFileReader, GGUFReaderConfig};

use super::dequant::{GgmlType, SUPPORTED_GGML_TYPES, dequantize};
use crate::ModelError;

/// One tensor's descriptor in a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// Its name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Its dimensions as GGUF stores them: `dims[0]` is the innermost (contiguous) one, so a
    /// PyTorch `[out, in]` weight is `[in, out]` here.
    pub dims: Vec<usize>,
    /// ggml's type id.
    pub type_id: u32,
    /// ggml's name of the type (`Q4_K`, ...).
    pub type_name: String,
    /// Byte offset of its data from the start of the file.
    pub offset: u64,
    /// Byte length of its data.
    pub len: u64,
}

impl GgufTensorInfo {
    /// Number of values.
    pub fn values(&self) -> usize {
        self.dims.iter().product()
    }

    /// The dimensions outermost first (the row-major shape of the data): `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A GGUF file whose header, metadata and tensor descriptors have been read and checked; the
/// tensor data is read on demand ([`read_f32`](Self::read_f32)).
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    metadata: BTreeMap<String, MetadataValue>,
    tensors: Vec<GgufTensorInfo>,
}

impl GgufFile {
    /// Opens `path` and reads its header, metadata and tensor descriptors. Every tensor's data
    /// range is checked against the file's length before any data is read.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingFile`] when there is no such file, [`ModelError::Io`] when it
    /// cannot be read, [`ModelError::Gguf`] for a container that does not parse (bad magic,
    /// unsupported version, malformed metadata, an unknown tensor type id),
    /// [`ModelError::GgufTensor`] naming a tensor whose data would lie past the end of the file.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let config = GGUFReaderConfig {
            // Ranges are checked below, so that the error can name the tensor.
            validate_integrity: false,
            ..GGUFReaderConfig::default()
        };
        let reader = GGUFFileReader::with_config(BufReader::new(file), config).map_err(|e| {
            ModelError::Gguf {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let data_start = reader.tensor_data_offset();
        let mut tensors = Vec::with_capacity(reader.tensor_infos().len());
        for info in reader.tensor_infos() {
            let name = info.name().to_string();
            let bad = |reason: String| ModelError::GgufTensor {
                path: path.to_path_buf(),
                tensor: name.clone(),
                reason,
            };
            let kind = info.tensor_type();
            let len = info
                .checked_expected_data_size()
                .map_err(|e| bad(format!("has no valid size for type {}: {e}", kind.name())))?;
            let offset = data_start
                .checked_add(info.data_offset())
                .ok_or_else(|| bad("has an offset that overflows".into()))?;
            let end = offset
                .checked_add(len)
                .ok_or_else(|| bad("has a length that overflows".into()))?;
            if end > file_len {
                return Err(bad(format!(
                    "has data at bytes {offset}..{end}, past the end of the file ({file_len} \
                     bytes): the file is truncated or its header is corrupt"
                )));
            }
            let dims = info
                .shape()
                .dims()
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad("has a dimension too large for this platform".into()))?;
            tensors.push(GgufTensorInfo {
                name: name.clone(),
                dims,
                type_id: kind as u32,
                type_name: kind.name().to_string(),
                offset,
                len,
            });
        }
        let metadata = reader
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            metadata,
            tensors,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor descriptors, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The descriptor of the tensor called `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Every metadata key, sorted.
    pub fn metadata_keys(&self) -> impl Iterator<Item = &str> {
        self.metadata.keys().map(String::as_str)
    }

    /// Reads and dequantises the tensor called `name`: its values in storage order (row-major
    /// over [`GgufTensorInfo::shape`]) and its descriptor.
    ///
    /// # Errors
    ///
    /// [`ModelError::GgufTensor`] when there is no such tensor or its type is not one of
    /// [`SUPPORTED_GGML_TYPES`] (the error names both), [`ModelError::Io`] when reading fails.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<f32>, &GgufTensorInfo), ModelError> {
        let bad = |reason: String| ModelError::GgufTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
            reason,
        };
        let info = self
            .tensor(name)
            .ok_or_else(|| bad("is not in the file".into()))?;
        let Some(kind) = GgmlType::from_id(info.type_id) else {
            return Err(bad(format!(
                "has type {} (id {}), which this crate does not dequantise; supported: {}",
                info.type_name,
                info.type_id,
                SUPPORTED_GGML_TYPES
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let io = |source| ModelError::Io {
            path: self.path.clone(),
            source,
        };
        let len = usize::try_from(info.len).map_err(|_| bad("is too large to read".into()))?;
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(info.offset)).map_err(io)?;
        let mut bytes = vec![0u8; len];
        file.read_exact(&mut bytes).map_err(io)?;
        let values = dequantize(kind, &bytes, info.values()).map_err(bad)?;
        Ok((values, info))
    }

    /// The raw value of metadata key `key`, if present.
    pub(crate) fn value(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    fn key_error(&self, key: &str, reason: impl Into<String>) -> ModelError {
        ModelError::GgufMetadata {
            path: self.path.clone(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// The unsigned integer at `key`, if present.
    ///
    /// # Errors
    ///
    /// [`ModelError::GgufMetadata`] when it is present but not a non-negative integer.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        let n = value
            .as_u64()
            .or_else(|| value.as_i64().and_then(|v| u64::try_from(v).ok()));
        n.and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                self.key_error(
                    key,
                    format!("is {value:?}; expected a non-negative integer"),
                )
            })
    }

    /// The unsigned integer at `key`.
    ///
    /// # Errors
    ///
    /// [`ModelError::GgufMetadata`] when it is missing or not a non-negative integer.
    pub fn usize(&self, key: &str) -> Result<usize, ModelError> {
        self.opt_usize(key)?
            .ok_or_else(|| self.key_error(key, "is missing"))
    }

    /// The float at `key`, if present (integers are accepted too).
    ///
    /// # Errors
    ///
    /// [`ModelError::GgufMetadata`] when it is present but not a number.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        value
            .as_f64()
            .or_else(|| value.as_u64().map(|v| v as f64))
            .or_else(|| value.as_i64().map(|v| v as f64))
            .map(Some)
            .ok_or_else(|| self.key_error(key, format!("is {value:?}; expected a number")))
    }

    /// The string at `key`, if present.
    ///
    /// # Errors
    ///
    /// [`ModelError::GgufMetadata`] when it is present but not a string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, ModelError> {
        match self.value(key) {
            None => Ok(None),
            Some(MetadataValue::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.key_error(key, format!("is {}; expected a string", kind_name(other))))
            }
        }
    }

    /// The string at `key`.
    ///
    /// # Errors
    ///
    /// [`ModelError::GgufMetadata`] when it is missing or not a string.
    pub fn str(&self, key: &str) -> Result<&str, ModelError> {
        self.opt_str(key)?
            .ok_or_else(|| self.key_error(key, "is missing"))
    }

    /// The array of strings at `key`, if present.
    ///
    /// # Errors
    ///
    /// [`ModelError::GgufMetadata`] when it is present but not an array of strings.
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<&str>>, ModelError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        let MetadataValue::Array(array) = value else {
            return Err(self.key_error(
                key,
                format!("is {}; expected an array of strings", kind_name(value)),
            ));
        };
        array
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                MetadataValue::String(s) => Ok(s.as_str()),
                other => Err(self.key_error(
                    key,
                    format!("has {} at index {i}; expected strings", kind_name(other)),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The array of integers at `key`, if present.
    ///
    /// # Errors
    ///
    /// [`ModelError::GgufMetadata`] when it is present but not an array of integers.
    pub fn opt_ints(&self, key: &str) -> Result<Option<Vec<i64>>, ModelError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        let MetadataValue::Array(array) = value else {
            return Err(self.key_error(
                key,
                format!("is {}; expected an array of integers", kind_name(value)),
            ));
        };
        array
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_i64()
                    .or_else(|| v.as_u64().and_then(|u| i64::try_from(u).ok()))
                    .ok_or_else(|| {
                        self.key_error(
                            key,
                            format!("has {} at index {i}; expected integers", kind_name(v)),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A [`ModelError::GgufMetadata`] for `key`.
    pub(crate) fn bad_key(&self, key: &str, reason: impl Into<String>) -> ModelError {
        self.key_error(key, reason)
    }

    /// A [`ModelError::GgufTensor`] for `tensor`.
    pub(crate) fn bad_tensor(&self, tensor: &str, reason: impl Into<String>) -> ModelError {
        ModelError::GgufTensor {
            path: self.path.clone(),
            tensor: tensor.to_string(),
            reason: reason.into(),
        }
    }
}

/// A metadata value's kind, for error messages.
fn kind_name(value: &MetadataValue) -> &'static str {
    match value {
        MetadataValue::String(_) => "a string",
        MetadataValue::Array(_) => "an array",
        MetadataValue::Bool(_) => "a boolean",
        MetadataValue::F32(_) | MetadataValue::F64(_) => "a float",
        _ => "an integer",
    }
}
