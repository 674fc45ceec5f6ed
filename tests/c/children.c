/* children PID N OUT: profiles PID and its child processes (pyspy_options_set_subprocesses,
 * pyspy_options_set_per_process), until the sample callback has seen PID and N other processes
 * in at least 5 samples each, then writes the profile as pprof to OUT (the size asked first,
 * then exported into a larger buffer) for the driver to read back with `go tool pprof -tags`,
 * and prints the pids the callback saw. Run under valgrind by tests/integration/capi.rs. */
#include "common.h"

#include <stdatomic.h>

enum { MAX_PIDS = 64, SAMPLES_EACH = 5 };

struct seen {
    int32_t pids[MAX_PIDS];
    int counts[MAX_PIDS];
    int npids;
    int want; /* processes to see */
    atomic_int done;
};

static bool on_sample(void *userdata, const pyspy_sample *sample) {
    struct seen *s = userdata;
    for (size_t i = 0; i < pyspy_sample_process_count(sample); i++) {
        int32_t pid = pyspy_sample_pid(sample, i);
        CHECK(pid > 0 && pyspy_sample_snapshot(sample, i) != NULL);
        int j = 0;
        while (j < s->npids && s->pids[j] != pid) j++;
        if (j == s->npids) {
            CHECK(s->npids < MAX_PIDS);
            s->pids[s->npids++] = pid;
        }
        s->counts[j]++;
    }
    int enough = 0;
    for (int j = 0; j < s->npids; j++) enough += s->counts[j] >= SAMPLES_EACH;
    if (enough >= s->want) {
        atomic_store(&s->done, 1);
        return false;
    }
    return true;
}

int main(int argc, char **argv) {
    if (argc != 4) fail("usage: %s PID N OUT", argv[0]);
    int32_t pid = (int32_t)atoi(argv[1]);
    struct seen seen = {.want = 1 + atoi(argv[2])};
    pyspy_options *options = pyspy_options_new();
    CHECK(pyspy_options_set_subprocesses(options, true) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_per_process(options, true) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_idle(options, true) == PYSPY_STATUS_OK); /* they all sleep */
    CHECK(pyspy_options_set_rate(options, 50.0) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_duration_ms(options, 60000) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_sample_callback(options, on_sample, &seen) == PYSPY_STATUS_OK);
    pyspy_sampler *sampler = NULL;
    pyspy_error *err = NULL;
    pyspy_status status = pyspy_sampler_start(pid, options, &sampler, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_sampler_start", status, err);
    pyspy_options_free(options);

    pyspy_end_reason reason = PYSPY_END_REASON_DURATION;
    status = pyspy_sampler_wait(sampler, PYSPY_WAIT_FOREVER, &reason, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_sampler_wait", status, err);
    if (!atomic_load(&seen.done) || reason != PYSPY_END_REASON_STOPPED) {
        fail("the sampler ended (reason %d) having seen %d of %d processes", (int)reason,
             seen.npids, seen.want);
    }

    pyspy_profile *profile = NULL;
    status = pyspy_sampler_profile(sampler, false, &profile, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_sampler_profile", status, err);
    size_t needed = 0;
    CHECK(pyspy_profile_export(profile, PYSPY_FORMAT_PPROF, NULL, 0, &needed, &err) ==
          PYSPY_STATUS_BUFFER_TOO_SMALL);
    CHECK(err == NULL && needed > 0);
    size_t capacity = needed + 4096, len = 0;
    uint8_t *bytes = malloc(capacity);
    CHECK(bytes != NULL);
    status = pyspy_profile_export(profile, PYSPY_FORMAT_PPROF, bytes, capacity, &len, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_profile_export", status, err);
    CHECK(len == needed);
    FILE *out = fopen(argv[3], "wb");
    CHECK(out != NULL);
    CHECK(fwrite(bytes, 1, len, out) == len);
    CHECK(fclose(out) == 0);
    free(bytes);
    pyspy_profile_free(profile);
    pyspy_sampler_free(sampler);

    printf("pids:");
    for (int j = 0; j < seen.npids; j++) printf(" %d", (int)seen.pids[j]);
    printf("\nchildren: ok\n");
    return 0;
}
