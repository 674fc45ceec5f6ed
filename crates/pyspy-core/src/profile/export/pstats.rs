//! pstats: the file `cProfile` writes (`marshal` of a dict), so `python -m pstats`,
//! `pstats.Stats`, snakeviz and flameprof read a sampled profile.
//!
//! cProfile's shape, built from samples: each function `(filename, line, name)` maps to
//! `(primitive calls, calls, own time, total time, callers)`, and `callers` maps each caller
//! to the same four numbers for that edge. From samples:
//! - "calls" are samples: `calls` counts every appearance of the function on a sampled stack
//!   (a recursive function twice per sample), primitive calls once per sample (in a CPU
//!   profile, a sample in which the thread was running, or that got CPU time its thread used
//!   since the one before);
//! - own time is the [`Stack::time`](crate::Stack::time) of stacks whose innermost frame is
//!   the function, total time that of stacks it is anywhere on (once per stack);
//! - the line is the lowest line sampled in the function (cProfile has the `def` line, which a
//!   sample does not show); name is `co_qualname` where the version has it, else `co_name`.
//!
//! The file is written in `marshal` version 2 (what Python 2.7 and every 3.x read): dicts,
//! tuples, 32-bit ints, binary floats and UTF-8 strings (type `u`, `str` in 3.x, `unicode`
//! in 2.7).

use std::collections::HashMap;
use std::io::{self, Write};

use crate::profile::Profile;

/// Writes the profile as a pstats (marshal) file.
pub fn write(profile: &Profile, out: &mut impl Write) -> io::Result<()> {
    out.write_all(&to_bytes(profile))
}

/// Per-function (or per-edge) totals: primitive calls, calls, own seconds, total seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    primitive: u64,
    calls: u64,
    own: f64,
    total: f64,
}

/// The profile as a pstats file.
pub fn to_bytes(profile: &Profile) -> Vec<u8> {
    // Functions: (file, name) → index, with the lowest line sampled.
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut funcs: Vec<((&str, &str), i32)> = Vec::new();
    let frame_func: Vec<usize> = profile
        .frames()
        .iter()
        .map(|f| {
            let key = (&*f.filename, &*f.name);
            let i = *index.entry(key).or_insert_with(|| {
                funcs.push((key, f.line));
                funcs.len() - 1
            });
            let line = &mut funcs[i].1;
            if f.line > 0 && (*line <= 0 || f.line < *line) {
                *line = f.line;
            }
            i
        })
        .collect();

    let mut totals = vec![Totals::default(); funcs.len()];
    let mut callers: Vec<HashMap<usize, Totals>> = vec![HashMap::new(); funcs.len()];
    let mut seen_funcs = Vec::new();
    let mut seen_edges = Vec::new();
    for stack in profile.stacks() {
        let count = stack.hits;
        let secs = stack.time.as_secs_f64();
        let chain: Vec<usize> = stack
            .frames
            .iter()
            .map(|f| frame_func[*f as usize])
            .collect();
        seen_funcs.clear();
        seen_edges.clear();
        for (pos, &f) in chain.iter().enumerate() {
            let leaf = pos + 1 == chain.len();
            let t = &mut totals[f];
            t.calls += count;
            if leaf {
                t.own += secs;
            }
            if !seen_funcs.contains(&f) {
                seen_funcs.push(f);
                t.primitive += count;
                t.total += secs;
            }
            if pos > 0 {
                let caller = chain[pos - 1];
                let e = callers[f].entry(caller).or_default();
                e.calls += count;
                if leaf {
                    e.own += secs;
                }
                if !seen_edges.contains(&(caller, f)) {
                    seen_edges.push((caller, f));
                    e.primitive += count;
                    e.total += secs;
                }
            }
        }
    }

    let mut m = Marshal::default();
    let live: Vec<usize> = (0..funcs.len()).filter(|i| totals[*i].calls > 0).collect();
    m.dict_start();
    for &i in &live {
        m.func_key(funcs[i]);
        m.tuple(5);
        m.totals_fields(&totals[i]);
        let mut edge: Vec<(&usize, &Totals)> = callers[i].iter().collect();
        edge.sort_by_key(|(c, _)| **c);
        m.dict_start();
        for (caller, t) in edge {
            m.func_key(funcs[*caller]);
            m.tuple(4);
            m.totals_fields(t);
        }
        m.dict_end();
    }
    m.dict_end();
    m.out
}

/// A `marshal` (version 2) writer.
#[derive(Default)]
struct Marshal {
    out: Vec<u8>,
}

impl Marshal {
    fn dict_start(&mut self) {
        self.out.push(b'{');
    }
    fn dict_end(&mut self) {
        self.out.push(b'0');
    }
    fn tuple(&mut self, n: u32) {
        self.out.push(b'(');
        self.out.extend_from_slice(&n.to_le_bytes());
    }
    fn int(&mut self, v: u64) {
        self.out.push(b'i');
        let v = i32::try_from(v).unwrap_or(i32::MAX);
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn float(&mut self, v: f64) {
        self.out.push(b'g');
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.out.push(b'u');
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(&s.as_bytes()[..len as usize]);
    }
    /// `(filename, line, name)`.
    fn func_key(&mut self, ((file, name), line): ((&str, &str), i32)) {
        self.tuple(3);
        self.str(file);
        self.int(u64::try_from(line).unwrap_or(0));
        self.str(name);
    }
    fn totals_fields(&mut self, t: &Totals) {
        self.int(t.primitive);
        self.int(t.calls);
        self.float(t.own);
        self.float(t.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::small_profile;
    use crate::profile::ProfileOptions;

    #[test]
    fn marshal_values() {
        let mut m = Marshal::default();
        m.tuple(2);
        m.int(7);
        m.str("é");
        m.float(0.5);
        assert_eq!(
            m.out,
            [
                b'(', 2, 0, 0, 0, b'i', 7, 0, 0, 0, b'u', 2, 0, 0, 0, 0xc3, 0xa9, b'g', 0, 0, 0, 0,
                0, 0, 0xe0, 0x3f
            ]
        );
    }

    #[test]
    fn starts_with_a_dict_of_function_keys() {
        let bytes = to_bytes(&small_profile(ProfileOptions::default()));
        assert_eq!(bytes[0], b'{');
        assert_eq!(*bytes.last().unwrap(), b'0');
        assert_eq!(&bytes[1..6], [b'(', 3, 0, 0, 0]);
    }
}
