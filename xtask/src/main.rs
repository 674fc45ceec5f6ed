//! Developer tasks for pyspy. Run through the cargo alias: `cargo xtask <task>`.
//!
//! - `layouts`: regenerate `crates/pyspy-core/src/layout/generated/` with bindgen over every
//!   supported interpreter's own headers (pyenv installs and a Debian sid chroot at
//!   `$PYSPY_SID_ROOT`, default `/var/cache/pyspy/sid`). Needs libclang.
//! - `layouts --check`: regenerate into a scratch directory and fail if the committed files
//!   differ.

mod layouts;
mod probe;
mod table;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask layouts [--check]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["layouts"] => layouts::run(false),
        ["layouts", "--check"] => layouts::run(true),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
