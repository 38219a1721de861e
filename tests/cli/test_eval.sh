#!/usr/bin/env bash
# hfr-eval against scikit-learn/NumPy (tests/reference/metrics_reference.py) on
# the same scores, to 1e-9: AUC, EER, TAR@FAR under both conventions, ranks,
# CMC, DIR@FPIR; folds; score-file formats; plots and overlays; bad input; and
# a CASIA NIR-VIS 2.0 protocol fold end to end on stand-in lists.
. "$(dirname "$0")/lib.sh"

if ! $PY -c 'import numpy, sklearn' 2>/dev/null; then
  echo "skipped: /usr/bin/python3 with numpy and sklearn (Debian python3-numpy, python3-sklearn) is not installed" >&2
  exit 77
fi
REF="$PY $SRC/tests/reference/metrics_reference.py"

# A probe x gallery score matrix: 120 enrolled subjects, 40 probes of
# unenrolled subjects (open set); scores rounded so that ties occur.
$PY - "$T" <<'PY'
import json, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(21)
G, P = 120, 400
gs = [f"s{i}" for i in range(G)]
ps = [f"s{i}" for i in rng.integers(0, G, P - 40)] + [f"u{i}" for i in range(40)]
m = rng.normal(0.0, 0.15, (P, G))
for i, s in enumerate(ps):
    if s in gs:
        m[i, gs.index(s)] += rng.uniform(0.2, 0.9)
m = np.round(m, 3).astype(np.float32)
np.save(f"{d}/m.npy", m)
open(f"{d}/p.txt", "w").write("\n".join(ps) + "\n")
open(f"{d}/g.txt", "w").write("\n".join(gs) + "\n")
json.dump({"probe_subjects": ps, "gallery_subjects": gs, "probe_ids": [f"q{i}" for i in range(P)],
           "gallery_ids": [f"t{i}" for i in range(G)]}, open(f"{d}/meta.json", "w"))
with open(f"{d}/pairs.txt", "w") as f:
    for i, s in enumerate(ps):
        for j, t in enumerate(gs):
            f.write(f"{float(m[i, j])!r} {int(s == t)}\n")
with open(f"{d}/s.4col", "w") as f:
    f.write("# claimed real probe score\n")
    for i, s in enumerate(ps):
        for j, t in enumerate(gs):
            f.write(f"{t} {s} q{i} {float(m[i, j])!r}\n")
# two folds: the first and second half of the probes
for k, sl in enumerate((slice(0, 200), slice(200, P))):
    np.save(f"{d}/f{k}.npy", m[sl])
    json.dump({"probe_subjects": ps[sl], "gallery_subjects": gs}, open(f"{d}/f{k}.json", "w"))
    open(f"{d}/f{k}.txt", "w").write("\n".join(ps[sl]) + "\n")
PY
hfr-tensor import scores="$T/m.npy" --metadata "$(cat "$T/meta.json")" -o "$T/m.hft" || fail "building the matrix"
for k in 0 1; do hfr-tensor import scores="$T/f$k.npy" --metadata "$(cat "$T/f$k.json")" -o "$T/f$k.hft"; done

FARS="--far 0.1 --far 0.01 --far 0.001 --far 0.0001 --far 0.00003"
$REF verification "$T/pairs.txt" $FARS >"$T/ref_v.json" || fail "reference verification"
$REF identification --matrix "$T/m.npy" --probe-labels "$T/p.txt" --gallery-labels "$T/g.txt" --max-rank 50 --fpir 0.1 --fpir 0.05 >"$T/ref_i.json" || fail "reference identification"

compare() { # report.json convention -> compares with the references
  $PY - "$1" "$T/ref_v.json" "$T/ref_i.json" "$2" <<'PY'
import json, sys
rep, rv, ri, conv = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), sys.argv[4]
f = rep["folds"][0]
bad = []
def close(name, a, b, tol=1e-9):
    if a is None or b is None or abs(a - b) > tol:
        bad.append(f"{name}: hfr {a} sklearn {b}")
v = f["verification"]
close("genuine", v["genuine"], rv["genuine"], 0); close("impostor", v["impostor"], rv["impostor"], 0)
close("auc", v["auc"], rv["auc"])
for k in ("eer", "far", "frr", "threshold"):
    close(f"eer.{k}", v["eer"][k], rv["eer"][k])
for a, b in zip(v["tar_at_far"], rv["tar_at_far"][conv]):
    for k in ("far", "tar"):
        close(f"{conv} tar_at_far[{a['target']}].{k}", a[k], b[k])
    if b["threshold"] is not None and b["far"] > 0:
        close(f"{conv} tar_at_far[{a['target']}].threshold", a["threshold"], b["threshold"])
if "identification" in f:
    i = f["identification"]
    close("probes", i["probes"], len(ri["ranks"]), 0)
    for k, a in enumerate(i["cmc"]):
        close(f"cmc[{k+1}]", a, ri["cmc"][k])
    for a, b in zip(f["open_set"]["dir_at_fpir"], ri["dir_at_fpir"]):
        for k in ("threshold", "fpir", "dir"):
            close(f"dir_at_fpir[{a['target']}].{k}", a[k], b[k])
print("\n".join(bad) if bad else "all metrics agree")
sys.exit(1 if bad else 0)
PY
}

OPTS="--far 0.1,0.01,0.001,0.0001,0.00003 --fpir 0.1,0.05 --bootstrap 0"
for conv in at-most nearest; do
  run hfr-eval $OPTS --convention $conv --json "$T/m.hft"
  expect_rc 0 "matrix, $conv"
  cp "$T/out" "$T/rep.json"
  compare "$T/rep.json" $conv >"$T/cmp" && pass "matrix, $conv: every metric agrees with scikit-learn/NumPy to 1e-9" || fail "matrix $conv: $(head -8 "$T/cmp")"
done
run hfr-eval $OPTS --json --format 4col "$T/s.4col"
expect_rc 0 "bob 4-column score file"
compare "$T/out" at-most >"$T/cmp" && pass "4-column file: metrics agree with scikit-learn (ranks too: all probes x all references)" || fail "4col: $(head -8 "$T/cmp")"
hfr-tensor export --tensor scores "$T/m.hft" -o "$T/plain.npy" && hfr-tensor import scores="$T/plain.npy" -o "$T/plain.hft"
run hfr-eval $OPTS --json --probe-labels "$T/p.txt" --gallery-labels "$T/g.txt" "$T/plain.hft"
compare "$T/out" at-most >"$T/cmp" && pass "matrix + label lists" || fail "label lists: $(head -5 "$T/cmp")"

# the text table for people
run hfr-eval $OPTS "$T/m.hft"
expect_out "FAR target" "table has the TAR@FAR section"
expect_out "Rank-1 " "table has ranks"
expect_out "DIR@FPIR=0.1" "table has open-set DIR"

# folds: mean and sample std over the per-fold values
run hfr-eval $OPTS --json "$T/f0.hft" "$T/f1.hft"
expect_rc 0 "two folds"
$PY - "$T/out" <<'PY' && pass "fold summary is the mean and sample std of the folds" || fail "fold summary"
import json, sys, statistics as st
r = json.load(open(sys.argv[1]))
a = [f["verification"]["auc"] for f in r["folds"]]
s = r["summary"]["auc"]
ok = abs(s["mean"] - st.mean(a)) < 1e-12 and abs(s["std"] - st.stdev(a)) < 1e-12 and s["n"] == 2
r1 = [f["identification"]["rank"]["1"] for f in r["folds"]]
ok &= abs(r["summary"]["rank"]["1"]["mean"] - st.mean(r1)) < 1e-12
sys.exit(0 if ok else 1)
PY

# bootstrap interval on a thin target; deterministic for a seed
run hfr-eval --far 0.0001 --bootstrap 500 --seed 3 --json "$T/m.hft"
cp "$T/out" "$T/b1"
run hfr-eval --far 0.0001 --bootstrap 500 --seed 3 --json "$T/m.hft"
$PY - "$T/b1" "$T/out" <<'PY' && pass "bootstrap interval on a thin FAR target, same for the same seed" || fail "bootstrap"
import json, sys
a, b = (json.load(open(p))["folds"][0]["verification"]["tar_at_far"][0] for p in sys.argv[1:3])
ci = a["ci"]
sys.exit(0 if ci == b["ci"] and ci["low"] <= a["tar"] <= ci["high"] and ci["replicates"] == 500 else 1)
PY

# pairs records from hfr-match flow into hfr-eval; score conversion round-trips
run hfr-eval $OPTS "$T/m.hft" --write-scores "$T/w.csv" --score-format csv --report "$T/r1.json"
expect_rc 0 "report and score conversion"
run hfr-eval $OPTS --json "$T/w.csv"
$PY -c "import json,sys; a=json.load(open('$T/r1.json'))['folds'][0]['verification']; b=json.load(open('$T/out'))['folds'][0]['verification']; sys.exit(0 if a['auc']==b['auc'] and a['eer']==b['eer'] else 1)" &&
  pass "scores written as CSV read back to the same metrics" || fail "CSV round trip"

# plots: ROC, DET, CMC as SVG and PNG, and an overlay of an earlier report
run hfr-eval $OPTS --name first "$T/f0.hft" --report "$T/first.json" --plot "$T/p1"
expect_rc 0 "plots"
for c in roc det cmc; do
  [ -s "$T/p1-$c.svg" ] && head -c 8 "$T/p1-$c.png" | od -An -tx1 | grep -q "89 50 4e 47" && pass "$c as SVG and PNG" || fail "$c plot missing"
done
run hfr-eval $OPTS --name second "$T/f1.hft" --compare "$T/first.json" --plot "$T/p2" --plot-format svg
grep -q ">first<" "$T/p2-roc.svg" && grep -q ">second<" "$T/p2-roc.svg" && pass "overlay names both runs in the legend" || fail "overlay legend"
[ ! -e "$T/p2-roc.png" ] && pass "--plot-format svg writes SVG only" || fail "png written"
run hfr-eval $OPTS "$T/f0.hft" --report "$T/nd.json" --plot "$T/new/plots/p" --plot-format svg
expect_rc 0 "--plot into a folder that does not exist yet"
[ -s "$T/new/plots/p-roc.svg" ] && [ -s "$T/nd.json" ] && pass "the folder is made; plots and report written" || fail "plots into a new folder"

# bad input
printf 'a a p1 0.5\nb a p1 nan\n' >"$T/nan.txt"
run hfr-eval "$T/nan.txt"
expect_rc 1 "NaN score"
expect_err "nan.txt:2:" "NaN score error names the line"
printf 'a a p1 0.5\na a p2 0.7\n' >"$T/onlymated.txt"
run hfr-eval "$T/onlymated.txt" --report "$T/none.json"
expect_rc 1 "no non-mated scores"
expect_err "nothing to evaluate" "explains what is missing"
[ ! -e "$T/none.json" ] && pass "no report left behind" || fail "report written on failure"
: >"$T/empty.txt"
run hfr-eval "$T/empty.txt"
expect_rc 1 "empty input"
run hfr-eval --far 2 "$T/m.hft"
expect_rc 2 "FAR target out of range is a usage error"
# --compare without --plot: the comparison table alone, its cells from the reports
run hfr-eval $OPTS --name second "$T/f1.hft" --compare "$T/first.json" --report "$T/second.json"
expect_rc 0 "--compare without --plot prints the comparison table"
$PY - "$T/first.json" "$T/second.json" "$T/out" <<'PYEOF' && pass "comparison table: a row per run with Rank-1, TAR@FAR, EER and AUC of its report" || fail "comparison table: $(cat "$T/out" | tail -4)"
import json, sys
first, second = (json.load(open(p)) for p in sys.argv[1:3])
text = open(sys.argv[3]).read().split("comparison:\n", 1)[1].splitlines()
head = text[0].split()
imp = second["curves"]["impostor"]
fars = [k for k in sorted(second["summary"]["tar_at_far"], key=float, reverse=True) if float(k) <= 1e-2 and float(k) * imp >= 1][:3]
assert head == ["run", "Rank-1"] + ["TAR@FAR=" + f for f in fars] + ["EER", "AUC"], head
for rep, line in zip((first, second), text[1:3]):
    cells = line.split()
    s = rep["summary"]
    want = [rep["name"], "%.2f%%" % (100 * s["rank"]["1"]["mean"])]
    want += ["%.2f%%" % (100 * s["tar_at_far"][f]["mean"]) for f in fars]
    want += ["%.2f%%" % (100 * s["eer"]["mean"]), "%.4f" % s["auc"]["mean"]]
    assert cells == want, (cells, want)
PYEOF
printf '{"score":0.5}\n' >"$T/nolabel.jsonl"
run hfr-eval "$T/nolabel.jsonl"
expect_rc 1 "records without labels"
$PY -c "import numpy as np; np.save('$T/badm.npy', np.zeros((3,4),np.float32))"; hfr-tensor import scores="$T/badm.npy" -o "$T/badm.hft"
run hfr-eval "$T/badm.hft"
expect_rc 1 "matrix without subjects"
expect_err "probe subjects" "missing labels are named"

# CASIA NIR-VIS 2.0 fold 1 end to end on stand-in lists: embeddings whose
# identity signal is known, selected by the fold's lists, matched and evaluated
$PY "$SRC/scripts/make-protocol-standins.py" "$T/lists" >/dev/null 2>&1 || fail "stand-in lists"
$PY - "$T" <<'PY' || fail "database embeddings"
import glob, json, os, sys
import numpy as np
d = sys.argv[1]
paths = set()
for f in glob.glob(f"{d}/lists/casia-nir-vis-2.0/**/*_1.txt", recursive=True):
    for line in open(f, encoding="utf-8-sig"):
        line = line.strip()
        if line and not line.startswith("#"):
            paths.add(line.split()[0].replace("\\", "/"))
paths = sorted(paths)
rng = np.random.default_rng(4)
subj = sorted({p.split("/")[-2] for p in paths})
c = {s: rng.standard_normal(64) for s in subj}
e = np.array([c[p.split("/")[-2]] + 0.9 * rng.standard_normal(64) for p in paths], np.float32)
np.save(f"{d}/db.npy", e)
with open(f"{d}/db.jsonl", "w") as f:
    for i, p in enumerate(paths):
        f.write(json.dumps({"id": f"img{i}", "path": "/data/NIR-VIS-2.0/" + p, "embeddings": "db.hft", "row": i}) + "\n")
PY
hfr-tensor import embeddings="$T/db.npy" -o "$T/db.hft"
CASIA_DIR=$(dirname "$(find "$T/lists/casia-nir-vis-2.0" -name 'nir_probe_1.txt' | head -1)")
run hfr-match --matrix --protocol casia-nir-vis-2.0 --protocol-dir "$CASIA_DIR" --fold 1 "$T/db.jsonl" -o "$T/fold1.hft"
expect_rc 0 "CASIA NIR-VIS 2.0 fold 1 selected by path and matched"
hfr-tensor info "$T/fold1.hft" | grep -q "scores  f32 \[6208, 358\]" && pass "fold 1: 6,208 NIR probes x 358 VIS gallery" || fail "fold 1 shape: $(hfr-tensor info "$T/fold1.hft" | tail -1)"
run hfr-eval --json "$T/fold1.hft"
$PY -c "import json,sys; r=json.load(open('$T/out')); i=r['folds'][0]['identification']; sys.exit(0 if i['probes']==6208 and i['rank']['1']>0.9 else 1)" &&
  pass "fold 1 evaluates: every probe enrolled, Rank-1 > 90% on separable embeddings" || fail "fold 1 report: $(head -c 300 "$T/out")"
finish
