#!/usr/bin/env bash
# hfr-embed end to end on real photos: records and embedding set (fields, unit
# norms, face policies), determinism across runs, threads and network batches,
# discrimination and closed-set Rank-1 on an ORL subset (faceres and dlib,
# through hfr-match and hfr-eval), --aligned, per-item errors with exit 3,
# missing and corrupt models, records on stdin, output records fed back in,
# --save-model round trip, FIFO and process-substitution outputs, and a broken
# pipe. Needs the fetched npm models (scripts/fetch-models.sh); ORL parts skip
# with a message when $HFR_SHARED_DATA/orl-faces is absent.
. "$(dirname "$0")/lib.sh"

require_numpy
if [ ! -f "$SRC/models/faceres.json" ]; then
  echo "skipped: models not fetched ($SRC/models/faceres.json missing; run scripts/fetch-models.sh)" >&2
  exit 77
fi
if [ -n "${HFR_MODEL_DIR:-}" ] && [ ! -f "$HFR_MODEL_DIR/faceres.json" ]; then
  echo "skipped: HFR_MODEL_DIR=$HFR_MODEL_DIR holds no faceres.json (run scripts/fetch-models.sh)" >&2
  exit 77
fi
SAMPLES=$SRC/models/face-api
if [ ! -f "$SAMPLES/sample1.jpg" ] || [ ! -f "$SAMPLES/face_recognition_model.bin" ]; then
  echo "skipped: face-api files missing under $SAMPLES (run scripts/fetch-models.sh)" >&2
  exit 77
fi
# Runs whose point is not threading use one thread: on a loaded machine (CTest
# -j, a build beside it) OpenMP's spin-waiting makes -t 2 several times slower
# than -t 1. Threads and network batches are compared in section 2.
T1=(-t 1)
ORL=${HFR_SHARED_DATA:-$SRC/../shared/data}/orl-faces
HAVE_ORL=0
[ -f "$ORL/s10/4.pgm" ] && HAVE_ORL=1

# npy SET.hft OUT.npy: the embeddings of a set as a NumPy file.
npy() { hfr-tensor export --tensor embeddings "$1" -o "$2" 2>>"$T/npy.err" || fail "export embeddings of $(basename "$1"): $(tail -1 "$T/npy.err")"; }
# close A.npy B.npy TOL what: equal shapes and max |a-b| <= TOL.
close() {
  local r
  r=$($PY -c "
import numpy as np, sys
a = np.load('$1'); b = np.load('$2')
if a.shape != b.shape: print('shapes', a.shape, b.shape); sys.exit(1)
d = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
print('max |diff| %.3g' % d); sys.exit(0 if d <= $3 else 1)" 2>&1) && pass "$4 ($r)" || fail "$4: $r"
}

# ---------------------------------------------------------------------------
# 1. The sample photos folder: records and embedding set.
run hfr-embed -o "$T/set.hft" -r "$T/set.jsonl" "$SAMPLES"
expect_rc 0 "sample photos folder embedded"
expect_err "6 images, 6 faces embedded, 0 failed" "summary counts images and faces"
expect_empty "$T/out" "records go to -r, not stdout"
npy "$T/set.hft" "$T/set.npy"
hfr-tensor info --json "$T/set.hft" >"$T/set.info" || fail "hfr-tensor info of the set"
$PY - "$T" "$SAMPLES" <<'PY' && pass "one complete record per photo; [6,1024] unit-norm embeddings; metadata agrees" || fail "sample records / set (above)"
import json, os, re, sys
import numpy as np
d, samples = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(f"{d}/set.jsonl")]
errs = []
def check(c, m):
    if not c: errs.append(m)
check([r.get("id") for r in recs] == [f"sample{i}.jpg" for i in range(1, 7)], f"ids {[r.get('id') for r in recs]}")
for i, r in enumerate(recs):
    n = r.get("id")
    check("error" not in r, f"{n}: error {r.get('error')}")
    check(os.path.samefile(r.get("path", "/nonexistent"), f"{samples}/{n}"), f"{n}: path {r.get('path')}")
    b = r.get("box")
    check(isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b) and b[0] < b[2] and b[1] < b[3], f"{n}: box {b}")
    check(isinstance(r.get("score"), (int, float)) and 0.5 <= r["score"] <= 1, f"{n}: score {r.get('score')} (default --min-score 0.5)")
    lm = r.get("landmarks")
    check(isinstance(lm, list) and len(lm) == 5 and all(isinstance(p, list) and len(p) == 2 for p in lm), f"{n}: landmarks {lm}")
    if isinstance(b, list) and isinstance(lm, list) and len(b) == 4:
        w, h = b[2] - b[0], b[3] - b[1]
        for x, y in lm:
            check(b[0] - 0.1 * w <= x <= b[2] + 0.1 * w and b[1] - 0.1 * h <= y <= b[3] + 0.1 * h, f"{n}: landmark {x},{y} outside box {b}")
        # eyes above the nose above the mouth corners (upright photos)
        check(max(lm[0][1], lm[1][1]) < lm[2][1] < min(lm[3][1], lm[4][1]) + 5, f"{n}: landmark order {lm}")
    check(r.get("embeddings") == "set.hft", f"{n}: embeddings {r.get('embeddings')}")
    check(r.get("row") == i, f"{n}: row {r.get('row')}")
    check(r.get("face") == 0 and isinstance(r.get("faces_found"), int) and r["faces_found"] >= 1, f"{n}: face/faces_found")
    check(r.get("model") == "faceres", f"{n}: model {r.get('model')}")
    check(re.fullmatch(r"[0-9a-f]{64}", str(r.get("model_sha256"))) is not None, f"{n}: model_sha256 {r.get('model_sha256')}")
check(recs[0].get("faces_found") == 3, f"sample1 faces_found {recs[0].get('faces_found')}, expected 3")
e = np.load(f"{d}/set.npy")
check(e.shape == (6, 1024) and e.dtype == np.float32, f"embeddings {e.shape} {e.dtype}")
if e.shape == (6, 1024):
    nrm = np.linalg.norm(e.astype(np.float64), axis=1)
    check(np.all(np.isfinite(e)) and np.abs(nrm - 1).max() < 1e-4, f"norms {nrm}")
    g = e @ e.T
    check((g[~np.eye(6, dtype=bool)] < 0.99).all(), "two different photos gave (nearly) the same embedding")
meta = [json.loads(l)["metadata"] for l in open(f"{d}/set.info") if '"metadata"' in l]
m = meta[0] if meta else {}
check(m.get("ids") == [r.get("id") for r in recs], f"metadata ids {m.get('ids')}")
check(m.get("dim") == 1024 and m.get("model") == "faceres" and m.get("model_sha256") == recs[0].get("model_sha256"), "metadata model/dim/sha256")
for x in errs: print("  ", x)
sys.exit(1 if errs else 0)
PY

# --faces all / largest / single on sample1 (three faces).
run hfr-embed "${T1[@]}" --faces all --include sample1.jpg -o "$T/all.hft" -r "$T/all.jsonl" "$SAMPLES"
expect_rc 0 "--faces all"
npy "$T/all.hft" "$T/all.npy"
$PY - "$T" <<'PY' && pass "--faces all: sample1.jpg#0..#2, distinct boxes, the default picks the largest" || fail "--faces all (above)"
import json, sys
import numpy as np
d = sys.argv[1]
recs = [json.loads(l) for l in open(f"{d}/all.jsonl")]
largest = json.loads(open(f"{d}/set.jsonl").readline())
errs = []
if [r.get("id") for r in recs] != ["sample1.jpg#0", "sample1.jpg#1", "sample1.jpg#2"]: errs.append(f"ids {[r.get('id') for r in recs]}")
if [r.get("row") for r in recs] != [0, 1, 2] or [r.get("face") for r in recs] != [0, 1, 2]: errs.append("rows/faces not 0,1,2")
if any(r.get("faces_found") != 3 for r in recs): errs.append("faces_found != 3")
def iou(a, b):
    w = max(0, min(a[2], b[2]) - max(a[0], b[0])); h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / u
bx = [r.get("box") for r in recs]
if len(bx) == 3 and all(isinstance(b, list) and len(b) == 4 for b in bx):
    for i in range(3):
        for j in range(i + 1, 3):
            if iou(bx[i], bx[j]) > 0.1: errs.append(f"boxes {i},{j} overlap: {bx[i]} {bx[j]}")
    area = [(b[2] - b[0]) * (b[3] - b[1]) for b in bx]
    big = max(range(3), key=lambda i: area[i])
    if iou(bx[big], largest["box"]) < 0.95: errs.append(f"default (largest) box {largest['box']} is not the largest of {bx}")
else:
    errs.append(f"boxes {bx}")
e = np.load(f"{d}/all.npy")
if e.shape != (3, 1024): errs.append(f"shape {e.shape}")
elif (e @ e.T)[np.triu_indices(3, 1)].max() > 0.9: errs.append("two of the three faces have near-identical embeddings")
for x in errs: print("  ", x)
sys.exit(1 if errs else 0)
PY
run hfr-embed "${T1[@]}" --faces single --include sample1.jpg -o "$T/single.hft" -r "$T/single.jsonl" "$SAMPLES"
expect_rc 3 "--faces single with three faces"
grep -q '"id":"sample1.jpg".*"error":"[^"]*3 faces' "$T/single.jsonl" && ! grep -q '"row"' "$T/single.jsonl" &&
  pass "--faces single: an error record naming the face count, no row" || fail "--faces single record: $(cat "$T/single.jsonl")"
hfr-tensor info "$T/single.hft" 2>&1 | grep -q 'embeddings  f32 \[0, 1024\]' && pass "--faces single: empty but complete set" ||
  fail "--faces single set: $(hfr-tensor info "$T/single.hft" 2>&1 | tail -2)"

# ---------------------------------------------------------------------------
# 2. Determinism: the same run twice is byte-identical; threads and the
#    network batch change nothing beyond float rounding. sample1 and sample4
#    with --faces all: 7 faces, one network batch of 7 or seven of 1.
mkdir "$T/d1" "$T/d2" "$T/d3" "$T/d4"
DET=(-q --faces all --include 'sample[14].jpg' -o set.hft -r set.jsonl "$SAMPLES")
for k in 1 2; do (cd "$T/d$k" && hfr-embed -t 2 "${DET[@]}") || fail "determinism run $k"; done
(cd "$T/d3" && hfr-embed --threads 1 "${DET[@]}") || fail "--threads 1 run"
(cd "$T/d4" && hfr-embed --threads 1 --net-batch 1 "${DET[@]}") || fail "--net-batch 1 run"
[ "$(wc -l <"$T/d1/set.jsonl")" -eq 7 ] && pass "--faces all on sample1 and sample4: 7 faces" || fail "faces in sample1+4: $(wc -l <"$T/d1/set.jsonl")"
cmp -s "$T/d1/set.jsonl" "$T/d2/set.jsonl" && pass "two runs: byte-identical records" || fail "records differ between identical runs: $(diff "$T/d1/set.jsonl" "$T/d2/set.jsonl" | head -3)"
cmp -s "$T/d1/set.hft" "$T/d2/set.hft" && pass "two runs: byte-identical tensor files" || fail "tensor files differ between identical runs"
for k in 1 3 4; do npy "$T/d$k/set.hft" "$T/d$k.npy"; done
# On the full path the detector's and the mesh's float rounding (which differs
# with thread count and batch size, ~1e-4 of a pixel in the landmarks) moves
# the crop by that much, and the embedding follows continuously: 1e-3. The
# networks themselves agree within 1e-5 (the --aligned check below, and the
# unit tests).
close "$T/d1.npy" "$T/d3.npy" 1e-3 "--threads 1 vs 2: embeddings within 1e-3"
close "$T/d3.npy" "$T/d4.npy" 1e-3 "--net-batch 1 vs 8: embeddings within 1e-3"
for k in 3 4; do
  $PY - "$T/d1/set.jsonl" "$T/d$k/set.jsonl" <<'PY' && pass "run d$k: same faces, boxes and landmarks within 0.05 px as d1" || fail "records of run d$k differ from d1 beyond rounding"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
ok = len(a) == len(b) == 7
for x, y in zip(a, b):
    ok &= x["id"] == y["id"] and x["row"] == y["row"]
    ok &= max(abs(p - q) for p, q in zip(x["box"] + sum(x["landmarks"], []), y["box"] + sum(y["landmarks"], []))) <= 0.05
sys.exit(0 if ok else 1)
PY
done
# The embedding network alone (--aligned: no detection, no landmarks), to tell
# the stages apart when the comparison above fails.
for v in "a1:-t 1 --net-batch 1" "a2:-t 2 --net-batch 8"; do
  hfr-embed -q --aligned ${v#*:} --include 'sample[1-4].jpg' -o "$T/${v%%:*}.hft" -r "$T/${v%%:*}.jsonl" "$SAMPLES" || fail "--aligned ${v#*:}"
  npy "$T/${v%%:*}.hft" "$T/${v%%:*}.npy"
done
close "$T/a2.npy" "$T/a1.npy" 1e-5 "--aligned: -t 1 --net-batch 1 vs -t 2 --net-batch 8 within 1e-5"

# ---------------------------------------------------------------------------
# 3, 4, 8. Real faces: ORL subset, 10 subjects x 4 images.
if [ $HAVE_ORL -eq 1 ]; then
  SEL=(--include 's[1-9]/*' --include 's10/*' --exclude '*/[5-9].pgm' --exclude '*/10.pgm')
  run hfr-embed "${T1[@]}" -m faceres "${SEL[@]}" -o "$T/orl.hft" -r "$T/orl.jsonl" "$ORL"
  expect_rc 0 "ORL subset, faceres"
  run hfr-embed "${T1[@]}" -m dlib "${SEL[@]}" -o "$T/orld.hft" -r "$T/orld.jsonl" "$ORL"
  expect_rc 0 "ORL subset, dlib"
  run hfr-embed "${T1[@]}" --aligned "${SEL[@]}" -o "$T/orla.hft" -r "$T/orla.jsonl" "$ORL"
  expect_rc 0 "ORL subset, --aligned"
  for s in orl orld orla; do npy "$T/$s.hft" "$T/$s.npy"; hfr-tensor info --json "$T/$s.hft" >"$T/$s.info"; done
  $PY - "$T" <<'PY' && pass "ORL: 40 records, subjects from the first sub-folder, labels in the set metadata" || fail "ORL records (above)"
import json, sys
d = sys.argv[1]
want = [f"s{s}/{i}.pgm" for s in range(1, 11) for i in range(1, 5)]
errs = []
for f in ("orl", "orld", "orla"):
    recs = [json.loads(l) for l in open(f"{d}/{f}.jsonl")]
    ids = [r.get("id") for r in recs]
    if sorted(ids) != sorted(want): errs.append(f"{f}: ids {ids[:6]}...")
    for r in recs:
        if r.get("subject") != r.get("id", "").split("/")[0] or "error" in r: errs.append(f"{f}: {r.get('id')} subject {r.get('subject')}")
    if [r.get("row") for r in recs] != list(range(len(recs))): errs.append(f"{f}: rows")
    m = [json.loads(l)["metadata"] for l in open(f"{d}/{f}.info") if '"metadata"' in l]
    if not m or m[0].get("subjects") != [r.get("subject") for r in recs] or m[0].get("ids") != ids: errs.append(f"{f}: set metadata labels")
for x in errs[:10]: print("  ", x)
sys.exit(1 if errs else 0)
PY
  $PY - "$T" <<'PY' && pass "ORL: genuine cosines clearly above impostor cosines (faceres, dlib)" || fail "ORL discrimination (above)"
import json, sys
import numpy as np
d = sys.argv[1]
ok = True
# dlib's descriptors share a large common component (docs/models.md: impostor
# cosine ~0.9), so its margin is smaller; its ranking is checked below.
for f, dim, margin in (("orl", 1024, 0.3), ("orld", 128, 0.08), ("orla", 1024, 0.15)):
    e = np.load(f"{d}/{f}.npy").astype(np.float64)
    subj = np.array([json.loads(l)["subject"] for l in open(f"{d}/{f}.jsonl")])
    if e.shape != (40, dim) or np.abs(np.linalg.norm(e, axis=1) - 1).max() > 1e-4:
        print(f"  {f}: shape {e.shape} or norms wrong"); ok = False; continue
    s = e @ e.T; same = subj[:, None] == subj[None, :]; off = ~np.eye(40, dtype=bool)
    gen, imp = s[same & off].mean(), s[~same].mean()
    print(f"  {f}: genuine {gen:.3f} impostor {imp:.3f} (margin wanted {margin})")
    ok &= gen > imp + margin
sys.exit(0 if ok else 1)
PY
  # --aligned: no detection, and a different crop than the detection path.
  grep -q '"box"' "$T/orla.jsonl" && fail "--aligned records carry a detection box" || pass "--aligned records have no detection box"
  $PY - "$T" <<'PY' && pass "--aligned embeddings differ from the detected and aligned ones (alignment happened)" || fail "--aligned vs detection (above)"
import sys
import numpy as np
d = sys.argv[1]
a, b = np.load(f"{d}/orl.npy"), np.load(f"{d}/orla.npy")
c = (a * b).sum(1)
print(f"  cosine detection vs --aligned: min {c.min():.3f} max {c.max():.3f}")
sys.exit(0 if c.shape == (40,) and c.max() < 0.995 else 1)
PY

  # Closed-set identification: gallery = image 1 of each subject, probes = 2..4,
  # the records files straight into hfr-match, then hfr-eval.
  for s in orl orld; do
    grep '"id":"s[0-9]*/1.pgm"' "$T/$s.jsonl" >"$T/$s.gal.jsonl"
    grep -v '"id":"s[0-9]*/1.pgm"' "$T/$s.jsonl" >"$T/$s.prb.jsonl"
    run hfr-match -n 3 "$T/$s.gal.jsonl" "$T/$s.prb.jsonl"
    expect_rc 0 "$s: records as gallery and probes in hfr-match"
    $PY - "$T/out" <<'PY' && pass "$s: hfr-match top-1 is the probe's subject for >= 90% of 30 probes" || fail "$s: top-1 (above)"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
hit = sum(r["gallery"][0].split("/")[0] == r["probe_subject"] for r in recs)
print(f"  top-1 hits {hit}/{len(recs)}")
sys.exit(0 if len(recs) == 30 and hit >= 27 else 1)
PY
    hfr-match --matrix "$T/$s.gal.jsonl" "$T/$s.prb.jsonl" -o "$T/$s.scores.hft" 2>"$T/err" || fail "$s: score matrix: $(cat "$T/err")"
    hfr-eval --json --bootstrap 0 "$T/$s.scores.hft" >"$T/$s.eval.json" 2>"$T/err" || fail "$s: hfr-eval: $(cat "$T/err")"
    r1=$($PY -c "import json; f=json.load(open('$T/$s.eval.json'))['folds'][0]; i=f['identification']; print(i['probes'], i['rank']['1'], f['verification']['auc'])" 2>&1)
    set -- $r1
    if [ "${1:-}" = 30 ] && $PY -c "import sys; sys.exit(0 if float('$2') >= 0.95 and float('$3') >= 0.95 else 1)" 2>/dev/null; then
      pass "$s: closed-set Rank-1 $2 >= 0.95, AUC $3 (30 probes, 10 subjects)"
    else
      fail "$s: Rank-1 / AUC: $r1"
    fi
  done
  set --
else
  echo "skipped part: ORL faces not found at $ORL (discrimination, Rank-1, --aligned)" >&2
fi

# ---------------------------------------------------------------------------
# 5. Bad input: per-item error records, the good ones embedded, exit 3.
mkdir "$T/bad"
cp "$SAMPLES/sample2.jpg" "$T/bad/good.jpg"
: >"$T/bad/empty.jpg"
$PY -c "import numpy as np; open('$T/bad/corrupt.png','wb').write(np.random.default_rng(5).integers(0,256,4000,dtype=np.uint8).tobytes())"
echo "not an image" >"$T/bad/x.txt"
printf '{"id":"viarec","path":"bad/good.jpg"}\n{"id":"nopath","subject":"z"}\n{"id": broken\n' >"$T/recs.jsonl"
run hfr-embed "${T1[@]}" -o "$T/bad.hft" -r "$T/bad.jsonl" "$T/bad" "$T/nosuch.jpg" "$T/recs.jsonl"
expect_rc 3 "bad items among good ones"
$PY - "$T" <<'PY' && pass "each bad item has an error record naming the problem; x.txt ignored; good items embedded" || fail "bad-input records (above)"
import json, sys
d = sys.argv[1]
recs = {}
for l in open(f"{d}/bad.jsonl"):
    r = json.loads(l); recs[r.get("id")] = r
want_err = {"empty.jpg": "empty file", "corrupt.png": "not an image", f"{d}/nosuch.jpg": "No such file",
            "nopath": 'no string field "path"', f"{d}/recs.jsonl:3": "malformed JSON"}
errs = []
for k, v in want_err.items():
    e = recs.get(k, {}).get("error", "")
    if v not in e: errs.append(f"{k}: error {e!r}, expected {v!r}")
    if "row" in recs.get(k, {}): errs.append(f"{k}: error record has a row")
for k in ("good.jpg", "viarec"):
    r = recs.get(k, {})
    if "error" in r or r.get("embeddings") != "bad.hft" or r.get("row") not in (0, 1): errs.append(f"{k}: {r}")
if any("x.txt" in json.dumps(r) for r in recs.values()): errs.append("x.txt was read")
if len(recs) != 7: errs.append(f"{len(recs)} records: {sorted(recs)}")
for x in errs: print("  ", x)
sys.exit(1 if errs else 0)
PY
expect_err "nosuch.jpg: No such file or directory" "warning names the missing file"
run hfr-tensor verify "$T/bad.hft"
expect_rc 0 "the set written despite failures is complete"
hfr-tensor info "$T/bad.hft" 2>&1 | grep -q 'embeddings  f32 \[2, 1024\]' && pass "one row per good face (2)" || fail "bad.hft: $(hfr-tensor info "$T/bad.hft" 2>&1 | tail -1)"

mkdir "$T/nomodels" "$T/nm"
HFR_MODEL_DIR="$T/nomodels" run hfr-embed -o "$T/nm/x.hft" "$SAMPLES/sample1.jpg"
expect_rc 1 "missing model files"
expect_err "fetch-models" "missing model points at fetch-models"
[ -z "$(ls -A "$T/nm")" ] && pass "no output after a missing model" || fail "left in output dir: $(ls -A "$T/nm")"
run hfr-embed -m nosuch-model -o "$T/nm/x.hft" "$SAMPLES/sample1.jpg"
expect_rc 2 "unknown model name is a usage error"

run hfr-embed "${T1[@]}" --max-pixels 1000 -o "$T/mp.hft" -r "$T/mp.jsonl" "$SAMPLES/sample1.jpg"
expect_rc 3 "--max-pixels 1000"
grep -q '"error":"[^"]*image too large: 1920x1280' "$T/mp.jsonl" && pass "too large image is a per-item error with its size" || fail "--max-pixels record: $(cat "$T/mp.jsonl")"
run hfr-embed "${T1[@]}" --max-pixels 2457600 -o "$T/mp.hft" -r "$T/mp.jsonl" "$SAMPLES/sample1.jpg" "$SAMPLES/sample2.jpg"
expect_rc 3 "--max-pixels 2457600: sample1 (1920x1280) at the limit, sample2 (1920x1367) over it"
grep -q '"id":"[^"]*sample1.jpg","path":"[^"]*","face":0' "$T/mp.jsonl" && grep -q '"error":"[^"]*image too large: 1920x1367 pixels (limit 2457600)' "$T/mp.jsonl" &&
  pass "an image of exactly --max-pixels is embedded, a larger one refused" || fail "--max-pixels boundary: $(cat "$T/mp.jsonl")"

# ---------------------------------------------------------------------------
# 6. Records on stdin: id and subject used, other fields passed through.
printf '%s\n' '{"id":"a1","subject":"alice","path":"sample2.jpg","session":2,"meta":{"k":[1,"x"],"n":null}}' \
  '{"id":"b1","subject":"bob","path":"sample3.jpg","flag":true}' >"$T/stdin.jsonl"
run sh -c "cd '$SAMPLES' && hfr-embed -t 1 -o '$T/st.hft' -r '$T/st.jsonl' - <'$T/stdin.jsonl'"
expect_rc 0 "records on stdin"
hfr-tensor info --json "$T/st.hft" >"$T/st.info" 2>&1
$PY - "$T" <<'PY' && pass "stdin records: ids, subjects and extra fields kept; set labels from them" || fail "stdin records (above)"
import json, sys
d = sys.argv[1]
recs = [json.loads(l) for l in open(f"{d}/st.jsonl")]
errs = []
if len(recs) != 2: errs.append(f"{len(recs)} records")
else:
    a, b = recs
    if (a.get("id"), a.get("subject"), a.get("session"), a.get("meta")) != ("a1", "alice", 2, {"k": [1, "x"], "n": None}): errs.append(f"a1: {a}")
    if (b.get("id"), b.get("subject"), b.get("flag")) != ("b1", "bob", True): errs.append(f"b1: {b}")
    if "error" in a or "error" in b or a.get("row") != 0 or b.get("row") != 1: errs.append("rows/errors")
m = [json.loads(l)["metadata"] for l in open(f"{d}/st.info") if '"metadata"' in l]
if not m or m[0].get("ids") != ["a1", "b1"] or m[0].get("subjects") != ["alice", "bob"]: errs.append(f"metadata {m[:1]}")
for x in errs: print("  ", x)
sys.exit(1 if errs else 0)
PY
# custom field names; a relative path in a records file is relative to that file
printf '%s\n' '{"key":"c1","who":"carol","img":"sample4.jpg"}' >"$T/fields.jsonl"
cp "$SAMPLES/sample4.jpg" "$T/sample4.jpg"
run hfr-embed "${T1[@]}" --id-field key --subject-field who --path-field img -o "$T/fl.hft" -r "$T/fl.jsonl" "$T/fields.jsonl"
expect_rc 0 "custom field names"
grep -q '"id":"c1".*"subject":"carol"' "$T/fl.jsonl" && pass "--id-field/--subject-field/--path-field used" || fail "custom fields: $(cat "$T/fl.jsonl")"

# ---------------------------------------------------------------------------
# Round trip: an output records file is an input (re-embed with another model).
# The image was named relative to the working directory, the records file lies
# in another folder; a record whose image is gone must not keep the old
# record's embeddings, row, box or checksum.
mkdir -p "$T/rt/out"
cp "$SAMPLES/sample3.jpg" "$T/rt/face.jpg"
run sh -c "cd '$T/rt' && hfr-embed -t 1 -o out/a.hft -r out/a.jsonl face.jpg"
expect_rc 0 "relative image path, records written to another folder"
$PY -c "
import json
r = json.loads(open('$T/rt/out/a.jsonl').readline()); r.update(id='gone', path='/nonexistent/gone.jpg')
open('$T/rt/out/a.jsonl', 'a').write(json.dumps(r) + '\n')"
run hfr-embed "${T1[@]}" -m dlib -o "$T/rt/b.hft" -r "$T/rt/b.jsonl" "$T/rt/out/a.jsonl"
expect_rc 3 "records of an earlier run re-embedded with dlib, one image gone"
$PY - "$T/rt/b.jsonl" <<'PY' && pass "round trip: the earlier records' images found again; the failed one keeps no stale fields" || fail "round trip (above)"
import json, sys
recs = {r.get("id"): r for r in map(json.loads, open(sys.argv[1]))}
errs = []
a, g = recs.get("face.jpg", {}), recs.get("gone", {})
if "error" in a or a.get("model") != "dlib" or a.get("embeddings") != "b.hft" or a.get("row") != 0:
    errs.append(f"face.jpg: {json.dumps(a)[:300]}")
if "No such file" not in g.get("error", ""): errs.append(f"gone: error {g.get('error')!r}")
stale = [k for k in ("embeddings", "row", "box", "landmarks", "score", "model", "model_sha256") if k in g]
if stale: errs.append(f"gone: error record keeps the old record's {stale}")
for x in errs: print("  ", x)
sys.exit(1 if errs else 0)
PY

# ---------------------------------------------------------------------------
# 7. --save-model: the saved dlib model gives the same embeddings; a changed
#    byte is refused.
run hfr-embed --save-model "$T/m.hft" -m dlib
expect_rc 0 "--save-model dlib"
hfr-tensor verify "$T/m.hft" >/dev/null 2>&1 && pass "saved model verifies" || fail "saved model does not verify"
run hfr-embed "${T1[@]}" -m "$T/m.hft" --include 'sample[1-3].jpg' -o "$T/mf.hft" -r "$T/mf.jsonl" "$SAMPLES"
expect_rc 0 "embed with the saved model file"
run hfr-embed "${T1[@]}" -m dlib --include 'sample[1-3].jpg' -o "$T/md.hft" -r "$T/md.jsonl" "$SAMPLES"
expect_rc 0 "embed with built-in dlib"
npy "$T/mf.hft" "$T/mf.npy"; npy "$T/md.hft" "$T/md.npy"
close "$T/mf.npy" "$T/md.npy" 1e-6 "saved model file = built-in dlib"
$PY -c "import numpy as np; a=np.load('$T/md.npy'); assert a.shape==(3,128), a.shape" 2>/dev/null && pass "dlib set is [3,128]" || fail "dlib shape"
ck=$(hfr-tensor info --json "$T/m.hft" | $PY -c "import sys,json; [print(json.loads(l)['metadata'].get('checksum')) for l in sys.stdin if '\"metadata\"' in l]" | head -1)
[ -n "$ck" ] && grep -q "\"model\":\"dlib\",\"model_sha256\":\"$ck\"" "$T/mf.jsonl" && grep -q "\"model_sha256\":\"$ck\"" "$T/md.jsonl" &&
  pass "records name the model and its checksum either way" || fail "model fields: $(head -c 300 "$T/mf.jsonl") vs checksum $ck"
$PY -c "
b = bytearray(open('$T/m.hft','rb').read()); b[len(b)//2] ^= 0x5a
open('$T/m-bad.hft','wb').write(b)"
run hfr-embed -m "$T/m-bad.hft" -o "$T/nm/y.hft" "$SAMPLES/sample1.jpg"
expect_rc 1 "model file with one byte changed"
expect_err "m-bad.hft" "error names the corrupt model file"
[ ! -e "$T/nm/y.hft" ] && pass "no output from a corrupt model" || fail "output written with a corrupt model"

# ---------------------------------------------------------------------------
# Outputs that are not regular files: records into a FIFO, the tensor file into
# a process substitution, each in its own run. Both must get the data, and the
# FIFO must stay a FIFO (renaming a temporary over the output path would also
# replace /dev/null with a regular file when run as root).
mkfifo "$T/fifo"
cat "$T/fifo" >"$T/fifo.out" 2>/dev/null &
rp=$!
run hfr-embed "${T1[@]}" -o "$T/ff.hft" -r "$T/fifo" "$SAMPLES/sample1.jpg"
expect_rc 0 "records into a FIFO"
if [ -p "$T/fifo" ]; then pass "the FIFO is still a FIFO"; else fail "the FIFO was replaced by a $(stat -c %F "$T/fifo")"; fi
sleep 0.3; kill $rp 2>/dev/null; wait $rp 2>/dev/null
grep -q '"id":"[^"]*sample1.jpg"' "$T/fifo.out" && pass "the FIFO's reader got the records" || fail "the FIFO's reader got: '$(head -c 200 "$T/fifo.out")'"
run hfr-embed "${T1[@]}" -o >(cat >"$T/ps.hft") -r "$T/ps.jsonl" "$SAMPLES/sample1.jpg"
expect_rc 0 "embeddings into a process substitution (-o >(cmd))"
sleep 0.3
hfr-tensor verify "$T/ps.hft" >/dev/null 2>&1 && pass "the process substitution got a complete tensor file" || fail "process substitution got $(wc -c <"$T/ps.hft") bytes"

# ---------------------------------------------------------------------------
# 9. Broken pipe: quiet, status 0 (or 141), nothing half-written left.
mkdir "$T/pipe"
hfr-embed "${T1[@]}" -b 1 -o "$T/pipe/x.hft" "$SAMPLES" 2>"$T/err" | head -1 >"$T/out"
st=${PIPESTATUS[0]}
{ [ "$st" -eq 0 ] || [ "$st" -eq 141 ]; } && pass "broken pipe: status $st" || fail "broken pipe: status $st"
expect_empty "$T/err" "broken pipe: nothing on stderr"
expect_out '{"id":"sample1.jpg",' "the reader got the first record"
left=$(ls -A "$T/pipe")
{ [ -z "$left" ] || { [ "$left" = x.hft ] && hfr-tensor verify "$T/pipe/x.hft" >/dev/null 2>&1; }; } &&
  pass "broken pipe: no temporary or partial tensor file left (${left:-none})" || fail "broken pipe left: $left"
finish
