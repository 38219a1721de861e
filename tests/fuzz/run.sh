#!/usr/bin/env bash
# Runs each fuzzer for SECONDS (default 600) from its seed corpus; findings
# (crash-*, leak-*, timeout-*) land in tests/fuzz/findings/. Usage:
#   tests/fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]
set -u
build=${1:?build dir}; secs=${2:-600}; shift 2 || true
targets=${*:-records tensorfile npy}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$here/findings"
for t in $targets; do
  work=$(mktemp -d); cp "$here/corpus/$t/"* "$work/"
  log="$here/findings/$t.log"
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$here/findings/$t-" -print_final_stats=1 "$work" > "$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "fuzz_$t: ${secs}s, ${execs:-?} executions, $cov, corpus $(ls "$work" | wc -l) inputs, exit $rc"
  rm -rf "$work"
done
