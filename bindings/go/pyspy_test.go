package pyspy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Python to run targets with: $PYSPY_TEST_PYTHON, else python3 from PATH.
func python(t *testing.T) string {
	if p := os.Getenv("PYSPY_TEST_PYTHON"); p != "" {
		return p
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on PATH and PYSPY_TEST_PYTHON unset")
	}
	return p
}

// The target: `target.py READY [CHILD_READY]` starts a worker thread, with CHILD_READY also a
// child Python (`target.py --child CHILD_READY`) that lives as long as its parent, and then
// blocks in go_target_leaf once the child is ready.
const targetScript = `
import os, subprocess, sys, threading, time

def go_target_leaf(ready):
    open(ready, "w").close()
    while True:
        time.sleep(0.05)

def go_target_worker():
    while True:
        time.sleep(0.05)

def go_target_child(ready, parent):
    open(ready, "w").close()
    while os.getppid() == parent:
        time.sleep(0.05)

if sys.argv[1] == "--child":
    go_target_child(sys.argv[2], os.getppid())
    sys.exit(0)
threading.Thread(target=go_target_worker, name="go-worker", daemon=True).start()
if len(sys.argv) > 2:
    subprocess.Popen([sys.executable, sys.argv[0], "--child", sys.argv[2]])
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
go_target_leaf(sys.argv[1])
`

// startTarget runs a Python that blocks in go_target_leaf; it is killed when the test ends.
func startTarget(t *testing.T) int {
	pid, _ := startTargetWith(t, false)
	return pid
}

// startTargetWith runs the target, with a child Python if child is set; returns the target and
// its Cmd (killed when the test ends; the child then exits by itself).
func startTargetWith(t *testing.T, child bool) (int, *exec.Cmd) {
	dir := t.TempDir()
	script := filepath.Join(dir, "target.py")
	ready := filepath.Join(dir, "ready")
	if err := os.WriteFile(script, []byte(targetScript), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{script, ready}
	if child {
		args = append(args, filepath.Join(dir, "child-ready"))
	}
	cmd := exec.Command(python(t), args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Python target did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd.Process.Pid, cmd
}

func TestVersion(t *testing.T) {
	if Version() != HeaderVersion {
		t.Fatalf("library %s, header %s", Version(), HeaderVersion)
	}
}

// pythonAtLeast says whether version "X.Y.Z" is at least major.minor.
func pythonAtLeast(t *testing.T, version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		t.Fatalf("version %q", version)
	}
	x, err1 := strconv.Atoi(parts[0])
	y, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("version %q", version)
	}
	return x > major || (x == major && y >= minor)
}

func TestSnapshotOfALivePython(t *testing.T) {
	pid := startTarget(t)
	session, err := Attach(context.Background(), pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if session.Pid() != pid || session.PythonVersion() == "" || session.Executable() == "" ||
		session.InterpreterBinary() == "" || session.LocatedBy() == "" {
		t.Fatalf("session info: pid %d version %q executable %q binary %q located by %q",
			session.Pid(), session.PythonVersion(), session.Executable(),
			session.InterpreterBinary(), session.LocatedBy())
	}
	snapshot, err := session.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var functions []string
	foundLeaf, foundWorker := false, false
	for _, th := range snapshot.Threads {
		if th.ID == 0 {
			t.Errorf("thread without an ident: %+v", th)
		}
		if pythonAtLeast(t, session.PythonVersion(), 3, 7) && th.InterpreterID != 0 {
			t.Errorf("thread of the main interpreter with interpreter id %d", th.InterpreterID)
		}
		if th.CPUTime != -1 {
			t.Errorf("CPU time read without Options.CPUTime: %v", th.CPUTime)
		}
		if th.Error != "" || th.Truncated {
			t.Errorf("a whole, shallow stack marked unreadable or truncated: %+v", th)
		}
		for _, f := range th.Frames {
			functions = append(functions, f.Function)
			if f.Filename == "" || f.Line <= 0 {
				t.Errorf("frame %+v", f)
			}
		}
		if len(th.Frames) > 0 && th.Frames[0].Function == "go_target_leaf" {
			foundLeaf = true
		}
		if len(th.Frames) > 0 && th.Frames[0].Function == "go_target_worker" {
			foundWorker = true
			if th.Name != "go-worker" {
				t.Errorf("worker thread named %q", th.Name)
			}
		}
	}
	if !foundLeaf || !foundWorker {
		t.Fatalf("want threads in go_target_leaf and go_target_worker, got functions %v",
			functions)
	}
}

// switchesCounted says whether the kernel counts the switches of pid in its schedstat.
func switchesCounted(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data))
	return len(fields) == 3 && fields[2] != "0"
}

func TestIdleIfRanLeavesOutThreadsThatDidNotRun(t *testing.T) {
	pid := startTarget(t)
	session, err := Attach(context.Background(), pid, &Options{IdleIfRan: true})
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	// Both threads wake every 50 ms: after 120 ms both ran, and show (asleep).
	if _, err := session.Snapshot(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond)
	snapshot, err := session.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snapshot.Threads) != 2 {
		t.Fatalf("after 120 ms: %d threads, want both (they ran)", len(snapshot.Threads))
	}
	// Right after a snapshot, threads that slept since are left out (most of the time: one
	// may wake in between).
	fewer := false
	for i := 0; i < 20 && !fewer; i++ {
		time.Sleep(120 * time.Millisecond)
		if _, err := session.Snapshot(); err != nil {
			t.Fatal(err)
		}
		again, err := session.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		fewer = len(again.Threads) < 2
	}
	if !fewer && switchesCounted(pid) {
		t.Fatal("threads asleep since the last snapshot were shown, 20 times out of 20")
	}
}

func TestLocateStrategies(t *testing.T) {
	pid := startTarget(t)
	for _, c := range []struct {
		locate LocateStrategy
		want   string
	}{{LocateSymbols, "symbols"}, {LocateBSSScan, "bss-scan"}} {
		session, err := Attach(context.Background(), pid, &Options{Locate: c.locate, CPUTime: true})
		if err != nil {
			t.Fatalf("%v: %v", c.locate, err)
		}
		if got := session.LocatedBy(); got != c.want {
			t.Errorf("Locate %v: located by %q, want %q", c.locate, got, c.want)
		}
		snapshot, err := session.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		for _, th := range snapshot.Threads {
			if th.CPUTime < 0 {
				t.Errorf("no CPU time with Options.CPUTime: %+v", th)
			}
		}
		session.Close()
	}
	if _, err := Attach(context.Background(), pid, &Options{Locate: 99}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Locate 99: want ErrInvalidArgument, got %v", err)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	// A pid no process has: one that exited and was reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	_, err := Attach(ctx, cmd.Process.Pid, nil)
	if !errors.Is(err, ErrNoSuchProcess) {
		t.Fatalf("want ErrNoSuchProcess, got %v", err)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != StatusNoSuchProcess || !strings.Contains(pe.Message, "no process") {
		t.Fatalf("errors.As: %#v", pe)
	}
	if _, err := Attach(ctx, os.Getpid(), &Options{}); !errors.Is(err, ErrNotPython) {
		t.Fatalf("attaching to the Go test itself: want ErrNotPython, got %v", err)
	}
	if _, err := Attach(ctx, 0, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("pid 0: want ErrInvalidArgument, got %v", err)
	}
	if _, err := Attach(ctx, os.Getpid(), &Options{Duration: -time.Second}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("negative duration: want ErrInvalidArgument, got %v", err)
	}
	if StatusNoSuchProcess.String() != "PYSPY_STATUS_NO_SUCH_PROCESS" || StatusTimeout.String() != "PYSPY_STATUS_TIMEOUT" {
		t.Fatal(StatusNoSuchProcess.String(), StatusTimeout.String())
	}
}

// Attach waits for a process that is not Python yet as long as WaitForInit says, but no
// longer than its context allows.
func TestAttachWaitsUntilTheContextIsDone(t *testing.T) {
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = sleeper.Process.Kill()
		_ = sleeper.Wait()
	}()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Attach(ctx, sleeper.Process.Pid, &Options{WaitForInit: 20 * time.Second})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want context.DeadlineExceeded, got %v", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 10*time.Second {
		t.Fatalf("Attach returned after %v (context deadline 300ms, WaitForInit 20s)", took)
	}
	// Without WaitForInit, the answer is at once.
	if _, err := Attach(context.Background(), sleeper.Process.Pid, nil); !errors.Is(err, ErrNotPython) {
		t.Fatalf("want ErrNotPython, got %v", err)
	}
	// A Python started just now is attached to once its interpreter is there.
	script := filepath.Join(t.TempDir(), "slow.py")
	if err := os.WriteFile(script, []byte("import time\nwhile True: time.sleep(0.05)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	py := exec.Command(python(t), script)
	if err := py.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = py.Process.Kill()
		_ = py.Wait()
	}()
	session, err := Attach(context.Background(), py.Process.Pid, &Options{WaitForInit: 20 * time.Second})
	if err != nil {
		t.Fatalf("attaching to a starting Python: %v", err)
	}
	session.Close()
}

func TestCloseAndUseAfterClose(t *testing.T) {
	pid := startTarget(t)
	session, err := Attach(context.Background(), pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := session.Close(); err != nil {
		t.Fatal(err)
	}
	if err := session.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := session.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Snapshot after Close: %v", err)
	}
	if _, err := session.StartSampler(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("StartSampler after Close: %v", err)
	}
	// Sessions and samplers that are never closed are freed by their finalizers.
	for i := 0; i < 20; i++ {
		if _, err := Attach(context.Background(), pid, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := StartSampler(context.Background(), pid, &Options{SampleBuffer: 1}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC()
}

func TestSessionsOnManyGoroutines(t *testing.T) {
	pid := startTarget(t)
	session, err := Attach(context.Background(), pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 20; i++ {
				if _, err := session.Snapshot(); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestSamplerExportsPprofThatGoToolPprofReads(t *testing.T) {
	pid := startTarget(t)
	sampler, err := StartSampler(context.Background(), pid, &Options{Rate: 200, Idle: true, CPUTime: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close()
	if sampler.Samples() != nil {
		t.Fatal("a samples channel without Options.SampleBuffer")
	}
	deadline := time.Now().Add(20 * time.Second)
	for sampler.Stats().Samples < 20 {
		if time.Now().After(deadline) {
			t.Fatal("the sampler took no samples")
		}
		time.Sleep(20 * time.Millisecond)
	}
	profile, err := sampler.Profile(true)
	if err != nil {
		t.Fatal(err)
	}
	defer profile.Close()
	if profile.Samples() < 20 {
		t.Fatalf("%d samples", profile.Samples())
	}
	folded, err := profile.Export(Collapsed)
	if err != nil || !strings.Contains(string(folded), "go_target_leaf") {
		t.Fatalf("collapsed: %v\n%s", err, folded)
	}
	data, err := profile.Export(Pprof)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "profile.pb.gz")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "go_target_leaf") {
		t.Fatalf("go tool pprof -top: %v\n%s", err, out)
	}
	if _, err := profile.Export(Format(42)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("unknown format: %v", err)
	}
	sampler.Stop()
	if sampler.Running() {
		t.Fatal("running after Stop")
	}
	if reason, err := sampler.Wait(context.Background()); reason != EndStopped || err != nil {
		t.Fatalf("after Stop: %v, %v", reason, err)
	}
	stats := sampler.Stats()
	if stats.Samples < 20 || stats.MaxLag <= 0 || stats.MaxLag > 10*time.Second || stats.Dropped != 0 {
		t.Fatalf("stats %+v", stats)
	}
}

// The samples channel delivers every sample with each process's snapshot, and is closed when
// the sampler ends; Wait says why it ended.
func TestSamplesChannelAndWait(t *testing.T) {
	pid, cmd := startTargetWith(t, false)
	ctx := context.Background()
	sampler, err := StartSampler(ctx, pid, &Options{Rate: 100, SampleBuffer: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close()

	// Wait gives up when its context is done, and the sampler goes on.
	start := time.Now()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if _, err := sampler.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a running sampler: %v", err)
	}
	cancel()
	if took := time.Since(start); took < 200*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Wait(200ms) returned after %v", took)
	}
	if !sampler.Running() {
		t.Fatal("the sampler stopped when a Wait gave up")
	}

	var last time.Duration
	seen := 0
	for sample := range sampler.Samples() {
		if len(sample.Processes) != 1 || sample.Processes[0].Pid != pid {
			t.Fatalf("sample of processes %+v, want just %d", sample.Processes, pid)
		}
		if sample.Elapsed < last || time.Since(sample.Time) > time.Minute || sample.Lag < 0 {
			t.Fatalf("sample times: %+v after %v", sample, last)
		}
		last = sample.Elapsed
		leaf := false
		for _, th := range sample.Processes[0].Snapshot.Threads {
			leaf = leaf || (len(th.Frames) > 0 && th.Frames[0].Function == "go_target_leaf")
		}
		if !leaf {
			t.Fatalf("no thread in go_target_leaf: %+v", sample.Processes[0].Snapshot)
		}
		seen++
		if seen == 10 {
			// The target exits: the channel is closed once the sampler has noticed.
			_ = cmd.Process.Kill()
		}
	}
	if seen < 10 {
		t.Fatalf("%d samples before the channel closed", seen)
	}
	reason, err := sampler.Wait(ctx)
	if reason != EndProcessExited || err != nil {
		t.Fatalf("Wait after the target exited: %v, %v", reason, err)
	}
	if stats := sampler.Stats(); stats.Samples != uint64(seen)+stats.Dropped {
		t.Fatalf("%d samples received, stats %+v", seen, stats)
	}
}

// A sampler stops when the context it was started with is done, or its duration is over.
func TestSamplerEndsWithItsContextOrDuration(t *testing.T) {
	pid := startTarget(t)
	ctx, cancel := context.WithCancel(context.Background())
	sampler, err := StartSampler(ctx, pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close()
	cancel()
	select {
	case <-sampler.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the sampler did not stop within 10 s of its context being cancelled")
	}
	// An ended sampler answers Wait even with a context that is done.
	if reason, err := sampler.Wait(ctx); reason != EndStopped || err != nil {
		t.Fatalf("after cancel: %v, %v", reason, err)
	}
	if _, err := StartSampler(ctx, pid, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("StartSampler with a cancelled context: %v", err)
	}

	timed, err := StartSampler(context.Background(), pid, &Options{Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer timed.Close()
	reason, err := timed.Wait(context.Background())
	if reason != EndDuration || err != nil {
		t.Fatalf("with a duration: %v, %v", reason, err)
	}
}

// A sampler can start from a session, which then takes no more snapshots.
func TestSamplerFromASession(t *testing.T) {
	pid := startTarget(t)
	session, err := Attach(context.Background(), pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if _, err := session.Snapshot(); err != nil {
		t.Fatal(err)
	}
	sampler, err := session.StartSampler(context.Background(), &Options{SampleBuffer: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close()
	sample := <-sampler.Samples()
	if len(sample.Processes) != 1 || sample.Processes[0].Pid != pid {
		t.Fatalf("sample %+v", sample)
	}
	if _, err := session.Snapshot(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Snapshot of a session handed to a sampler: %v", err)
	}
	if _, err := session.StartSampler(context.Background(), nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a second sampler on the session: %v", err)
	}
	if session.Pid() != pid || session.PythonVersion() == "" {
		t.Fatal("session info lost")
	}
}

// With Subprocesses, samples include the child process; with PerProcess the pprof profile
// labels each sample with its pid.
func TestSubprocessesPerProcess(t *testing.T) {
	pid, _ := startTargetWith(t, true)
	sampler, err := StartSampler(context.Background(), pid, &Options{
		Subprocesses: true, PerProcess: true, Idle: true, SampleBuffer: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close()
	pids := map[int]bool{}
	deadline := time.After(20 * time.Second)
	for len(pids) < 2 {
		select {
		case sample := <-sampler.Samples():
			for _, p := range sample.Processes {
				pids[p.Pid] = true
			}
		case <-deadline:
			t.Fatalf("processes sampled: %v, want the target %d and its child", pids, pid)
		}
	}
	if !pids[pid] {
		t.Fatalf("processes sampled: %v, want the target %d", pids, pid)
	}
	profile, err := sampler.Profile(false)
	if err != nil {
		t.Fatal(err)
	}
	defer profile.Close()
	folded, err := profile.Export(Collapsed)
	if err != nil {
		t.Fatal(err)
	}
	for p := range pids {
		if !strings.Contains(string(folded), "process "+strconv.Itoa(p)+":") {
			t.Errorf("no stacks of process %d:\n%s", p, folded)
		}
	}
}

const debuggerScript = `
import sys, time

def go_debugger_leaf(ready, count, *more):
    label = "go"
    items = [1, 2.5, None]
    try:
        raise ValueError("go")
    except ValueError:
        open(ready, "w").close()
        while True:
            time.sleep(0.05)

go_debugger_leaf(sys.argv[1], 3)
`

// The debugger view: locals, the exception being handled, and (3.11+) positions.
func TestDebuggerView(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "debugger.py")
	ready := filepath.Join(dir, "ready")
	if err := os.WriteFile(script, []byte(debuggerScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python(t), script, ready)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Python target did not start")
		}
	}
	session, err := Attach(context.Background(), cmd.Process.Pid, &Options{Locals: true, Exceptions: true, Positions: true})
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	snap, err := session.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var leaf *Frame
	var thread *Thread
	for i := range snap.Threads {
		for j := range snap.Threads[i].Frames {
			if snap.Threads[i].Frames[j].Function == "go_debugger_leaf" {
				leaf, thread = &snap.Threads[i].Frames[j], &snap.Threads[i]
			}
		}
	}
	if leaf == nil {
		t.Fatalf("no go_debugger_leaf frame in %+v", snap)
	}
	got := map[string]Local{}
	for _, l := range leaf.Locals {
		got[l.Name] = l
	}
	want := map[string]Local{
		"count": {"count", "arg", "3"},
		"more":  {"more", "arg", "()"},
		"label": {"label", "local", "'go'"},
		"items": {"items", "local", "[1, 2.5, None]"},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("local %s: got %+v, want %+v", name, got[name], w)
		}
	}
	// Python 2 names it exceptions.ValueError (its tp_name).
	if thread.Exception == nil || !strings.HasSuffix(thread.Exception.Type, "ValueError") || thread.Exception.Message != "'go'" {
		t.Errorf("exception %+v, want ValueError 'go'", thread.Exception)
	}
	if thread.Propagating != nil {
		t.Errorf("propagating %+v, want none", thread.Propagating)
	}
	var major, minor int
	fmt.Sscanf(session.PythonVersion(), "%d.%d", &major, &minor)
	if major == 3 && minor >= 11 {
		if leaf.Column < 0 || leaf.EndColumn <= leaf.Column || leaf.EndLine != leaf.Line || leaf.Opcode < 0 {
			t.Errorf("positions of %+v", *leaf)
		}
	} else if leaf.Column != -1 || leaf.Opcode != -1 {
		t.Errorf("positions before 3.11: %+v", *leaf)
	}
}

func TestNativeFramesAreMergedAndNeedPause(t *testing.T) {
	pid := startTarget(t)
	session, err := Attach(context.Background(), pid, &Options{Pause: true, Native: true})
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	snapshot, err := session.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, th := range snapshot.Threads {
		leaf := -1
		for i, f := range th.Frames {
			if !f.Native && f.Function == "go_target_leaf" {
				leaf = i
			}
			if f.Native != (f.Address != 0) {
				t.Errorf("frame %+v: Native and Address disagree", f)
			}
		}
		// time.sleep blocks in the C library: native frames sit inside the Python leaf.
		if leaf > 0 && th.Frames[0].Native {
			found = true
		}
	}
	if !found {
		t.Fatalf("want a thread whose innermost frames are native, above go_target_leaf: %+v",
			snapshot.Threads)
	}

	unpaused, err := Attach(context.Background(), pid, &Options{Native: true})
	if err != nil {
		t.Fatal(err)
	}
	defer unpaused.Close()
	_, err = unpaused.Snapshot()
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != StatusInvalidArgument {
		t.Fatalf("native without pause: want StatusInvalidArgument, got %v", err)
	}
}
