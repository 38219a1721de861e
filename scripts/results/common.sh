# The set-up the results studies share (sourced by study*.sh with their arguments):
# SRC, B (BUILD_DIR, $1), OUT (OUT_DIR, $2, default B/results), ICT, PY and the
# common parameters from the environment; private_binaries, make_data, report_row.
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=$(cd "${1:-build}" && pwd)
OUT=${2:-$B/results}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SEEDS=${SEEDS:-1 2 3}
STEPS=${STEPS:-200} HEAD_STEPS=${HEAD_STEPS:-50} IDS=${IDS:-8} PER=${PER:-2}
NEW_IDS=${NEW_IDS:-100} TEST_IDS=${TEST_IDS:-40} POSES=${POSES:-6} THREADS=${THREADS:-2}
ICT=${HFR_ICT_FACEKIT:-$SRC/../shared/data/ict-facekit}
[ -f "$ICT/neutral.obj" ] || { echo "$(basename "$0"): the ICT FaceKit is needed ($ICT)" >&2; exit 1; }
PY=/usr/bin/python3

# private_binaries DIR [fresh]: a copy of the built tools (rebuilding the tree
# during a study changes nothing), kept across runs unless "fresh"; sets BIN.
private_binaries() {
  if [ "${2:-}" = fresh ] || [ ! -d "$1" ]; then rm -rf "$1" && cp -r "$B/bin" "$1"; fi
  BIN=$1/
}

# make_data DIR [VAR=VALUE]... TARGET...: examples/Makefile's stages with the
# studies' photos, identities and poses, data seed 1.
make_data() {
  local d=$1
  shift
  make -s -f "$SRC/examples/Makefile" OUT="$d" PHOTOS="$SRC/models/face-api" BIN="$BIN" ICT="$ICT" POSES="$POSES" \
    NEW_IDS="$NEW_IDS" TEST_IDS="$TEST_IDS" SEED=1 THREADS="$THREADS" "$@"
}

# report_row REPORT COLUMN...: one tab-separated line, the columns given, then
# Rank-1, TAR@FAR 1e-3, TAR@FAR 1e-2 and EER of an hfr-eval report.
report_row() {
  $PY - "$@" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print("\t".join(sys.argv[2:] + ["%.6f" % s["rank"]["1"]["mean"], "%.6f" % s["tar_at_far"]["0.001"]["mean"],
                                 "%.6f" % s["tar_at_far"]["0.01"]["mean"], "%.6f" % s["eer"]["mean"]]))
PY
}
