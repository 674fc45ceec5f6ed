/* api PYTHON: the API's contracts without a prepared target: versions, status names, NULL
 * arguments, _free(NULL), outputs untouched on failure, errors for a missing process and a
 * process that is not Python, and a Python process this test starts itself, samples, kills and
 * samples again. Run under valgrind by tests/integration/capi.rs. */
#include "common.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Calls `pyspy_attach(pid, NULL, &s, &err)` expecting `want`; checks the outputs. */
static void expect_attach_error(int32_t pid, pyspy_status want, const char *in_message) {
    pyspy_session *sentinel = (pyspy_session *)&sentinel;
    pyspy_session *session = sentinel;
    pyspy_error *err = NULL;
    pyspy_status status = pyspy_attach(pid, NULL, &session, &err);
    if (status != want) fail_status("pyspy_attach: unexpected status", status, err);
    CHECK(session == sentinel); /* outputs only on success */
    CHECK(err != NULL);
    CHECK(pyspy_error_code(err) == want);
    const char *message = pyspy_error_message(err);
    CHECK(message != NULL && strlen(message) > 0);
    if (in_message && !strstr(message, in_message)) {
        fail("error message %s lacks %s", message, in_message);
    }
    pyspy_error_free(err);
    /* The error object is optional. */
    CHECK(pyspy_attach(pid, NULL, &session, NULL) == want);
    CHECK(session == sentinel);
}

static void check_versions_and_names(void) {
    CHECK(strcmp(pyspy_version(), PYSPY_VERSION) == 0);
    CHECK(pyspy_version_number() == PYSPY_VERSION_NUMBER);
    CHECK(PYSPY_VERSION_NUMBER == PYSPY_VERSION_MAJOR * 1000000 + PYSPY_VERSION_MINOR * 1000 +
                                      PYSPY_VERSION_PATCH);
    CHECK(strcmp(pyspy_status_name(PYSPY_STATUS_OK), "PYSPY_STATUS_OK") == 0);
    CHECK(strcmp(pyspy_status_name(PYSPY_STATUS_NO_SUCH_PROCESS),
                 "PYSPY_STATUS_NO_SUCH_PROCESS") == 0);
    CHECK(strcmp(pyspy_status_name(PYSPY_STATUS_TIMEOUT), "PYSPY_STATUS_TIMEOUT") == 0);
    CHECK(PYSPY_STATUS_TIMEOUT == 15); /* numbers are the ABI: never renumbered */
    CHECK(pyspy_status_name(-1) == NULL);
    CHECK(pyspy_status_name(100000) == NULL);
}

static void check_null_arguments(void) {
    pyspy_error_free(NULL);
    pyspy_options_free(NULL);
    pyspy_session_free(NULL);
    pyspy_snapshot_free(NULL);

    CHECK(pyspy_error_code(NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_error_message(NULL) == NULL);
    CHECK(pyspy_session_pid(NULL) == 0);
    CHECK(pyspy_session_python_version(NULL) == NULL);
    CHECK(pyspy_session_executable(NULL) == NULL);
    CHECK(pyspy_session_interpreter_binary(NULL) == NULL);
    CHECK(pyspy_session_located_by(NULL) == NULL);
    CHECK(pyspy_snapshot_thread_count(NULL) == 0);
    CHECK(pyspy_snapshot_thread(NULL, 0) == NULL);
    uint64_t tid = 42;
    CHECK(pyspy_thread_id(NULL) == 0);
    CHECK(!pyspy_thread_native_id(NULL, &tid) && tid == 42);
    CHECK(pyspy_thread_name(NULL) == NULL);
    CHECK(!pyspy_thread_owns_gil(NULL));
    CHECK(!pyspy_thread_no_gil(NULL));
    CHECK(!pyspy_thread_active(NULL));
    CHECK(pyspy_thread_frame_count(NULL) == 0);
    CHECK(pyspy_thread_frame(NULL, 0) == NULL);
    CHECK(pyspy_frame_function(NULL) == NULL);
    CHECK(pyspy_frame_qualname(NULL) == NULL);
    CHECK(pyspy_frame_filename(NULL) == NULL);
    CHECK(pyspy_frame_line(NULL) == 0);

    pyspy_error *err = NULL;
    CHECK(pyspy_attach(getpid(), NULL, NULL, &err) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(err != NULL && strstr(pyspy_error_message(err), "session_out") != NULL);
    pyspy_error_free(err);
    CHECK(pyspy_attach(getpid(), NULL, NULL, NULL) == PYSPY_STATUS_INVALID_ARGUMENT);

    pyspy_snapshot *snapshot = NULL;
    err = NULL;
    CHECK(pyspy_session_snapshot(NULL, &snapshot, &err) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(snapshot == NULL);
    CHECK(err != NULL && strstr(pyspy_error_message(err), "session") != NULL);
    pyspy_error_free(err);

    /* Samplers, samples and profiles. */
    pyspy_sampler_free(NULL);
    pyspy_profile_free(NULL);
    pyspy_buffer_free(NULL);
    pyspy_sampler *sampler = NULL;
    err = NULL;
    CHECK(pyspy_session_start_sampler(NULL, NULL, &sampler, &err) ==
          PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(sampler == NULL);
    CHECK(err != NULL && strstr(pyspy_error_message(err), "session") != NULL);
    pyspy_error_free(err);
    pyspy_end_reason reason = (pyspy_end_reason)77;
    CHECK(pyspy_sampler_wait(NULL, 0, &reason, NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK((int)reason == 77);
    CHECK(pyspy_sampler_stop(NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(!pyspy_sampler_running(NULL));
    uint64_t samples = 42;
    CHECK(pyspy_sampler_stats(NULL, &samples, NULL, NULL, NULL) ==
          PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(samples == 42);
    CHECK(pyspy_sample_process_count(NULL) == 0);
    CHECK(pyspy_sample_pid(NULL, 0) == 0);
    CHECK(pyspy_sample_snapshot(NULL, 0) == NULL);
    CHECK(pyspy_sample_time_ns(NULL) == 0);
    CHECK(pyspy_sample_elapsed_ns(NULL) == 0);
    CHECK(pyspy_sample_lag_ns(NULL) == 0);
    CHECK(pyspy_profile_samples(NULL) == 0);
    CHECK(pyspy_buffer_len(NULL) == 0 && pyspy_buffer_data(NULL) == NULL);
    size_t len = 7;
    CHECK(pyspy_profile_export(NULL, PYSPY_FORMAT_PPROF, NULL, 0, &len, NULL) ==
          PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(len == 7);
    CHECK(pyspy_options_set_sample_callback(NULL, NULL, NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_options_set_per_process(NULL, true) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_options_set_idle_if_ran(NULL, true) == PYSPY_STATUS_INVALID_ARGUMENT);
}

/* A pid that no process has: a child that has exited and been reaped. */
static pid_t reaped_pid(void) {
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) _exit(0);
    CHECK(waitpid(child, NULL, 0) == child);
    return child;
}

static void check_python_that_exits(const char *python) {
    char *const args[] = {(char *)python, "-c", "import time\nwhile True: time.sleep(0.05)\n",
                          NULL};
    pid_t child;
    CHECK(posix_spawn(&child, python, NULL, NULL, args, environ) == 0);

    /* Right after exec the interpreter is not there yet: attach until it is (bounded). */
    pyspy_session *session = NULL;
    pyspy_status status = PYSPY_STATUS_OK;
    for (int i = 0; i < 200; i++) {
        pyspy_error *err = NULL;
        status = pyspy_attach(child, NULL, &session, &err);
        pyspy_error_free(err);
        if (status == PYSPY_STATUS_OK) break;
        sleep_ms(50);
    }
    if (status != PYSPY_STATUS_OK) fail_status("attaching to the python child", status, NULL);
    pyspy_snapshot *snapshot = sample_or_fail(session);
    CHECK(pyspy_snapshot_thread_count(snapshot) >= 1);
    pyspy_snapshot_free(snapshot);
    CHECK(strncmp(pyspy_session_python_version(session), "3.", 2) == 0 ||
          strncmp(pyspy_session_python_version(session), "2.", 2) == 0);

    CHECK(kill(child, SIGKILL) == 0);
    CHECK(waitpid(child, NULL, 0) == child);
    snapshot = NULL;
    pyspy_error *err = NULL;
    status = pyspy_session_snapshot(session, &snapshot, &err);
    if (status != PYSPY_STATUS_PROCESS_EXITED && status != PYSPY_STATUS_NO_SUCH_PROCESS) {
        fail_status("sampling a process that exited", status, err);
    }
    CHECK(snapshot == NULL);
    CHECK(pyspy_error_code(err) == status);
    pyspy_error_free(err);
    pyspy_session_free(session);
}

int main(int argc, char **argv) {
    if (argc != 2) fail("usage: %s PYTHON", argv[0]);
    check_versions_and_names();
    check_null_arguments();
    expect_attach_error(0, PYSPY_STATUS_INVALID_ARGUMENT, "pid");
    expect_attach_error(reaped_pid(), PYSPY_STATUS_NO_SUCH_PROCESS, "no process");
    expect_attach_error(getpid(), PYSPY_STATUS_NOT_PYTHON, "not a Python process");
    check_python_that_exits(argv[1]);
    printf("api: ok\n");
    return 0;
}
