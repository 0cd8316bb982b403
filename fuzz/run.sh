#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target of devgate, one after the other, and writes a table
# of executions per target to target/fuzz-report.md. Exits non-zero if any target crashed.
#
#   bash fuzz/run.sh                      # every target, 30 s each
#   FUZZ_SECONDS=300 bash fuzz/run.sh     # longer
#   FUZZ_RUNS=1000000 bash fuzz/run.sh    # a fixed number of executions each (no time cap)
#   FUZZ_TARGETS="token decide" bash fuzz/run.sh
#
# Stable Rust only: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z flags cargo-fuzz passes.
# The seed corpus in fuzz/corpus/<target> is copied to target/fuzz-corpus/<target> and the
# fuzzer grows that copy, so the committed seeds stay as they are; crash inputs go to
# target/fuzz-artifacts/<target>/ (see fuzz/README.md for turning one into a regression test).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_RUNS=${FUZZ_RUNS:-}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
FUZZ_TARGETS=${FUZZ_TARGETS:-cookie_header token jose api_key config login_form peer_cidr path decide}
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

target_dir=$root/target/fuzz
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=$target_dir/$triple/release
report=$root/target/fuzz-report.md
mkdir -p "$root/target/fuzz-corpus" "$root/target/fuzz-artifacts" "$root/target/fuzz-logs"

echo "== building (sanitizer: $FUZZ_SANITIZER)"
# One build of every target: building them one by one recompiles devgate for each.
cargo fuzz build --debug-assertions --sanitizer "$FUZZ_SANITIZER" --target-dir "$target_dir"

if [[ -n $FUZZ_RUNS ]]; then
    limit=(-runs="$FUZZ_RUNS")
    budget="$FUZZ_RUNS runs"
else
    limit=(-max_total_time="$FUZZ_SECONDS")
    budget="$FUZZ_SECONDS s"
fi

rows=()
failed=()
for t in $FUZZ_TARGETS; do
    corpus=$root/target/fuzz-corpus/$t
    artifacts=$root/target/fuzz-artifacts/$t
    log=$root/target/fuzz-logs/$t.log
    mkdir -p "$corpus" "$artifacts"
    if [[ -d fuzz/corpus/$t ]]; then
        cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    fi
    dict=()
    [[ -f fuzz/dict/$t.dict ]] && dict=(-dict="fuzz/dict/$t.dict")
    echo "== $t ($budget)"
    start=$(date +%s)
    set +e
    "$bin_dir/$t" "$corpus" "${limit[@]}" "${dict[@]}" \
        -artifact_prefix="$artifacts/" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >"$log" 2>&1
    rc=$?
    set -e
    seconds=$(( $(date +%s) - start ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [[ -z $runs ]] && runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    runs=${runs:-?}
    files=$(find "$corpus" -type f | wc -l)
    if [[ $rc -eq 0 ]]; then
        result=ok
    else
        result="CRASH (exit $rc)"
        failed+=("$t")
        grep -E '^(thread .* panicked|==[0-9]+==ERROR|SUMMARY|Test unit written to|artifact_prefix)' "$log" | head -5 || true
        tail -40 "$log"
    fi
    printf '   %s: %s executions in %s s, corpus %s files, %s\n' "$t" "$runs" "$seconds" "$files" "$result"
    rows+=("| $t | $runs | $seconds | $files | $result |")
done

{
    echo "# devgate fuzzing report"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(rustc --version), cargo-fuzz $(cargo fuzz --version 2>/dev/null | awk '{print $2}'), sanitizer $FUZZ_SANITIZER, budget $budget per target"
    echo
    echo "| target | executions | seconds | corpus files | result |"
    echo "|---|---:|---:|---:|---|"
    printf '%s\n' "${rows[@]}"
} >"$report"
echo
cat "$report"
echo
if ((${#failed[@]})); then
    echo "fuzz: crashes in: ${failed[*]} (inputs in target/fuzz-artifacts/, logs in target/fuzz-logs/)"
    exit 1
fi
echo "fuzz: no crashes"
