#!/usr/bin/env bash
# The main job: photos -> reconstruct -> synth -> render -> train -> embed ->
# match -> eval. Runs every stage whose tool is built, and says which are not.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BIN=${HFR_BIN:-$top/build/bin}
out=${DEMO_OUT:-$top/build/demo}
mkdir -p "$out"

say() { printf '%s\n' "$*" >&2; }
say "hfr demo: the synthesis-to-recognition flow"
say "  photos -> hfr-reconstruct -> hfr-synth -> hfr-render -> hfr-train -> hfr-embed -> hfr-match -> hfr-eval"
built=0
for t in hfr-reconstruct hfr-synth hfr-render hfr-train hfr-embed hfr-match hfr-eval; do
  if "$BIN/$t" >/dev/null 2>"$out/$t.status"; then
    built=$((built + 1))
  elif grep -q "not built yet" "$out/$t.status"; then
    say "  stage $t: not built yet — skipped ($(sed 's/.*not built yet: //' "$out/$t.status"))"
  else
    say "  stage $t: ready"
    built=$((built + 1))
  fi
done
say "$built of 7 stages are built; the full flow runs once all are (see README.md, 'Status')."

# What runs today: the tensor-file layer every stage exchanges data through,
# over a real pipe, on the tensor files bundled with the tests.
say ""
say "Tensor files through a pipe (hfr-tensor):"
src=$top/tests/fuzz/corpus/tensorfile/mixed.hft
"$BIN/hfr-tensor" verify "$src" >&2 || exit 1
cat "$src" | "$BIN/hfr-tensor" cat --dtype f16 | "$BIN/hfr-tensor" cat --level 9 -o "$out/mixed-f16.hft" || exit 1
"$BIN/hfr-tensor" info "$out/mixed-f16.hft" >&2 || exit 1
"$BIN/hfr-tensor" export --tensor a "$out/mixed-f16.hft" -o "$out/a.npy" || exit 1
say "wrote $out/mixed-f16.hft and $out/a.npy (numpy.load reads it)"

# The synthesis-to-recognition flow: examples/Makefile, one rule per stage
# (reconstruct -> synth -> render -> train -> embed -> match -> eval) on the
# sample photos; a re-run continues from the last complete stage.
models=${HFR_MODEL_DIR:-$top/models}
shared=${HFR_SHARED_DATA:-$top/../shared/data}
say ""
ict=${HFR_ICT_FACEKIT:-}
[ -z "$ict" ] && [ -d "$shared/ict-facekit" ] && ict=$shared/ict-facekit
if [ -n "$ict" ]; then
  say "The flow (examples/Makefile) on face-api's sample photos, with the ICT FaceKit full head:"
else
  say "The flow (examples/Makefile) on face-api's sample photos; no ICT FaceKit found, so the face mesh alone (README, '3D face model'):"
fi
say "  reconstruct every face -> 20 more sampled identities -> 3 paired VIS/NIR 850 nm variations each -> render"
say "  -> fine-tune the dlib ResNet on the reconstructed identities -> NIR probes vs VIS gallery of the sampled ones"
t0=$(date +%s)
make --no-print-directory -f "$top/examples/Makefile" OUT="$out/flow" PHOTOS="$models/face-api" BIN="$BIN/" ICT="$ict" >&2 || exit 1
say ""
say "flow done in $(( $(date +%s) - t0 )) s: contact sheet $out/flow/pairs.png, fine-tuned model $out/flow/finetuned.hft,"
say "  comparison $out/flow/report.txt and plots $out/flow/compare-{roc,det,cmc}.svg"

# Embedding, matching and evaluation on real faces with the pretrained models.
say ""
say "Faces in the sample photos (hfr-embed, all faces per photo):"
"$BIN/hfr-embed" --faces all -o "$out/samples.hft" -r "$out/samples.jsonl" "$models/face-api" || [ $? -eq 3 ] || exit 1
say "  $(wc -l < "$out/samples.jsonl") faces -> $out/samples.jsonl, $out/samples.hft"
orl=${HFR_SHARED_DATA:-$top/../shared/data}/orl-faces
if [ -d "$orl" ]; then
  say ""
  say "ORL faces (40 subjects): gallery = image 1 of each subject, probes = images 2..10 (faceres):"
  "$BIN/hfr-embed" -q --include '*/1.pgm' -o "$out/orl-gallery.hft" -r "$out/orl-gallery.jsonl" "$orl" || [ $? -eq 3 ] || exit 1
  "$BIN/hfr-embed" -q --exclude '*/1.pgm' -o "$out/orl-probes.hft" -r "$out/orl-probes.jsonl" "$orl" || [ $? -eq 3 ] || exit 1
  "$BIN/hfr-match" -q --matrix "$out/orl-gallery.jsonl" "$out/orl-probes.jsonl" -o "$out/orl-scores.hft" || exit 1
  "$BIN/hfr-eval" --plot "$out/orl" "$out/orl-scores.hft" >&2 || exit 1
  say "plots: $out/orl-roc.svg $out/orl-det.svg $out/orl-cmc.svg"
else
  say "(../shared/data/orl-faces not present: ORL evaluation skipped)"
fi
