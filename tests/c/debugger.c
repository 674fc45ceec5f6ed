/* debugger PID...: attaches to each process with locals, exceptions and positions read, and
 * prints one JSON line per process in the shape of `pyspy dump --json --locals` (threads with
 * "exception" and "propagating", frames with positions, "opcode" and "locals"). Run under
 * valgrind by tests/integration/capi.rs against the debugger scenarios. */
#include "common.h"

static void exception_json(FILE *out, const char *type, const char *message) {
    if (type == NULL) {
        CHECK(message == NULL);
        fputs("null", out);
        return;
    }
    CHECK(message != NULL);
    fputs("{\"type\": ", out);
    json_string(out, type);
    fputs(", \"message\": ", out);
    json_string(out, message);
    fputs("}", out);
}

static void optional_int(FILE *out, const char *key, bool known, int64_t value) {
    fprintf(out, ", \"%s\": ", key);
    if (known) {
        fprintf(out, "%" PRId64, value);
    } else {
        fputs("null", out);
    }
}

static const char *kind_name(pyspy_variable_kind kind) {
    switch (kind) {
    case PYSPY_VARIABLE_KIND_ARG: return "arg";
    case PYSPY_VARIABLE_KIND_LOCAL: return "local";
    case PYSPY_VARIABLE_KIND_CELL: return "cell";
    case PYSPY_VARIABLE_KIND_FREE: return "free";
    }
    fail("unknown variable kind %d", (int)kind);
}

static void print_debugger_json(FILE *out, const pyspy_session *session,
                                const pyspy_snapshot *snapshot) {
    fprintf(out, "{\"pid\": %" PRId32 ", \"threads\": [", pyspy_session_pid(session));
    size_t nthreads = pyspy_snapshot_thread_count(snapshot);
    for (size_t i = 0; i < nthreads; i++) {
        const pyspy_thread *t = pyspy_snapshot_thread(snapshot, i);
        fprintf(out, "%s{\"thread_id\": %" PRIu64 ", \"exception\": ", i ? ", " : "",
                pyspy_thread_id(t));
        exception_json(out, pyspy_thread_exception_type(t), pyspy_thread_exception_message(t));
        fputs(", \"propagating\": ", out);
        exception_json(out, pyspy_thread_propagating_type(t),
                       pyspy_thread_propagating_message(t));
        fputs(", \"frames\": [", out);
        size_t nframes = pyspy_thread_frame_count(t);
        for (size_t j = 0; j < nframes; j++) {
            const pyspy_frame *f = pyspy_thread_frame(t, j);
            fputs(j ? ", {\"function\": " : "{\"function\": ", out);
            json_string(out, pyspy_frame_function(f));
            fputs(", \"qualname\": ", out);
            json_string(out, pyspy_frame_qualname(f));
            fputs(", \"filename\": ", out);
            json_string(out, pyspy_frame_filename(f));
            fprintf(out, ", \"line\": %" PRId32, pyspy_frame_line(f));
            int32_t v = -1;
            uint8_t op = 0;
            bool known = pyspy_frame_end_line(f, &v);
            optional_int(out, "end_line", known, v);
            known = pyspy_frame_column(f, &v);
            optional_int(out, "column", known, v);
            known = pyspy_frame_end_column(f, &v);
            optional_int(out, "end_column", known, v);
            known = pyspy_frame_opcode(f, &op);
            optional_int(out, "opcode", known, op);
            CHECK(!pyspy_frame_column(f, NULL));
            fputs(", \"locals\": [", out);
            size_t nlocals = pyspy_frame_local_count(f);
            for (size_t k = 0; k < nlocals; k++) {
                const pyspy_local *l = pyspy_frame_local(f, k);
                CHECK(l != NULL);
                fputs(k ? ", {\"name\": " : "{\"name\": ", out);
                json_string(out, pyspy_local_name(l));
                fprintf(out, ", \"kind\": \"%s\", \"repr\": ", kind_name(pyspy_local_kind(l)));
                json_string(out, pyspy_local_repr(l));
                fputs("}", out);
            }
            CHECK(pyspy_frame_local(f, nlocals) == NULL);
            fputs("]}", out);
        }
        fputs("]}", out);
    }
    fputs("]}\n", out);
}

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: %s PID...", argv[0]);
    /* NULL arguments are harmless. */
    CHECK(pyspy_frame_local_count(NULL) == 0);
    CHECK(pyspy_frame_local(NULL, 0) == NULL);
    CHECK(pyspy_local_name(NULL) == NULL && pyspy_local_repr(NULL) == NULL);
    CHECK(pyspy_thread_exception_type(NULL) == NULL);
    CHECK(pyspy_options_set_locals(NULL, true) == PYSPY_STATUS_INVALID_ARGUMENT);
    pyspy_options *options = pyspy_options_new();
    CHECK(options != NULL);
    CHECK(pyspy_options_set_locals(options, true) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_exceptions(options, true, false) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_positions(options, true) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_repr_limits(options, 3, 10, 80, 100) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_pause(options, true) == PYSPY_STATUS_OK);
    for (int i = 1; i < argc; i++) {
        int32_t pid = (int32_t)atoi(argv[i]);
        pyspy_session *session = attach_or_fail(pid, options);
        pyspy_snapshot *snapshot = sample_or_fail(session);
        print_debugger_json(stdout, session, snapshot);
        pyspy_session_free(session);
        pyspy_snapshot_free(snapshot);
    }
    pyspy_options_free(options);
    return 0;
}
