//! Where a located interpreter's state is: the one value that attaching produces and every
//! walk starts from.

use crate::attach::layout::{Layout, LayoutSource};
use crate::attach::version::Version;

/// A located interpreter: everything the walker needs, computed once at attach.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// The interpreter's version.
    pub version: Version,
    /// The offsets of the fields the walker reads, for this version and build.
    pub layout: Layout,
    /// Where `layout` came from: a table, a table checked by the target's debug offsets, or
    /// (a version newer than every table) the debug offsets alone.
    pub layout_source: LayoutSource,
    /// Address of `_PyRuntime` (3.7+).
    pub runtime: Option<u64>,
    /// Address of the pointer to the first interpreter state (`_PyRuntime.interpreters.head`,
    /// or `interp_head` before 3.7).
    pub interp_head: u64,
    /// Address of `_PyThreadState_Current` (≤3.6: the thread holding the GIL).
    pub tstate_current: Option<u64>,
}
