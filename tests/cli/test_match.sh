#!/usr/bin/env bash
# hfr-match against a NumPy brute-force reference (tests/reference/match_reference.py):
# top-k and exact mate ranks (cosine and Euclidean, several thread counts and
# block sizes), the full matrix, pairs, record inputs through stdin, templates,
# FAISS indexes (flat = exact; IVF/HNSW recall; save and load), ties, bad input.
. "$(dirname "$0")/lib.sh"

require_numpy
REF="$PY $SRC/tests/reference/match_reference.py"

$PY - "$T" <<'PY'
import json, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(11)
S, D = 300, 96
c = rng.standard_normal((S, D))
# gallery: subjects 0..239, two images each (480 rows) plus 60 distractor subjects (240..299), one each
gsub = [s for s in range(240) for _ in range(2)] + list(range(240, 300))
g = c[gsub] + 0.7 * rng.standard_normal((len(gsub), D))
# probes: 700 of subjects 0..239 plus 100 of subjects 300.. (not enrolled: open set)
psub = list(rng.integers(0, 240, 700)) + list(range(300, 400))
pc = np.vstack([c, rng.standard_normal((100, D))])
p = pc[psub] + 1.1 * rng.standard_normal((len(psub), D))
np.save(f"{d}/g.npy", g.astype(np.float32)); np.save(f"{d}/p.npy", p.astype(np.float32))
json.dump([f"s{s}" for s in gsub], open(f"{d}/gs.json", "w"))
json.dump([f"s{s}" for s in psub], open(f"{d}/ps.json", "w"))
json.dump({"ids": [f"g{i}" for i in range(len(gsub))], "subjects": [f"s{s}" for s in gsub]}, open(f"{d}/gm.json", "w"))
json.dump({"ids": [f"p{i}" for i in range(len(psub))], "subjects": [f"s{s}" for s in psub]}, open(f"{d}/pm.json", "w"))
# the probes again as records naming rows of a tensor file, one failed item among them
with open(f"{d}/p.jsonl", "w") as f:
    for i, s in enumerate(psub):
        f.write(json.dumps({"id": f"p{i}", "subject": f"s{s}", "embeddings": "pr.hft", "row": i}) + "\n")
        if i == 5:
            f.write(json.dumps({"id": "broken", "path": "x.jpg", "error": "no face found"}) + "\n")
PY
hfr-tensor import embeddings="$T/g.npy" --metadata "$(cat "$T/gm.json")" -o "$T/g.hft" &&
  hfr-tensor import embeddings="$T/p.npy" --metadata "$(cat "$T/pm.json")" -o "$T/p.hft" &&
  hfr-tensor import embeddings="$T/p.npy" -o "$T/pr.hft" || fail "building embedding sets"

for metric in cosine euclidean; do
  for threads in 1 2; do
    run hfr-match --metric $metric -t $threads -n 10 "$T/g.hft" "$T/p.hft"
    expect_rc 0 "top-10 $metric, $threads thread(s)"
    cp "$T/out" "$T/top.$metric.$threads"
    $REF check "$T/g.npy" "$T/gs.json" "$T/p.npy" "$T/ps.json" $metric 10 "$T/out" >"$T/ref" &&
      pass "top-10 and mate ranks ($metric, $threads threads) agree with NumPy" || fail "reference ($metric, $threads): $(head -5 "$T/ref")"
  done
  cmp -s "$T/top.$metric.1" "$T/top.$metric.2" && pass "$metric: same output with 1 and 2 threads" || fail "$metric: output differs with thread count"
done
run hfr-match -b 7 -n 10 "$T/g.hft" "$T/p.hft"
$REF check "$T/g.npy" "$T/gs.json" "$T/p.npy" "$T/ps.json" cosine 10 "$T/out" >"$T/ref" && pass "blocks of 7 probes agree with NumPy" || fail "batch 7: $(head -3 "$T/ref")"
grep -q '"probe":"p700","probe_subject":"s300",.*"mate":null,"mate_rank":null' "$T/out" && pass "open-set probe has no mate" || fail "open-set probe: $(grep -m1 '"p700"' "$T/out")"

# records on stdin, one failed item skipped with a warning
run sh -c "cd '$T' && hfr-match -n 10 g.hft - < p.jsonl"
expect_rc 0 "probes as records on stdin"
expect_err 'skipped 1 records with an "error" field' "failed upstream item skipped and counted"
$REF check "$T/g.npy" "$T/gs.json" "$T/p.npy" "$T/ps.json" cosine 10 "$T/out" >"$T/ref" && pass "records input gives the same results" || fail "records: $(head -3 "$T/ref")"

# a tensor stream on stdin (labels arrive with the stream's metadata)
run sh -c "cat '$T/p.hft' | hfr-match -b 64 -n 10 '$T/g.hft' -"
expect_rc 0 "probes as a tensor stream on stdin"
$REF check "$T/g.npy" "$T/gs.json" "$T/p.npy" "$T/ps.json" cosine 10 "$T/out" >"$T/ref" && pass "tensor stream gives the same results" || fail "stream: $(head -3 "$T/ref")"
run sh -c "cat '$T/g.hft' | hfr-match -n 10 - '$T/p.hft'"
cmp -s "$T/out" "$T/top.cosine.2" && pass "gallery from stdin" || fail "gallery from stdin differs"

# full matrix
run hfr-match --matrix "$T/g.hft" "$T/p.hft" -o "$T/m.hft"
expect_rc 0 "score matrix"
hfr-tensor export --tensor scores "$T/m.hft" -o "$T/m.npy" && $REF matrix "$T/g.npy" "$T/p.npy" cosine "$T/m.npy" >"$T/ref" &&
  pass "matrix agrees with NumPy ($(cat "$T/ref"))" || fail "matrix: $(cat "$T/ref")"
run hfr-match --matrix --metric euclidean "$T/g.hft" "$T/p.hft" -o "$T/me.hft"
hfr-tensor export --tensor scores "$T/me.hft" -o "$T/me.npy" && $REF matrix "$T/g.npy" "$T/p.npy" euclidean "$T/me.npy" >"$T/ref" &&
  pass "Euclidean matrix agrees with NumPy" || fail "euclidean matrix: $(cat "$T/ref")"

# pairs
printf '# probe gallery\np0 g0\np1 g5\n{"probe":"p2","gallery":"g9","pair":3}\n' >"$T/pairs.txt"
run hfr-match --pairs "$T/pairs.txt" "$T/g.hft" "$T/p.hft"
expect_rc 0 "verification pairs"
[ "$(wc -l <"$T/out")" -eq 3 ] && pass "one record per pair" || fail "pairs output: $(cat "$T/out")"
expect_out '"probe":"p2","gallery":"g9","pair":3,"score":' "pair record fields pass through"
printf 'p0 g0\np1 nosuch\n' >"$T/bad.txt"
run hfr-match --pairs "$T/bad.txt" "$T/g.hft" "$T/p.hft" -o "$T/pairs.jsonl"
expect_rc 1 "unknown gallery id fails"
expect_err "bad.txt:2: unknown gallery id 'nosuch'" "error names the file, line and id"
[ ! -e "$T/pairs.jsonl" ] && pass "no half-written output" || fail "output left behind"
run hfr-match -k --pairs "$T/bad.txt" "$T/g.hft" "$T/p.hft"
expect_rc 3 "--keep-going: exit 3 with some pairs failed"
expect_out '"error":"' "failed pair yields an error record"

# templates: two gallery rows per enrolled subject merged
run hfr-match --gallery-templates -n 3 "$T/g.hft" "$T/p.hft"
expect_rc 0 "gallery templates"
expect_out '"gallery":["s' "template ids are subjects"

# FAISS: flat equals exact, approximate indexes reach high recall, saved index reloads
run hfr-match --index flat -n 10 "$T/g.hft" "$T/p.hft"
$REF check "$T/g.npy" "$T/gs.json" "$T/p.npy" "$T/ps.json" cosine 10 "$T/out" >"$T/ref" && pass "FAISS flat agrees with NumPy" || fail "flat: $(head -3 "$T/ref")"
for ix in ivf hnsw; do
  run hfr-match --index $ix --nlist 16 --nprobe 12 --save-index "$T/$ix.idx" -n 10 "$T/g.hft" "$T/p.hft"
  expect_rc 0 "$ix index built and searched"
  cp "$T/out" "$T/$ix.a"
  run hfr-match -n 10 "$T/$ix.idx" "$T/p.hft"
  cmp -s "$T/out" "$T/$ix.a" && pass "$ix: saved index gives the same results" || fail "$ix: reloaded index differs"
  $PY - "$T/top.cosine.1" "$T/$ix.a" <<'PY' && pass "$ix recall@10 >= 0.9" || fail "$ix recall"
import json, sys
a = [json.loads(l)["gallery"] for l in open(sys.argv[1])]
b = [json.loads(l)["gallery"] for l in open(sys.argv[2])]
r = sum(len(set(x) & set(y)) for x, y in zip(a, b)) / sum(len(x) for x in a)
print("recall", r); sys.exit(0 if r >= 0.9 else 1)
PY
done

# a forged index (valid container checksums, garbage neighbour ids) is refused, not followed
for t in faiss_index ids subjects; do hfr-tensor export --tensor $t "$T/hnsw.idx" -o "$T/$t.npy"; done
$PY -c "import numpy as np; b=np.load('$T/faiss_index.npy'); o=len(b)//3; b[o:o+64]=0x7f; np.save('$T/forged.npy', b)"
meta=$(hfr-tensor info --json "$T/hnsw.idx" | $PY -c "import sys,json; [print(json.dumps(json.loads(l)['metadata'])) for l in sys.stdin if '\"metadata\"' in l]" | head -1)
hfr-tensor import faiss_index="$T/forged.npy" ids="$T/ids.npy" subjects="$T/subjects.npy" --metadata "$meta" -o "$T/forged.idx"
run hfr-match -n 3 "$T/forged.idx" "$T/p.hft"
expect_rc 1 "forged index refused"
expect_err "corrupt FAISS index" "forged index is named corrupt"

# exact ties: a non-mated gallery row identical to the mate counts against the probe
$PY - "$T" <<'PY'
import numpy as np, sys
d = sys.argv[1]
np.save(f"{d}/tg.npy", np.array([[1, 0, 0], [0.6, 0.8, 0], [0.6, 0.8, 0], [0, 0, 1]], np.float32))
np.save(f"{d}/tp.npy", np.array([[0.6, 0.8, 0.1]], np.float32))
PY
hfr-tensor import embeddings="$T/tg.npy" --metadata '{"ids":["a","b","c","d"],"subjects":["A","B","C","D"]}' -o "$T/tg.hft"
hfr-tensor import embeddings="$T/tp.npy" --metadata '{"ids":["q"],"subjects":["C"]}' -o "$T/tp.hft"
run hfr-match -n 4 "$T/tg.hft" "$T/tp.hft"
expect_out '"gallery":["b","c","a","d"]' "equal scores ordered by gallery row"
expect_out '"mate":"c"' "mate found"
expect_out '"mate_rank":2' "a tie with a non-mated row counts against the probe"

# Euclidean at large norms: mate ranks and near-duplicates must not suffer from
# the rounding of the sgemm expansion (||p||^2 + ||g||^2 - 2 p.g)
$PY - "$T" <<'PY'
import numpy as np, json, sys
d = sys.argv[1]
rng = np.random.default_rng(8)
G, D = 3000, 256
g = rng.standard_normal((G, D)); g *= 100 / np.linalg.norm(g, axis=1, keepdims=True)
p = []
for i in range(200):           # probes at cosine 0.5 from their mate, same norm
    u = rng.standard_normal(D); u -= u @ g[i] / (g[i] @ g[i]) * g[i]; u *= 100 / np.linalg.norm(u)
    p.append(0.5 * g[i] + np.sqrt(0.75) * u)
for i in range(50):            # exact copies of gallery rows, with a near neighbour in the gallery
    p.append(g[1000 + i].copy()); g[2000 + i] = g[1000 + i] + 0.0001 * rng.standard_normal(D)
np.save(f"{d}/eg.npy", g.astype(np.float32)); np.save(f"{d}/ep.npy", np.array(p, np.float32))
json.dump({"subjects": [f"s{i}" for i in range(G)]}, open(f"{d}/egm.json", "w"))
json.dump({"subjects": [f"s{i}" for i in range(200)] + [f"s{1000+i}" for i in range(50)]}, open(f"{d}/epm.json", "w"))
json.dump([f"s{i}" for i in range(G)], open(f"{d}/egs.json", "w"))
json.dump([f"s{i}" for i in range(200)] + [f"s{1000+i}" for i in range(50)], open(f"{d}/eps.json", "w"))
PY
hfr-tensor import embeddings="$T/eg.npy" --metadata "$(cat "$T/egm.json")" -o "$T/eg.hft"
hfr-tensor import embeddings="$T/ep.npy" --metadata "$(cat "$T/epm.json")" -o "$T/ep.hft"
run hfr-match --metric euclidean -n 3 "$T/eg.hft" "$T/ep.hft"
$REF check "$T/eg.npy" "$T/egs.json" "$T/ep.npy" "$T/eps.json" euclidean 3 "$T/out" >"$T/ref" &&
  pass "Euclidean at norm 100: mate ranks and hits agree with NumPy" || fail "euclidean large norms: $(head -3 "$T/ref")"
[ "$(grep -c '"mate_rank":1}' "$T/out")" -eq 250 ] && pass "every probe's mate ranks first" || fail "mate ranks at norm 100: $(grep -vc '"mate_rank":1}' "$T/out") not first"

# bad input
$PY -c "import numpy as np; a=np.ones((3,5),np.float32); a[1,2]=np.nan; np.save('$T/nan.npy',a); np.save('$T/d5.npy',np.ones((2,5),np.float32)); np.save('$T/z.npy',np.zeros((0,96),np.float32))"
hfr-tensor import embeddings="$T/nan.npy" -o "$T/nan.hft"; hfr-tensor import embeddings="$T/d5.npy" -o "$T/d5.hft"; hfr-tensor import embeddings="$T/z.npy" -o "$T/z.hft"
run hfr-match "$T/g.hft" "$T/d5.hft"
expect_rc 1 "dimension mismatch"
expect_err "probes have 5 dimensions, the gallery" "dimension mismatch is explained"
run hfr-match "$T/nan.hft" "$T/d5.hft"
expect_rc 1 "NaN in the gallery"
expect_err "nan.hft: row 1 (id 1): value 2 is NaN" "NaN is located by row and column"
run hfr-match "$T/z.hft" "$T/p.hft"
expect_rc 1 "empty gallery"
expect_err "the gallery set is empty" "empty gallery is explained"
run hfr-match - -
expect_rc 2 "both inputs on stdin is a usage error"
run hfr-match --index hnsw --matrix "$T/g.hft" "$T/p.hft"
expect_rc 2 "an index cannot produce a matrix"
printf '{"id":"x","embeddings":"missing.hft","row":0}\n' >"$T/missing.jsonl"
run hfr-match "$T/g.hft" "$T/missing.jsonl"
expect_rc 1 "record naming a missing tensor file"
expect_err "missing.jsonl:1 (id x): " "missing file error names the record"
# label arrays must cover every row; a record's bad row is named
$PY -c "import numpy as np; np.save('$T/s8.npy', np.ones((8,4),np.float32))"
hfr-tensor import embeddings="$T/s8.npy" --metadata '{"ids":["a","b","c","d","e","f","g","h","i","j"]}' -o "$T/s8.hft"
run hfr-match "$T/s8.hft" "$T/s8.hft"
expect_rc 1 "metadata ids not one per row"
expect_err "metadata 'ids' must be an array of 8 labels" "label count mismatch is explained"
run sh -c "cat '$T/s8.hft' | hfr-match -b 3 '$T/g.hft' -"
expect_rc 1 "label count mismatch in a stream"
hfr-tensor import embeddings="$T/s8.npy" -o "$T/s8b.hft"
printf '{"id":"a","embeddings":"s8b.hft","row":6}\n{"id":"b","embeddings":"s8b.hft","row":7}\n{"id":"c","embeddings":"s8b.hft","row":8}\n' >"$T/past.jsonl"
run hfr-match "$T/s8b.hft" "$T/past.jsonl"
expect_rc 1 "record row past the end"
expect_err "past.jsonl:3 (id c): row 8 is past the end" "the record with the bad row is named"
printf 'p0 g0\n' | hfr-match --pairs - "$T/g.hft" - >"$T/out" 2>"$T/err"; RC=$?
expect_rc 2 "two inputs on stdin is a usage error"
finish
