//! speedscope's JSON file format (<https://www.speedscope.app/file-format-schema.json>).
//!
//! `shared.frames` holds every frame (`name`, `file`, `line`); each profile is of type
//! `"sampled"` with `samples` (arrays of frame indexes, root first) and `weights` (the counts,
//! unit `"none"`). A profile that keeps threads or processes apart gets one speedscope profile
//! per thread (or process), named after it; otherwise one profile holds everything.

use std::io::{self, Write};

use super::{json_string, process_label, thread_label};
use crate::profile::{Profile, Stack};

/// The `$schema` every speedscope file names.
pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

/// Writes the profile as speedscope JSON; `name` titles the file in speedscope.
pub fn write(profile: &Profile, name: &str, out: &mut impl Write) -> io::Result<()> {
    out.write_all(to_string(profile, name).as_bytes())
}

/// The profile as speedscope JSON.
pub fn to_string(profile: &Profile, name: &str) -> String {
    let mut s = String::with_capacity(4096);
    s.push_str("{\"$schema\":");
    json_string(&mut s, SCHEMA);
    s.push_str(",\"shared\":{\"frames\":[");
    for (i, f) in profile.frames().iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"name\":");
        json_string(&mut s, &f.name);
        s.push_str(",\"file\":");
        json_string(&mut s, &f.filename);
        if f.line > 0 {
            s.push_str(&format!(",\"line\":{}", f.line));
        }
        s.push('}');
    }
    s.push_str("]},\"profiles\":[");

    // Group stacks by (process, thread); `stacks()` is sorted by them already.
    // Weights are sample counts: stacks that only got CPU time between samples are left out.
    let stacks: Vec<Stack<'_>> = profile
        .stacks()
        .into_iter()
        .filter(|s| s.count > 0)
        .collect();
    let mut groups: Vec<Vec<&Stack<'_>>> = Vec::new();
    for st in &stacks {
        match groups.last_mut() {
            Some(g) if same_group(g[0], st) => g.push(st),
            _ => groups.push(vec![st]),
        }
    }
    if groups.is_empty() {
        groups.push(Vec::new());
    }
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let title = match g.first() {
            Some(st) => group_name(st),
            None => String::new(),
        };
        let title = if title.is_empty() {
            "all threads".to_string()
        } else {
            title
        };
        let total: u64 = g.iter().map(|st| st.count).sum();
        s.push_str("{\"type\":\"sampled\",\"name\":");
        json_string(&mut s, &title);
        s.push_str(&format!(
            ",\"unit\":\"none\",\"startValue\":0,\"endValue\":{total},\"samples\":["
        ));
        for (j, st) in g.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            s.push('[');
            for (k, f) in st.frames.iter().enumerate() {
                if k > 0 {
                    s.push(',');
                }
                s.push_str(&f.to_string());
            }
            s.push(']');
        }
        s.push_str("],\"weights\":[");
        for (j, st) in g.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            s.push_str(&st.count.to_string());
        }
        s.push_str("]}");
    }
    s.push_str("],\"name\":");
    json_string(&mut s, name);
    s.push_str(",\"activeProfileIndex\":0,\"exporter\":");
    json_string(&mut s, concat!("pyspy ", env!("CARGO_PKG_VERSION")));
    s.push_str("}\n");
    s
}

fn same_group(a: &Stack<'_>, b: &Stack<'_>) -> bool {
    a.process.map(|p| p.pid) == b.process.map(|p| p.pid) && a.thread == b.thread
}

fn group_name(st: &Stack<'_>) -> String {
    let mut parts = Vec::new();
    if let Some(p) = st.process {
        parts.push(process_label(p));
    }
    if let Some(t) = st.thread {
        parts.push(thread_label(t));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::small_profile;
    use crate::profile::ProfileOptions;

    #[test]
    fn one_profile_for_all_threads() {
        let text = to_string(&small_profile(ProfileOptions::default()), "app");
        assert!(text.starts_with(
            "{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\"shared\":\
             {\"frames\":[{\"name\":\"main\",\"file\":\"app.py\",\"line\":10},"
        ));
        assert!(
            text.contains("\"name\":\"all threads\",\"unit\":\"none\",\"startValue\":0,\"endValue\":5,\"samples\":[[0,1,2],[0,3],[4,5]],\"weights\":[3,1,1]"),
            "{text}"
        );
    }

    #[test]
    fn one_profile_per_thread() {
        let text = to_string(
            &small_profile(ProfileOptions::default().threads(true)),
            "app",
        );
        assert_eq!(text.matches("\"type\":\"sampled\"").count(), 2, "{text}");
        assert!(text.contains("\"name\":\"thread \\\"worker\\\" (0x2, tid 1002)\""));
    }
}
