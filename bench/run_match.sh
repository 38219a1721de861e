#!/usr/bin/env bash
# hfr-match benchmark: 100k gallery x 10k probes x 512-d exact top-10, against
# the machine's own sgemm peak measured in the same run and FAISS flat on the
# same data; IVF and HNSW recall@10 against exact search.
# Usage: bench/run_match.sh BUILD_DIR [GALLERY] [PROBES] [DIM]   (writes bench/results-match.md)
set -euo pipefail
B=${1:-build}
NG=${2:-100000}; NP=${3:-10000}; D=${4:-512}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN="$B/bin"
W=$(mktemp -d /tmp/hfr-bench-match.XXXXXX)
trap 'rm -rf "$W"' EXIT
cmake --build "$B" --target bench_sgemm hfr-match hfr-tensor -- --quiet
/usr/bin/python3 - "$W" "$NG" "$NP" "$D" <<'PY'
import sys, json
import numpy as np
w, ng, np_, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(3)
S = ng // 10                                    # 10 gallery images per subject
c = rng.standard_normal((S, d), dtype=np.float32)
gs = np.arange(ng) % S
g = c[gs] + 0.8 * rng.standard_normal((ng, d), dtype=np.float32)
ps = rng.integers(0, S, np_)
p = c[ps] + 1.0 * rng.standard_normal((np_, d), dtype=np.float32)
np.save(f"{w}/g.npy", g); np.save(f"{w}/p.npy", p)
# labels as records naming rows of the tensor files (the form hfr-embed writes)
for name, subj in (("g", gs), ("p", ps)):
    with open(f"{w}/{name}.jsonl", "w") as f:
        for i, s in enumerate(subj):
            f.write(json.dumps({"id": f"{name}{i}", "subject": f"s{s}", "embeddings": f"{name}.hft", "row": i}) + "\n")
PY
"$BIN/hfr-tensor" import embeddings="$W/g.npy" -o "$W/g.hft"
"$BIN/hfr-tensor" import embeddings="$W/p.npy" -o "$W/p.hft"

peak=$("$B/bench/bench_sgemm" 2 2048 2048 "$D")
timed() { # label command... -> seconds, peak RSS MB
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$W/time" "$@" >"$W/out.$label" 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
  read -r s kb <"$W/time"; echo "$s $((kb / 1024))"
}
read -r t_exact m_exact < <(timed exact "$BIN/hfr-match" -t 2 -n 10 "$W/g.jsonl" "$W/p.jsonl" -o "$W/exact.jsonl")
read -r t_exact_nm m_exact_nm < <(timed exactnm "$BIN/hfr-match" -t 2 -n 10 --subject-field none "$W/g.jsonl" "$W/p.jsonl" -o "$W/exactnm.jsonl")
read -r t_flat m_flat < <(timed flat "$BIN/hfr-match" -t 2 -n 10 --index flat "$W/g.jsonl" "$W/p.jsonl" -o "$W/flat.jsonl")
read -r t_ivfb m_ivfb < <(timed ivfb "$BIN/hfr-match" -t 2 --index ivf --nlist 1024 --save-index "$W/ivf.idx" "$W/g.jsonl")
read -r t_ivf m_ivf < <(timed ivf "$BIN/hfr-match" -t 2 -n 10 --nprobe 32 "$W/ivf.idx" "$W/p.jsonl" -o "$W/ivf.jsonl")
read -r t_hnswb m_hnswb < <(timed hnswb "$BIN/hfr-match" -t 2 --index hnsw --save-index "$W/hnsw.idx" "$W/g.jsonl")
read -r t_hnsw m_hnsw < <(timed hnsw "$BIN/hfr-match" -t 2 -n 10 --ef-search 128 "$W/hnsw.idx" "$W/p.jsonl" -o "$W/hnsw.jsonl")

/usr/bin/python3 - "$W" "$peak" "$NG" "$NP" "$D" "$t_exact" "$m_exact" "$t_exact_nm" "$m_exact_nm" "$t_flat" "$m_flat" \
  "$t_ivfb" "$t_ivf" "$t_hnswb" "$t_hnsw" > "$SRC/bench/results-match.md" <<'PY'
import json, sys, datetime, subprocess
w, peak = sys.argv[1], json.loads(sys.argv[2])
ng, np_, d = map(int, sys.argv[3:6])
te, me, tn, mn, tf, mf, tib, ti, thb, th = sys.argv[6:16]
load = lambda f: [json.loads(l)["gallery"] for l in open(f"{w}/{f}")]
ex = load("exact.jsonl")
def recall(f):
    b = load(f)
    return sum(len(set(x) & set(y)) for x, y in zip(ex, b)) / sum(len(x) for x in ex)
flop = 2.0 * ng * np_ * d / 1e9
best = max(peak["sgemm_gflops"], peak["sgemm_split_gflops"])
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print(f"""# hfr-match benchmark

`bench/run_match.sh build` on {datetime.date.today()}, {cpu}, 2 threads (`-t 2`).
Gallery {ng:,} x {d}, probes {np_:,}, top-10, cosine; random clustered data (10 images per subject).
Times are whole-command wall times (reading the tensor files, normalising, searching, writing JSON lines);
peak memory is the maximum resident set size. Compare figures only within one run.

| what | wall s | GFLOP/s | % of sgemm peak | peak MB | recall@10 vs exact |
|---|---|---|---|---|---|
| sgemm peak, OpenBLAS, 2048x2048x{d} (best of one 2-thread call / two 1-thread calls) | | {best:.1f} | 100 | | |
| hfr-match exact, with exact mate ranks | {te} | {flop/float(te):.1f} | {100*flop/float(te)/best:.0f} | {me} | 1 |
| hfr-match exact, no subjects (no mate ranks) | {tn} | {flop/float(tn):.1f} | {100*flop/float(tn)/best:.0f} | {mn} | 1 |
| FAISS IndexFlatIP (through hfr-match --index flat) | {tf} | {flop/float(tf):.1f} | {100*flop/float(tf)/best:.0f} | {mf} | {recall('flat.jsonl'):.4f} |
| FAISS IVF-Flat, nlist 1024: build+save / search at nprobe 32 | {tib} / {ti} | | | | {recall('ivf.jsonl'):.4f} |
| FAISS HNSW-Flat, M 32: build+save / search at efSearch 128 | {thb} / {th} | | | | {recall('hnsw.jsonl'):.4f} |

sgemm measurements: `{json.dumps(peak)}`.
Exact / FAISS flat time ratio: {float(te)/float(tf):.2f} (target <= 1.2).
""")
PY
cat "$SRC/bench/results-match.md"
