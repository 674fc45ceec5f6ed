package pyspy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// gcore dumps the running process pid with gdb into dir; skips the test without gdb.
func gcore(t *testing.T, pid int, dir string) string {
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skip("no gdb to make a core with")
	}
	core := filepath.Join(dir, "core")
	cmd := exec.Command("gdb", "--nx", "--batch", "--readnever",
		"-ex", fmt.Sprintf("attach %d", pid), "-ex", "gcore "+core, "-ex", "detach")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcore: %v\n%s", err, out)
	}
	return core
}

func TestOpenCore(t *testing.T) {
	pid := startTarget(t)
	dir := t.TempDir()
	core := gcore(t, pid, dir)
	session, err := OpenCore(core, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if !session.IsCore() || session.Pid() != pid || session.PythonVersion() == "" {
		t.Fatalf("core session: core %v pid %d (want %d) version %q", session.IsCore(),
			session.Pid(), pid, session.PythonVersion())
	}
	if sig, ok := session.Signal(); ok {
		t.Fatalf("gdb's core of a running process has no signal, got %+v", sig)
	}
	snapshot, err := session.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	foundLeaf := false
	for _, th := range snapshot.Threads {
		if th.ActiveKnown || th.Active {
			t.Errorf("activity is unknown in a core: %+v", th)
		}
		if len(th.Frames) > 0 && th.Frames[0].Function == "go_target_leaf" {
			foundLeaf = true
		}
	}
	if !foundLeaf {
		t.Fatalf("no thread in go_target_leaf: %+v", snapshot.Threads)
	}
	// Native frames, unwound from the registers the core recorded: time.sleep blocks in the
	// C library, so the leaf's thread has native frames above it.
	if err := session.SetOptions(&Options{Native: true}); err != nil {
		t.Fatal(err)
	}
	snapshot, err = session.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	nativeAboveLeaf := false
	for _, th := range snapshot.Threads {
		for i, f := range th.Frames {
			if !f.Native && f.Function == "go_target_leaf" && i > 0 && th.Frames[0].Native {
				nativeAboveLeaf = true
			}
		}
	}
	if !nativeAboveLeaf {
		t.Fatalf("native core snapshot: no native frames above go_target_leaf: %+v",
			snapshot.Threads)
	}
	session.Close()
	if session.IsCore() {
		t.Fatal("IsCore after Close")
	}

	if _, err := OpenCore(core, &CoreOptions{Sysroot: "/nonexistent-sysroot"}); !errors.Is(err, ErrCoreBinary) {
		t.Fatalf("a sysroot without the binaries: want ErrCoreBinary, got %v", err)
	}
	text := filepath.Join(dir, "text")
	if err := os.WriteFile(text, []byte("not a core\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCore(text, nil); !errors.Is(err, ErrBadCore) {
		t.Fatalf("a text file: want ErrBadCore, got %v", err)
	}
	if _, err := OpenCore(filepath.Join(dir, "missing"), nil); !errors.Is(err, ErrIO) {
		t.Fatalf("a missing file: want ErrIO, got %v", err)
	}
}

func TestLiveThreadsKnowTheirActivity(t *testing.T) {
	session, err := Attach(context.Background(), startTarget(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if session.IsCore() {
		t.Fatal("a live session is not a core")
	}
	if _, ok := session.Signal(); ok {
		t.Fatal("a live session has no signal")
	}
	snapshot, err := session.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range snapshot.Threads {
		if !th.ActiveKnown {
			t.Errorf("a live thread's activity is read from /proc: %+v", th)
		}
	}
}
