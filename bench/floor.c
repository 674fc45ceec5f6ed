/* The floor: the least work any out-of-process sampler of the bench's targets must do per
 * sample, and nothing else. bench/bench.py builds it (gcc -O2) and measures its CPU per sample
 * in the same run as pyspy's and py-spy's, so "pyspy costs N× the floor" is one run's ratio.
 *
 * Usage: floor PID RATE SECONDS [--no-stat]
 *
 * Per sample: wake on schedule (clock_nanosleep to an absolute deadline), one pread of each
 * thread's /proc/PID/task/TID/stat (opened once, before sampling; the state letter after the
 * last ')' is found, as a sampler must to leave idle threads out; --no-stat skips this, the
 * floor of a mode that reads every thread), and one 16 KiB process_vm_readv of the target
 * (a thread's stack of frames fits in one such read on 3.11+). Prints the number of samples
 * taken and how many threads were seen running, then exits. Stops early on SIGINT.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE 16384
#define MAX_THREADS 4096

static volatile sig_atomic_t stop;

static void on_sigint(int sig) {
    (void)sig;
    stop = 1;
}

/* The start of the target's first readable and writable mapping of at least READ_SIZE bytes. */
static unsigned long readable_address(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    if (!maps) {
        return 0;
    }
    char line[512];
    unsigned long found = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[0] == 'r' &&
            perms[1] == 'w' && hi - lo >= READ_SIZE) {
            found = lo;
            break;
        }
    }
    fclose(maps);
    return found;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: floor PID RATE SECONDS [--no-stat]\n");
        return 2;
    }
    int pid = atoi(argv[1]);
    long rate = atol(argv[2]);
    double seconds = atof(argv[3]);
    int read_stat = !(argc > 4 && strcmp(argv[4], "--no-stat") == 0);
    if (pid <= 0 || rate <= 0 || seconds <= 0) {
        fprintf(stderr, "floor: bad arguments\n");
        return 2;
    }
    signal(SIGINT, on_sigint);

    static int fds[MAX_THREADS];
    int nfds = 0;
    char path[320];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *dir = opendir(path);
    if (!dir) {
        perror("floor: listing threads");
        return 1;
    }
    struct dirent *e;
    while ((e = readdir(dir)) && nfds < MAX_THREADS) {
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof path, "/proc/%d/task/%s/stat", pid, e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            fds[nfds++] = fd;
        }
    }
    closedir(dir);
    unsigned long remote = readable_address(pid);
    if (!remote) {
        fprintf(stderr, "floor: no readable mapping of %d bytes in %d\n", READ_SIZE, pid);
        return 1;
    }

    static char buf[READ_SIZE];
    char line[1024];
    long period = 1000000000L / rate;
    long total = (long)(seconds * rate);
    long samples = 0, running = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (samples < total && !stop) {
        next.tv_nsec += period;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec += 1;
        }
        int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        if (r == EINTR) {
            continue;
        }
        if (read_stat) {
            for (int i = 0; i < nfds; i++) {
                ssize_t n = pread(fds[i], line, sizeof line - 1, 0);
                if (n <= 0) {
                    continue;
                }
                line[n] = 0;
                char *paren = strrchr(line, ')');
                if (paren && paren[1] == ' ' && paren[2] == 'R') {
                    running++;
                }
            }
        }
        struct iovec local = {buf, READ_SIZE};
        struct iovec far = {(void *)remote, READ_SIZE};
        if (process_vm_readv(pid, &local, 1, &far, 1, 0) != READ_SIZE) {
            perror("floor: process_vm_readv");
            return 1;
        }
        samples++;
    }
    printf("%ld %ld\n", samples, running);
    return 0;
}
