//! Developer tasks for pyspy. Run through the cargo alias: `cargo xtask <task>`.
//!
//! - `layouts`: regenerate `crates/pyspy-core/src/layout/generated/` with bindgen over every
//!   supported interpreter's own headers (pyenv installs and a Debian sid chroot at
//!   `$PYSPY_SID_ROOT`, default `/var/cache/pyspy/sid`). Needs libclang.
//! - `layouts --check`: regenerate into a scratch directory and fail if the committed files
//!   differ.
//! - `header [--check]`: regenerate `include/pyspy.h` (cbindgen) / fail if it differs.
//! - `protos [--check]`: regenerate the prost message types of the payload encoders from
//!   `crates/pyspy-core/proto/*.proto` (protox, no protoc) / fail if they differ.
//! - `install --prefix DIR [--profile P]`: build libpyspy and install lib, header and pyspy.pc.
//! - `wheel [--out DIR]`: the `pyspy` command as a Python wheel (`py3-none-manylinux_X_Y_x86_64`,
//!   the tag derived from the glibc symbol versions the release binary needs; see `wheel.rs`).
//! - `capture-corpus --pid PID [--out DIR] [--label NAME] [--tasks]`: fuzz seed inputs from the memory a
//!   real sample of a live Python process reads (see `corpus.rs`).
//! - `synthetic-corpus [--out DIR]`: fuzz seed inputs for the free-threaded builds, from memory
//!   laid out from their generated layouts (see `synthetic.rs`).

mod corpus;
mod header;
mod install;
mod layouts;
mod opcodes;
mod probe;
mod protos;
mod synthetic;
mod table;
mod wheel;
mod zip;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask layouts [--check] | header [--check] | protos [--check] | install --prefix DIR [--profile P] | wheel [--out DIR] | capture-corpus --pid PID [--out DIR] [--label NAME] [--tasks] | synthetic-corpus [--out DIR]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["layouts"] => layouts::run(false),
        ["layouts", "--check"] => layouts::run(true),
        ["header"] => header::run(false),
        ["header", "--check"] => header::run(true),
        ["protos"] => protos::run(false),
        ["protos", "--check"] => protos::run(true),
        ["install", rest @ ..] => install::main(rest),
        ["wheel", rest @ ..] => wheel::main(rest),
        ["capture-corpus", rest @ ..] => corpus::main(rest),
        ["synthetic-corpus", rest @ ..] => synthetic::main(rest),
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
