#!/usr/bin/env bash
# hfr-render benchmark on this machine, one run:
#  (a) images/s and paired crops/s for 112x112 aligned crops (VIS + NIR 850)
#      at 1, 2, 4 (default) and 8 samples per pixel, 1 and 2 threads; the jobs
#      come from hfr-synth on the reconstructed faces of face-api's samples
#      (faces down to very low resolution, --face-px 24:160, as by default);
#  (b) 512x512 frames (--frames, eye distance 128 px) at the default spp;
#  (c) the renderer's rays/s against Embree's bare throughput on the same
#      mesh (bench_render, ICT head, one thread).
# Usage: bench/run_render.sh BUILD_DIR  (writes bench/results-render-tool.md;
#        needs ../shared/data/ict-facekit and the fetched models)
set -euo pipefail
B=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN="$B/bin"
ICT=${HFR_ICT_FACEKIT:-$SRC/../shared/data/ict-facekit}
SAMPLES=${HFR_MODEL_DIR:-$SRC/models}/face-api
for d in "$ICT" "$SAMPLES"; do [ -d "$d" ] || { echo "run_render: $d not found" >&2; exit 1; }; done
W=$(mktemp -d /tmp/hfr-bench-render.XXXXXX)
trap 'rm -rf "$W"' EXIT
cmake --build "$B" --target bench_render hfr-render hfr-synth hfr-reconstruct -- --quiet
OUT="$SRC/bench/results-render-tool.md"

timed() { # label command... -> "seconds peakMB"
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$W/time" "$@" >"$W/out.$label" 2>"$W/err.$label" || { cat "$W/err.$label" >&2; exit 1; }
  read -r s kb < <(tail -1 "$W/time"); echo "$s $((kb / 1024))"
}
rate() { /usr/bin/python3 -c "import sys; n,s=map(float,sys.argv[1:]); print(f'{n/s:.1f}')" "$@"; }

"$BIN/hfr-reconstruct" -q -t 2 --ict "$ICT" --faces all -O "$W/faces" -r "$W/faces.jsonl" "$SAMPLES" || [ $? -eq 3 ]
"$BIN/hfr-synth" -q --ict "$ICT" -O "$W/ids" --poses 6 --bands 850 --seed 1 -r "$W/jobs.jsonl" "$W/faces.jsonl"
"$BIN/hfr-synth" -q --ict "$ICT" -O "$W/ids" --poses 2 --bands 850 --seed 2 --face-px 128:128 -r "$W/frames.jsonl" "$W/faces.jsonl"
N=$(wc -l <"$W/jobs.jsonl"); NF=$(wc -l <"$W/frames.jsonl")
NID=$(ls "$W/ids" | wc -l)

{
  echo "# hfr-render: throughput"
  echo
  echo "Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $(date -u +%Y-%m-%d). \`bash bench/run_render.sh build\`."
  echo "Jobs: hfr-synth on the $NID faces hfr-reconstruct finds in face-api's sample photos (ICT FaceKit heads with"
  echo "expressions), 6 poses each, VIS + NIR 850 nm: $N images = $((N / 2)) pairs; eye distance 24-160 px"
  echo "(the default --face-px, so many faces are rendered at low resolution and warped up). Every image is"
  echo "written (PNG) and recorded; wall time of the whole command, start-up included."
  echo
  echo "## Aligned 112x112 crops"
  echo
  echo "| spp | threads | seconds | images/s | pairs/s | peak MB |"
  echo "|---|---|---|---|---|---|"
  for spp in 1 2 4 8; do
    for t in 1 2; do
      read -r s m < <(timed "c$spp$t" "$BIN/hfr-render" -q -t $t --spp $spp --ict "$ICT" -O "$W/r$spp$t" -r "$W/r.jsonl" "$W/jobs.jsonl")
      echo "| $spp$([ $spp -eq 4 ] && echo ' (default)') | $t | $s | $(rate "$N" "$s") | $(rate $((N / 2)) "$s") | $m |"
    done
  done
  echo
  echo "## 512x512 frames"
  echo
  echo "$NF jobs with an eye distance of 128 px (frames 512x512), default spp, 2 threads; crops alone, then with --frames:"
  echo
  echo "| what | seconds | images/s |"
  echo "|---|---|---|"
  read -r s m < <(timed f0 "$BIN/hfr-render" -q -t 2 --ict "$ICT" -O "$W/f0" -r "$W/f.jsonl" "$W/frames.jsonl")
  echo "| crops only | $s | $(rate "$NF" "$s") |"
  read -r s2 m < <(timed f1 "$BIN/hfr-render" -q -t 2 --frames --ict "$ICT" -O "$W/f1" -r "$W/f.jsonl" "$W/frames.jsonl")
  echo "| crops + 512x512 frames | $s2 | $(rate "$NF" "$s2") |"
  echo "| 512x512 frames alone (difference) | $(/usr/bin/python3 -c "print(round($s2 - $s, 2))") | $(/usr/bin/python3 -c "print(round($NF / max($s2 - $s, 1e-9), 1))") |"
  echo
  echo "## Renderer versus bare Embree (one thread, \`$B/bench/bench_render ICT_DIR SIZE SPP\`)"
  echo
  for args in "112 4" "256 8"; do
    echo '```'
    "$B/bench/bench_render" "$ICT" $args 5
    echo '```'
  done
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
