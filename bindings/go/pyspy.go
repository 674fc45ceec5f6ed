// Package pyspy reads every thread's Python stack from a running CPython process, from
// outside, without stopping or changing it. It wraps libpyspy (the C API of pyspy) through cgo
// and finds it with pkg-config: install it with `cargo xtask install --prefix DIR` and build
// with PKG_CONFIG_PATH=DIR/lib/pkgconfig (and DIR/lib on the run-time library path).
//
//	session, err := pyspy.Attach(pid, nil)
//	if err != nil {
//		return err // errors.Is(err, pyspy.ErrPermissionDenied), ...
//	}
//	defer session.Close()
//	snapshot, err := session.Sample()
//	for _, t := range snapshot.Threads {
//		for _, f := range t.Frames {
//			fmt.Printf("%s (%s:%d)\n", f.Function, f.Filename, f.Line)
//		}
//	}
//
// Objects that hold C memory (Session) have a Close method; call it when done. A finalizer
// frees what was not closed, as a safety net only. Snapshots are plain Go values.
package pyspy

/*
#cgo pkg-config: pyspy
#include <stdlib.h>
#include <pyspy.h>
*/
import "C"

import (
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

// Options say how to attach and sample. The zero value (or a nil *Options) is the default.
type Options struct {
	// Pause stops the target's Python threads while each sample reads them (needs ptrace
	// rights; always resumed). Default: never stop the target.
	Pause bool
	// CPUTime reads each thread's CPU time (Thread.CPUTime).
	CPUTime bool
	// Idle counts idle threads in profiles too (snapshots always include them).
	Idle bool
	// GILOnly keeps only the thread holding the GIL, in snapshots and profiles.
	GILOnly bool
	// WaitForInit retries attaching to a process whose interpreter is not initialised yet.
	WaitForInit time.Duration
	// Rate is a sampler's mean samples per second (0: the default, 100).
	Rate float64
	// Duration stops a sampler after this long (0: until the process exits or Stop).
	Duration time.Duration
	// Subprocesses also samples the process's Python descendants.
	Subprocesses bool
	// PerFunction aggregates profiles per function instead of per line.
	PerFunction bool
	// PerThread keeps the stacks of different threads apart in profiles.
	PerThread bool
}

// cOptions makes the C options object for o (nil: defaults); free it with
// C.pyspy_options_free.
func (o *Options) cOptions() (*C.pyspy_options, error) {
	opts := C.pyspy_options_new()
	if opts == nil {
		return nil, &Error{Code: StatusPanic, Message: "pyspy_options_new failed"}
	}
	if o == nil {
		return opts, nil
	}
	ok := true
	set := func(status uint32) { ok = ok && status == C.PYSPY_STATUS_OK }
	set(C.pyspy_options_set_pause(opts, C.bool(o.Pause)))
	set(C.pyspy_options_set_cpu_time(opts, C.bool(o.CPUTime)))
	set(C.pyspy_options_set_gil_only(opts, C.bool(o.GILOnly)))
	if o.Idle {
		set(C.pyspy_options_set_idle(opts, true))
	}
	set(C.pyspy_options_set_wait_for_init_ms(opts, C.uint64_t(o.WaitForInit.Milliseconds())))
	if o.Rate != 0 {
		set(C.pyspy_options_set_rate(opts, C.double(o.Rate)))
	}
	set(C.pyspy_options_set_duration_ms(opts, C.uint64_t(o.Duration.Milliseconds())))
	set(C.pyspy_options_set_subprocesses(opts, C.bool(o.Subprocesses)))
	set(C.pyspy_options_set_lines(opts, C.bool(!o.PerFunction)))
	set(C.pyspy_options_set_per_thread(opts, C.bool(o.PerThread)))
	if !ok {
		C.pyspy_options_free(opts)
		return nil, &Error{Code: StatusInvalidArgument, Message: fmt.Sprintf("invalid options %+v", *o)}
	}
	return opts, nil
}

// ErrClosed is returned by methods of a Session (or Sampler) after Close.
var ErrClosed = errors.New("pyspy: use of a closed object")

// Session is an attached process. Its methods may be called from any goroutine; calls on one
// session are serialised. Close it when done.
type Session struct {
	mu  sync.Mutex
	ptr *C.pyspy_session
	pid int
}

// Attach attaches to process pid: it finds the interpreter, its version and memory layout once,
// so that each Sample only reads the process's memory. opts may be nil.
func Attach(pid int, opts *Options) (*Session, error) {
	copts, err := opts.cOptions()
	if err != nil {
		return nil, err
	}
	defer C.pyspy_options_free(copts)
	var ptr *C.pyspy_session
	var cerr *C.pyspy_error
	status := C.pyspy_attach(C.int32_t(pid), copts, &ptr, &cerr)
	if status != C.PYSPY_STATUS_OK {
		return nil, takeError(Status(status), cerr)
	}
	s := &Session{ptr: ptr, pid: pid}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
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

// Sample reads every thread's Python stack once.
func (s *Session) Sample() (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return nil, ErrClosed
	}
	var snap *C.pyspy_snapshot
	var cerr *C.pyspy_error
	status := C.pyspy_session_sample(s.ptr, &snap, &cerr)
	if status != C.PYSPY_STATUS_OK {
		return nil, takeError(Status(status), cerr)
	}
	defer C.pyspy_snapshot_free(snap)
	return convertSnapshot(snap), nil
}

// Snapshot is one sample of a process: its Python threads.
type Snapshot struct {
	Threads []Thread
}

// Thread is a Python thread and its stack.
type Thread struct {
	// ID is the Python thread ident (threading.get_ident()).
	ID uint64
	// NativeID is the OS thread id (threading.get_native_id()), 0 if unknown.
	NativeID uint64
	// Name is threading.Thread.name, "" if unknown.
	Name string
	// OwnsGIL says whether the thread held the GIL at the time of the sample.
	OwnsGIL bool
	// Active says whether the OS thread was running on a CPU.
	Active bool
	// CPUTime is the thread's CPU time so far, -1 if not read (see Options.CPUTime).
	CPUTime time.Duration
	// Frames is the stack, innermost first.
	Frames []Frame
	// Error says why the stack could not be read to its end ("" if it was): Frames are then
	// those read before the failure. The snapshot's other threads are not affected.
	Error string
	// Truncated says whether frames were left out (a stack deeper than pyspy keeps): Frames
	// are then the innermost and outermost ones, cut at index Cut.
	Truncated bool
	Cut       int
}

// Frame is one Python frame.
type Frame struct {
	Function string // co_name
	Qualname string // co_qualname (3.11+), "" where the version has none
	Filename string // co_filename, as the target sees it
	Line     int    // 0 if unknown
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
		var tid C.uint64_t
		th := Thread{
			ID:      uint64(C.pyspy_thread_id(t)),
			Name:    goStringOrEmpty(C.pyspy_thread_name(t)),
			OwnsGIL: bool(C.pyspy_thread_owns_gil(t)),
			Active:  bool(C.pyspy_thread_active(t)),
		}
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
		th.CPUTime = -1
		if C.pyspy_thread_cpu_time_ns(t, &ns) {
			th.CPUTime = time.Duration(ns)
		}
		nf := int(C.pyspy_thread_frame_count(t))
		th.Frames = make([]Frame, 0, nf)
		for j := 0; j < nf; j++ {
			f := C.pyspy_thread_frame(t, C.size_t(j))
			th.Frames = append(th.Frames, Frame{
				Function: goStringOrEmpty(C.pyspy_frame_function(f)),
				Qualname: goStringOrEmpty(C.pyspy_frame_qualname(f)),
				Filename: goStringOrEmpty(C.pyspy_frame_filename(f)),
				Line:     int(C.pyspy_frame_line(f)),
			})
		}
		out.Threads = append(out.Threads, th)
	}
	return out
}

// takeError turns a failed status and its C error object (freed here) into a Go error.
func takeError(status Status, cerr *C.pyspy_error) error {
	e := &Error{Code: status}
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

// Sampler samples a process on its own thread and aggregates the stacks into a profile. Its
// methods may be called from any goroutine. Close it when done.
type Sampler struct {
	mu  sync.Mutex
	ptr *C.pyspy_sampler
}

// StartSampler attaches to pid and starts sampling it at opts.Rate (default 100/s).
func StartSampler(pid int, opts *Options) (*Sampler, error) {
	copts, err := opts.cOptions()
	if err != nil {
		return nil, err
	}
	defer C.pyspy_options_free(copts)
	var ptr *C.pyspy_sampler
	var cerr *C.pyspy_error
	if status := C.pyspy_sampler_start(C.int32_t(pid), copts, &ptr, &cerr); status != C.PYSPY_STATUS_OK {
		return nil, takeError(Status(status), cerr)
	}
	s := &Sampler{ptr: ptr}
	runtime.SetFinalizer(s, (*Sampler).Close)
	return s, nil
}

// Stats gives the samples taken and the failed process reads so far.
func (s *Sampler) Stats() (samples, errors uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr != nil {
		var a, b C.uint64_t
		C.pyspy_sampler_stats(s.ptr, &a, &b)
		samples, errors = uint64(a), uint64(b)
	}
	return
}

// Running says whether the sampler is still sampling.
func (s *Sampler) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ptr != nil && bool(C.pyspy_sampler_running(s.ptr))
}

// Profile returns the profile so far; with reset the sampler starts a new one (consecutive
// periods for periodic uploads).
func (s *Sampler) Profile(reset bool) (*Profile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return nil, ErrClosed
	}
	var ptr *C.pyspy_profile
	var cerr *C.pyspy_error
	if status := C.pyspy_sampler_profile(s.ptr, C.bool(reset), &ptr, &cerr); status != C.PYSPY_STATUS_OK {
		return nil, takeError(Status(status), cerr)
	}
	p := &Profile{ptr: ptr}
	runtime.SetFinalizer(p, (*Profile).Close)
	return p, nil
}

// Stop stops sampling (the profile stays available).
func (s *Sampler) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr != nil {
		C.pyspy_sampler_stop(s.ptr)
	}
}

// Close stops the sampler and frees it. Closing twice is fine.
func (s *Sampler) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr != nil {
		C.pyspy_sampler_free(s.ptr)
		s.ptr = nil
		runtime.SetFinalizer(s, nil)
	}
	return nil
}

// Profile is aggregated stacks taken from a Sampler. Close it when done.
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
	if status := C.pyspy_profile_export_buffer(p.ptr, C.int(format), &buf, &cerr); status != C.PYSPY_STATUS_OK {
		return nil, takeError(Status(status), cerr)
	}
	defer C.pyspy_buffer_free(buf)
	n := C.pyspy_buffer_len(buf)
	if n == 0 {
		return []byte{}, nil
	}
	return C.GoBytes(unsafe.Pointer(C.pyspy_buffer_data(buf)), C.int(n)), nil
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
