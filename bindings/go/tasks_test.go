package pyspy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The asyncio target: a task "go-parent" awaiting a task "go-child" suspended in go_child,
// while the main task blocks the loop in go_task_leaf (it is the running task).
const tasksScript = `
import asyncio, sys, time

async def go_child():
    await asyncio.sleep(3600)

async def go_parent(child):
    await child

def go_task_leaf(ready):
    open(ready, "w").close()
    while True:
        time.sleep(0.05)

async def main():
    child = asyncio.ensure_future(go_child())
    parent = asyncio.ensure_future(go_parent(child))
    child.set_name("go-child")
    parent.set_name("go-parent")
    await asyncio.sleep(0.1)
    go_task_leaf(sys.argv[1])

asyncio.new_event_loop().run_until_complete(main())
`

func TestAsyncioTasks(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "tasks.py")
	ready := filepath.Join(dir, "ready")
	if err := os.WriteFile(script, []byte(tasksScript), 0o644); err != nil {
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
	plain, err := Attach(context.Background(), cmd.Process.Pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if !pythonAtLeast(t, plain.PythonVersion(), 3, 8) {
		t.Skip("task names need Python 3.8+")
	}
	if snap, err := plain.Snapshot(); err != nil || len(snap.Tasks) != 0 {
		t.Fatalf("without Options.Tasks: %v, %d tasks", err, len(snap.Tasks))
	}
	session, err := Attach(context.Background(), cmd.Process.Pid, &Options{Tasks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	snap, err := session.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Task{}
	for _, task := range snap.Tasks {
		byName[task.Name] = task
	}
	child, parent := byName["go-child"], byName["go-parent"]
	if child.ID == 0 || parent.ID == 0 {
		t.Fatalf("no go-child or go-parent in %+v", snap.Tasks)
	}
	if child.State != TaskPending || len(child.AwaitedBy) != 1 || child.AwaitedBy[0] != parent.ID {
		t.Errorf("go-child %+v: want pending, awaited by %d", child, parent.ID)
	}
	if len(child.Frames) == 0 || child.Frames[len(child.Frames)-1].Function != "go_child" {
		t.Errorf("go-child frames %+v", child.Frames)
	}
	if child.ThreadID == 0 || child.InterpreterID != 0 {
		t.Errorf("go-child thread %d, interpreter %d", child.ThreadID, child.InterpreterID)
	}
	var running *Task
	for i := range snap.Tasks {
		if snap.Tasks[i].State == TaskRunning {
			running = &snap.Tasks[i]
		}
	}
	if running == nil || len(running.Frames) == 0 || running.Frames[0].Function != "go_task_leaf" {
		t.Errorf("running task %+v", running)
	}
	// AsyncStacks: the main thread's stack is the running task's, its marker at the root.
	async, err := Attach(context.Background(), cmd.Process.Pid, &Options{AsyncStacks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer async.Close()
	snap, err = async.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, th := range snap.Threads {
		n := len(th.Frames)
		if n > 1 && th.Frames[0].Function == "go_task_leaf" {
			found = th.Frames[n-1].Filename == "<task>"
		}
	}
	if !found {
		t.Errorf("no async stack ending in a <task> frame: %+v", snap.Threads)
	}
}
