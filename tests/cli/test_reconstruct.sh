#!/usr/bin/env bash
# hfr-reconstruct end to end on real photos: records and per-face tensor files
# (shapes, dtypes, value ranges, the fit reprojected independently, metadata),
# previews, --texture-size, the face-mesh model and the fallback to it without
# the ICT FaceKit, grey photos, per-item errors with exit 3 (corrupt, missing,
# faceless, pathless, --faces single, --max-residual), records on stdin with
# pass-through fields, usage errors, atomic outputs, a broken pipe and
# determinism. Needs the fetched npm models (scripts/fetch-models.sh). Without
# the ICT FaceKit ($HFR_SHARED_DATA/ict-facekit) the full-head parts skip with a
# message and the rest runs with -m facemesh; without the ORL faces
# ($HFR_SHARED_DATA/orl-faces) the grey-photo part skips.
. "$(dirname "$0")/lib.sh"

require_numpy_and_face_models
SAMPLES=$SRC/models/face-api
if [ ! -f "$SAMPLES/sample1.jpg" ] || [ ! -f "$SAMPLES/sample5.jpg" ]; then
  echo "skipped: face-api sample photos missing under $SAMPLES (run scripts/fetch-models.sh)" >&2
  exit 77
fi
DATA=${HFR_SHARED_DATA:-$SRC/../shared/data}
ICT=$DATA/ict-facekit
if [ -f "$ICT/neutral.obj" ]; then
  HAVE_ICT=1 M=(--ict "$ICT") MODEL=ict-facekit FMX=(--ict "$ICT")
else
  HAVE_ICT=0 M=(-m facemesh) MODEL=facemesh FMX=()
  echo "skipped part: the ICT FaceKit is not at $ICT (full-head reconstructions; the rest runs with -m facemesh)" >&2
fi
ORL=$DATA/orl-faces
HAVE_ORL=0
[ -f "$ORL/s1/1.pgm" ] && HAVE_ORL=1
# The model is chosen by the options each run gives, never by the environment.
unset HFR_ICT_FACEKIT
# One thread: on a shared machine OpenMP's spin-waiting makes -t 2 two to three
# times slower than -t 1 (as in test_embed.sh). Threads are compared in 10.
T1=(-t 1)
TS=(--texture-size 128)   # where the map size does not matter

# recon.py RECORDS MODEL SIZE GREY [MIN_OK]: every reconstructed record and its
# tensor file, checked against each other and against geometry recomputed here.
cat >"$T/recon.py" <<'PY'
import io, json, math, os, re, subprocess, sys
import numpy as np

recs_path, model, size, grey = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
min_ok = int(sys.argv[5]) if len(sys.argv) > 5 else 1
base = os.path.dirname(os.path.abspath(recs_path))
ict = model == "ict-facekit"
errs = []

def check(c, m):
    if not c: errs.append(m)
    return c

def num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

def tensor(path, name):
    p = subprocess.run(["hfr-tensor", "export", "--tensor", name, path], capture_output=True)
    if p.returncode: raise RuntimeError(f"export {name}: {p.stderr.decode().strip()}")
    return np.load(io.BytesIO(p.stdout))

def info(path):
    p = subprocess.run(["hfr-tensor", "info", "--json", path], capture_output=True, text=True)
    if p.returncode: raise RuntimeError(f"info: {p.stderr.strip()}")
    meta, ts = None, {}
    for l in p.stdout.splitlines():
        j = json.loads(l)
        if j.get("type") == "file": meta = j.get("metadata")
        elif j.get("type") == "tensor": ts[j["name"]] = (j["dtype"], j["shape"])
    return meta, ts

# The 16-point eye contours of the 468-point mesh (MediaPipe indices).
RIGHT_EYE = [246, 161, 160, 159, 158, 157, 173, 33, 7, 163, 144, 145, 153, 154, 155, 133]
LEFT_EYE = [466, 388, 387, 386, 385, 384, 398, 263, 249, 390, 373, 374, 380, 381, 382, 362]
V, T = (26719, 52220) if ict else (468, 898)
want_tensors = {"vertices": ("f32", [V, 3]), "triangles": ("i32", [T, 3]), "uv_triangles": ("i32", [T, 3]),
                "albedo": ("f16", [size, size] if grey else [size, size, 3]), "specular": ("f16", [size, size]),
                "roughness": ("f16", [size, size]), "texel_source": ("u8", [size, size]), "texel_region": ("u8", [size, size]), "rotation": ("f32", [3, 3]),
                "translation": ("f32", [3]), "camera": ("f32", [4]), "landmarks": ("f32", [468, 3]),
                "landmarks_fitted": ("f32", [468, 2]), "landmarks_model": ("f32", [468, 3]),
                "residuals": ("f32", [468]), "landmark_weights": ("f32", [468]), "sh": ("f32", [9, 3])}
if ict: want_tensors.update(identity=("f32", [100]), expression=("f32", [57]))

def check_face(r):
    n = r.get("id")
    p = f"{n}:"
    # --- the record
    check(isinstance(n, str) and isinstance(r.get("path"), str), f"{p} id/path {n!r} {r.get('path')!r}")
    check(isinstance(r.get("face"), int) and isinstance(r.get("faces_found"), int) and 0 <= r["face"] < r["faces_found"],
          f"{p} face {r.get('face')} faces_found {r.get('faces_found')}")
    b = r.get("box")
    check(isinstance(b, list) and len(b) == 4 and all(num(v) for v in b) and b[0] < b[2] and b[1] < b[3], f"{p} box {b}")
    check(num(r.get("score")) and 0.5 <= r["score"] <= 1, f"{p} score {r.get('score')}")
    check(r.get("model") == model, f"{p} model {r.get('model')!r}, expected {model!r}")
    ypr = [r.get(k) for k in ("yaw", "pitch", "roll")]
    check(all(num(v) for v in ypr) and abs(ypr[0]) <= 60 and abs(ypr[1]) <= 45 and abs(ypr[2]) <= 180, f"{p} yaw/pitch/roll {ypr}")
    lim = 0.06 if ict else 0.12   # --max-residual, doubled for the face mesh alone
    check(num(r.get("rms_px")) and r["rms_px"] > 0 and num(r.get("rms_rel")) and 0 < r["rms_rel"] <= lim,
          f"{p} rms_px {r.get('rms_px')} rms_rel {r.get('rms_rel')} (limit {lim})")
    check(num(r.get("coverage")) and 0.2 < r["coverage"] < 1, f"{p} coverage {r.get('coverage')}")
    check(r.get("grey") is grey, f"{p} grey {r.get('grey')!r}, expected {grey}")
    rel = r.get("reconstruction")
    if not check(isinstance(rel, str), f"{p} no reconstruction field"): return False
    f = os.path.join(base, rel)
    if not check(os.path.isfile(f), f"{p} reconstruction {rel} not found relative to the records file"): return False
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", n).lstrip(".")
    check(os.path.basename(f) == stem + ".hft", f"{p} file {os.path.basename(f)} not named after the id")
    if "preview" in r:
        pv = os.path.join(base, r["preview"])
        if check(os.path.isfile(pv), f"{p} preview {r['preview']} not found"):
            h = open(pv, "rb").read(24)
            check(h[:8] == b"\x89PNG\r\n\x1a\n", f"{p} preview is not a PNG")
            w, hh = int.from_bytes(h[16:20], "big"), int.from_bytes(h[20:24], "big")
            check(hh == 512 and w > 512, f"{p} preview {w}x{hh}: expected 512 high, the face next to a 512x512 map")
    # --- the tensor file
    meta, ts = info(f)
    got = {k: (v[0], v[1]) for k, v in ts.items() if k != "uvs"}
    uvs = ts.get("uvs", ("?", []))
    check(uvs[0] == "f32" and len(uvs[1]) == 2 and uvs[1][1] == 2 and uvs[1][0] >= V, f"{p} uvs {uvs}")
    if not check(got == want_tensors, f"{p} tensors {sorted(got.items())} != {sorted(want_tensors.items())}"): return False
    t = {k: tensor(f, k) for k in want_tensors}
    t["uvs"] = tensor(f, "uvs")
    for k, a in t.items():
        if a.dtype.kind == "f": check(np.isfinite(a).all(), f"{p} {k} not finite")
    m = meta or {}
    check(m.get("format") == "hfr-face-reconstruction/1", f"{p} metadata format {m.get('format')!r}")
    face = r.get("face")
    check(isinstance(m.get("id"), str) and (m["id"] + (f"#{face}" if "#" in n else "")) == n and m.get("face") == face,
          f"{p} metadata id {m.get('id')!r} face {m.get('face')} vs record")
    check(isinstance(m.get("source"), str) and os.path.exists(m["source"]) and
          os.path.samefile(m["source"], os.path.join(base, r["path"])), f"{p} metadata source {m.get('source')!r} vs path {r['path']!r}")
    check(m.get("subject") == r.get("subject"), f"{p} metadata subject {m.get('subject')!r} vs {r.get('subject')!r}")
    mm = m.get("model", {})
    check(mm.get("name") == model and mm.get("full_head") is ict, f"{p} metadata model {mm.get('name')} full_head {mm.get('full_head')}")
    check(m.get("grey") is grey and m.get("texture", {}).get("size") == size, f"{p} metadata grey/texture size")
    mb = m.get("box", [])
    check(len(mb) == 4 and all(abs(x - y) <= 0.006 for x, y in zip(mb, b)), f"{p} metadata box {mb} vs {b}")
    check(abs(m.get("pose", {}).get("yaw", 1e9) - ypr[0]) <= 0.006, f"{p} metadata yaw vs record")
    fit = m.get("fit", {})
    check(abs(fit.get("rms_px", 1e9) - r["rms_px"]) <= 6e-4 and abs(fit.get("rms_rel", 1e9) - r["rms_rel"]) <= 6e-5,
          f"{p} metadata fit {fit} vs record")
    W, H = m.get("image_size", [0, 0])

    # geometry
    v, tri, uv, uvt = t["vertices"].astype(np.float64), t["triangles"], t["uvs"], t["uv_triangles"]
    check(tri.min() >= 0 and tri.max() < V and uvt.min() >= 0 and uvt.max() < len(uv), f"{p} triangle indices out of range")
    check(len(np.unique(tri)) == V or ict, f"{p} face-mesh vertices in no triangle")
    check(np.all(np.abs(v) < 25) and np.all(np.ptp(v, axis=0) > 8) and np.all(np.ptp(v, axis=0) < 45),
          f"{p} vertices not head-sized (cm): min {v.min(0)} max {v.max(0)}")
    tex = np.ones(T, bool)
    reg = {g["name"]: g for g in mm.get("regions", [])}
    if ict:
        if check("face" in reg, f"{p} metadata has no face region"):
            tex[:] = False; tex[reg["face"]["triangles"][0]:reg["face"]["triangles"][1]] = True
    tuv = uv[uvt[tex]]
    check(tuv.min() >= 0 and tuv.max() <= 1, f"{p} UVs of textured triangles outside [0,1]: {tuv.min()} {tuv.max()}")
    # maps
    src = t["texel_source"]
    used = src > 0
    check(set(np.unique(src)) <= {0, 1, 2, 3}, f"{p} texel_source values {np.unique(src)}")
    cov = (src == 1).sum() / max(1, used.sum())
    check(abs(cov - r["coverage"]) <= 0.01 and abs(cov - m.get("texture", {}).get("coverage", -1)) <= 1e-4,
          f"{p} observed texels {cov:.4f} vs coverage {r['coverage']} / metadata {m.get('texture', {}).get('coverage')}")
    check(used.mean() > 0.3, f"{p} only {used.mean():.2f} of the texture in use")
    reg_map = t["texel_region"]
    counts = [int((reg_map == k).sum()) for k in range(4)]
    check(set(np.unique(reg_map)) <= {0, 1, 2, 3} and min(counts[1:]) > 0.0005 * size * size and counts[0] > 0.3 * size * size,
          f"{p} texel_region counts (skin, lips, brows, eyes) {counts}")
    alb = t["albedo"].astype(np.float64)
    check(alb.min() >= 0 and alb.max() <= 1, f"{p} albedo outside [0,1]: {alb.min()} {alb.max()}")
    obs = alb[src == 1]
    if check(obs.size > 0, f"{p} no observed texels"):
        mean = obs.mean(axis=0)
        check(np.all(mean > 0.02) and np.all(mean < 0.9), f"{p} mean observed albedo {mean}")
        if not grey: check(mean[0] > mean[2], f"{p} mean observed albedo {mean} is not reddish (skin)")
    sp, ro = t["specular"].astype(np.float64)[used], t["roughness"].astype(np.float64)[used]
    check(sp.min() >= 0.01 and sp.max() <= 0.1, f"{p} specular over textured texels in [{sp.min()}, {sp.max()}]")
    check(ro.min() >= 0.2 and ro.max() <= 0.7, f"{p} roughness over textured texels in [{ro.min()}, {ro.max()}]")
    # pose and camera
    R, tr, cam = t["rotation"].astype(np.float64), t["translation"].astype(np.float64), t["camera"].astype(np.float64)
    check(np.abs(R @ R.T - np.eye(3)).max() < 1e-5 and abs(np.linalg.det(R) - 1) < 1e-5, f"{p} rotation not a rotation: {R}")
    fx, fy, cx, cy = cam
    f40 = max(W, H) / 2 / math.tan(math.radians(20))   # --fov 40 across the longer side
    check(fx > 0 and abs(fx - fy) < 1e-3 * fx and abs(fx - f40) < 1e-3 * f40 and abs(cx - W / 2) < 0.01 and abs(cy - H / 2) < 0.01,
          f"{p} camera {cam} for a {W}x{H} image (fov 40: f {f40:.2f})")
    vc = v @ R.T + tr
    check(10 < tr[2] < 10000 and vc[:, 2].min() > 0, f"{p} head not in front of the camera: t {tr}, min z {vc[:, 2].min()}")
    # The lighting (camera space) lights the face where the camera sees it:
    # positive shading at the normals of the face vertices facing the camera.
    fv = reg["face"]["vertices"][1] if ict else V
    fn = np.cross(vc[tri[:, 1]] - vc[tri[:, 0]], vc[tri[:, 2]] - vc[tri[:, 0]])
    vn = np.zeros_like(vc)
    for k in range(3): np.add.at(vn, tri[:, k], fn)
    vn = vn[:fv] / (np.linalg.norm(vn[:fv], axis=1, keepdims=True) + 1e-12)
    cosv = (vn * -vc[:fv] / np.linalg.norm(vc[:fv], axis=1, keepdims=True)).sum(1)
    if np.median(cosv) < 0: vn, cosv = -vn, -cosv   # winding
    x, y, z = vn[cosv > 0.3].T
    B = np.stack([np.full_like(x, 0.282095), *(2 / 3 * 0.488603 * c for c in (y, z, x)), 0.25 * 1.092548 * x * y,
                  0.25 * 1.092548 * y * z, 0.25 * 0.315392 * (3 * z * z - 1), 0.25 * 1.092548 * x * z,
                  0.25 * 0.546274 * (x * x - y * y)], 1)
    shade = B @ t["sh"].astype(np.float64)
    check(x.size > 0.3 * fv and np.all(np.median(shade, 0) > 0.1) and np.all((shade <= 0).mean(0) < 0.15),
          f"{p} SH lighting on the {x.size} face vertices facing the camera: median {np.median(shade, 0)}, "
          f"non-positive {(shade <= 0).mean(0)}")
    # the fit, reprojected here
    lm, fitd, lmod, res = (t[k].astype(np.float64) for k in ("landmarks", "landmarks_fitted", "landmarks_model", "residuals"))
    check(lm[:, 0].min() > -0.1 * W and lm[:, 0].max() < 1.1 * W and lm[:, 1].min() > -0.1 * H and lm[:, 1].max() < 1.1 * H,
          f"{p} landmarks outside the image")
    def project(X):
        Xc = X @ R.T + tr
        return np.stack([fx * Xc[:, 0] / Xc[:, 2] + cx, fy * Xc[:, 1] / Xc[:, 2] + cy], 1)
    pr = project(lmod)
    d_fit = np.abs(pr - fitd).max()
    check(d_fit < 0.05, f"{p} landmarks_model projected with rotation/translation/camera is {d_fit:.3f} px off landmarks_fitted")
    dist = np.linalg.norm(pr - lm[:, :2], axis=1)
    check(np.abs(dist - res).max() < 0.01, f"{p} residuals are not |projection - landmark| (off by {np.abs(dist - res).max():.3g})")
    eye = np.linalg.norm(lm[RIGHT_EYE, :2].mean(0) - lm[LEFT_EYE, :2].mean(0))
    check(abs(eye - fit.get("eye_distance_px", 0)) < 1e-3 * eye, f"{p} eye distance {eye:.2f} vs metadata {fit.get('eye_distance_px')}")
    check(dist.mean() < lim * eye, f"{p} mean reprojection error {dist.mean():.2f} px >= {lim} x eye distance {eye:.1f}")
    lw = t["landmark_weights"].astype(np.float64)
    check(np.all(lw > 0) and np.all(lw <= 1), f"{p} landmark weights outside (0, 1]")
    wrms = np.sqrt((lw * dist ** 2).sum() / lw.sum())
    check(abs(wrms - r["rms_px"]) < 2e-3 + 1e-3 * wrms, f"{p} rms_px {r['rms_px']} != weighted RMS of the residuals {wrms:.4f}")
    check(abs(r["rms_rel"] - r["rms_px"] / eye) < 2e-4, f"{p} rms_rel {r['rms_rel']} != rms_px / eye distance {r['rms_px'] / eye:.4f}")
    if ict:
        # the landmarks lie on the fitted surface: each near a vertex of the mesh written
        # (on a face mesh with vertices ~0.2-0.5 cm apart: median ~0.09 cm to the nearest)
        vv = (v ** 2).sum(1)
        near = np.concatenate([np.sqrt(np.maximum(vv[None, :] - 2 * lmod[i:i + 52] @ v.T + (lmod[i:i + 52] ** 2).sum(1)[:, None], 0)).min(1)
                               for i in range(0, 468, 52)])
        check(np.median(near) < 0.15 and near.max() < 0.6,
              f"{p} fitted landmarks vs the vertices written: median {np.median(near):.3f} cm, max {near.max():.3f} cm to the nearest vertex")
        a, e = t["identity"], t["expression"]
        check(np.all(a[80:] == 0) and np.abs(a[:80]).max() > 0 and np.abs(a).max() < 10,
              f"{p} identity: {np.abs(a[:80]).max()} in the 80 fitted modes, {np.abs(a[80:]).max()} beyond")
        check(e.min() >= 0 and e.max() <= 1, f"{p} expression weights outside [0,1]: {e.min()} {e.max()}")
    else:
        # the face mesh's vertices are the network's points: they project onto the landmarks
        dv = np.abs(project(v) - lm[:, :2]).max()
        check(dv < 0.05, f"{p} face-mesh vertices project {dv:.3f} px off the landmarks")
    return True

recs = [json.loads(l) for l in open(recs_path)]
ok = 0
for r in recs:
    if "error" in r: continue
    try:
        ok += check_face(r)
    except Exception as e:
        errs.append(f"{r.get('id')}: {type(e).__name__}: {e}")
check(ok >= min_ok, f"{ok} faces checked, expected at least {min_ok}")
for x in errs[:25]: print("  ", x)
if not errs: print(f"  {ok} reconstructions checked")
sys.exit(1 if errs else 0)
PY

# ---------------------------------------------------------------------------
# 1. ICT full head, two group photos, every face, previews; the records file
#    in another folder than the outputs (relative references).
if [ $HAVE_ICT -eq 1 ]; then
  mkdir "$T/recs"
  run hfr-reconstruct "${T1[@]}" --ict "$ICT" --faces all --include 'sample[12].jpg' --preview "$T/pv" -O "$T/ict" \
    -r "$T/recs/main.jsonl" "$SAMPLES"
  if [ "$RC" -eq 0 ] || [ "$RC" -eq 3 ]; then pass "ICT run on sample1+2 (exit $RC)"; else fail "ICT run: exit $RC: $(head -c 400 "$T/err")"; fi
  expect_empty "$T/out" "records go to -r, not stdout"
  $PY - "$T" "$RC" <<'PY' && pass "one record per face (ids sample1.jpg#0..), exit status agrees with the error records, one file per face" || fail "main records (above)"
import json, os, sys
d, rc = sys.argv[1], int(sys.argv[2])
recs = [json.loads(l) for l in open(f"{d}/recs/main.jsonl")]
errs = []
ids = [r.get("id") for r in recs]
want = [f"sample{i}.jpg#{j}" for i in (1, 2) for j in range(3)]
if ids != want: errs.append(f"ids {ids}, expected {want} (3 faces in each photo)")
if [r.get("face") for r in recs] != [0, 1, 2] * 2 or any(r.get("faces_found") != 3 for r in recs): errs.append("face / faces_found")
bad = [r for r in recs if "error" in r]
if (rc == 3) != bool(bad): errs.append(f"exit {rc} with {len(bad)} error records")
for r in bad:
    if "reconstruction" in r or "preview" in r or "coverage" in r: errs.append(f"{r['id']}: error record names outputs: {r}")
    if not any(w in r["error"] for w in ("poor fit", "profile view", "pitch")): errs.append(f"{r['id']}: unexpected error {r['error']!r}")
files = sorted(os.listdir(f"{d}/ict"))
want_files = sorted(r["id"].replace("#", "_") + ".hft" for r in recs if "error" not in r)
if files != want_files: errs.append(f"output folder {files}, expected {want_files}")
pv = sorted(os.listdir(f"{d}/pv"))
if pv != [f[:-4] + ".png" for f in want_files]: errs.append(f"preview folder {pv}")
if len(recs) - len(bad) < 4: errs.append(f"only {len(recs) - len(bad)} of 6 faces reconstructed")
if any("subject" in r for r in recs): errs.append("a subject from a top-level folder")
for x in errs: print("  ", x)
sys.exit(1 if errs else 0)
PY
  $PY "$T/recon.py" "$T/recs/main.jsonl" ict-facekit 512 0 4 && pass "ICT reconstructions: tensors, ranges, pose, camera, reprojection, metadata" ||
    fail "ICT reconstructions (above)"
fi

# ---------------------------------------------------------------------------
# 2. --texture-size 128 (also the determinism runs of section 10).
mkdir "$T/d1" "$T/d2" "$T/d3"
DET=("${TS[@]}" "${M[@]}" --preview pv -O out -r recs.jsonl "$SAMPLES/sample1.jpg")
(cd "$T/d1" && hfr-reconstruct -q "${T1[@]}" "${DET[@]}") || fail "--texture-size 128 run"
$PY "$T/recon.py" "$T/d1/recs.jsonl" $MODEL 128 0 1 && pass "--texture-size 128: 128x128 maps" || fail "--texture-size 128 (above)"

# ---------------------------------------------------------------------------
# 3. The face mesh alone: -m facemesh (the ICT FaceKit given but not used), and
#    the fallback when no ICT FaceKit is found.
run hfr-reconstruct "${T1[@]}" "${TS[@]}" -m facemesh ${FMX[@]+"${FMX[@]}"} -O "$T/fm" -r "$T/fm.jsonl" "$SAMPLES/sample3.jpg"
expect_rc 0 "-m facemesh"
grep -q "ICT FaceKit" "$T/err" && fail "-m facemesh warns about the ICT FaceKit: $(cat "$T/err")" || pass "-m facemesh: no ICT warning"
$PY "$T/recon.py" "$T/fm.jsonl" facemesh 128 0 1 && pass "-m facemesh: [468,3] vertices, [898,3] triangles, no coefficients" || fail "-m facemesh (above)"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BIN/../CMakeCache.txt" 2>/dev/null)
if [ -d "${prefix:-/usr/local}/share/hfr/ict-facekit" ]; then
  echo "skipped part: an installed ICT FaceKit (${prefix:-/usr/local}/share/hfr/ict-facekit) prevents the fallback" >&2
else
  run hfr-reconstruct "${T1[@]}" "${TS[@]}" -O "$T/fb" -r "$T/fb.jsonl" "$SAMPLES/sample3.jpg"
  expect_rc 0 "no --ict, no HFR_ICT_FACEKIT"
  expect_err "the ICT FaceKit was not found" "fallback warns that the ICT FaceKit was not found"
  $PY "$T/recon.py" "$T/fb.jsonl" facemesh 128 0 1 && pass "fallback: a face-mesh reconstruction" || fail "fallback (above)"
  f1=$(ls "$T/fm"/*.hft 2>/dev/null) f2=$(ls "$T/fb"/*.hft 2>/dev/null)
  cmp -s "$f1" "$f2" && pass "fallback = -m facemesh, byte for byte" || fail "fallback and -m facemesh differ ($f1 vs $f2)"
  run hfr-reconstruct -m ict -O "$T/noict" "$SAMPLES/sample3.jpg"
  expect_rc 1 "-m ict without the ICT FaceKit"
  expect_err "the ICT FaceKit was not found (give --ict DIR or set HFR_ICT_FACEKIT" "-m ict says where to give it"
  [ ! -e "$T/noict" ] && pass "-m ict failure creates no output folder" || fail "-m ict failure left $T/noict"
fi
run hfr-reconstruct --ict "$T/nosuch-ict" -O "$T/noict" "$SAMPLES/sample3.jpg"
expect_rc 1 "--ict naming a missing folder"
expect_err "$T/nosuch-ict: ICT FaceKit directory not found" "the missing ICT folder is named"

# ---------------------------------------------------------------------------
# 4. Grey photos: ORL (92x112 PGM), the subject from the sub-folder.
if [ $HAVE_ORL -eq 1 ]; then
  run hfr-reconstruct "${T1[@]}" "${TS[@]}" "${M[@]}" --min-face 40 --include 's1/1.pgm' --include 's10/4.pgm' \
    -O "$T/grey" -r "$T/grey.jsonl" "$ORL"
  expect_rc 0 "ORL grey photos"
  $PY "$T/recon.py" "$T/grey.jsonl" $MODEL 128 1 2 && pass "grey: grey true, [128,128] albedo" || fail "grey photos (above)"
  $PY - "$T/grey.jsonl" <<'PY' && pass "grey: ids s1/1.pgm and s10/4.pgm, subjects s1 and s10" || fail "grey records: $(cat "$T/grey.jsonl")"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if [(r.get("id"), r.get("subject")) for r in recs] == [("s1/1.pgm", "s1"), ("s10/4.pgm", "s10")] else 1)
PY
else
  echo "skipped part: ORL faces not found at $ORL (grey photos)" >&2
fi

# ---------------------------------------------------------------------------
# 5. Bad input among good: per-item error records, the good faces
#    reconstructed, exit 3. The ICT FaceKit given through $HFR_ICT_FACEKIT.
mkdir "$T/bad"
cp "$SAMPLES/sample3.jpg" "$T/bad/good.jpg"
head -c 1000 "$SAMPLES/sample1.jpg" >"$T/bad/corrupt.jpg"
$PY -c "open('$T/bad/flat.ppm', 'wb').write(b'P6 320 240 255\n' + bytes([120, 100, 90]) * (320 * 240))"
printf '{"id":"viarec","path":"bad/good.jpg"}\n{"id":"nopath","subject":"z"}\n{"id": broken\n' >"$T/recs.jsonl"
if [ $HAVE_ICT -eq 1 ]; then BAD=(); export HFR_ICT_FACEKIT=$ICT; else BAD=(-m facemesh); fi
run hfr-reconstruct "${T1[@]}" "${TS[@]}" ${BAD[@]+"${BAD[@]}"} -O "$T/bo" -r "$T/bo.jsonl" "$T/bad" "$T/nosuch.jpg" "$T/recs.jsonl"
unset HFR_ICT_FACEKIT
expect_rc 3 "bad items among good ones"
$PY - "$T" $MODEL <<'PY' && pass "each bad item has one error record naming the problem; the good ones reconstructed" || fail "bad-input records (above)"
import json, os, sys
d, model = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(f"{d}/bo.jsonl")]
by = {r.get("id"): r for r in recs}
errs = []
want_err = {"corrupt.jpg": "corrupt or truncated JPEG", f"{d}/nosuch.jpg": "No such file or directory", "flat.ppm": "no face",
            "nopath": 'no string field "path"', f"{d}/recs.jsonl:3": "malformed JSON"}
for k, v in want_err.items():
    r = by.get(k, {})
    if v not in r.get("error", ""): errs.append(f"{k}: error {r.get('error')!r}, expected {v!r}")
    if "reconstruction" in r or "box" in r: errs.append(f"{k}: error record with outputs: {r}")
if by.get("nopath", {}).get("subject") != "z": errs.append("nopath: subject not kept on the error record")
for k in ("good.jpg", "viarec"):
    r = by.get(k, {})
    if "error" in r or r.get("model") != model or not os.path.isfile(os.path.join(d, r.get("reconstruction", "-"))):
        errs.append(f"{k}: {r}")
if len(recs) != 7 or len(by) != 7: errs.append(f"{len(recs)} records: {[r.get('id') for r in recs]}")
if sorted(os.listdir(f"{d}/bo")) != ["good.jpg.hft", "viarec.hft"]: errs.append(f"output folder {os.listdir(f'{d}/bo')}")
for x in errs: print("  ", x)
sys.exit(1 if errs else 0)
PY
expect_err "nosuch.jpg: No such file or directory" "the missing file is named on stderr"
expect_err "2 faces reconstructed, 5 failed" "summary counts faces and failures"

run hfr-reconstruct "${T1[@]}" "${TS[@]}" "${M[@]}" --faces single -O "$T/single" -r "$T/single.jsonl" "$SAMPLES/sample1.jpg"
expect_rc 3 "--faces single on a group photo"
grep -q '"error":"[^"]*3 faces found, --faces single' "$T/single.jsonl" && [ "$(wc -l <"$T/single.jsonl")" -eq 1 ] &&
  pass "--faces single: one error record naming the face count and the policy" || fail "--faces single: $(cat "$T/single.jsonl")"
[ -z "$(ls -A "$T/single" 2>/dev/null)" ] && pass "--faces single: no tensor file" || fail "--faces single wrote $(ls -A "$T/single")"

run hfr-reconstruct "${T1[@]}" "${TS[@]}" "${M[@]}" --faces all --max-residual 0.0001 --preview "$T/mrpv" -O "$T/mr" \
  -r "$T/mr.jsonl" "$SAMPLES/sample1.jpg"
expect_rc 3 "--max-residual 0.0001"
$PY - "$T/mr.jsonl" <<'PY' && pass "--max-residual 0.0001: every face a 'poor fit' error with its RMS, no outputs named" || fail "--max-residual: $(cat "$T/mr.jsonl")"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ok = len(recs) == 3 and all("poor fit" in r.get("error", "") and r.get("rms_rel", 0) > 0.0001 and "reconstruction" not in r
                            and "preview" not in r for r in recs)
sys.exit(0 if ok else 1)
PY
left=$(find "$T/mr" "$T/mrpv" ! -type d 2>&1)
[ -z "$left" ] && pass "--max-residual: no tensor file or preview written" || fail "--max-residual left: $left"

# ---------------------------------------------------------------------------
# 6. Records on stdin: relative paths from the working directory, id and
#    subject used, other fields passed through, stale output fields dropped.
printf '%s\n' '{"id":"a1","path":"sample3.jpg","subject":"alice","extra":7,"meta":{"k":[1,"x"],"n":null}}' \
  '{"path":"sample4.jpg","subject":"bob","error":"stale","reconstruction":"old.hft","coverage":0.9}' >"$T/stdin.jsonl"
cd "$SAMPLES" || exit 1
run hfr-reconstruct "${T1[@]}" "${TS[@]}" "${M[@]}" -O "$T/st" - <"$T/stdin.jsonl"
cd - >/dev/null || exit 1
expect_rc 0 "records on stdin, records to stdout"
$PY - "$T" <<'PY' && pass "stdin: ids, subjects, pass-through fields kept; stale fields replaced; files named after the ids" || fail "stdin records (above)"
import json, os, sys
d = sys.argv[1]
recs = [json.loads(l) for l in open(f"{d}/out")]
errs = []
if len(recs) != 2: errs.append(f"{len(recs)} records")
else:
    a, b = recs
    if (a.get("id"), a.get("subject"), a.get("extra"), a.get("meta")) != ("a1", "alice", 7, {"k": [1, "x"], "n": None}): errs.append(f"a1: {a}")
    if (b.get("id"), b.get("subject")) != ("sample4.jpg", "bob"): errs.append(f"second: {b}")
    if "error" in b or b.get("reconstruction") in (None, "old.hft") or b.get("coverage") == 0.9: errs.append(f"stale fields kept: {b}")
    for r, n in ((a, "a1.hft"), (b, "sample4.jpg.hft")):
        f = r.get("reconstruction", "")
        if os.path.basename(f) != n or not os.path.isfile(f): errs.append(f"{r.get('id')}: reconstruction {f!r}")
    m = [json.loads(l)["metadata"] for l in os.popen(f"hfr-tensor info --json {d}/st/a1.hft") if '"metadata"' in l]
    if not m or m[0].get("subject") != "alice" or m[0].get("id") != "a1": errs.append(f"a1 metadata {m[:1]}")
for x in errs: print("  ", x)
sys.exit(1 if errs else 0)
PY

# ---------------------------------------------------------------------------
# 7. Usage errors: exit 2, a message, nothing created.
run hfr-reconstruct "$SAMPLES/sample1.jpg"
expect_rc 2 "no -O"
expect_err "-O/--output-dir DIR" "missing -O is explained"
expect_empty "$T/out" "no -O: no records"
for u in "--texture-size 5:--texture-size" "--fov 0:--fov" "--model nope:'nope' for --model" "--min-score 2:--min-score" \
  "--max-residual 0:--max-residual"; do
  run hfr-reconstruct ${u%%:*} -O "$T/usage" "$SAMPLES/sample1.jpg"
  expect_rc 2 "${u%%:*}"
  expect_err "${u#*:}" "${u%%:*} is explained"
done
run hfr-reconstruct -O "$T/usage"
expect_rc 2 "no inputs"
[ ! -e "$T/usage" ] && pass "usage errors create no output folder" || fail "a usage error created $T/usage"

# ---------------------------------------------------------------------------
# 9. Broken pipe: records to a closed pipe end the run quietly.
hfr-reconstruct "${T1[@]}" "${TS[@]}" "${M[@]}" -b 1 -O "$T/pipe" "$SAMPLES/sample3.jpg" "$SAMPLES/sample4.jpg" \
  "$SAMPLES/sample5.jpg" 2>"$T/err" | head -c 10 >"$T/out"
st=${PIPESTATUS[0]}
{ [ "$st" -eq 0 ] || [ "$st" -eq 141 ]; } && pass "broken pipe: status $st" || fail "broken pipe: status $st"
expect_empty "$T/err" "broken pipe: nothing on stderr"
[ "$(head -c 7 "$T/out")" = '{"id":"' ] && pass "the reader got the start of a record" ||
  fail "the reader got '$(cat "$T/out")'"
for f in "$T/pipe"/*; do [ -e "$f" ] && { hfr-tensor verify "$f" >/dev/null 2>&1 || fail "broken pipe left an incomplete $f"; }; done

# ---------------------------------------------------------------------------
# 10. Determinism: the same run twice is byte-identical (tensor files,
#     previews, records); two threads change nothing beyond float rounding.
(cd "$T/d2" && hfr-reconstruct -q "${T1[@]}" "${DET[@]}") || fail "determinism run 2"
(cd "$T/d3" && hfr-reconstruct -q -t 2 "${DET[@]}") || fail "determinism run with -t 2"
same=1
for f in "$T/d1/out"/* "$T/d1/pv"/* "$T/d1/recs.jsonl"; do
  cmp -s "$f" "$T/d2/${f#"$T/d1/"}" || { same=0; fail "differs between identical runs: ${f#"$T/d1/"}"; }
done
[ $same -eq 1 ] && [ -n "$(ls "$T/d1/out")" ] && pass "two identical runs: byte-identical tensor files, previews and records"
f=$(ls "$T/d1/out")
$PY - "$T/d1/out/$f" "$T/d3/out/$f" <<'PY' && pass "-t 1 vs -t 2: same fit and maps within float rounding" || fail "-t 1 vs -t 2 (above)"
import io, subprocess, sys
import numpy as np
def t(f, n):
    return np.load(io.BytesIO(subprocess.run(["hfr-tensor", "export", "--tensor", n, f], capture_output=True, check=True).stdout)).astype(np.float64)
a, b = sys.argv[1], sys.argv[2]
d = {n: np.abs(t(a, n) - t(b, n)) for n in ("vertices", "landmarks", "albedo", "texel_source", "translation")}
print("   max |diff|: " + ", ".join(f"{n} {v.max():.3g}" for n, v in d.items()) + f"; albedo mean {d['albedo'].mean():.2g}")
ok = d["vertices"].max() < 0.01 and d["landmarks"].max() < 0.05 and d["translation"].max() < 0.05
ok &= d["albedo"].mean() < 1e-3 and (d["texel_source"] > 0).mean() < 1e-3
sys.exit(0 if ok else 1)
PY

# ---------------------------------------------------------------------------
# 8. Atomic outputs: no temporaries left anywhere.
left=$(find "$T" -name '*.tmp.*')
[ -z "$left" ] && pass "no temporary files left in any output folder" || fail "temporaries left: $left"
finish
