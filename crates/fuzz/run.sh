#!/usr/bin/env bash
# Builds every fuzz target (cargo fuzz, libFuzzer with AddressSanitizer,
# debug assertions) and runs each for SECONDS (default 10) from its seed
# corpus, corpus/<target>/. Prints one line per target with libFuzzer's
# number of executions; fails if any target crashes (a panic, a sanitizer
# report, a timeout or running out of memory). A crashing input is kept as
# artifacts/<target>/crash-*; reproduce it with
#   cargo +nightly fuzz run --fuzz-dir . <target> artifacts/<target>/crash-...
# New inputs a run finds go to a temporary directory, not into corpus/.
#
#   crates/fuzz/run.sh [SECONDS]
#   FUZZ_ARGS="-jobs=2 -workers=2" crates/fuzz/run.sh 600   # more libFuzzer flags
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:-10}

# cargo fuzz needs nightly rustc flags: the nightly toolchain if rustup has
# one, else the default toolchain with RUSTC_BOOTSTRAP (same flags).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

log=$(mktemp -d "${TMPDIR:-/tmp}/vpngw-fuzz.XXXXXX")
trap 'rm -rf "$log"' EXIT

# --fuzz-dir: cargo fuzz looks for <project>/fuzz by default, and this
# directory is not at the root of the project.
if ! "${fuzz[@]}" build --fuzz-dir . >"$log/build" 2>&1; then
    cat "$log/build" >&2
    echo "fuzz: cargo fuzz build failed" >&2
    exit 1
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
# Where cargo put the binaries (CARGO_TARGET_DIR if the caller set one).
bin_dir=${CARGO_TARGET_DIR:-$PWD/target}/$triple/release

targets=$("${fuzz[@]}" list --fuzz-dir .)
if [ -z "$targets" ]; then
    echo "fuzz: no fuzz target listed" >&2
    exit 1
fi
failed=0
for target in $targets; do
    mkdir -p "corpus/$target" "artifacts/$target" "$log/new-$target"
    "$bin_dir/$target" "$log/new-$target" "corpus/$target" \
        -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" \
        -timeout=10 -rss_limit_mb=2048 -max_len=8192 ${FUZZ_ARGS:-} \
        >"$log/$target" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log/$target" | tail -n 1)
    if [ "$rc" -eq 0 ]; then
        printf 'fuzz %-15s %10s executions in %ss, no crash\n' "$target" "${execs:-?}" "$seconds"
    else
        failed=1
        printf 'fuzz %-15s %10s executions in %ss, CRASHED (exit %s):\n' "$target" "${execs:-?}" "$seconds" "$rc"
        # The report: from the panic or sanitizer error on, then the input.
        awk '/panicked at|ERROR: |deadly signal/ { p = 1 } p' "$log/$target" |
            grep -v '^#[0-9]\|^stat::\|^MS: \|NEW_FUNC\|^$' | head -n 24 >&2
        grep '^Base64: \|^SUMMARY: ' "$log/$target" >&2
        ls -1 "artifacts/$target"/* 2>/dev/null | sed 's/^/  input: /' >&2
    fi
done
exit "$failed"
