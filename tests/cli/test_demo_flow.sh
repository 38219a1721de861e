#!/usr/bin/env bash
# The demo's flow, examples/Makefile, on a small scale (one group photo, face
# mesh identities, 3 sampled ones, 2 poses): it runs end to end to the
# pretrained-vs-fine-tuned comparison; a photo folder without a usable face
# stops at the first stage with a message and leaves nothing behind; a run
# interrupted (SIGINT, as Ctrl-C sends it) in the middle of fine-tuning leaves
# no half-written file, and the re-run continues from the last complete stage
# without redoing finished work; a third run has nothing to do; the stage
# times file (STAGES=) has one line per tool run. Needs the fetched models.
. "$(dirname "$0")/lib.sh"

require_numpy_and_face_models
require_file "$MODELS/face-api/face_recognition_model-weights_manifest.json" "face-api's dlib ResNet"
require_file "$SRC/models/face-api/sample3.jpg" "face-api sample photo"
command -v make >/dev/null || { echo "skipped: make not installed" >&2; exit 77; }
unset HFR_ICT_FACEKIT
MK=(make --no-print-directory -f "$SRC/examples/Makefile" BIN="$BIN/" ICT= THREADS=2 SEED=3
    NEW_IDS=3 POSES=2 IDS=3 PER=1 HEAD_STEPS=2)
temps() { find "$1" -name '.*.tmp*' -o -name '*.tmp' | head -5; }

# ---------------------------------------------------------------------------
# 1. No usable face: a grey image and a text file.
mkdir -p "$T/nofaces"
$PY -c "from PIL import Image; Image.new('RGB', (200, 160), (128, 128, 128)).save('$T/nofaces/grey.png')"
echo "not an image" >"$T/nofaces/notes.txt"
run "${MK[@]}" OUT="$T/nf" PHOTOS="$T/nofaces"
[ "$RC" -ne 0 ] && pass "a folder without faces stops the flow (exit $RC)" || fail "no faces: make succeeded"
expect_err "no usable face in $T/nofaces" "the message names the photo folder"
[ ! -e "$T/nf/faces.jsonl" ] && [ ! -e "$T/nf/jobs.jsonl" ] && [ -z "$(temps "$T/nf")" ] &&
  pass "nothing half-written is left" || fail "left behind: $(ls -A "$T/nf")"

# ---------------------------------------------------------------------------
# 2. Interrupted in the middle of fine-tuning (a long schedule), then re-run.
mkdir -p "$T/photos"
cp "$SRC/models/face-api/sample3.jpg" "$T/photos/"
W=$T/flow
setsid "${MK[@]}" OUT="$W" PHOTOS="$T/photos" STEPS=5000 >"$T/run1.out" 2>"$T/run1.err" &
pid=$!
for _ in $(seq 1 600); do  # up to 120 s for the stages before training
  [ -e "$W/train.jsonl" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.2
done
sleep 3  # hfr-train is loading the model and taking its first steps
kill -INT -- -$pid 2>/dev/null
wait $pid
rc1=$?
if [ ! -e "$W/train.jsonl" ]; then
  fail "set-up: the flow did not reach fine-tuning (exit $rc1): $(tail -c 400 "$T/run1.err")"
  finish
fi
[ "$rc1" -ne 0 ] && pass "SIGINT during fine-tuning stops the flow (exit $rc1)" || fail "interrupted make exit 0"
[ ! -e "$W/finetuned.hft" ] && pass "no fine-tuned model from the interrupted stage" || fail "finetuned.hft left by the interrupted run"
[ -z "$(temps "$W")" ] && pass "no temporary file left" || fail "temporary files left: $(temps "$W")"
for f in faces.jsonl jobs.jsonl images.jsonl train.jsonl pairs.png; do
  [ -s "$W/$f" ] || fail "finished stage output $f missing after the interruption"
done
n_img=$(wc -l <"$W/images.jsonl")
[ "$n_img" -eq $(( (3 + 3) * 2 * 2 )) ] && pass "rendered stage complete: $n_img images of 6 identities" || fail "images.jsonl has $n_img records"
stamp() { stat -c '%n %Y.%y' "$W/faces.jsonl" "$W/jobs.jsonl" "$W/images.jsonl" "$W/train.jsonl" "$W"/renders/*/*.png; }
stamp >"$T/before"
sleep 1.1
run "${MK[@]}" -j2 OUT="$W" PHOTOS="$T/photos" STEPS=4 STAGES="$T/stages.tsv"
expect_rc 0 "the re-run (make -j2) finishes the flow"
stamp >"$T/after"
cmp -s "$T/before" "$T/after" && pass "finished stages and rendered images are not redone" || fail "re-run touched: $(diff "$T/before" "$T/after" | head -4)"
grep -q "hfr-reconstruct\|hfr-synth\|hfr-render" "$T/out" && fail "re-run ran an earlier stage again" || pass "re-run starts at fine-tuning"
cut -f1 "$T/stages.tsv" | grep -v "^Command" | sort >"$T/stage-names"
printf '%s\n' embed-finetuned-nir embed-finetuned-vis embed-pretrained-nir embed-pretrained-vis eval-finetuned eval-pretrained \
  match-finetuned match-pretrained train | sort >"$T/want-names"
cmp -s "$T/stage-names" "$T/want-names" && pass "STAGES: one line per tool run of the re-run" || fail "stages: $(tr '\n' ' ' <"$T/stage-names")"
awk -F'\t' '!/^Command/ && !($2 >= 0 && $3 > 1000) { bad = 1 } END { exit bad }' "$T/stages.tsv" &&
  pass "stage lines hold seconds and peak KiB" || fail "stage lines: $(head -3 "$T/stages.tsv")"

# The comparison: both models on the held-out identities, numbers from the reports.
for f in report.txt pretrained.json compare-roc.svg compare-cmc.png finetuned.hft; do
  [ -s "$W/$f" ] || fail "flow output $f missing"
done
grep -A3 "^comparison:" "$W/report.txt" >"$T/cmp"
grep -q "^  pretrained " "$T/cmp" && grep -q "^  fine-tuned " "$T/cmp" && grep -q "Rank-1.*TAR@FAR.*EER" "$T/cmp" &&
  pass "report.txt ends with the pretrained vs fine-tuned table" || fail "comparison table: $(cat "$T/cmp")"
grep -q "^comparison:" "$T/out" && pass "make prints the table" || fail "table not printed"
$PY - "$W" <<'EOF' && pass "test set = the 3 sampled identities only, training = the rest" || fail "split"
import json, sys
w = sys.argv[1]
subj = lambda f: {json.loads(l)["subject"] for l in open(f"{w}/{f}")}
test = subj("test-nir.jsonl") | subj("test-vis.jsonl")
train = subj("train.jsonl")
assert test == {"synth-3-0", "synth-3-1", "synth-3-2"}, test
assert not (test & train) and len(train) >= 3, (test, train)
assert all(json.loads(l)["modality"] == "NIR" for l in open(f"{w}/test-nir.jsonl"))
EOF

run "${MK[@]}" -q OUT="$W" PHOTOS="$T/photos"
expect_rc 0 "a third run has nothing left to do (make -q)"

finish
