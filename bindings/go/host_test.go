package pyspy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadProcessLabels(t *testing.T) {
	me, err := ReadProcessLabels(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if me.Pid != os.Getpid() || me.Executable != exe || me.StartTime == 0 || me.Service == "" || me.PythonVersion != "" {
		t.Errorf("labels of this process: %+v (executable %s)", me, exe)
	}
	if _, err := ReadProcessLabels(-1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("pid -1: %v", err)
	}
}

// A discovery finds a Python started with a service name in its environment, labels it,
// hands out a session that reads its stack, and reports its exit at the next scan.
func TestDiscoveryFindsAPythonAndNoticesItsExit(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "target.py")
	ready := filepath.Join(dir, "ready")
	if err := os.WriteFile(script, []byte(targetScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python(t), script, ready)
	cmd.Env = append(os.Environ(), "OTEL_SERVICE_NAME=go-discovery")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Python target did not start")
		}
	}
	pid := cmd.Process.Pid

	d, err := NewDiscovery(nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	scan, err := d.Scan()
	if err != nil {
		t.Fatal(err)
	}
	var mine *Found
	for i := range scan.Found {
		f := &scan.Found[i]
		if f.Labels.Pid == pid {
			mine = f
		} else {
			_ = f.Session.Close() // other people's Pythons
		}
	}
	if mine == nil {
		t.Fatalf("the target %d was not found: %+v", pid, scan)
	}
	defer mine.Session.Close()
	l := mine.Labels
	if l.Service != "go-discovery" || l.ServiceSource != "OTEL_SERVICE_NAME" ||
		l.PythonVersion == "" || l.PythonVersion != mine.Session.PythonVersion() ||
		!strings.Contains(l.CommandLine, script) || l.StartTime == 0 {
		t.Errorf("labels: %+v", l)
	}
	snap, err := mine.Session.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	leaf := false
	for _, th := range snap.Threads {
		if len(th.Frames) > 0 && th.Frames[0].Function == "go_target_leaf" {
			leaf = true
		}
	}
	if !leaf {
		t.Errorf("no thread in go_target_leaf: %+v", snap.Threads)
	}

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	scan, err = d.Scan()
	if err != nil {
		t.Fatal(err)
	}
	exited := false
	for _, e := range scan.Exited {
		exited = exited || (e.Pid == pid && e.StartTime == l.StartTime)
	}
	for _, f := range scan.Found {
		_ = f.Session.Close()
	}
	if !exited {
		t.Errorf("the exit of %d was not reported: %+v", pid, scan.Exited)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Scan(); !errors.Is(err, ErrClosed) {
		t.Errorf("Scan after Close: %v", err)
	}
}
