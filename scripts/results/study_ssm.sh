#!/usr/bin/env bash
# Study (e) of docs/results.md: switch style modulation on a mixture of
# modalities. Data as in study.sh (data seed 1, the same held-out identities),
# rendered in VIS and in two NIR bands, 850 and 940 nm; the training records
# name the bands as two modalities (NIR850, NIR940), the test probes do not
# say which band they are. Configurations, each trained on VIS + both bands:
#   (a) the pretrained dlib ResNet, as is
#   (m) fine-tuned: CosFace + ID-MMD, the whole network (study (c) on the mixture)
#   (s) switch style modulation: --ssm 3 (two blocks, 3 experts, top-1 router),
#       the network frozen, CosFace + ID-MMD + load balance (alpha 0.01) + teacher
#   (k) as (s) with a load-balancing weight alpha of 1 (CONFIGS="k" to run it)
#   (n) as (s) with stochastic routing in training, --ssm-noise 1 (CONFIGS="n")
#   (h) as (s) with the supervised routing hint, --ssm-route-hint 10: VIS,
#       NIR850 and NIR940 to experts 0, 1 and 2 in training (CONFIGS="h")
#   (v) as (h) with 2 experts: VIS to expert 0, both NIR bands to expert 1
#       (CONFIGS="v")
# Cross-modal Rank-1, TAR@FAR and EER of each band's probes against the VIS
# gallery, mean ± std over the training seeds, and the routing decisions.
#
# Usage: scripts/results/study_ssm.sh [BUILD_DIR] [OUT_DIR]
#   env: SEEDS="1 2 3" CONFIGS="s m" STEPS=200 HEAD_STEPS=50 IDS=8 PER=2 NEW_IDS=100 TEST_IDS=40 POSES=6 THREADS=2
#        SSM_LR=0.01 (the blocks' learning rate; they start at zero)
# Runs that have a report are not redone. Writes OUT_DIR/summary-ssm.md and OUT_DIR/runs-ssm.tsv.
. "$(dirname "$0")/common.sh"
CONFIGS=${CONFIGS:-s m} SSM_LR=${SSM_LR:-0.01}
private_binaries "$OUT/bin-ssm"
D=$OUT/data-mix
make_data "$D" BANDS=850,940 "$D/train.jsonl" "$D/test-vis.jsonl" "$D/test-nir.jsonl"
# training records: each band its own modality; test probes: one file per band
$PY - "$D" <<'PY'
import json, os, sys
d = sys.argv[1]
with open(os.path.join(d, "train-mix.jsonl.tmp"), "w") as out:
    for line in open(os.path.join(d, "train.jsonl")):
        r = json.loads(line)
        if r.get("modality") == "NIR":
            r["modality"] = r["spectrum"].upper()  # NIR850, NIR940
        out.write(json.dumps(r) + "\n")
os.replace(os.path.join(d, "train-mix.jsonl.tmp"), os.path.join(d, "train-mix.jsonl"))
for band in ("nir850", "nir940"):
    with open(os.path.join(d, "test-%s.jsonl" % band), "w") as out:
        for line in open(os.path.join(d, "test-nir.jsonl")):
            if json.loads(line).get("spectrum") == band:
                out.write(line)
PY

declare -A FLAGS=(
  [m]="--idmmd 1"
  [s]="--idmmd 1 --ssm 3 --lr $SSM_LR"
  [k]="--idmmd 1 --ssm 3 --lr $SSM_LR --ssm-balance 1"
  [n]="--idmmd 1 --ssm 3 --lr $SSM_LR --ssm-noise 1"
  [h]="--idmmd 1 --ssm 3 --lr $SSM_LR --ssm-route-hint 10"
  [v]="--idmmd 1 --ssm 2 --lr $SSM_LR --ssm-route-hint 10"
)
declare -A NAME=(
  [a]="(a) pretrained dlib ResNet, as is"
  [m]="(m) fine-tuned on the mixture: CosFace + ID-MMD"
  [s]="(s) switch style modulation (3 experts, network frozen)"
  [k]="(k) as (s), load-balancing alpha 1"
  [n]="(n) as (s), stochastic routing (--ssm-noise 1)"
  [h]="(h) as (s), supervised routing hint (--ssm-route-hint 10)"
  [v]="(v) as (h) with 2 experts (VIS; both NIR bands)"
)
printf 'config\tseed\tband\tseconds\trank1\ttar_1e-3\ttar_1e-2\teer\n' >"$OUT/runs-ssm.tsv"
evaluate() { # config seed model dir seconds
  local c=$1 seed=$2 model=$3 R=$4 s=$5 band
  for m in vis nir850 nir940; do
    [ -f "$R/emb-$m.jsonl" ] ||
      "${BIN}hfr-embed" -q -t "$THREADS" -m "$model" -o "$R/emb-$m.hft" -r "$R/emb-$m.jsonl" "$D/test-$m.jsonl" || [ $? -eq 3 ]
  done
  for band in nir850 nir940; do
    if [ ! -f "$R/report-$band.json" ]; then
      "${BIN}hfr-match" -q --matrix "$R/emb-vis.jsonl" "$R/emb-$band.jsonl" -o "$R/scores-$band.hft"
      "${BIN}hfr-eval" --name "$c-$seed-$band" --report "$R/report-$band.json" "$R/scores-$band.hft" >/dev/null
    fi
    report_row "$R/report-$band.json" "$c" "$seed" "$band" "$s" >>"$OUT/runs-ssm.tsv"
  done
}
mkdir -p "$OUT/ssm-a"
evaluate a - dlib "$OUT/ssm-a" 0
for seed in $SEEDS; do
  for c in s m k n h v; do
    R=$OUT/ssm-$c-$seed
    # train the configurations asked for; evaluate (from cache) every one already trained
    if [[ " $CONFIGS " == *" $c "* ]]; then
      mkdir -p "$R"
      t0=$(date +%s)
      if [ ! -f "$R/model.hft" ]; then
        # shellcheck disable=SC2086
        "${BIN}hfr-train" -q -t "$THREADS" -m dlib --steps "$STEPS" --head-steps "$HEAD_STEPS" --ids "$IDS" --per-modality "$PER" \
          --seed "$seed" --modalities VIS,NIR850,NIR940 ${FLAGS[$c]} --metrics "$R/metrics.jsonl" -o "$R/model.hft" \
          "$D/train-mix.jsonl"
        echo $(($(date +%s) - t0)) >"$R/seconds"
      fi
    elif [ ! -f "$R/model.hft" ]; then
      continue
    fi
    evaluate "$c" "$seed" "$R/model.hft" "$R" "$(cat "$R/seconds" 2>/dev/null || echo 0)"
    echo "study_ssm: $c seed $seed done" >&2
  done
done

names=()
for c in "${!NAME[@]}"; do names+=("$c=${NAME[$c]}"); done
$PY - "$OUT" "$STEPS" "$HEAD_STEPS" "$IDS" "$PER" "$TEST_IDS" "$POSES" "$SSM_LR" "${names[@]}" >"$OUT/summary-ssm.md" <<'PY'
import csv, glob, json, os, statistics, sys
out = sys.argv[1]
steps, head, ids, per, test_ids, poses, ssm_lr = sys.argv[2:9]
names = dict(a.split("=", 1) for a in sys.argv[9:])  # config letter = its name in the table
rows = list(csv.DictReader(open(os.path.join(out, "runs-ssm.tsv")), delimiter="\t"))
def cell(vals):
    if len(vals) == 1: return "%.1f" % (100 * vals[0])
    return "%.1f ± %.1f" % (100 * statistics.mean(vals), 100 * statistics.stdev(vals))
print("| configuration | probes | Rank-1 % | TAR@FAR=1e-3 % | TAR@FAR=1e-2 % | EER % | seeds |")
print("|---|---|---|---|---|---|---|")
for c in "amsknhv":
    for band in ("nir850", "nir940"):
        rs = [r for r in rows if r["config"] == c and r["band"] == band]
        if not rs: continue
        print("| %s | %s | %s | %s | %s | %s | %s |" % (names[c], band.upper(), cell([float(r["rank1"]) for r in rs]),
              cell([float(r["tar_1e-3"]) for r in rs]), cell([float(r["tar_1e-2"]) for r in rs]),
              cell([float(r["eer"]) for r in rs]), ", ".join(r["seed"] for r in rs)))
print()
print("Held-out: the VIS, NIR 850 and NIR 940 images of %s sampled identities (%s poses each). Training: %s steps "
      "(%s classifier-only), %s ids x %s images per modality (VIS, NIR850, NIR940) per batch; (s) trains its blocks at "
      "--lr %s (k: the same with --ssm-balance 1; n: with --ssm-noise 1; h: with --ssm-route-hint 10; v: the same with --ssm 2)." % (test_ids, poses, steps, head, ids, per, ssm_lr))
# routing decisions at the last logged step of each (s) run
for f in sorted(glob.glob(os.path.join(out, "ssm-[sknhv]-*", "metrics.jsonl"))):
    last = [json.loads(l) for l in open(f) if '"routing"' in l][-1]
    print()
    print("Routing, %s, step %d (fraction of each modality's batch images per expert):" % (os.path.basename(os.path.dirname(f)), last["step"]))
    for router, per_mod in sorted(last["routing"].items()):
        print("- %s: %s" % (router, "; ".join("%s %s" % (m, " / ".join("%.2f" % v for v in fr)) for m, fr in sorted(per_mod.items()))))
PY
cat "$OUT/summary-ssm.md"
