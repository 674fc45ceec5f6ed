//! Collapsed ("folded") stacks: one line per distinct stack, frames root first separated by
//! `;`, then a space and the count — the input of flamegraph.pl and inferno, as py-spy writes
//! it: `main (app.py:10);work (app.py:7);hot (app.py:3) 3`.
//!
//! A profile that keeps processes or threads apart starts each stack with a pseudo-frame
//! naming them (`process 42: "python app.py"`, `thread "MainThread" (0x7f.., tid 43)`), so a
//! flame graph has one tower per process or thread.

use std::io::{self, Write};

use super::{frame_label, process_label, thread_label};
use crate::profile::Profile;

/// Writes the profile as collapsed stacks.
pub fn write(profile: &Profile, out: &mut impl Write) -> io::Result<()> {
    let mut line = String::new();
    for stack in profile.stacks().iter().filter(|s| s.count > 0) {
        line.clear();
        let mut push = |label: &str| {
            if !line.is_empty() {
                line.push(';');
            }
            line.push_str(&sanitize(label));
        };
        if let Some(p) = stack.process {
            push(&process_label(p));
        }
        if let Some(t) = stack.thread {
            push(&thread_label(t));
        }
        for f in stack.frames {
            push(&frame_label(profile.frame(*f)));
        }
        writeln!(out, "{line} {}", stack.count)?;
    }
    Ok(())
}

/// The profile as collapsed stacks in a string.
pub fn to_string(profile: &Profile) -> String {
    let mut out = Vec::new();
    write(profile, &mut out).expect("writing to a Vec");
    String::from_utf8(out).expect("labels are UTF-8")
}

/// `;` separates frames and a newline ends a stack: neither may appear inside a label.
fn sanitize(label: &str) -> std::borrow::Cow<'_, str> {
    if label.contains([';', '\n', '\r']) {
        label.replace(';', ":").replace(['\n', '\r'], " ").into()
    } else {
        label.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::small_profile;
    use crate::profile::ProfileOptions;

    #[test]
    fn root_first_with_counts() {
        let text = to_string(&small_profile(ProfileOptions::default()));
        assert_eq!(
            text,
            "main (app.py:10);work (app.py:7);hot (app.py:3) 3\n\
             main (app.py:10);work (app.py:8) 1\n\
             main (app.py:11);other (lib.py:1) 1\n"
        );
    }

    #[test]
    fn threads_and_processes_as_pseudo_frames() {
        let text = to_string(&small_profile(
            ProfileOptions::default()
                .threads(true)
                .processes(true)
                .lines(false),
        ));
        assert!(
            text.lines().any(|l| l
                == "process 42: \"python app.py\";thread \"MainThread\" (0x1, tid 1001);\
                    main (app.py);work (app.py);hot (app.py) 3"),
            "{text}"
        );
    }

    #[test]
    fn separators_inside_labels_are_replaced() {
        assert_eq!(sanitize("a;b\nc"), "a:b c");
    }
}
