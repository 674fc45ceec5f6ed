/* payload PID OUT_DIR: a sampler on PID for a short while (CPU times on), its profile encoded as
 * the request bodies of Pyroscope, DataKit and OTLP with a metadata object; writes
 * OUT_DIR/pyroscope.bin, OUT_DIR/datakit.bin (+ datakit.type, its content type) and
 * OUT_DIR/otlp.bin for the driver to decode. Run under valgrind by tests/integration/capi.rs. */
#include "common.h"

#include <time.h>

static void write_file(const char *dir, const char *name, const uint8_t *data, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(len == 0 || fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

int main(int argc, char **argv) {
    if (argc != 3) fail("usage: %s PID OUT_DIR", argv[0]);
    int32_t pid = (int32_t)atoi(argv[1]);
    pyspy_options *options = pyspy_options_new();
    CHECK(pyspy_options_set_rate(options, 200.0) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_idle(options, true) == PYSPY_STATUS_OK); /* the target sleeps */
    CHECK(pyspy_options_set_cpu_time(options, true) == PYSPY_STATUS_OK);
    pyspy_sampler *sampler = NULL;
    pyspy_error *err = NULL;
    pyspy_status status = pyspy_sampler_start(pid, options, &sampler, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_sampler_start", status, err);
    pyspy_options_free(options);
    uint64_t samples = 0;
    for (int i = 0; i < 400 && samples < 20; i++) {
        struct timespec ts = {0, 25 * 1000000L};
        nanosleep(&ts, NULL);
        CHECK(pyspy_sampler_stats(sampler, &samples, NULL, NULL, NULL) == PYSPY_STATUS_OK);
    }
    pyspy_profile *profile = NULL;
    status = pyspy_sampler_profile(sampler, true, &profile, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_sampler_profile", status, err);
    pyspy_sampler_free(sampler);

    /* Metadata: setters copy their strings; bad tag keys are refused with the rule. */
    pyspy_profile_meta *meta = pyspy_profile_meta_for_process(pid);
    CHECK(meta != NULL);
    char service[] = "c-shop";
    CHECK(pyspy_profile_meta_set_service(meta, service, NULL) == PYSPY_STATUS_OK);
    service[0] = 'X'; /* copied: changing it later changes nothing */
    CHECK(pyspy_profile_meta_set_env(meta, "prod", NULL) == PYSPY_STATUS_OK);
    CHECK(pyspy_profile_meta_set_version(meta, "1.0", NULL) == PYSPY_STATUS_OK);
    CHECK(pyspy_profile_meta_set_runtime_version(meta, "3.x", NULL) == PYSPY_STATUS_OK);
    CHECK(pyspy_profile_meta_set_host(meta, "box", NULL) == PYSPY_STATUS_OK);
    CHECK(pyspy_profile_meta_set_container_id(meta, "c0ffee", NULL) == PYSPY_STATUS_OK);
    CHECK(pyspy_profile_meta_set_pid(meta, pid) == PYSPY_STATUS_OK);
    CHECK(pyspy_profile_meta_add_tag(meta, "region", "eu", NULL) == PYSPY_STATUS_OK);
    CHECK(pyspy_profile_meta_add_tag(meta, "1bad", "x", &err) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(pyspy_error_message(err), "label name") != NULL);
    pyspy_error_free(err);
    err = NULL;
    CHECK(pyspy_profile_meta_set_service(meta, NULL, NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_profile_meta_set_service(NULL, "x", NULL) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_profile_meta_set_pid(NULL, 1) == PYSPY_STATUS_INVALID_ARGUMENT);

    const struct {
        pyspy_payload payload;
        const char *file;
        const char *type;
    } payloads[] = {
        {PYSPY_PAYLOAD_PYROSCOPE, "pyroscope.bin", "application/proto"},
        {PYSPY_PAYLOAD_DATAKIT, "datakit.bin", "multipart/form-data; boundary="},
        {PYSPY_PAYLOAD_OTLP, "otlp.bin", "application/x-protobuf"},
    };
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        pyspy_buffer *body = NULL, *type = NULL;
        status = pyspy_profile_encode_payload(profile, payloads[i].payload, meta, &body, &type,
                                              &err);
        if (status != PYSPY_STATUS_OK) fail_status("pyspy_profile_encode_payload", status, err);
        CHECK(pyspy_buffer_len(body) > 0);
        size_t want = strlen(payloads[i].type);
        CHECK(pyspy_buffer_len(type) >= want);
        CHECK(memcmp(pyspy_buffer_data(type), payloads[i].type, want) == 0);
        write_file(argv[2], payloads[i].file, pyspy_buffer_data(body), pyspy_buffer_len(body));
        if (payloads[i].payload == PYSPY_PAYLOAD_DATAKIT)
            write_file(argv[2], "datakit.type", pyspy_buffer_data(type), pyspy_buffer_len(type));
        pyspy_buffer_free(body);
        pyspy_buffer_free(type);
    }
    /* Without metadata and without the content type. */
    pyspy_buffer *body = NULL;
    CHECK(pyspy_profile_encode_payload(profile, PYSPY_PAYLOAD_OTLP, NULL, &body, NULL, NULL) ==
          PYSPY_STATUS_OK);
    pyspy_buffer_free(body);
    body = NULL;
    CHECK(pyspy_profile_encode_payload(profile, 7, meta, &body, NULL, &err) ==
          PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(body == NULL);
    pyspy_error_free(err);
    CHECK(pyspy_profile_encode_payload(NULL, PYSPY_PAYLOAD_OTLP, meta, &body, NULL, NULL) ==
          PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(pyspy_profile_encode_payload(profile, PYSPY_PAYLOAD_OTLP, meta, NULL, NULL, NULL) ==
          PYSPY_STATUS_INVALID_ARGUMENT);

    pyspy_profile_meta_free(meta);
    pyspy_profile_meta_free(NULL);
    pyspy_profile_free(profile);
    printf("payload: ok (%llu samples)\n", (unsigned long long)samples);
    return 0;
}
