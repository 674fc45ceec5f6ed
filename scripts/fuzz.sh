#!/usr/bin/env bash
# Builds every fuzz target (fuzz/, its own cargo workspace) and runs each for a fixed time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      default 30; 9 targets, so ~5 minutes plus the build
#
# Each target starts from the committed seeds (fuzz/seeds/<target>/) and a scratch corpus
# (fuzz/corpus/<target>/, git-ignored, kept between runs so later runs go deeper). Limits:
# 512 MB of RSS and 5 s per input. A crash, leak, timeout or out-of-memory fails the script and
# leaves the input in fuzz/artifacts/<target>/; keep it in fuzz/regressions/<target>/ with the
# fix (tests/integration/fuzz_regressions.rs replays that directory in `cargo test`).
# Runs on stable Rust: RUSTC_BOOTSTRAP=1 unlocks the sanitizer flags cargo-fuzz needs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd fuzz
targets=$(cargo fuzz list)
triple=$(rustc -vV | sed -n 's/^host: //p')
start=$(date +%s)
cargo fuzz build
echo "fuzz.sh: built $(echo $targets | wc -w) targets in $(( $(date +%s) - start )) s" >&2

failed=()
for t in $targets; do
    mkdir -p "corpus/$t" "seeds/$t"
    log="target/fuzz-$t.log"
    mkdir -p "artifacts/$t"
    # The binaries cargo fuzz built, run directly: no rebuild between targets.
    if "target/$triple/release/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$seconds" -rss_limit_mb=512 -timeout=5 -print_final_stats=1 \
        "corpus/$t" "seeds/$t" >"$log" 2>&1; then
        echo "fuzz.sh: $t: clean for ${seconds} s ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs)" >&2
    else
        echo "fuzz.sh: $t FAILED; the end of its log ($log):" >&2
        grep -v '^#' "$log" | tail -40 >&2
        failed+=("$t")
    fi
done
echo "fuzz.sh: done in $(( $(date +%s) - start )) s" >&2
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: failing targets: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
