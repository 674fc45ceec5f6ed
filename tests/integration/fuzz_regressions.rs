//! Replays the fuzz inputs kept in the repository through the fuzz targets' own bodies
//! (`fuzz/src/lib.rs`, compiled here without libFuzzer), so a normal `cargo test` catches a
//! regression of any crash the fuzzers found:
//!
//! - `fuzz/regressions/<target>/*`: inputs that once crashed, hung or blew up memory;
//! - `fuzz/seeds/<target>/*`: the seed corpus; the walker seeds, captured from real
//!   interpreters by `cargo xtask capture-corpus`, must also still sample to real stacks.

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod fuzz_bodies;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest a single input may take (the fuzzers' own limit is 5 s under sanitizers).
const PER_INPUT: Duration = Duration::from_secs(2);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
    files.retain(|p| p.is_file() && !p.extension().is_some_and(|e| e == "md"));
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut count = 0;
    for (target, body) in fuzz_bodies::TARGETS {
        for path in inputs(kind, target) {
            let data = std::fs::read(&path).expect("read input");
            let started = Instant::now();
            body(&data);
            let took = started.elapsed();
            assert!(
                took < PER_INPUT,
                "{target} took {took:?} on {}",
                path.display()
            );
            count += 1;
        }
    }
    count
}

#[test]
fn regressions_replay_cleanly() {
    let n = replay("regressions");
    eprintln!("replayed {n} regression inputs");
}

#[test]
fn seeds_replay_cleanly() {
    let n = replay("seeds");
    assert!(n > 0, "no seeds in fuzz/seeds/");
}

/// The walker seeds were captured by an earlier walker: when it starts reading more (a new
/// field, thread names), old seeds miss those bytes and no longer sample completely. They
/// still fuzz fine, so this only warns; `fuzz/capture-seeds.sh` recaptures them.
#[test]
fn walker_seeds_are_real_stacks() {
    let mut stale = Vec::new();
    let mut checked = 0;
    for target in ["walk_frameobject", "walk_iframe_311", "walk_iframe_313"] {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for path in seeds {
            let data = std::fs::read(&path).expect("read seed");
            match fuzz_bodies::sample_image(&data) {
                Ok((threads, frames)) if threads >= 1 && frames >= threads => {}
                other => stale.push(format!("{}: {other:?}", path.display())),
            }
            checked += 1;
        }
    }
    if !stale.is_empty() {
        eprintln!(
            "WARNING: {} of {checked} walker seeds no longer sample to a full stack \
             (the walker reads more than when they were captured); recapture them with \
             fuzz/capture-seeds.sh:\n  {}",
            stale.len(),
            stale.join("\n  ")
        );
    }
}
