#!/usr/bin/env bash
# hfr-eval --quality: error versus reject (EDC) curves of per-face quality
# scores against an independent NumPy implementation written here (after the
# EDC reference code of Schlett et al., ISO/IEC 29794-1), on a score matrix
# with random, tied qualities: probe-only and min(probe, gallery) pair
# qualities, pair records, two folds, plots, and bad quality records.
. "$(dirname "$0")/lib.sh"

require_numpy

# 300 probes (30 of unenrolled subjects) x 80 gallery entries; the mated
# score grows with the probe's quality, qualities rounded to 2 decimals so
# that runs of ties occur; embedding-like records, one failed face.
$PY - "$T" <<'PY'
import json, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(29)
G, P = 80, 300
gs = [f"s{i}" for i in range(G)]
ps = [f"s{i}" for i in rng.integers(0, G, P - 30)] + [f"u{i}" for i in range(30)]
pq = np.round(rng.uniform(0, 1, P), 2)
gq = np.round(rng.uniform(0.3, 1, G), 2)
m = rng.normal(0.0, 0.15, (P, G))
for i, s in enumerate(ps):
    if s in gs:
        m[i, gs.index(s)] += 0.3 + 0.7 * pq[i] * rng.uniform(0.3, 1.2)
m = np.round(m, 3).astype(np.float32)
np.save(f"{d}/m.npy", m)
pid, gid = [f"nir/{i:04d}.png" for i in range(P)], [f"vis/{j:03d}.png" for j in range(G)]
json.dump({"probe_subjects": ps, "gallery_subjects": gs, "probe_ids": pid, "gallery_ids": gid}, open(f"{d}/meta.json", "w"))
with open(f"{d}/probes.jsonl", "w") as f:
    for i in range(P):
        f.write(json.dumps({"id": pid[i], "subject": ps[i], "embeddings": "p.hft", "row": i, "quality": float(pq[i]),
                            "score": round(float(rng.uniform(0.5, 1)), 4)}) + "\n")
    f.write(json.dumps({"id": "nir/failed.png", "error": "no face"}) + "\n")
with open(f"{d}/gallery.jsonl", "w") as f:
    for j in range(G):
        f.write(json.dumps({"id": gid[j], "subject": gs[j], "quality": float(gq[j]), "score": 1.0}) + "\n")
with open(f"{d}/pairs.jsonl", "w") as f:
    for i in range(P):
        for j in range(G):
            f.write(json.dumps({"probe": pid[i], "gallery": gid[j], "score": float(m[i, j]), "mated": ps[i] == gs[j]}) + "\n")
for k, sl in enumerate((slice(0, 150), slice(150, P))):
    np.save(f"{d}/f{k}.npy", m[sl])
    json.dump({"probe_subjects": ps[sl], "gallery_subjects": gs, "probe_ids": pid[sl], "gallery_ids": gid}, open(f"{d}/f{k}.json", "w"))
PY
hfr-tensor import scores="$T/m.npy" --metadata "$(cat "$T/meta.json")" -o "$T/m.hft" || fail "building the matrix"
for k in 0 1; do hfr-tensor import scores="$T/f$k.npy" --metadata "$(cat "$T/f$k.json")" -o "$T/f$k.hft"; done

# The reference: threshold at FMR <= target (the lowest such candidate, as
# bob.measure), pair quality, comparisons rejected lowest pair quality first
# with runs of equal quality together, FNMR of the rest as a step function at
# reject k/100, exact step areas (pAUC as Schlett et al.'s edc.py), the oracle.
cat >"$T/ref.py" <<'PY'
import json, sys
import numpy as np
mat, meta, report, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]  # mode: probe | min
m = np.load(mat).astype(np.float64)
md = json.load(open(meta))
ps, gs, pid, gid = md["probe_subjects"], md["gallery_subjects"], md["probe_ids"], md["gallery_ids"]
q = {}
for f in ("probes.jsonl", "gallery.jsonl"):
    for line in open(f"{sys.argv[5]}/{f}"):
        r = json.loads(line)
        if "error" not in r:
            q[r["id"]] = r["quality"]
mated = np.array([[a == b for b in gs] for a in ps])
gen, imp = m[mated], m[~mated]
fmr = 1e-3
cand = np.unique(np.concatenate([gen, imp]))
far = np.array([(imp >= t).mean() for t in cand])
ok = cand[far <= fmr]
thr = ok.min() if len(ok) else np.nextafter(imp.max(), np.inf)
ii, jj = np.nonzero(mated)
pq = np.array([q[pid[i]] for i in ii])
if mode == "min":
    pq = np.minimum(pq, np.array([q[gid[j]] for j in jj]))
s = m[ii, jj]
order = np.argsort(pq, kind="stable")
pq, s = pq[order], s[order]
N = len(s)
err = (s < thr).astype(np.int64)
left = np.concatenate([np.cumsum(err[::-1])[::-1], [0]])
starts = np.concatenate([[0], np.nonzero(pq[1:] != pq[:-1])[0] + 1])
def fnmr(k100):  # reject k100 / 100
    c = starts[starts * 100 <= k100 * N].max()
    return left[c] / (N - c)
E = left[0]
def oracle(k100):
    c = (k100 * N) // 100
    return max(0, E - c) / (N - c)
d = np.concatenate([starts / N, [1.0]])
e = np.concatenate([left[starts] / (N - starts), [0.0]])
def pauc(limit):  # edc.py's compute_edc_pauc (stepwise)
    a = 0.0
    for i in range(len(d)):
        if i == len(d) - 1 or d[i + 1] >= limit:
            a += e[i] * (limit - d[i]); break
        a += e[i] * (d[i + 1] - d[i])
    return a
def oracle_area(limit):
    a = 0.0
    for c in range(E):
        if c / N >= limit: break
        a += (E - c) / (N - c) * (min((c + 1) / N, limit) - c / N)
    return a
rep = json.load(open(report))
x = rep["curves"]["error_vs_reject"]
bad = []
def close(name, a, b, tol=1e-12):
    if abs(a - b) > tol: bad.append(f"{name}: hfr {a!r} numpy {b!r}")
close("threshold", x["threshold"], thr, 0)
close("comparisons", x["comparisons"], N, 0)
close("fnmr", x["fnmr"], E / N)
if x["pair_quality"] != {"probe": "probe", "min": "min(probe, gallery)"}[mode]: bad.append("pair_quality " + x["pair_quality"])
for k, (r, v) in enumerate(x["curve"]):
    close(f"reject {r}", r, k / 100); close(f"fnmr at {r}", v, fnmr(k))
for k, (r, v) in enumerate(x["oracle"]):
    close(f"oracle at {r}", v, oracle(k))
if len(x["curve"]) != 96: bad.append(f"{len(x['curve'])} curve points")
for a in x["auc"]:
    close(f"area {a['limit']}", a["area"], pauc(a["limit"])); close(f"oracle area {a['limit']}", a["oracle"], oracle_area(a["limit"]))
    close(f"normalised {a['limit']}", a["normalised"], pauc(a["limit"]) / a["limit"])
f0 = rep["folds"][0]["error_vs_reject"]
close("fold fnmr", f0["fnmr"], E / N)
print("\n".join(bad) if bad else f"agree: N={N} E={E} auc={pauc(0.95):.5f} pauc={pauc(0.3):.5f} ties={N - len(starts)}")
sys.exit(1 if bad else 0)
PY
reference() { (cd "$T" && $PY "$T/ref.py" "$T/m.npy" "$T/meta.json" "$1" "$2" "$T"); }

run hfr-eval --bootstrap 0 --json -Q "$T/probes.jsonl" "$T/m.hft"
expect_rc 0 "--quality with probe records"
cp "$T/out" "$T/rp.json"
reference "$T/rp.json" probe >"$T/cmp" && pass "probe quality: EvR curve, areas and oracle agree with NumPy ($(cat "$T/cmp"))" || fail "probe quality: $(head -6 "$T/cmp")"
run hfr-eval --bootstrap 0 --json -Q "$T/probes.jsonl,$T/gallery.jsonl" "$T/m.hft"
expect_rc 0 "--quality with probe and gallery records (a comma list)"
cp "$T/out" "$T/rm.json"
reference "$T/rm.json" min >"$T/cmp" && pass "min(probe, gallery) pair quality agrees with NumPy ($(cat "$T/cmp"))" || fail "min quality: $(head -6 "$T/cmp")"
run hfr-eval --bootstrap 0 --json -Q "$T/gallery.jsonl" -Q "$T/probes.jsonl" "$T/pairs.jsonl"
$PY -c "
import json,sys
a,b=(json.load(open(p))['curves']['error_vs_reject'] for p in ('$T/rm.json','$T/out'))
sys.exit(0 if a==b else 1)" && pass "pair records from hfr-match --pairs give the same curve as the matrix (-Q repeated)" || fail "pair records differ"

# the text table and the areas' order
run hfr-eval --bootstrap 0 -Q "$T/probes.jsonl" "$T/m.hft"
expect_out "error vs reject: FNMR at FMR=0.001" "table has the error versus reject line"
expect_out "AUC[0,0.95]" "table has the AUC over [0, 0.95]"
expect_out "pAUC[0,0.3]" "table has the pAUC over [0, 0.3]"
run hfr-eval --bootstrap 0 --json -Q "$T/probes.jsonl" --reject-fmr 0.01 --reject-auc 0.5 "$T/m.hft"
$PY -c "
import json,sys
x=json.load(open('$T/out'))['curves']['error_vs_reject']
sys.exit(0 if x['fmr_target']==0.01 and [a['limit'] for a in x['auc']]==[0.5] and len(x['curve'])==51 else 1)" &&
  pass "--reject-fmr and --reject-auc" || fail "--reject-fmr/--reject-auc: $(head -c 300 "$T/out")"
run hfr-eval --bootstrap 0 --json -Q "$T/probes.jsonl" --quality-field score "$T/m.hft"
expect_rc 0 "--quality-field score (the detection score as the quality)"
$PY -c "
import json,sys
a,b=(json.load(open(p))['curves']['error_vs_reject'] for p in ('$T/rp.json','$T/out'))
sys.exit(0 if a['threshold']==b['threshold'] and a['fnmr']==b['fnmr'] and a['curve']!=b['curve'] else 1)" &&
  pass "--quality-field: same threshold and start, another ordering" || fail "--quality-field"
run hfr-eval --bootstrap 0 --json -Q "$T/gallery.jsonl" "$T/m.hft"
expect_rc 1 "gallery records alone leave the probes without a quality"
expect_err "has no quality in the --quality records" "names the probe without a quality"

# two folds: per-fold areas, their mean and sample std, the pooled curve
run hfr-eval --bootstrap 0 --json -Q "$T/probes.jsonl" "$T/f0.hft" "$T/f1.hft"
expect_rc 0 "two folds"
$PY - "$T/out" <<'PY' && pass "fold summary of the areas is the mean and sample std of the folds'" || fail "fold summary"
import json, sys, statistics as st
r = json.load(open(sys.argv[1]))
a = [f["error_vs_reject"]["auc"][0]["area"] for f in r["folds"]]
s = r["summary"]["error_vs_reject"]["auc"]["0.95"]
ok = abs(s["mean"] - st.mean(a)) < 1e-12 and abs(s["std"] - st.stdev(a)) < 1e-12 and s["n"] == 2
ok &= all(len(f["error_vs_reject"]["curve"]) == 96 for f in r["folds"])
ok &= r["curves"]["error_vs_reject"]["comparisons"] == sum(f["error_vs_reject"]["comparisons"] for f in r["folds"])
sys.exit(0 if ok else 1)
PY

# plots: PREFIX-evr as SVG and PNG; an earlier report's curve overlaid
run hfr-eval --bootstrap 0 --name probe-q -Q "$T/probes.jsonl" "$T/m.hft" --report "$T/first.json" --plot "$T/p1"
expect_rc 0 "plots with --quality"
[ -s "$T/p1-evr.svg" ] && head -c 8 "$T/p1-evr.png" | od -An -tx1 | grep -q "89 50 4e 47" && pass "evr as SVG and PNG" || fail "evr plot missing"
run hfr-eval --bootstrap 0 --name min-q -Q "$T/probes.jsonl,$T/gallery.jsonl" "$T/m.hft" --compare "$T/first.json" --plot "$T/p2" --plot-format svg
grep -q ">probe-q<" "$T/p2-evr.svg" && grep -q ">min-q<" "$T/p2-evr.svg" && pass "EvR overlay names both runs" || fail "EvR overlay legend"
run hfr-eval --bootstrap 0 "$T/m.hft" --plot "$T/p3" --plot-format svg
[ ! -e "$T/p3-evr.svg" ] && pass "no EvR plot without --quality" || fail "EvR plot without --quality"

# bad quality records: file and line named, exit 1; bad options: exit 2
head -2 "$T/probes.jsonl" >"$T/bad.jsonl"; echo '{"id": "nir/0002.png", "subject": "s1"}' >>"$T/bad.jsonl"
run hfr-eval -Q "$T/bad.jsonl" "$T/m.hft"
expect_rc 1 "a record without quality"
expect_err "bad.jsonl:3 (id nir/0002.png): record has no \"quality\" field" "names file, line and id"
head -3 "$T/probes.jsonl" >"$T/bad.jsonl"; echo '{"id": "nir/0003.png", "quality": "high"}' >>"$T/bad.jsonl"
run hfr-eval -Q "$T/bad.jsonl" "$T/m.hft"
expect_rc 1 "a quality that is not a number"
expect_err "bad.jsonl:4 (id nir/0003.png): \"quality\" is not a number" "names file and line"
echo '{"quality": 0.5}' >"$T/bad.jsonl"
run hfr-eval -Q "$T/bad.jsonl" "$T/m.hft"
expect_rc 1 "a record without id"
expect_err "bad.jsonl:1: record has no \"id\"" "names file and line"
(cat "$T/probes.jsonl"; echo '{"id": "nir/0000.png", "quality": 0.123}') >"$T/bad.jsonl"
run hfr-eval -Q "$T/bad.jsonl" "$T/m.hft"
expect_rc 1 "one id with two qualities"
expect_err "bad.jsonl:302: id 'nir/0000.png' has quality 0.123 here but" "names both places"
grep -v '"nir/0007.png"' "$T/probes.jsonl" >"$T/bad.jsonl"
run hfr-eval -Q "$T/bad.jsonl" "$T/m.hft"
expect_rc 1 "a probe without a quality record"
expect_err "m.hft: probe row 7: probe 'nir/0007.png' has no quality" "names the matrix row and id"
grep -v '"vis/005.png"' "$T/gallery.jsonl" >"$T/badg.jsonl"
run hfr-eval -Q "$T/probes.jsonl,$T/badg.jsonl" "$T/m.hft"
expect_rc 1 "qualities for only some gallery entries"
expect_err "gallery entry 'vis/005.png' has no quality" "names the gallery entry"
$PY -c "import json; m=json.load(open('$T/meta.json')); del m['probe_ids']; json.dump(m, open('$T/noid.json','w'))"
hfr-tensor import scores="$T/m.npy" --metadata "$(cat "$T/noid.json")" -o "$T/noid.hft"
run hfr-eval -Q "$T/probes.jsonl" "$T/noid.hft"
expect_rc 1 "a matrix without probe ids"
expect_err "no 'probe_ids'" "explains the ids are missing"
run hfr-eval -Q "$T/probes.jsonl" --reject-fmr 2 "$T/m.hft"
expect_rc 2 "--reject-fmr out of range"
run hfr-eval -Q "$T/probes.jsonl" --reject-auc 0.3,abc "$T/m.hft"
expect_rc 2 "--reject-auc not a number"
run hfr-eval -Q - "$T/m.hft" - </dev/null
expect_rc 2 "two stdin users"
finish
