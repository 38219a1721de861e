# Shared helpers for the CLI tests: run real binaries, check exit codes,
# stdout and stderr. Each test is a bash script run by CTest; exit 77 = skip.
set -u
BIN=${HFR_BIN:?HFR_BIN must point at the built binaries}
BIN=$(cd "$BIN" && pwd) # absolute: some tests change directory
export PATH="$BIN:$PATH"
SRC=${HFR_SRC:?}
T=$(mktemp -d /tmp/hfr-cli.XXXXXX)
trap '[ -n "${KEEP_T:-}" ] || rm -rf "$T"' EXIT
FAILS=0
PY=/usr/bin/python3

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }

# run CMD...: runs with stdout in $T/out, stderr in $T/err, status in $RC.
run() { "$@" >"$T/out" 2>"$T/err"; RC=$?; }
# run_in DIR CMD...: run, from DIR (relative input paths: ids that do not
# depend on where the checkout lives, and neither do the draws seeded by them).
run_in() { pushd "$1" >/dev/null; shift; run "$@"; popd >/dev/null; }

expect_rc() { # expected description
  if [ "$RC" -eq "$1" ]; then pass "$2 (exit $RC)"; else fail "$2: exit $RC, expected $1; stderr: $(head -c 400 "$T/err")"; fi
}
expect_err() { # substring description
  if grep -qF -- "$1" "$T/err"; then pass "$2"; else fail "$2: stderr lacks '$1': $(head -c 400 "$T/err")"; fi
}
expect_out() {
  if grep -qF -- "$1" "$T/out"; then pass "$2"; else fail "$2: stdout lacks '$1': $(head -c 400 "$T/out")"; fi
}
expect_empty() { # file description
  if [ ! -s "$1" ]; then pass "$2"; else fail "$2: $(basename "$1") not empty: $(head -c 300 "$1")"; fi
}
finish() {
  if [ "$FAILS" -ne 0 ]; then echo "$FAILS check(s) failed" >&2; exit 1; fi
  exit 0
}
TOOLS="hfr-reconstruct hfr-synth hfr-render hfr-train hfr-embed hfr-match hfr-eval hfr-tensor"

# Skips (exit 77) unless /usr/bin/python3 has numpy.
require_numpy() {
  if ! $PY -c 'import numpy' 2>/dev/null; then
    echo "skipped: /usr/bin/python3 with numpy (Debian python3-numpy) is not installed" >&2
    exit 77
  fi
}

# Skips (exit 77) unless /usr/bin/python3 has numpy and the face models are
# fetched; sets MODELS. Then: require_file FILE WHAT for further inputs.
require_numpy_and_face_models() {
  require_numpy
  MODELS=${HFR_MODEL_DIR:-$SRC/models}
  for f in blazeface.json facemesh.json face_geometry.binarypb; do
    if [ ! -f "$MODELS/$f" ]; then
      echo "skipped: models not fetched ($MODELS/$f missing; run scripts/fetch-models.sh)" >&2
      exit 77
    fi
  done
}
require_file() { # file what
  if [ ! -f "$1" ]; then
    echo "skipped: $2 missing ($1; run scripts/fetch-models.sh)" >&2
    exit 77
  fi
}

# Rendered VIS/NIR 850 training pairs for the hfr-train tests: reconstructs
# face-api's sample3.jpg (ICT FaceKit when $HFR_SHARED_DATA has it, else the
# face mesh alone), samples 5 new identities, renders 2 poses as 150x150 dlib
# chips at 1 spp. Sets SX (hfr-synth/render model options); records in
# $T/w/images.jsonl. Skips without the models; ends the test on failure.
render_training_pairs() {
  require_numpy_and_face_models
  require_file "$MODELS/face-api/face_recognition_model-weights_manifest.json" "face-api's dlib ResNet"
  local photo=$SRC/models/face-api/sample3.jpg data=${HFR_SHARED_DATA:-$SRC/../shared/data} m
  require_file "$photo" "face-api sample photo"
  if [ -f "$data/ict-facekit/neutral.obj" ]; then m=(--ict "$data/ict-facekit") SX=(--ict "$data/ict-facekit"); else m=(-m facemesh) SX=(); fi
  unset HFR_ICT_FACEKIT
  run_in "$(dirname "$photo")" hfr-reconstruct -t 2 --texture-size 128 --faces all "${m[@]}" -O "$T/faces" -r "$T/faces.jsonl" "$(basename "$photo")"
  [ "$RC" -eq 0 ] || { fail "set-up: hfr-reconstruct exit $RC: $(head -c 300 "$T/err")"; finish; }
  mkdir -p "$T/w"
  run hfr-synth ${SX[@]+"${SX[@]}"} -q -O "$T/w/ids" -r "$T/w/jobs.jsonl" --poses 2 --new-identities 5 --bands 850 --seed 4 \
    --face-px 40:90 "$T/faces.jsonl"
  [ "$RC" -eq 0 ] || { fail "set-up: hfr-synth exit $RC: $(head -c 300 "$T/err")"; finish; }
  run hfr-render ${SX[@]+"${SX[@]}"} -q -t 2 --spp 1 --template dlib-150 --size 150 -r "$T/w/images.jsonl" "$T/w/jobs.jsonl"
  [ "$RC" -eq 0 ] || { fail "set-up: hfr-render exit $RC: $(head -c 300 "$T/err")"; finish; }
}

# The checksum an hfr model file's metadata records (training runs compare them).
model_checksum() { hfr-tensor info --json "$1" | $PY -c 'import json,sys; print(json.loads(sys.stdin.readline())["metadata"]["checksum"])'; }
