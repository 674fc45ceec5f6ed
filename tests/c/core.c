/* core CORE [SYSROOT]: opens a core file through the C API, checks the failure paths of
 * pyspy_open_core and its options, samples the core twice and prints two lines: the snapshot as
 * the JSON of `pyspy dump --json`, then {"signal": N|null, "name": .., "thread": ..}. Run under
 * valgrind by tests/integration/capi.rs. */
#include "common.h"

static void expect_failure(const char *core, const pyspy_core_options *options,
                           pyspy_status want, const char *in_message) {
    pyspy_session *session = NULL;
    pyspy_error *err = NULL;
    pyspy_status status = pyspy_open_core(core, options, &session, &err);
    if (status != want) fail("pyspy_open_core(%s): status %d, want %d", core, status, want);
    CHECK(session == NULL); /* outputs only on success */
    CHECK(err != NULL);
    CHECK(pyspy_error_code(err) == want);
    if (strstr(pyspy_error_message(err), in_message) == NULL) {
        fail("pyspy_open_core(%s): %s, want it to say %s", core, pyspy_error_message(err),
             in_message);
    }
    pyspy_error_free(err);
}

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: %s CORE [SYSROOT]", argv[0]);
    const char *core = argv[1];
    pyspy_session *session = NULL;

    /* Bad arguments and files. */
    CHECK(pyspy_open_core(NULL, NULL, &session, NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_open_core(core, NULL, NULL, NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(session == NULL);
    expect_failure(argv[0], NULL, PYSPY_STATUS_BAD_CORE, "not a core dump");
    expect_failure("/nonexistent/core", NULL, PYSPY_STATUS_IO, "/nonexistent/core");
    pyspy_core_options *options = pyspy_core_options_new();
    CHECK(options != NULL);
    CHECK(pyspy_core_options_set_locate(options, 42) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_core_options_set_locate(NULL, 0) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_core_options_set_sysroot(NULL, "/") == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_core_options_set_sysroot(options, "/nonexistent-sysroot") == PYSPY_STATUS_OK);
    expect_failure(core, options, PYSPY_STATUS_CORE_BINARY, "/nonexistent-sysroot/");

    /* The core itself, with the sysroot it needs (NULL resets it). */
    CHECK(pyspy_core_options_set_sysroot(options, argc > 2 ? argv[2] : NULL) == PYSPY_STATUS_OK);
    CHECK(pyspy_core_options_set_executable(options, NULL) == PYSPY_STATUS_OK);
    CHECK(pyspy_core_options_set_locate(options, PYSPY_LOCATE_AUTO) == PYSPY_STATUS_OK);
    pyspy_error *err = NULL;
    pyspy_status status = pyspy_open_core(core, options, &session, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_open_core", status, err);
    CHECK(err == NULL && session != NULL);
    pyspy_core_options_free(options);
    CHECK(pyspy_session_is_core(session));
    CHECK(!pyspy_session_is_core(NULL));

    pyspy_snapshot *first = sample_or_fail(session);
    pyspy_snapshot *second = sample_or_fail(session);
    CHECK(pyspy_snapshot_thread_count(first) == pyspy_snapshot_thread_count(second));
    for (size_t i = 0; i < pyspy_snapshot_thread_count(second); i++) {
        const pyspy_thread *t = pyspy_snapshot_thread(second, i);
        bool active = true;
        CHECK(!pyspy_thread_activity(t, &active)); /* a core does not record it */
        CHECK(active);                             /* untouched */
    }
    pyspy_snapshot_free(first);
    print_snapshot_json(stdout, session, second);
    pyspy_snapshot_free(second);

    int32_t signal = 0;
    uint64_t tid = 0;
    CHECK(!pyspy_session_signal(session, NULL, &tid));
    if (pyspy_session_signal(session, &signal, &tid)) {
        printf("{\"signal\": %" PRId32 ", \"name\": ", signal);
        json_string(stdout, pyspy_signal_name(signal));
        printf(", \"thread\": %" PRIu64 "}\n", tid);
    } else {
        CHECK(signal == 0 && tid == 0); /* untouched */
        printf("{\"signal\": null}\n");
    }
    pyspy_session_free(session);
    CHECK(strcmp(pyspy_signal_name(11), "SIGSEGV") == 0);
    CHECK(pyspy_signal_name(0) == NULL && pyspy_signal_name(40) == NULL);
    return 0;
}
