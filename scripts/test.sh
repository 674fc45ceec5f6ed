#!/usr/bin/env bash
# Runs every test: provisions the interpreters (cached), checks formatting and lints, then the
# unit and integration tests against every CPython on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/provision.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
