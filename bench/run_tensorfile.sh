#!/usr/bin/env bash
# Tensor-file throughput vs the zstd CLI on the same raw bytes (1M x 512
# embeddings, f32 and f16, default level 3), and LibTorch sgemm with the
# reference BLAS vs OpenBLAS. Writes bench/results.md. Usage: run_tensorfile.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
ROWS=${ROWS:-1000000}; DIM=${DIM:-512}; LEVEL=${LEVEL:-3}
work=$(mktemp -d /tmp/hfr-bench.XXXXXX); trap 'rm -rf "$work"' EXIT
cmake --build "$build" --target bench_tensorfile bench_blas -- --quiet
"$build/bench/bench_tensorfile" "$work" "$ROWS" "$DIM" "$LEVEL" > "$work/hft.jsonl"
now() { date +%s.%N; }
out="$here/results-tensorfile.md"
{
  echo "# Tensor-file throughput ($(date -u +%Y-%m-%d), $(nproc) cores, $(zstd --version | head -1))"
  echo
  echo "Command: \`make bench\` (bench/run_tensorfile.sh). ${ROWS}x${DIM} L2-normalised Gaussian embeddings, zstd level $LEVEL,"
  echo "one thread. MB = 10^6 bytes of raw (uncompressed) data per second; page-cached files."
  echo
  echo "| dtype | what | write MB/s | read MB/s | ratio | % of zstd CLI (write / read) |"
  echo "|---|---|---|---|---|---|"
} > "$out"
while read -r line; do
  dt=$(echo "$line" | sed 's/.*"dtype":"\([a-z0-9]*\)".*/\1/')
  get() { echo "$line" | sed "s/.*\"$1\":\([0-9.]*\).*/\1/"; }
  raw=$(get raw_bytes); fb=$(get file_bytes); ws=$(get write_s); rs=$(get read_s); ss=$(get stream_read_s)
  sync
  t0=$(now); zstd -q -f -$LEVEL -T1 "$work/emb_$dt.raw" -o "$work/emb_$dt.zst"; t1=$(now)
  zstd -q -f -d "$work/emb_$dt.zst" -o "$work/emb_$dt.back"; t2=$(now)
  cmp -s "$work/emb_$dt.raw" "$work/emb_$dt.back" || { echo "zstd round trip differs" >&2; exit 1; }
  zb=$(stat -c %s "$work/emb_$dt.zst")
  awk -v dt="$dt" -v raw="$raw" -v fb="$fb" -v ws="$ws" -v rs="$rs" -v ss="$ss" -v zw="$(echo "$t1 - $t0" | bc)" \
      -v zr="$(echo "$t2 - $t1" | bc)" -v zb="$zb" 'BEGIN {
    printf "| %s | hfr .hft (random-access read) | %.0f | %.0f | %.3f | %.0f%% / %.0f%% |\n", dt, raw/ws/1e6, raw/rs/1e6, raw/fb, 100*zw/ws, 100*zr/rs;
    printf "| %s | hfr .hft (stream read, pipe-style) | | %.0f | | - / %.0f%% |\n", dt, raw/ss/1e6, 100*zr/ss;
    printf "| %s | zstd CLI -%s -T1 | %.0f | %.0f | %.3f | 100%% |\n", dt, '"$LEVEL"', raw/zw/1e6, raw/zr/1e6, raw/zb;
  }' >> "$out"
  rm -f "$work/emb_$dt".*
done < "$work/hft.jsonl"
{
  echo
  echo "# LibTorch BLAS (bench/bench_blas.cpp, 2 threads)"
  echo
  echo "| BLAS behind libblas.so.3 | sgemm 1024³ GFLOP/s | FC 256×25088→512 GFLOP/s | FC ms |"
  echo "|---|---|---|---|"
  for which in reference openblas; do
    if [ $which = reference ]; then
      dir=/usr/lib/x86_64-linux-gnu/blas
      [ -e $dir/libblas.so.3 ] || { echo "| reference | not installed | | |"; continue; }
      j=$(LD_LIBRARY_PATH=$dir "$build/bench/bench_blas" 2)
    else
      j=$("$build/bench/bench_blas" 2)
    fi
    g() { echo "$j" | sed "s/.*\"$1\":\([0-9.]*\).*/\1/"; }
    echo "| $which ($( [ $which = reference ] && echo 'LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blas' || readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu)) | $(g sgemm_1024_gflops) | $(g fc_256x25088x512_gflops) | $(g fc_ms) |"
  done
} >> "$out"
cat "$out"
