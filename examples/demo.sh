#!/usr/bin/env bash
# The main job (`make demo`, `make demo FULL=1`): face-api's sample photos ->
# hfr-reconstruct -> hfr-synth -> hfr-render -> hfr-train -> hfr-embed ->
# hfr-match -> hfr-eval, as examples/Makefile, then a table comparing the
# pretrained recogniser with the fine-tuned one on held-out identities.
#
# Environment: FULL=1 (the larger, slower run), DEMO_OUT (default build/demo),
# HFR_BIN (build/bin), HFR_MODEL_DIR (models), HFR_ICT_FACEKIT / HFR_SHARED_DATA
# (the ICT FaceKit full head; ../shared/data/ict-facekit when present).
# A re-run continues from the last complete stage.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BIN=${HFR_BIN:-$top/build/bin}
out=${DEMO_OUT:-$top/build/demo}
models=${HFR_MODEL_DIR:-$top/models}
shared=${HFR_SHARED_DATA:-$top/../shared/data}
full=${FULL:-0}
say() { printf '%s\n' "$*" >&2; }

for t in hfr-reconstruct hfr-synth hfr-render hfr-train hfr-embed hfr-match hfr-eval; do
  [ -x "$BIN/$t" ] || { say "demo: $BIN/$t not found: build first (make build)"; exit 1; }
done
[ -d "$models/face-api" ] || { say "demo: $models/face-api not found: fetch the models first (bash scripts/fetch-models.sh)"; exit 1; }
ict=${HFR_ICT_FACEKIT:-}
[ -z "$ict" ] && [ -d "$shared/ict-facekit" ] && ict=$shared/ict-facekit

if [ "$full" = 1 ]; then
  flow=$out/full
  # 100 sampled identities (40 held out for the test, 60 join the training),
  # 6 poses each, 400 fine-tuning steps on batches of 16 identities.
  vars=(NEW_IDS=100 TEST_IDS=40 POSES=6 STEPS=400 HEAD_STEPS=100 IDS=16 PER=2)
  what="FULL=1: 100 sampled identities (40 held out), 6 paired VIS/NIR 850 nm variations each, 400 fine-tuning steps"
else
  flow=$out/flow
  vars=()
  what="20 sampled identities (all held out), 3 paired VIS/NIR 850 nm variations each, 60 fine-tuning steps"
fi
mkdir -p "$flow"
say "hfr demo: photos -> reconstruct -> synth -> render -> train -> embed -> match -> eval  (examples/Makefile)"
say "  photos: $models/face-api; 3D model: $([ -n "$ict" ] && echo "ICT FaceKit full head ($ict)" || echo "the face mesh alone (no ICT FaceKit: README, '3D face model')")"
say "  $what"
say "  outputs: $flow"
say ""

# Each tool's wall time and peak memory (GNU time), this run's stages only.
stages=$flow/stages.tsv
timing=()
if [ -x /usr/bin/time ]; then
  : >"$stages.new"
  timing=(STAGES="$stages.new")
else
  say "(no /usr/bin/time: stage times not recorded; apt-get install time)"
fi
t0=$(date +%s)
if ! make --no-print-directory -f "$top/examples/Makefile" OUT="$flow" PHOTOS="$models/face-api" BIN="$BIN/" ICT="$ict" \
    "${vars[@]}" "${timing[@]}" all >&2; then
  say ""
  say "demo: stopped (see the message above). Finished stages are kept in $flow;"
  say "      'make demo${FULL:+ FULL=$FULL}' continues from the last complete stage."
  exit 1
fi
wall=$(( $(date +%s) - t0 ))
# (GNU time also notes "Command exited with non-zero status 3" for stages with failed items)
# Stages this run redid replace their earlier lines; the others keep theirs.
if [ ${#timing[@]} -gt 0 ] && grep -q "$(printf '\t')" "$stages.new"; then
  [ -f "$stages" ] || : >"$stages"
  awk -F'\t' 'NF == 3 { t[$1] = $0; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
    END { for (i = 1; i <= n; i++) print t[order[i]] }' "$stages" "$stages.new" 2>/dev/null >"$stages.tmp" &&
    mv "$stages.tmp" "$stages"
fi
rm -f "$stages.new"

ids() { grep -o '"subject":"[^"]*"' "$1" | sort -u | wc -l; }
say ""
ok() { grep -vc '"error"' "$1"; }
say "flow done in ${wall} s: $(grep -c '"reconstruction"' "$flow/faces.jsonl") faces reconstructed from the photos, $(wc -l <"$flow/images.jsonl") crops rendered;"
say "  fine-tuned on $(wc -l <"$flow/train.jsonl") images of $(ids "$flow/train.jsonl") identities;"
say "  tested on $(ids "$flow/test-nir.jsonl") held-out identities: NIR probes against a VIS gallery, each embedded"
say "  after face detection (found: $(ok "$flow/emb-finetuned-nir.jsonl") of $(wc -l <"$flow/test-nir.jsonl") NIR, $(ok "$flow/emb-finetuned-vis.jsonl") of $(wc -l <"$flow/test-vis.jsonl") VIS)"
say ""
# The comparison table (hfr-eval --compare): pretrained against fine-tuned.
sed -n '/^comparison:/,$p' "$flow/report.txt"
say ""
say "full report:   $flow/report.txt"
say "plots:         $flow/compare-roc.svg  $flow/compare-det.svg  $flow/compare-cmc.svg  (and .png)"
say "contact sheet: $flow/pairs.png  (rendered VIS / NIR pairs)"
say "model:         $flow/finetuned.hft  (hfr-embed -m $flow/finetuned.hft ...)"
if [ -s "$stages" ]; then
  say "stage times:   $stages  (stage, seconds, peak KiB)"
fi
