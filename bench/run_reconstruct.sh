#!/usr/bin/env bash
# hfr-reconstruct benchmark on this machine, one run:
#  (a) throughput, detection + face mesh + full-head ICT fit + unwrap at the
#      default 512x512 texture: face-api's six group photos (1920x1280, all
#      faces) and ORL (400 photos, 92x112 grey, --min-face 40), on 1 and 2
#      threads, start-up subtracted; peak RSS;
#  (b) landmark reprojection error on those real photos (records' rms_px and
#      rms_rel = rms / eye distance);
#  (c) synthetic ground truth (bench_reconstruct): pose, shape, albedo and
#      landmark errors on rendered ICT heads with known parameters;
#  (d) the face-mesh-only fallback on the same photos.
# Usage: bench/run_reconstruct.sh BUILD_DIR   (writes bench/results-reconstruct.md;
#        needs ../shared/data/ict-facekit and ../shared/data/orl-faces)
set -euo pipefail
B=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN="$B/bin"
ICT=${HFR_ICT_FACEKIT:-$SRC/../shared/data/ict-facekit}
ORL=${HFR_ORL_DIR:-$SRC/../shared/data/orl-faces}
SAMPLES=${HFR_MODEL_DIR:-$SRC/models}/face-api
for d in "$ICT" "$ORL" "$SAMPLES"; do [ -d "$d" ] || { echo "run_reconstruct: $d not found" >&2; exit 1; }; done
W=$(mktemp -d /tmp/hfr-bench-rec.XXXXXX)
trap 'rm -rf "$W"' EXIT
cmake --build "$B" --target bench_reconstruct hfr-reconstruct -- --quiet
OUT="$SRC/bench/results-reconstruct.md"

timed() { # label command... -> "seconds peakMB"
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$W/time" "$@" >"$W/out.$label" 2>"$W/err.$label" || [ $? -eq 3 ] || { cat "$W/err.$label" >&2; exit 1; }
  read -r s kb < <(tail -1 "$W/time"); echo "$s $((kb / 1024))"
}
faces() { grep -c '"reconstruction"' "$1" || true; }
rate() { /usr/bin/python3 -c "import sys; n,s,s0=map(float,sys.argv[1:]); print(f'{n/max(s-s0,1e-9):.2f}')" "$@"; }
errstats() { /usr/bin/python3 - "$1" <<'PY'
import json, sys, statistics as st
r = [json.loads(l) for l in open(sys.argv[1])]
ok = [x for x in r if "reconstruction" in x]
px = [x["rms_px"] for x in ok]; rel = [x["rms_rel"] for x in ok]
print(f"{len(ok)} faces ({len(r) - len(ok)} records with errors): landmark RMS {st.mean(px):.2f} px mean, "
      f"{st.median(px):.2f} median; relative to the eye distance {st.mean(rel):.4f} mean, {st.median(rel):.4f} median, "
      f"max {max(rel):.4f}")
PY
}

# start-up: model loading (ICT FaceKit, networks) for one small photo
read -r s0 _ < <(timed startup "$BIN/hfr-reconstruct" -q --ict "$ICT" -O "$W/one" -r /dev/null --min-face 40 "$ORL/s1/1.pgm")

read -r ss1 ms1 < <(timed samples1 "$BIN/hfr-reconstruct" -q -t 1 --ict "$ICT" --faces all -O "$W/s1" -r "$W/s1.jsonl" "$SAMPLES")
read -r ss2 ms2 < <(timed samples2 "$BIN/hfr-reconstruct" -q -t 2 --ict "$ICT" --faces all -O "$W/s2" -r "$W/s2.jsonl" "$SAMPLES")
read -r so1 mo1 < <(timed orl1 "$BIN/hfr-reconstruct" -q -t 1 --ict "$ICT" --min-face 40 -O "$W/o1" -r "$W/o1.jsonl" "$ORL")
read -r so2 mo2 < <(timed orl2 "$BIN/hfr-reconstruct" -q -t 2 --ict "$ICT" --min-face 40 -O "$W/o2" -r "$W/o2.jsonl" "$ORL")
read -r sf2 mf2 < <(timed fm2 "$BIN/hfr-reconstruct" -q -t 2 -m facemesh --faces all -O "$W/f2" -r "$W/f2.jsonl" "$SAMPLES")
ns=$(faces "$W/s2.jsonl"); no=$(faces "$W/o2.jsonl"); nf=$(faces "$W/f2.jsonl")
"$B/bench/bench_reconstruct" "$ICT" 40 5 > "$W/synthetic.md"

{
echo "# hfr-reconstruct benchmark"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(date -u +%Y-%m-%d)."
echo "Command: \`bash bench/run_reconstruct.sh build\`. Default settings: ICT FaceKit full head, 80 identity"
echo "modes, 47 blendshapes, 512x512 maps. Start-up (ICT FaceKit + networks, one small photo): ${s0} s, subtracted."
echo
echo "## Throughput (detection + face mesh + fit + unwrap + writing)"
echo
echo "| input | threads | faces | wall (s) | faces/s | peak RSS (MB) |"
echo "|---|---|---|---|---|---|"
echo "| face-api samples, 6 photos 1920x1280, all faces | 1 | $(faces "$W/s1.jsonl") | $ss1 | $(rate "$(faces "$W/s1.jsonl")" "$ss1" "$s0") | $ms1 |"
echo "| face-api samples | 2 | $ns | $ss2 | $(rate "$ns" "$ss2" "$s0") | $ms2 |"
echo "| ORL, 400 photos 92x112 grey, --min-face 40 | 1 | $(faces "$W/o1.jsonl") | $so1 | $(rate "$(faces "$W/o1.jsonl")" "$so1" "$s0") | $mo1 |"
echo "| ORL | 2 | $no | $so2 | $(rate "$no" "$so2" "$s0") | $mo2 |"
echo "| face-api samples, face mesh alone (-m facemesh) | 2 | $nf | $sf2 | $(rate "$nf" "$sf2" "$s0") | $mf2 |"
echo
echo "## Landmark reprojection error on real photos"
echo
echo "- face-api samples: $(errstats "$W/s2.jsonl")"
echo "- ORL: $(errstats "$W/o2.jsonl")"
echo "- face-api samples, face mesh alone (rigid canonical face): $(errstats "$W/f2.jsonl")"
echo
echo "## Synthetic ground truth (\`build/bench/bench_reconstruct ICT_DIR 40 5\`)"
echo
cat "$W/synthetic.md"
} > "$OUT"
echo "wrote $OUT" >&2
