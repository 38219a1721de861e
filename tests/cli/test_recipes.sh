#!/usr/bin/env bash
# The recipes in examples/recipes/ run on real data: embed-and-search on ORL
# faces (top-1 of the right subject, the output files, one summary line per
# probe, a photo that is no image), protocol-from-lists on two CASIA-style
# folds of ORL lists (report with 2 folds, Rank-1, plots; a list naming a
# missing image is an error naming the list file, line and image; KEEP_GOING),
# contact-sheet on two face-api sample photos (a PNG grid of plausible size,
# KEEP, the temporary folder removed, a folder without faces), and usage
# errors (exit 2 with a usage message). Needs the fetched npm models; the ORL
# parts skip with a message when $HFR_SHARED_DATA/orl-faces is absent.
. "$(dirname "$0")/lib.sh"

R=$SRC/examples/recipes
DATA=${HFR_SHARED_DATA:-$SRC/../shared/data}
ORL=$DATA/orl-faces
# dlib (128-d) embeds faster than the default faceres. One thread: on this
# 2-core machine with anything else running (ctest -j, a build), LibTorch's
# spinning OpenMP workers make -t 2 two to eight times slower than -t 1.
export HFR_BIN=$BIN THREADS=1 MODEL=dlib
unset HFR_ICT_FACEKIT KEEP KEEP_GOING SEED SHEET_PAIRS
# pngsize FILE: "W H" of a PNG, or nothing
pngsize() { $PY -c 'import struct,sys; b=open(sys.argv[1],"rb").read(24); print(*struct.unpack(">II", b[16:24])) if b[:8]==b"\x89PNG\r\n\x1a\n" else None' "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------
# Usage errors: exit 2 and a usage message, before any tool runs.
for r in embed-and-search protocol-from-lists contact-sheet; do
  run bash "$R/$r.sh"
  expect_rc 2 "$r: no arguments"
  expect_err "Usage: $r.sh" "$r: usage message"
done
mkdir -p "$T/empty"
run bash "$R/embed-and-search.sh" "$T/nowhere" "$T/empty" "$T/o"
expect_rc 2 "embed-and-search: missing gallery folder"
expect_err "$T/nowhere" "embed-and-search: the missing folder is named"
run bash "$R/embed-and-search.sh" "$T/empty" "$T/empty" "$T/o" 0
expect_rc 2 "embed-and-search: K = 0"
expect_err "K must be a positive integer" "embed-and-search: bad K explained"
run bash "$R/protocol-from-lists.sh" "$T/empty" "$T/empty" "$T/o"
expect_rc 2 "protocol-from-lists: no lists"
expect_err "no vis_gallery_K.txt in '$T/empty'" "protocol-from-lists: missing lists explained"
mkdir -p "$T/half" && : >"$T/half/vis_gallery_3.txt"
run bash "$R/protocol-from-lists.sh" "$T/half" "$T/empty" "$T/o"
expect_rc 2 "protocol-from-lists: a gallery list without its probe list"
expect_err "nir_probe_3.txt" "protocol-from-lists: the missing probe list is named"
run bash "$R/contact-sheet.sh" "$T/empty" "$T/o.png" many
expect_rc 2 "contact-sheet: POSES not a number"
run bash "$R/contact-sheet.sh" "$T/empty" "$T/nodir/o.png"
expect_rc 2 "contact-sheet: output folder missing"
run env HFR_BIN="$T/nobin" bash "$R/contact-sheet.sh" "$T/empty" "$T/o.png"
expect_rc 1 "contact-sheet: tools not found"
expect_err "$T/nobin/hfr-reconstruct not found" "contact-sheet: the missing tool is named"
[ -e "$T/o" ] && fail "a usage error created OUTDIR" || pass "usage errors create no output"

MODELS=${HFR_MODEL_DIR:-$SRC/models}
for f in blazeface.json facemesh.json face_geometry.binarypb face-api/face_recognition_model.bin; do
  if [ ! -f "$MODELS/$f" ]; then
    echo "skipped: the recipes' runs: models not fetched ($MODELS/$f missing; run scripts/fetch-models.sh)" >&2
    [ "$FAILS" -eq 0 ] && exit 77 || finish
  fi
done

# ---------------------------------------------------------------------------
# embed-and-search: gallery = image 1 of ORL subjects s1..s10, probes = image 6
# (another session's look); one more probe file that is not an image.
if [ -f "$ORL/s10/6.pgm" ]; then
  for s in $(seq 1 10); do
    mkdir -p "$T/es/gallery/s$s" "$T/es/probes/s$s"
    cp "$ORL/s$s/1.pgm" "$T/es/gallery/s$s/" && cp "$ORL/s$s/6.pgm" "$T/es/probes/s$s/"
  done
  head -c 2000 /dev/urandom >"$T/es/probes/s3/garbage.jpg"
  run bash "$R/embed-and-search.sh" "$T/es/gallery" "$T/es/probes" "$T/es/out" 3
  cp "$T/out" "$T/es/summary"
  expect_rc 0 "embed-and-search: ORL 10 gallery photos, 11 probe files"
  expect_err "embedding the gallery" "embed-and-search: progress on stderr"
  expect_err "garbage.jpg" "embed-and-search: the unreadable probe is reported"
  for f in gallery.hft gallery.jsonl probes.hft probes.jsonl top-k.jsonl; do
    [ -s "$T/es/out/$f" ] || fail "embed-and-search: OUTDIR/$f missing or empty"
  done
  pass "embed-and-search: OUTDIR has gallery.{hft,jsonl}, probes.{hft,jsonl}, top-k.jsonl"
  $PY - "$T/es" <<'PY' && pass "embed-and-search: 10 records of 3 matches, top-1 the right subject for >= 8/10 (above)" || fail "embed-and-search: top-k.jsonl (above)"
import json, sys
d = sys.argv[1]
recs = [json.loads(l) for l in open(f"{d}/out/top-k.jsonl")]
right = sum(r["gallery"][0].split("/")[0] == r["probe_subject"] == r["probe"].split("/")[0] for r in recs)
print(f"  {len(recs)} probes searched, top-1 right for {right}")
ok = len(recs) == 10 and all(len(r["gallery"]) == 3 and len(r["score"]) == 3 for r in recs) and right >= 8
ok &= sorted(r["probe"] for r in recs) == sorted(f"s{s}/6.pgm" for s in range(1, 11))
sys.exit(0 if ok else 1)
PY
  n=$(grep -c . "$T/es/summary")
  [ "$n" -eq 11 ] && pass "embed-and-search: one summary line per probe file (11)" || fail "embed-and-search: $n summary lines, expected 11: $(head -c 300 "$T/es/summary")"
  grep -Eq '^s4/6\.pgm -> s4/1\.pgm  0\.[0-9]{3}$' "$T/es/summary" && pass "embed-and-search: summary 'PROBE -> BEST  SCORE'" ||
    fail "embed-and-search: no line 's4/6.pgm -> s4/1.pgm  SCORE': $(head -c 300 "$T/es/summary")"
  grep -q '^s3/garbage.jpg -> not searched: .*not an image' "$T/es/summary" && pass "embed-and-search: the unreadable file has a 'not searched' line" ||
    fail "embed-and-search: no 'not searched' line for garbage.jpg"

  # protocol-from-lists: a CASIA NIR-VIS 2.0-style database of ORL images
  # (ROOT/s2/VIS/SUBJECT/1.pgm as the VIS gallery, NIR/SUBJECT/{2,3}.pgm as
  # probes); fold 1 subjects s11..s15, fold 2 s16..s20; the lists as CASIA
  # ships them: Windows separators, CRLF, .jpg names for files stored otherwise.
  db=$T/pr/root/NIR-VIS-2.0
  mkdir -p "$T/pr/lists"
  for k in 1 2; do
    for s in $(seq $((6 + 5 * k)) $((10 + 5 * k))); do
      mkdir -p "$db/s2/VIS/s$s" "$db/s2/NIR/s$s"
      cp "$ORL/s$s/1.pgm" "$db/s2/VIS/s$s/" && cp "$ORL/s$s/2.pgm" "$ORL/s$s/3.pgm" "$db/s2/NIR/s$s/"
      printf 's2\\VIS\\s%d\\1.jpg\r\n' "$s" >>"$T/pr/lists/vis_gallery_$k.txt"
      printf 's2\\NIR\\s%d\\2.jpg\r\ns2\\NIR\\s%d\\3.jpg\r\n' "$s" "$s" >>"$T/pr/lists/nir_probe_$k.txt"
    done
  done
  run bash "$R/protocol-from-lists.sh" "$T/pr/lists" "$T/pr/root" "$T/pr/out"
  expect_rc 0 "protocol-from-lists: 2 folds of ORL lists"
  expect_out "Rank-1" "protocol-from-lists: hfr-eval's table on stdout"
  expect_err "fold 2: scoring" "protocol-from-lists: progress on stderr"
  $PY - "$T/pr/out/report.json" <<'PY' && pass "protocol-from-lists: report with 2 folds of 10 probes, Rank-1 >= 80% (above)" || fail "protocol-from-lists: report (above)"
import json, sys
r = json.load(open(sys.argv[1]))
f = r["folds"]
r1 = r["summary"]["rank"]["1"]
print(f"  {len(f)} folds, probes {[x['identification']['probes'] for x in f]}, Rank-1 {r1['mean']:.3f} ± {r1['std']:.3f}")
sys.exit(0 if len(f) == 2 and r["summary"]["folds"] == 2 and all(x["identification"]["probes"] == 10 for x in f) and r1["mean"] >= 0.8 else 1)
PY
  ok=1
  for f in database.hft database.jsonl fold1.hft fold2.hft report.txt plots/protocol-roc.svg plots/protocol-cmc.png plots/protocol-det.png; do
    [ -s "$T/pr/out/$f" ] || { ok=0; fail "protocol-from-lists: OUTDIR/$f missing"; }
  done
  [ $ok -eq 1 ] && pass "protocol-from-lists: embeddings, fold matrices, report.txt and ROC/DET/CMC plots written"
  hfr-tensor info "$T/pr/out/fold2.hft" | grep -q 'scores  f32 \[10, 5\]' && pass "protocol-from-lists: fold 2 is 10 probes x 5 gallery" ||
    fail "protocol-from-lists: fold 2 shape: $(hfr-tensor info "$T/pr/out/fold2.hft" | tail -1)"

  # a list naming a missing image: the error names the list file, line and image
  db=$T/pm/root
  mkdir -p "$T/pm/lists" "$db/VIS/s31" "$db/VIS/s32" "$db/NIR/s31" "$db/NIR/s32"
  for s in 31 32; do cp "$ORL/s$s/1.pgm" "$db/VIS/s$s/"; cp "$ORL/s$s/2.pgm" "$db/NIR/s$s/"; done
  printf 'VIS/s31/1.pgm\nVIS/s32/1.pgm\n' >"$T/pm/lists/vis_gallery_1.txt"
  printf '# probes\nNIR/s31/2.pgm\nNIR/s32/9.pgm\nNIR/s32/2.pgm\n' >"$T/pm/lists/nir_probe_1.txt"
  run bash "$R/protocol-from-lists.sh" "$T/pm/lists" "$T/pm/root" "$T/pm/out"
  expect_rc 1 "protocol-from-lists: a listed image is missing"
  expect_err "nir_probe_1.txt:3: probe NIR/s32/9.pgm has no embedding" "protocol-from-lists: the error names the list file, line and image"
  expect_err "KEEP_GOING=1" "protocol-from-lists: the error points at KEEP_GOING"
  [ -e "$T/pm/out/report.json" ] && fail "protocol-from-lists: report written despite the error" || pass "protocol-from-lists: no report after the error"
  run env KEEP_GOING=1 bash "$R/protocol-from-lists.sh" "$T/pm/lists" "$T/pm/root" "$T/pm/out"
  expect_rc 0 "protocol-from-lists: KEEP_GOING=1 leaves the missing image out"
  expect_err "warning: $T/pm/lists/nir_probe_1.txt:3" "protocol-from-lists: KEEP_GOING warns about the entry"
  $PY -c "import json,sys; r=json.load(open('$T/pm/out/report.json')); sys.exit(0 if r['folds'][0]['identification']['probes']==2 else 1)" &&
    pass "protocol-from-lists: KEEP_GOING report has the 2 probes left" || fail "protocol-from-lists: KEEP_GOING report"
else
  echo "skipped part: ORL faces not at $ORL (embed-and-search and protocol-from-lists runs; set HFR_SHARED_DATA)" >&2
fi

# ---------------------------------------------------------------------------
# contact-sheet: two face-api sample photos (several faces each), 1 variation,
# the face mesh alone; KEEP keeps the work files.
if [ -f "$MODELS/face-api/sample1.jpg" ] && [ -f "$MODELS/face-api/sample2.jpg" ]; then
  mkdir -p "$T/cs/photos" "$T/cs/tmp"
  cp "$MODELS/face-api/sample1.jpg" "$MODELS/face-api/sample2.jpg" "$T/cs/photos/"
  run env KEEP="$T/cs/work" bash "$R/contact-sheet.sh" "$T/cs/photos" "$T/cs/sheet.png" 1
  expect_rc 0 "contact-sheet: 2 photos, POSES=1"
  expect_err "with the face mesh alone" "contact-sheet: the face mesh alone without HFR_ICT_FACEKIT"
  nf=$(grep -c '"reconstruction"' "$T/cs/work/faces.jsonl" 2>/dev/null)
  nv=$(grep -c '"modality":"VIS"' "$T/cs/work/images.jsonl" 2>/dev/null)
  nn=$(grep -c '"modality":"NIR"' "$T/cs/work/images.jsonl" 2>/dev/null)
  [ "${nf:-0}" -ge 2 ] && [ "$nv" -eq "$nf" ] && [ "$nn" -eq "$nf" ] && pass "contact-sheet: $nf faces -> $nv VIS + $nn NIR crops (KEEP kept the work files)" ||
    fail "contact-sheet: faces ${nf:-?}, VIS ${nv:-?}, NIR ${nn:-?} (KEEP=$T/cs/work)"
  grep -q '"sampled":true' "$T/cs/work/jobs.jsonl" && fail "contact-sheet: sampled new identities" || pass "contact-sheet: no new identities"
  # one pair of 112-pixel crops is at least 224 x 112; n pairs cover at least n of them
  read -r w h <<<"$(pngsize "$T/cs/sheet.png")"
  [ "${w:-0}" -ge 224 ] && [ "$w" -le 4000 ] && [ "$h" -ge 112 ] && [ "$h" -le 4000 ] && [ $((w * h)) -ge $((${nf:-1} * 224 * 112)) ] &&
    pass "contact-sheet: PNG of plausible size ($w x $h for $nf pairs)" || fail "contact-sheet: sheet size '${w:-} ${h:-}' for ${nf:-?} pairs"
  if $PY -c 'import PIL, numpy' 2>/dev/null; then
    $PY -c "import sys, numpy as np; from PIL import Image; a = np.asarray(Image.open('$T/cs/sheet.png').convert('L'), float); print(f'  grey std {a.std():.1f}'); sys.exit(0 if a.std() > 10 else 1)" &&
      pass "contact-sheet: the sheet has image content (above)" || fail "contact-sheet: the sheet looks blank (above)"
  else
    echo "skipped part: /usr/bin/python3 without PIL and numpy (the sheet's content)" >&2
  fi
  # without KEEP: a photo folder without a face fails clearly and leaves no temporary folder
  mkdir -p "$T/cs/noface"
  printf 'P6\n64 64\n255\n' >"$T/cs/noface/sky.ppm" && head -c $((64 * 64 * 3)) /dev/zero | tr '\0' '\140' >>"$T/cs/noface/sky.ppm"
  run env TMPDIR="$T/cs/tmp" bash "$R/contact-sheet.sh" "$T/cs/noface" "$T/cs/none.png"
  expect_rc 1 "contact-sheet: no face in the photos"
  expect_err "no usable face in $T/cs/noface" "contact-sheet: no-face error"
  [ -z "$(ls -A "$T/cs/tmp")" ] && [ ! -e "$T/cs/none.png" ] && pass "contact-sheet: temporary work folder removed, no sheet" ||
    fail "contact-sheet: left behind: $(ls -A "$T/cs/tmp") $(ls "$T/cs/none.png" 2>/dev/null)"
  ICT=$DATA/ict-facekit
  if [ -f "$ICT/neutral.obj" ]; then
    run env HFR_ICT_FACEKIT="$ICT" TMPDIR="$T/cs/tmp" bash "$R/contact-sheet.sh" "$T/cs/photos/sample1.jpg" "$T/cs/ict.png" 1
    expect_rc 0 "contact-sheet: one photo with the ICT FaceKit"
    expect_err "with the ICT FaceKit" "contact-sheet: HFR_ICT_FACEKIT picks the ICT FaceKit"
    [ -n "$(pngsize "$T/cs/ict.png")" ] && [ -z "$(ls -A "$T/cs/tmp")" ] && pass "contact-sheet (ICT): sheet written ($(pngsize "$T/cs/ict.png")), temporary folder removed" ||
      fail "contact-sheet (ICT): sheet $(pngsize "$T/cs/ict.png"), tmp: $(ls -A "$T/cs/tmp")"
  else
    echo "skipped part: the ICT FaceKit is not at $ICT (contact-sheet with full heads)" >&2
  fi
else
  echo "skipped part: face-api sample photos not in $MODELS/face-api (contact-sheet run; scripts/fetch-models.sh)" >&2
fi
finish
