#!/usr/bin/env bash
# hfr-train throughput against Python PyTorch on this machine, one run:
# training images/s at batch 128 (16 identities x 4 images x 2 modalities)
# for the dlib ResNet (fine-tuning), MobileFaceNet, IResNet-18, LightCNN-9 and
# LightCNN-29 (from scratch), 2 threads, CosFace + ID-MMD, SGD, gradient clipping.
#  - hfr-train: the real tool on the demo's rendered VIS/NIR crops (images
#    decoded and aligned by its loader while the previous step runs; the
#    metrics give the loader wait per step);
#  - Python: scripts/bench/train_reference.py, the same network, losses and
#    optimizer in torch.nn (Debian python3-torch, the same LibTorch), on one
#    fixed input tensor (no data loading at all: in Python's favour);
#    channels-last as hfr-train's executor runs convolutions, and also
#    PyTorch's default layout.
# Both sides use the same malloc settings: hfr-train sets them itself
# (tune_allocator: no mmap for large blocks, 1 GB trim threshold, 64 MB top
# pad), Python gets them through glibc's MALLOC_*_ variables (PY_MALLOC=default
# leaves Python on glibc's defaults).
# Each side: median over the timed steps after one warm-up step.
# The host's speed drifts by up to a third within minutes here, so the three
# runs of a model (hfr-train, Python channels-last, Python default) are
# repeated ROUNDS times back to back; each round gives a ratio, and the table
# shows the median of each column and of the rounds' ratios.
# Usage: bench/run_train.sh [BUILD_DIR] [STEPS]   (writes bench/results-train.md;
#        needs the demo's images: make demo, or DEMO_IMAGES=images.jsonl)
#        MODELS="lightcnn9 ..." times only those; BENCH_OUT=FILE writes the table there instead;
#        ROUNDS=N (default 1).
set -euo pipefail
B=${1:-build}
STEPS=${2:-4}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN="$B/bin"
IMAGES=${DEMO_IMAGES:-$SRC/build/demo/flow/images.jsonl}
[ -f "$IMAGES" ] || { echo "run_train: $IMAGES not found (run make demo first)" >&2; exit 1; }
PY=/usr/bin/python3
W=$(mktemp -d /tmp/hfr-bench-train.XXXXXX)
trap 'rm -rf "$W"' EXIT
OUT=${BENCH_OUT:-$SRC/bench/results-train.md}
MODELS=${MODELS:-dlib mobilefacenet iresnet18 lightcnn9 lightcnn29}
THREADS=2
ROUNDS=${ROUNDS:-1}
subjects=$(grep -o '"subject":"[^"]*"' "$IMAGES" | sort -u | wc -l)

cpp() { # model -> "images/s loader_wait_ms peakMB"
  local m=$1
  /usr/bin/time -f "%M" -o "$W/time.$m" "$BIN/hfr-train" -q -t $THREADS -m "$m" --ids 16 --per-modality 4 \
    --steps $((STEPS + 1)) --log-every 1 --metrics "$W/$m.jsonl" -o "$W/$m.hft" "$IMAGES" 2>"$W/$m.err" ||
    { cat "$W/$m.err" >&2; exit 1; }
  $PY - "$W/$m.jsonl" "$(tail -1 "$W/time.$m")" <<'EOF'
import json, statistics, sys
m = [json.loads(l) for l in open(sys.argv[1]) if '"images_per_s"' in l][1:]   # step 0: warm-up
print("%.2f %.1f %d" % (statistics.median(r["images_per_s"] for r in m),
                        statistics.median(r["loader_wait_ms"] for r in m), int(sys.argv[2]) // 1024))
EOF
}
PY_ENV=(env MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864)
[ "${PY_MALLOC:-tuned}" = default ] && PY_ENV=(env)
py() { # model [--channels-last] -> images/s
  "${PY_ENV[@]}" $PY "$SRC/scripts/bench/train_reference.py" --model "$1" --batch 128 --threads $THREADS --steps "$STEPS" --warmup 1 \
    --classes "$subjects" --json "${@:2}" 2>"$W/py.err" | $PY -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["images_per_s"])' ||
    { cat "$W/py.err" >&2; exit 1; }
}

{
  echo "# hfr-train: training throughput against Python PyTorch"
  echo
  echo "Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $(date -u +%Y-%m-%d), $THREADS threads both sides,"
  echo "LibTorch $($PY -c 'import torch; print(torch.__version__)') (Debian; BLAS: $(readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu 2>/dev/null || echo '?'))."
  echo "\`bash bench/run_train.sh $B $STEPS\`: batch 128 = 16 identities x 4 images x 2 modalities, CosFace + ID-MMD,"
  echo "SGD with momentum, gradient clipping; $subjects classes; median of $STEPS steps after a warm-up step;"
  echo "$ROUNDS round(s) of the three runs per model, medians over the rounds (ratio: the median of each round's ratio)."
  echo "hfr-train reads, aligns and batches the demo's rendered crops itself (loader in the background);"
  echo "the Python reference trains on one fixed tensor (no loading)."
  echo "Allocator: hfr-train's tune_allocator(); Python: \`${PY_ENV[*]}\`."
  echo
  echo "| model | hfr-train images/s (--layout auto) | loader wait per step (ms) | hfr-train peak MB | Python images/s (channels-last) | Python images/s (default layout) | hfr-train / best Python |"
  echo "|---|---|---|---|---|---|---|"
  for m in $MODELS; do
    rounds=()
    for ((r = 0; r < ROUNDS; r++)); do
      read -r c wait mb < <(cpp "$m")
      rounds+=("$c $wait $mb $(py "$m" --channels-last) $(py "$m")")
    done
    $PY - "$m" "${rounds[@]}" <<'EOF'
import statistics, sys
rows = [[float(v) for v in r.split()] for r in sys.argv[2:]]
med = lambda i: statistics.median(r[i] for r in rows)
ratios = [r[0] / max(r[3], r[4]) for r in rows]
each = " (rounds: %s)" % ", ".join("%.2f" % x for x in ratios) if len(rows) > 1 else ""
print("| %s | %.2f | %.1f | %d | %.2f | %.2f | %.2fx%s |" % (sys.argv[1], med(0), med(1), max(r[2] for r in rows), med(3), med(4),
                                                           statistics.median(ratios), each))
EOF
  done
} >"$OUT"
cat "$OUT"
