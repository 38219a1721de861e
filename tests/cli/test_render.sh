#!/usr/bin/env bash
# hfr-render end to end: real reconstructions (one group photo) -> hfr-synth
# jobs -> rendered VIS/NIR crops and frames. Checks the images (sizes,
# channels, the face where the template puts it, NIR grey), the records, the
# pairing, that hfr-embed's detector finds faces in the crops, determinism
# across thread counts, --skip-existing, the contact sheet, bad jobs and bad
# identity files (NaN vertices, no triangles, inverted winding, a missing NIR
# map), usage errors and a broken pipe. Needs the fetched npm models; without
# the ICT FaceKit it renders face-mesh-only identities (no expressions).
. "$(dirname "$0")/lib.sh"

require_numpy_and_face_models
PHOTO=$SRC/models/face-api/sample3.jpg
require_file "$PHOTO" "face-api sample photo"
DATA=${HFR_SHARED_DATA:-$SRC/../shared/data}
ICT=$DATA/ict-facekit
if [ -f "$ICT/neutral.obj" ]; then
  HAVE_ICT=1 M=(--ict "$ICT") SX=(--ict "$ICT")
else
  HAVE_ICT=0 M=(-m facemesh) SX=()
  echo "skipped part: the ICT FaceKit is not at $ICT (full heads and expressions; face-mesh identities are rendered)" >&2
fi
unset HFR_ICT_FACEKIT

# ---------------------------------------------------------------------------
# Set-up: three reconstructions, one sampled identity, 2 poses, VIS + 850 nm.
# From the photo's folder: ids "sample3.jpg#K", the same poses in every checkout.
run_in "$(dirname "$PHOTO")" hfr-reconstruct -t 2 --texture-size 256 --faces all "${M[@]}" -O "$T/faces" -r "$T/faces.jsonl" "$(basename "$PHOTO")"
NF=$(ls "$T/faces" 2>/dev/null | grep -c '\.hft$')
if [ "$RC" -ne 0 ] || [ "$NF" -ne 3 ]; then
  fail "set-up: hfr-reconstruct exit $RC, $NF faces (expected 3): $(head -c 400 "$T/err")"
  finish
fi
mkdir -p "$T/w"
run hfr-synth ${SX[@]+"${SX[@]}"} -q -O "$T/w/ids" -r "$T/w/jobs.jsonl" --poses 2 --new-identities 1 --bands 850 --seed 3 \
  --face-px 20:90 "$T/faces.jsonl"
expect_rc 0 "set-up: hfr-synth"
NJ=$(wc -l <"$T/w/jobs.jsonl")
[ "$NJ" -eq 16 ] && pass "16 jobs" || fail "expected 16 jobs, got $NJ"

# ---------------------------------------------------------------------------
# 1. Render: records, images, landmarks on the template, pairs, frames, sheet.
R=(hfr-render ${SX[@]+"${SX[@]}"} --spp 4)
run "${R[@]}" -t 2 --frames --contact-sheet "$T/w/sheet.png" -r "$T/w/images.jsonl" "$T/w/jobs.jsonl"
expect_rc 0 "render 16 jobs"
expect_empty "$T/out" "with -r nothing on stdout"
expect_err "16 images" "summary on stderr"

cat >"$T/check.py" <<'PY'
import json, os, sys
import numpy as np
jobs_path, rec_path = sys.argv[1], sys.argv[2]
base = os.path.dirname(os.path.abspath(jobs_path))
rbase = os.path.dirname(os.path.abspath(rec_path))
jobs = [json.loads(l) for l in open(jobs_path)]
recs = [json.loads(l) for l in open(rec_path)]
assert len(recs) == len(jobs), (len(recs), len(jobs))

def png(path):
    from PIL import Image
    im = Image.open(path)
    assert im.mode in ("L", "RGB"), (path, im.mode)
    a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a

tmpl = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]])
pairs = {}
for j, r in zip(jobs, recs):
    assert "error" not in r, r
    assert r["id"] == j["id"] and r["pair"] == j["pair"] and r["subject"] == j["subject"] and r["modality"] == j["modality"]
    crop = png(os.path.join(rbase, r["path"]))
    nir = j["modality"] == "NIR"
    assert crop.shape == (112, 112, 1 if nir else 3), (r["path"], crop.shape)
    frame = png(os.path.join(rbase, r["frame"]))
    assert frame.shape[:2] == (j["camera"]["height"], j["camera"]["width"]), (frame.shape, j["camera"])
    lm = np.array(r["landmarks"]) - 0.5  # crop landmarks (pixel centres at +0.5) vs the template (OpenCV)
    err = np.abs(lm - tmpl).max(axis=1)  # a similarity cannot fit a turned face exactly: the nose moves most
    # eyes within 4 px + 0.1 px per degree of |yaw| + |pitch| (a similarity
    # cannot map a turned 3D face onto the frontal template exactly: face-mesh
    # identities at ~30 degrees give 5.5-6.6 px, ICT heads less)
    turn = abs(j["pose"]["yaw"]) + abs(j["pose"]["pitch"])
    assert err[:2].max() < 4 + 0.1 * turn and err.max() < 14, (r["id"], turn, err, lm.tolist())
    assert abs(r["eye_px"] - j["camera"]["eye_px"]) / j["camera"]["eye_px"] < 0.35, (r["eye_px"], j["camera"]["eye_px"])
    # the face is lit and textured where the template puts it; not a flat image
    face = crop[45:100, 35:77].astype(float)
    assert 40 < face.mean() < 230, (r["id"], face.mean())
    assert face.std() > 3, (r["id"], face.std())
    pairs.setdefault(j["pair"], []).append((j, r))
for p, v in pairs.items():
    assert sorted(x[0]["spectrum"] for x in v) == ["nir850", "vis"], p
    a, b = v[0][1], v[1][1]
    assert a["landmarks"] == b["landmarks"] and a["frame_landmarks"] == b["frame_landmarks"], p
sheet = png(sys.argv[3])
assert sheet.shape[0] >= 112 and sheet.shape[1] >= 224 and sheet.shape[2] == 3, sheet.shape
print("ok", len(recs), len(pairs))
PY
if $PY "$T/check.py" "$T/w/jobs.jsonl" "$T/w/images.jsonl" "$T/w/sheet.png" >"$T/py.out" 2>&1; then
  pass "images, records, landmarks on the template, pairs, frames, contact sheet: $(cat "$T/py.out")"
else
  fail "render outputs: $(tail -c 600 "$T/py.out")"
fi

# ---------------------------------------------------------------------------
# 2. hfr-embed's detector finds a face in the crops (no --aligned).
if [ -f "$MODELS/faceres.json" ]; then
  run hfr-embed -q -t 2 --faces largest -o "$T/emb.hft" -r "$T/emb.jsonl" "$T/w/renders"
  $PY - "$T/emb.jsonl" >"$T/py.out" 2>&1 <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
crops = [r for r in recs if not r["path"].endswith("_frame.png")]
found = [r for r in crops if "error" not in r]
print("%d of %d crops" % (len(found), len(crops)))
assert len(crops) == 16 and len(found) >= 12, [r.get("error") for r in crops]
PY
  if [ $? -eq 0 ]; then pass "the detector finds faces in $(cat "$T/py.out")"; else fail "detector on crops: $(tail -c 500 "$T/py.out")"; fi
fi

# ---------------------------------------------------------------------------
# 3. Determinism: one thread into another folder gives the same bytes.
run "${R[@]}" -t 1 -O "$T/w2" -r "$T/w2.jsonl" "$T/w/jobs.jsonl"
expect_rc 0 "render again with -t 1 into -O"
DIFF=0
while read -r f; do cmp -s "$T/w/$f" "$T/w2/$f" || DIFF=$((DIFF + 1)); done < <(cd "$T/w" && find renders -name '*.png' ! -name '*_frame.png')
[ "$DIFF" -eq 0 ] && pass "crops identical for -t 2 and -t 1" || fail "$DIFF crops differ between -t 2 and -t 1"

# ---------------------------------------------------------------------------
# 4. --skip-existing keeps images, still writes records.
F1=$(cd "$T/w" && find renders -name '000_vis.png' | head -1)
touch -d '2001-01-01' "$T/w/$F1"
run "${R[@]}" --skip-existing --frames -r "$T/w/skip.jsonl" "$T/w/jobs.jsonl"
expect_rc 0 "--skip-existing"
[ "$(stat -c %Y "$T/w/$F1")" = "$(date -d 2001-01-01 +%s)" ] && pass "existing image untouched" || fail "existing image rewritten"
[ "$(grep -c '"skipped":true' "$T/w/skip.jsonl")" -eq 16 ] && pass "16 skipped records" || fail "skipped records: $(head -c 300 "$T/w/skip.jsonl")"

# ---------------------------------------------------------------------------
# 5. Bad jobs: each its own error record, the rest rendered, exit 3.
head -2 "$T/w/jobs.jsonl" >"$T/w/bad.jsonl"
$PY - "$T/w/jobs.jsonl" >>"$T/w/bad.jsonl" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).readline())
def bad(k, **kw):
    x = json.loads(json.dumps(j)); x["id"] = "bad-" + k; x["pair"] = "bad-" + k; x["output"] = "renders/bad/" + k + ".png"
    for key, v in kw.items():
        if "." in key:
            a, b = key.split("."); x[a][b] = v
        else:
            x[key] = v
    print(json.dumps(x))
bad("distance", **{"camera.distance_cm": -5})
bad("light", lights=[{"type": "laser", "intensity": 1}])
bad("identity", identity_file="ids/nope.hft")
bad("yaw", **{"pose.yaw": 400})
bad("spectrum", spectrum="uv")
bad("band", spectrum="nir940", band_nm=940)
print("{not json")
PY
run "${R[@]}" -r "$T/w/bad_out.jsonl" "$T/w/bad.jsonl"
expect_rc 3 "bad jobs: exit 3"
NE=$(grep -c '"error"' "$T/w/bad_out.jsonl")
NG=$(grep -vc '"error"' "$T/w/bad_out.jsonl")
[ "$NE" -eq 7 ] && [ "$NG" -eq 2 ] && pass "7 error records, 2 rendered" || fail "$NE errors, $NG good: $(head -c 600 "$T/w/bad_out.jsonl")"
expect_err "bad.jsonl:3" "error names the file and line"
expect_err "distance_cm" "error names the bad field"
expect_err "laser" "unknown light type named"
expect_err "nope.hft" "missing identity file named"
expect_err "940 nm" "missing NIR band named"
[ ! -e "$T/w/renders/bad" ] && pass "no image for bad jobs" || fail "images written for bad jobs: $(ls "$T/w/renders/bad")"

# ---------------------------------------------------------------------------
# 6. Bad identity files: NaN vertices, no triangles (inverted winding: unit test "[render]").
ID1=$(head -1 "$T/w/jobs.jsonl" | $PY -c 'import json,sys; print(json.loads(sys.stdin.read())["identity_file"])')
mkdir -p "$T/x"
for t in $(hfr-tensor info --json "$T/w/$ID1" | $PY -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l)
    if "tensor" in r: print(r["tensor"])
    elif "name" in r: print(r["name"])'); do
  hfr-tensor export --tensor "$t" -o "$T/x/$t.npy" "$T/w/$ID1" || fail "export $t"
done
hfr-tensor info --json "$T/w/$ID1" | $PY -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l)
    if "metadata" in r: print(json.dumps(r["metadata"]))' >"$T/x/meta.json"
$PY - "$T/x" <<'PY'
import numpy as np, sys, os
d = sys.argv[1]
v = np.load(d + "/vertices.npy"); t = np.load(d + "/triangles.npy"); ut = np.load(d + "/uv_triangles.npy")
v2 = v.copy(); v2[5, 1] = np.nan; np.save(d + "/v_nan.npy", v2)
np.save(d + "/t_empty.npy", np.zeros((0, 3), np.int32)); np.save(d + "/ut_empty.npy", np.zeros((0, 3), np.int32))
PY
OTHER=()
for f in "$T"/x/*.npy; do
  n=$(basename "$f" .npy)
  case $n in vertices|triangles|uv_triangles|v_nan|t_empty|ut_empty) ;; *) OTHER+=("$n=$f") ;; esac
done
META=$(cat "$T/x/meta.json")
mk() { hfr-tensor import -q --metadata "$META" -o "$T/w/ids/$1.hft" "${OTHER[@]}" "${@:2}" || fail "import $1"; }
mk nan vertices="$T/x/v_nan.npy" triangles="$T/x/triangles.npy" uv_triangles="$T/x/uv_triangles.npy"
mk empty vertices="$T/x/vertices.npy" triangles="$T/x/t_empty.npy" uv_triangles="$T/x/ut_empty.npy"
head -1 "$T/w/jobs.jsonl" | $PY -c '
import json, sys
j = json.loads(sys.stdin.read())
for k in ("nan", "empty"):
    x = dict(j); x["id"] = k; x["pair"] = k; x["identity_file"] = "ids/%s.hft" % k; x["output"] = "renders/x/%s.png" % k
    print(json.dumps(x))' >"$T/w/ids.jsonl"
run "${R[@]}" -r "$T/w/ids_out.jsonl" "$T/w/ids.jsonl"
expect_rc 3 "bad identity files: exit 3"
expect_err "not finite" "NaN vertex named"
expect_err "no triangles" "empty mesh named"

# A pair with an expression but no ICT FaceKit: both jobs fail with the reason
# (the second once crashed on the first's half-cached pose).
if [ "$HAVE_ICT" -eq 1 ]; then
  grep '"expression":{"' "$T/w/jobs.jsonl" | head -2 >"$T/w/expr.jsonl"
  run hfr-render -O "$T/w4" -r "$T/w/expr_out.jsonl" "$T/w/expr.jsonl"
  expect_rc 3 "expressions without the ICT FaceKit: exit 3"
  [ "$(grep -c 'needs the ICT FaceKit' "$T/w/expr_out.jsonl")" -eq 2 ] && pass "both jobs of the pair say why" ||
    fail "expression jobs: $(head -c 400 "$T/w/expr_out.jsonl")"
fi

# ---------------------------------------------------------------------------
# 7. Usage errors, a broken pipe.
run hfr-render --spp 0 "$T/w/jobs.jsonl"
expect_rc 2 "--spp 0 is a usage error"
run hfr-render --size 8 "$T/w/jobs.jsonl"
expect_rc 2 "--size 8 is a usage error"
(hfr-render ${SX[@]+"${SX[@]}"} --spp 1 -O "$T/w3" "$T/w/jobs.jsonl" | head -1 >"$T/out") 2>"$T/err"
[ "${PIPESTATUS[0]}" -eq 0 ] || [ "${PIPESTATUS[0]}" -eq 141 ] || true
[ "$(wc -l <"$T/out")" -eq 1 ] && pass "| head -1 gives one record" || fail "head: $(cat "$T/out")"
if grep -qi "broken pipe\|error" "$T/err"; then fail "broken pipe noise: $(head -c 300 "$T/err")"; else pass "broken pipe ends quietly"; fi

finish
