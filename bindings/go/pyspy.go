// Package pyspy reads every thread's Python stack from a running CPython process, from
// outside, without stopping or changing it, and samples processes into profiles (pprof,
// collapsed stacks, speedscope). It wraps libpyspy, the C API of pyspy, through cgo.
//
// Import it as
//
//	import pyspy "github.com/pyspy/pyspy/bindings/go"
//
// and build with libpyspy installed (`cargo xtask install --prefix DIR`) and
// PKG_CONFIG_PATH=DIR/lib/pkgconfig: the default build links DIR/lib/libpyspy.so with an
// rpath (nothing to set at run time); `-tags static` links DIR/lib/libpyspy.a instead.
//
// A snapshot of every thread:
//
//	session, err := pyspy.Attach(ctx, pid, nil)
//	if err != nil {
//		return err // errors.Is(err, pyspy.ErrPermissionDenied), ...
//	}
//	defer session.Close()
//	snapshot, err := session.Snapshot()
//	for _, t := range snapshot.Threads {
//		for _, f := range t.Frames {
//			fmt.Printf("%s (%s:%d)\n", f.Function, f.Filename, f.Line)
//		}
//	}
//
// Continuous profiling: StartSampler samples on a thread of libpyspy's own until the context
// is done, the process exits, the duration is over or Stop/Close; Sampler.Profile gives the
// aggregated stacks to Export, Sampler.Samples the samples themselves, Sampler.Wait blocks
// until the end.
//
// Objects that hold C memory (Session, Sampler, Profile) have a Close method; call it when
// done. A finalizer frees what was not closed, as a safety net only. Snapshots and samples are
// plain Go values. Errors from libpyspy are *Error values that errors.Is matches against the
// Err* variables (errors.Is(err, pyspy.ErrNoSuchProcess)) and errors.As unwraps.
package pyspy

/*
#include <stdlib.h>
#include <pyspy.h>
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Version is the version of the libpyspy this program runs with.
func Version() string {
	return C.GoString(C.pyspy_version())
}

// HeaderVersion is the version of the pyspy.h this package was compiled against.
const HeaderVersion = C.PYSPY_VERSION

// LocateStrategy says how Attach finds the interpreter in the target.
type LocateStrategy int

const (
	// LocateAuto tries symbols, then the debug offsets (3.13+), then a data-section scan.
	LocateAuto LocateStrategy = C.PYSPY_LOCATE_AUTO
	// LocateSymbols finds _PyRuntime / interp_head in the ELF symbol tables only.
	LocateSymbols LocateStrategy = C.PYSPY_LOCATE_SYMBOLS
	// LocateDebugOffsets finds the _Py_DebugOffsets block by its cookie only (3.13+).
	LocateDebugOffsets LocateStrategy = C.PYSPY_LOCATE_DEBUG_OFFSETS
	// LocateBSSScan scans the binaries' data sections only.
	LocateBSSScan LocateStrategy = C.PYSPY_LOCATE_BSS_SCAN
)

// Options say how to attach and sample. The zero value (or a nil *Options) is the default.
type Options struct {
	// Locate says how to find the interpreter (default LocateAuto).
	Locate LocateStrategy
	// WaitForInit retries attaching, every 10 ms and for up to this long, to a process whose
	// interpreter is not there yet (just started). 0: answer at once.
	WaitForInit time.Duration
	// Pause stops the target's Python threads while each snapshot reads them (needs ptrace
	// rights; always resumed). Default: never stop the target.
	Pause bool
	// CPUTime reads each thread's CPU time (Thread.CPUTime).
	CPUTime bool
	// Idle counts idle threads in profiles too (snapshots always include them).
	Idle bool
	// IdleIfRan, without Idle, makes snapshots leave out the idle threads that did not run
	// since the previous snapshot, without reading their stacks: a CPU profile (with CPUTime)
	// needs only the threads that ran, and many sleeping threads then cost almost nothing.
	IdleIfRan bool
	// GILOnly keeps only the thread holding the GIL, in snapshots and profiles.
	GILOnly bool
	// Native also unwinds each thread's native (C, C++, Rust) stack and merges it with the
	// Python one (Frame.Native marks those frames). Needs Pause.
	Native bool
	// NativeAll, with Native, keeps the interpreter's own native frames too.
	NativeAll bool
	// Rate is a sampler's mean samples per second (0: the default, 100).
	Rate float64
	// Duration stops a sampler after this long (0: until the process exits, the context is
	// done, or Stop).
	Duration time.Duration
	// Subprocesses also samples the process's Python descendants (multiprocessing workers).
	Subprocesses bool
	// PerFunction aggregates profiles per function instead of per line.
	PerFunction bool
	// PerThread keeps the stacks of different threads apart in profiles.
	PerThread bool
	// PerProcess keeps the stacks of different processes apart in profiles (with
	// Subprocesses): pprof samples carry a "pid" label.
	PerProcess bool
	// SampleBuffer, if > 0, makes Sampler.Samples deliver every sample on a channel buffered
	// for this many samples. A sample that finds the buffer full is dropped (counted in
	// Stats.Dropped): a slow reader never holds the sampler up.
	SampleBuffer int
	// Locals reads each frame's arguments and local variables (Frame.Locals).
	Locals bool
	// Exceptions reads each thread's exception state (Thread.Exception, Thread.Propagating).
	Exceptions bool
	// ExceptionsOnly makes profiles count only threads handling or propagating an exception
	// (it reads the exception state too).
	ExceptionsOnly bool
	// Positions reads each frame's exact position and opcode (Python 3.11+).
	Positions bool
	// Tasks reads the target's asyncio tasks into Snapshot.Tasks (Python 3.7+).
	Tasks bool
	// AsyncStacks shows a thread running an asyncio task with the task's logical stack (its
	// frames, a frame named after the task with file "<task>", then the tasks awaiting it)
	// instead of its event loop's, in snapshots and profiles.
	AsyncStacks bool
	// Repr says how much of a value Frame.Locals and exception messages show (nil: the
	// defaults, 3 levels, 10 elements per container, 80 characters, 100 elements in all).
	Repr *ReprLimits
}

// ReprLimits bound the reprs of values read from the target.
type ReprLimits struct {
	Depth, Items, String, Total uint32
}

// cOptions makes the C options object for o (nil: defaults) without a sample callback and
// with no wait for init (Attach retries itself); free it with C.pyspy_options_free.
func (o *Options) cOptions() (*C.pyspy_options, error) {
	opts := C.pyspy_options_new()
	if opts == nil {
		return nil, &Error{Code: StatusPanic, Message: "pyspy_options_new failed"}
	}
	if o == nil {
		return opts, nil
	}
	var bad []string
	set := func(what string, status C.enum_pyspy_status) {
		if status != C.PYSPY_STATUS_OK {
			bad = append(bad, what)
		}
	}
	set("Locate", C.pyspy_options_set_locate(opts, C.pyspy_locate(o.Locate)))
	set("Pause", C.pyspy_options_set_pause(opts, C.bool(o.Pause)))
	set("CPUTime", C.pyspy_options_set_cpu_time(opts, C.bool(o.CPUTime)))
	set("GILOnly", C.pyspy_options_set_gil_only(opts, C.bool(o.GILOnly)))
	set("Native", C.pyspy_options_set_native(opts, C.bool(o.Native)))
	set("NativeAll", C.pyspy_options_set_native_all(opts, C.bool(o.NativeAll)))
	if o.Idle {
		set("Idle", C.pyspy_options_set_idle(opts, true))
	} else if o.IdleIfRan {
		set("IdleIfRan", C.pyspy_options_set_idle(opts, false))
		set("IdleIfRan", C.pyspy_options_set_idle_if_ran(opts, true))
	}
	if o.Rate != 0 {
		set("Rate", C.pyspy_options_set_rate(opts, C.double(o.Rate)))
	}
	if o.Duration < 0 {
		bad = append(bad, "Duration")
	}
	if o.WaitForInit < 0 {
		bad = append(bad, "WaitForInit")
	}
	if o.SampleBuffer < 0 {
		bad = append(bad, "SampleBuffer")
	}
	set("Duration", C.pyspy_options_set_duration_ms(opts, C.uint64_t(o.Duration.Milliseconds())))
	set("Subprocesses", C.pyspy_options_set_subprocesses(opts, C.bool(o.Subprocesses)))
	set("PerFunction", C.pyspy_options_set_lines(opts, C.bool(!o.PerFunction)))
	set("PerThread", C.pyspy_options_set_per_thread(opts, C.bool(o.PerThread)))
	set("PerProcess", C.pyspy_options_set_per_process(opts, C.bool(o.PerProcess)))
	set("Locals", C.pyspy_options_set_locals(opts, C.bool(o.Locals)))
	set("Exceptions", C.pyspy_options_set_exceptions(opts, C.bool(o.Exceptions), C.bool(o.ExceptionsOnly)))
	set("Positions", C.pyspy_options_set_positions(opts, C.bool(o.Positions)))
	set("Tasks", C.pyspy_options_set_tasks(opts, C.bool(o.Tasks), C.bool(o.AsyncStacks)))
	if r := o.Repr; r != nil {
		set("Repr", C.pyspy_options_set_repr_limits(opts, C.uint32_t(r.Depth), C.uint32_t(r.Items),
			C.uint32_t(r.String), C.uint32_t(r.Total)))
	}
	if len(bad) > 0 {
		C.pyspy_options_free(opts)
		return nil, &Error{Code: StatusInvalidArgument, Message: fmt.Sprintf("invalid options %v: %+v", bad, *o)}
	}
	return opts, nil
}

// ErrClosed is returned by methods of a Session, Sampler or Profile after Close.
var ErrClosed = errors.New("pyspy: use of a closed object")

// Session is an attached process. Its methods may be called from any goroutine; calls on one
// session are serialised. Close it when done.
type Session struct {
	mu  sync.Mutex
	ptr *C.pyspy_session
	pid int
}

// Attach attaches to process pid: it finds the interpreter, its version and memory layout
// once, so that each Snapshot only reads the process's memory. opts may be nil. With
// opts.WaitForInit it retries while the process's interpreter is not there yet, until ctx is
// done (then it returns ctx.Err()).
func Attach(ctx context.Context, pid int, opts *Options) (*Session, error) {
	copts, err := opts.cOptions()
	if err != nil {
		return nil, err
	}
	defer C.pyspy_options_free(copts)
	var wait time.Duration
	if opts != nil {
		wait = opts.WaitForInit
	}
	deadline := time.Now().Add(wait)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ptr *C.pyspy_session
		var cerr *C.pyspy_error
		status := C.pyspy_attach(C.int32_t(pid), copts, &ptr, &cerr)
		if status == C.PYSPY_STATUS_OK {
			s := &Session{ptr: ptr, pid: pid}
			runtime.SetFinalizer(s, (*Session).Close)
			return s, nil
		}
		err := takeError(status, cerr)
		starting := errors.Is(err, ErrNotInitialised) || errors.Is(err, ErrNotPython)
		if !starting || !time.Now().Before(deadline) {
			return nil, err
		}
		timer := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// Close detaches from the process and frees the session. Closing twice is fine.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr != nil {
		C.pyspy_session_free(s.ptr)
		s.ptr = nil
		runtime.SetFinalizer(s, nil)
	}
	return nil
}

// Pid is the process id the session is attached to.
func (s *Session) Pid() int { return s.pid }

// PythonVersion is the target's Python version, e.g. "3.12.1" ("" after Close).
func (s *Session) PythonVersion() string {
	return s.str(func(p *C.pyspy_session) *C.char { return C.pyspy_session_python_version(p) })
}

// Executable is the target's executable as the target sees it ("" after Close).
func (s *Session) Executable() string {
	return s.str(func(p *C.pyspy_session) *C.char { return C.pyspy_session_executable(p) })
}

// InterpreterBinary is the file holding the interpreter (the executable or a libpython*.so),
// as the target sees it ("" after Close).
func (s *Session) InterpreterBinary() string {
	return s.str(func(p *C.pyspy_session) *C.char { return C.pyspy_session_interpreter_binary(p) })
}

// LocatedBy says how the interpreter was found: "symbols", "debug-offsets", "bss-scan".
func (s *Session) LocatedBy() string {
	return s.str(func(p *C.pyspy_session) *C.char { return C.pyspy_session_located_by(p) })
}

func (s *Session) str(get func(*C.pyspy_session) *C.char) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return ""
	}
	return C.GoString(get(s.ptr))
}

// Snapshot reads every thread's Python stack once. After StartSampler on this session it
// fails with ErrInvalidArgument: the sampler has the process now.
func (s *Session) Snapshot() (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return nil, ErrClosed
	}
	var snap *C.pyspy_snapshot
	var cerr *C.pyspy_error
	status := C.pyspy_session_snapshot(s.ptr, &snap, &cerr)
	if status != C.PYSPY_STATUS_OK {
		return nil, takeError(status, cerr)
	}
	defer C.pyspy_snapshot_free(snap)
	return convertSnapshot(snap), nil
}

// SetOptions makes the session's later snapshots read what opts asks for: Pause, Idle,
// CPUTime, Locals, Exceptions, Positions, Native and the other sample options (nil: the
// defaults). It is how a core session (OpenCore) gets native frames or locals; on a core,
// Pause does nothing.
func (s *Session) SetOptions(opts *Options) error {
	copts, err := opts.cOptions()
	if err != nil {
		return err
	}
	defer C.pyspy_options_free(copts)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return ErrClosed
	}
	var cerr *C.pyspy_error
	if status := C.pyspy_session_set_options(s.ptr, copts, &cerr); status != C.PYSPY_STATUS_OK {
		return takeError(status, cerr)
	}
	return nil
}

// Snapshot is every Python thread of a process at one moment.
type Snapshot struct {
	Threads []Thread
	// Tasks are the process's asyncio tasks (with Options.Tasks; see Task).
	Tasks []Task
}

// Thread is a Python thread and its stack.
type Thread struct {
	// ID is the Python thread ident (threading.get_ident()).
	ID uint64
	// NativeID is the OS thread id (threading.get_native_id()), 0 if unknown.
	NativeID uint64
	// Name is threading.Thread.name, "" if unknown.
	Name string
	// OwnsGIL says whether the thread held the GIL at the time of the snapshot.
	OwnsGIL bool
	// NoGIL says there is no GIL state for the thread (a free-threaded build running
	// without the GIL, or pyspy cannot see it); OwnsGIL is then false and means nothing.
	NoGIL bool
	// Active says whether the OS thread was running on a CPU (false when not known).
	Active bool
	// ActiveKnown says whether Active is known: false for a core file (OpenCore), which does
	// not record it.
	ActiveKnown bool
	// CPUTime is the thread's CPU time so far, -1 if not read (see Options.CPUTime).
	CPUTime time.Duration
	// InterpreterID is the id of the interpreter the thread belongs to (0: the main one,
	// others: sub-interpreters), -1 if unknown (before Python 3.7).
	InterpreterID int64
	// Frames is the stack, innermost first.
	Frames []Frame
	// Exception is the exception the thread is handling (sys.exc_info()), nil if none or not
	// read (Options.Exceptions).
	Exception *ExceptionInfo
	// Propagating is an exception raised and not caught yet (the sample caught the stack
	// unwinding), nil if none.
	Propagating *ExceptionInfo
	// Error says why the stack could not be read to its end ("" if it was): Frames are then
	// those read before the failure. The snapshot's other threads are not affected.
	Error string
	// Truncated says whether frames were left out (a stack deeper than pyspy keeps): Frames
	// are then the innermost and outermost ones, cut at index Cut.
	Truncated bool
	Cut       int
}

// ExceptionInfo is an exception as a debugger shows it.
type ExceptionInfo struct {
	Type    string // the type's name: "ValueError", a class's name, a C type's dotted name
	Message string // bounded repr of its argument (of its args tuple if several)
}

// Frame is one Python frame, or with Options.Native a native one.
type Frame struct {
	Function string // co_name; a native frame's demangled function, "" if unknown
	Qualname string // co_qualname (3.11+), "" where the version has none
	Filename string // co_filename, as the target sees it; a native frame's source file or binary
	Line     int    // 0 if unknown
	Native   bool   // a native (C, C++, Rust) frame
	Address  uint64 // a native frame's instruction or return address, 0 for Python frames
	// EndLine, Column, EndColumn: where the expression being executed is (3.11+, with
	// Options.Positions; columns are 0-based UTF-8 byte offsets); -1 if unknown.
	EndLine, Column, EndColumn int
	// Opcode is the base opcode being executed, as dis shows it (3.11+); -1 if unknown.
	Opcode int
	// Locals are the frame's bound variables (with Options.Locals).
	Locals []Local
}

// LocalKind says what kind of variable a Local is: "arg", "local", "cell" or "free".
type LocalKind string

// Local is a variable of a frame.
type Local struct {
	Name string
	Kind LocalKind
	Repr string // a bounded repr of its value
}

func exceptionInfo(typ, message *C.char) *ExceptionInfo {
	if typ == nil {
		return nil
	}
	return &ExceptionInfo{Type: C.GoString(typ), Message: goStringOrEmpty(message)}
}

func optionalInt(get func(*C.int32_t) C.bool) int {
	var v C.int32_t
	if get(&v) {
		return int(v)
	}
	return -1
}

func goStringOrEmpty(s *C.char) string {
	if s == nil {
		return ""
	}
	return C.GoString(s)
}

func convertSnapshot(snap *C.pyspy_snapshot) *Snapshot {
	n := int(C.pyspy_snapshot_thread_count(snap))
	out := &Snapshot{Threads: make([]Thread, 0, n)}
	for i := 0; i < n; i++ {
		t := C.pyspy_snapshot_thread(snap, C.size_t(i))
		th := Thread{
			ID:            uint64(C.pyspy_thread_id(t)),
			Name:          goStringOrEmpty(C.pyspy_thread_name(t)),
			OwnsGIL:       bool(C.pyspy_thread_owns_gil(t)),
			NoGIL:         bool(C.pyspy_thread_no_gil(t)),
			CPUTime:       -1,
			InterpreterID: -1,
		}
		var active C.bool
		if C.pyspy_thread_activity(t, &active) {
			th.Active, th.ActiveKnown = bool(active), true
		}
		var tid C.uint64_t
		if C.pyspy_thread_native_id(t, &tid) {
			th.NativeID = uint64(tid)
		}
		th.Error = goStringOrEmpty(C.pyspy_thread_error(t))
		var cut C.size_t
		if C.pyspy_thread_truncated(t, &cut) {
			th.Truncated = true
			th.Cut = int(cut)
		}
		var ns C.uint64_t
		if C.pyspy_thread_cpu_time_ns(t, &ns) {
			th.CPUTime = time.Duration(ns)
		}
		var interp C.int64_t
		if C.pyspy_thread_interpreter_id(t, &interp) {
			th.InterpreterID = int64(interp)
		}
		nf := int(C.pyspy_thread_frame_count(t))
		th.Frames = make([]Frame, 0, nf)
		for j := 0; j < nf; j++ {
			th.Frames = append(th.Frames, convertFrame(C.pyspy_thread_frame(t, C.size_t(j))))
		}
		th.Exception = exceptionInfo(C.pyspy_thread_exception_type(t), C.pyspy_thread_exception_message(t))
		th.Propagating = exceptionInfo(C.pyspy_thread_propagating_type(t), C.pyspy_thread_propagating_message(t))
		out.Threads = append(out.Threads, th)
	}
	out.Tasks = convertTasks(snap)
	return out
}

// convertFrame copies a frame of a snapshot (a thread's or a task's).
func convertFrame(f *C.pyspy_frame) Frame {
	fr := Frame{
		Function:  goStringOrEmpty(C.pyspy_frame_function(f)),
		Qualname:  goStringOrEmpty(C.pyspy_frame_qualname(f)),
		Filename:  goStringOrEmpty(C.pyspy_frame_filename(f)),
		Line:      int(C.pyspy_frame_line(f)),
		EndLine:   optionalInt(func(v *C.int32_t) C.bool { return C.pyspy_frame_end_line(f, v) }),
		Column:    optionalInt(func(v *C.int32_t) C.bool { return C.pyspy_frame_column(f, v) }),
		EndColumn: optionalInt(func(v *C.int32_t) C.bool { return C.pyspy_frame_end_column(f, v) }),
		Opcode:    -1,
		Native:    bool(C.pyspy_frame_is_native(f)),
	}
	var address C.uint64_t
	if C.pyspy_frame_address(f, &address) {
		fr.Address = uint64(address)
	}
	var op C.uint8_t
	if C.pyspy_frame_opcode(f, &op) {
		fr.Opcode = int(op)
	}
	kinds := map[uint32]LocalKind{
		C.PYSPY_VARIABLE_KIND_ARG: "arg", C.PYSPY_VARIABLE_KIND_LOCAL: "local",
		C.PYSPY_VARIABLE_KIND_CELL: "cell", C.PYSPY_VARIABLE_KIND_FREE: "free",
	}
	nl := int(C.pyspy_frame_local_count(f))
	for k := 0; k < nl; k++ {
		l := C.pyspy_frame_local(f, C.size_t(k))
		fr.Locals = append(fr.Locals, Local{
			Name: goStringOrEmpty(C.pyspy_local_name(l)),
			Kind: kinds[uint32(C.pyspy_local_kind(l))],
			Repr: goStringOrEmpty(C.pyspy_local_repr(l)),
		})
	}
	return fr
}

// takeError turns a failed status and its C error object (freed here) into a Go error.
func takeError(status C.enum_pyspy_status, cerr *C.pyspy_error) error {
	e := &Error{Code: Status(status)}
	if cerr != nil {
		e.Message = C.GoString(C.pyspy_error_message(cerr))
		C.pyspy_error_free(cerr)
	}
	return e
}

// Error is a failure reported by libpyspy: a status and a message. errors.Is(err, ErrX)
// matches on the status; errors.As(err, &e) gives the details.
type Error struct {
	Code    Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "pyspy: " + e.Code.String()
	}
	return "pyspy: " + e.Message
}

// Unwrap gives the status, so that errors.Is(err, pyspy.ErrNoSuchProcess) works.
func (e *Error) Unwrap() error { return e.Code }

// Status is a status code of libpyspy (PYSPY_STATUS_*). It is an error itself, so the Err*
// values below can be used with errors.Is.
type Status int

// The status codes; values are those of pyspy.h and never change.
const (
	StatusOK                 Status = C.PYSPY_STATUS_OK
	StatusInvalidArgument    Status = C.PYSPY_STATUS_INVALID_ARGUMENT
	StatusPanic              Status = C.PYSPY_STATUS_PANIC
	StatusBufferTooSmall     Status = C.PYSPY_STATUS_BUFFER_TOO_SMALL
	StatusUnsupported        Status = C.PYSPY_STATUS_UNSUPPORTED
	StatusOther              Status = C.PYSPY_STATUS_OTHER
	StatusNoSuchProcess      Status = C.PYSPY_STATUS_NO_SUCH_PROCESS
	StatusPermissionDenied   Status = C.PYSPY_STATUS_PERMISSION_DENIED
	StatusNotPython          Status = C.PYSPY_STATUS_NOT_PYTHON
	StatusUnsupportedVersion Status = C.PYSPY_STATUS_UNSUPPORTED_VERSION
	StatusNotInitialised     Status = C.PYSPY_STATUS_NOT_INITIALISED
	StatusProcessExited      Status = C.PYSPY_STATUS_PROCESS_EXITED
	StatusMemory             Status = C.PYSPY_STATUS_MEMORY
	StatusCorrupt            Status = C.PYSPY_STATUS_CORRUPT
	StatusIO                 Status = C.PYSPY_STATUS_IO
	StatusTimeout            Status = C.PYSPY_STATUS_TIMEOUT
	StatusExec               Status = C.PYSPY_STATUS_EXEC
)

// Errors to test for with errors.Is.
var (
	ErrInvalidArgument    error = StatusInvalidArgument
	ErrPanic              error = StatusPanic
	ErrBufferTooSmall     error = StatusBufferTooSmall
	ErrUnsupported        error = StatusUnsupported
	ErrOther              error = StatusOther
	ErrNoSuchProcess      error = StatusNoSuchProcess
	ErrPermissionDenied   error = StatusPermissionDenied
	ErrNotPython          error = StatusNotPython
	ErrUnsupportedVersion error = StatusUnsupportedVersion
	ErrNotInitialised     error = StatusNotInitialised
	ErrProcessExited      error = StatusProcessExited
	ErrMemory             error = StatusMemory
	ErrCorrupt            error = StatusCorrupt
	ErrIO                 error = StatusIO
	ErrExec               error = StatusExec
)

// String is the C name, e.g. "PYSPY_STATUS_NO_SUCH_PROCESS".
func (s Status) String() string {
	if name := C.pyspy_status_name(C.int(s)); name != nil {
		return C.GoString(name)
	}
	return fmt.Sprintf("PYSPY_STATUS_%d", int(s))
}

func (s Status) Error() string { return "pyspy: " + s.String() }

// Format is an export format of a profile.
type Format int

const (
	// Collapsed stacks: "root;...;leaf count" lines (text).
	Collapsed Format = C.PYSPY_FORMAT_COLLAPSED
	// Pprof: a gzip'd perftools.profiles.Profile (Pyroscope, DataKit, go tool pprof).
	Pprof Format = C.PYSPY_FORMAT_PPROF
	// Speedscope JSON.
	Speedscope Format = C.PYSPY_FORMAT_SPEEDSCOPE
)

// Profile is aggregated stacks taken from a Sampler. Its methods may be called from any
// goroutine. Close it when done.
type Profile struct {
	mu  sync.Mutex
	ptr *C.pyspy_profile
}

// Samples is how many samples the profile counts.
func (p *Profile) Samples() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ptr == nil {
		return 0
	}
	return uint64(C.pyspy_profile_samples(p.ptr))
}

// Export encodes the profile in format.
func (p *Profile) Export(format Format) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ptr == nil {
		return nil, ErrClosed
	}
	var buf *C.pyspy_buffer
	var cerr *C.pyspy_error
	if status := C.pyspy_profile_export_buffer(p.ptr, C.pyspy_format(format), &buf, &cerr); status != C.PYSPY_STATUS_OK {
		return nil, takeError(status, cerr)
	}
	defer C.pyspy_buffer_free(buf)
	n := int(C.pyspy_buffer_len(buf))
	out := make([]byte, n)
	if n > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(C.pyspy_buffer_data(buf))), n))
	}
	return out, nil
}

// Close frees the profile. Closing twice is fine.
func (p *Profile) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ptr != nil {
		C.pyspy_profile_free(p.ptr)
		p.ptr = nil
		runtime.SetFinalizer(p, nil)
	}
	return nil
}
