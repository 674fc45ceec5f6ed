//! pprof: a gzip'd `perftools.profiles.Profile` protobuf
//! (<https://github.com/google/pprof/blob/main/proto/profile.proto>), read by `go tool pprof`,
//! Grafana Pyroscope and Guance DataKit.
//!
//! What is written:
//! - `sample_type`: `samples/count` and `cpu/nanoseconds` (`wall/nanoseconds` when idle threads
//!   are counted, since then time off CPU is in it too); `period_type` is the second, `period`
//!   the mean sampling interval, so nanoseconds = count × period. `default_sample_type` is the
//!   time one.
//! - One `Function` per (name, file) and one `Location` per (function, line), all under one
//!   `Mapping` flagged as symbolised (`has_functions`, `has_filenames`, `has_line_numbers`) so
//!   no tool tries to symbolise addresses. Ids start at 1; `string_table[0]` is `""`.
//! - One `Sample` per distinct stack, leaf first (pprof's order), with labels `pid`,
//!   `thread_id` (the OS thread id where known) and `thread_name` when the profile keeps
//!   processes or threads apart.
//! - `time_nanos` (first sample, Unix epoch) and `duration_nanos`.
//!
//! The protobuf encoding is written here (a few varint and length-delimited helpers): the
//! message is small and fixed, and a code generator would be a heavier dependency than this.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::UNIX_EPOCH;

use crate::profile::{FrameId, Profile};

/// Writes the profile as gzip'd pprof.
pub fn write(profile: &Profile, out: &mut impl Write) -> io::Result<()> {
    out.write_all(&to_bytes(profile))
}

/// The profile as gzip'd pprof.
pub fn to_bytes(profile: &Profile) -> Vec<u8> {
    let raw = encode(profile);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).expect("writing to a Vec");
    gz.finish().expect("writing to a Vec")
}

/// The profile as an uncompressed `perftools.profiles.Profile` message.
pub fn encode(profile: &Profile) -> Vec<u8> {
    let mut strings = Strings::default();
    let mut msg = Message::default();
    let time_kind = if profile.options().idle {
        "wall"
    } else {
        "cpu"
    };
    let period = u64::try_from(profile.options().period.as_nanos()).unwrap_or(u64::MAX);

    // 1: sample_type
    for (ty, unit) in [("samples", "count"), (time_kind, "nanoseconds")] {
        msg.message(1, |m| {
            m.int(1, strings.id(ty));
            m.int(2, strings.id(unit));
        });
    }

    // 5: function, 4: location (one per (function, line)).
    let mut functions: HashMap<(&str, &str), u64> = HashMap::new();
    let mut locations: Vec<u64> = Vec::with_capacity(profile.frames().len());
    let mut location_ids: HashMap<(u64, i32), u64> = HashMap::new();
    let mut function_msgs = Message::default();
    let mut location_msgs = Message::default();
    for f in profile.frames() {
        let next = functions.len() as u64 + 1;
        let fid = *functions.entry((&f.name, &f.filename)).or_insert_with(|| {
            function_msgs.message(5, |m| {
                m.uint(1, next);
                m.int(2, strings.id(&f.name));
                m.int(3, strings.id(&f.name));
                m.int(4, strings.id(&f.filename));
            });
            next
        });
        let next = location_ids.len() as u64 + 1;
        let lid = *location_ids.entry((fid, f.line)).or_insert_with(|| {
            location_msgs.message(4, |m| {
                m.uint(1, next);
                m.uint(2, 1); // mapping_id
                m.message(4, |line| {
                    line.uint(1, fid);
                    line.int(2, i64::from(f.line));
                });
            });
            next
        });
        locations.push(lid);
    }

    // 2: sample
    let label_keys = (
        strings.id("pid"),
        strings.id("thread_id"),
        strings.id("thread_name"),
    );
    for stack in profile.stacks() {
        msg.message(2, |m| {
            let ids: Vec<u64> = stack
                .frames
                .iter()
                .rev()
                .map(|f: &FrameId| locations[*f as usize])
                .collect();
            m.packed(1, &ids);
            let count = stack.count;
            m.packed(2, &[count, count.saturating_mul(period)]);
            if let Some(p) = stack.process {
                m.message(3, |l| {
                    l.int(1, label_keys.0);
                    l.int(3, i64::from(p.pid));
                });
            }
            if let Some(t) = stack.thread {
                m.message(3, |l| {
                    l.int(1, label_keys.1);
                    l.int(3, t.native_thread_id.unwrap_or(t.thread_id) as i64);
                });
                if let Some(name) = &t.name {
                    m.message(3, |l| {
                        l.int(1, label_keys.2);
                        l.int(2, strings.id(name));
                    });
                }
            }
        });
    }

    // 3: mapping
    msg.message(3, |m| {
        m.uint(1, 1);
        m.int(5, strings.id("python"));
        m.uint(7, 1); // has_functions
        m.uint(8, 1); // has_filenames
        m.uint(9, 1); // has_line_numbers
    });
    msg.buf.extend_from_slice(&location_msgs.buf);
    msg.buf.extend_from_slice(&function_msgs.buf);

    // 9: time_nanos, 10: duration_nanos, 11: period_type, 12: period, 14: default_sample_type
    if let Some(start) = profile.start_time() {
        let t = start.duration_since(UNIX_EPOCH).unwrap_or_default();
        msg.int(9, i64::try_from(t.as_nanos()).unwrap_or(i64::MAX));
    }
    msg.int(
        10,
        i64::try_from(profile.duration().as_nanos()).unwrap_or(i64::MAX),
    );
    msg.message(11, |m| {
        m.int(1, strings.id(time_kind));
        m.int(2, strings.id("nanoseconds"));
    });
    msg.int(12, period as i64);
    msg.int(14, strings.id(time_kind));

    // 6: string_table (index 0 is "", written even though it is empty).
    for s in &strings.list {
        msg.bytes(6, s.as_bytes());
    }
    msg.buf
}

/// The string table: index 0 is "".
struct Strings {
    list: Vec<String>,
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
    fn id(&mut self, s: &str) -> i64 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = self.list.len() as i64;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// A protobuf message being written: fields appended in any order.
#[derive(Default)]
struct Message {
    buf: Vec<u8>,
}

const VARINT: u64 = 0;
const LEN: u64 = 2;

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }

    /// A `uint64`/`bool` field; zero (the default) is left out, as proto3 does.
    fn uint(&mut self, field: u64, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    /// An `int64` field (negative values as ten-byte two's complement varints).
    fn int(&mut self, field: u64, v: i64) {
        self.uint(field, v as u64);
    }

    fn bytes(&mut self, field: u64, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    fn message(&mut self, field: u64, build: impl FnOnce(&mut Message)) {
        let mut m = Message::default();
        build(&mut m);
        self.bytes(field, &m.buf);
    }

    /// A packed repeated varint field.
    fn packed(&mut self, field: u64, values: &[u64]) {
        let mut m = Message::default();
        for v in values {
            m.varint(*v);
        }
        self.bytes(field, &m.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::small_profile;
    use crate::profile::ProfileOptions;
    use std::io::Read;

    #[test]
    fn varints() {
        let mut m = Message::default();
        m.varint(1);
        m.varint(300);
        m.int(1, -1);
        assert_eq!(
            m.buf,
            [1, 0xac, 0x02, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    /// Top-level fields of a message: (field number, varint value or bytes).
    fn fields(mut b: &[u8]) -> Vec<(u64, Result<u64, Vec<u8>>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte < 0x80 {
                    return v;
                }
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            match key & 7 {
                0 => out.push((key >> 3, Ok(varint(&mut b)))),
                2 => {
                    let n = varint(&mut b) as usize;
                    out.push((key >> 3, Err(b[..n].to_vec())));
                    b = &b[n..];
                }
                w => panic!("unexpected wire type {w}"),
            }
        }
        out
    }

    #[test]
    fn gzip_round_trip_and_structure() {
        let profile = small_profile(ProfileOptions::default().threads(true));
        let gz = to_bytes(&profile);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw, encode(&profile));
        let top = fields(&raw);
        let strings: Vec<String> = top
            .iter()
            .filter(|(f, _)| *f == 6)
            .map(|(_, v)| String::from_utf8(v.clone().unwrap_err()).unwrap())
            .collect();
        assert_eq!(strings[0], "");
        for s in [
            "samples",
            "count",
            "cpu",
            "nanoseconds",
            "hot",
            "app.py",
            "worker",
        ] {
            assert!(strings.iter().any(|x| x == s), "{s} missing: {strings:?}");
        }
        let count = |n| top.iter().filter(|(f, _)| *f == n).count();
        assert_eq!(count(1), 2, "two sample types");
        assert_eq!(count(2), 3, "one sample per distinct (thread, stack)");
        assert_eq!(count(5), 4, "functions: main, work, hot, other");
        assert_eq!(count(4), 6, "one location per (function, line)");
        assert_eq!(count(3), 1, "one mapping");
        // The hot stack: three locations, leaf first, values [3, 3 × 10 ms].
        let hot = top
            .iter()
            .filter(|(f, _)| *f == 2)
            .map(|(_, v)| fields(v.as_ref().unwrap_err()))
            .find(|s| {
                s.iter()
                    .any(|(f, v)| *f == 1 && v.as_ref().unwrap_err().len() == 3)
            })
            .expect("the three-frame stack");
        let values = hot.iter().find(|(f, _)| *f == 2).unwrap().1.clone();
        assert_eq!(values.unwrap_err(), [3, 0x80, 0x87, 0xa7, 0x0e]); // 3, 30_000_000
        let ids = hot.iter().find(|(f, _)| *f == 1).unwrap().1.clone();
        assert_eq!(ids.unwrap_err(), [3, 2, 1], "leaf first, ids from 1");
    }
}
