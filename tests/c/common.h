/* Helpers shared by the C tests of libpyspy: failing loudly and printing a snapshot as the same
 * JSON as `pyspy dump --json`, so the Rust driver (tests/integration/capi.rs) can compare it
 * with what the target reported about itself. */
#ifndef PYSPY_TEST_COMMON_H
#define PYSPY_TEST_COMMON_H

#include <pyspy.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static inline void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) fail("%s:%d: check failed: %s", __FILE__, __LINE__, #cond);      \
    } while (0)

/* Fails with the error's status and message; frees nothing (the process exits). */
static inline void fail_status(const char *what, pyspy_status status, const pyspy_error *err) {
    const char *name = pyspy_status_name((int)status);
    fail("%s: %s (%d): %s", what, name ? name : "?", (int)status,
         err ? pyspy_error_message(err) : "(no error object)");
}

/* Writes `s` as a JSON string (UTF-8 passes through; quotes, backslashes and control characters
 * are escaped), or null for NULL. */
static inline void json_string(FILE *out, const char *s) {
    if (s == NULL) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', out);
            fputc(*p, out);
        } else if (*p < 0x20) {
            fprintf(out, "\\u%04x", *p);
        } else {
            fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* Writes one line: {"pid": .., "python_version": .., "threads": [..]} like `pyspy dump --json`. */
static inline void print_snapshot_json(FILE *out, const pyspy_session *session,
                                const pyspy_snapshot *snapshot) {
    fprintf(out, "{\"pid\": %" PRId32 ", \"python_version\": ", pyspy_session_pid(session));
    json_string(out, pyspy_session_python_version(session));
    fputs(", \"executable\": ", out);
    json_string(out, pyspy_session_executable(session));
    fputs(", \"located_by\": ", out);
    json_string(out, pyspy_session_located_by(session));
    fputs(", \"threads\": [", out);
    size_t nthreads = pyspy_snapshot_thread_count(snapshot);
    for (size_t i = 0; i < nthreads; i++) {
        const pyspy_thread *t = pyspy_snapshot_thread(snapshot, i);
        CHECK(t != NULL);
        uint64_t tid = 0;
        fprintf(out, "%s{\"thread_id\": %" PRIu64 ", \"native_thread_id\": ", i ? ", " : "",
                pyspy_thread_id(t));
        if (pyspy_thread_native_id(t, &tid)) {
            fprintf(out, "%" PRIu64, tid);
        } else {
            fputs("null", out);
        }
        fputs(", \"name\": ", out);
        json_string(out, pyspy_thread_name(t));
        bool active = false;
        bool known = pyspy_thread_activity(t, &active);
        CHECK(pyspy_thread_active(t) == (known && active));
        fprintf(out, ", \"owns_gil\": %s, \"active\": %s, \"frames\": [",
                pyspy_thread_owns_gil(t) ? "true" : "false",
                known ? (active ? "true" : "false") : "null");
        size_t nframes = pyspy_thread_frame_count(t);
        for (size_t j = 0; j < nframes; j++) {
            const pyspy_frame *f = pyspy_thread_frame(t, j);
            CHECK(f != NULL);
            CHECK(pyspy_frame_function(f) != NULL);
            CHECK(pyspy_frame_filename(f) != NULL);
            fputs(j ? ", {\"function\": " : "{\"function\": ", out);
            json_string(out, pyspy_frame_function(f));
            fputs(", \"qualname\": ", out);
            json_string(out, pyspy_frame_qualname(f));
            fputs(", \"filename\": ", out);
            json_string(out, pyspy_frame_filename(f));
            fprintf(out, ", \"line\": %" PRId32 "}", pyspy_frame_line(f));
        }
        CHECK(pyspy_thread_frame(t, nframes) == NULL);
        fputs("]}", out);
    }
    CHECK(pyspy_snapshot_thread(snapshot, nthreads) == NULL);
    fputs("]}\n", out);
}

/* Attaches to `pid`, failing the test on error. */
static inline pyspy_session *attach_or_fail(int32_t pid, const pyspy_options *options) {
    pyspy_session *session = NULL;
    pyspy_error *err = NULL;
    pyspy_status status = pyspy_attach(pid, options, &session, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_attach", status, err);
    CHECK(err == NULL);
    CHECK(session != NULL);
    return session;
}

/* One sample, retried a few times on the transient failures of a target that changes under the
 * read (none of the test targets should, but a sample may catch a thread starting). */
static inline pyspy_snapshot *sample_or_fail(pyspy_session *session) {
    pyspy_status status = PYSPY_STATUS_OK;
    for (int attempt = 0; attempt < 5; attempt++) {
        pyspy_snapshot *snapshot = NULL;
        pyspy_error *err = NULL;
        status = pyspy_session_snapshot(session, &snapshot, &err);
        if (status == PYSPY_STATUS_OK) {
            CHECK(err == NULL);
            CHECK(snapshot != NULL);
            return snapshot;
        }
        CHECK(snapshot == NULL); /* outputs only on success */
        CHECK(err != NULL);
        CHECK(pyspy_error_code(err) == status);
        if (status != PYSPY_STATUS_CORRUPT && status != PYSPY_STATUS_MEMORY) {
            fail_status("pyspy_session_snapshot", status, err);
        }
        pyspy_error_free(err);
    }
    fail("pyspy_session_snapshot kept failing (last status %d)", (int)status);
}

#endif
