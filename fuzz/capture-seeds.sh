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
# Lying headers, as a hostile target's files have: tables that claim gigabytes in a file of a
# few hundred bytes, and a section count of 2^40 (e_shnum 0, the count in section 0).
python3 - fuzz/seeds/binary <<'PY'
import struct, sys
def elf(sections, shnum=None, count0=0):
    names = b"\0" + b"".join(n.encode() + b"\0" for n, *_ in sections) + b".shstrtab\0"
    shoff = 64 + 56
    n = len(sections) + 2
    hdr = bytearray(b"\x7fELF\x02\x01\x01" + bytes(9))
    hdr += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, shoff, 0, 64, 56, 1, 64,
                       n if shnum is None else shnum, n - 1)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, 4096, 4096, 4096)
    data_at = shoff + 64 * n
    shdrs = struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, count0, 0, 0, 0, 0)
    name_at = 1
    for name, kind, size, link in sections:
        shdrs += struct.pack("<IIQQQQIIQQ", name_at, kind, 0, 0x1000, data_at, size, link, 0, 8, 24 if kind in (2, 11) else 0)
        name_at += len(name) + 1
    shdrs += struct.pack("<IIQQQQIIQQ", name_at, 3, 0, 0, data_at, len(names), 0, 0, 1, 0)
    return bytes(hdr) + phdr + shdrs + names
big = 1 << 30
open(sys.argv[1] + "/lying-sizes", "wb").write(
    elf([(".symtab", 2, big, 2), (".strtab", 3, big, 0), (".rodata", 1, big, 0)]))
open(sys.argv[1] + "/lying-count", "wb").write(
    elf([(".dynsym", 11, 48, 2), (".dynstr", 3, 16, 0)], shnum=0, count0=1 << 40))
# The shared-library seed as sstrip leaves a file: symbols only through the dynamic segment.
lib = bytearray(open(sys.argv[1] + "/libpython3.12.so", "rb").read())
lib[40:48] = bytes(8)
lib[60:64] = bytes(4)
open(sys.argv[1] + "/no-section-headers", "wb").write(lib)
PY

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
# asyncio tasks (3.7+): what the task reader reads of tests/targets/asyncio_tasks.py (every
# scenario: nested awaits, gather, shield, wait, TaskGroup, async generators, a recursive
# chain, pure-Python and eager tasks, a second thread's loop, a 3.14+ sub-interpreter).
capture_tasks() { # capture_tasks HOST_READY_FILE COMMAND...
    local ready=$1
    shift
    rm -f "$ready"
    "$@" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 400); do [ -e "$ready" ] && break; sleep 0.05; done
    sleep 0.5
    "$xtask" capture-corpus --pid "$pid" --label seed --tasks >/dev/null || echo "tasks capture of $* failed" >&2
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
mkdir -p fuzz/seeds/tasks
for py in "$(pyenv root)"/versions/3.*/bin/python; do
    [ -x "$py" ] || continue
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 7))' || continue
    capture_tasks "$tmp/tasks-ready" "$py" tests/targets/asyncio_tasks.py "$tmp/tasks-ready"
done
for v in 3.14 3.15; do
    [ -x "$sid/usr/bin/python$v" ] || continue
    cp tests/targets/asyncio_tasks.py "$sid/tmp/asyncio_tasks.py"
    capture_tasks "$sid/tmp/tasks-ready" chroot "$sid" "/usr/bin/python$v" /tmp/asyncio_tasks.py /tmp/tasks-ready
    rm -f "$sid/tmp/asyncio_tasks.py" "$sid/tmp/tasks-ready"
done

# Core: gdb's core of a tiny static program run with an empty environment (nothing of this
# machine's environment in the seed), each segment cut to its first 512 bytes; and the same
# with the kernel's NT_FILE convention (page numbers, 4096-byte pages). The cores tests make
# are tens of megabytes.
mkdir -p fuzz/seeds/core
cat >"$tmp/sleeper.c" <<'C'
static const long forever[2] = {1000, 0};
void _start(void) {
    for (;;)
        __asm__ volatile("syscall" : : "a"(35), "D"(forever), "S"(0) : "rcx", "r11", "memory");
}
C
gcc -O2 -nostdlib -static -fno-pie -no-pie -fno-stack-protector -o "$tmp/sleeper" "$tmp/sleeper.c"
env -i "$tmp/sleeper" &
sleeper=$!
sleep 0.2
gdb --nx --batch --readnever -ex "attach $sleeper" -ex "gcore $tmp/sleeper.core" -ex detach >/dev/null 2>&1
kill "$sleeper"
python3 - "$tmp/sleeper.core" fuzz/seeds/core <<'PY'
import struct, sys
core = open(sys.argv[1], "rb").read()
phoff, = struct.unpack_from("<Q", core, 32)
phnum, = struct.unpack_from("<H", core, 56)
phdrs = [list(struct.unpack_from("<IIQQQQQQ", core, phoff + 56 * i)) for i in range(phnum)]

def notes(data, kernel_style):
    out, at = b"", 0
    while at + 12 <= len(data):
        namesz, descsz, kind = struct.unpack_from("<III", data, at)
        name_end = at + 12 + (namesz + 3) // 4 * 4
        name = data[at + 12:at + 12 + namesz]
        desc = bytearray(data[name_end:name_end + descsz])
        at = name_end + (descsz + 3) // 4 * 4
        if name.startswith(b"GDB"):
            continue  # gdb's XML target description: large, and pyspy skips it
        if kind == 0x46494C45 and kernel_style:
            count, = struct.unpack_from("<Q", desc, 0)
            struct.pack_into("<Q", desc, 8, 4096)
            for i in range(count):
                o = 16 + 24 * i + 16
                struct.pack_into("<Q", desc, o, struct.unpack_from("<Q", desc, o)[0] // 4096)
        out += struct.pack("<III", namesz, descsz, kind)
        out += name.ljust((namesz + 3) // 4 * 4, b"\0")
        out += bytes(desc).ljust((descsz + 3) // 4 * 4, b"\0")
    return out

for label, kernel_style in (("gcore-static", False), ("kernel-style-static", True)):
    body, headers = b"", []
    data_at = 64 + 56 * len(phdrs)
    for p_type, flags, off, vaddr, paddr, filesz, memsz, align in phdrs:
        chunk = core[off:off + filesz]
        if p_type == 4:
            chunk = notes(chunk, kernel_style)
            filesz = len(chunk)
        elif p_type == 1:
            chunk = chunk[:512]
            filesz = len(chunk)
            if not kernel_style:
                memsz = max(memsz, filesz)
        headers.append(struct.pack("<IIQQQQQQ", p_type, flags, data_at + len(body), vaddr, paddr, filesz, memsz, align))
        body += chunk
    ehdr = bytearray(core[:64])
    struct.pack_into("<QQ", ehdr, 32, 64, 0)   # program headers right after; no sections
    struct.pack_into("<HHH", ehdr, 58, 0, 0, 0)
    open(f"{sys.argv[2]}/{label}", "wb").write(bytes(ehdr) + b"".join(headers) + body)
PY


# Free-threaded 3.13t-3.15t (and a newer version's block): synthetic memory from the layouts.
"$xtask" synthetic-corpus >/dev/null
du -sh fuzz/seeds/*
