#!/usr/bin/env bash
# Runs every test: provisions the interpreters and tools (cached), checks formatting, lints and
# generated files, then runs the unit and integration tests against every CPython on the machine
# and every fuzz target for a short fixed time, as parallel jobs (scripts/run-tests.sh).
#
#   PYSPY_FUZZ_SECONDS   seconds per fuzz target (default 20; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*" >&2; }

step "provision (Debian chroot with 3.14/3.15 and their headers, 3.13 and the -dbg builds, host packages)"
scripts/provision.sh --dev-headers
step "format and lints"
cargo fmt --all --check
(cd fuzz && cargo fmt --all --check)
cargo clippy --workspace --all-targets -- -D warnings
# The library alone, without the `internals` feature the tests turn on: no dead code there.
cargo clippy -p pyspy-core --lib -- -D warnings
step "library docs and packaging"
RUSTDOCFLAGS="-D warnings" cargo doc -p pyspy-core --no-deps
# pyspy-cli needs pyspy-core from the registry: packaged together, cargo verifies it against
# the pyspy-core package it has just made. Cargo takes that package for an immutable crates.io
# crate: it reuses an unpacked copy under $CARGO_HOME/registry/src and a built one in the target
# directory from an earlier run of the same version (the CLI then fails to build against an old
# library). So both are removed first; the packages build in a target directory of their own,
# where only pyspy-core is rebuilt each run. No pyspy-core from a real registry is ever used.
package_target=target/package-check
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/pyspy-core-* "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/pyspy-core-*
cargo clean --quiet -p pyspy-core --target-dir "$package_target"
package_log=$(cargo package -p pyspy-core -p pyspy-cli --allow-dirty --target-dir "$package_target" 2>&1) || { printf '%s\n' "$package_log"; exit 1; }
if grep -i '^warning' <<<"$package_log"; then
    echo "cargo package -p pyspy-core -p pyspy-cli: warnings (above)" >&2
    exit 1
fi
step "generated files: layout tables (bindgen), the C header (cbindgen), protobuf types (protox + prost-build)"
cargo xtask layouts --check
cargo xtask header --check
cargo xtask protos --check
step "unit, integration and doc tests, and every fuzz target for a fixed time: parallel jobs"
scripts/run-tests.sh "${PYSPY_FUZZ_SECONDS:-20}"
