#!/usr/bin/env python3
"""Writes synthetic stand-ins for the list files of the NIR-VIS benchmarks.

    scripts/make-protocol-standins.py DIR

The real databases (CASIA NIR-VIS 2.0, LAMP-HQ, Oulu-CASIA NIR-VIS,
BUAA-VisNir) are behind licence agreements, so tests read stand-ins with the
same file names, line formats, layout and (where published) counts:

  DIR/casia-nir-vis-2.0/protocols/{vis_gallery,nir_probe,vis_train,nir_train}_N.txt
      10 folds, Windows paths (s2\\VIS\\10117\\001.jpg), CRLF line ends.
      Fold 1: 358 gallery (one VIS image per subject), 6,208 NIR probes;
      357 training subjects per fold.
  DIR/lamp-hq/Protocols/test/{gallery_visN,probe_nirN}.txt
  DIR/lamp-hq/Protocols/train/{train_visN,train_nirN}.txt
      10 folds, a header line then `path label`. Fold 1: 273 gallery,
      27,263 probes; training subjects per fold 300, 285, 285, 298, 300, 273,
      272, 281, 274, 279 of 573.
  DIR/oulu-casia-nir-vis/{vis,nir}_test_paths.csv     `path,P###`
  DIR/oulu-casia-nir-vis/train_{vis,nir}_paths.txt    `path label`
      20 training and 20 test subjects, 6 expressions x 8 images per modality:
      960 gallery, 960 probes.
  DIR/buaa-visnir/{test,train}_{vis,nir}_paths.txt    `subject/n.bmp`
      50 training and 100 test subjects: 100 gallery, 1,284 probes.
  DIR/standins.json   the counts written, per protocol and fold.

Subject ids, image names and the split of subjects into folds are synthetic.
Output is deterministic (its own generator, no `random`), plain python3
standard library.
"""

import json
import os
import sys


class Rng:
    """splitmix64: the same stream on every Python version."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    def below(self, n):
        return self.next() % n

    def shuffled(self, items):
        items = list(items)
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]
        return items


def spread(total, n):
    """Counts for n subjects summing to total, as even as possible."""
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def write(path, lines, crlf=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    end = "\r\n" if crlf else "\n"
    with open(path, "w", encoding="ascii", newline="") as f:
        for line in lines:
            f.write(line + end)
    return len(lines)


def casia(root):
    # 725 subjects over the four capture sessions s1-s4.
    subjects = []
    for session, first, count in (("s1", 1, 200), ("s2", 10001, 200), ("s3", 20001, 163), ("s4", 30001, 162)):
        subjects += [(session, "%05d" % (first + i)) for i in range(count)]
    out = os.path.join(root, "casia-nir-vis-2.0", "protocols")
    counts = {}
    for fold in range(1, 11):
        rng = Rng(1000 + fold)
        order = rng.shuffled(subjects)
        test = sorted(order[:358], key=lambda s: s[1])
        # Published folds train on about 357 identities; the rest of the 725 sit out.
        train = sorted(order[358:715], key=lambda s: s[1])
        probes_total = 6208 if fold == 1 else 6208 + rng.below(201) - 100
        gallery = ["%s\\VIS\\%s\\001.jpg" % s for s in test]
        probes = []
        for (session, sid), n in zip(test, spread(probes_total, len(test))):
            probes += ["%s\\NIR\\%s\\%03d.bmp" % (session, sid, k + 1) for k in range(n)]
        vis_train, nir_train = [], []
        for (session, sid), n in zip(train, spread(2500 + rng.below(100), len(train))):
            vis_train += ["%s\\VIS\\%s\\%03d.jpg" % (session, sid, k + 1) for k in range(n)]
        for (session, sid), n in zip(train, spread(6100 + rng.below(200), len(train))):
            nir_train += ["%s\\NIR\\%s\\%03d.bmp" % (session, sid, k + 1) for k in range(n)]
        counts[str(fold)] = {
            "gallery": write(os.path.join(out, "vis_gallery_%d.txt" % fold), gallery, crlf=True),
            "probes": write(os.path.join(out, "nir_probe_%d.txt" % fold), probes, crlf=True),
            "train_vis": write(os.path.join(out, "vis_train_%d.txt" % fold), vis_train, crlf=True),
            "train_nir": write(os.path.join(out, "nir_train_%d.txt" % fold), nir_train, crlf=True),
            "test_subjects": len(test),
            "train_subjects": len(train),
        }
    return counts


LAMP_TRAIN_SUBJECTS = {1: 300, 2: 285, 3: 285, 4: 298, 5: 300, 6: 273, 7: 272, 8: 281, 9: 274, 10: 279}


def lamp(root):
    subjects = list(range(1, 574))
    test_dir = os.path.join(root, "lamp-hq", "Protocols", "test")
    train_dir = os.path.join(root, "lamp-hq", "Protocols", "train")
    header = "path label"
    counts = {}
    for fold in range(1, 11):
        rng = Rng(2000 + fold)
        order = rng.shuffled(subjects)
        n_train = LAMP_TRAIN_SUBJECTS[fold]
        train = sorted(order[:n_train])
        test = sorted(order[n_train:])
        probes_total = 27263 if fold == 1 else (len(test) * 9986 + 50) // 100
        gallery = ["VIS/%04d/%04d_vis_001.jpg %d" % (s, s, s) for s in test]
        probes = []
        for s, n in zip(test, spread(probes_total, len(test))):
            probes += ["NIR/%04d/%04d_nir_%03d.jpg %d" % (s, s, k + 1, s) for k in range(n)]
        vis_train = ["VIS/%04d/%04d_vis_%03d.jpg %d" % (s, s, k + 1, s) for s in train for k in range(3)]
        nir_train = ["NIR/%04d/%04d_nir_%03d.jpg %d" % (s, s, k + 1, s) for s in train for k in range(10)]
        counts[str(fold)] = {
            "gallery": write(os.path.join(test_dir, "gallery_vis%d.txt" % fold), [header] + gallery) - 1,
            "probes": write(os.path.join(test_dir, "probe_nir%d.txt" % fold), [header] + probes) - 1,
            "train_vis": write(os.path.join(train_dir, "train_vis%d.txt" % fold), [header] + vis_train) - 1,
            "train_nir": write(os.path.join(train_dir, "train_nir%d.txt" % fold), [header] + nir_train) - 1,
            "test_subjects": len(test),
            "train_subjects": len(train),
        }
    return counts


EXPRESSIONS = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")


def oulu(root):
    rng = Rng(3000)
    order = rng.shuffled(range(1, 41))
    test, train = sorted(order[:20]), sorted(order[20:])
    out = os.path.join(root, "oulu-casia-nir-vis")

    def images(modality, subject):
        return ["%s/Strong/P%03d/%s/%03d.jpeg" % (modality, subject, e, k) for e in EXPRESSIONS for k in range(8)]

    gallery = ["%s,P%03d" % (p, s) for s in test for p in images("VL", s)]
    probes = ["%s,P%03d" % (p, s) for s in test for p in images("NI", s)]
    vis_train = ["%s %d" % (p, s) for s in train for p in images("VL", s)]
    nir_train = ["%s %d" % (p, s) for s in train for p in images("NI", s)]
    return {"1": {
        "gallery": write(os.path.join(out, "vis_test_paths.csv"), gallery),
        "probes": write(os.path.join(out, "nir_test_paths.csv"), probes),
        "train_vis": write(os.path.join(out, "train_vis_paths.txt"), vis_train),
        "train_nir": write(os.path.join(out, "train_nir_paths.txt"), nir_train),
        "test_subjects": len(test),
        "train_subjects": len(train),
    }}


def buaa(root):
    out = os.path.join(root, "buaa-visnir")
    train, test = list(range(1, 51)), list(range(51, 151))
    gallery = ["%d/1.bmp" % s for s in test]
    probes = []
    for s, n in zip(test, spread(1284, len(test))):
        probes += ["%d/%d.bmp" % (s, k + 2) for k in range(n)]
    vis_train = ["%d/1.bmp" % s for s in train]
    nir_train = ["%d/%d.bmp" % (s, k + 2) for s in train for k in range(12)]
    return {"1": {
        "gallery": write(os.path.join(out, "test_vis_paths.txt"), gallery),
        "probes": write(os.path.join(out, "test_nir_paths.txt"), probes),
        "train_vis": write(os.path.join(out, "train_vis_paths.txt"), vis_train),
        "train_nir": write(os.path.join(out, "train_nir_paths.txt"), nir_train),
        "test_subjects": len(test),
        "train_subjects": len(train),
    }}


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write("usage: make-protocol-standins.py DIR\n")
        return 2
    root = argv[1]
    os.makedirs(root, exist_ok=True)
    manifest = {
        "casia-nir-vis-2.0": casia(root),
        "lamp-hq": lamp(root),
        "oulu-casia-nir-vis": oulu(root),
        "buaa-visnir": buaa(root),
    }
    with open(os.path.join(root, "standins.json"), "w", encoding="ascii", newline="\n") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
