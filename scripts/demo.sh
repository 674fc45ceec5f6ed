#!/usr/bin/env bash
# Profiles examples/demo.py (CPU-bound threads: a prime sieve, Fibonacci, a sleeper) for 3 s
# with `pyspy record` and writes a flame graph, demo.svg, in the repository's root.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p pyspy-cli
python=${PYTHON:-$(command -v python3)}
./target/release/pyspy record -o demo.svg --duration 3 -- "$python" examples/demo.py
echo "Live view of the same program: ./target/release/pyspy top -- $python examples/demo.py"
