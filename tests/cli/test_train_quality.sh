#!/usr/bin/env bash
# hfr-train --ri (the recognisability index, methods.md §5): the model file
# gains the index head ("ri") and the UI-distance quality ("quality", computed
# in the graph from the state's UI centre), its metrics carry the index terms,
# hfr-embed writes both in [0, 1] for every face (and none with a model without
# them), crops averaged down to 4x4 pixels score lower than the originals,
# the unrecognisable-identity centre is part of the state so a resumed run
# ends exactly where an uninterrupted one does, and bad values are refused.
. "$(dirname "$0")/lib.sh"

unset WORLD_SIZE RANK LOCAL_RANK MASTER_ADDR MASTER_PORT
render_training_pairs
grep '"spectrum":"nir850"' "$T/w/images.jsonl" | head -6 >"$T/w/few.jsonl"
RI=(hfr-train -t 1 --ids 4 --per-modality 2 --seed 3 --ri 1 --ri-diversion 0.1 --low-res 0.5 --low-res-min 8)

run "${RI[@]}" --steps 4 --log-every 1 --metrics "$T/m.jsonl" -o "$T/ri.hft" "$T/w/images.jsonl"
expect_rc 0 "4 steps with --ri 1 --ri-diversion 0.1"
$PY - "$T/m.jsonl" >"$T/py.out" 2>&1 <<'PY'
import json, math, sys
m = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert len(m) == 4, len(m)
for r in m:
    for k in ("ri_loss", "index_diversion", "ri_mean", "ri_head_mean", "ui_quality_mean"):
        assert math.isfinite(r[k]), (k, r)
        assert 0 <= r[k] <= 1 or k in ("ri_loss", "index_diversion"), (k, r)
print("index mean %.3f, head mean %.3f, UI quality mean %.3f" % (m[-1]["ri_mean"], m[-1]["ri_head_mean"], m[-1]["ui_quality_mean"]))
PY
[ $? -eq 0 ] && pass "metrics carry the index terms: $(cat "$T/py.out")" || fail "metrics: $(tail -c 300 "$T/py.out")"
hfr-tensor info --json "$T/ri.hft" | head -1 | $PY -c '
import json, sys
m = json.loads(sys.stdin.readline())["metadata"]
assert m["outputs"]["ri"].startswith("quality_"), m["outputs"]
assert m["outputs"]["quality"].startswith("uiq_"), m["outputs"]
assert m["provenance"]["quality_head"]["hidden"] == 64
assert "ui_quality" in m["provenance"]
assert m["provenance"]["fine_tuning"]["ri"] == 1.0' 2>"$T/py.out" && pass "the model file has the ri and quality outputs and says so" ||
  fail "model metadata: $(tail -c 300 "$T/py.out")"

run hfr-embed -q --aligned -m "$T/ri.hft" -o "$T/e.hft" -r "$T/e.jsonl" "$T/w/few.jsonl"
expect_rc 0 "hfr-embed runs the model with a quality head"
$PY - "$T/e.jsonl" >"$T/py.out" 2>&1 <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
q, ri = [x["quality"] for x in r], [x["ri"] for x in r]
assert len(q) == 6 and all(0 <= v <= 1 for v in q + ri), r
print("quality " + " ".join("%.3f" % v for v in q) + ", ri " + " ".join("%.3f" % v for v in ri))
PY
[ $? -eq 0 ] && pass "a quality and an ri in [0, 1] for every face: $(cat "$T/py.out")" || fail "quality: $(tail -c 300 "$T/py.out")"
# the quality is (1 - cos(embedding, u)) / 2 with u the state's UI centre
hfr-tensor export --tensor=embeddings -o "$T/e.npy" "$T/e.hft" && hfr-tensor export --tensor=ui_centre -o "$T/u.npy" "$T/ri.hft.state" &&
  $PY - "$T/e.npy" "$T/u.npy" "$T/e.jsonl" >"$T/py.out" 2>&1 <<'PY'
import json, sys
import numpy as np
e, u = np.load(sys.argv[1]).astype(float), np.load(sys.argv[2]).astype(float)
e /= np.linalg.norm(e, axis=1, keepdims=True)
want = (1 - e @ (u / np.linalg.norm(u))) / 2
got = np.array([json.loads(l)["quality"] for l in open(sys.argv[3])])
d = np.abs(got - want).max()
assert d < 1e-3, (got, want)
print("max difference %.1e" % d)
PY
[ $? -eq 0 ] && pass "quality = (1 - cos(embedding, UI centre)) / 2: $(cat "$T/py.out")" || fail "UI quality: $(tail -c 300 "$T/py.out")"
# crops averaged down to 4x4 pixels (unrecognisable) score lower than the crops themselves
mkdir -p "$T/blur"
$PY - "$T/w/few.jsonl" "$T/blur" >"$T/py.out" 2>&1 <<'PY'
import json, os, sys
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
with open(os.path.join(out, "few.jsonl"), "w") as f:
    for line in open(src):
        r = json.loads(line)
        im = Image.open(os.path.join(os.path.dirname(src), r["path"])).convert("RGB")
        r["path"] = os.path.join(out, os.path.basename(r["path"]))
        im.resize((4, 4), Image.BOX).resize(im.size, Image.BILINEAR).save(r["path"])
        f.write(json.dumps(r) + "\n")
PY
run hfr-embed -q --aligned -m "$T/ri.hft" -o "$T/eb.hft" -r "$T/eb.jsonl" "$T/blur/few.jsonl"
$PY - "$T/e.jsonl" "$T/eb.jsonl" >"$T/py.out" 2>&1 <<'PY'
import json, sys
q = [json.loads(l)["quality"] for l in open(sys.argv[1])]
b = [json.loads(l)["quality"] for l in open(sys.argv[2])]
assert len(q) == len(b) == 6 and all(x < y for x, y in zip(b, q)), (q, b)
print("mean %.3f blurred, %.3f sharp" % (sum(b) / 6, sum(q) / 6))
PY
[ $? -eq 0 ] && pass "4x4-blurred crops score lower, 6 of 6: $(cat "$T/py.out")" || fail "blurred quality: $(tail -c 300 "$T/py.out")"
run hfr-embed -q --aligned --flip -m "$T/ri.hft" -o "$T/ef.hft" -r "$T/ef.jsonl" "$T/w/few.jsonl"
grep -c '"quality"' "$T/ef.jsonl" | grep -qx 6 && pass "with --flip too (the mean of both)" || fail "--flip quality: $(head -c 300 "$T/ef.jsonl")"
run hfr-embed -q --aligned -m dlib -o "$T/e0.hft" -r "$T/e0.jsonl" "$T/w/few.jsonl"
! grep -q '"quality"' "$T/e0.jsonl" && pass "no quality from a model without the head" || fail "dlib records have a quality"
! grep -q '"ri"' "$T/e0.jsonl" && pass "and no ri" || fail "dlib records have an ri"

# classifier-only steps (--head-steps = --steps) add the quality and keep the pretrained embedding
run "${RI[@]}" --steps 2 --head-steps 2 -o "$T/q.hft" "$T/w/images.jsonl"
expect_rc 0 "--ri with classifier-only steps"
run hfr-embed -q --aligned -m "$T/q.hft" -o "$T/eq.hft" -r "$T/eq.jsonl" "$T/w/few.jsonl"
hfr-tensor export --tensor=embeddings -o "$T/eq.npy" "$T/eq.hft" && hfr-tensor export --tensor=embeddings -o "$T/e0.npy" "$T/e0.hft" &&
  $PY -c 'import json, sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape and (a == b).all(), abs(a - b).max()
assert all("quality" in json.loads(l) for l in open(sys.argv[3]))' "$T/eq.npy" "$T/e0.npy" "$T/eq.jsonl" 2>"$T/py.out" &&
  pass "the embeddings equal dlib's bit for bit, with a quality per face" || fail "head-only: $(tail -c 300 "$T/py.out")"

# resume: 2 + 2 == 4 (the UI centre is in the state)
run "${RI[@]}" --steps 2 -o "$T/half.hft" "$T/w/images.jsonl"
run "${RI[@]}" --steps 4 --resume "$T/half.hft.state" -o "$T/half.hft" "$T/w/images.jsonl"
expect_rc 0 "resumed to 4 steps"
C1=$(model_checksum "$T/ri.hft") C2=$(model_checksum "$T/half.hft")
[ -n "$C1" ] && [ "$C1" = "$C2" ] && pass "resumed --ri run equals the uninterrupted one ($C1)" || fail "resume differs: $C1 vs $C2"

# fine-tuning a model that has a head keeps it (and trains it further)
run "${RI[@]}" --steps 1 -m "$T/ri.hft" -o "$T/again.hft" "$T/w/images.jsonl"
expect_rc 0 "a model with a quality head fine-tunes again"
{ hfr-tensor info --json "$T/ri.hft" | head -1; hfr-tensor info --json "$T/again.hft" | head -1; } | $PY -c '
import json, sys
a, m = (json.loads(l)["metadata"] for l in sys.stdin)
assert m["outputs"]["quality"].startswith("uiq_") and m["outputs"]["ri"].startswith("quality_"), m["outputs"]
count = lambda m: len([n for n in m["graph"] if n["name"].startswith("uiq_")])
assert count(m) == count(a) > 0, "one UI quality, not two: %d vs %d" % (count(m), count(a))' 2>"$T/py.out" &&
  pass "with one UI quality (re-estimated)" || fail "again: $(tail -c 300 "$T/py.out")"
# without --ri the UI centre no longer fits the new embedding: the quality is left out, with a notice
run hfr-train -t 1 --ids 4 --per-modality 2 --seed 3 --steps 1 -m "$T/ri.hft" -o "$T/plain.hft" "$T/w/images.jsonl"
expect_rc 0 "fine-tuned without --ri"
expect_err "UI-distance quality is left out" "says so"
hfr-tensor info --json "$T/plain.hft" | head -1 | $PY -c '
import json, sys
m = json.loads(sys.stdin.readline())["metadata"]
assert "quality" not in m["outputs"] and "ui_quality" not in m["provenance"], m["outputs"]' 2>"$T/py.out" &&
  pass "and has no quality output" || fail "plain: $(tail -c 300 "$T/py.out")"

# perceptibility attention: a gate on dlib's last feature map, trained with the rest; hfr-embed runs it
run "${RI[@]}" --steps 2 --attention -o "$T/att.hft" "$T/w/images.jsonl"
expect_rc 0 "--attention with --ri"
expect_err "perceptibility attention on Relu_119" "says where the gate went (dlib's last 8x8 map)"
hfr-tensor info --json "$T/att.hft" | head -1 | $PY -c '
import json, sys
m = json.loads(sys.stdin.readline())["metadata"]
assert m["provenance"]["perceptibility_attention"]["size"] == [8, 8], m["provenance"]["perceptibility_attention"]
assert m["provenance"]["fine_tuning"]["attention"] is True' 2>"$T/py.out" && pass "the model file has the gate" ||
  fail "attention metadata: $(tail -c 300 "$T/py.out")"
hfr-tensor export --tensor=const/attention_conv_0 -o "$T/g.npy" "$T/att.hft" &&
  $PY -c 'import numpy as np, sys; sys.exit(0 if np.abs(np.load(sys.argv[1])).max() > 0 else 1)' "$T/g.npy" &&
  pass "the gate's filter trained (no longer zero)" || fail "the gate's filter is still zero"
run hfr-embed -q --aligned -m "$T/att.hft" -o "$T/ea.hft" -r "$T/ea.jsonl" "$T/w/few.jsonl"
expect_rc 0 "hfr-embed runs the model with the gate"

run "${RI[@]}" --steps 1 --ri-lr 0 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "--ri-lr 0"
run "${RI[@]}" --steps 1 --ri-margin 1.5 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "--ri-margin outside [-1, 1]"
expect_err "--ri-margin" "names the option"

finish
