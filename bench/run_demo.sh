#!/usr/bin/env bash
# The demo's stages on this machine: wall time and peak memory (GNU time) of
# every tool run of a fresh `make demo` (examples/demo.sh into a temporary
# directory), and the whole run's wall time, so regressions show.
# Usage: bench/run_demo.sh [BUILD_DIR]      (writes bench/results-demo.md)
#        FULL=1 bench/run_demo.sh BUILD_DIR (appends nothing: writes bench/results-demo-full.md)
set -euo pipefail
B=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "$B" && pwd)
full=${FULL:-0}
W=$(mktemp -d /tmp/hfr-bench-demo.XXXXXX)
trap 'rm -rf "$W"' EXIT
OUT="$SRC/bench/results-demo.md"
[ "$full" = 1 ] && OUT="$SRC/bench/results-demo-full.md"
flow=$W/flow
[ "$full" = 1 ] && flow=$W/full

t0=$(date +%s.%N)
HFR_BIN="$B/bin" DEMO_OUT="$W" FULL=$full bash "$SRC/examples/demo.sh" >"$W/demo.out" 2>"$W/demo.err" || {
  tail -20 "$W/demo.err" >&2
  exit 1
}
t1=$(date +%s.%N)

{
  echo "# make demo$([ "$full" = 1 ] && echo " FULL=1"): stage wall time and peak memory"
  echo
  echo "Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $(free -g | awk '/^Mem:/ {print $2}') GiB, $(date -u +%Y-%m-%d)."
  echo "\`$([ "$full" = 1 ] && echo "FULL=1 ")bash bench/run_demo.sh $1\`: a fresh run of examples/demo.sh (examples/Makefile, every stage)."
  ict="the face mesh alone (no ICT FaceKit)"
  grep -q "ICT FaceKit full head" "$W/demo.err" && ict="the ICT FaceKit full head"
  echo "3D model: $ict. Each line is one tool run (GNU time: elapsed seconds, maximum resident set size)."
  echo
  echo "| stage | seconds | peak MiB |"
  echo "|---|---|---|"
  awk -F'\t' 'NF == 3 { printf "| %s | %.2f | %.0f |\n", $1, $2, $3 / 1024; s += $2; if ($3 > m) m = $3 }
    END { printf "| **all tools** | **%.1f** | **%.0f** (largest) |\n", s, m / 1024 }' "$flow/stages.tsv"
  echo
  printf 'Whole demo (start-up and shell included): %.1f s.\n' "$(echo "$t1 - $t0" | bc)"
  echo
  echo "The demo's result on this run:"
  echo
  echo '```'
  cat "$W/demo.out"
  sed -n '/^flow done/,/VIS)$/p' "$W/demo.err"
  echo '```'
} >"$OUT"
cat "$OUT"
