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

# Reconstruction: every face in the sample photos -> 3D head + reflectance maps.
models=${HFR_MODEL_DIR:-$top/models}
shared=${HFR_SHARED_DATA:-$top/../shared/data}
say ""
ict=${HFR_ICT_FACEKIT:-}
[ -z "$ict" ] && [ -d "$shared/ict-facekit" ] && ict=$shared/ict-facekit
if [ -n "$ict" ]; then
  say "3D reconstruction of the sample photos (hfr-reconstruct, ICT FaceKit full head):"
  set -- --ict "$ict"
else
  say "3D reconstruction of the sample photos (hfr-reconstruct; no ICT FaceKit found, so the face mesh alone: README, '3D face model'):"
  set -- -m facemesh
fi
"$BIN/hfr-reconstruct" "$@" --faces all -O "$out/faces" --preview "$out/previews" -r "$out/faces.jsonl" "$models/face-api" || [ $? -eq 3 ] || exit 1
say "  $(grep -c '"reconstruction"' "$out/faces.jsonl") faces -> $out/faces.jsonl, $out/faces/*.hft; previews in $out/previews/"

# Synthesis jobs: identities with VIS and NIR albedo, four sampled identities, paired VIS/NIR jobs.
say ""
say "Identities and paired VIS/NIR render jobs (hfr-synth, 3 variations each, 20 sampled identities):"
if [ -n "$ict" ]; then set -- --ict "$ict"; else set --; fi
"$BIN/hfr-synth" "$@" -O "$out/identities" --poses 3 --new-identities 20 --bands 850 --seed 1 -r "$out/jobs.jsonl" "$out/faces.jsonl" || exit 1
say "  $(ls "$out/identities" | wc -l) identities -> $out/identities/; $(wc -l < "$out/jobs.jsonl") render jobs -> $out/jobs.jsonl"

# Rendering: aligned 112x112 VIS and NIR crops, a contact sheet of the pairs.
say ""
say "Rendering the jobs (hfr-render: Embree, subsurface skin, aligned 112x112 crops):"
"$BIN/hfr-render" "$@" --skip-existing --contact-sheet "$out/pairs.png" -r "$out/images.jsonl" "$out/jobs.jsonl" || exit 1
say "  $(grep -c '"path"' "$out/images.jsonl") images -> $out/renders/, records $out/images.jsonl; contact sheet $out/pairs.png"

# Fine-tuning: identities reconstructed from the photos train, the sampled (novel) identities test.
say ""
say "Fine-tuning the dlib ResNet with CosFace + ID-MMD on the reconstructed identities (hfr-train, 60 steps):"
grep -v '"sampled":true' "$out/images.jsonl" >"$out/train.jsonl"
grep '"sampled":true' "$out/images.jsonl" >"$out/test.jsonl"
"$BIN/hfr-train" -q -m dlib --steps 60 --head-steps 30 --ids 8 --per-modality 2 --seed 1 --metrics "$out/train-metrics.jsonl" \
  -o "$out/dlib-nir.hft" "$out/train.jsonl" || exit 1
say "  -> $out/dlib-nir.hft (metrics per step: $out/train-metrics.jsonl)"

# Pretrained vs fine-tuned on the held-out sampled identities: NIR 850 nm probes vs VIS gallery.
grep '"modality":"VIS"' "$out/test.jsonl" >"$out/test-vis.jsonl"
grep '"modality":"NIR"' "$out/test.jsonl" >"$out/test-nir.jsonl"
for m in dlib "$out/dlib-nir.hft"; do
  name=$(basename "$m" .hft)
  say ""
  say "$name on the held-out identities: NIR probes vs VIS gallery (hfr-embed detects and aligns in the crops; hfr-match, hfr-eval):"
  "$BIN/hfr-embed" -q -m "$m" -o "$out/test-vis-$name.hft" -r "$out/test-vis-$name.jsonl" "$out/test-vis.jsonl" || [ $? -eq 3 ] || exit 1
  "$BIN/hfr-embed" -q -m "$m" -o "$out/test-nir-$name.hft" -r "$out/test-nir-$name.jsonl" "$out/test-nir.jsonl" || [ $? -eq 3 ] || exit 1
  "$BIN/hfr-match" -q --matrix "$out/test-vis-$name.jsonl" "$out/test-nir-$name.jsonl" -o "$out/test-scores-$name.hft" || exit 1
  if [ "$m" = dlib ]; then
    "$BIN/hfr-eval" --name pretrained --report "$out/test-pretrained.json" --plot "$out/test-pretrained" "$out/test-scores-$name.hft" >&2 || exit 1
  else
    "$BIN/hfr-eval" --name fine-tuned --compare "$out/test-pretrained.json" --plot "$out/test-compare" "$out/test-scores-$name.hft" >&2 || exit 1
  fi
done
say "plots: $out/test-compare-roc.svg $out/test-compare-det.svg $out/test-compare-cmc.svg"

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
