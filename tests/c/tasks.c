/* tasks PID...: attaches to each asyncio target with tasks on (pyspy_options_set_tasks), samples
 * it and prints one JSON line per process: {"pid": .., "tasks": [..]} in the format of the
 * `"tasks"` array of `pyspy dump --json`. Also checks the NULL and out-of-range contracts of
 * the task functions. Run by tests/integration/capi.rs (under valgrind and natively). */
#include "common.h"

static void print_task(FILE *out, const pyspy_task *t) {
    fprintf(out, "{\"id\": %" PRIu64 ", \"name\": ", pyspy_task_id(t));
    json_string(out, pyspy_task_name(t));
    const char *state = "?";
    switch (pyspy_task_state_of(t)) {
    case PYSPY_TASK_STATE_RUNNING: state = "running"; break;
    case PYSPY_TASK_STATE_PENDING: state = "pending"; break;
    case PYSPY_TASK_STATE_DONE: state = "done"; break;
    }
    fprintf(out, ", \"state\": \"%s\", \"thread_id\": ", state);
    uint64_t thread_id = 0;
    if (pyspy_task_thread_id(t, &thread_id)) {
        fprintf(out, "%" PRIu64, thread_id);
    } else {
        fputs("null", out);
    }
    fputs(", \"interp_id\": ", out);
    int64_t interp = 0;
    if (pyspy_task_interpreter_id(t, &interp)) {
        fprintf(out, "%" PRId64, interp);
    } else {
        fputs("null", out);
    }
    fputs(", \"frames\": [", out);
    size_t nframes = pyspy_task_frame_count(t);
    for (size_t j = 0; j < nframes; j++) {
        const pyspy_frame *f = pyspy_task_frame(t, j);
        CHECK(f != NULL);
        fputs(j ? ", {\"function\": " : "{\"function\": ", out);
        json_string(out, pyspy_frame_function(f));
        fputs(", \"qualname\": ", out);
        json_string(out, pyspy_frame_qualname(f));
        fputs(", \"filename\": ", out);
        json_string(out, pyspy_frame_filename(f));
        fprintf(out, ", \"line\": %" PRId32 "}", pyspy_frame_line(f));
    }
    CHECK(pyspy_task_frame(t, nframes) == NULL);
    fputs("], \"awaited_by\": [", out);
    size_t nby = pyspy_task_awaited_by_count(t);
    for (size_t j = 0; j < nby; j++) {
        uint64_t id = 0;
        CHECK(pyspy_task_awaited_by(t, j, &id));
        fprintf(out, "%s%" PRIu64, j ? ", " : "", id);
    }
    uint64_t untouched = 7;
    CHECK(!pyspy_task_awaited_by(t, nby, &untouched) && untouched == 7);
    CHECK(!pyspy_task_awaited_by(t, 0, NULL));
    fputs("]}", out);
}

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: %s PID...", argv[0]);
    /* NULL everywhere: defaults, no crash. */
    CHECK(pyspy_options_set_tasks(NULL, true, false) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_snapshot_task_count(NULL) == 0);
    CHECK(pyspy_snapshot_task(NULL, 0) == NULL);
    CHECK(pyspy_task_id(NULL) == 0);
    CHECK(pyspy_task_name(NULL) == NULL);
    CHECK(pyspy_task_state_of(NULL) == PYSPY_TASK_STATE_PENDING);
    CHECK(pyspy_task_frame_count(NULL) == 0);
    CHECK(pyspy_task_frame(NULL, 0) == NULL);
    CHECK(pyspy_task_awaited_by_count(NULL) == 0);
    uint64_t u = 7;
    int64_t i64 = 7;
    CHECK(!pyspy_task_thread_id(NULL, &u) && u == 7);
    CHECK(!pyspy_task_interpreter_id(NULL, &i64) && i64 == 7);

    pyspy_options *plain = pyspy_options_new();
    pyspy_options *options = pyspy_options_new();
    CHECK(plain != NULL && options != NULL);
    CHECK(pyspy_options_set_tasks(options, true, false) == PYSPY_STATUS_OK);
    for (int i = 1; i < argc; i++) {
        int32_t pid = (int32_t)atoi(argv[i]);
        /* Without tasks asked for, a snapshot has none. */
        pyspy_session *session = attach_or_fail(pid, plain);
        pyspy_snapshot *none = sample_or_fail(session);
        CHECK(pyspy_snapshot_task_count(none) == 0);
        pyspy_snapshot_free(none);
        pyspy_session_free(session);

        session = attach_or_fail(pid, options);
        pyspy_snapshot *snapshot = sample_or_fail(session);
        /* A snapshot (and its tasks) outlives its session. */
        pyspy_session_free(session);
        size_t ntasks = pyspy_snapshot_task_count(snapshot);
        CHECK(pyspy_snapshot_task(snapshot, ntasks) == NULL);
        fprintf(stdout, "{\"pid\": %" PRId32 ", \"tasks\": [", pid);
        for (size_t j = 0; j < ntasks; j++) {
            const pyspy_task *t = pyspy_snapshot_task(snapshot, j);
            CHECK(t != NULL);
            if (j) fputs(", ", stdout);
            print_task(stdout, t);
        }
        fputs("]}\n", stdout);
        pyspy_snapshot_free(snapshot);
    }
    pyspy_options_free(options);
    pyspy_options_free(plain);
    return 0;
}
