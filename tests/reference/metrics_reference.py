#!/usr/bin/python3
"""Independent reference for libcommon's metrics module (tests/unit/test_metrics.cpp).

Written from the definitions in metrics.hpp and methods.md section 7, on
scikit-learn and NumPy, without looking at the C++ code. Run with the Debian
interpreter that has them: /usr/bin/python3 (python3-sklearn, python3-numpy).

  verification SCORES [--far T]... [--threshold T]... [--full-roc]
      SCORES: one "score mated" line per pair (mated 0 or 1).
  identification --matrix M.npy --probe-labels P --gallery-labels G
                 [--max-rank K] [--fpir T]... [--rank R]
      M: probes x gallery float64 matrix; P, G: one label per line.
  batch JOBS.json
      JOBS: a JSON list of argument lists for the modes above, run in one
      process (scikit-learn takes seconds to import); writes a JSON list.

Writes one JSON object on stdout. ROC point indexes count sklearn's leading
artificial point (threshold max+1 in sklearn 1.2, inf later) as index 0; its
threshold is written as null.
"""
import argparse
import json
import sys

import numpy as np


def roc_points(labels, scores):
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    thr = thr.astype(np.float64).tolist()
    thr[0] = None  # the artificial "accept nothing" point
    return fpr, tpr, thr


def point(index, target, fpr, tpr, thr):
    return {"target": target, "index": int(index), "threshold": thr[index], "far": float(fpr[index]),
            "tar": float(tpr[index])}


def verification(args):
    from sklearn.metrics import roc_auc_score

    data = np.loadtxt(args.scores, dtype=np.float64, ndmin=2)
    scores = data[:, 0]
    labels = data[:, 1].astype(np.int64)
    fpr, tpr, thr = roc_points(labels, scores)
    out = {"genuine": int((labels == 1).sum()), "impostor": int((labels == 0).sum())}
    out["auc"] = float(roc_auc_score(labels, scores))

    frr = 1 - tpr
    i = int(np.argmin(np.abs(fpr - frr)))  # argmin returns the first minimum
    out["eer"] = {"index": i, "eer": float((fpr[i] + frr[i]) / 2), "threshold": thr[i], "far": float(fpr[i]),
                  "frr": float(frr[i])}

    at_most, nearest = [], []
    for target in args.far:
        ok = np.nonzero(fpr <= target)[0]  # never empty: fpr[0] == 0
        # fpr grows with the index and tpr with it: the last admissible point
        # has the largest tpr, and the lowest threshold among equal tpr.
        at_most.append(point(ok[-1], target, fpr, tpr, thr))
        nearest.append(point(int(np.argmin(np.abs(fpr - target))), target, fpr, tpr, thr))
    out["tar_at_far"] = {"at-most": at_most, "nearest": nearest}

    genuine = scores[labels == 1]
    impostor = scores[labels == 0]
    out["at_threshold"] = [{"threshold": t, "far": float(np.mean(impostor >= t)), "tar": float(np.mean(genuine >= t))}
                           for t in args.threshold]
    out["roc_points"] = len(fpr) - 1
    if args.full_roc:
        out["roc"] = [{"threshold": thr[k], "far": float(fpr[k]), "tar": float(tpr[k])} for k in range(1, len(fpr))]
    return out


def read_labels(path):
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.rstrip("\n") != ""]


def identification(args):
    m = np.load(args.matrix)
    probes = read_labels(args.probe_labels)
    gallery = read_labels(args.gallery_labels)
    assert m.shape == (len(probes), len(gallery)), (m.shape, len(probes), len(gallery))
    g = np.array(gallery, dtype=object)

    ranks, mated_scores, mated_rows, nonmated_top, nonmated_rows = [], [], [], [], []
    for i, label in enumerate(probes):
        row = m[i]
        is_mate = g == label
        if is_mate.any():
            best = row[is_mate].max()
            ranks.append(1 + int(np.count_nonzero(row[~is_mate] >= best)))
            mated_scores.append(float(best))
            mated_rows.append(i)
        else:
            nonmated_top.append(float(row.max()))
            nonmated_rows.append(i)
    out = {"ranks": ranks, "mated_scores": mated_scores, "mated_probes": mated_rows,
           "nonmated_top_scores": nonmated_top, "nonmated_probes": nonmated_rows}
    r = np.array(ranks, dtype=np.int64)
    if len(r):
        out["cmc"] = [float(np.mean(r <= k)) for k in range(1, args.max_rank + 1)]

    if len(r) and nonmated_top:
        ms = np.array(mated_scores)
        nm = np.array(nonmated_top)
        # Candidate thresholds: every mated and non-mated top score, and just
        # above the highest non-mated one; the lowest whose FPIR <= target.
        cand = np.unique(np.concatenate([ms, nm, [np.nextafter(nm.max(), np.inf)]]))
        fpir = np.array([np.mean(nm >= c) for c in cand])
        dirs = []
        for target in args.fpir:
            t = cand[np.nonzero(fpir <= target)[0][0]]
            dirs.append({"target": target, "threshold": float(t), "fpir": float(np.mean(nm >= t)),
                         "dir": float(np.mean((r <= args.rank) & (ms >= t)))})
        out["dir_at_fpir"] = dirs
    return out


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    v = sub.add_parser("verification")
    v.add_argument("scores")
    v.add_argument("--far", type=float, action="append", default=[])
    v.add_argument("--threshold", type=float, action="append", default=[])
    v.add_argument("--full-roc", action="store_true")
    i = sub.add_parser("identification")
    i.add_argument("--matrix", required=True)
    i.add_argument("--probe-labels", required=True)
    i.add_argument("--gallery-labels", required=True)
    i.add_argument("--max-rank", type=int, default=10)
    i.add_argument("--fpir", type=float, action="append", default=[])
    i.add_argument("--rank", type=int, default=1)
    b = sub.add_parser("batch")
    b.add_argument("jobs")
    return ap


def run(args):
    if args.mode == "verification":
        return verification(args)
    if args.mode == "identification":
        return identification(args)
    with open(args.jobs) as f:
        jobs = json.load(f)
    return [run(parser().parse_args(job)) for job in jobs]


def main():
    out = run(parser().parse_args())
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
