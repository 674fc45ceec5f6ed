// The C side of the sample callback: libpyspy calls pyspy_go_on_sample on the sampler's thread,
// which hands the sample to the Go function pyspyGoSample (sampler.go) with the cgo.Handle of the
// sampler's feed.
#include "_cgo_export.h"

static bool pyspy_go_on_sample(void *userdata, const pyspy_sample *sample) {
    return pyspyGoSample((uintptr_t)userdata, (pyspy_sample *)sample);
}

enum pyspy_status pyspy_go_set_sample_callback(pyspy_options *options, uintptr_t handle) {
    return pyspy_options_set_sample_callback(options, pyspy_go_on_sample, (void *)handle);
}
