package pyspy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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

const targetScript = `
import sys, threading, time

def go_target_leaf(ready):
    open(ready, "w").close()
    while True:
        time.sleep(0.05)

def go_target_worker():
    while True:
        time.sleep(0.05)

threading.Thread(target=go_target_worker, name="go-worker", daemon=True).start()
go_target_leaf(sys.argv[1])
`

// startTarget runs a Python that blocks in go_target_leaf; it is killed when the test ends.
func startTarget(t *testing.T) int {
	dir := t.TempDir()
	script := filepath.Join(dir, "target.py")
	ready := filepath.Join(dir, "ready")
	if err := os.WriteFile(script, []byte(targetScript), 0o644); err != nil {
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
	return cmd.Process.Pid
}

func TestVersion(t *testing.T) {
	if Version() != HeaderVersion {
		t.Fatalf("library %s, header %s", Version(), HeaderVersion)
	}
}

func TestSampleALivePython(t *testing.T) {
	pid := startTarget(t)
	session, err := Attach(pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if session.Pid() != pid || session.PythonVersion() == "" || session.Executable() == "" {
		t.Fatalf("session info: pid %d version %q executable %q", session.Pid(),
			session.PythonVersion(), session.Executable())
	}
	snapshot, err := session.Sample()
	if err != nil {
		t.Fatal(err)
	}
	var functions []string
	foundLeaf, foundWorker := false, false
	for _, th := range snapshot.Threads {
		if th.ID == 0 {
			t.Errorf("thread without an ident: %+v", th)
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
		}
	}
	if !foundLeaf || !foundWorker {
		t.Fatalf("want threads in go_target_leaf and go_target_worker, got functions %v",
			functions)
	}
}

func TestErrors(t *testing.T) {
	// A pid no process has: one that exited and was reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	_, err := Attach(cmd.Process.Pid, nil)
	if !errors.Is(err, ErrNoSuchProcess) {
		t.Fatalf("want ErrNoSuchProcess, got %v", err)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != StatusNoSuchProcess || !strings.Contains(pe.Message, "no process") {
		t.Fatalf("errors.As: %#v", pe)
	}
	if _, err := Attach(os.Getpid(), &Options{}); !errors.Is(err, ErrNotPython) {
		t.Fatalf("attaching to the Go test itself: want ErrNotPython, got %v", err)
	}
	if _, err := Attach(0, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("pid 0: want ErrInvalidArgument, got %v", err)
	}
	if StatusNoSuchProcess.String() != "PYSPY_STATUS_NO_SUCH_PROCESS" {
		t.Fatal(StatusNoSuchProcess.String())
	}
}

func TestCloseAndUseAfterClose(t *testing.T) {
	pid := startTarget(t)
	session, err := Attach(pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := session.Close(); err != nil {
		t.Fatal(err)
	}
	if err := session.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := session.Sample(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sample after Close: %v", err)
	}
	// Sessions that are never closed are freed by their finalizers.
	for i := 0; i < 20; i++ {
		if _, err := Attach(pid, nil); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC()
}

func TestSessionsOnManyGoroutines(t *testing.T) {
	pid := startTarget(t)
	session, err := Attach(pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 20; i++ {
				if _, err := session.Sample(); err != nil {
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
	sampler, err := StartSampler(pid, &Options{Rate: 200, Idle: true, CPUTime: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if n, _ := sampler.Stats(); n >= 20 {
			break
		}
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
}
