/* Looks like a CPython newer than pyspy knows: exports Py_Version and a _PyRuntime whose
 * _Py_DebugOffsets header names that version, then blocks. Built with -DFAKE_VERSION_HEX and
 * -DWITH_COOKIE=0/1 by the tests. Nothing else of an interpreter is there. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

const unsigned long Py_Version = FAKE_VERSION_HEX;

struct {
    char cookie[8];
    uint64_t version;
    uint64_t free_threaded;
    char rest[4096];
} _PyRuntime = {
#if WITH_COOKIE
    {'x', 'd', 'e', 'b', 'u', 'g', 'p', 'y'},
#else
    {0},
#endif
    FAKE_VERSION_HEX, 0, {0}};

int main(void) {
    for (;;) pause();
}
