//! `pyspy`: a thin command line over pyspy-core.

mod dump;
mod output;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pyspy",
    version,
    about = "Sampling profiler for Python programs: reads a running CPython's stacks from outside"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every thread's Python stack once.
    Dump(dump::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dump(args) => dump::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pyspy: error: {e}");
            ExitCode::FAILURE
        }
    }
}
