//! `cargo xtask synthetic-corpus [--out DIR]`: fuzz seeds for the builds no machine here runs
//! (free-threaded 3.13t–3.15t), and for a version newer than every table, from memory laid out
//! by `pyspy_core::walk::synthetic` from the generated layouts.
//!
//! Per free-threaded layout: one sample of the synthetic interpreter through a recording
//! memory, with the threads' names, as a walker input (`DIR/walk_iframe_313/3.Xt-synthetic`);
//! its code objects' name and file strings (`DIR/strings/`); its `_Py_DebugOffsets` block
//! (`DIR/debug_offsets/`). Plus the newest format's block claiming the next version, for both
//! builds. Deterministic: the same layouts give the same bytes.

use crate::corpus::{walk_target, write};
use pyspy_core::attach::layout::{debug_offsets, generated, Layout};
use pyspy_core::memory::{Anchors, Memory, MemoryExt, Recorder};
use pyspy_core::walk::names::{NameKey, ThreadNames};
use pyspy_core::walk::strings::read_str;
use pyspy_core::walk::synthetic::{build, FrameSpec, Owner, Spec, ThreadSpec};
use pyspy_core::walk::Walker;
use pyspy_core::Version;
use std::error::Error;
use std::path::{Path, PathBuf};

pub fn main(args: &[&str]) -> Result<(), Box<dyn Error>> {
    let mut out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match *arg {
            "--out" => out = PathBuf::from(it.next().ok_or("--out needs a value")?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let mut written = Vec::new();
    for layout in generated::ALL.iter().filter(|l| l.free_threaded) {
        written.extend(seeds_of(layout, &out)?);
    }
    // The newest format's block claiming the next minor version, both builds.
    if let Some(f) = generated::DEBUG_OFFSETS.iter().max_by_key(|f| f.version) {
        let next = f.version.1 + 1;
        for ft in [false, true] {
            let hex = (3 << 24) | (u64::from(next) << 16) | 0xf0;
            let block = debug_offsets::synthetic_block(f, hex, ft);
            let t = if ft { "t" } else { "" };
            let name = format!("3.{next}{t}-synthetic-newer");
            written.push(write(&out, "debug_offsets", &name, &block)?);
        }
    }
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Two threads with names, a generator frame, a shim that is not code, thread-local bytecode
/// (3.14t+), a GIL held while enabled.
fn spec(layout: &Layout) -> Spec {
    let tlbc = u32::from(layout.code_tlbc.is_some());
    let frames = |name: &str| {
        vec![
            FrameSpec {
                tlbc_index: tlbc,
                ..FrameSpec::new(name, "/srv/app/wörker.py", 40, 47)
            },
            FrameSpec {
                owner: Owner::Generator,
                ..FrameSpec::new("produce", "/srv/app/jobs.py", 5, 9)
            },
            FrameSpec {
                not_code: true,
                ..FrameSpec::new("<shim>", "<shim>", 0, 1)
            },
            FrameSpec::new("<module>", "/srv/app/main.py", 1, 12),
            FrameSpec::entry(),
        ]
    };
    Spec {
        version: Version {
            major: layout.version.0,
            minor: layout.version.1,
            patch: 1,
            release_level: 0xF,
            serial: 0,
        },
        threads: vec![
            ThreadSpec {
                ident: 0x7f3a_5c00_0700,
                native_id: 31337,
                name: Some("MainThread".into()),
                frames: frames("handle"),
            },
            ThreadSpec {
                ident: 0x7f3a_5b00_0700,
                native_id: 31338,
                name: Some("worker-1".into()),
                frames: frames("crunch"),
            },
        ],
        gil_holder: Some(0),
        gil_enabled: true,
    }
}

fn seeds_of(layout: &Layout, out: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let s = build(layout, &spec(layout));
    let label = format!("{}.{}t-synthetic", layout.version.0, layout.version.1);
    let anchors = |interp_head| Anchors {
        version: Anchors::version_of(layout),
        interp_head,
        runtime: s.interp.runtime.unwrap_or(0),
        tstate_current: 0,
    };
    let mut written = Vec::new();

    let rec = Recorder::new(&s.image);
    let walked = Walker::new(layout).walk(&rec, &s.interp)?;
    let keys = NameKey::for_walk(&walked);
    let modules = |i: u64| Ok(rec.read_ptr_at(i, layout.interp_modules)?);
    let named = ThreadNames::new(layout).names(&rec, &keys, |_| false, modules);
    if named.iter().flatten().count() != walked.len() {
        return Err(format!("{label}: the synthetic threads lost their names").into());
    }
    let image = rec.image(anchors(s.interp.interp_head)).encode();
    written.push(write(out, walk_target(layout.version), &label, &image)?);

    // Strings: the innermost code object's name and file name of the first thread.
    let frame = s
        .image
        .read_u64(s.tstates[0] + u64::from(layout.tstate_frame))?;
    let code = s
        .image
        .read_u64(frame + u64::from(layout.iframe_executable.unwrap_or(0)))?
        & !7;
    for (what, off) in [("name", layout.code_name), ("file", layout.code_filename)] {
        let obj = s.image.read_u64(code + u64::from(off))?;
        let rec = Recorder::new(&s.image);
        read_str(&rec, layout, obj)?;
        let bytes = rec.image(anchors(obj)).encode();
        written.push(write(out, "strings", &format!("{label}-{what}"), &bytes)?);
    }

    let runtime = s.interp.runtime.ok_or("no runtime")?;
    let mut block = vec![0u8; debug_offsets::BLOCK_LEN];
    s.image.read(runtime, &mut block)?;
    written.push(write(out, "debug_offsets", &label, &block)?);
    Ok(written)
}
