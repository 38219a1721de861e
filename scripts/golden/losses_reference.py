#!/usr/bin/python3
"""Independent reference values for hfr-train's losses (libcommon/src/losses.cpp, docs/losses.md).

Written from the formulas of methods.md §1, §3, §4 with Debian's python3-torch (LibTorch 1.13
underneath), in float64 and deliberately by other routes than the C++ code: angles through acos
(not the cos(θ+m) expansion), cross-entropy as logsumexp − target logit, ID-MMD centres and
distances by explicit loops over identities and pairs, the switch fractions with bincount.
Gradients come from autograd.

    /usr/bin/python3 scripts/golden/losses_reference.py                  # -> tests/golden/losses/losses.json
    /usr/bin/python3 scripts/golden/losses_reference.py --seed 7 --random-shapes --out /tmp/x.json

The output is deterministic for a given seed (and shape choice): two runs give identical files.
"""
import argparse
import json
import math
import os
import sys

import torch

FORMAT = "hfr-losses-golden-1"
DEFAULT_SEED = 20240611


def tensor_json(t):
    t = t.detach()
    if t.dtype.is_floating_point:
        data = [float(x) for x in t.reshape(-1).tolist()]
    else:
        data = [int(x) for x in t.reshape(-1).tolist()]
    return {"shape": list(t.shape), "data": data}


def unit(x):
    return x / torch.sqrt((x * x).sum(dim=1, keepdim=True))


def cross_entropy_mean(logits, labels):
    rows = [torch.logsumexp(logits[i], dim=0) - logits[i, labels[i]] for i in range(logits.shape[0])]
    return torch.stack(rows).mean()


def margin_loss(features, labels, weight, kind, s, m, easy_margin=False):
    cos = unit(features) @ unit(weight).t()
    target = torch.zeros_like(cos, dtype=torch.bool)
    target[torch.arange(cos.shape[0]), labels] = True
    if kind == "cosface":
        logits = torch.where(target, s * (cos - m), s * cos)
    else:
        theta = torch.acos(cos.clamp(-1 + 1e-12, 1 - 1e-12))
        arc = torch.cos(theta + m)
        if easy_margin:
            target_logit = torch.where(theta < math.pi / 2, arc, cos)
        else:
            target_logit = torch.where(theta + m < math.pi, arc, cos - m * math.sin(m))
        logits = torch.where(target, s * target_logit, s * cos)
    return cross_entropy_mean(logits, labels)


def identity_centres(f, ids, identities):
    u = unit(f)
    return torch.stack([u[ids == k].mean(dim=0) for k in identities])


def id_mmd(f_vis, ids_vis, f_nir, ids_nir, linear=False):
    identities = sorted(set(ids_vis.tolist()))
    assert identities == sorted(set(ids_nir.tolist())), "reference inputs are always paired"
    cv = identity_centres(f_vis, ids_vis, identities)
    cn = identity_centres(f_nir, ids_nir, identities)
    K = len(identities)
    if linear:
        return torch.stack([((cv[k] - cn[k]) ** 2).sum() for k in range(K)]).mean()
    z = [cv[k] for k in range(K)] + [cn[k] for k in range(K)]
    n = 2 * K
    d = [[((z[p] - z[q]) ** 2).sum() for q in range(n)] for p in range(n)]
    sigma0 = sum(d[p][q].item() for p in range(n) for q in range(n)) / (n * n - n)  # a number: no gradient
    sigmas = [sigma0 * 2.0 ** i for i in range(-2, 3)]

    def kern(p, q):
        return sum(torch.exp(-d[p][q] / sg) for sg in sigmas)

    total = 0
    for i in range(K):
        for j in range(K):
            total = total + kern(i, j) + kern(K + i, K + j) - kern(i, K + j) - kern(K + i, j)
    return total / (K * K)


def dvg_contrastive(f_nir, f_vis, perm, margin=0.5, weight=0.1):
    pos = torch.nn.functional.cosine_similarity(f_nir, f_vis, dim=1)
    neg = torch.nn.functional.cosine_similarity(f_nir, f_vis[perm], dim=1)
    return -pos.mean() + weight * torch.clamp(neg - margin, min=0).mean()


def switch_balance(probs, alpha=0.01):
    B, N = probs.shape
    f = torch.bincount(probs.detach().argmax(dim=1), minlength=N).to(probs.dtype) / B
    P = probs.mean(dim=0)
    return alpha * N * (f * P).sum()


def teacher_student(student, teacher):
    return 1 - torch.nn.functional.cosine_similarity(student, teacher.detach(), dim=1).mean()


def derangement(n, gen):
    while True:
        p = torch.randperm(n, generator=gen)
        if not bool((p == torch.arange(n)).any()):
            return p


def leaf(t):
    return t.clone().requires_grad_(True)


def grads_of(loss, named):
    loss.backward()
    return {name: tensor_json(t.grad) for name, t in named.items()}


def build(seed, random_shapes):
    gen = torch.Generator().manual_seed(seed)
    dt = torch.float64

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dt)

    def randint(lo, hi):
        return int(torch.randint(lo, hi, (1,), generator=gen))

    if random_shapes:
        K, P, D, C, B, N = randint(2, 7), randint(1, 4), randint(3, 33), randint(2, 21), randint(2, 13), randint(1, 9)
    else:
        K, P, D, C, B, N = 4, 2, 16, 10, 8, 4
    cases = {}

    # margin heads: one shared input, the first row forced beyond the ArcFace threshold (θ_y + m > π)
    weight = randn(C, D)
    labels = torch.randint(0, C, (B,), generator=gen)
    features = randn(B, D)
    features[0] = -unit(weight)[labels[0]] * 3.0 + 0.05 * randn(D)
    cos_y = (unit(features) * unit(weight)[labels]).sum(dim=1)
    beyond = int((torch.acos(cos_y) + 0.5 > math.pi).sum())  # rows on ArcFace's linear branch (m = 0.5)
    assert beyond >= 1
    heads = [("cosface", "cosface", 64.0, 0.40, False), ("cosface_m0", "cosface", 64.0, 0.0, False),
             ("arcface", "arcface", 64.0, 0.50, False), ("arcface_easy", "arcface", 64.0, 0.50, True),
             ("cosface_s30", "cosface", 30.0, 0.35, False)]
    for name, kind, s, m, easy in heads:
        x, w = leaf(features), leaf(weight)
        loss = margin_loss(x, labels, w, kind, s, m, easy)
        cases[name] = {"params": {"kind": kind, "s": s, "m": m, "easy_margin": easy, "beyond_threshold": beyond},
                       "inputs": {"features": tensor_json(features), "labels": tensor_json(labels),
                                  "weight": tensor_json(weight)},
                       "loss": loss.item(), "grads": grads_of(loss, {"features": x, "weight": w})}

    # ID-MMD: K identities × P rows per modality, rows shuffled (ids per row, not a fixed layout)
    base = randn(K, D)
    ids_vis = torch.arange(K).repeat_interleave(P)[torch.randperm(K * P, generator=gen)]
    ids_nir = torch.arange(K).repeat_interleave(P)[torch.randperm(K * P, generator=gen)]
    shift = randn(D)
    f_vis = base[ids_vis] + 0.5 * randn(K * P, D)
    f_nir = base[ids_nir] + 0.5 * shift + 0.3 * randn(K * P, D)
    for name, linear in [("id_mmd", False), ("id_mmd_linear", True)]:
        v, n = leaf(f_vis), leaf(f_nir)
        loss = id_mmd(v, ids_vis, n, ids_nir, linear)
        cases[name] = {"params": {},
                       "inputs": {"f_vis": tensor_json(f_vis), "ids_vis": tensor_json(ids_vis),
                                  "f_nir": tensor_json(f_nir), "ids_nir": tensor_json(ids_nir)},
                       "loss": loss.item(), "grads": grads_of(loss, {"f_vis": v, "f_nir": n})}

    # DVG-Face contrastive: half of the negatives pulled towards their NIR row so the hinge is active
    perm = derangement(B, gen)
    f_n = randn(B, D)
    f_v = f_n + 0.7 * randn(B, D)
    for i in range(B // 2):
        f_v[perm[i]] = f_v[perm[i]] + 2.0 * f_n[i]
    n, v = leaf(f_n), leaf(f_v)
    loss = dvg_contrastive(n, v, perm)
    active = int((torch.nn.functional.cosine_similarity(f_n, f_v[perm], dim=1) > 0.5).sum())
    cases["dvg_contrastive"] = {"params": {"margin": 0.5, "weight": 0.1, "active_negatives": active},
                                "inputs": {"f_nir": tensor_json(f_n), "f_vis": tensor_json(f_v),
                                           "perm": tensor_json(perm)},
                                "loss": loss.item(), "grads": grads_of(loss, {"f_nir": n, "f_vis": v})}

    # Switch load balancing: probabilities = softmax of router logits; gradients w.r.t. both
    logits = 2.0 * randn(B + 4, N)
    lg = leaf(logits)
    probs = torch.softmax(lg, dim=1)
    probs.retain_grad()
    loss = switch_balance(probs)
    loss.backward()
    cases["switch_balance"] = {"params": {"alpha": 0.01},
                               "inputs": {"logits": tensor_json(logits), "probs": tensor_json(probs)},
                               "loss": loss.item(),
                               "grads": {"logits": tensor_json(lg.grad), "probs": tensor_json(probs.grad)}}

    # teacher-student identity loss
    teacher = randn(B, D)
    student = teacher + 0.8 * randn(B, D)
    st, te = leaf(student), leaf(teacher)
    loss = teacher_student(st, te)
    cases["teacher_student"] = {"params": {},
                                "inputs": {"student": tensor_json(student), "teacher": tensor_json(teacher)},
                                "loss": loss.item(), "grads": grads_of(loss, {"student": st})}
    assert te.grad is None

    return {"format": FORMAT, "generator": "scripts/golden/losses_reference.py", "torch": torch.__version__,
            "seed": seed, "random_shapes": random_shapes, "sizes": {"K": K, "P": P, "D": D, "C": C, "B": B, "N": N},
            "cases": cases}


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--random-shapes", action="store_true", help="draw K, P, D, C, B, N from the seed too")
    ap.add_argument("--out", default=os.path.join(root, "tests", "golden", "losses", "losses.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    doc = build(a.seed, a.random_shapes)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".tmp", "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    os.replace(a.out + ".tmp", a.out)
    print(f"{a.out}: {len(doc['cases'])} cases, sizes {doc['sizes']}", file=sys.stderr)


if __name__ == "__main__":
    main()
