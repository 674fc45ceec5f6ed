/* profile PID OUT_DIR: a sampler on PID for a short while, its profile exported as collapsed
 * stacks into a caller buffer (first asking for the size: no error object; then a buffer too
 * small, one exactly large enough and one larger than needed), as pprof and speedscope into
 * library buffers; writes OUT_DIR/profile.pb.gz and OUT_DIR/profile.folded for the driver to
 * read back with real consumers. Run under valgrind by tests/integration/capi.rs. */
#include "common.h"

#include <time.h>

static void write_file(const char *dir, const char *name, const uint8_t *data, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

int main(int argc, char **argv) {
    if (argc != 3) fail("usage: %s PID OUT_DIR", argv[0]);
    int32_t pid = (int32_t)atoi(argv[1]);
    pyspy_options *options = pyspy_options_new();
    CHECK(pyspy_options_set_rate(options, 200.0) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_rate(options, -1.0) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_options_set_idle(options, true) == PYSPY_STATUS_OK); /* the target sleeps */
    CHECK(pyspy_options_set_cpu_time(options, true) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_locate(options, PYSPY_LOCATE_AUTO) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_locate(options, (pyspy_locate)99) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_options_set_locate(options, (pyspy_locate)-1) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_options_set_rate(NULL, 1.0) == PYSPY_STATUS_INVALID_ARGUMENT);

    pyspy_sampler *sampler = NULL;
    pyspy_error *err = NULL;
    pyspy_status status = pyspy_sampler_start(pid, options, &sampler, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_sampler_start", status, err);
    pyspy_options_free(options);

    uint64_t samples = 0, errors = 0;
    for (int i = 0; i < 400 && samples < 20; i++) {
        struct timespec ts = {0, 25 * 1000000L};
        nanosleep(&ts, NULL);
        CHECK(pyspy_sampler_stats(sampler, &samples, &errors, NULL, NULL) == PYSPY_STATUS_OK);
    }
    CHECK(samples >= 20);
    CHECK(pyspy_sampler_running(sampler));

    pyspy_profile *profile = NULL;
    status = pyspy_sampler_profile(sampler, true, &profile, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_sampler_profile", status, err);
    CHECK(pyspy_profile_samples(profile) >= 20);
    CHECK(pyspy_sampler_stop(sampler) == PYSPY_STATUS_OK);
    CHECK(pyspy_sampler_stop(sampler) == PYSPY_STATUS_OK);
    CHECK(!pyspy_sampler_running(sampler));

    /* Collapsed into the caller's buffer: ask for the size (an answer, not a failure: no error
     * object even though err is given), then export. */
    size_t needed = 0;
    CHECK(pyspy_profile_export(profile, PYSPY_FORMAT_COLLAPSED, NULL, 0, &needed, &err) ==
          PYSPY_STATUS_BUFFER_TOO_SMALL);
    CHECK(err == NULL);
    CHECK(needed > 4);
    /* A buffer too small: the same answer, the buffer untouched. */
    uint8_t small[4] = {0xAA, 0xAA, 0xAA, 0xAA};
    size_t asked = 0;
    CHECK(pyspy_profile_export(profile, PYSPY_FORMAT_COLLAPSED, small, sizeof small, &asked,
                               &err) == PYSPY_STATUS_BUFFER_TOO_SMALL);
    CHECK(err == NULL);
    CHECK(asked == needed);
    for (size_t i = 0; i < sizeof small; i++) CHECK(small[i] == 0xAA);
    /* One byte short is too small. */
    uint8_t *folded = malloc(needed + 100);
    CHECK(folded != NULL);
    asked = 0;
    CHECK(pyspy_profile_export(profile, PYSPY_FORMAT_COLLAPSED, folded, needed - 1, &asked,
                               NULL) == PYSPY_STATUS_BUFFER_TOO_SMALL);
    CHECK(asked == needed);
    /* Exactly large enough. */
    size_t len = 0;
    status = pyspy_profile_export(profile, PYSPY_FORMAT_COLLAPSED, folded, needed, &len, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_profile_export", status, err);
    CHECK(len == needed);
    /* Larger than needed is fine too: the same bytes, the rest of the buffer left alone. */
    uint8_t *larger = malloc(needed + 100);
    CHECK(larger != NULL);
    memset(larger, 0xAA, needed + 100);
    len = 0;
    status = pyspy_profile_export(profile, PYSPY_FORMAT_COLLAPSED, larger, needed + 100, &len,
                                  &err);
    if (status != PYSPY_STATUS_OK) fail_status("export into a larger buffer", status, err);
    CHECK(len == needed);
    CHECK(memcmp(larger, folded, needed) == 0);
    for (size_t i = needed; i < needed + 100; i++) CHECK(larger[i] == 0xAA);
    free(larger);
    /* A NULL buffer claiming a capacity is a mistake, not a size query. */
    len = 0;
    CHECK(pyspy_profile_export(profile, PYSPY_FORMAT_COLLAPSED, NULL, 16, &len, &err) ==
          PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(len == 0);
    CHECK(err != NULL && strstr(pyspy_error_message(err), "NULL") != NULL);
    pyspy_error_free(err);
    err = NULL;
    /* pprof through the same size query: the size asked equals what is written. */
    size_t pprof_needed = 0;
    CHECK(pyspy_profile_export(profile, PYSPY_FORMAT_PPROF, NULL, 0, &pprof_needed, NULL) ==
          PYSPY_STATUS_BUFFER_TOO_SMALL);
    uint8_t *pprof = malloc(pprof_needed + 1);
    CHECK(pprof != NULL);
    CHECK(pyspy_profile_export(profile, PYSPY_FORMAT_PPROF, pprof, pprof_needed + 1, &len,
                               NULL) == PYSPY_STATUS_OK);
    CHECK(len == pprof_needed && pprof[0] == 0x1f && pprof[1] == 0x8b);
    free(pprof);
    write_file(argv[2], "profile.folded", folded, needed);
    free(folded);

    /* pprof and speedscope into library buffers. */
    pyspy_buffer *buffer = NULL;
    status = pyspy_profile_export_buffer(profile, PYSPY_FORMAT_PPROF, &buffer, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pprof export", status, err);
    CHECK(pyspy_buffer_len(buffer) > 2);
    CHECK(pyspy_buffer_data(buffer)[0] == 0x1f && pyspy_buffer_data(buffer)[1] == 0x8b);
    write_file(argv[2], "profile.pb.gz", pyspy_buffer_data(buffer), pyspy_buffer_len(buffer));
    pyspy_buffer_free(buffer);
    buffer = NULL;
    status = pyspy_profile_export_buffer(profile, PYSPY_FORMAT_SPEEDSCOPE, &buffer, &err);
    if (status != PYSPY_STATUS_OK) fail_status("speedscope export", status, err);
    CHECK(pyspy_buffer_len(buffer) > 0 && pyspy_buffer_data(buffer)[0] == '{');
    pyspy_buffer_free(buffer);
    buffer = NULL;
    CHECK(pyspy_profile_export_buffer(profile, (pyspy_format)42, &buffer, &err) ==
          PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(buffer == NULL);
    pyspy_error_free(err);

    /* After a reset, the sampler's next profile starts empty (it was stopped: stays empty). */
    pyspy_profile *next = NULL;
    CHECK(pyspy_sampler_profile(sampler, false, &next, NULL) == PYSPY_STATUS_OK);
    CHECK(pyspy_profile_samples(next) < pyspy_profile_samples(profile));
    pyspy_profile_free(next);

    pyspy_profile_free(profile);
    pyspy_sampler_free(sampler);
    pyspy_sampler_free(NULL);
    pyspy_profile_free(NULL);
    pyspy_buffer_free(NULL);
    printf("profile: ok (%llu samples, %llu errors)\n", (unsigned long long)samples,
           (unsigned long long)errors);
    return 0;
}
