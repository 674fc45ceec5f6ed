/* What the bench's C programs (reads.c, ranges.c) share: this process's CPU time, and the
 * order qsort needs to take a median of rounds. */
#ifndef PYSPY_BENCH_TIMING_H
#define PYSPY_BENCH_TIMING_H

#include <time.h>

/* This process's CPU time (user + system) in nanoseconds. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* Ascending order of doubles, for qsort. */
static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
