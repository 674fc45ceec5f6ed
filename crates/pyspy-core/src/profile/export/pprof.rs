//! pprof: a gzip'd `perftools.profiles.Profile` protobuf
//! (<https://github.com/google/pprof/blob/main/proto/profile.proto>), read by `go tool pprof`,
//! Grafana Pyroscope and Guance DataKit.
//!
//! What is written:
//! - `sample_type`: `samples/count` and `cpu/nanoseconds` (`wall/nanoseconds` when idle threads
//!   are counted, since then time off CPU is in it too); `period_type` is the second, `period`
//!   the mean sampling interval. The nanoseconds are [`Stack::time`](crate::Stack::time): in a
//!   CPU profile the CPU time the kernel measured per thread when the samples carry it, else
//!   count × period. A `comment` says which. `default_sample_type` is the time one.
//! - One `Function` per (name, file) and one `Location` per (function, line), all under one
//!   `Mapping` flagged as symbolised (`has_functions`, `has_filenames`, `has_line_numbers`) so
//!   no tool tries to symbolise addresses. Ids start at 1; `string_table[0]` is `""`.
//! - One `Sample` per distinct stack, leaf first (pprof's order), with labels `pid`,
//!   `thread_id` (the OS thread id where known) and `thread_name` when the profile keeps
//!   processes or threads apart.
//! - `time_nanos` (first sample, Unix epoch) and `duration_nanos`.
//!
//! The message types are generated from `proto/profile.proto` by `cargo xtask protos`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::UNIX_EPOCH;

use prost::Message as _;

use super::proto::pprof as pb;
use crate::profile::Profile;

/// Writes the profile as gzip'd pprof.
pub fn write(profile: &Profile, out: &mut impl Write) -> io::Result<()> {
    out.write_all(&to_bytes(profile))
}

/// The profile as gzip'd pprof.
pub fn to_bytes(profile: &Profile) -> Vec<u8> {
    super::gzip(&encode(profile))
}

/// The profile as an uncompressed `perftools.profiles.Profile` message.
pub fn encode(profile: &Profile) -> Vec<u8> {
    build(profile).encode_to_vec()
}

/// What a profile's time values are: `("cpu" | "wall", how they were obtained)`.
pub(crate) fn time_kind(profile: &Profile) -> (&'static str, &'static str) {
    if profile.options().idle {
        (
            "wall",
            "wall time: samples of every thread x the sampling period",
        )
    } else if profile.cpu_measured() {
        (
            "cpu",
            "cpu time: each thread's CPU time as the kernel measured it, shared among its samples",
        )
    } else {
        (
            "cpu",
            "cpu time estimated: samples of running threads x the sampling period (CPU times not read)",
        )
    }
}

/// The string table: index 0 is "".
pub(crate) struct Strings {
    pub(crate) list: Vec<String>,
    index: HashMap<String, i64>,
}

impl Default for Strings {
    fn default() -> Self {
        let mut index = HashMap::new();
        index.insert(String::new(), 0);
        Strings {
            list: vec![String::new()],
            index,
        }
    }
}

impl Strings {
    pub(crate) fn id(&mut self, s: &str) -> i64 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = self.list.len() as i64;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

fn build(profile: &Profile) -> pb::Profile {
    let mut strings = Strings::default();
    let (kind, comment) = time_kind(profile);
    let period = i64::try_from(profile.options().period.as_nanos()).unwrap_or(i64::MAX);
    let mut out = pb::Profile {
        sample_type: vec![
            pb::ValueType {
                r#type: strings.id("samples"),
                unit: strings.id("count"),
            },
            pb::ValueType {
                r#type: strings.id(kind),
                unit: strings.id("nanoseconds"),
            },
        ],
        mapping: vec![pb::Mapping {
            id: 1,
            filename: strings.id("python"),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            ..Default::default()
        }],
        ..Default::default()
    };

    // One function per (name, file), one location per (function, line).
    let mut functions: HashMap<(&str, &str), u64> = HashMap::new();
    let mut location_ids: HashMap<(u64, i32), u64> = HashMap::new();
    let mut locations: Vec<u64> = Vec::with_capacity(profile.frames().len());
    for f in profile.frames() {
        let next = functions.len() as u64 + 1;
        let fid = *functions.entry((&f.name, &f.filename)).or_insert_with(|| {
            let name = strings.id(&f.name);
            out.function.push(pb::Function {
                id: next,
                name,
                system_name: name,
                filename: strings.id(&f.filename),
                start_line: 0,
            });
            next
        });
        let next = location_ids.len() as u64 + 1;
        let lid = *location_ids.entry((fid, f.line)).or_insert_with(|| {
            out.location.push(pb::Location {
                id: next,
                mapping_id: 1,
                line: vec![pb::Line {
                    function_id: fid,
                    line: i64::from(f.line),
                    column: 0,
                }],
                ..Default::default()
            });
            next
        });
        locations.push(lid);
    }

    let keys = (
        strings.id("pid"),
        strings.id("thread_id"),
        strings.id("thread_name"),
    );
    for stack in profile.stacks() {
        let mut labels = Vec::new();
        if let Some(p) = stack.process {
            labels.push(pb::Label {
                key: keys.0,
                num: i64::from(p.pid),
                ..Default::default()
            });
        }
        if let Some(t) = stack.thread {
            labels.push(pb::Label {
                key: keys.1,
                num: t.native_thread_id.unwrap_or(t.thread_id) as i64,
                ..Default::default()
            });
            if let Some(name) = &t.name {
                labels.push(pb::Label {
                    key: keys.2,
                    str: strings.id(name),
                    ..Default::default()
                });
            }
        }
        out.sample.push(pb::Sample {
            location_id: stack
                .frames
                .iter()
                .rev()
                .map(|f| locations[*f as usize])
                .collect(),
            value: vec![
                i64::try_from(stack.count).unwrap_or(i64::MAX),
                i64::try_from(stack.time.as_nanos()).unwrap_or(i64::MAX),
            ],
            label: labels,
        });
    }

    if let Some(start) = profile.start_time() {
        let t = start.duration_since(UNIX_EPOCH).unwrap_or_default();
        out.time_nanos = i64::try_from(t.as_nanos()).unwrap_or(i64::MAX);
    }
    out.duration_nanos = i64::try_from(profile.duration().as_nanos()).unwrap_or(i64::MAX);
    out.period_type = Some(pb::ValueType {
        r#type: strings.id(kind),
        unit: strings.id("nanoseconds"),
    });
    out.period = period;
    out.comment = vec![strings.id(comment)];
    out.default_sample_type = strings.id(kind);
    out.string_table = strings.list;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::small_profile;
    use crate::profile::ProfileOptions;
    use std::io::Read;

    #[test]
    fn gzip_round_trip_and_structure() {
        let profile = small_profile(ProfileOptions::default().threads(true));
        let gz = to_bytes(&profile);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw, encode(&profile));
        let p = pb::Profile::decode(&raw[..]).unwrap();
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(p.string_table[0], "");
        let types: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|t| (s(t.r#type), s(t.unit)))
            .collect();
        assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
        assert_eq!(s(p.default_sample_type), "cpu");
        assert!(
            s(p.comment[0]).starts_with("cpu time estimated"),
            "no CPU times in the samples"
        );
        assert_eq!(p.sample.len(), 3, "one sample per distinct (thread, stack)");
        assert_eq!(p.function.len(), 4, "functions: main, work, hot, other");
        assert_eq!(p.location.len(), 6, "one location per (function, line)");
        assert_eq!(p.mapping.len(), 1);
        let hot = p.sample.iter().find(|x| x.location_id.len() == 3).unwrap();
        assert_eq!(hot.value, [3, 30_000_000], "3 samples x 10 ms");
        assert_eq!(hot.location_id, [3, 2, 1], "leaf first, ids from 1");
        let leaf = &p.location[2];
        let f = &p.function[(leaf.line[0].function_id - 1) as usize];
        assert_eq!((s(f.name), leaf.line[0].line), ("hot", 3));
        let names: Vec<&str> = hot
            .label
            .iter()
            .filter(|l| l.str != 0)
            .map(|l| s(l.str))
            .collect();
        assert_eq!(names, ["MainThread"]);
    }

    #[test]
    fn wall_profiles_say_so() {
        let p =
            pb::Profile::decode(&encode(&small_profile(ProfileOptions::default().idle(true)))[..])
                .unwrap();
        assert_eq!(p.string_table[p.sample_type[1].r#type as usize], "wall");
        assert_eq!(p.period, 10_000_000);
    }
}
