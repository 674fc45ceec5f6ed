/* What one `process_vm_readv` costs by the shape of what it reads: bench/bench.py
 * (--measure ranges) builds it (gcc -O2) and runs it on the deep-busy target.
 *
 * Usage: ranges PID N
 *
 * Reads the target's heap (its largest writable anonymous mapping if it has no [heap]) N times
 * per shape, in 10 rounds that take turns between the shapes, into one local buffer (as pyspy
 * does), and prints one line per shape: its name and the median over rounds of the CPU time
 * (this process's, user + system) per call in nanoseconds, or -1 if a call failed. The shapes:
 *
 *   one-small     1 range of 248 bytes (a thread state)
 *   one-16k       1 range of 16 KiB (the floor program's read)
 *   many-one-page 11 ranges of 248 bytes on one page
 *   many-pages    11 ranges of 248 bytes, each on a page of its own
 *   one-44k       1 range of 44 KiB (11 pages)
 *
 * The kernel pins a range's pages and looks its mapping up once per range, then copies page
 * by page: "many-one-page" against "one-small" is the cost of a range, "one-44k" against
 * "one-small" the cost of a page.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "timing.h"

#define ROUNDS 10
#define SHAPES 5
#define PAGE 4096
#define MAX_RANGES 11
#define NEEDED (12 * PAGE)

struct shape {
    const char *name;
    int ranges;
    long stride;
    size_t len;
};

static const struct shape shapes[SHAPES] = {
    {"one-small", 1, 0, 248},
    {"one-16k", 1, 0, 4 * PAGE},
    {"many-one-page", MAX_RANGES, 256, 248},
    {"many-pages", MAX_RANGES, PAGE, 248},
    {"one-44k", 1, 0, MAX_RANGES * PAGE},
};

/* The page-aligned start of the target's heap, or of its largest writable anonymous mapping,
 * if it is at least NEEDED bytes long; 0 if none is. */
static unsigned long heap_of(int pid) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    if (!maps) {
        return 0;
    }
    unsigned long heap = 0, best = 0, best_len = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long start, end;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &start, &end, perms, &name_at) < 3) {
            continue;
        }
        if (end - start < NEEDED || perms[0] != 'r' || perms[1] != 'w') {
            continue;
        }
        const char *name = line + name_at;
        if (strncmp(name, "[heap]", 6) == 0) {
            heap = start;
        } else if ((*name == '\n' || *name == '\0') && end - start > best_len) {
            best = start;
            best_len = end - start;
        }
    }
    fclose(maps);
    return heap ? heap : best;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: ranges PID N\n");
        return 2;
    }
    int pid = atoi(argv[1]);
    long n = atol(argv[2]);
    unsigned long base = pid > 0 ? heap_of(pid) : 0;
    if (base == 0 || n <= 0) {
        fprintf(stderr, "ranges: need a readable process with a writable mapping of 48 KiB, and N > 0\n");
        return 2;
    }
    static char buf[MAX_RANGES * PAGE];
    double per_call[SHAPES][ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        for (int s = 0; s < SHAPES; s++) {
            const struct shape *sh = &shapes[s];
            struct iovec remote[MAX_RANGES];
            size_t total = 0;
            for (int i = 0; i < sh->ranges; i++) {
                remote[i].iov_base = (void *)(base + 256 + i * sh->stride);
                remote[i].iov_len = sh->len;
                total += sh->len;
            }
            struct iovec local = {buf, total};
            double start = cpu_now();
            long i = 0;
            for (; i < n; i++) {
                if (process_vm_readv(pid, &local, 1, remote, sh->ranges, 0) != (ssize_t)total) {
                    break;
                }
            }
            per_call[s][r] = i == n ? (cpu_now() - start) / n : -1;
        }
    }
    for (int s = 0; s < SHAPES; s++) {
        qsort(per_call[s], ROUNDS, sizeof(double), by_value);
        printf("%s %.0f\n", shapes[s].name, per_call[s][0] < 0 ? -1 : per_call[s][ROUNDS / 2]);
    }
    return 0;
}
