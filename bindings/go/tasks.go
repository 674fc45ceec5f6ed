package pyspy

/*
#include <pyspy.h>
*/
import "C"

// TaskState says what an asyncio task is doing.
type TaskState string

// The states of a task.
const (
	// TaskRunning: its event loop is running it now.
	TaskRunning TaskState = "running"
	// TaskPending: scheduled, or suspended awaiting something.
	TaskPending TaskState = "pending"
	// TaskDone: finished, cancelled or failed, and still referenced.
	TaskDone TaskState = "done"
)

// Task is an asyncio task of the target (Options.Tasks).
type Task struct {
	// ID is the task object's address: what id(task) returns in the target.
	ID uint64
	// Name is task.get_name() ("Task-1", or the name given); "" on Python 3.7.
	Name string
	// State is running, pending or done.
	State TaskState
	// ThreadID is the ident of the thread running the task's event loop (Thread.ID), 0 if no
	// thread runs it (its thread is gone, or the loop is stopped).
	ThreadID uint64
	// InterpreterID is the id of the interpreter the task belongs to, -1 if unknown.
	InterpreterID int64
	// Frames is the stack the task is in, innermost first: a pending task's coroutine chain,
	// the running task's thread frames up to its coroutine; none for a done task.
	Frames []Frame
	// AwaitedBy are the IDs of the tasks awaiting this one (directly, gather, shield, wait,
	// a TaskGroup).
	AwaitedBy []uint64
}

// convertTasks copies the asyncio tasks of a snapshot.
func convertTasks(snap *C.pyspy_snapshot) []Task {
	n := int(C.pyspy_snapshot_task_count(snap))
	if n == 0 {
		return nil
	}
	states := map[uint32]TaskState{
		C.PYSPY_TASK_STATE_RUNNING: TaskRunning,
		C.PYSPY_TASK_STATE_PENDING: TaskPending,
		C.PYSPY_TASK_STATE_DONE:    TaskDone,
	}
	out := make([]Task, 0, n)
	for i := 0; i < n; i++ {
		t := C.pyspy_snapshot_task(snap, C.size_t(i))
		task := Task{
			ID:            uint64(C.pyspy_task_id(t)),
			Name:          goStringOrEmpty(C.pyspy_task_name(t)),
			State:         states[uint32(C.pyspy_task_state_of(t))],
			InterpreterID: -1,
		}
		var thread C.uint64_t
		if C.pyspy_task_thread_id(t, &thread) {
			task.ThreadID = uint64(thread)
		}
		var interp C.int64_t
		if C.pyspy_task_interpreter_id(t, &interp) {
			task.InterpreterID = int64(interp)
		}
		nf := int(C.pyspy_task_frame_count(t))
		for j := 0; j < nf; j++ {
			task.Frames = append(task.Frames, convertFrame(C.pyspy_task_frame(t, C.size_t(j))))
		}
		nb := int(C.pyspy_task_awaited_by_count(t))
		for j := 0; j < nb; j++ {
			var id C.uint64_t
			if C.pyspy_task_awaited_by(t, C.size_t(j), &id) {
				task.AwaitedBy = append(task.AwaitedBy, uint64(id))
			}
		}
		out = append(out, task)
	}
	return out
}
