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
    files.retain(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"));
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

/// The task seeds (`fuzz/capture-seeds.sh`, from `tests/targets/asyncio_tasks.py` on every
/// interpreter 3.7+) replay to the tasks they were captured with: at least the 23 tasks every
/// version's scenarios make. A reader that reads more than at capture time misses bytes and
/// finds fewer: recapture them then.
#[test]
fn task_seeds_read_real_tasks() {
    let seeds = inputs("seeds", "tasks");
    assert!(seeds.len() >= 9, "task seeds for 3.7-3.15: {seeds:?}");
    for path in seeds {
        let data = std::fs::read(&path).expect("read seed");
        match fuzz_bodies::tasks_in_image(&data) {
            Ok(n) if n >= 23 => {}
            other => panic!(
                "{}: {other:?} tasks; recapture with fuzz/capture-seeds.sh",
                path.display()
            ),
        }
    }
}

/// The free-threaded walker seeds are laid out by `cargo xtask synthetic-corpus` (no
/// free-threaded interpreter runs here): two named threads of three Python frames each, below
/// a shim that is not code and above an entry frame. Deterministic, so they must sample to
/// exactly that; regenerate them with `cargo xtask synthetic-corpus` when the walker reads more.
#[test]
fn free_threaded_seeds_sample_their_stacks() {
    let seeds: Vec<PathBuf> = inputs("seeds", "walk_iframe_313")
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("t-synthetic"))
        .collect();
    let names: Vec<String> = seeds
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(
        names,
        ["3.13t-synthetic", "3.14t-synthetic", "3.15t-synthetic"],
        "run `cargo xtask synthetic-corpus`"
    );
    for path in seeds {
        let data = std::fs::read(&path).expect("read seed");
        assert_eq!(
            fuzz_bodies::sample_image(&data),
            Ok((2, 6)),
            "{}: regenerate with `cargo xtask synthetic-corpus`",
            path.display()
        );
    }
}

/// Memory that counts the bytes read through it.
struct Counting<'a> {
    inner: &'a pyspy_core::memory::MemoryImage,
    read: std::cell::Cell<usize>,
}

impl pyspy_core::memory::Memory for Counting<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), pyspy_core::memory::ReadError> {
        self.read.set(self.read.get() + buf.len());
        self.inner.read(addr, buf)
    }
}

/// A 3.10 image where `threads` thread states all point at one chain of `frames` frames, and
/// frame `j` runs the code object at `code_base + 8 * j` (distinct code objects when
/// `distinct_codes`, else all the same) inside a region where every word points at one string
/// of `str_len` characters: the name, file name and line table of every code object. Each
/// piece is small and bounded; their product is not.
fn amplifying_image(
    threads: u64,
    frames: u64,
    distinct_codes: bool,
    str_len: usize,
) -> (
    pyspy_core::memory::MemoryImage,
    pyspy_core::walk::Interpreter,
) {
    use pyspy_core::memory::MemoryImage;
    let l = *pyspy_core::attach::layout::for_version(3, 10).expect("3.10 layout");
    let (head, interp, tstates, frame_base, code_base, string) = (
        0x1000u64,
        0x2000u64,
        0x10_0000u64,
        0x100_0000u64,
        0x1000_0000u64,
        0x10_0000_0000u64,
    );
    let mut img = MemoryImage::new();
    img.put_u64(head, interp);
    img.add(interp, &[0u8; 256]);
    img.put_u64(interp + u64::from(l.interp_threads_head), tstates);
    for i in 0..threads {
        let t = tstates + i * 0x400;
        img.add(t, &[0u8; 0x400]);
        let next = if i + 1 < threads { t + 0x400 } else { 0 };
        img.put_u64(t + u64::from(l.tstate_next), next);
        img.put_u64(t + u64::from(l.tstate_interp), interp);
        img.put_u64(t + u64::from(l.tstate_frame), frame_base);
        img.put_u64(t + u64::from(l.tstate_thread_id), i + 1);
    }
    for j in 0..frames {
        let f = frame_base + j * 0x100;
        img.add(f, &[0u8; 0x100]);
        // A live frame object: a reference count and the frame type.
        img.put_u64(f, 1);
        img.put_u64(f + u64::from(l.object_type), 0x900);
        let back = if j + 1 < frames { f + 0x100 } else { 0 };
        img.put_u64(f + u64::from(l.frame_back.unwrap()), back);
        let code = code_base + if distinct_codes { 8 * j } else { 0 };
        img.put_u64(f + u64::from(l.frame_code.unwrap()), code);
    }
    let words = (frames + 64) as usize;
    img.add(code_base, &string.to_le_bytes().repeat(words));
    // A compact ASCII str (kind 1, compact, ascii, ready) whose length also serves as the
    // size of a bytes object (the line table) starting at the same address.
    let mut s = vec![0u8; l.unicode_ascii_size as usize + str_len + 64];
    s[l.unicode_length as usize..][..8].copy_from_slice(&(str_len as u64).to_le_bytes());
    let state: u32 = (1 << 2) | (1 << 5) | (1 << 6) | (1 << 7);
    s[l.unicode_state as usize..][..4].copy_from_slice(&state.to_le_bytes());
    for b in &mut s[l.unicode_ascii_size as usize..][..str_len] {
        *b = b'a';
    }
    img.add(string, &s);
    let interp = pyspy_core::walk::Interpreter {
        version: pyspy_core::Version::parse("3.10.0").unwrap(),
        layout: l,
        layout_source: pyspy_core::LayoutSource::Table,
        runtime: None,
        interp_head: head,
        tstate_current: None,
    };
    (img, interp)
}

/// Most bytes one walk may read (`walk::MAX_SAMPLE_BYTES`) plus one read's worth of slack.
const WALK_BUDGET: usize = 64 << 20;

fn walk_amplified(threads: u64, frames: u64, distinct: bool, str_len: usize) {
    let (img, interp) = amplifying_image(threads, frames, distinct, str_len);
    let mem = Counting {
        inner: &img,
        read: std::cell::Cell::new(0),
    };
    let started = Instant::now();
    let result = pyspy_core::walk::Walker::new(&interp.layout).walk(&mem, &interp);
    let took = started.elapsed();
    let read = mem.read.get();
    eprintln!(
        "{threads} threads × {frames} frames (distinct codes: {distinct}, strings of {str_len}): \
         read {} MiB in {took:?}: {}",
        read >> 20,
        match &result {
            Ok(t) => format!("{} threads", t.len()),
            Err(e) => e.to_string(),
        }
    );
    assert!(
        read <= WALK_BUDGET + (1 << 20),
        "one walk read {read} bytes"
    );
}

/// Found by reasoning about the walk_frameobject target's inputs: 3,000 code objects with
/// 60,000-character names, file names and line tables made one walk read (and cache) 540 MB.
#[test]
fn many_code_objects_with_huge_strings_stay_within_the_budget() {
    walk_amplified(1, 3000, true, 60_000);
}

/// 2,000 threads sharing a 2,000-frame chain: 4 million frame visits in one walk.
#[test]
fn threads_times_frames_stays_within_the_budget() {
    walk_amplified(2000, 2000, false, 16);
}

/// The `values` seeds are real object graphs (`cargo xtask capture-corpus` formatted the
/// `__main__` globals of `tests/targets/fuzz_seed.py`, whose main thread handles a
/// `ValueError`): replayed, they must format to those values again.
#[test]
fn values_seeds_are_real_objects() {
    let seeds = inputs("seeds", "values");
    assert!(!seeds.is_empty(), "no seeds for values");
    for path in seeds {
        let data = std::fs::read(&path).expect("read seed");
        let (repr, exception) =
            fuzz_bodies::format_image(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for want in [
            "'SEED_VALUES': [None, True, False, 7, -126765060022",
            "<Worker object at 0x",
        ] {
            assert!(
                repr.contains(want),
                "{}: {want:?} not in {repr}",
                path.display()
            );
        }
        let exception = exception.unwrap_or_default();
        assert!(
            exception.ends_with("ValueError: ('seed', 42)"),
            "{}: exception {exception:?}",
            path.display()
        );
    }
}
