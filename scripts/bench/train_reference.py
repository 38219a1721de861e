#!/usr/bin/python3
"""Python PyTorch reference for hfr-train's training throughput (images/s), CPU, fp32.

Times the same training step as libcommon/src/train.cpp on a FIXED random input (no data
loading, no augmentation), so that hfr-train's step time can be set against plain PyTorch on
the same model, batch and thread count. Run with Debian's python3-torch (LibTorch 1.13, the
same as hfr's build), not a pyenv/pip torch:

    /usr/bin/python3 scripts/bench/train_reference.py --model iresnet18 --batch 128 --threads 2
    /usr/bin/python3 scripts/bench/train_reference.py --model dlib --json
    /usr/bin/python3 scripts/bench/train_reference.py --model mobilefacenet --check-losses   # vs losses_reference.py
    /usr/bin/python3 scripts/bench/train_reference.py --model lightcnn9 --count               # parameters
    /usr/bin/python3 scripts/bench/train_reference.py --model lightcnn9 --parity DIR          # see parity()

One step, timed with time.perf_counter around all of it:
    zero_grad -> forward -> L2-normalise the embeddings -> CosFace (s 64, m 0.40) against a
    classifier head [classes, D] (N(0, 0.01), own param group) + idmmd_weight x ID-MMD between
    the two halves of the batch -> loss.item() -> backward -> clip_grad_norm_(all, 5.0) -> SGD step
    (lr 1e-3 backbone / 0.1 head, momentum 0.9, weight decay 2e-4).
Batch layout as hfr-train: K = batch/8 identities x P = 4 rows per modality; rows [0, K*P) are
modality A, [K*P, 2*K*P) modality B; row k*P + p of both halves has label k.

The losses are the formulas of scripts/golden/losses_reference.py (CosFace logits
s*(cos - m) on the target, s*cos elsewhere; ID-MMD from the per-identity centres of the
normalised rows), written here as batched tensor ops like losses.cpp rather than the
reference's per-row / per-pair Python loops, which would time the interpreter rather than the
maths. --check-losses compares them with the reference functions (values and gradients, float64)
before timing. ID-MMD defaults to the Gaussian multi-bandwidth MMD of the centres, which is what
hfr-train runs (losses::id_mmd) and the reference's id_mmd(); --idmmd-kind linear gives the
mean squared distance between paired centres (the reference's id_mmd(..., linear=True)).
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(os.path.dirname(HERE), "golden", "losses_reference.py")


# ---- losses (batched forms of losses_reference.py) ---------------------------------------------

def unit(x):
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cosface_logits(features, labels, weight, s=64.0, m=0.40):
    cos = unit(features) @ unit(weight).t()
    target = torch.zeros_like(cos, dtype=torch.bool)
    target[torch.arange(cos.shape[0]), labels] = True
    return torch.where(target, s * (cos - m), s * cos)


def cosface_loss(features, labels, weight, s=64.0, m=0.40):
    return F.cross_entropy(cosface_logits(features, labels, weight, s, m), labels)  # mean(logsumexp - target)


def identity_centres(f, ids, K):
    """[K, D]: mean of the L2-normalised rows of each identity 0..K-1 (all present)."""
    u = unit(f)
    total = torch.zeros(K, f.shape[1], dtype=f.dtype).index_add(0, ids, u)
    count = torch.zeros(K, dtype=f.dtype).index_add(0, ids, torch.ones(ids.shape[0], dtype=f.dtype))
    return total / count.unsqueeze(1)


def id_mmd(f_a, ids_a, f_b, ids_b, K, linear=False):
    ca, cb = identity_centres(f_a, ids_a, K), identity_centres(f_b, ids_b, K)
    if linear:
        return (ca - cb).pow(2).sum(1).mean()
    z = torch.cat([ca, cb], 0)                                   # [2K, D]
    d = (z.unsqueeze(1) - z.unsqueeze(0)).pow(2).sum(2)          # [2K, 2K], exact zeros on the diagonal
    n = 2 * K
    sigma0 = (d.detach().sum() / (n * n - n)).clamp_min(1e-12)   # no gradient through the bandwidth
    k = sum(torch.exp(-d / (sigma0 * f)) for f in (0.25, 0.5, 1.0, 2.0, 4.0))
    return (k[:K, :K] + k[K:, K:] - k[:K, K:] - k[K:, :K]).mean()


def load_reference():
    sys.dont_write_bytecode = True                        # leave no __pycache__ in scripts/golden
    spec = importlib.util.spec_from_file_location("losses_reference", REFERENCE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_losses(K, P, D, C, linear):
    """Batched losses here vs scripts/golden/losses_reference.py, float64, values and gradients."""
    ref = load_reference()
    g = torch.Generator().manual_seed(1)
    dt = torch.float64
    ids = torch.arange(K).repeat_interleave(P)
    labels = torch.cat([ids, ids])
    feats = torch.randn(2 * K * P, D, generator=g, dtype=dt)
    feats[K * P:] += 0.3 * torch.randn(D, generator=g, dtype=dt)
    weight = torch.randn(C, D, generator=g, dtype=dt) * 0.01
    worst = 0.0
    report = []

    def cmp(name, a, b):
        nonlocal worst
        err = float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
        worst = max(worst, err)
        report.append(f"{name} rel.err {err:.1e}")

    x1, w1 = feats.clone().requires_grad_(), weight.clone().requires_grad_()
    x2, w2 = feats.clone().requires_grad_(), weight.clone().requires_grad_()
    a = cosface_loss(x1, labels, w1)
    b = ref.margin_loss(x2, labels, w2, "cosface", 64.0, 0.40)
    a.backward()
    b.backward()
    cmp("cosface", a, b)
    cmp("d/dfeatures", x1.grad, x2.grad)
    cmp("d/dweight", w1.grad, w2.grad)

    f1, f2 = unit(feats).clone().requires_grad_(), unit(feats).clone().requires_grad_()
    a = id_mmd(f1[:K * P], ids, f1[K * P:], ids, K, linear)
    b = ref.id_mmd(f2[:K * P], ids, f2[K * P:], ids, linear)
    a.backward()
    b.backward()
    cmp("id_mmd" + ("_linear" if linear else ""), a, b)
    cmp("d/df", f1.grad, f2.grad)
    return worst, report


# ---- models ------------------------------------------------------------------------------------

class ConvLayer(nn.Module):
    """dlib/face-api conv layer: Conv2d with bias, then x * scale + offset per channel, optional ReLU."""

    def __init__(self, cin, cout, k, stride, padding, relu):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=True)
        self.scale = nn.Parameter(torch.ones(cout))
        self.offset = nn.Parameter(torch.zeros(cout))
        self.relu = relu

    def forward(self, x):
        x = self.conv(x) * self.scale.view(1, -1, 1, 1) + self.offset.view(1, -1, 1, 1)
        return F.relu(x) if self.relu else x


class DlibResidual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = ConvLayer(c, c, 3, 1, 1, True)
        self.conv2 = ConvLayer(c, c, 3, 1, 1, False)

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + x)


class DlibResidualDown(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.conv1 = ConvLayer(cin, cout, 3, 2, 0, True)   # stride 2, VALID
        self.conv2 = ConvLayer(cout, cout, 3, 1, 1, False)

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        pooled = F.avg_pool2d(x, 2, 2)                    # VALID
        if self.cout > self.cin:                           # zero channels appended to the shortcut
            z = pooled.new_zeros(pooled.shape[0], self.cout - self.cin, pooled.shape[2], pooled.shape[3])
            pooled = torch.cat([pooled, z], 1)
        dh, dw = pooled.shape[2] - out.shape[2], pooled.shape[3] - out.shape[3]
        assert dh in (0, 1) and dw in (0, 1), (tuple(out.shape), tuple(pooled.shape))
        if dh or dw:                                       # zeros at the bottom row / right column
            out = F.pad(out, (0, dw, 0, dh))
        return F.relu(out + pooled)


class DlibResNet(nn.Module):
    """face-api's dlib ResNet-29 face descriptor: [N, 3, 150, 150] -> [N, 128]."""

    def __init__(self):
        super().__init__()
        self.stem = ConvLayer(3, 32, 7, 2, 0, True)       # 150 -> 72
        blocks = [DlibResidual(32) for _ in range(3)]
        blocks += [DlibResidualDown(32, 64)] + [DlibResidual(64) for _ in range(3)]
        blocks += [DlibResidualDown(64, 128)] + [DlibResidual(128) for _ in range(2)]
        blocks += [DlibResidualDown(128, 256)] + [DlibResidual(256) for _ in range(2)]
        blocks += [DlibResidualDown(256, 256)]
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 3, 2)               # 72 -> 35, VALID
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes, eps=1e-5))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """insightface arcface_torch IResNet: [N, 3, 112, 112] -> [N, 512]."""

    def __init__(self, layers, num_features=512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        body, inplanes = [], 64
        for planes, n in zip((64, 128, 256, 512), layers):
            for i in range(n):
                body.append(IBasicBlock(inplanes, planes, 2 if i == 0 else 1))
                inplanes = planes
        self.body = nn.Sequential(*body)
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x):
        x = self.body(self.prelu(self.bn1(self.conv1(x))))
        x = torch.flatten(self.bn2(x), 1)                  # dropout 0: nothing
        return self.features(self.fc(x))


def conv_block(cin, cout, k=1, s=1, p=0, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.PReLU(cout))


def linear_block(cin, cout, k=1, s=1, p=0, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False), nn.BatchNorm2d(cout))


class DepthWise(nn.Module):
    def __init__(self, cin, cout, residual, stride, groups):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(conv_block(cin, groups, 1),
                                    conv_block(groups, groups, 3, stride, 1, groups=groups),
                                    linear_block(groups, cout, 1))

    def forward(self, x):
        return x + self.layers(x) if self.residual else self.layers(x)


def residual(c, num_block, groups):
    return nn.Sequential(*[DepthWise(c, c, True, 1, groups) for _ in range(num_block)])


class MobileFaceNet(nn.Module):
    """arcface_torch get_mbf(num_features 512, blocks (1, 4, 6, 2), scale 2): [N, 3, 112, 112] -> [N, 512]."""

    def __init__(self, num_features=512, stem_groups=128):
        super().__init__()
        self.layers = nn.Sequential(
            conv_block(3, 128, 3, 2, 1),
            conv_block(128, 128, 3, 1, 1, groups=stem_groups),
            DepthWise(128, 128, False, 2, 128),
            residual(128, 4, 128),
            DepthWise(128, 256, False, 2, 256),
            residual(256, 6, 256),
            DepthWise(256, 256, False, 2, 512),
            residual(256, 2, 256),
            conv_block(256, 512, 1))
        self.gdc = nn.Sequential(linear_block(512, 512, 7, 1, 0, groups=512), nn.Flatten(),
                                 nn.Linear(512, num_features, bias=False), nn.BatchNorm1d(num_features))

    def forward(self, x):
        return self.gdc(self.layers(x))


class MFM(nn.Module):
    """LightCNN's Max-Feature-Map: conv (or linear) with bias to 2*cout, max of the two channel halves."""

    def __init__(self, cin, cout, k=3, padding=1, linear=False):
        super().__init__()
        self.cout = cout
        self.filter = nn.Linear(cin, 2 * cout) if linear else nn.Conv2d(cin, 2 * cout, k, 1, padding)

    def forward(self, x):
        a, b = torch.split(self.filter(x), self.cout, 1)
        return torch.max(a, b)


def mfm_group(cin, cout):
    """LightCNN's group: 1x1 mfm (cin -> cin), 3x3 mfm (cin -> cout)."""
    return nn.Sequential(MFM(cin, cin, 1, 0), MFM(cin, cout, 3, 1))


class MFMResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = MFM(c, c, 3, 1)
        self.conv2 = MFM(c, c, 3, 1)

    def forward(self, x):
        return self.conv2(self.conv1(x)) + x


class LightCNN(nn.Module):
    """LightCNN-9 (blocks None) or LightCNN-29 v1 (blocks [1, 2, 3, 4]): [N, 1, 128, 128] -> [N, 256], the fc mfm
    (the classifier fc2 and the dropout before it are the training head, not part of the embedding)."""

    def __init__(self, blocks=None):
        super().__init__()
        pool = lambda: nn.MaxPool2d(2, 2, ceil_mode=True)
        res = lambda c, n: [MFMResBlock(c) for _ in range(n)] if blocks else []
        n = blocks or [0, 0, 0, 0]
        self.features = nn.Sequential(
            MFM(1, 48, 5, 2), pool(),
            *res(48, n[0]), mfm_group(48, 96), pool(),
            *res(96, n[1]), mfm_group(96, 192), pool(),
            *res(192, n[2]), mfm_group(192, 128),
            *res(128, n[3]), mfm_group(128, 128), pool())
        self.fc = MFM(8 * 8 * 128, 256, linear=True)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def build(name, stem_groups):
    """-> (model, input side, embedding size, input channels)"""
    if name == "dlib":
        return DlibResNet(), 150, 128, 3
    if name == "iresnet18":
        return IResNet([2, 2, 2, 2]), 112, 512, 3
    if name == "iresnet50":
        return IResNet([3, 4, 14, 3]), 112, 512, 3
    if name == "mobilefacenet":
        return MobileFaceNet(stem_groups=stem_groups), 112, 512, 3
    if name == "lightcnn9":
        return LightCNN(), 128, 256, 1
    if name == "lightcnn29":
        return LightCNN([1, 2, 3, 4]), 128, 256, 1
    raise ValueError(name)


def parity(name, directory):
    """Forward parity with hfr's graph (tests/unit/test_backbones.cpp): DIR/manifest.json lists hfr's parameters
    in graph order (name, shape, raw float32 file) and the input; they are loaded into this torch.nn model in
    module order (HWIO filters -> OIHW, [in, out] matrices -> [out, in], the fc's rows from hfr's NHWC flatten
    order to PyTorch's NCHW one), the forward pass runs in float32 and DIR/output.bin gets the result."""
    import numpy as np
    man = json.load(open(os.path.join(directory, "manifest.json")))
    model = build(name, 128)[0].eval()
    load = lambda e: torch.from_numpy(np.fromfile(os.path.join(directory, e["file"]), dtype="<f4").reshape(e["shape"]))
    params = list(model.parameters())
    if len(params) != len(man["params"]):
        raise SystemExit(f"{len(man['params'])} hfr parameters for {len(params)} torch.nn ones")
    with torch.no_grad():
        for p, e in zip(params, man["params"]):
            t = load(e)
            if t.dim() == 4:                                     # HWIO -> OIHW
                t = t.permute(3, 2, 0, 1)
            elif t.dim() == 2:                                   # [in, out] -> [out, in]; rows (h, w, c) -> (c, h, w)
                side, c = 8, t.shape[0] // 64
                t = t.reshape(side, side, c, -1).permute(3, 2, 0, 1).reshape(t.shape[1], -1)
            if tuple(t.shape) != tuple(p.shape):
                raise SystemExit(f"{e['name']}: {tuple(t.shape)} for {tuple(p.shape)}")
            p.copy_(t)
        y = model(load(man["input"]))
    y.numpy().astype("<f4").tofile(os.path.join(directory, "output.bin"))
    print(f"{name}: {sum(p.numel() for p in params)} parameters, output {list(y.shape)}")
    return 0


# ---- the benchmark -----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True,
                    choices=["dlib", "iresnet18", "iresnet50", "mobilefacenet", "lightcnn9", "lightcnn29"])
    ap.add_argument("--batch", type=int, default=128, help="images per step, a multiple of 8 (K = batch/8, P = 4)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (interop threads: 1)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--classes", type=int, default=1000, help="rows of the classifier head")
    ap.add_argument("--channels-last", action="store_true", help="model and input in torch.channels_last")
    ap.add_argument("--idmmd-weight", type=float, default=1.0, help="ID-MMD weight (hfr-train --idmmd; 0: not computed)")
    ap.add_argument("--idmmd-kind", choices=["gaussian", "linear"], default="gaussian",
                    help="gaussian: hfr-train's losses::id_mmd (default); linear: mean squared centre distance")
    ap.add_argument("--mbf-stem-groups", type=int, default=128,
                    help="groups of mobilefacenet's second 3x3 conv (128: depthwise; upstream arcface_torch has 64)")
    ap.add_argument("--check-losses", action="store_true",
                    help="first compare the losses with scripts/golden/losses_reference.py (float64)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (progress on stderr)")
    ap.add_argument("--count", action="store_true", help="print the backbone's parameter count and exit")
    ap.add_argument("--parity", metavar="DIR", help="forward hfr's exported weights and input (see parity()), no timing")
    a = ap.parse_args()
    if a.parity:
        return parity(a.model, a.parity)
    if a.count:
        print(sum(p.numel() for p in build(a.model, a.mbf_stem_groups)[0].parameters()))
        return 0
    if a.batch < 16 or a.batch % 8:
        ap.error("--batch must be a multiple of 8, at least 16 (K = batch/8 >= 2 identities)")
    if a.steps < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--steps >= 1, --warmup >= 0, --threads >= 1")
    K, P = a.batch // 8, 4
    if a.classes < max(K, 2):
        ap.error(f"--classes must be >= K = {K}")

    torch.set_num_interop_threads(1)
    torch.set_num_threads(a.threads)
    log = sys.stderr if a.json else sys.stdout
    linear = a.idmmd_kind == "linear"

    torch.manual_seed(0)
    model, size, D, channels = build(a.model, a.mbf_stem_groups)
    model.train()
    head = nn.Parameter(torch.randn(a.classes, D) * 0.01)
    x = torch.randn(a.batch, channels, size, size)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    ids = torch.arange(K).repeat_interleave(P)          # row k*P + p of each half: identity k
    labels = torch.cat([ids, ids])
    half = K * P
    backbone = list(model.parameters())
    n_params = sum(p.numel() for p in backbone)
    everything = backbone + [head]
    opt = torch.optim.SGD([{"params": backbone, "lr": 1e-3}, {"params": [head], "lr": 0.1}],
                          lr=1e-3, momentum=0.9, weight_decay=2e-4)

    print(f"{a.model}: {n_params:,} backbone parameters (+ head {a.classes}x{D} = {head.numel():,}); "
          f"input {list(x.shape)}{' channels_last' if a.channels_last else ''}; K={K} x P={P} per modality; "
          f"threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}); torch {torch.__version__}; "
          f"ID-MMD {a.idmmd_kind} x {a.idmmd_weight:g}", file=log)

    if a.check_losses:
        worst, report = check_losses(K, P, D, a.classes, linear)
        print("losses vs losses_reference.py: " + ", ".join(report), file=log)
        if worst > 1e-9:
            print(f"losses differ from the reference (worst relative error {worst:.1e})", file=sys.stderr)
            return 1

    def step():
        opt.zero_grad()
        emb = model(x)
        f = F.normalize(emb, dim=1)
        loss = cosface_loss(f, labels, head)
        if a.idmmd_weight > 0:
            loss = loss + a.idmmd_weight * id_mmd(f[:half], ids, f[half:], ids, K, linear)
        value = loss.item()                              # hfr-train reads the loss every step too
        loss.backward()
        torch.nn.utils.clip_grad_norm_(everything, 5.0)
        opt.step()
        return value

    times, losses = [], []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        value = step()
        dt = time.perf_counter() - t0
        warm = i < a.warmup
        if not warm:
            times.append(dt)
            losses.append(value)
        print(f"{'warmup' if warm else 'step'} {i if warm else i - a.warmup}: {dt:.3f} s "
              f"({a.batch / dt:.1f} images/s), loss {value:.4f}", file=log)
        if value != value or value in (float("inf"), float("-inf")):
            print("the loss is not finite", file=sys.stderr)
            return 1

    med = statistics.median(times)
    ips = a.batch / med
    if a.json:
        print(json.dumps({"model": a.model, "batch": a.batch, "threads": a.threads, "steps": a.steps,
                          "median_step_s": med, "images_per_s": ips, "params": n_params,
                          "torch_version": torch.__version__, "channels_last": a.channels_last,
                          "warmup": a.warmup, "step_s": times, "classes": a.classes,
                          "idmmd": {"kind": a.idmmd_kind, "weight": a.idmmd_weight}}))
    else:
        print(f"{a.model}: median step {med:.3f} s over {a.steps} steps -> {ips:.1f} images/s "
              f"(batch {a.batch}, {a.threads} threads{', channels_last' if a.channels_last else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
