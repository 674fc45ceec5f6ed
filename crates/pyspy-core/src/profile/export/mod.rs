//! Writing profiles in the formats other tools read.
//!
//! | module | format | read by |
//! | --- | --- | --- |
//! | [`collapsed`] | folded stacks, `a (file:line);b (file:line) 12` per line | flamegraph.pl, inferno, Guance DataKit, speedscope |
//! | [`speedscope`] | speedscope JSON | speedscope.app |
//! | [`pprof`] | gzip'd `perftools.profiles.Profile` protobuf | `go tool pprof`, Grafana Pyroscope, Guance DataKit |
//! | [`chrometrace`] | Chrome trace event JSON (a timeline, not an aggregate) | Perfetto UI, `chrome://tracing` |
//! | [`pstats`] | cProfile's `marshal` file | `python -m pstats`, snakeviz, flameprof |
//!
//! All but [`chrometrace`] write a [`Profile`](crate::profile::Profile); the timeline keeps
//! time order, so it is built from samples directly.
//!
//! Payloads for continuous-profiling backends (request bodies; sending them is the caller's
//! business, this crate has no network code), described by a [`ProfileMeta`]:
//!
//! | module | payload | endpoint |
//! | --- | --- | --- |
//! | [`pyroscope`] | `push.v1.PushRequest` with gzip'd pprof | Grafana Pyroscope, `POST /push.v1.PusherService/Push` |
//! | [`datakit`] | multipart: `event.json` and gzip'd pprof | Guance DataKit, `POST /profiling/v1/input` |
//! | [`otlp`] | OTLP `ExportProfilesServiceRequest` (profiles v1development) | an OpenTelemetry collector, `POST /v1development/profiles` |

pub mod chrometrace;
pub mod collapsed;
pub mod datakit;
mod meta;
pub mod otlp;
pub mod pprof;
mod proto;
pub mod pstats;
pub mod pyroscope;
pub mod speedscope;

pub use meta::ProfileMeta;

use crate::profile::{FrameKey, ThreadKey};
use crate::sample::sampler::ProcessDetails;

/// `name (file:line)`, or `name (file)` in a per-function profile: py-spy's frame label.
pub fn frame_label(frame: &FrameKey) -> String {
    if frame.line > 0 {
        format!("{} ({}:{})", frame.name, frame.filename, frame.line)
    } else {
        format!("{} ({})", frame.name, frame.filename)
    }
}

/// `thread "name" (0x7f.., tid 1234)`: a pseudo-frame or profile name for a thread.
pub fn thread_label(thread: &ThreadKey) -> String {
    let mut s = String::from("thread ");
    if let Some(name) = &thread.name {
        s.push_str(&format!("\"{name}\" "));
    }
    match thread.native_thread_id {
        Some(tid) => s.push_str(&format!("({:#x}, tid {tid})", thread.thread_id)),
        None => s.push_str(&format!("({:#x})", thread.thread_id)),
    }
    s
}

/// `process 1234: "python app.py"`: a pseudo-frame or profile name for a process.
pub fn process_label(process: &ProcessDetails) -> String {
    if process.command_line.is_empty() {
        format!("process {}", process.pid)
    } else {
        format!("process {}: \"{}\"", process.pid, process.command_line)
    }
}

/// `data` gzip'd (default level).
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("writing to a Vec");
    gz.finish().expect("writing to a Vec")
}

/// Appends `s` as a JSON string literal (quotes included).
pub(crate) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn labels() {
        let f = FrameKey {
            name: "C.f".into(),
            filename: "/app.py".into(),
            line: 3,
        };
        assert_eq!(frame_label(&f), "C.f (/app.py:3)");
        let t = ThreadKey {
            pid: 1,
            thread_id: 0x10,
            native_thread_id: Some(5),
            name: Some("main".into()),
        };
        assert_eq!(thread_label(&t), "thread \"main\" (0x10, tid 5)");
    }
}
