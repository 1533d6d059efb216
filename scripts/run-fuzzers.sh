#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for a bounded time on a scratch copy of its seed corpus.
# Usage: scripts/run-fuzzers.sh BUILD_DIR   (FUZZ_SECONDS per target, default 20; exit 1 if one failed)
set -euo pipefail

build=${1:?usage: scripts/run-fuzzers.sh BUILD_DIR}
secs=${FUZZ_SECONDS:-20}
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "FUZZ_SECONDS must be a positive integer" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
fuzzdir=$build/tests/fuzz

targets=()
for bin in "$fuzzdir"/fuzz_*; do
    [[ -f $bin && -x $bin ]] && targets+=("$bin")
done
if ((${#targets[@]} == 0)); then
    echo "no fuzz_* targets in $fuzzdir (build with -DGW_FUZZ=ON first)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gw-fuzz.XXXXXX")
failed=0
total_execs=0
for bin in "${targets[@]}"; do
    name=$(basename "$bin")
    short=${name#fuzz_}
    dir=$work/$short
    mkdir -p "$dir/corpus" "$dir/artifacts"
    # The fuzzer adds new inputs to its corpus dir: give it a copy so the checked-in seeds stay as they are.
    if [[ -d $root/tests/fuzz/corpus/$short ]]; then cp -R "$root/tests/fuzz/corpus/$short/." "$dir/corpus/"; fi
    rc=0
    # libFuzzer stops itself after -max_total_time; the outer timeout only guards against a wedged process.
    timeout -k 10 $((secs + 60)) "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
    execs=${execs:-0}
    total_execs=$((total_execs + execs))
    artifacts=$(find "$dir/artifacts" -type f | sort)
    if ((rc != 0)) || [[ -n $artifacts ]]; then
        failed=$((failed + 1))
        echo "FAIL $name (exit $rc, $execs execs); log: $dir/log"
        for a in $artifacts; do echo "  artifact: $a  (reproduce: $bin $a)"; done
        grep -m 20 -E 'ERROR|check failed|SUMMARY' "$dir/log" | sed 's/^/  /' || true
    else
        echo "ok   $name ($execs execs in ${secs}s)"
    fi
done

echo "fuzz summary: ${#targets[@]} target(s), $failed failed, $total_execs execs, ${secs}s each"
if ((failed > 0)); then
    echo "fuzz artifacts and logs kept in $work" >&2
    exit 1
fi
rm -rf "$work"
