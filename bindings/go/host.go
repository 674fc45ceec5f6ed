package pyspy

/*
#include <stdlib.h>
#include <pyspy.h>
*/
import "C"

import (
	"runtime"
	"sync"
)

// ProcessLabels say who a process is: what its profiles are labelled with.
type ProcessLabels struct {
	// Pid as this machine's /proc sees it.
	Pid int
	// NamespacePid is the pid inside the process's own pid namespace (a container's); 0 in
	// the host's namespace.
	NamespacePid int
	// StartTime in clock ticks after boot: with Pid, it names one process.
	StartTime uint64
	// Executable as the kernel shows it (for another mount namespace, the path in its own).
	Executable string
	// CommandLine, arguments joined by spaces.
	CommandLine string
	// Service from OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES' service.name, DD_SERVICE or
	// PYROSCOPE_APPLICATION_NAME in the process's environment, else its module or script,
	// else its program.
	Service string
	// ServiceSource says where Service came from: the variable's name, "module", "script" or
	// "program".
	ServiceSource string
	// ContainerID (64 hex digits) from /proc/PID/cgroup; "" if none.
	ContainerID string
	// ContainerRuntime: "docker", "containerd", "cri-o", "podman", or "" if not named.
	ContainerRuntime string
	// PodUID of a Kubernetes pod, where the cgroup path has it.
	PodUID string
	// Cgroup is the cgroup path the container was read from.
	Cgroup string
	// PythonVersion once attached (labels of Scan.Found); "" otherwise.
	PythonVersion string
}

func convertLabels(l *C.pyspy_process_labels) ProcessLabels {
	return ProcessLabels{
		Pid:              int(C.pyspy_process_labels_pid(l)),
		NamespacePid:     int(C.pyspy_process_labels_namespace_pid(l)),
		StartTime:        uint64(C.pyspy_process_labels_start_time(l)),
		Executable:       goStringOrEmpty(C.pyspy_process_labels_executable(l)),
		CommandLine:      goStringOrEmpty(C.pyspy_process_labels_command_line(l)),
		Service:          goStringOrEmpty(C.pyspy_process_labels_service(l)),
		ServiceSource:    goStringOrEmpty(C.pyspy_process_labels_service_source(l)),
		ContainerID:      goStringOrEmpty(C.pyspy_process_labels_container_id(l)),
		ContainerRuntime: goStringOrEmpty(C.pyspy_process_labels_container_runtime(l)),
		PodUID:           goStringOrEmpty(C.pyspy_process_labels_pod_uid(l)),
		Cgroup:           goStringOrEmpty(C.pyspy_process_labels_cgroup(l)),
		PythonVersion:    goStringOrEmpty(C.pyspy_process_labels_python_version(l)),
	}
}

// ReadProcessLabels reads the labels of any process from /proc (PythonVersion stays empty).
func ReadProcessLabels(pid int) (*ProcessLabels, error) {
	var l *C.pyspy_process_labels
	var cerr *C.pyspy_error
	if status := C.pyspy_process_labels_read(C.int32_t(pid), &l, &cerr); status != C.PYSPY_STATUS_OK {
		return nil, takeError(status, cerr)
	}
	defer C.pyspy_process_labels_free(l)
	labels := convertLabels(l)
	return &labels, nil
}

// Discovery finds every Python process of the machine as they come and go: each Scan attaches
// to the new ones. Its methods may be called from any goroutine. Close it when done.
type Discovery struct {
	mu  sync.Mutex
	ptr *C.pyspy_discovery
}

// Found is a Python process a scan attached to: its labels and its session (the caller's:
// Close it, and Release the pid if the process is to be looked at again).
type Found struct {
	Labels  ProcessLabels
	Session *Session
}

// Skipped is a Python process a scan did not hand out (the limit, or attaching failed).
type Skipped struct {
	Labels ProcessLabels
	Reason string
}

// Scan is what one scan found.
type Scan struct {
	Found   []Found
	Exited  []ProcessLabels
	Skipped []Skipped
}

// NewDiscovery makes a discovery that hands out at most limit processes at once (0: 64); opts
// (may be nil) say how to attach. Policies (which processes to keep) are the caller's: Close
// the sessions of processes not wanted.
func NewDiscovery(opts *Options, limit int) (*Discovery, error) {
	if limit < 0 {
		return nil, &Error{Code: StatusInvalidArgument, Message: "limit must not be negative"}
	}
	copts, err := opts.cOptions()
	if err != nil {
		return nil, err
	}
	defer C.pyspy_options_free(copts)
	var ptr *C.pyspy_discovery
	var cerr *C.pyspy_error
	status := C.pyspy_discovery_new(copts, C.size_t(limit), nil, nil, &ptr, &cerr)
	if status != C.PYSPY_STATUS_OK {
		return nil, takeError(status, cerr)
	}
	d := &Discovery{ptr: ptr}
	runtime.SetFinalizer(d, (*Discovery).Close)
	return d, nil
}

// Scan lists /proc and attaches to new Python processes; it reports exits (and reused pids)
// and skipped processes. Call it every few seconds.
func (d *Discovery) Scan() (*Scan, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ptr == nil {
		return nil, ErrClosed
	}
	var scan *C.pyspy_scan
	var cerr *C.pyspy_error
	if status := C.pyspy_discovery_scan(d.ptr, &scan, &cerr); status != C.PYSPY_STATUS_OK {
		return nil, takeError(status, cerr)
	}
	defer C.pyspy_scan_free(scan)
	out := &Scan{}
	for i := C.size_t(0); i < C.pyspy_scan_found_count(scan); i++ {
		labels := convertLabels(C.pyspy_scan_found_labels(scan, i))
		var ptr *C.pyspy_session
		if status := C.pyspy_scan_take_session(scan, i, &ptr, &cerr); status != C.PYSPY_STATUS_OK {
			for _, f := range out.Found {
				_ = f.Session.Close()
			}
			return nil, takeError(status, cerr)
		}
		s := &Session{ptr: ptr, pid: labels.Pid}
		runtime.SetFinalizer(s, (*Session).Close)
		out.Found = append(out.Found, Found{Labels: labels, Session: s})
	}
	for i := C.size_t(0); i < C.pyspy_scan_exited_count(scan); i++ {
		out.Exited = append(out.Exited, convertLabels(C.pyspy_scan_exited_labels(scan, i)))
	}
	for i := C.size_t(0); i < C.pyspy_scan_skipped_count(scan); i++ {
		out.Skipped = append(out.Skipped, Skipped{
			Labels: convertLabels(C.pyspy_scan_skipped_labels(scan, i)),
			Reason: goStringOrEmpty(C.pyspy_scan_skipped_reason(scan, i)),
		})
	}
	return out, nil
}

// Release says the caller no longer profiles pid: it no longer counts against the limit and
// is looked at again at a later scan.
func (d *Discovery) Release(pid int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ptr != nil {
		C.pyspy_discovery_release(d.ptr, C.int32_t(pid))
	}
}

// Close frees the discovery; sessions it handed out stay open. Closing twice is fine.
func (d *Discovery) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ptr != nil {
		C.pyspy_discovery_free(d.ptr)
		d.ptr = nil
		runtime.SetFinalizer(d, nil)
	}
	return nil
}
