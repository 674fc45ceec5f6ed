/* sampler PID PYTHON: a sampler driven without polling, on PID (a scenarios target: blocked
 * threads, one of them in `recurse`) and on a Python this test starts and kills:
 *  - pyspy_sampler_wait with a time limit returns PYSPY_STATUS_TIMEOUT on time, without an
 *    error object, while the sampler runs; with 0 it only looks;
 *  - the sample callback is called on the sampler's own thread (never the caller's), with its
 *    userdata, one call at a time; the samples it is lent show the target; waiting for or
 *    stopping its own sampler from it is refused (not a deadlock); reading the sampler's stats
 *    and profile from it works; returning false stops the sampler (PYSPY_END_REASON_STOPPED)
 *    and no call comes after the wait returned;
 *  - the counters agree with what the callback saw;
 *  - a sampler started from an attached session, which then takes no snapshots; its duration
 *    ends it (PYSPY_END_REASON_DURATION);
 *  - the target exits: the wait returns PYSPY_END_REASON_PROCESS_EXITED.
 * Run under valgrind by tests/integration/capi.rs. */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t monotonic_ms(void) {
    struct timespec ts;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t realtime_ns(void) {
    struct timespec ts;
    CHECK(clock_gettime(CLOCK_REALTIME, &ts) == 0);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* What the callback saw. Written by the sampler's thread; read by the main thread after the
 * sampler has ended (pyspy_sampler_wait returned: that orders the writes before the reads),
 * except for the atomics. */
struct seen {
    pthread_t main_thread;
    pthread_t first_thread; /* the thread of the first call */
    int32_t pid;
    atomic_int calls;
    int in_call;          /* a call in progress (two at once would find it set) */
    int overlapping;      /* calls that found another in progress */
    int other_threads;    /* calls on another thread than the first call's */
    int on_main;          /* calls on the main thread */
    int bad;              /* samples whose contents were wrong (the reason is printed) */
    int in_recurse;       /* samples with a thread whose innermost frame is `recurse` */
    int reentry_checked;  /* the checks on the callback's own sampler ran */
    int calls_after_stop; /* calls after one returned false */
    int returned_false;
    atomic_int may_stop; /* set by the main thread: the next call returns false */
    _Atomic(pyspy_sampler *) sampler; /* published once pyspy_sampler_start returned */
    int stop_when_allowed;
};

static void bad(struct seen *s, const char *why) {
    fprintf(stderr, "callback: %s\n", why);
    s->bad++;
}

/* Checks a lent sample of the scenarios target. */
static void check_sample(struct seen *s, const pyspy_sample *sample) {
    if (pyspy_sample_process_count(sample) != 1) bad(s, "not one process");
    if (pyspy_sample_pid(sample, 0) != s->pid) bad(s, "wrong pid");
    if (pyspy_sample_pid(sample, 1) != 0) bad(s, "a pid out of range");
    if (pyspy_sample_snapshot(sample, 1) != NULL) bad(s, "a snapshot out of range");
    uint64_t now = realtime_ns(), at = pyspy_sample_time_ns(sample);
    if (at > now || now - at > 60ull * 1000000000ull) bad(s, "sample time not within a minute");
    if (pyspy_sample_lag_ns(sample) > 60ull * 1000000000ull) bad(s, "lag over a minute");
    const pyspy_snapshot *snapshot = pyspy_sample_snapshot(sample, 0);
    if (snapshot == NULL || pyspy_snapshot_thread_count(snapshot) == 0) {
        bad(s, "no threads");
        return;
    }
    for (size_t i = 0; i < pyspy_snapshot_thread_count(snapshot); i++) {
        const pyspy_frame *leaf = pyspy_thread_frame(pyspy_snapshot_thread(snapshot, i), 0);
        if (leaf && strcmp(pyspy_frame_function(leaf), "recurse") == 0) {
            s->in_recurse++;
            return;
        }
    }
}

/* What the callback may and may not do with its own sampler. */
static void check_reentry(struct seen *s, pyspy_sampler *own) {
    pyspy_error *err = NULL;
    pyspy_end_reason reason = (pyspy_end_reason)77;
    if (pyspy_sampler_wait(own, 0, &reason, &err) != PYSPY_STATUS_INVALID_ARGUMENT) {
        bad(s, "pyspy_sampler_wait from the callback was not refused");
    }
    if (err == NULL || strstr(pyspy_error_message(err), "callback") == NULL) {
        bad(s, "the refused wait's error does not say why");
    }
    pyspy_error_free(err);
    if ((int)reason != 77) bad(s, "the refused wait wrote a reason");
    if (pyspy_sampler_stop(own) != PYSPY_STATUS_INVALID_ARGUMENT) {
        bad(s, "pyspy_sampler_stop from the callback was not refused");
    }
    uint64_t samples = 0;
    if (pyspy_sampler_stats(own, &samples, NULL, NULL, NULL) != PYSPY_STATUS_OK || samples == 0) {
        bad(s, "pyspy_sampler_stats from the callback");
    }
    if (!pyspy_sampler_running(own)) bad(s, "not running in its own callback");
    pyspy_profile *profile = NULL;
    if (pyspy_sampler_profile(own, false, &profile, NULL) != PYSPY_STATUS_OK ||
        pyspy_profile_samples(profile) == 0) {
        bad(s, "pyspy_sampler_profile from the callback");
    }
    pyspy_profile_free(profile);
    s->reentry_checked = 1;
}

static bool on_sample(void *userdata, const pyspy_sample *sample) {
    struct seen *s = userdata;
    if (s->in_call) s->overlapping++;
    s->in_call = 1;
    int call = atomic_fetch_add(&s->calls, 1) + 1;
    if (call == 1) {
        s->first_thread = pthread_self();
    } else if (!pthread_equal(s->first_thread, pthread_self())) {
        s->other_threads++;
    }
    if (pthread_equal(s->main_thread, pthread_self())) s->on_main++;
    if (s->returned_false) s->calls_after_stop++;
    if (s->pid != 0) check_sample(s, sample);
    pyspy_sampler *own = atomic_load(&s->sampler);
    if (own != NULL && !s->reentry_checked) check_reentry(s, own);
    bool go_on = true;
    if (s->stop_when_allowed && s->reentry_checked && atomic_load(&s->may_stop)) {
        s->returned_false = 1;
        go_on = false;
    }
    s->in_call = 0;
    return go_on;
}

static pyspy_sampler *start_or_fail(int32_t pid, const pyspy_options *options) {
    pyspy_sampler *sampler = NULL;
    pyspy_error *err = NULL;
    pyspy_status status = pyspy_sampler_start(pid, options, &sampler, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_sampler_start", status, err);
    CHECK(sampler != NULL && err == NULL);
    return sampler;
}

/* Waits with a time limit while nothing ends the sampler: TIMEOUT on time, no error object,
 * no output. */
static void expect_timeout(const pyspy_sampler *sampler, uint64_t timeout_ms) {
    pyspy_error *err = NULL;
    pyspy_end_reason reason = (pyspy_end_reason)77;
    uint64_t t0 = monotonic_ms();
    pyspy_status status = pyspy_sampler_wait(sampler, timeout_ms, &reason, &err);
    uint64_t took = monotonic_ms() - t0;
    if (status != PYSPY_STATUS_TIMEOUT) fail_status("a wait that should time out", status, err);
    CHECK(err == NULL);
    CHECK((int)reason == 77);
    if (took < timeout_ms || took > timeout_ms + 1500) {
        fail("pyspy_sampler_wait(%llu ms) timed out after %llu ms",
             (unsigned long long)timeout_ms, (unsigned long long)took);
    }
}

static pyspy_end_reason wait_or_fail(const pyspy_sampler *sampler, uint64_t timeout_ms) {
    pyspy_error *err = NULL;
    pyspy_end_reason reason = (pyspy_end_reason)77;
    pyspy_status status = pyspy_sampler_wait(sampler, timeout_ms, &reason, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_sampler_wait", status, err);
    CHECK(err == NULL);
    return reason;
}

/* `ran_ms`: how long the sampler (100 samples per second) ran at most. */
static void check_stats(const pyspy_sampler *sampler, uint64_t want_samples, uint64_t ran_ms) {
    uint64_t samples = 0, errors = 1, missed = 1, max_lag_ns = 0;
    CHECK(pyspy_sampler_stats(sampler, &samples, &errors, &missed, &max_lag_ns) ==
          PYSPY_STATUS_OK);
    printf("stats: %llu samples, %llu errors, %llu missed, max lag %.3f ms\n",
           (unsigned long long)samples, (unsigned long long)errors, (unsigned long long)missed,
           (double)max_lag_ns / 1e6);
    if (samples != want_samples) {
        fail("stats count %llu samples, the callback saw %llu", (unsigned long long)samples,
             (unsigned long long)want_samples);
    }
    CHECK(errors == 0); /* the target's threads are blocked: no torn reads */
    CHECK(max_lag_ns > 0 && max_lag_ns < 30ull * 1000000000ull);
    /* Missed slots are slots of the schedule: no more than the run had (a slow machine, or
       valgrind, can miss most of them). */
    if (missed > ran_ms / 10 + 2) {
        fail("%llu slots missed in %llu ms at 100 per second", (unsigned long long)missed,
             (unsigned long long)ran_ms);
    }
}

static void test_wait_and_callback(int32_t pid) {
    struct seen seen = {0};
    seen.main_thread = pthread_self();
    seen.pid = pid;
    seen.stop_when_allowed = 1;
    pyspy_options *options = pyspy_options_new();
    CHECK(pyspy_options_set_rate(options, 100.0) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_idle(options, true) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_sample_callback(options, on_sample, &seen) == PYSPY_STATUS_OK);
    uint64_t started = monotonic_ms();
    pyspy_sampler *sampler = start_or_fail(pid, options);
    pyspy_options_free(options);
    atomic_store(&seen.sampler, sampler);

    expect_timeout(sampler, 0);
    expect_timeout(sampler, 300);
    CHECK(pyspy_sampler_running(sampler));

    atomic_store(&seen.may_stop, 1);
    uint64_t t0 = monotonic_ms();
    pyspy_end_reason reason = wait_or_fail(sampler, PYSPY_WAIT_FOREVER);
    CHECK(reason == PYSPY_END_REASON_STOPPED);
    CHECK(monotonic_ms() - t0 < 10000);
    int calls = atomic_load(&seen.calls);
    sleep_ms(100);
    CHECK(atomic_load(&seen.calls) == calls); /* no call after the wait returned */
    CHECK(!pyspy_sampler_running(sampler));
    CHECK(wait_or_fail(sampler, 0) == PYSPY_END_REASON_STOPPED); /* ended: at once, again */
    CHECK(pyspy_sampler_stop(sampler) == PYSPY_STATUS_OK);      /* stopping an ended one */

    printf("callback: %d calls, %d in recurse\n", calls, seen.in_recurse);
    CHECK(seen.bad == 0);
    CHECK(seen.overlapping == 0 && seen.other_threads == 0 && seen.on_main == 0);
    CHECK(seen.reentry_checked && seen.returned_false && seen.calls_after_stop == 0);
    CHECK(seen.in_recurse == calls);
    check_stats(sampler, (uint64_t)calls, monotonic_ms() - started);
    /* Every sample the callback saw is in the profile (added before the call). */
    pyspy_profile *profile = NULL;
    CHECK(pyspy_sampler_profile(sampler, false, &profile, NULL) == PYSPY_STATUS_OK);
    CHECK(pyspy_profile_samples(profile) == (uint64_t)calls);
    pyspy_profile_free(profile);
    pyspy_sampler_free(sampler);
}

static void test_sampler_from_session(int32_t pid) {
    pyspy_session *session = attach_or_fail(pid, NULL);
    pyspy_snapshot_free(sample_or_fail(session));

    struct seen seen = {0};
    seen.main_thread = pthread_self();
    seen.pid = pid;
    pyspy_options *options = pyspy_options_new();
    CHECK(pyspy_options_set_duration_ms(options, 300) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_idle(options, true) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_sample_callback(options, on_sample, &seen) == PYSPY_STATUS_OK);
    pyspy_sampler *sampler = NULL;
    pyspy_error *err = NULL;
    uint64_t t0 = monotonic_ms();
    pyspy_status status = pyspy_session_start_sampler(session, options, &sampler, &err);
    if (status != PYSPY_STATUS_OK) fail_status("pyspy_session_start_sampler", status, err);

    /* The sampler has the process now: no second sampler, no snapshot; the facts stay. */
    pyspy_sampler *second = NULL;
    CHECK(pyspy_session_start_sampler(session, options, &second, &err) ==
          PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(second == NULL);
    CHECK(err != NULL && strstr(pyspy_error_message(err), "sampler") != NULL);
    pyspy_error_free(err);
    err = NULL;
    pyspy_snapshot *snapshot = NULL;
    CHECK(pyspy_session_snapshot(session, &snapshot, &err) == PYSPY_STATUS_INVALID_ARGUMENT);
    CHECK(snapshot == NULL);
    pyspy_error_free(err);
    CHECK(pyspy_session_pid(session) == pid);
    CHECK(strlen(pyspy_session_python_version(session)) > 0);
    /* The session may go first. */
    pyspy_session_free(session);
    pyspy_options_free(options);

    CHECK(wait_or_fail(sampler, PYSPY_WAIT_FOREVER) == PYSPY_END_REASON_DURATION);
    uint64_t took = monotonic_ms() - t0;
    CHECK(took >= 300);
    int calls = atomic_load(&seen.calls);
    printf("session sampler: %d calls in %llu ms\n", calls, (unsigned long long)took);
    CHECK(calls > 0 && seen.bad == 0 && seen.on_main == 0 && seen.in_recurse == calls);
    check_stats(sampler, (uint64_t)calls, monotonic_ms() - t0);
    pyspy_sampler_free(sampler);
}

static void test_process_exits(const char *python) {
    char *const args[] = {(char *)python, "-c", "import time\nwhile True: time.sleep(0.05)\n",
                          NULL};
    pid_t child;
    CHECK(posix_spawn(&child, python, NULL, NULL, args, environ) == 0);
    pyspy_options *options = pyspy_options_new();
    CHECK(pyspy_options_set_wait_for_init_ms(options, 20000) == PYSPY_STATUS_OK);
    pyspy_sampler *sampler = start_or_fail(child, options);
    pyspy_options_free(options);
    expect_timeout(sampler, 200);
    CHECK(kill(child, SIGKILL) == 0);
    CHECK(waitpid(child, NULL, 0) == child);
    uint64_t t0 = monotonic_ms();
    CHECK(wait_or_fail(sampler, 20000) == PYSPY_END_REASON_PROCESS_EXITED);
    printf("the exit was noticed after %llu ms\n", (unsigned long long)(monotonic_ms() - t0));
    CHECK(!pyspy_sampler_running(sampler));
    pyspy_sampler_free(sampler);
}

/* Whether the kernel counts switches in the target's schedstat (its third field). */
static bool switches_counted(int32_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    unsigned long long run = 0, wait = 0, switches = 0;
    int n = fscanf(f, "%llu %llu %llu", &run, &wait, &switches);
    fclose(f);
    return n == 3 && switches > 0;
}

/* Idle threads left out but those that ran since the last snapshot kept: every thread of the
 * target sleeps for good, so they show in the first snapshot (nothing to compare with yet)
 * and in none after it. */
static void test_idle_if_ran(int32_t pid) {
    pyspy_options *options = pyspy_options_new();
    CHECK(pyspy_options_set_idle(options, false) == PYSPY_STATUS_OK);
    CHECK(pyspy_options_set_idle_if_ran(options, true) == PYSPY_STATUS_OK);
    pyspy_session *session = attach_or_fail(pid, options);
    pyspy_options_free(options);
    pyspy_snapshot *first = sample_or_fail(session);
    CHECK(pyspy_snapshot_thread_count(first) >= 1);
    pyspy_snapshot_free(first);
    size_t later = 0;
    for (int i = 0; i < 5; i++) {
        pyspy_snapshot *snapshot = sample_or_fail(session);
        later += pyspy_snapshot_thread_count(snapshot);
        pyspy_snapshot_free(snapshot);
    }
    if (switches_counted(pid)) CHECK(later == 0);
    pyspy_session_free(session);
}

int main(int argc, char **argv) {
    if (argc != 3) fail("usage: %s PID PYTHON", argv[0]);
    int32_t pid = (int32_t)atoi(argv[1]);
    test_idle_if_ran(pid);
    test_wait_and_callback(pid);
    test_sampler_from_session(pid);
    test_process_exits(argv[2]);
    printf("sampler: ok\n");
    return 0;
}
