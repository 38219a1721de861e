#!/usr/bin/env bash
# hfr-embed benchmark on this machine, one run:
#  (a) aligned crops -> embeddings (ORL, 400 images): hfr-embed --aligned end to end, against
#      the executor's bare forward pass (bench_nn) at the same network batch;
#  (b) full photos (decode + detect + mesh + align + embed): ORL (400, 92x112) and face-api's
#      six group photos (1920x1280, all faces);
#  FRUITS view: per-photo end-to-end latency on one thread (--batch 1 --net-batch 1 -t 1),
#      median and p95;
#  allocator effect (glibc defaults vs tune_allocator) on the forward passes;
#  memory: peak RSS for 400 vs 1600 images (flat = streaming);
#  ORL accuracy per model: gallery = image 1 of each subject, probes = images 2..10:
#      TAR@FAR 1e-2 / 1e-3 (probe x gallery verification) and closed-set Rank-1.
# The TF.js reference numbers (c) come from scripts/golden/bench-reference.js (Node).
# Usage: bench/run_embed.sh BUILD_DIR    (writes bench/results-embed.md; needs ../shared/data/orl-faces)
set -euo pipefail
B=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN="$B/bin"
ORL=${HFR_ORL_DIR:-$SRC/../shared/data/orl-faces}
MODELS=${HFR_MODEL_DIR:-$SRC/models}
[ -d "$ORL" ] || { echo "run_embed: $ORL not found" >&2; exit 1; }
W=$(mktemp -d /tmp/hfr-bench-embed.XXXXXX)
trap 'rm -rf "$W"' EXIT
cmake --build "$B" --target bench_nn hfr-embed hfr-match hfr-eval -- --quiet
OUT="$SRC/bench/results-embed.md"

timed() { # label command... -> "seconds peakMB"
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$W/time" "$@" >"$W/out.$label" 2>"$W/err.$label" || [ $? -eq 3 ] || { cat "$W/err.$label" >&2; exit 1; }
  read -r s kb < <(tail -1 "$W/time"); echo "$s $((kb / 1024))"
}
rate() { /usr/bin/python3 -c "import sys; n,s,s0=map(float,sys.argv[1:]); print(f'{n/max(s-s0,1e-9):.1f}')" "$@"; }

# start-up + model import, to subtract from end-to-end wall times
read -r s0 _ < <(timed startup "$BIN/hfr-embed" -q --aligned -o "$W/one.hft" -r /dev/null "$ORL/s1/1.pgm")
read -r s0d _ < <(timed startupd "$BIN/hfr-embed" -q -m dlib --aligned -o "$W/one.hft" -r /dev/null "$ORL/s1/1.pgm")
read -r s0f _ < <(timed startupf "$BIN/hfr-embed" -q -o "$W/one.hft" -r /dev/null "$ORL/s1/1.pgm")

{
echo "# hfr-embed benchmark"
echo
echo "Measured by \`bash bench/run_embed.sh build\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), LibTorch CPU, 2 threads unless stated. Noisy machine: compare within this file."
echo
echo "## (a) aligned crops -> embeddings (ORL, 400 images, images/s)"
echo
echo "| model | bare forward (bench_nn, batch 8) | hfr-embed --aligned (end to end, start-up excluded) | ratio |"
echo "|---|---:|---:|---:|"
for m in faceres dlib; do
  bare=$("$B/bench/bench_nn" $m 8 12 2 | sed 's/.*: \([0-9.]*\) images.*/\1/')
  st=$s0; [ $m = dlib ] && st=$s0d
  read -r s mb < <(timed al$m "$BIN/hfr-embed" -q -m $m --aligned -o "$W/a.hft" -r /dev/null "$ORL")
  e2e=$(rate 400 "$s" "$st")
  echo "| $m | $bare | $e2e | $(/usr/bin/python3 -c "print(f'{$bare/$e2e:.2f}x')") |"
done
echo
echo "## (b) full photos: decode + BlazeFace + face mesh + alignment + embedding"
echo
echo "| input | model | faces | wall s (start-up excl.) | faces/s | peak RSS MB |"
echo "|---|---|---:|---:|---:|---:|"
for m in faceres dlib; do
  st=$s0f
  read -r s mb < <(timed orl$m "$BIN/hfr-embed" -q -m $m -o "$W/o.hft" -r "$W/o.jsonl" "$ORL")
  n=$(grep -vc '"error"' "$W/o.jsonl" || true)
  echo "| ORL 92x112 (400) | $m | $n | $(/usr/bin/python3 -c "print(f'{$s-$st:.2f}')") | $(rate "$n" "$s" "$st") | $mb |"
done
read -r s mb < <(timed photos "$BIN/hfr-embed" -q --faces all -o "$W/p.hft" -r "$W/p.jsonl" "$MODELS/face-api")
n=$(grep -vc '"error"' "$W/p.jsonl" || true)
echo "| face-api samples 1920x1280 (6 photos) | faceres | $n | $(/usr/bin/python3 -c "print(f'{$s-$s0f:.2f}')") | $(rate "$n" "$s" "$s0f") | $mb |"
read -r s mb < <(timed orldet "$BIN/hfr-embed" -q --landmarks detector -o "$W/o.hft" -r "$W/o.jsonl" "$ORL")
echo "| ORL, --landmarks detector (no mesh) | faceres | 397 | $(/usr/bin/python3 -c "print(f'{$s-$s0f:.2f}')") | $(rate 397 "$s" "$s0f") | $mb |"
echo
echo "## FRUITS view: end-to-end latency per photo, one thread"
echo
echo "\`hfr-embed --timing --batch 1 --net-batch 1 -t 1\` (decode, detection, mesh, alignment, embedding of one photo; the next photo's decoding overlaps)."
echo
echo "| input | model | photos | median ms | p95 ms | within 100 / 500 / 1000 ms |"
echo "|---|---|---:|---:|---:|---|"
for m in faceres dlib; do
  for set in orl photos; do
    if [ $set = orl ]; then
      find "$ORL" -name '[12].pgm' | sort | head -60 | /usr/bin/python3 -c "import sys,json; [print(json.dumps({'path': l.strip()})) for l in sys.stdin]" > "$W/lat.jsonl"
      label="ORL (60)"
    else
      ls "$MODELS"/face-api/*.jpg | /usr/bin/python3 -c "import sys,json; [print(json.dumps({'path': l.strip()})) for l in sys.stdin]" > "$W/lat.jsonl"
      label="face-api samples (6)"
    fi
    "$BIN/hfr-embed" -q -m $m --timing --batch 1 --net-batch 1 -t 1 -o "$W/l.hft" -r "$W/l.out" - < "$W/lat.jsonl" || [ $? -eq 3 ]
    /usr/bin/python3 - "$W/l.out" "$m" "$label" <<'PY'
import sys, json
import numpy as np
v = [json.loads(l)["latency_ms"] for l in open(sys.argv[1]) if "latency_ms" in l]
v = np.array(v)
f = lambda b: f"{(v <= b).mean() * 100:.0f}%"
print(f"| {sys.argv[3]} | {sys.argv[2]} | {len(v)} | {np.median(v):.1f} | {np.percentile(v, 95):.1f} | {f(100)} / {f(500)} / {f(1000)} |")
PY
  done
done
echo
echo "## Allocator (forward passes, images/s at batch 8)"
echo
echo "| model | glibc defaults | tuned (M_MMAP_MAX 0, M_TRIM_THRESHOLD 1 GiB) |"
echo "|---|---:|---:|"
for m in faceres dlib blazeface facemesh; do
  d=$(HFR_MALLOC_DEFAULTS=1 "$B/bench/bench_nn" $m 8 10 2 | sed 's/.*: \([0-9.]*\) images.*/\1/')
  t=$("$B/bench/bench_nn" $m 8 10 2 | sed 's/.*: \([0-9.]*\) images.*/\1/')
  echo "| $m | $d | $t |"
done
echo
echo "## Network batch size (forward passes, images/s, tuned allocator)"
echo
echo "| model | 1 | 8 | 32 |"
echo "|---|---:|---:|---:|"
for m in faceres dlib blazeface facemesh; do
  r=""
  for b in 1 8 32; do r="$r | $("$B/bench/bench_nn" $m $b $((96 / b)) 2 | sed 's/.*: \([0-9.]*\) images.*/\1/')"; done
  echo "| $m$r |"
done
echo
echo "## Memory: streaming, not accumulating"
echo
find "$ORL" -name '*.pgm' | sort | /usr/bin/python3 -c "import sys,json; [print(json.dumps({'path': l.strip()})) for l in sys.stdin]" > "$W/400.jsonl"
for i in 1 2 3 4; do cat "$W/400.jsonl"; done > "$W/1600.jsonl"
read -r s4 m4 < <(timed m400 "$BIN/hfr-embed" -q --aligned -o "$W/m.hft" -r /dev/null "$W/400.jsonl")
read -r s16 m16 < <(timed m1600 "$BIN/hfr-embed" -q --aligned -o "$W/m.hft" -r /dev/null "$W/1600.jsonl")
echo "hfr-embed --aligned (faceres): 400 images peak RSS $m4 MB ($s4 s); 1600 images $m16 MB ($s16 s)."
echo
echo "## ORL accuracy per model (gallery: image 1 of each of 40 subjects; probes: images 2..10)"
echo
echo "| model | probes embedded | TAR@FAR=1e-2 | TAR@FAR=1e-3 | EER | Rank-1 |"
echo "|---|---:|---:|---:|---:|---:|"
for m in faceres dlib faceres-deep mobilefacenet; do
  "$BIN/hfr-embed" -q -m $m --include '*/1.pgm' -o "$W/g.hft" -r "$W/g.jsonl" "$ORL" 2>/dev/null || [ $? -eq 3 ]
  "$BIN/hfr-embed" -q -m $m --exclude '*/1.pgm' -o "$W/q.hft" -r "$W/q.jsonl" "$ORL" 2>/dev/null || [ $? -eq 3 ]
  "$BIN/hfr-match" -q --matrix "$W/g.jsonl" "$W/q.jsonl" -o "$W/s.hft"
  "$BIN/hfr-eval" --json "$W/s.hft" > "$W/r.json"
  /usr/bin/python3 - "$W/r.json" "$m" "$(grep -vc '"error"' "$W/q.jsonl")" <<'PY'
import sys, json
r = json.load(open(sys.argv[1]))
f = r["folds"][0]
v = f["verification"]
tar = {row["target"]: row["tar"] for row in v["tar_at_far"]}
eer = v["eer"]["eer"]
r1 = f["identification"]["rank"]["1"]
pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {pct(tar.get(0.01))} | {pct(tar.get(0.001))} | {pct(eer)} | {pct(r1)} |")
PY
done
YALE=${HFR_YALE_DIR:-$SRC/../shared/data/yale-faces}
if [ -d "$YALE" ]; then
  echo
  echo "## Yale faces per model (15 subjects, 164 GIFs without extension, given as records; gallery: the 'normal' image, probes: the others)"
  echo
  echo "| model | probes embedded | TAR@FAR=1e-2 | TAR@FAR=1e-3 | EER | Rank-1 |"
  echo "|---|---:|---:|---:|---:|---:|"
  ls "$YALE" | grep '^subject' | /usr/bin/python3 -c "
import sys, json
for l in sys.stdin:
    l = l.strip(); s, c = l.split('.', 1)
    print(json.dumps({'path': '$YALE/' + l, 'id': l, 'subject': s, 'condition': c}))" > "$W/yale.jsonl"
  grep '"condition": "normal"' "$W/yale.jsonl" > "$W/yg.jsonl"; grep -v '"condition": "normal"' "$W/yale.jsonl" > "$W/yq.jsonl"
  for m in faceres dlib; do
    "$BIN/hfr-embed" -q -m $m -o "$W/g.hft" -r "$W/g.jsonl" - < "$W/yg.jsonl" 2>/dev/null || [ $? -eq 3 ]
    "$BIN/hfr-embed" -q -m $m -o "$W/q.hft" -r "$W/q.jsonl" - < "$W/yq.jsonl" 2>/dev/null || [ $? -eq 3 ]
    "$BIN/hfr-match" -q --matrix "$W/g.jsonl" "$W/q.jsonl" -o "$W/s.hft"
    "$BIN/hfr-eval" --json "$W/s.hft" > "$W/r.json"
    /usr/bin/python3 - "$W/r.json" "$m" "$(grep -vc '"error"' "$W/q.jsonl")" <<'PY'
import sys, json
r = json.load(open(sys.argv[1])); f = r["folds"][0]; v = f["verification"]
tar = {row["target"]: row["tar"] for row in v["tar_at_far"]}
pct = lambda x: "n/a" if x is None else f"{100 * x:.2f}%"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {pct(tar.get(0.01))} | {pct(tar.get(0.001))} | {pct(v['eer']['eer'])} | {pct(f['identification']['rank']['1'])} |")
PY
  done
fi
echo
echo "mobilefacenet is shown for completeness: as shipped its vectors differ little between people (docs/models.md §5)."
} > "$W/results.md"
mv "$W/results.md" "$OUT"
cat "$OUT"
