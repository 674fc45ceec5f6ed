/* dump PID...: attaches to each process, samples it and prints one JSON line per process (the
 * format of `pyspy dump --json`). Linked once against libpyspy.so and once against libpyspy.a;
 * run under valgrind by tests/integration/capi.rs. */
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: %s PID...", argv[0]);
    CHECK(strcmp(pyspy_version(), PYSPY_VERSION) == 0);
    pyspy_options *options = pyspy_options_new();
    CHECK(options != NULL);
    for (int i = 1; i < argc; i++) {
        int32_t pid = (int32_t)atoi(argv[i]);
        pyspy_session *session = attach_or_fail(pid, options);
        CHECK(pyspy_session_pid(session) == pid);
        /* Two samples: the second goes through the session's caches. */
        pyspy_snapshot *first = sample_or_fail(session);
        pyspy_snapshot *second = sample_or_fail(session);
        CHECK(pyspy_snapshot_thread_count(first) == pyspy_snapshot_thread_count(second));
        pyspy_snapshot_free(first);
        print_snapshot_json(stdout, session, second);
        /* A snapshot outlives its session. */
        pyspy_session_free(session);
        CHECK(pyspy_snapshot_thread_count(second) > 0);
        const pyspy_thread *t = pyspy_snapshot_thread(second, 0);
        CHECK(pyspy_thread_frame_count(t) == 0 ||
              strlen(pyspy_frame_function(pyspy_thread_frame(t, 0))) > 0);
        pyspy_snapshot_free(second);
    }
    pyspy_options_free(options);
    return 0;
}
