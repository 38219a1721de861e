#!/usr/bin/env bash
# hfr-eval benchmark: 10M scores (a 10,000 x 1,000 probe x gallery matrix, and
# the same scores as a bob 4-column file) -> full report, against
# scikit-learn's roc_curve + roc_auc_score (+ EER and TAR@FAR from its curve)
# on the same scores already in memory, in the same run.
# Usage: bench/run_eval.sh BUILD_DIR   (writes bench/results-eval.md)
set -euo pipefail
B=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN="$B/bin"
W=$(mktemp -d /tmp/hfr-bench-eval.XXXXXX)
trap 'rm -rf "$W"' EXIT
cmake --build "$B" --target hfr-eval hfr-tensor -- --quiet
/usr/bin/python3 - "$W" <<'PY'
import json, sys
import numpy as np
w = sys.argv[1]
rng = np.random.default_rng(9)
P, G = 10000, 1000
ps = rng.integers(0, G, P)
m = rng.normal(0, 0.1, (P, G)).astype(np.float32)
m[np.arange(P), ps] += rng.uniform(0.1, 0.8, P).astype(np.float32)
np.save(f"{w}/m.npy", m)
open(f"{w}/p.txt", "w").write("\n".join(f"s{s}" for s in ps) + "\n")
open(f"{w}/g.txt", "w").write("\n".join(f"s{j}" for j in range(G)) + "\n")
with open(f"{w}/s.txt", "w") as f:
    for i in range(P):
        row = m[i]
        f.write("".join(f"s{j} s{ps[i]} q{i} {row[j]!r}\n" for j in range(G)))
PY
"$BIN/hfr-tensor" import scores="$W/m.npy" -o "$W/m.hft"
timed() {
  /usr/bin/time -f "%e %M" -o "$W/time" "$@" >"$W/out" 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
  read -r s kb <"$W/time"; echo "$s $((kb / 1024))"
}
read -r tm mm < <(timed "$BIN/hfr-eval" --json --probe-labels "$W/p.txt" --gallery-labels "$W/g.txt" "$W/m.hft")
cp "$W/out" "$W/rep_m.json"
read -r tt mt < <(timed "$BIN/hfr-eval" --json "$W/s.txt")
cp "$W/out" "$W/rep_t.json"
size=$(( $(stat -c %s "$W/s.txt") / 1000000 ))
/usr/bin/python3 - "$W" "$tm" "$mm" "$tt" "$mt" "$size" > "$SRC/bench/results-eval.md" <<'PY'
import json, sys, time, datetime, subprocess
import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve
w, tm, mm, tt, mt, size = sys.argv[1:7]
m = np.load(f"{w}/m.npy").astype(np.float64)
ps = [l.strip() for l in open(f"{w}/p.txt")]
gs = [l.strip() for l in open(f"{w}/g.txt")]
gi = {s: j for j, s in enumerate(gs)}
labels = np.zeros(m.shape, np.int8)
labels[np.arange(len(ps)), [gi[s] for s in ps]] = 1
y, s = labels.ravel(), m.ravel()
t0 = time.perf_counter()
fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
auc = roc_auc_score(y, s)
i = np.argmin(np.abs(fpr - (1 - tpr)))
tars = [tpr[np.nonzero(fpr <= t)[0][-1]] for t in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)]
t_sk = time.perf_counter() - t0
rep = json.load(open(f"{w}/rep_m.json"))["folds"][0]["verification"]
rep_t = json.load(open(f"{w}/rep_t.json"))["folds"][0]["verification"]
agree = abs(rep["auc"] - auc) < 1e-9 and all(abs(a["tar"] - b) < 1e-12 for a, b in zip(rep["tar_at_far"], tars))
agree_t = abs(rep_t["auc"] - auc) < 1e-9
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print(f"""# hfr-eval benchmark

`bench/run_eval.sh build` on {datetime.date.today()}, {cpu}.
10,000,000 scores: a 10,000 probe x 1,000 gallery matrix (10,000 mated, 9,990,000 non-mated), f32.

| what | wall s | peak MB |
|---|---|---|
| hfr-eval, score matrix (.hft) -> full report (verification, 6 TAR@FAR, bootstrap CIs, EER, AUC, ROC/DET curves, ranks, CMC) | {tm} | {mm} |
| hfr-eval, the same scores as a bob 4-column text file ({size} MB) -> full report | {tt} | {mt} |
| scikit-learn 1.2 `roc_curve` + `roc_auc_score` + EER + 6 TAR@FAR, arrays already in memory (no file reading) | {t_sk:.2f} | |

hfr-eval (whole command, reading the matrix) / scikit-learn (computation only): {float(tm)/t_sk:.2f}.
Same AUC and TAR@FAR as scikit-learn: matrix {agree}, 4-column file {agree_t}.
""")
PY
cat "$SRC/bench/results-eval.md"
