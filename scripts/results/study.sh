#!/usr/bin/env bash
# The hfr-train ablation of docs/results.md: on synthetic NIR-VIS pairs from
# hfr-render with held-out identities, (a) the pretrained dlib ResNet as is,
# (b) fine-tuned with CosFace only, (c) + ID-MMD, (d) + the paired contrastive
# loss; cross-modal Rank-1, TAR@FAR 1e-3 / 1e-2 and EER of NIR probes against
# the VIS gallery, mean ± std over the training seeds.
#
# Usage: scripts/results/study.sh [BUILD_DIR] [OUT_DIR]
#   env: SEEDS="1 2 3" STEPS=200 HEAD_STEPS=50 IDS=8 PER=2 NEW_IDS=100 TEST_IDS=40 POSES=6 THREADS=2
# The data (examples/Makefile: reconstruct the face-api sample photos, sample
# NEW_IDS identities, render POSES poses in VIS and NIR 850; sampled identities
# synth-1-0 .. synth-1-(TEST_IDS-1) are the test set, the rest trains) is made
# once, with data seed 1; only the training seed varies. Needs the ICT FaceKit
# ($HFR_ICT_FACEKIT or ../shared/data/ict-facekit) and the fetched models.
# Writes OUT_DIR/summary.md (the table) and OUT_DIR/runs.tsv (every run).
. "$(dirname "$0")/common.sh"
private_binaries "$OUT/bin" fresh
D=$OUT/data
make_data "$D" "$D/train.jsonl" "$D/emb-pretrained-vis.jsonl" "$D/emb-pretrained-nir.jsonl" "$D/pretrained.json"

declare -A FLAGS=(
  [b]="--idmmd 0"
  [c]="--idmmd 1"
  [d]="--idmmd 1 --contrastive 1"
)
declare -A NAME=(
  [a]="(a) pretrained dlib ResNet, as is"
  [b]="(b) fine-tuned: CosFace"
  [c]="(c) CosFace + ID-MMD (β 1)"
  [d]="(d) CosFace + ID-MMD + paired contrastive (1)"
)
printf 'config\tseed\tseconds\trank1\ttar_1e-3\ttar_1e-2\teer\n' >"$OUT/runs.tsv"
row() { # config seed report seconds
  report_row "$3" "$1" "$2" "$4" >>"$OUT/runs.tsv"
}
row a - "$D/pretrained.json" 0
for seed in $SEEDS; do
  for c in b c d; do
    R=$OUT/run-$c-$seed
    mkdir -p "$R"
    t0=$(date +%s)
    if [ ! -f "$R/report.json" ]; then
      # shellcheck disable=SC2086
      "${BIN}hfr-train" -q -t "$THREADS" -m dlib --steps "$STEPS" --head-steps "$HEAD_STEPS" --ids "$IDS" --per-modality "$PER" \
        --seed "$seed" ${FLAGS[$c]} --metrics "$R/metrics.jsonl" -o "$R/model.hft" "$D/train.jsonl"
      for m in vis nir; do
        "${BIN}hfr-embed" -q -t "$THREADS" -m "$R/model.hft" -o "$R/emb-$m.hft" -r "$R/emb-$m.jsonl" "$D/test-$m.jsonl" || [ $? -eq 3 ]
      done
      "${BIN}hfr-match" -q --matrix "$R/emb-vis.jsonl" "$R/emb-nir.jsonl" -o "$R/scores.hft"
      "${BIN}hfr-eval" --name "$c-$seed" --report "$R/report.json" "$R/scores.hft" >/dev/null
    fi
    row "$c" "$seed" "$R/report.json" "$(($(date +%s) - t0))"
    echo "study: $c seed $seed done" >&2
  done
done

probes=$(grep -c '"embeddings"' "$D/emb-pretrained-nir.jsonl" || true)
gallery=$(grep -c '"embeddings"' "$D/emb-pretrained-vis.jsonl" || true)
$PY - "$OUT/runs.tsv" "$probes" "$gallery" "$STEPS" "$HEAD_STEPS" "$IDS" "$PER" "$NEW_IDS" "$TEST_IDS" "$POSES" \
  "${NAME[a]}" "${NAME[b]}" "${NAME[c]}" "${NAME[d]}" >"$OUT/summary.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
probes, gallery, steps, head, ids, per, new_ids, test_ids, poses = sys.argv[2:11]
names = dict(zip("abcd", sys.argv[11:15]))
def cell(vals, pct=True):
    f = 100 if pct else 1
    if len(vals) == 1: return "%.1f" % (f * vals[0])
    return "%.1f ± %.1f" % (f * statistics.mean(vals), f * statistics.stdev(vals))
print("| configuration | Rank-1 % | TAR@FAR=1e-3 % | TAR@FAR=1e-2 % | EER % | seeds |")
print("|---|---|---|---|---|---|")
for c in "abcd":
    rs = [r for r in rows if r["config"] == c]
    if not rs: continue
    print("| %s | %s | %s | %s | %s | %s |" % (names[c], cell([float(r["rank1"]) for r in rs]),
          cell([float(r["tar_1e-3"]) for r in rs]), cell([float(r["tar_1e-2"]) for r in rs]),
          cell([float(r["eer"]) for r in rs]), ", ".join(r["seed"] for r in rs)))
print()
print("%s NIR probes against %s VIS gallery images of %s held-out sampled identities (%s poses each; faces "
      "detected by hfr-embed). Training: the other %s sampled identities and the reconstructed ones; %s steps "
      "(%s classifier-only), %s ids x %s images per modality per batch." % (probes, gallery, test_ids, poses,
      int(new_ids) - int(test_ids), steps, head, ids, per))
PY
cat "$OUT/summary.md"
