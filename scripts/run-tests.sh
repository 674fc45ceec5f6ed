#!/usr/bin/env bash
# Builds every test of the workspace, then runs the test binaries (and, with a number of seconds,
# the fuzz targets) as parallel jobs. Most integration suites spend their time waiting on the
# interpreters they sample, so several at once fill the machine; one after another (what
# `cargo test --workspace` does) took over half an hour.
#
#   scripts/run-tests.sh [FUZZ_SECONDS]    FUZZ_SECONDS per fuzz target; 0 or none: no fuzzing
#
#   PYSPY_TEST_JOBS      jobs at once (default 3)
#   PYSPY_JOB_MINUTES    a job still running after this long is killed and fails (default 40)
#
# Each job's output goes to target/test-logs/NAME.log and is printed whole when the job ends, so
# outputs never interleave. The last line totals the `test result:` lines of every job. Exits 1
# if any job failed, after all have ended.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${1:-0}
width=${PYSPY_TEST_JOBS:-3}
job_minutes=${PYSPY_JOB_MINUTES:-40}
logs=target/test-logs
# `cargo test` runs its test binaries under rustup's choice of toolchain (RUSTUP_TOOLCHAIN);
# run here directly, tests that start cargo themselves would otherwise build with whatever
# toolchain a dependency's own rust-toolchain.toml names (cbindgen's says nightly).
if [ -z "${RUSTUP_TOOLCHAIN:-}" ] && command -v rustup >/dev/null; then
    RUSTUP_TOOLCHAIN=$(rustup show active-toolchain | cut -d' ' -f1)
    export RUSTUP_TOOLCHAIN
fi
rm -rf "$logs"
mkdir -p "$logs"

# Slowest first, so the long ones do not start last (seconds on a fresh 2-core machine, run alone:
# install ~280, hostile_sample ~190, native ~190, capi ~180, push ~150, hostile_attach ~95).
# Binaries not named here run after these, in cargo's order.
slow_first=(install hostile_sample native capi push hostile_attach linetable_stdlib positions_stdlib
    record builds threads host stress tasks top debugger)

# Build everything `cargo test --workspace` would run, and list the test executables: the
# package directory (cargo runs a test binary there) and the path, from cargo's JSON messages.
build_log=$logs/build.json
if ! cargo test --workspace --no-run --message-format=json-render-diagnostics >"$build_log"; then
    echo "run-tests.sh: the tests did not build" >&2
    exit 1
fi
declare -A exe dir
while IFS=$'\t' read -r name manifest path; do
    if [ -n "${exe[$name]:-}" ]; then
        echo "run-tests.sh: two test binaries are named $name; rename one" >&2
        exit 1
    fi
    exe[$name]=$path
    dir[$name]=$(dirname "$manifest")
done < <(python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["target"]["name"], m["manifest_path"], m["executable"], sep="\t")
' <"$build_log")

order=()
for name in "${slow_first[@]}"; do
    [ -n "${exe[$name]:-}" ] && order+=("$name")
done
for name in $(printf '%s\n' "${!exe[@]}" | sort); do
    [[ " ${order[*]} " == *" $name "* ]] || order+=("$name")
done
order+=(doctests)

# A hung job is killed (its process group: the interpreters a test started go with it), so a
# hang fails the run with the job's name instead of running out CI's time.
limited() { timeout --kill-after=30 "$(( job_minutes * 60 ))" "$@"; }

# The fuzz build and runs take whole cores for minutes and check no timing: at a lower
# priority, and outside the pool of jobs, they use the CPU the suites leave idle (most wait on
# their interpreters) without holding a suite's place. Inside the pool, niced, the fuzz job held
# one of the three places for 25 minutes. (The install test's release builds are not niced:
# niced, that job became the last to end, 24 minutes in.)
run_job() {
    local name=$1 start status=0
    start=$(date +%s)
    case $name in
        fuzz) limited nice -n 10 scripts/fuzz.sh "$fuzz_seconds" >"$logs/$name.log" 2>&1 || status=$? ;;
        doctests) limited cargo test --workspace --doc >"$logs/$name.log" 2>&1 || status=$? ;;
        *) (cd "${dir[$name]}" && CARGO_MANIFEST_DIR=${dir[$name]} limited "${exe[$name]}") \
            >"$logs/$name.log" 2>&1 || status=$? ;;
    esac
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        echo "run-tests.sh: $name was still running after $job_minutes minutes: killed" >>"$logs/$name.log"
    fi
    echo "$status $(( $(date +%s) - start ))" >"$logs/$name.rc"
}

# Prints the log of each job that has ended since the last call (checked every second, so in
# about the order they end), and notes the failed ones.
declare -A reported
failed=()
report() {
    local name status seconds
    for name in "${order[@]}"; do
        [ -n "${reported[$name]:-}" ] || [ ! -e "$logs/$name.rc" ] && continue
        reported[$name]=1
        read -r status seconds <"$logs/$name.rc"
        printf '\n==> %s: %s in %s s\n' "$name" "$([ "$status" = 0 ] && echo ok || echo FAILED)" "$seconds" >&2
        cat "$logs/$name.log"
        [ "$status" = 0 ] || failed+=("$name")
    done
}

start=$(date +%s)
fuzz_pid=none
if [ "$fuzz_seconds" != 0 ]; then
    order=(fuzz "${order[@]}")
    run_job fuzz &
    fuzz_pid=$!
fi
for name in "${order[@]}"; do
    [ "$name" = fuzz ] && continue
    while [ "$(jobs -rp | grep -cvx "$fuzz_pid")" -ge "$width" ]; do
        sleep 1
        report
    done
    run_job "$name" &
done
wait
report
totals=$(cat "$logs"/*.log | awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed", p, f }')
printf '\nrun-tests.sh: %d jobs in %d s, %d at once; tests: %s\n' "${#order[@]}" "$(( $(date +%s) - start ))" "$width" "$totals" >&2
if [ ${#failed[@]} -gt 0 ]; then
    echo "run-tests.sh: failed: ${failed[*]}" >&2
    exit 1
fi
