/* two_threads PID1 PID2: two threads, each with its own session on its own process, sampling
 * at the same time (sessions share nothing), then each prints its last snapshot as a JSON line
 * (thread 1's first). Run under valgrind by tests/integration/capi.rs. */
#include "common.h"

#include <pthread.h>

enum { SAMPLES = 25 };

struct job {
    int32_t pid;
    pyspy_session *session;
    pyspy_snapshot *last;
};

static void *sample_many(void *arg) {
    struct job *job = arg;
    job->session = attach_or_fail(job->pid, NULL);
    for (int i = 0; i < SAMPLES; i++) {
        pyspy_snapshot *snapshot = sample_or_fail(job->session);
        CHECK(pyspy_snapshot_thread_count(snapshot) > 0);
        pyspy_snapshot_free(job->last);
        job->last = snapshot;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) fail("usage: %s PID1 PID2", argv[0]);
    struct job jobs[2] = {{(int32_t)atoi(argv[1]), NULL, NULL},
                          {(int32_t)atoi(argv[2]), NULL, NULL}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&threads[i], NULL, sample_many, &jobs[i]) == 0);
    for (int i = 0; i < 2; i++) CHECK(pthread_join(threads[i], NULL) == 0);
    for (int i = 0; i < 2; i++) {
        print_snapshot_json(stdout, jobs[i].session, jobs[i].last);
        pyspy_snapshot_free(jobs[i].last);
        pyspy_session_free(jobs[i].session);
    }
    return 0;
}
