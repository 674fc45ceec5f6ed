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
)

// Version is the version of the libpyspy this program runs with.
func Version() string {
	return C.GoString(C.pyspy_version())
}

// HeaderVersion is the version of the pyspy.h this package was compiled against.
const HeaderVersion = C.PYSPY_VERSION

// Options say how to attach and sample. The zero value (or a nil *Options) is the default.
type Options struct{}

// cOptions makes the C options object for o; free it with C.pyspy_options_free.
func (o *Options) cOptions() (*C.pyspy_options, error) {
	opts := C.pyspy_options_new()
	if opts == nil {
		return nil, &Error{Code: StatusPanic, Message: "pyspy_options_new failed"}
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
	// Frames is the stack, innermost first.
	Frames []Frame
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
