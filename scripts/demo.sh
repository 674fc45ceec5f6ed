#!/usr/bin/env bash
# Starts examples/demo.py and shows its threads' stacks with `pyspy dump`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p pyspy-cli
python=${PYTHON:-$(command -v python3)}
"$python" examples/demo.py 10 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1
./target/release/pyspy dump --pid "$pid"
