#!/usr/bin/env bash
# The very-low-resolution study of docs/results.md: NIR probes rendered with
# an eye distance of 6-8 pixels (images 24-32 px wide, methods.md §5's
# 16-32 px faces) against the VIS gallery at full resolution, on the held-out
# identities of study.sh's data (the same identities, poses and expressions:
# hfr-synth with the same seed and faces, only --face-px differs). Every test
# image is rendered straight into the dlib chip (--template dlib-150 --size
# 150) and embedded with --aligned, so no face is lost to the detector.
#   (a) the pretrained dlib ResNet
#   (l) fine-tuned with CosFace + ID-MMD and low-resolution augmentation
#       (--low-res 0.5 --low-res-min 8)
#   (r) (l) + the recognisability index (--ri 1 --ri-diversion 0.1) and
#       perceptibility attention (--attention)
#   (q) the pretrained dlib ResNet with the UI-distance quality added: --ri 1
#       with every step classifier-only (--head-steps = --steps), so the
#       embedding stays the pretrained one (CONFIGS="q")
#   (u) (l)'s model of the same seed with the UI-distance quality added the
#       same way (CONFIGS="u", after l)
#   (t) (l) + perceptibility attention alone (--attention; CONFIGS="t")
#   (d) (l) + the index diversion alone (--ri 1 --ri-diversion 0.1; CONFIGS="d")
# Rank-1, TAR@FAR and EER of the VLR and of the full-resolution NIR probes,
# and of both sets together ("mix"); for (r), the error-versus-reject curve
# of its quality score (hfr-eval --quality: the angle to the unrecognisable-
# identity centre, and as config "r-ri" the index head's prediction), which on
# "mix" shows whether the score ranks the VLR probes below the others.
#
# Usage: scripts/results/study_vlr.sh [BUILD_DIR] [OUT_DIR]
#   env: SEEDS="1 2 3" CONFIGS="l r" STEPS=200 HEAD_STEPS=50 IDS=8 PER=2 NEW_IDS=100 TEST_IDS=40 POSES=6 THREADS=2
# Runs that have a model are not retrained. Writes OUT_DIR/summary-vlr.md and OUT_DIR/runs-vlr.tsv.
. "$(dirname "$0")/common.sh"
CONFIGS=${CONFIGS:-l r}
private_binaries "$OUT/bin-vlr"
D=$OUT/data
make_data "$D" "$D/train.jsonl" "$D/jobs.jsonl"
V=$OUT/data-vlr
if [ ! -f "$V/jobs.jsonl" ]; then
  "${BIN}hfr-synth" --ict "$ICT" -q -O "$V/identities" --poses "$POSES" --new-identities "$NEW_IDS" --bands 850 --seed 1 \
    --face-px 6:8 -r "$V/jobs.jsonl" "$D/faces.jsonl"
fi
# the test identities' jobs: VIS gallery and NIR probes at full resolution, NIR probes at very low resolution
$PY - "$D/jobs.jsonl" "$V/jobs.jsonl" "$TEST_IDS" <<'PY'
import json, os, re, sys
full, vlr, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def test(r):
    m = re.fullmatch(r"synth-\d+-(\d+)", str(r.get("subject", "")))
    return m is not None and int(m.group(1)) < n
def write(src, name, spectrum):
    out = os.path.join(os.path.dirname(src), name)
    with open(out + ".tmp", "w") as f:
        for line in open(src):
            r = json.loads(line)
            if test(r) and r.get("spectrum") == spectrum:
                r["output"] = "renders-dlib150/" + r["output"].split("/", 1)[-1]
                f.write(json.dumps(r) + "\n")
    os.replace(out + ".tmp", out)
write(full, "jobs-test-vis.jsonl", "vis")
write(full, "jobs-test-nir.jsonl", "nir850")
write(vlr, "jobs-test-nir.jsonl", "nir850")
PY
for j in "$D/jobs-test-vis.jsonl" "$D/jobs-test-nir.jsonl" "$V/jobs-test-nir.jsonl"; do
  r=${j%.jsonl}; r=${r/jobs-test/test-dlib}.jsonl
  [ -f "$r" ] || "${BIN}hfr-render" -q -t "$THREADS" --ict "$ICT" --template dlib-150 --size 150 -r "$r" "$j"
done

LOWRES="--idmmd 1 --low-res 0.5 --low-res-min 8"  # (l); (r), (t) and (d) add to it
declare -A FLAGS=(
  [l]="$LOWRES"
  [r]="$LOWRES --ri 1 --ri-diversion 0.1 --attention"
  [q]="--idmmd 0 --ri 1"
  [u]="--idmmd 0 --ri 1"
  [t]="$LOWRES --attention"
  [d]="$LOWRES --ri 1 --ri-diversion 0.1"
)
printf 'config\tseed\tprobes\trank1\ttar_1e-3\ttar_1e-2\teer\tevr_fnmr\tevr_auc\tevr_pauc\toracle_auc\toracle_pauc\n' >"$OUT/runs-vlr.tsv"
evr_columns() { # REPORT: FNMR, AUC [0, 0.95], pAUC [0, 0.3] and the oracle's areas of --quality, or "-"
  $PY - "$1" <<'PY'
import json, sys
e = json.load(open(sys.argv[1])).get("curves", {}).get("error_vs_reject")
if e:
    area = {round(a["limit"], 2): a for a in e["auc"]}
    print("\t".join("%.6f" % v for v in (e["fnmr"], area[0.95]["area"], area[0.3]["area"], area[0.95]["oracle"], area[0.3]["oracle"])))
else:
    print("\t".join(["-"] * 5))
PY
}
evaluate() { # config seed model dir
  local c=$1 seed=$2 model=$3 R=$4 p q
  for p in vis:"$D/test-dlib-vis.jsonl" hr:"$D/test-dlib-nir.jsonl" vlr:"$V/test-dlib-nir.jsonl"; do
    [ -f "$R/emb-${p%%:*}.jsonl" ] ||
      "${BIN}hfr-embed" -q -t "$THREADS" --aligned -m "$model" -o "$R/emb-${p%%:*}.hft" -r "$R/emb-${p%%:*}.jsonl" "${p#*:}"
  done
  # both probe sets together (the VLR ids marked): can the quality score tell them apart?
  [ -f "$R/emb-mix.jsonl" ] || $PY - "$R" <<'PY'
import json, os, sys
r = sys.argv[1]
with open(os.path.join(r, "emb-mix.jsonl.tmp"), "w") as out:
    for name, suffix in (("emb-hr.jsonl", ""), ("emb-vlr.jsonl", "/vlr")):
        for line in open(os.path.join(r, name)):
            rec = json.loads(line)
            rec["id"] = rec["id"] + suffix
            out.write(json.dumps(rec) + "\n")
os.replace(os.path.join(r, "emb-mix.jsonl.tmp"), os.path.join(r, "emb-mix.jsonl"))
PY
  for p in hr vlr mix; do
    q=()
    grep -q '"quality"' "$R/emb-$p.jsonl" && q=(--quality "$R/emb-$p.jsonl,$R/emb-vis.jsonl")
    if [ ! -f "$R/report-$p.json" ]; then
      "${BIN}hfr-match" -q --matrix "$R/emb-vis.jsonl" "$R/emb-$p.jsonl" -o "$R/scores-$p.hft"
      "${BIN}hfr-eval" --name "$c-$seed-$p" ${q[@]+"${q[@]}"} --report "$R/report-$p.json" "$R/scores-$p.hft" >/dev/null
    fi
    printf '%s\t%s\n' "$(report_row "$R/report-$p.json" "$c" "$seed" "$p")" "$(evr_columns "$R/report-$p.json")" \
      >>"$OUT/runs-vlr.tsv"
    # the index head's prediction ("ri") as the quality, for comparison: config "<c>-ri"
    if grep -q '"ri"' "$R/emb-$p.jsonl"; then
      [ -f "$R/report-$p-ri.json" ] || "${BIN}hfr-eval" --name "$c-ri-$seed-$p" --quality "$R/emb-$p.jsonl,$R/emb-vis.jsonl" \
        --quality-field ri --report "$R/report-$p-ri.json" "$R/scores-$p.hft" >/dev/null
      printf '%s\t%s\n' "$(report_row "$R/report-$p-ri.json" "$c-ri" "$seed" "$p")" "$(evr_columns "$R/report-$p-ri.json")" \
        >>"$OUT/runs-vlr.tsv"
    fi
  done
}
mkdir -p "$OUT/vlr-a"
evaluate a - dlib "$OUT/vlr-a"
for seed in $SEEDS; do
  for c in l r q u t d; do
    R=$OUT/vlr-$c-$seed
    if [[ " $CONFIGS " == *" $c "* ]]; then
      mkdir -p "$R"
      if [ ! -f "$R/model.hft" ]; then
        hs=$HEAD_STEPS base=dlib
        [ "$c" = q ] && hs=$STEPS
        [ "$c" = u ] && hs=$STEPS base=$OUT/vlr-l-$seed/model.hft
        # shellcheck disable=SC2086
        "${BIN}hfr-train" -q -t "$THREADS" -m "$base" --steps "$STEPS" --head-steps "$hs" --ids "$IDS" --per-modality "$PER" \
          --seed "$seed" ${FLAGS[$c]} --metrics "$R/metrics.jsonl" -o "$R/model.hft" "$D/train.jsonl"
      fi
    elif [ ! -f "$R/model.hft" ]; then
      continue
    fi
    evaluate "$c" "$seed" "$R/model.hft" "$R"
    echo "study_vlr: $c seed $seed done" >&2
  done
done
# mean +- std over the seeds of each configuration and probe set
$PY - "$OUT/runs-vlr.tsv" >"$OUT/summary-vlr.md" <<'PY'
import collections, csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
groups = collections.OrderedDict()
for r in rows:
    groups.setdefault((r["config"], r["probes"]), []).append(r)
def cell(rs, key, factor=100.0, fmt="%.1f"):  # mean ± std over the seeds (percent by default)
    v = [float(r[key]) * factor for r in rs if r[key] != "-"]
    if not v:
        return "-"
    return fmt % v[0] if len(v) == 1 else (fmt + " ± " + fmt) % (statistics.mean(v), statistics.stdev(v))
area = lambda rs, key, factor=1.0: cell(rs, key, factor, "%.3f")
print("| config | probes | Rank-1 % | TAR@FAR=1e-3 % | TAR@FAR=1e-2 % | EER % | EvR AUC [0, 0.95] | random | oracle | seeds |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (c, p), rs in groups.items():
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        c, p, cell(rs, "rank1"), cell(rs, "tar_1e-3"), cell(rs, "tar_1e-2"), cell(rs, "eer"),
        area(rs, "evr_auc"), area(rs, "evr_fnmr", 0.95), area(rs, "oracle_auc"), ", ".join(r["seed"] for r in rs)))
print()
print("EvR AUC: the area under the error-versus-reject curve of the model's quality score (FNMR at FAR 1e-3 as the")
print("lowest-quality probes are rejected, up to 95 %); random: rejecting at random (FNMR x 0.95); oracle: the best order.")
print("Configs ending in -ri use the index head's prediction instead of the UI distance.")
PY
cat "$OUT/summary-vlr.md"
