package pyspy

/*
#include <stdlib.h>
#include <pyspy.h>
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Statuses of OpenCore; values are those of pyspy.h and never change.
const (
	// StatusBadCore: the file is not a core of an x86_64 process, or is truncated or corrupt.
	StatusBadCore Status = C.PYSPY_STATUS_BAD_CORE
	// StatusCoreBinary: the executable or libpython the core needs is missing or another file
	// (set CoreOptions.Sysroot or CoreOptions.Executable).
	StatusCoreBinary Status = C.PYSPY_STATUS_CORE_BINARY
)

// Errors of OpenCore to test for with errors.Is.
var (
	ErrBadCore    error = StatusBadCore
	ErrCoreBinary error = StatusCoreBinary
)

// CoreOptions say how to open a core file. The zero value (or a nil *CoreOptions) is the
// default: the files the process had mapped are looked up at the paths the core records.
type CoreOptions struct {
	// Sysroot is a directory to look up every file the process had mapped under (a
	// container's root filesystem, or a copy of the files of the machine the core came from).
	Sysroot string
	// Executable is the file to use as the process's executable (the interpreter, or the
	// program embedding it), wherever the core says it was.
	Executable string
}

// OpenCore opens a core file (written by the kernel when a Python process crashed, or by
// gdb's gcore) as a Session: Sample gives the stacks the process had when it was dumped, and
// Signal the signal that ended it. The memory the core did not dump is read from the files the
// process had mapped, checked to be the same files. Close the session when done.
func OpenCore(path string, opts *CoreOptions) (*Session, error) {
	copts := C.pyspy_core_options_new()
	if copts == nil {
		return nil, &Error{Code: StatusPanic, Message: "pyspy_core_options_new failed"}
	}
	defer C.pyspy_core_options_free(copts)
	if opts != nil && opts.Sysroot != "" {
		cs := C.CString(opts.Sysroot)
		defer C.free(unsafe.Pointer(cs))
		if status := C.pyspy_core_options_set_sysroot(copts, cs); status != C.PYSPY_STATUS_OK {
			return nil, &Error{Code: Status(status), Message: "pyspy_core_options_set_sysroot failed"}
		}
	}
	if opts != nil && opts.Executable != "" {
		cs := C.CString(opts.Executable)
		defer C.free(unsafe.Pointer(cs))
		if status := C.pyspy_core_options_set_executable(copts, cs); status != C.PYSPY_STATUS_OK {
			return nil, &Error{Code: Status(status), Message: "pyspy_core_options_set_executable failed"}
		}
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var ptr *C.pyspy_session
	var cerr *C.pyspy_error
	if status := C.pyspy_open_core(cpath, copts, &ptr, &cerr); status != C.PYSPY_STATUS_OK {
		return nil, takeError(status, cerr)
	}
	s := &Session{ptr: ptr, pid: int(C.pyspy_session_pid(ptr))}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
}

// IsCore reports whether the session reads a core file (OpenCore) rather than a live process.
func (s *Session) IsCore() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ptr != nil && bool(C.pyspy_session_is_core(s.ptr))
}

// Signal is the signal that ended a dumped process.
type Signal struct {
	// Number is the signal number (11 for SIGSEGV).
	Number int
	// Name is the signal's name ("SIGSEGV"), "" for real-time and unknown signals.
	Name string
	// ThreadID is the OS thread that received it, 0 if the core does not say.
	ThreadID uint64
}

// Signal returns the signal that ended the process of a session opened with OpenCore. ok is
// false for a live process, and for a core taken from a running process (gdb's gcore).
func (s *Session) Signal() (sig Signal, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return Signal{}, false
	}
	var number C.int32_t
	var tid C.uint64_t
	if !C.pyspy_session_signal(s.ptr, &number, &tid) {
		return Signal{}, false
	}
	return Signal{
		Number:   int(number),
		Name:     goStringOrEmpty(C.pyspy_signal_name(number)),
		ThreadID: uint64(tid),
	}, true
}
