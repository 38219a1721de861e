#!/usr/bin/python3
"""Independent reference for hfr-match (NumPy, float64): top-k per probe and
exact mated ranks, and the full score matrix. Used by tests/cli/test_match.sh.

usage: match_reference.py check GALLERY.npy GSUBJ.json PROBES.npy PSUBJ.json METRIC K HFR_OUT.jsonl
Compares hfr-match's top-k records with brute force and exits 1 on a mismatch.
Near ties (scores closer than TOL) may be ordered either way; ranks are only
compared where no non-mated score lies within TOL of the mated score.
"""
import json
import sys

import numpy as np

TOL = 2e-5


def scores(g, p, metric):
    g = g.astype(np.float64)
    p = p.astype(np.float64)
    if metric == "cosine":
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        return p @ g.T
    d2 = (p * p).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2 * p @ g.T
    return -np.sqrt(np.maximum(d2, 0))


def check(gpath, gsub, ppath, psub, metric, k, out):
    g, p = np.load(gpath), np.load(ppath)
    gs, ps = json.load(open(gsub)), json.load(open(psub))
    s = scores(g, p, metric)
    recs = [json.loads(l) for l in open(out)]
    bad = 0
    if len(recs) != len(p):
        print(f"{len(recs)} records for {len(p)} probes")
        return 1
    for i, r in enumerate(recs):
        row = s[i]
        order = np.lexsort((np.arange(len(row)), -row))[:k]
        want = row[order]
        got = np.array(r["score"], dtype=np.float64)
        if len(got) != len(want) or np.max(np.abs(got - want)) > TOL:
            print(f"probe {i}: scores {got[:5]} want {want[:5]}")
            bad += 1
            continue
        gidx = [int(x.lstrip("g")) for x in r["gallery"]]
        for j, gi in enumerate(gidx):
            if abs(row[gi] - got[j]) > TOL:
                print(f"probe {i}: hit {j} is g{gi} scoring {row[gi]}, reported {got[j]}")
                bad += 1
        mated = np.array([x == ps[i] for x in gs])
        if mated.any():
            ms = row[mated].max()
            rank = 1 + int((row[~mated] >= ms).sum())
            near = np.abs(row[~mated] - ms) < TOL
            if not near.any() and r.get("mate_rank") != rank:
                print(f"probe {i}: mate_rank {r.get('mate_rank')} want {rank}")
                bad += 1
            if abs(r["mate_score"] - ms) > TOL:
                print(f"probe {i}: mate_score {r['mate_score']} want {ms}")
                bad += 1
        elif r.get("mate_rank") is not None:
            print(f"probe {i}: has no mate but mate_rank {r.get('mate_rank')}")
            bad += 1
    return 1 if bad else 0


def check_matrix(gpath, ppath, metric, mpath):
    g, p = np.load(gpath), np.load(ppath)
    m = np.load(mpath)
    s = scores(g, p, metric)
    err = np.max(np.abs(m - s))
    print(f"matrix max abs error {err:.3g}")
    return 0 if m.shape == s.shape and err < TOL else 1


if __name__ == "__main__":
    if sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7]), sys.argv[8]))
    if sys.argv[1] == "matrix":
        sys.exit(check_matrix(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]))
    sys.exit(2)
