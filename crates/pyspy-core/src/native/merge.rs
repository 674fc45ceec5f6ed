//! Merging a thread's native frames with its Python frames, so the stack reads
//! Python → C → Python in true call order.
//!
//! Each native frame of the interpreter's eval loop (`_PyEval_EvalFrameDefault`, 2.7's
//! `PyEval_EvalFrameEx`) runs some Python frames: exactly one up to 3.10; from 3.11 on, the
//! frames from the one the call entered with (3.11 marks it `is_entry`; 3.12+ links an entry
//! frame owned by the C stack behind it) up to the innermost, since Python-to-Python calls no
//! longer recurse in C. The walker reports these *groups* (innermost first, their sizes); the
//! merge replaces the n-th eval-loop frame, counted from the innermost, with the n-th group.
//!
//! Frames of the interpreter's own call machinery (`_Py*`, `Py*`, the vectorcall helpers,
//! unnamed code in the interpreter's binary) and the process or thread start-up below the
//! outermost eval loop are left out unless all frames are asked for.
//!
//! If unwinding stopped early (fewer eval-loop frames than groups), the remaining Python
//! frames are appended, outermost last, so no Python frame is ever lost.

use crate::snapshot::Frame;
#[cfg(feature = "internals")]
use std::sync::Arc;

/// What a native frame is to the merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The eval loop: replaced by the Python frames it runs.
    Eval,
    /// The interpreter's own plumbing: shown only when all frames are asked for.
    Internal,
    /// Any other native code (extensions, libraries, the C library).
    Native,
}

/// Names of functions in the interpreter's binary that are call machinery, not code a user
/// wants to see (by prefix).
const INTERNAL_PREFIXES: &[&str] = &[
    "_Py",
    "Py",
    "cfunction_",
    "method_vectorcall",
    "vectorcall_",
    "call_function",
    "function_code_fastcall",
    "function_call",
    "do_call_core",
    "fast_function",
    "ext_do_call",
    "slot_tp_",
    "object_vacall",
    "instancemethod_call",
    "method_call",
    "gen_send",
    "gen_iternext",
];

/// The role of a native frame running `function` (demangled; `None` if unknown), in the
/// binary that holds the interpreter or not, for a Python 2 or 3 interpreter.
pub fn role(function: Option<&str>, in_interpreter: bool, python2: bool) -> Role {
    // Compiler clones: "_PyEval_EvalFrameDefault.cold", "foo.isra.0", "bar.constprop.0".
    let base = function.map(|f| f.split('.').next().unwrap_or(f));
    match base {
        Some("_PyEval_EvalFrameDefault") => Role::Eval,
        Some("PyEval_EvalFrameEx") if python2 => Role::Eval,
        _ if !in_interpreter => Role::Native,
        None => Role::Internal,
        Some(name) if INTERNAL_PREFIXES.iter().any(|p| name.starts_with(p)) => Role::Internal,
        Some(_) => Role::Native,
    }
}

/// The merged stack, innermost first, and where its cut is. `python` is the thread's Python
/// stack (innermost first), cut into groups of `groups[i]` frames each (the frames one
/// eval-loop call runs; a remainder past the sizes is one more group; a group of 0 frames is
/// an eval-loop call whose frames were left out of a truncated stack); `natives` the unwound
/// native frames (innermost first) with their roles. `all` keeps interpreter-internal and
/// start-up frames. `cut` is where frames were left out of `python`
/// ([`ThreadStack::truncated_at`](crate::ThreadStack)): the returned cut is the same place in
/// the merged stack, before the first Python frame after it (after the last Python frame when
/// `cut` is `python.len()`).
pub fn merge(
    python: Vec<Frame>,
    cut: Option<usize>,
    groups: &[u32],
    natives: Vec<(Frame, Role)>,
    all: bool,
) -> (Vec<Frame>, Option<usize>) {
    let total = python.len();
    let mut python = Python {
        frames: python.into_iter(),
        taken: 0,
        cut,
        at: None,
        end: 0,
    };
    let mut sizes = groups.iter().map(|g| *g as usize);
    let outermost_eval = natives.iter().rposition(|(_, r)| *r == Role::Eval);
    let mut out = Vec::with_capacity(total + natives.len());
    for (i, (frame, role)) in natives.into_iter().enumerate() {
        match role {
            Role::Eval => match sizes.next() {
                Some(n) => python.take(&mut out, n),
                None if python.frames.len() > 0 => python.take(&mut out, usize::MAX),
                None if all => out.push(frame),
                None => {}
            },
            Role::Internal if all => out.push(frame),
            Role::Internal => {}
            Role::Native => {
                // Below the outermost eval loop is the start-up (`_start`, `main`,
                // `start_thread`): shown only when all frames are asked for.
                if all || outermost_eval.is_none_or(|o| i < o) {
                    out.push(frame);
                }
            }
        }
    }
    python.take(&mut out, usize::MAX);
    let at = python.at.or(cut.filter(|&c| c >= total).map(|_| python.end));
    (out, at)
}

/// The Python frames being merged, and where the cut lands among the merged ones.
struct Python {
    frames: std::vec::IntoIter<Frame>,
    /// How many were merged so far.
    taken: usize,
    cut: Option<usize>,
    /// Where in the merged stack the Python frame at `cut` went.
    at: Option<usize>,
    /// Just after the last Python frame merged.
    end: usize,
}

impl Python {
    /// Moves the next `n` Python frames (at most) to `out`.
    fn take(&mut self, out: &mut Vec<Frame>, n: usize) {
        for frame in self.frames.by_ref().take(n) {
            if Some(self.taken) == self.cut {
                self.at = Some(out.len());
            }
            out.push(frame);
            self.taken += 1;
            self.end = out.len();
        }
    }
}

/// A native frame at `address` whose function is unknown (for pyspy's fuzz targets, which
/// cannot build a `Frame` themselves).
#[cfg(feature = "internals")]
pub fn unnamed_native_frame(address: u64) -> Frame {
    Frame::native(Arc::from(""), Arc::from("[unknown]"), 0, address)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(feature = "internals"))]
    use std::sync::Arc;

    fn py(name: &str) -> Frame {
        Frame::new(Arc::from(name), None, Arc::from("x.py"), 1)
    }
    fn c(name: &str, r: Role) -> (Frame, Role) {
        (
            Frame::native(Arc::from(name), Arc::from("/lib/x.so"), 0, 1),
            r,
        )
    }
    fn names(frames: &[Frame]) -> Vec<&str> {
        frames.iter().map(|f| &*f.function).collect()
    }

    #[test]
    fn roles() {
        assert_eq!(role(Some("_PyEval_EvalFrameDefault"), true, false), Role::Eval);
        assert_eq!(role(Some("_PyEval_EvalFrameDefault.cold"), true, false), Role::Eval);
        assert_eq!(role(Some("PyEval_EvalFrameEx"), true, true), Role::Eval);
        assert_eq!(role(Some("PyEval_EvalFrameEx"), true, false), Role::Internal);
        assert_eq!(role(Some("_PyObject_MakeTpCall"), true, false), Role::Internal);
        assert_eq!(role(None, true, false), Role::Internal);
        assert_eq!(role(Some("time_sleep"), true, false), Role::Native);
        assert_eq!(role(Some("PyCFuncPtr_call"), false, false), Role::Native);
        assert_eq!(role(None, false, false), Role::Native);
    }

    #[test]
    fn python_c_python_in_call_order() {
        use Role::*;
        // callback ← eval ← plumbing ← qsort ← ext ← plumbing ← eval(caller, main) ← main.
        let natives = vec![
            c("nanosleep", Native),
            c("_PyEval_EvalFrameDefault", Eval),
            c("_PyObject_Call", Internal),
            c("msort_with_tmp", Native),
            c("qsort_r", Native),
            c("ext_call", Native),
            c("_PyObject_MakeTpCall", Internal),
            c("_PyEval_EvalFrameDefault", Eval),
            c("PyEval_EvalCode", Internal),
            c("main", Native),
            c("_start", Native),
        ];
        let python = vec![py("callback"), py("caller"), py("<module>")];
        // 3.11+: the callback runs in its own eval call, caller and <module> in one.
        let got = merge(python.clone(), None, &[1, 2], natives.clone(), false).0;
        assert_eq!(
            names(&got),
            ["nanosleep", "callback", "msort_with_tmp", "qsort_r", "ext_call", "caller", "<module>"]
        );
        let all = merge(python, None, &[1, 2], natives, true).0;
        assert_eq!(all.len(), 3 + 9);
        assert_eq!(&*all.last().unwrap().function, "_start");
    }

    #[test]
    fn one_frame_per_eval_loop_up_to_3_10() {
        use Role::*;
        let natives = vec![
            c("_PyEval_EvalFrameDefault", Eval),
            c("_PyFunction_Vectorcall", Internal),
            c("_PyEval_EvalFrameDefault", Eval),
            c("_PyEval_EvalFrameDefault", Eval),
        ];
        let python = vec![py("a"), py("b"), py("c")];
        let got = merge(python, None, &[1, 1, 1], natives, false).0;
        assert_eq!(names(&got), ["a", "b", "c"]);
    }

    #[test]
    fn python_frames_survive_a_short_native_stack() {
        use Role::*;
        let natives = vec![c("poll", Native), c("_PyEval_EvalFrameDefault", Eval)];
        let python = vec![py("a"), py("b"), py("c")];
        let got = merge(python, None, &[1, 1, 1], natives, false).0;
        assert_eq!(names(&got), ["poll", "a", "b", "c"]);
        // No eval loop found at all (a binary without symbols): native first, then Python.
        let got = merge(vec![py("a")], None, &[1], vec![c("poll", Native)], false).0;
        assert_eq!(names(&got), ["poll", "a"]);
    }

    #[test]
    fn a_truncated_stack_keeps_its_cut_and_its_groups_in_step() {
        use Role::*;
        // Up to 3.10 every frame is an eval-loop call: a, b kept, two left out (groups of 0),
        // y, z kept. The eval frames of the left-out ones run nothing; the native frame
        // between them stays in the middle, at the cut.
        let natives = vec![
            c("_PyEval_EvalFrameDefault", Eval),
            c("_PyEval_EvalFrameDefault", Eval),
            c("_PyEval_EvalFrameDefault", Eval),
            c("ext_call", Native),
            c("_PyEval_EvalFrameDefault", Eval),
            c("_PyEval_EvalFrameDefault", Eval),
            c("_PyEval_EvalFrameDefault", Eval),
        ];
        let python = vec![py("a"), py("b"), py("y"), py("z")];
        let (got, cut) = merge(python.clone(), Some(2), &[1, 1, 0, 0, 1, 1], natives, false);
        assert_eq!(names(&got), ["a", "b", "ext_call", "y", "z"]);
        assert_eq!(cut, Some(3), "before y, the first frame after the cut");
        // Native frames in front move the cut with them.
        let natives = vec![c("poll", Native), c("_PyEval_EvalFrameDefault", Eval)];
        let (got, cut) = merge(python.clone(), Some(2), &[4], natives.clone(), false);
        assert_eq!(names(&got), ["poll", "a", "b", "y", "z"]);
        assert_eq!(cut, Some(3));
        // A chain whose bottom was not reached: the cut is after the last Python frame.
        let (got, cut) = merge(python, Some(4), &[4], natives, false);
        assert_eq!(got.len(), 5);
        assert_eq!(cut, Some(5));
    }

    #[test]
    fn surplus_eval_loops_are_internal() {
        use Role::*;
        let natives = vec![
            c("_PyEval_EvalFrameDefault", Eval),
            c("_PyEval_EvalFrameDefault", Eval),
        ];
        let got = merge(vec![py("a")], None, &[1], natives.clone(), false).0;
        assert_eq!(names(&got), ["a"]);
        let got = merge(vec![py("a")], None, &[1], natives, true).0;
        assert_eq!(names(&got), ["a", "_PyEval_EvalFrameDefault"]);
    }
}
