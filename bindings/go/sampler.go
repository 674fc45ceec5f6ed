package pyspy

/*
#include <stdint.h>
#include <pyspy.h>

// callback.c
extern enum pyspy_status pyspy_go_set_sample_callback(pyspy_options *options, uintptr_t handle);
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"runtime/cgo"
	"sync"
	"sync/atomic"
	"time"
)

// EndReason says why a sampler ended.
type EndReason int

const (
	// EndDuration: Options.Duration is over.
	EndDuration EndReason = C.PYSPY_END_REASON_DURATION
	// EndProcessExited: the process (and every attached child process) exited.
	EndProcessExited EndReason = C.PYSPY_END_REASON_PROCESS_EXITED
	// EndStopped: Stop or Close was called, or the sampler's context was done.
	EndStopped EndReason = C.PYSPY_END_REASON_STOPPED
)

func (r EndReason) String() string {
	switch r {
	case EndDuration:
		return "duration over"
	case EndProcessExited:
		return "process exited"
	case EndStopped:
		return "stopped"
	}
	return fmt.Sprintf("EndReason(%d)", int(r))
}

// Stats are a sampler's counters.
type Stats struct {
	// Samples is how many samples were taken (ticks at which at least one process was read).
	Samples uint64
	// Errors counts process reads that failed for another reason than the process having
	// exited (a torn read while the target changed its stacks, for example).
	Errors uint64
	// Missed counts scheduled samples skipped because the sampler fell more than one
	// interval behind.
	Missed uint64
	// MaxLag is the latest any sample was taken after its scheduled time.
	MaxLag time.Duration
	// Dropped counts samples not delivered on Samples because its buffer was full.
	Dropped uint64
}

// Sample is one tick of a sampler: a snapshot of every process it read.
type Sample struct {
	// Time is when the sample was taken.
	Time time.Time
	// Elapsed is the time since the sampler started.
	Elapsed time.Duration
	// Lag is how late the sample was taken after its scheduled time.
	Lag time.Duration
	// Processes are the processes read: the sampled process first while it lives, then
	// child processes (Options.Subprocesses).
	Processes []ProcessSnapshot
}

// ProcessSnapshot is one process of a Sample.
type ProcessSnapshot struct {
	Pid      int
	Snapshot *Snapshot
}

// Sampler samples a process on a thread of libpyspy's own and aggregates the stacks into a
// profile, until its context is done, the process (and every attached child process) exits,
// Options.Duration is over, or Stop or Close is called. Its methods may be called from any
// goroutine. Close it when done.
type Sampler struct {
	st *samplerState
}

// samplerState is what the sampler's goroutines use: not the Sampler itself, so that an
// unreachable Sampler's finalizer can run.
type samplerState struct {
	mu     sync.Mutex
	ptr    *C.pyspy_sampler
	feed   *feed // nil unless Options.SampleBuffer > 0
	handle cgo.Handle
	// done is closed once the sampler has ended (after its last sample was delivered);
	// reason and err are set before.
	done   chan struct{}
	reason EndReason
	err    error
}

// feed is what the sample callback reaches through its cgo.Handle.
type feed struct {
	samples chan Sample
	dropped atomic.Uint64
}

// StartSampler attaches to pid and starts sampling it (at opts.Rate, default 100 per second)
// until ctx is done, the process exits, opts.Duration is over, or Stop or Close.
func StartSampler(ctx context.Context, pid int, opts *Options) (*Sampler, error) {
	return startSampler(ctx, opts, func(copts *C.pyspy_options, out **C.pyspy_sampler, cerr **C.pyspy_error) C.enum_pyspy_status {
		return C.pyspy_sampler_start(C.int32_t(pid), copts, out, cerr)
	})
}

// StartSampler starts sampling the session's process without attaching again, until ctx is
// done, the process exits, opts.Duration is over, or Stop or Close. The sampler takes the
// process over: the session takes no more snapshots (ErrInvalidArgument), but its Pid,
// PythonVersion, ... stay readable, and it still needs Close. What each sample reads is what
// the session was attached with; opts gives the rate, duration, child processes and profile
// settings.
func (s *Session) StartSampler(ctx context.Context, opts *Options) (*Sampler, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return nil, ErrClosed
	}
	return startSampler(ctx, opts, func(copts *C.pyspy_options, out **C.pyspy_sampler, cerr **C.pyspy_error) C.enum_pyspy_status {
		return C.pyspy_session_start_sampler(s.ptr, copts, out, cerr)
	})
}

func startSampler(ctx context.Context, opts *Options, start func(*C.pyspy_options, **C.pyspy_sampler, **C.pyspy_error) C.enum_pyspy_status) (*Sampler, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	copts, err := opts.cOptions()
	if err != nil {
		return nil, err
	}
	defer C.pyspy_options_free(copts)
	st := &samplerState{done: make(chan struct{})}
	if opts != nil && opts.SampleBuffer > 0 {
		st.feed = &feed{samples: make(chan Sample, opts.SampleBuffer)}
		st.handle = cgo.NewHandle(st.feed)
		if status := C.pyspy_go_set_sample_callback(copts, C.uintptr_t(st.handle)); status != C.PYSPY_STATUS_OK {
			st.handle.Delete()
			return nil, &Error{Code: Status(status), Message: "pyspy_options_set_sample_callback failed"}
		}
	}
	var ptr *C.pyspy_sampler
	var cerr *C.pyspy_error
	if status := start(copts, &ptr, &cerr); status != C.PYSPY_STATUS_OK {
		if st.feed != nil {
			st.handle.Delete()
		}
		return nil, takeError(status, cerr)
	}
	st.ptr = ptr
	go st.waitForEnd(ptr)
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				st.stop()
			case <-st.done:
			}
		}()
	}
	s := &Sampler{st: st}
	runtime.SetFinalizer(s, (*Sampler).Close)
	return s, nil
}

// waitForEnd blocks (in libpyspy, on an OS thread of its own) until the sampler has ended,
// then records why, closes the samples channel and done.
func (st *samplerState) waitForEnd(ptr *C.pyspy_sampler) {
	var reason C.enum_pyspy_end_reason
	var cerr *C.pyspy_error
	status := C.pyspy_sampler_wait(ptr, C.PYSPY_WAIT_FOREVER, &reason, &cerr)
	if status == C.PYSPY_STATUS_OK {
		st.reason = EndReason(reason)
	} else {
		st.reason = EndStopped
		st.err = takeError(status, cerr)
	}
	close(st.done)
	// The wait returns after the sampler's last callback: no sample is sent after this. Done
	// is closed first, so that a reader who saw Samples close finds the sampler ended.
	if st.feed != nil {
		close(st.feed.samples)
	}
}

func (st *samplerState) stop() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ptr != nil {
		C.pyspy_sampler_stop(st.ptr)
	}
}

//export pyspyGoSample
func pyspyGoSample(handle C.uintptr_t, sample *C.pyspy_sample) C.bool {
	f := cgo.Handle(handle).Value().(*feed)
	out := Sample{
		Time:    time.Unix(0, int64(C.pyspy_sample_time_ns(sample))),
		Elapsed: time.Duration(C.pyspy_sample_elapsed_ns(sample)),
		Lag:     time.Duration(C.pyspy_sample_lag_ns(sample)),
	}
	n := int(C.pyspy_sample_process_count(sample))
	out.Processes = make([]ProcessSnapshot, 0, n)
	for i := 0; i < n; i++ {
		out.Processes = append(out.Processes, ProcessSnapshot{
			Pid:      int(C.pyspy_sample_pid(sample, C.size_t(i))),
			Snapshot: convertSnapshot(C.pyspy_sample_snapshot(sample, C.size_t(i))),
		})
	}
	select {
	case f.samples <- out:
	default:
		f.dropped.Add(1)
	}
	return true
}

// Samples delivers every sample the sampler takes, in order, and is closed once the sampler
// has ended (after Done is). It is nil unless Options.SampleBuffer was > 0. Samples that find
// its buffer full are dropped (Stats.Dropped).
func (s *Sampler) Samples() <-chan Sample {
	if s.st.feed == nil {
		return nil
	}
	return s.st.feed.samples
}

// Wait blocks until the sampler has ended and says why (the error is that of libpyspy if the
// sampler's thread failed), or until ctx is done: then it returns ctx.Err() and the sampler
// goes on (unless ctx is the one it was started with).
func (s *Sampler) Wait(ctx context.Context) (EndReason, error) {
	select {
	case <-s.st.done: // an ended sampler answers even with a context that is done
		return s.st.reason, s.st.err
	default:
	}
	select {
	case <-s.st.done:
		return s.st.reason, s.st.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Done is closed once the sampler has ended.
func (s *Sampler) Done() <-chan struct{} {
	return s.st.done
}

// Running says whether the sampler is still sampling.
func (s *Sampler) Running() bool {
	select {
	case <-s.st.done:
		return false
	default:
		return true
	}
}

// Stats gives the sampler's counters so far.
func (s *Sampler) Stats() Stats {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	var out Stats
	if st.ptr != nil {
		var samples, errs, missed, maxLag C.uint64_t
		C.pyspy_sampler_stats(st.ptr, &samples, &errs, &missed, &maxLag)
		out = Stats{
			Samples: uint64(samples),
			Errors:  uint64(errs),
			Missed:  uint64(missed),
			MaxLag:  time.Duration(maxLag),
		}
	}
	if st.feed != nil {
		out.Dropped = st.feed.dropped.Load()
	}
	return out
}

// Profile returns the profile so far; with reset the sampler starts a new one (consecutive
// periods for periodic uploads).
func (s *Sampler) Profile(reset bool) (*Profile, error) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ptr == nil {
		return nil, ErrClosed
	}
	var ptr *C.pyspy_profile
	var cerr *C.pyspy_error
	if status := C.pyspy_sampler_profile(st.ptr, C.bool(reset), &ptr, &cerr); status != C.PYSPY_STATUS_OK {
		return nil, takeError(status, cerr)
	}
	p := &Profile{ptr: ptr}
	runtime.SetFinalizer(p, (*Profile).Close)
	return p, nil
}

// Stop stops sampling and waits for the sampler's thread (the profile stays available;
// Wait then returns EndStopped unless the sampler had ended already).
func (s *Sampler) Stop() {
	s.st.stop()
	// The goroutine waiting in pyspy_sampler_wait records the end: wait for it too, so that
	// Running is false and Wait returns at once after Stop.
	<-s.st.done
}

// Close stops the sampler and frees it. Closing twice is fine.
func (s *Sampler) Close() error {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ptr == nil {
		return nil
	}
	C.pyspy_sampler_stop(st.ptr)
	<-st.done
	C.pyspy_sampler_free(st.ptr)
	st.ptr = nil
	if st.feed != nil {
		st.handle.Delete()
	}
	runtime.SetFinalizer(s, nil)
	return nil
}
