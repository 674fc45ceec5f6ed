//! `pyspy`: a thin command line over pyspy-core.

mod completions;
mod datakit;
mod debug_view;
mod dump;
mod host;
mod output;
mod push;
mod record;
mod target;
mod tasks_view;
mod top;
mod upload;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::sync::LazyLock;

/// `pyspy --version`: the version, and the CPython versions this build can read.
static LONG_VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}\nreads CPython {}",
        env!("CARGO_PKG_VERSION"),
        version_ranges(pyspy_core::supported_versions())
    )
});

#[derive(Parser)]
#[command(
    name = "pyspy",
    version,
    long_version = LONG_VERSION.as_str(),
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
    /// Print a completion script for bash, zsh, fish, powershell or elvish.
    ///
    /// Install it where the shell looks for completions, for example:
    ///
    ///   bash:  pyspy completions bash > ~/.local/share/bash-completion/completions/pyspy
    ///
    ///   zsh:   pyspy completions zsh > ~/.zfunc/_pyspy
    ///          (with `fpath+=~/.zfunc; autoload -U compinit; compinit` in ~/.zshrc)
    ///
    ///   fish:  pyspy completions fish > ~/.config/fish/completions/pyspy.fish
    ///
    ///   PowerShell:  pyspy completions powershell | Out-String | Invoke-Expression
    ///          (add that line to $PROFILE to keep it)
    #[command(
        verbatim_doc_comment,
        about = "Print a completion script for bash, zsh, fish, powershell or elvish"
    )]
    Completions(completions::Args),
    /// Sample continuously and upload a profile per interval (Pyroscope, DataKit, OTLP).
    Push(Box<push::Args>),
    /// Upload profiles to Guance DataKit, with the flags of DataKit's py-spy fork.
    Datakit(datakit::Args),
}

/// "2.7, 3.6 to 3.15": consecutive minor versions of one major version as a range.
fn version_ranges(versions: impl IntoIterator<Item = (u8, u8)>) -> String {
    let mut ranges: Vec<((u8, u8), (u8, u8))> = Vec::new();
    for v in versions {
        match ranges.last_mut() {
            Some((_, last)) if last.0 == v.0 && last.1.checked_add(1) == Some(v.1) => *last = v,
            _ => ranges.push((v, v)),
        }
    }
    let text: Vec<String> = ranges
        .iter()
        .map(|&(first, last)| {
            if first == last {
                format!("{}.{}", first.0, first.1)
            } else {
                format!("{}.{} to {}.{}", first.0, first.1, last.0, last.1)
            }
        })
        .collect();
    text.join(", ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_open_files_limit();
    let result = match cli.command {
        Command::Dump(args) => dump::run(&args).map_err(|e| e.to_string()),
        Command::Record(args) => record::run(&args),
        Command::Top(args) => top::run(&args),
        Command::Completions(args) => {
            completions::run(&args);
            Ok(())
        }
        Command::Push(args) => push::run(&args),
        Command::Datakit(args) => datakit::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pyspy: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit: the sampler keeps two
/// `/proc` files open per thread of a target (a read through an open file costs a third of
/// opening it anew) and keeps at most a quarter of the soft limit open, which at the usual
/// soft limit of 1,024 covers 256 threads.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the rlimit they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::version_ranges;

    #[test]
    fn version_ranges_join_consecutive_minors() {
        assert_eq!(
            version_ranges([(2, 7), (3, 6), (3, 7), (3, 8), (3, 15)]),
            "2.7, 3.6 to 3.8, 3.15"
        );
        assert_eq!(version_ranges([(3, 12)]), "3.12");
        assert_eq!(version_ranges([(2, 7), (3, 0)]), "2.7, 3.0");
        assert_eq!(version_ranges([(3, 254), (3, 255)]), "3.254 to 3.255");
        assert_eq!(version_ranges([]), "");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
