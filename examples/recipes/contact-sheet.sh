#!/usr/bin/env bash
# Usage: contact-sheet.sh PHOTO_DIR OUT_PNG [POSES]
#
# A few face photos -> paired VIS / NIR 850 nm renders on one contact sheet:
#   hfr-reconstruct   every face in PHOTO_DIR -> 3D shape + reflectance maps
#   hfr-synth         one identity per face (no sampled new identities), its
#                     NIR albedo, POSES paired variations (pose, expression,
#                     camera, lights; default 3), VIS and NIR 850 nm sharing each
#   hfr-render        aligned 112x112 crops; OUT_PNG: a grid of VIS | NIR pairs
#                     (the first SHEET_PAIRS pairs, default 48)
# Every face of every photo is used (--faces all); PHOTO_DIR may also be a
# single photo.
#
# The 3D model: the ICT FaceKit (full head, eyes, expressions) when
# $HFR_ICT_FACEKIT names its folder, else the face mesh alone (the face only).
# Work files (reconstructions, identities, renders, records) go to a temporary
# folder removed on exit; KEEP=DIR keeps them in DIR instead.
#
# Environment: HFR_BIN (folder of the hfr tools; default: PATH),
# HFR_ICT_FACEKIT, KEEP, THREADS (default 0 = all cores), SEED (default 1),
# SHEET_PAIRS (default 48).
# Exit status: 0 done, 1 a tool failed or no usable face, 2 usage error.
set -euo pipefail
BIN=${HFR_BIN:+$HFR_BIN/}
THREADS=${THREADS:-0}
SEED=${SEED:-1}
SHEET_PAIRS=${SHEET_PAIRS:-48}
me=${0##*/}
say() { printf '%s: %s\n' "$me" "$*" >&2; }
usage() { say "$*"; echo "Usage: $me PHOTO_DIR OUT_PNG [POSES]   (see the comment at the top of $0)" >&2; exit 2; }
# run TOOL ARGS...: exit status 3 (some photos or jobs failed) is a warning
run() {
  local rc=0
  "$@" || rc=$?
  [ "$rc" -eq 0 ] && return 0
  [ "$rc" -eq 3 ] && { say "warning: ${1##*/}: some items failed (see above); going on with the rest"; return 0; }
  say "${1##*/} failed (exit $rc)"; exit 1
}

if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage "expected 2 or 3 arguments, got $#"; fi
photos=$1 png=$2 poses=${3:-3}
[ -e "$photos" ] || usage "photo folder '$photos' does not exist"
[[ "$poses" =~ ^[1-9][0-9]*$ ]] || usage "POSES must be a positive integer, got '$poses'"
[[ "$SHEET_PAIRS" =~ ^[1-9][0-9]*$ ]] || usage "SHEET_PAIRS must be a positive integer, got '$SHEET_PAIRS'"
[ -d "$(dirname -- "$png")" ] || usage "the folder of '$png' does not exist"
for t in hfr-reconstruct hfr-synth hfr-render; do
  command -v "${BIN}$t" >/dev/null || { say "${BIN}$t not found (set HFR_BIN to the folder of the built tools, or put them on PATH)"; exit 1; }
done
if [ -n "${HFR_ICT_FACEKIT:-}" ]; then
  [ -d "$HFR_ICT_FACEKIT" ] || usage "HFR_ICT_FACEKIT='$HFR_ICT_FACEKIT' is not a folder"
  recon=(--ict "$HFR_ICT_FACEKIT") ict=(--ict "$HFR_ICT_FACEKIT") model="the ICT FaceKit ($HFR_ICT_FACEKIT)"
else
  recon=(-m facemesh) ict=() model="the face mesh alone (set HFR_ICT_FACEKIT for full heads)"
fi
if [ -n "${KEEP:-}" ]; then
  work=$KEEP
  mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/hfr-contact-sheet.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi

say "reconstructing the faces in $photos with $model"
run "${BIN}hfr-reconstruct" -t "$THREADS" "${recon[@]}" --faces all -O "$work/faces" -r "$work/faces.jsonl" "$photos"
n=$(grep -c '"reconstruction"' "$work/faces.jsonl" || true)
[ "$n" -gt 0 ] || { say "no usable face in $photos (see the warnings above)"; exit 1; }
say "synthesising $n identities x $poses paired VIS / NIR 850 nm variations"
run "${BIN}hfr-synth" ${ict[@]+"${ict[@]}"} -O "$work/identities" --poses "$poses" --new-identities 0 --bands 850 \
  --pairing paired --seed "$SEED" -r "$work/jobs.jsonl" "$work/faces.jsonl"
pairs=$(( n * poses < SHEET_PAIRS ? n * poses : SHEET_PAIRS ))
say "rendering $((n * poses * 2)) crops; contact sheet of $pairs pairs -> $png"
run "${BIN}hfr-render" -t "$THREADS" ${ict[@]+"${ict[@]}"} --contact-sheet "$png" --sheet-pairs "$pairs" \
  -r "$work/images.jsonl" "$work/jobs.jsonl"
[ -n "${KEEP:-}" ] && say "work files kept in $work"
say "done: $png"
