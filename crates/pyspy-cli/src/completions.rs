//! `pyspy completions SHELL`: the shell completion script clap generates from the command
//! line's own definition (`clap_complete`), so it always matches the options this binary has.

use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args)]
pub struct Args {
    /// The shell to write the script for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the completion script for `args.shell` to stdout.
pub fn run(args: &Args) {
    let mut command = crate::Cli::command();
    let mut script = Vec::new();
    // Generated into memory first: clap_complete panics on a failed write, and a closed
    // stdout (`pyspy completions bash | head`) should end the output quietly instead.
    clap_complete::generate(args.shell, &mut command, "pyspy", &mut script);
    crate::output::write_stdout(&String::from_utf8_lossy(&script));
}
