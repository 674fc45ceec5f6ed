#!/usr/bin/env bash
# Regenerates the committed seed corpus (fuzz/seeds/) from real interpreters: runs
# tests/targets/fuzz_seed.py under every pyenv Python and the sid chroot's 3.14/3.15, and
# captures one sample of each with `cargo xtask capture-corpus`; then lays out the
# free-threaded builds' seeds, which no interpreter here runs, with `cargo xtask
# synthetic-corpus`. Needs ptrace rights (root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
sid=${PYSPY_SID_ROOT:-/var/cache/pyspy/sid}
script=tests/targets/fuzz_seed.py
cargo build --quiet --package xtask --target-dir target/xtask
xtask=$root/target/xtask/debug/xtask

capture() { # capture LABEL HOST_READY_FILE COMMAND...
    local label=$1 ready=$2
    shift 2
    rm -f "$ready"
    "$@" &
    local pid=$!
    for _ in $(seq 200); do [ -e "$ready" ] && break; sleep 0.05; done
    sleep 0.2
    "$xtask" capture-corpus --pid "$pid" --label "$label" >/dev/null || echo "capture of $label failed" >&2
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf fuzz/seeds
mkdir -p fuzz/seeds/binary

# Binary: two tiny ELF files (a shared libpython look-alike and a static executable) with the
# symbols and version strings pyspy looks for; real interpreters are megabytes.
cat >"$tmp/lib.c" <<'C'
char _PyRuntime[256];
void *interp_head;
unsigned long Py_Version = 0x030c01f0;
const char *version(void) { return "3.12.1"; }
const char *path(void) { return "/opt/python/3.9.18"; }
C
flags="-O2 -nostdlib -Wl,--build-id=none -Wl,-z,noseparate-code"
gcc $flags -shared -fPIC -Wl,-z,norelro -o "$tmp/libpython3.12.so" "$tmp/lib.c"
strip --strip-debug "$tmp/libpython3.12.so" -o fuzz/seeds/binary/libpython3.12.so
gcc $flags -static -fno-pie -no-pie -Wl,-e,version -o fuzz/seeds/binary/static-exe "$tmp/lib.c"

for py in "$(pyenv root)"/versions/*/bin/python; do
    [ -x "$py" ] || continue
    capture seed "$tmp/ready" "$py" "$script" "$tmp/ready" 60
done
for v in 3.14 3.15; do
    [ -x "$sid/usr/bin/python$v" ] || continue
    cp "$script" "$sid/tmp/fuzz_seed.py"
    capture seed "$sid/tmp/ready" chroot "$sid" "/usr/bin/python$v" /tmp/fuzz_seed.py /tmp/ready 60
    rm -f "$sid/tmp/fuzz_seed.py" "$sid/tmp/ready"
done
# Free-threaded 3.13t-3.15t (and a newer version's block): synthetic memory from the layouts.
"$xtask" synthetic-corpus >/dev/null
du -sh fuzz/seeds/*
