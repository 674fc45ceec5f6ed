#!/usr/bin/env bash
# Provision what pyspy's tests need beyond Rust, gcc and the pyenv interpreters:
#   - host Debian packages (HOST_PACKAGES below: python3.11; debootstrap when a chroot must be made),
#   - a Debian unstable chroot with python3.14 and python3.15 at $PYSPY_SID_ROOT
#     (default /var/cache/pyspy/sid); the tests run `chroot ROOT /usr/bin/python3.X`;
#   - in that chroot, Debian's debug builds python3.13-dbg, python3.14-dbg, python3.15-dbg
#     (`/usr/bin/python3.Xd`) and, with them, Debian's python3.13 release build.
#
# Usage: scripts/provision.sh [--dev-headers]
#   --dev-headers   also install libpython3.13-dev, libpython3.14-dev and libpython3.15-dev
#                   inside the chroot (the layout xtask needs them, and so does the native
#                   test's C extension, built for every chroot interpreter: the debug builds'
#                   include/python3.Xd holds links into include/python3.X).
#
# Idempotent and cached: a complete chroot is left alone (missing extras are added, never
# upgrading what is installed). The chroot is built in a temporary
# directory next to ROOT and renamed into place only when complete, so a half-made chroot never
# looks complete. Nothing is mounted (the tests run the chroot without /proc).
# Needs root (debootstrap and chroot do). Concurrent runs serialise on ROOT.lock.
set -euo pipefail

# Debian packages the tests need on the host. Add new ones here.
#   python3.11: Debian's own interpreter (/usr/bin/python3.11: stripped, non-PIE, libpython
#               linked in), tested as "3.11-debian" next to pyenv's PIE + libpython builds.
#   golang-go:  `go tool pprof` reads the pprof files `pyspy record --format pprof` writes.
#   tmux:       drives `pyspy top` in a terminal in the tests.
#   valgrind, pkg-config: the C API tests (tests/c) run under valgrind and build with
#               `pkg-config pyspy`; golang-go also runs `go test` in bindings/go.
#   zsh, fish:  load the scripts `pyspy completions zsh|fish` writes (bash is there already).
#   gdb:        the C API tests check that gdb finds the installed libpyspy.so's debug info;
#               the core-file tests make cores of live targets with its `gcore`.
#   libpython3.11-dev: Python.h for the C extension the native-stack test builds for 3.11-debian.
HOST_PACKAGES=(python3.11 libpython3.11-dev golang-go tmux valgrind pkg-config libclang-dev zsh fish gdb)

CHROOT_PYTHONS=(python3.14 python3.15)
# Installed into the chroot after it is made (and added to an older chroot): Py_DEBUG builds
# tested as "3.13-dbg", "3.14-dbg", "3.15-dbg"; python3.13-dbg brings Debian's python3.13 too,
# tested as "3.13-debian". Never upgrades what is installed (see chroot_install).
CHROOT_EXTRA_PACKAGES=(python3.13-dbg python3.14-dbg python3.15-dbg)
CHROOT_EXTRA_PYTHONS=(python3.13 python3.13d python3.14d python3.15d)
DEV_PACKAGES=(libpython3.13-dev libpython3.14-dev libpython3.15-dev)
SUITE=sid

ROOT="${PYSPY_SID_ROOT:-/var/cache/pyspy/sid}"
DEV_HEADERS=0

log() { printf 'provision: %s\n' "$*" >&2; }
die() { printf 'provision: error: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
  case "$arg" in
    --dev-headers) DEV_HEADERS=1 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done

[[ "$ROOT" == /* ]] || die "PYSPY_SID_ROOT must be an absolute path, got: $ROOT"
ROOT="${ROOT%/}"

if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "debootstrap and chroot need root: run this script as root"
  log "not root: re-running under sudo"
  exec sudo -E PYSPY_SID_ROOT="$ROOT" "$BASH" "$0" "$@"
fi

# apt-get update; when the mirror's Release file has expired (a frozen mirror, or a clock ahead
# of it), retry once without the Valid-Until check and say so.
apt_update() {
  # apt_update [chroot ROOT]
  local out
  if out=$("$@" apt-get update -qq 2>&1) && ! grep -q 'is expired' <<<"$out"; then
    return 0
  fi
  if grep -q 'is expired' <<<"$out"; then
    log "warning: the mirror's Release file has expired; retrying apt-get update with Acquire::Check-Valid-Until=false"
    "$@" apt-get -o Acquire::Check-Valid-Until=false update -qq >&2 && return 0
  fi
  printf '%s\n' "$out" >&2
  return 1
}

APT_UPDATED=0
apt_install() {
  # apt_install PKG...: install host packages, running apt-get update at most once.
  command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    apt_update env || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    || die "apt-get install $* failed"
}

missing_host_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$p"
  done
}

missing_chroot_packages() {
  local p
  for p in "$@"; do
    chroot "$ROOT" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
      || printf '%s\n' "$p"
  done
}

CHROOT_APT_UPDATED=0
chroot_install() {
  # chroot_install PKG...: install packages in the chroot, refusing to upgrade or remove any
  # package already installed there (other test runs use the chroot's interpreters right now;
  # a moved mirror would replace them under those runs). apt inside a chroot without /proc
  # works for plain package installs; nothing is mounted.
  if [[ $CHROOT_APT_UPDATED -eq 0 ]]; then
    apt_update chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
      || die "apt-get update in the chroot failed"
    CHROOT_APT_UPDATED=1
  fi
  local plan changes
  plan=$(chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get -s install -y --no-install-recommends "$@" 2>&1) \
    || { printf '%s\n' "$plan" >&2; die "apt-get cannot install $* in the chroot"; }
  # `Inst pkg [old] (new ...)` is an upgrade of an installed package; `Remv` a removal.
  changes=$(grep -E '^(Inst [^ ]+ \[|Remv )' <<<"$plan" || true)
  if [[ -n "$changes" ]]; then
    printf '%s\n' "$changes" >&2
    die "installing $* would change packages already installed in $ROOT (above): the mirror has moved on since the chroot was made; not touching it. Remove $ROOT and rerun to make a fresh, consistent chroot"
  fi
  log "installing $* in the chroot"
  chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || die "installing $* in the chroot failed"
}

chroot_complete() {
  local py
  for py in "${CHROOT_PYTHONS[@]}"; do
    [[ -x "$ROOT/usr/bin/$py" ]] || return 1
  done
}

check_chroot_pythons() {
  # Every interpreter must run in the chroot without /proc mounted (that is how tests run it).
  local py out
  for py in "${CHROOT_PYTHONS[@]}" "${CHROOT_EXTRA_PYTHONS[@]}"; do
    out=$(chroot "$ROOT" "/usr/bin/$py" -c 'import sys, threading; print(sys.version.split()[0])' 2>&1) \
      || die "$ROOT/usr/bin/$py does not run in the chroot: $out"
    printf '%s\t%s (chroot %s)\n' "$py" "$out" "$ROOT"
  done
}

# 1. Host packages.
mapfile -t missing < <(missing_host_packages ${HOST_PACKAGES[@]+"${HOST_PACKAGES[@]}"})
if [[ ${#missing[@]} -gt 0 ]]; then
  apt_install "${missing[@]}"
fi

# 2. The chroot (serialised: tests in several processes may call this at once).
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock" || die "cannot open lock file $ROOT.lock"
if command -v flock >/dev/null; then
  flock 9 || die "cannot lock $ROOT.lock"
fi

if chroot_complete; then
  log "chroot $ROOT is complete; nothing to build"
else
  [[ -e "$ROOT" ]] && die "$ROOT exists but lacks ${CHROOT_PYTHONS[*]}: it was not made by this script; remove it and rerun"
  if ! command -v debootstrap >/dev/null; then
    apt_install debootstrap
  fi
  # Leftovers of a run that was killed (we hold the lock: nobody else is building).
  rm -rf --one-file-system "$ROOT".tmp.*
  TMP=$(mktemp -d "$ROOT.tmp.XXXXXX")
  trap 'log "cleaning up $TMP"; rm -rf --one-file-system "$TMP"' EXIT
  include=$(IFS=,; echo "${CHROOT_PYTHONS[*]}")
  log "debootstrap --variant=minbase --include=$include $SUITE $TMP (about 30 s)"
  debootstrap --variant=minbase --include="$include" "$SUITE" "$TMP" >&2 \
    || { [[ -f "$TMP/debootstrap/debootstrap.log" ]] && tail -n 30 "$TMP/debootstrap/debootstrap.log" >&2; die "debootstrap failed"; }
  for py in "${CHROOT_PYTHONS[@]}"; do
    [[ -x "$TMP/usr/bin/$py" ]] || die "debootstrap finished but $TMP/usr/bin/$py is missing"
  done
  # The tests stage their scripts in ROOT/tmp: make it world-writable and sticky, as usual.
  chmod 1777 "$TMP/tmp"
  chmod 0755 "$TMP"
  # Atomic: ROOT does not exist (checked above under the lock), rename(2) puts it in place.
  mv -T "$TMP" "$ROOT"
  trap - EXIT
  log "chroot ready at $ROOT"
fi

# 3. Debug builds (and Debian's 3.13) inside the chroot, for the tests.
mapfile -t need < <(missing_chroot_packages "${CHROOT_EXTRA_PACKAGES[@]}")
if [[ ${#need[@]} -gt 0 ]]; then
  chroot_install "${need[@]}"
else
  log "debug builds already installed in the chroot"
fi
for py in "${CHROOT_EXTRA_PYTHONS[@]}"; do
  [[ -x "$ROOT/usr/bin/$py" ]] || die "$ROOT/usr/bin/$py is missing after installing ${CHROOT_EXTRA_PACKAGES[*]}"
done

# 4. Optional development headers inside the chroot (for the layout xtask and the native test).
if [[ $DEV_HEADERS -eq 1 ]]; then
  mapfile -t need < <(missing_chroot_packages "${DEV_PACKAGES[@]}")
  if [[ ${#need[@]} -gt 0 ]]; then
    chroot_install "${need[@]}"
  else
    log "dev headers already installed in the chroot"
  fi
  for p in "${DEV_PACKAGES[@]}"; do
    v=${p#libpython}; v=${v%-dev}
    [[ -f "$ROOT/usr/include/python$v/Python.h" ]] || die "$ROOT/usr/include/python$v/Python.h is missing after installing $p"
  done
fi

check_chroot_pythons
if [[ -x /usr/bin/python3.11 ]]; then
  printf 'python3.11\t%s (host, Debian)\n' "$(/usr/bin/python3.11 -c 'import sys; print(sys.version.split()[0])')"
fi
