//! What pyspy's `Layout` fields are, per CPython version: the single source of truth for
//! `cargo xtask layouts`. Every number comes from bindgen; this file only names C fields.

/// A CPython minor version, `(major, minor)`.
pub type Minor = (u8, u8);

/// The versions pyspy ships tables for. Headers for every one of them must be found.
pub const VERSIONS: &[Minor] = &[
    (2, 7),
    (3, 6),
    (3, 7),
    (3, 8),
    (3, 9),
    (3, 10),
    (3, 11),
    (3, 12),
    (3, 13),
    (3, 14),
    (3, 15),
];

/// The versions that also have a free-threaded build (`--disable-gil`, `Py_GIL_DISABLED`, the
/// `t` ABI flag). Their tables come from the same headers compiled with `-DPy_GIL_DISABLED=1`.
pub const FREE_THREADED: &[Minor] = &[(3, 13), (3, 14), (3, 15)];

/// One build of a minor version: the default one or the free-threaded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Build {
    pub minor: Minor,
    pub free_threaded: bool,
}

impl Build {
    pub const fn new(minor: Minor, free_threaded: bool) -> Build {
        Build {
            minor,
            free_threaded,
        }
    }
}

impl std::fmt::Display for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = if self.free_threaded { "t" } else { "" };
        write!(f, "{}.{}{t}", self.minor.0, self.minor.1)
    }
}

/// Every build pyspy ships a table for: each version's default build, then the free-threaded
/// ones.
pub fn builds() -> Vec<Build> {
    let default = VERSIONS.iter().map(|&v| Build::new(v, false));
    let ft = FREE_THREADED.iter().map(|&v| Build::new(v, true));
    default.chain(ft).collect()
}

const FIRST: Minor = (2, 7);
const LAST: Minor = (3, 99);

/// Where a number comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Src {
    /// `offsetof(type, path)`; `path` may be nested (`threads.head`). Type names are the C
    /// typedef names, which bindgen keeps.
    Off(&'static str, &'static str),
    /// `sizeof(type)`.
    Size(&'static str),
    /// The value of a C integer constant expression (a macro such as `MANAGED_DICT_OFFSET`, or
    /// CPython's own expression where it has no macro), evaluated by clang. Must not be
    /// negative.
    Expr(&'static str),
    /// The field is meaningless for this version and is set to 0 (never read).
    Unused,
}

/// One version range of a row.
pub struct Rule {
    pub from: Minor,
    pub to: Minor,
    pub src: Src,
}

const fn r(from: Minor, to: Minor, src: Src) -> Rule {
    Rule { from, to, src }
}

use Src::{Expr, Off, Size, Unused};

/// One `Layout` field. `optional` fields are `Option<u32>` (None outside every rule's range);
/// the others are `u32` and must have a rule for every version.
pub struct Row {
    pub field: &'static str,
    pub optional: bool,
    /// Only free-threaded builds have the field (`None` in default builds).
    pub free_threaded_only: bool,
    pub rules: &'static [Rule],
}

const fn req(field: &'static str, rules: &'static [Rule]) -> Row {
    Row {
        field,
        optional: false,
        free_threaded_only: false,
        rules,
    }
}

const fn opt(field: &'static str, rules: &'static [Rule]) -> Row {
    Row {
        field,
        optional: true,
        free_threaded_only: false,
        rules,
    }
}

const fn opt_ft(field: &'static str, rules: &'static [Rule]) -> Row {
    Row {
        field,
        optional: true,
        free_threaded_only: true,
        rules,
    }
}

const INTERP: &str = "PyInterpreterState";
const TSTATE: &str = "PyThreadState";
const FRAME: &str = "PyFrameObject";
const IFRAME: &str = "_PyInterpreterFrame";
const CODE: &str = "PyCodeObject";
const RUNTIME: &str = "_PyRuntimeState";
const STACKITEM: &str = "_PyErr_StackItem";
const MONITORING: &str = "_PyCoMonitoringData";
const LINE_INSTR: &str = "_PyCoLineInstrumentationData";

/// The `Layout` offset fields in declaration order (facts such as the frame model are added by
/// `facts`). Ranges are inclusive.
pub const ROWS: &[Row] = &[
    // _PyRuntimeState
    opt(
        "runtime_interpreters_head",
        &[r((3, 7), LAST, Off(RUNTIME, "interpreters.head"))],
    ),
    opt(
        "runtime_gil_locked",
        &[r((3, 7), (3, 11), Off(RUNTIME, "ceval.gil.locked"))],
    ),
    opt(
        "runtime_gil_last_holder",
        &[r((3, 7), (3, 11), Off(RUNTIME, "ceval.gil.last_holder"))],
    ),
    // PyInterpreterState
    req("interp_size", &[r(FIRST, LAST, Size(INTERP))]),
    req("interp_next", &[r(FIRST, LAST, Off(INTERP, "next"))]),
    req(
        "interp_threads_head",
        &[
            r(FIRST, (3, 10), Off(INTERP, "tstate_head")),
            r((3, 11), LAST, Off(INTERP, "threads.head")),
        ],
    ),
    opt("interp_id", &[r((3, 7), LAST, Off(INTERP, "id"))]),
    req(
        "interp_modules",
        &[
            r(FIRST, (3, 11), Off(INTERP, "modules")),
            r((3, 12), LAST, Off(INTERP, "imports.modules")),
        ],
    ),
    opt(
        "interp_gil_locked",
        &[r((3, 12), LAST, Off(INTERP, "_gil.locked"))],
    ),
    opt(
        "interp_gil_last_holder",
        &[r((3, 12), LAST, Off(INTERP, "_gil.last_holder"))],
    ),
    // Free-threaded builds: non-zero while the GIL is enabled (at start-up for a module not
    // marked free-threading-safe, or with PYTHON_GIL=1).
    opt_ft(
        "interp_gil_enabled",
        &[r((3, 13), LAST, Off(INTERP, "_gil.enabled"))],
    ),
    opt(
        "interp_code_object_generation",
        // Counts code objects freed (3.14+): a walk that read new code objects while it
        // changed may have read a replaced one.
        &[r((3, 14), LAST, Off(INTERP, "_code_object_generation"))],
    ),
    // PyThreadState
    req("tstate_size", &[r(FIRST, LAST, Size(TSTATE))]),
    req("tstate_next", &[r(FIRST, LAST, Off(TSTATE, "next"))]),
    req("tstate_interp", &[r(FIRST, LAST, Off(TSTATE, "interp"))]),
    req(
        "tstate_frame",
        &[
            r(FIRST, (3, 10), Off(TSTATE, "frame")),
            r((3, 11), (3, 12), Off(TSTATE, "cframe")),
            r((3, 13), LAST, Off(TSTATE, "current_frame")),
        ],
    ),
    opt(
        "cframe_current_frame",
        &[r((3, 11), (3, 12), Off("_PyCFrame", "current_frame"))],
    ),
    req(
        "tstate_thread_id",
        &[r(FIRST, LAST, Off(TSTATE, "thread_id"))],
    ),
    opt(
        "tstate_native_thread_id",
        // Not 3.8: `threading.get_native_id()` arrived then, but the thread state only stores
        // it from 3.11 (checked against the headers).
        &[r((3, 11), LAST, Off(TSTATE, "native_thread_id"))],
    ),
    opt(
        "tstate_datastack_chunk",
        &[r((3, 11), LAST, Off(TSTATE, "datastack_chunk"))],
    ),
    opt(
        "tstate_datastack_top",
        &[r((3, 11), LAST, Off(TSTATE, "datastack_top"))],
    ),
    // _PyStackChunk (3.11+): the thread's data stack, where its own frames live.
    opt(
        "chunk_previous",
        &[r((3, 11), LAST, Off("_PyStackChunk", "previous"))],
    ),
    opt(
        "chunk_size",
        &[r((3, 11), LAST, Off("_PyStackChunk", "size"))],
    ),
    opt(
        "chunk_data",
        &[r((3, 11), LAST, Off("_PyStackChunk", "data"))],
    ),
    // Exception state (walk/exceptions.rs): the exception being handled (`sys.exc_info()`)
    // and the one raised and not caught yet.
    opt(
        "tstate_curexc_type",
        &[r(FIRST, (3, 11), Off(TSTATE, "curexc_type"))],
    ),
    opt(
        "tstate_curexc_value",
        &[r(FIRST, (3, 11), Off(TSTATE, "curexc_value"))],
    ),
    opt(
        "tstate_current_exception",
        &[r((3, 12), LAST, Off(TSTATE, "current_exception"))],
    ),
    opt(
        "tstate_exc_type",
        &[r(FIRST, (3, 6), Off(TSTATE, "exc_type"))],
    ),
    opt(
        "tstate_exc_value",
        &[r(FIRST, (3, 6), Off(TSTATE, "exc_value"))],
    ),
    opt(
        "tstate_exc_info",
        &[r((3, 7), LAST, Off(TSTATE, "exc_info"))],
    ),
    opt(
        "stackitem_exc_type",
        &[r((3, 7), (3, 10), Off(STACKITEM, "exc_type"))],
    ),
    opt(
        "stackitem_exc_value",
        &[r((3, 7), LAST, Off(STACKITEM, "exc_value"))],
    ),
    opt(
        "stackitem_previous",
        &[r((3, 7), LAST, Off(STACKITEM, "previous_item"))],
    ),
    // PyFrameObject
    opt("frame_back", &[r(FIRST, (3, 10), Off(FRAME, "f_back"))]),
    opt("frame_code", &[r(FIRST, (3, 10), Off(FRAME, "f_code"))]),
    opt("frame_lasti", &[r(FIRST, (3, 10), Off(FRAME, "f_lasti"))]),
    opt("frame_lineno", &[r(FIRST, (3, 10), Off(FRAME, "f_lineno"))]),
    opt(
        "frame_localsplus",
        &[r(FIRST, (3, 10), Off(FRAME, "f_localsplus"))],
    ),
    // _PyInterpreterFrame
    opt("iframe_size", &[r((3, 11), LAST, Size(IFRAME))]),
    opt(
        "iframe_previous",
        &[r((3, 11), LAST, Off(IFRAME, "previous"))],
    ),
    opt(
        "iframe_executable",
        &[
            r((3, 11), (3, 12), Off(IFRAME, "f_code")),
            r((3, 13), LAST, Off(IFRAME, "f_executable")),
        ],
    ),
    opt(
        "iframe_instr_ptr",
        &[
            r((3, 11), (3, 12), Off(IFRAME, "prev_instr")),
            r((3, 13), LAST, Off(IFRAME, "instr_ptr")),
        ],
    ),
    opt("iframe_owner", &[r((3, 11), LAST, Off(IFRAME, "owner"))]),
    // 3.11 marks the first frame each eval-loop call runs; 3.12+ pushes an entry frame owned
    // by the C stack instead (see `owner_not_python`).
    opt(
        "iframe_is_entry",
        &[r((3, 11), (3, 11), Off(IFRAME, "is_entry"))],
    ),
    opt(
        "iframe_localsplus",
        &[r((3, 11), LAST, Off(IFRAME, "localsplus"))],
    ),
    // Free-threaded 3.14+: which thread-local copy of the bytecode the frame runs.
    opt_ft(
        "iframe_tlbc_index",
        &[r((3, 14), LAST, Off(IFRAME, "tlbc_index"))],
    ),
    // PyCodeObject
    req("code_size", &[r(FIRST, LAST, Size(CODE))]),
    req("code_argcount", &[r(FIRST, LAST, Off(CODE, "co_argcount"))]),
    req("code_filename", &[r(FIRST, LAST, Off(CODE, "co_filename"))]),
    req("code_name", &[r(FIRST, LAST, Off(CODE, "co_name"))]),
    opt(
        "code_qualname",
        &[r((3, 11), LAST, Off(CODE, "co_qualname"))],
    ),
    req(
        "code_linetable",
        &[
            r(FIRST, (3, 9), Off(CODE, "co_lnotab")),
            r((3, 10), LAST, Off(CODE, "co_linetable")),
        ],
    ),
    req(
        "code_firstlineno",
        &[r(FIRST, LAST, Off(CODE, "co_firstlineno"))],
    ),
    opt("code_code", &[r(FIRST, (3, 10), Off(CODE, "co_code"))]),
    opt(
        "code_adaptive",
        &[r((3, 11), LAST, Off(CODE, "co_code_adaptive"))],
    ),
    opt(
        "code_firsttraceable",
        &[r((3, 11), LAST, Off(CODE, "_co_firsttraceable"))],
    ),
    opt(
        "code_varnames",
        &[r(FIRST, (3, 10), Off(CODE, "co_varnames"))],
    ),
    opt(
        "code_localsplusnames",
        &[r((3, 11), LAST, Off(CODE, "co_localsplusnames"))],
    ),
    opt(
        "code_localspluskinds",
        &[r((3, 11), LAST, Off(CODE, "co_localspluskinds"))],
    ),
    // Free-threaded 3.14+: `_PyCodeArray *co_tlbc`, the thread-local copies of the bytecode
    // (`entries[0]` is `co_code_adaptive` itself).
    opt_ft("code_tlbc", &[r((3, 14), LAST, Off(CODE, "co_tlbc"))]),
    opt_ft(
        "codearray_size",
        &[r((3, 14), LAST, Off("_PyCodeArray", "size"))],
    ),
    opt_ft(
        "codearray_entries",
        &[r((3, 14), LAST, Off("_PyCodeArray", "entries"))],
    ),
    // Locals (walk/locals.rs): argument counts, flags, the ≤3.10 name tuples and counts.
    req("code_flags", &[r(FIRST, LAST, Off(CODE, "co_flags"))]),
    opt(
        "code_kwonlyargcount",
        &[r((3, 0), LAST, Off(CODE, "co_kwonlyargcount"))],
    ),
    opt(
        "code_nlocals",
        &[r(FIRST, (3, 10), Off(CODE, "co_nlocals"))],
    ),
    opt(
        "code_cellvars",
        &[r(FIRST, (3, 10), Off(CODE, "co_cellvars"))],
    ),
    opt(
        "code_freevars",
        &[r(FIRST, (3, 10), Off(CODE, "co_freevars"))],
    ),
    opt(
        "code_nlocalsplus",
        &[r((3, 11), LAST, Off(CODE, "co_nlocalsplus"))],
    ),
    // Instrumented bytecode (walk/opcodes.rs): the original opcode of an `INSTRUMENTED_LINE`
    // or `INSTRUMENTED_INSTRUCTION`.
    opt(
        "code_monitoring",
        &[r((3, 12), LAST, Off(CODE, "_co_monitoring"))],
    ),
    opt(
        "monitoring_lines",
        &[r((3, 12), LAST, Off(MONITORING, "lines"))],
    ),
    opt(
        "monitoring_per_instruction_opcodes",
        &[r((3, 12), LAST, Off(MONITORING, "per_instruction_opcodes"))],
    ),
    opt("lineinstr_size", &[r((3, 12), (3, 13), Size(LINE_INSTR))]),
    opt(
        "lineinstr_data",
        &[r((3, 14), LAST, Off(LINE_INSTR, "data"))],
    ),
    // PyObject / PyVarObject / PyTypeObject
    req("object_type", &[r(FIRST, LAST, Off("PyObject", "ob_type"))]),
    req(
        "varobject_size",
        &[r(FIRST, LAST, Off("PyVarObject", "ob_size"))],
    ),
    req(
        "type_name",
        &[r(FIRST, LAST, Off("PyTypeObject", "tp_name"))],
    ),
    req(
        "type_flags",
        &[r(FIRST, LAST, Off("PyTypeObject", "tp_flags"))],
    ),
    // bytes (3.x) / str (2.7)
    req(
        "bytes_size",
        &[
            r(FIRST, (2, 7), Off("PyStringObject", "ob_size")),
            r((3, 0), LAST, Off("PyBytesObject", "ob_base.ob_size")),
        ],
    ),
    req(
        "bytes_sval",
        &[
            r(FIRST, (2, 7), Off("PyStringObject", "ob_sval")),
            r((3, 0), LAST, Off("PyBytesObject", "ob_sval")),
        ],
    ),
    // unicode
    req(
        "unicode_state",
        &[
            r(FIRST, (2, 7), Unused),
            r((3, 0), LAST, Off("PyASCIIObject", "state")),
        ],
    ),
    req(
        "unicode_length",
        &[
            r(FIRST, (2, 7), Off("PyUnicodeObject", "length")),
            r((3, 0), LAST, Off("PyASCIIObject", "length")),
        ],
    ),
    req(
        "unicode_ascii_size",
        &[
            r(FIRST, (2, 7), Unused),
            r((3, 0), LAST, Size("PyASCIIObject")),
        ],
    ),
    req(
        "unicode_compact_size",
        &[
            r(FIRST, (2, 7), Unused),
            r((3, 0), LAST, Size("PyCompactUnicodeObject")),
        ],
    ),
    req(
        "unicode_data",
        &[
            r(FIRST, (2, 7), Off("PyUnicodeObject", "str")),
            r((3, 0), LAST, Off("PyUnicodeObject", "data")),
        ],
    ),
    // tuple, list
    req(
        "tuple_items",
        &[r(FIRST, LAST, Off("PyTupleObject", "ob_item"))],
    ),
    req(
        "list_items",
        &[r(FIRST, LAST, Off("PyListObject", "ob_item"))],
    ),
    // Thread names: types, modules, dicts, ints (see crates/pyspy-core/src/objects/).
    req(
        "type_basicsize",
        &[r(FIRST, LAST, Off("PyTypeObject", "tp_basicsize"))],
    ),
    req(
        "type_dictoffset",
        &[r(FIRST, LAST, Off("PyTypeObject", "tp_dictoffset"))],
    ),
    opt(
        "heaptype_cached_keys",
        &[r((3, 0), LAST, Off("PyHeapTypeObject", "ht_cached_keys"))],
    ),
    // `-MANAGED_DICT_OFFSET`: how far before a managed-dict object its dict (3.12: dict or
    // values) pointer sits: three words, one in free-threaded builds (no GC links there).
    opt(
        "managed_dict_before",
        &[
            r((3, 11), (3, 11), Expr("-(MANAGED_DICT_OFFSET)")),
            // 3.12 has no macro: `_PyObject_DictOrValuesPointer` is `((PyDictOrValues *)obj)-3`.
            r((3, 12), (3, 12), Expr("3 * (int)sizeof(PyDictOrValues)")),
            r((3, 13), LAST, Expr("-(MANAGED_DICT_OFFSET)")),
        ],
    ),
    req(
        "module_dict",
        &[r(FIRST, LAST, Off("PyModuleObject", "md_dict"))],
    ),
    opt(
        "dict_mask",
        &[r(FIRST, (2, 7), Off("PyDictObject", "ma_mask"))],
    ),
    opt(
        "dict_table",
        &[r(FIRST, (2, 7), Off("PyDictObject", "ma_table"))],
    ),
    opt(
        "dict_keys",
        &[r((3, 0), LAST, Off("PyDictObject", "ma_keys"))],
    ),
    opt(
        "dict_values",
        &[r((3, 0), LAST, Off("PyDictObject", "ma_values"))],
    ),
    opt(
        "dictkeys_size",
        &[r((3, 0), (3, 10), Off("PyDictKeysObject", "dk_size"))],
    ),
    opt(
        "dictkeys_log2_size",
        &[r((3, 11), LAST, Off("PyDictKeysObject", "dk_log2_size"))],
    ),
    opt(
        "dictkeys_log2_index_bytes",
        &[r(
            (3, 11),
            LAST,
            Off("PyDictKeysObject", "dk_log2_index_bytes"),
        )],
    ),
    opt(
        "dictkeys_kind",
        &[r((3, 11), LAST, Off("PyDictKeysObject", "dk_kind"))],
    ),
    opt(
        "dictkeys_nentries",
        &[r((3, 0), LAST, Off("PyDictKeysObject", "dk_nentries"))],
    ),
    opt(
        "dictkeys_indices",
        &[r((3, 0), LAST, Off("PyDictKeysObject", "dk_indices"))],
    ),
    req(
        "dictentry_size",
        &[
            r(FIRST, (2, 7), Size("PyDictEntry")),
            r((3, 0), LAST, Size("PyDictKeyEntry")),
        ],
    ),
    req(
        "dictentry_hash",
        &[
            r(FIRST, (2, 7), Off("PyDictEntry", "me_hash")),
            r((3, 0), LAST, Off("PyDictKeyEntry", "me_hash")),
        ],
    ),
    req(
        "dictentry_key",
        &[
            r(FIRST, (2, 7), Off("PyDictEntry", "me_key")),
            r((3, 0), LAST, Off("PyDictKeyEntry", "me_key")),
        ],
    ),
    req(
        "dictentry_value",
        &[
            r(FIRST, (2, 7), Off("PyDictEntry", "me_value")),
            r((3, 0), LAST, Off("PyDictKeyEntry", "me_value")),
        ],
    ),
    opt(
        "dictunicodeentry_size",
        &[r((3, 11), LAST, Size("PyDictUnicodeEntry"))],
    ),
    opt(
        "dictunicodeentry_key",
        &[r((3, 11), LAST, Off("PyDictUnicodeEntry", "me_key"))],
    ),
    opt(
        "dictunicodeentry_value",
        &[r((3, 11), LAST, Off("PyDictUnicodeEntry", "me_value"))],
    ),
    opt(
        "dictvalues_values",
        &[r((3, 11), LAST, Off("PyDictValues", "values"))],
    ),
    opt(
        "dictvalues_valid",
        &[r((3, 13), LAST, Off("PyDictValues", "valid"))],
    ),
    opt(
        "int_ival",
        &[r(FIRST, (2, 7), Off("PyIntObject", "ob_ival"))],
    ),
    opt(
        "long_tag",
        &[r((3, 12), LAST, Off("PyLongObject", "long_value.lv_tag"))],
    ),
    req(
        "long_digits",
        &[
            r(FIRST, (3, 11), Off("PyLongObject", "ob_digit")),
            r((3, 12), LAST, Off("PyLongObject", "long_value.ob_digit")),
        ],
    ),
    // Values of locals (walk/values/): floats, complex numbers, sets, cells, dict sizes,
    // exception arguments.
    req(
        "float_value",
        &[r(FIRST, LAST, Off("PyFloatObject", "ob_fval"))],
    ),
    req(
        "complex_value",
        &[r(FIRST, LAST, Off("PyComplexObject", "cval"))],
    ),
    req(
        "dict_used",
        &[r(FIRST, LAST, Off("PyDictObject", "ma_used"))],
    ),
    req("set_used", &[r(FIRST, LAST, Off("PySetObject", "used"))]),
    req("set_mask", &[r(FIRST, LAST, Off("PySetObject", "mask"))]),
    req("set_table", &[r(FIRST, LAST, Off("PySetObject", "table"))]),
    req("setentry_size", &[r(FIRST, LAST, Size("setentry"))]),
    req("setentry_key", &[r(FIRST, LAST, Off("setentry", "key"))]),
    req("setentry_hash", &[r(FIRST, LAST, Off("setentry", "hash"))]),
    req("cell_ref", &[r(FIRST, LAST, Off("PyCellObject", "ob_ref"))]),
    req(
        "exception_args",
        &[r(FIRST, LAST, Off("PyBaseExceptionObject", "args"))],
    ),
    // asyncio tasks (see `walk::tasks`): the objects a task reader follows besides dicts and
    // sets — weak references (the all-tasks weak sets), bound methods, C methods and closures
    // (done callbacks), types' MRO (is it a Task?), and generators with their frames' value
    // stacks (what a suspended coroutine awaits).
    req(
        "weakref_object",
        &[r(FIRST, LAST, Off("PyWeakReference", "wr_object"))],
    ),
    req(
        "method_self",
        &[r(FIRST, LAST, Off("PyMethodObject", "im_self"))],
    ),
    req(
        "cfunction_self",
        &[r(FIRST, LAST, Off("PyCFunctionObject", "m_self"))],
    ),
    req(
        "function_closure",
        &[r(FIRST, LAST, Off("PyFunctionObject", "func_closure"))],
    ),
    req("type_mro", &[r(FIRST, LAST, Off("PyTypeObject", "tp_mro"))]),
    opt(
        "gen_frame",
        &[r(FIRST, (3, 10), Off("PyGenObject", "gi_frame"))],
    ),
    opt(
        "gen_iframe",
        &[r((3, 11), LAST, Off("PyGenObject", "gi_iframe"))],
    ),
    opt(
        "gen_frame_state",
        &[r((3, 11), LAST, Off("PyGenObject", "gi_frame_state"))],
    ),
    opt(
        "frame_stacktop",
        &[r(FIRST, (3, 9), Off(FRAME, "f_stacktop"))],
    ),
    opt(
        "frame_stackdepth",
        &[r((3, 10), (3, 10), Off(FRAME, "f_stackdepth"))],
    ),
    opt(
        "frame_valuestack",
        &[r((3, 10), (3, 10), Off(FRAME, "f_valuestack"))],
    ),
    opt(
        "iframe_stacktop",
        &[r((3, 11), (3, 13), Off(IFRAME, "stacktop"))],
    ),
    opt(
        "iframe_stackpointer",
        &[r((3, 14), LAST, Off(IFRAME, "stackpointer"))],
    ),
    // `gi_frame_state` values (an `int8_t`), as the byte pyspy reads.
    opt(
        "gen_state_created",
        &[r((3, 11), LAST, Expr("(unsigned char)FRAME_CREATED"))],
    ),
    opt(
        "gen_state_suspended",
        &[r((3, 11), LAST, Expr("(unsigned char)FRAME_SUSPENDED"))],
    ),
    opt(
        "gen_state_executing",
        &[r((3, 11), LAST, Expr("(unsigned char)FRAME_EXECUTING"))],
    ),
    opt(
        "gen_state_yield_from",
        &[r(
            (3, 13),
            LAST,
            Expr("(unsigned char)FRAME_SUSPENDED_YIELD_FROM"),
        )],
    ),
    opt(
        "gen_state_yield_from_locked",
        &[r(
            (3, 15),
            LAST,
            Expr("(unsigned char)FRAME_SUSPENDED_YIELD_FROM_LOCKED"),
        )],
    ),
    // ≤3.10: a generator suspended in `yield from`/`await` has YIELD_FROM as its next opcode.
    opt(
        "yield_from_opcode",
        &[r((3, 7), (3, 10), Expr("YIELD_FROM"))],
    ),
    // 3.14+: the asyncio fields of thread and interpreter states (the `_asyncio` module's own
    // `AsyncioDebug` offsets are preferred; these check them and stand in when that section
    // cannot be read).
    opt(
        "tstate_asyncio_running_loop",
        &[r(
            (3, 14),
            LAST,
            Off("_PyThreadStateImpl", "asyncio_running_loop"),
        )],
    ),
    opt(
        "tstate_asyncio_running_task",
        &[r(
            (3, 14),
            LAST,
            Off("_PyThreadStateImpl", "asyncio_running_task"),
        )],
    ),
    opt(
        "tstate_asyncio_tasks_head",
        &[r(
            (3, 14),
            LAST,
            Off("_PyThreadStateImpl", "asyncio_tasks_head"),
        )],
    ),
    opt(
        "interp_asyncio_tasks_head",
        &[r((3, 14), LAST, Off(INTERP, "asyncio_tasks_head"))],
    ),
];

/// The row after which the frame-owner facts are emitted (they sit there in `Layout`).
pub const OWNER_FACTS_AFTER: &str = "iframe_localsplus";

/// The rule of `row` for build `b`, if any.
pub fn rule_for(row: &Row, b: Build) -> Option<&'static Src> {
    if row.free_threaded_only && !b.free_threaded {
        return None;
    }
    row.rules
        .iter()
        .find(|rule| rule.from <= b.minor && b.minor <= rule.to)
        .map(|rule| &rule.src)
}

/// Per-version facts that are not offsets.
pub struct Facts {
    pub frames: &'static str,
    pub line_table: &'static str,
    pub strings: &'static str,
    /// 3.14+: `f_executable` is a tagged `_PyStackRef`.
    pub executable_tagged: bool,
    /// 3.13+: `f_executable` may hold an object that is not a code object.
    pub executable_any_object: bool,
    /// 3.3–3.11: bit 7 of a `str`'s state is `ready` (legacy `wstr` strings may lack data).
    pub unicode_ready_bit: bool,
    /// A free-threaded build (`Py_GIL_DISABLED`).
    pub free_threaded: bool,
    /// Bits of `interned` at the start of a `str`'s `state` (`kind`, `compact`, `ascii`
    /// follow): a 2-bit field, or a whole `unsigned char` in free-threaded 3.14+ builds
    /// (`Include/cpython/unicodeobject.h`). bindgen cannot measure bit-field positions.
    pub unicode_interned_bits: u8,
}

pub fn facts(b: Build) -> Facts {
    let v = b.minor;
    Facts {
        frames: if v <= (3, 10) {
            "FrameModel::FrameObject"
        } else {
            "FrameModel::InterpreterFrame"
        },
        line_table: match v {
            (2, _) => "LineTableFormat::LnotabUnsigned",
            (3, 0..=9) => "LineTableFormat::LnotabSigned",
            (3, 10) => "LineTableFormat::Linetable310",
            _ => "LineTableFormat::Locations",
        },
        strings: if v.0 == 2 {
            "StringModel::Python2"
        } else {
            "StringModel::Pep393"
        },
        executable_tagged: v >= (3, 14),
        executable_any_object: v >= (3, 13),
        unicode_ready_bit: v.0 == 3 && v < (3, 12),
        free_threaded: b.free_threaded,
        unicode_interned_bits: if b.free_threaded && v >= (3, 14) {
            8
        } else {
            2
        },
    }
}

/// `owner` enumerators that are Python frames; the smallest other one starts the non-Python
/// owners (`FRAME_OWNED_BY_CSTACK` in 3.12/3.13, `FRAME_OWNED_BY_INTERPRETER` in 3.14+).
pub const PYTHON_OWNERS: &[&str] = &[
    "FRAME_OWNED_BY_THREAD",
    "FRAME_OWNED_BY_GENERATOR",
    "FRAME_OWNED_BY_FRAME_OBJECT",
];
pub const OWNER_GENERATOR: &str = "FRAME_OWNED_BY_GENERATOR";
pub const OWNER_THREAD: &str = "FRAME_OWNED_BY_THREAD";
pub const OWNER_ENUM: &str = "_frameowner";

/// Headers to include for a version (after `Python.h`), relative to the include directory.
pub fn extra_headers(v: Minor) -> &'static [&'static str] {
    match v {
        (2, _) | (3, 0..=6) => &["frameobject.h", "code.h", "longintrepr.h"],
        (3, 7) => &[
            "frameobject.h",
            "internal/pystate.h",
            "longintrepr.h",
            "opcode.h",
        ],
        (3, 8) => &[
            "frameobject.h",
            "internal/pycore_pystate.h",
            "longintrepr.h",
            "opcode.h",
        ],
        (3, 9) => &[
            "frameobject.h",
            "internal/pycore_runtime.h",
            "internal/pycore_interp.h",
            "longintrepr.h",
            "opcode.h",
        ],
        (3, 10) => &[
            "frameobject.h",
            "internal/pycore_runtime.h",
            "internal/pycore_interp.h",
            "longintrepr.h",
            "internal/pycore_moduleobject.h",
            "opcode.h",
        ],
        (3, 11..=13) => &[
            "internal/pycore_runtime.h",
            "internal/pycore_interp.h",
            "internal/pycore_frame.h",
            "internal/pycore_moduleobject.h",
            "internal/pycore_dict.h",
            "internal/pycore_object.h",
        ],
        _ => &[
            "internal/pycore_runtime_structs.h",
            "internal/pycore_interp_structs.h",
            "internal/pycore_interpframe_structs.h",
            "internal/pycore_debug_offsets.h",
            "internal/pycore_moduleobject.h",
            "internal/pycore_dict.h",
            "internal/pycore_object.h",
            "internal/pycore_instruments.h",
            "internal/pycore_frame.h",
            "internal/pycore_tstate.h",
        ],
    }
}

/// C declarations added after the headers, for structures a version keeps out of its installed
/// headers (in `Objects/*.c` or `Objects/dict-common.h`). Each is CPython's own definition,
/// trimmed after the last field pyspy reads; bindgen then measures them like the others.
pub fn private_decls(v: Minor) -> &'static [&'static str] {
    // Objects/moduleobject.c (2.7–3.9); 3.10+ has internal/pycore_moduleobject.h.
    const MODULE: &str = "typedef struct { PyObject_HEAD PyObject *md_dict; } PyModuleObject;";
    // Objects/dict-common.h (3.6–3.10). 3.6 declares dk_indices as a union of arrays starting at
    // the same offset; `dk_lookup` is a function pointer.
    const KEY_ENTRY: &str = "typedef struct { Py_hash_t me_hash; PyObject *me_key; \
                             PyObject *me_value; } PyDictKeyEntry;";
    const KEYS: &str = "struct _dictkeysobject { Py_ssize_t dk_refcnt; Py_ssize_t dk_size; \
                        void *dk_lookup; Py_ssize_t dk_usable; Py_ssize_t dk_nentries; \
                        char dk_indices[8]; };";
    match v {
        (2, _) => &[MODULE],
        (3, 0..=9) => &[MODULE, KEY_ENTRY, KEYS],
        (3, 10) => &[KEY_ENTRY, KEYS],
        _ => &[],
    }
}

/// Whether the version needs `-DPy_BUILD_CORE` (its internal headers are included).
pub fn build_core(v: Minor) -> bool {
    v >= (3, 7)
}

/// One value pyspy takes from `_Py_DebugOffsets` (3.13+): the `Layout` field, where its value
/// sits in the block (a path in `_Py_DebugOffsets`) and, for offsets, the path of the size of
/// the structure it must lie inside (`None`: the value is itself a size).
pub struct DebugRow {
    pub field: &'static str,
    pub value: &'static str,
    pub within: Option<&'static str>,
    pub from: Minor,
    /// The block's value is relative to this other one (which is added).
    pub plus: Option<&'static str>,
    /// Only free-threaded builds fill the value (it is 0 in default builds).
    pub free_threaded_only: bool,
}

const fn d(field: &'static str, value: &'static str, within: Option<&'static str>) -> DebugRow {
    DebugRow {
        field,
        value,
        within,
        from: (3, 13),
        plus: None,
        free_threaded_only: false,
    }
}

const fn d_from(
    from: Minor,
    field: &'static str,
    value: &'static str,
    within: Option<&'static str>,
) -> DebugRow {
    DebugRow {
        from,
        ..d(field, value, within)
    }
}

const RT: Option<&str> = Some("runtime_state.size");
const IS: Option<&str> = Some("interpreter_state.size");
const TS: Option<&str> = Some("thread_state.size");
const IF: Option<&str> = Some("interpreter_frame.size");
const CO: Option<&str> = Some("code_object.size");
const UO: Option<&str> = Some("unicode_object.size");

pub const DEBUG_ROWS: &[DebugRow] = &[
    d(
        "runtime_interpreters_head",
        "runtime_state.interpreters_head",
        RT,
    ),
    d("interp_size", "interpreter_state.size", None),
    d("interp_next", "interpreter_state.next", IS),
    d("interp_threads_head", "interpreter_state.threads_head", IS),
    d("interp_id", "interpreter_state.id", IS),
    d("interp_modules", "interpreter_state.imports_modules", IS),
    d(
        "interp_gil_locked",
        "interpreter_state.gil_runtime_state_locked",
        IS,
    ),
    d(
        "interp_gil_last_holder",
        "interpreter_state.gil_runtime_state_holder",
        IS,
    ),
    d_from(
        (3, 14),
        "interp_code_object_generation",
        "interpreter_state.code_object_generation",
        IS,
    ),
    d("tstate_size", "thread_state.size", None),
    d("tstate_next", "thread_state.next", TS),
    d("tstate_interp", "thread_state.interp", TS),
    d("tstate_frame", "thread_state.current_frame", TS),
    d("tstate_thread_id", "thread_state.thread_id", TS),
    d(
        "tstate_native_thread_id",
        "thread_state.native_thread_id",
        TS,
    ),
    d("tstate_datastack_chunk", "thread_state.datastack_chunk", TS),
    d("iframe_size", "interpreter_frame.size", None),
    d("iframe_previous", "interpreter_frame.previous", IF),
    d("iframe_executable", "interpreter_frame.executable", IF),
    d("iframe_instr_ptr", "interpreter_frame.instr_ptr", IF),
    d("iframe_owner", "interpreter_frame.owner", IF),
    d("iframe_localsplus", "interpreter_frame.localsplus", IF),
    d("code_size", "code_object.size", None),
    d("code_argcount", "code_object.argcount", CO),
    d("code_filename", "code_object.filename", CO),
    d("code_name", "code_object.name", CO),
    d("code_qualname", "code_object.qualname", CO),
    d("code_linetable", "code_object.linetable", CO),
    d("code_firstlineno", "code_object.firstlineno", CO),
    d("code_adaptive", "code_object.co_code_adaptive", CO),
    d("code_localsplusnames", "code_object.localsplusnames", CO),
    d("code_localspluskinds", "code_object.localspluskinds", CO),
    d("object_type", "pyobject.ob_type", Some("pyobject.size")),
    d("type_name", "type_object.tp_name", Some("type_object.size")),
    d(
        "type_flags",
        "type_object.tp_flags",
        Some("type_object.size"),
    ),
    d(
        "varobject_size",
        "tuple_object.ob_size",
        Some("tuple_object.size"),
    ),
    d(
        "tuple_items",
        "tuple_object.ob_item",
        Some("tuple_object.size"),
    ),
    d(
        "list_items",
        "list_object.ob_item",
        Some("list_object.size"),
    ),
    d(
        "bytes_size",
        "bytes_object.ob_size",
        Some("bytes_object.size"),
    ),
    d(
        "bytes_sval",
        "bytes_object.ob_sval",
        Some("bytes_object.size"),
    ),
    d("unicode_state", "unicode_object.state", UO),
    d("unicode_length", "unicode_object.length", UO),
    d(
        "unicode_ascii_size",
        "unicode_object.asciiobject_size",
        None,
    ),
    d_from(
        (3, 15),
        "unicode_compact_size",
        "unicode_object.compactunicodeobject_size",
        None,
    ),
    // Thread names: instance attributes, dicts, ints.
    d("dict_keys", "dict_object.ma_keys", Some("dict_object.size")),
    d(
        "dict_values",
        "dict_object.ma_values",
        Some("dict_object.size"),
    ),
    d("long_tag", "long_object.lv_tag", Some("long_object.size")),
    d(
        "long_digits",
        "long_object.ob_digit",
        Some("long_object.size"),
    ),
    d_from(
        (3, 15),
        "type_basicsize",
        "type_object.tp_basicsize",
        Some("type_object.size"),
    ),
    d_from(
        (3, 15),
        "type_dictoffset",
        "type_object.tp_dictoffset",
        Some("type_object.size"),
    ),
    d_from(
        (3, 15),
        "heaptype_cached_keys",
        "heap_type_object.ht_cached_keys",
        Some("heap_type_object.size"),
    ),
    // Free-threaded builds. `gil_runtime_state_enabled` is `offsetof(struct
    // _gil_runtime_state, enabled)`, relative to the interpreter's `_gil` (and 0, its first
    // field, in both builds); the others are 0 in default builds.
    d(
        "float_value",
        "float_object.ob_fval",
        Some("float_object.size"),
    ),
    d_from(
        (3, 14),
        "set_used",
        "set_object.used",
        Some("set_object.size"),
    ),
    d_from(
        (3, 14),
        "set_mask",
        "set_object.mask",
        Some("set_object.size"),
    ),
    d_from(
        (3, 14),
        "set_table",
        "set_object.table",
        Some("set_object.size"),
    ),
    d_from(
        (3, 15),
        "tstate_current_exception",
        "thread_state.current_exception",
        TS,
    ),
    DebugRow {
        plus: Some("interpreter_state.gil_runtime_state"),
        free_threaded_only: true,
        ..d(
            "interp_gil_enabled",
            "interpreter_state.gil_runtime_state_enabled",
            IS,
        )
    },
    DebugRow {
        free_threaded_only: true,
        ..d_from((3, 14), "code_tlbc", "code_object.co_tlbc", CO)
    },
    DebugRow {
        free_threaded_only: true,
        ..d_from(
            (3, 14),
            "iframe_tlbc_index",
            "interpreter_frame.tlbc_index",
            IF,
        )
    },
];

/// The block's own type and header fields.
pub const DEBUG_TYPE: &str = "_Py_DebugOffsets";
pub const DEBUG_VERSION: &str = "version";
pub const DEBUG_FREE_THREADED: &str = "free_threaded";
pub const DEBUG_FIRST: Minor = (3, 13);
