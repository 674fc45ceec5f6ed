//! `pyspy`: a thin command line over pyspy-core.

mod debug_view;
mod dump;
mod output;
mod record;
mod target;
mod top;

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
    /// Sample a program and write a profile: flame graph, pprof, speedscope, ...
    Record(record::Args),
    /// A live view of the functions a program spends its time in.
    Top(top::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dump(args) => dump::run(&args).map_err(|e| e.to_string()),
        Command::Record(args) => record::run(&args),
        Command::Top(args) => top::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pyspy: error: {e}");
            ExitCode::FAILURE
        }
    }
}
