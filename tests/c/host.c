/* host.c PYTHON: the discovery and labels C API against a live Python (run under valgrind by
 * tests/integration/capi.rs): a filter that keeps only our child, its labels (service from its
 * environment, Python version once attached), the session a scan hands out reads its stack,
 * the session is taken once only, and the child's exit is reported by a later scan. Prints
 * "host: ok". */
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

/* The Python child, killed at exit if a check fails first (it holds the driver's pipes). */
static pid_t the_child;

static void kill_the_child(void) {
    if (the_child > 0) kill(the_child, SIGKILL);
}

struct filter_state {
    int32_t pid;
    int calls;
};

/* Keeps only the child; the labels are lent for the call. */
static bool only_the_child(void *userdata, const pyspy_process_labels *labels) {
    struct filter_state *state = userdata;
    CHECK(labels != NULL);
    CHECK(pyspy_process_labels_python_version(labels) == NULL); /* not attached yet */
    CHECK(pyspy_process_labels_command_line(labels) != NULL);
    if (pyspy_process_labels_pid(labels) != state->pid) return false;
    state->calls++;
    return true;
}

static bool has_function(const pyspy_snapshot *snapshot, const char *name) {
    for (size_t i = 0; i < pyspy_snapshot_thread_count(snapshot); i++) {
        const pyspy_thread *t = pyspy_snapshot_thread(snapshot, i);
        for (size_t j = 0; j < pyspy_thread_frame_count(t); j++) {
            if (strcmp(pyspy_frame_function(pyspy_thread_frame(t, j)), name) == 0) return true;
        }
    }
    return false;
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    const char *python = argv[1];
    char service[64];
    snprintf(service, sizeof service, "c-host-%d", (int)getpid());
    char env_service[96];
    snprintf(env_service, sizeof env_service, "OTEL_SERVICE_NAME=%s", service);
    char *const env[] = {env_service, NULL};
    char *const args[] = {(char *)python, "-c",
                          "import time\ndef c_host_leaf():\n    while True:\n"
                          "        time.sleep(0.05)\nc_host_leaf()\n",
                          NULL};
    pid_t child;
    CHECK(posix_spawn(&child, python, NULL, NULL, args, env) == 0);

    the_child = child;
    CHECK(atexit(kill_the_child) == 0);

    struct filter_state state = {child, 0};
    pyspy_discovery *discovery = NULL;
    pyspy_error *err = NULL;
    pyspy_status status = pyspy_discovery_new(NULL, 4, only_the_child, &state, &discovery, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_discovery_new", status, err);

    /* Scans until the child is handed out (it may not be initialised at the first ones). */
    pyspy_scan *scan = NULL;
    for (int i = 0; i < 100; i++) {
        status = pyspy_discovery_scan(discovery, &scan, &err);
        if (status != PYSPY_STATUS_OK) fail_status("pyspy_discovery_scan", status, err);
        if (pyspy_scan_found_count(scan) > 0) break;
        pyspy_scan_free(scan);
        scan = NULL;
        sleep_ms(100);
    }
    CHECK(scan != NULL);
    CHECK(state.calls >= 1); /* once per attempt: also at scans that found it not initialised */
    CHECK(pyspy_scan_found_count(scan) == 1);

    /* Labels of any process: the child's, read directly (now that it has run exec: right
     * after posix_spawn, /proc still shows this program's environment). */
    pyspy_process_labels *own = NULL;
    status = pyspy_process_labels_read(child, &own, NULL);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_process_labels_read", status, NULL);
    CHECK(pyspy_process_labels_pid(own) == child);
    CHECK(pyspy_process_labels_start_time(own) > 0);
    CHECK(pyspy_process_labels_namespace_pid(own) == 0);
    CHECK(pyspy_process_labels_python_version(own) == NULL);
    CHECK(pyspy_scan_found_labels(scan, 1) == NULL);
    const pyspy_process_labels *labels = pyspy_scan_found_labels(scan, 0);
    CHECK(pyspy_process_labels_pid(labels) == child);
    CHECK(pyspy_process_labels_start_time(labels) == pyspy_process_labels_start_time(own));
    CHECK(strcmp(pyspy_process_labels_service(labels), service) == 0);
    CHECK(strcmp(pyspy_process_labels_service_source(labels), "OTEL_SERVICE_NAME") == 0);
    CHECK(strcmp(pyspy_process_labels_service(own), service) == 0);
    CHECK(pyspy_process_labels_python_version(labels) != NULL);
    CHECK(pyspy_process_labels_container_id(labels) == NULL ||
          strlen(pyspy_process_labels_container_id(labels)) == 64);
    CHECK(strstr(pyspy_process_labels_command_line(labels), "c_host_leaf") != NULL);
    uint64_t start_time = pyspy_process_labels_start_time(labels);

    pyspy_session *session = NULL;
    status = pyspy_scan_take_session(scan, 0, &session, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_scan_take_session", status, err);
    CHECK(pyspy_session_pid(session) == child);
    CHECK(strcmp(pyspy_session_python_version(session),
                 pyspy_process_labels_python_version(labels)) == 0);
    pyspy_session *again = NULL;
    CHECK(pyspy_scan_take_session(scan, 0, &again, &err) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(again == NULL && err != NULL);
    pyspy_error_free(err);
    err = NULL;
    CHECK(pyspy_scan_take_session(scan, 1, &again, NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    pyspy_scan_free(scan);

    /* The session outlives the scan and reads the child's stack. */
    bool leaf = false;
    for (int i = 0; i < 100 && !leaf; i++) {
        pyspy_snapshot *snapshot = sample_or_fail(session);
        leaf = has_function(snapshot, "c_host_leaf");
        pyspy_snapshot_free(snapshot);
        if (!leaf) sleep_ms(50);
    }
    CHECK(leaf);
    pyspy_session_free(session);

    /* The exit, at a later scan. */
    CHECK(kill(child, SIGKILL) == 0);
    CHECK(waitpid(child, NULL, 0) == child);
    the_child = 0;
    status = pyspy_discovery_scan(discovery, &scan, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_discovery_scan", status, err);
    CHECK(pyspy_scan_found_count(scan) == 0);
    CHECK(pyspy_scan_exited_count(scan) == 1);
    const pyspy_process_labels *gone = pyspy_scan_exited_labels(scan, 0);
    CHECK(pyspy_process_labels_pid(gone) == child);
    CHECK(pyspy_process_labels_start_time(gone) == start_time);
    CHECK(pyspy_scan_exited_labels(scan, 1) == NULL);
    CHECK(pyspy_scan_skipped_reason(scan, 0) == NULL);
    pyspy_scan_free(scan);

    /* NULLs. */
    CHECK(pyspy_discovery_scan(NULL, &scan, NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_discovery_scan(discovery, NULL, NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_process_labels_service(NULL) == NULL);
    CHECK(pyspy_scan_exited_count(NULL) == 0);
    CHECK(pyspy_discovery_release(discovery, child));
    pyspy_discovery_free(discovery);
    pyspy_discovery_free(NULL);
    pyspy_scan_free(NULL);
    pyspy_process_labels_free(own);
    pyspy_process_labels_free(NULL);
    printf("host: ok\n");
    return 0;
}
