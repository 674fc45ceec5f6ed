/* What one `pread` of each /proc file a sampler may read per thread costs: bench/bench.py
 * (--measure reads) builds it (gcc -O2) and runs it on the deep-busy target.
 *
 * Usage: reads PID N
 *
 * For the process's main thread (the deep-busy target's spinning thread) and for its last
 * thread (a sleeping one), opens /proc/PID/task/TID/{stat,schedstat,syscall} once, as a
 * sampler keeps them, then reads each N times from offset 0, in 10 rounds that take turns
 * between the files, and prints one line per thread and file: the thread ("running" or
 * "sleeping"), the file, and the median over rounds of the CPU time (this process's, user +
 * system) per read in nanoseconds. A file that cannot be opened or read prints -1.
 *
 * The last "file", clock, is the process's CPU clock (clock_getcpuclockid + clock_gettime:
 * all its threads' run time in one system call, which pyspy reads twice a sample to spare
 * sleeping threads' schedstat reads); it is the same for both threads.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "timing.h"

#define ROUNDS 10
#define FILES 4
#define CLOCK 3

static const char *const names[FILES] = {"stat", "schedstat", "syscall", "clock"};

/* The highest thread id of `pid` (its last thread started), or -1. */
static int last_thread(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *dir = opendir(path);
    if (!dir) {
        return -1;
    }
    int last = -1;
    struct dirent *e;
    while ((e = readdir(dir))) {
        int tid = atoi(e->d_name);
        if (tid > last) {
            last = tid;
        }
    }
    closedir(dir);
    return last;
}

static void measure(int pid, int tid, const char *label, long n) {
    int fds[FILES];
    char path[96];
    for (int f = 0; f < CLOCK; f++) {
        snprintf(path, sizeof path, "/proc/%d/task/%d/%s", pid, tid, names[f]);
        fds[f] = open(path, O_RDONLY | O_CLOEXEC);
    }
    clockid_t clock;
    fds[CLOCK] = clock_getcpuclockid(pid, &clock) == 0 ? 0 : -1;
    double per_read[FILES][ROUNDS];
    char buf[1024];
    for (int r = 0; r < ROUNDS; r++) {
        for (int f = 0; f < FILES; f++) {
            per_read[f][r] = -1;
            if (fds[f] < 0) {
                continue;
            }
            double start = cpu_now();
            long i = 0;
            for (; i < n; i++) {
                struct timespec t;
                if (f == CLOCK ? clock_gettime(clock, &t) != 0
                               : pread(fds[f], buf, sizeof buf, 0) <= 0) {
                    break;
                }
            }
            if (i == n) {
                per_read[f][r] = (cpu_now() - start) / n;
            }
        }
    }
    for (int f = 0; f < FILES; f++) {
        qsort(per_read[f], ROUNDS, sizeof(double), by_value);
        printf("%s %s %.0f\n", label, names[f], per_read[f][ROUNDS / 2]);
        if (f != CLOCK && fds[f] >= 0) {
            close(fds[f]);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: reads PID N\n");
        return 2;
    }
    int pid = atoi(argv[1]);
    long n = atol(argv[2]);
    int sleeper = last_thread(pid);
    if (pid <= 0 || n <= 0 || sleeper <= 0 || sleeper == pid) {
        fprintf(stderr, "reads: need a process with two threads or more, and N > 0\n");
        return 2;
    }
    measure(pid, pid, "running", n);
    measure(pid, sleeper, "sleeping", n);
    return 0;
}
