#!/usr/bin/env bash
# hfr-train end to end on rendered VIS/NIR pairs: reconstruct one group photo,
# synthesise sampled identities, render them, fine-tune the dlib ResNet with
# CosFace + ID-MMD for a few steps: the model file verifies, names its base,
# and hfr-embed uses it (other embeddings than the base model's); the metrics
# are complete; a resumed run ends exactly where an uninterrupted one does; SIGTERM
# leaves a state to resume from; bad records, too few subjects, a diverging
# loss and a state of another model give clear errors. A MobileFaceNet trained
# from scratch with AdamW resumes exactly and hfr-embed runs it, as it runs a
# LightCNN-9 (grey input) trained from scratch. Needs the fetched npm models; runs
# with face-mesh identities when the ICT FaceKit is absent.
. "$(dirname "$0")/lib.sh"

unset WORLD_SIZE RANK LOCAL_RANK MASTER_ADDR MASTER_PORT
# Set-up: 3 reconstructed + 5 sampled identities, 2 poses, VIS + NIR 850.
render_training_pairs

TR=(hfr-train -t 1 --ids 4 --per-modality 2 --lr 0.002 --head-lr 0.002 --seed 3)

# ---------------------------------------------------------------------------
# 1. Fine-tune: model file, metrics, hfr-embed uses it.
run "${TR[@]}" --steps 8 --log-every 1 --metrics "$T/m.jsonl" -o "$T/ft.hft" "$T/w/images.jsonl"
expect_rc 0 "8 steps of CosFace + ID-MMD on the dlib ResNet"
run hfr-tensor verify "$T/ft.hft"
expect_rc 0 "the fine-tuned model file verifies"
hfr-tensor info --json "$T/ft.hft" | grep -q '"fine_tuning"' && pass "provenance names the training" || fail "no fine_tuning provenance"
$PY - "$T/m.jsonl" >"$T/py.out" 2>&1 <<'PY'
import json, math, sys
m = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert len(m) == 8, len(m)
for r in m:
    assert all(math.isfinite(r[k]) for k in ("loss", "margin_loss", "idmmd", "lr", "images_per_s")), r
# 8 steps are too few for the loss to fall reliably (the unit tests check that training lowers a loss)
assert [r["step"] for r in m] == list(range(8))
assert all(r["loader_wait_ms"] >= 0 and r["lr"] == 0.002 for r in m)
print("margin loss %.2f -> %.2f, ID-MMD %.4f -> %.4f, %.1f images/s" % (m[0]["margin_loss"], m[-1]["margin_loss"], m[0]["idmmd"], m[-1]["idmmd"], m[-1]["images_per_s"]))
PY
[ $? -eq 0 ] && pass "metrics: $(cat "$T/py.out")" || fail "metrics: $(tail -c 400 "$T/py.out")"
grep '"spectrum":"nir850"' "$T/w/images.jsonl" | head -4 >"$T/w/few.jsonl"
run hfr-embed -q --aligned -m "$T/ft.hft" -o "$T/e1.hft" -r "$T/e1.jsonl" "$T/w/few.jsonl"
expect_rc 0 "hfr-embed runs the fine-tuned model"
run hfr-embed -q --aligned -m dlib -o "$T/e0.hft" -r "$T/e0.jsonl" "$T/w/few.jsonl"
hfr-tensor export --tensor embeddings -o "$T/e1.npy" "$T/e1.hft" && hfr-tensor export --tensor embeddings -o "$T/e0.npy" "$T/e0.hft"
$PY -c "
import numpy as np, sys
a, b = np.load('$T/e0.npy'), np.load('$T/e1.npy')
assert a.shape == b.shape == (4, 128), (a.shape, b.shape)
d = np.abs(a - b).max()
assert 1e-4 < d, d
print('max change %.4f' % d)" >"$T/py.out" 2>&1 && pass "embeddings changed by fine-tuning: $(cat "$T/py.out")" || fail "embeddings: $(cat "$T/py.out")"

# ---------------------------------------------------------------------------
# 2. Resume: 4 steps + 4 resumed == 8 uninterrupted (same model checksum).
run "${TR[@]}" --steps 4 -o "$T/half.hft" "$T/w/images.jsonl"
expect_rc 0 "first half"
run "${TR[@]}" --steps 8 --resume "$T/half.hft.state" -o "$T/half.hft" "$T/w/images.jsonl"
expect_rc 0 "resumed to 8 steps"
expect_err "resuming at step 4" "says where it resumes"
C1=$(model_checksum "$T/ft.hft")
C2=$(model_checksum "$T/half.hft")
[ -n "$C1" ] && [ "$C1" = "$C2" ] && pass "resumed run equals the uninterrupted one (checksum $C1)" || fail "resume differs: $C1 vs $C2"

# ---------------------------------------------------------------------------
# 2b. From scratch: MobileFaceNet (batch norm with running statistics) with
# AdamW; resumed == uninterrupted; hfr-embed runs the result (512-d).
SC=(hfr-train -t 1 -m mobilefacenet --optimizer adamw --lr 0.001 --ids 4 --per-modality 2 --seed 5)
run "${SC[@]}" --steps 4 -o "$T/sc.hft" "$T/w/images.jsonl"
expect_rc 0 "MobileFaceNet from scratch with AdamW"
hfr-tensor info --json "$T/sc.hft" | grep -q '"from_scratch":true' && pass "provenance says from scratch" || fail "no from_scratch provenance"
run "${SC[@]}" --steps 2 -o "$T/sc2.hft" "$T/w/images.jsonl"
run "${SC[@]}" --steps 4 --resume "$T/sc2.hft.state" -o "$T/sc2.hft" "$T/w/images.jsonl"
expect_rc 0 "AdamW run resumed"
C1=$(model_checksum "$T/sc.hft")
C2=$(model_checksum "$T/sc2.hft")
[ -n "$C1" ] && [ "$C1" = "$C2" ] && pass "AdamW + batch-norm statistics resume exactly (checksum $C1)" || fail "scratch resume differs: $C1 vs $C2"
run hfr-embed -q --aligned -m "$T/sc.hft" -o "$T/es.hft" -r "$T/es.jsonl" "$T/w/few.jsonl"
expect_rc 0 "hfr-embed runs the model trained from scratch"
hfr-tensor export --tensor embeddings -o "$T/es.npy" "$T/es.hft"
$PY -c "
import numpy as np
a = np.load('$T/es.npy')
assert a.shape == (4, 512) and np.isfinite(a).all(), a.shape
assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-4)" 2>"$T/py.out" && pass "512-d unit embeddings" || fail "scratch embeddings: $(cat "$T/py.out")"
run hfr-train -t 1 -m mobilefacenet --lr 0.001 --ids 4 --per-modality 2 --seed 5 --steps 6 --resume "$T/sc2.hft.state" -o "$T/sc3.hft" "$T/w/images.jsonl"
expect_rc 1 "a state of another optimizer is refused"
expect_err "--optimizer adamw" "names the optimizer the state needs"

# ---------------------------------------------------------------------------
# 2b'. From scratch: LightCNN-9 (MFM, no batch norm; one grey 128x128 channel
# from the RGB crops); hfr-embed runs the result on crops (256-d).
run hfr-train -t 1 -m lightcnn9 --optimizer adamw --lr 0.001 --ids 4 --per-modality 2 --seed 5 --steps 2 \
  -o "$T/lc.hft" "$T/w/images.jsonl"
expect_rc 0 "LightCNN-9 from scratch"
hfr-tensor info --json "$T/lc.hft" | grep -q '"channels":"grey"' && pass "LightCNN-9 model file takes grey input" ||
  fail "no grey preprocessing in the LightCNN-9 model file"
run hfr-embed -q --aligned -m "$T/lc.hft" -o "$T/el.hft" -r "$T/el.jsonl" "$T/w/few.jsonl"
expect_rc 0 "hfr-embed runs LightCNN-9"
hfr-tensor export --tensor embeddings -o "$T/el.npy" "$T/el.hft"
$PY -c "
import numpy as np
a = np.load('$T/el.npy')
assert a.shape == (4, 256) and np.isfinite(a).all(), a.shape
assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-4)" 2>"$T/py.out" && pass "256-d unit LightCNN-9 embeddings" ||
  fail "LightCNN-9 embeddings: $(cat "$T/py.out")"

# ---------------------------------------------------------------------------
# 2c. Augmentation: reproducible from the seed, and it changes the training.
AUG=(--jitter 4 --color 0.2 --blur 0.5 --low-res 0.5 --low-res-min 20)
run "${TR[@]}" --steps 2 "${AUG[@]}" -o "$T/a1.hft" "$T/w/images.jsonl"
expect_rc 0 "training with every augmentation"
run "${TR[@]}" --steps 2 "${AUG[@]}" -o "$T/a2.hft" "$T/w/images.jsonl"
run "${TR[@]}" --steps 2 -o "$T/a0.hft" "$T/w/images.jsonl"
[ "$(model_checksum "$T/a1.hft")" = "$(model_checksum "$T/a2.hft")" ] && pass "augmented runs are reproducible from the seed" || fail "augmentation not deterministic"
[ "$(model_checksum "$T/a1.hft")" != "$(model_checksum "$T/a0.hft")" ] && pass "augmentation changes what is learnt" || fail "augmentation had no effect"
hfr-tensor info --json "$T/a1.hft" | grep -q '"low_res":0.5' && pass "provenance records the augmentation" || fail "augmentation not in provenance"
run hfr-train --color 1.5 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "--color out of range is a usage error"

# ---------------------------------------------------------------------------
# 3. SIGTERM leaves a state that --resume continues.
"${TR[@]}" --steps 100000 -o "$T/sig.hft" "$T/w/images.jsonl" >"$T/out" 2>"$T/err" &
PID=$!
sleep 8
kill -TERM $PID
wait $PID
RC=$?
expect_rc 1 "SIGTERM ends the run"
expect_err "--resume" "tells how to continue"
[ -f "$T/sig.hft.state" ] && [ -f "$T/sig.hft" ] && pass "state and model written on SIGTERM" || fail "no state after SIGTERM"

# ---------------------------------------------------------------------------
# 4. Bad input.
head -3 "$T/w/images.jsonl" >"$T/bad.jsonl"
echo '{"path":"renders/x.png","modality":"VIS"}' >>"$T/bad.jsonl"
cp "$T/bad.jsonl" "$T/w/bad.jsonl"
run "${TR[@]}" --steps 2 -o "$T/bad.hft" "$T/w/bad.jsonl"
expect_rc 1 "a record without a subject"
expect_err "bad.jsonl:4" "names the file and line"
[ ! -e "$T/bad.hft" ] && pass "no model written" || fail "a model was written from bad records"
grep '"modality":"VIS"' "$T/w/images.jsonl" >"$T/w/vis.jsonl"
run "${TR[@]}" --steps 2 -o "$T/bad.hft" "$T/w/vis.jsonl"
expect_rc 1 "one modality only"
expect_err "subjects with both VIS and NIR" "says why"
cp "$T/ft.hft" "$T/keep.hft"
run hfr-train -t 1 --ids 4 --per-modality 2 --seed 3 --steps 4 --checkpoint-every 1 --lr 1e12 --clip 0 -o "$T/keep.hft" \
  "$T/w/images.jsonl"
expect_rc 1 "a diverging loss stops the run"
expect_err "not finite" "says the loss is not finite"
run "${TR[@]}" -m faceres --steps 6 --resume "$T/half.hft.state" -o "$T/other.hft" "$T/w/images.jsonl"
expect_rc 1 "a state of another model is refused"
expect_err "another model" "says so"
run hfr-train --steps 0 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "--steps 0 is a usage error"
run hfr-train "$T/w/images.jsonl"
expect_rc 2 "no -o is a usage error"
run hfr-train --precision fp16 --steps 1 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "--precision fp16 on the CPU is a usage error"
expect_err "needs --device cuda" "says fp16 needs CUDA"
run hfr-train --precision fp8 --steps 1 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "--precision fp8 is a usage error"
if ! nvidia-smi -L >/dev/null 2>&1; then
  run hfr-train --device cuda --steps 1 -o "$T/x.hft" "$T/w/images.jsonl"
  expect_rc 1 "--device cuda without a GPU fails, not silently on the CPU"
  expect_err "CUDA is not available" "says why"
  [ -e "$T/x.hft" ] && fail "--device cuda without a GPU left a model" || pass "no model written"
fi

# --precision bf16 (autocast on the CPU): trains, the saved model is float32
# and close to the fp32 run's after the same 2 steps
run hfr-train -t 2 --steps 2 --ids 2 --per-modality 1 --seed 5 --precision bf16 --metrics "$T/bf.jsonl" -o "$T/bf.hft" "$T/w/images.jsonl"
expect_rc 0 "--precision bf16 trains"
expect_err "in bf16" "says the precision"
run hfr-train -t 2 --steps 2 --ids 2 --per-modality 1 --seed 5 --metrics "$T/f32.jsonl" -o "$T/f32.hft" "$T/w/images.jsonl"
expect_rc 0 "the same run in fp32"
if $PY - "$T/bf.jsonl" "$T/f32.jsonl" <<'PY' 2>"$T/err"; then pass "bf16 losses within 2 % of fp32's, finite"; else fail "bf16 vs fp32 losses: $(cat "$T/err")"; fi
import json, math, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 2, (len(a), len(b))
for x, y in zip(a, b):
    assert math.isfinite(x["loss"]), x
    assert abs(x["loss"] - y["loss"]) <= 0.02 * abs(y["loss"]), (x["loss"], y["loss"])
    assert "loss_scale" not in x  # bf16: no loss scaling
PY
if hfr-tensor info --json "$T/bf.hft" | $PY -c '
import json, sys
recs = [json.loads(l) for l in sys.stdin]
m = recs[0]["metadata"]
assert m["provenance"]["fine_tuning"]["precision"] == "bf16", m["provenance"]
w = [r for r in recs[1:] if r.get("type") == "tensor" and r["name"].startswith("const/conv") and r["dtype"] != "i64"]
assert w and all(r["dtype"] == "f32" for r in w), [r for r in w if r["dtype"] != "f32"][:3]
' 2>"$T/err"; then pass "bf16 model file: float32 weights, precision in its provenance"; else fail "bf16 model file: $(head -c 600 "$T/err")"; fi

# --layout: auto picks NCHW for the dlib ResNet (no depthwise convolutions) and
# channels-last for MobileFaceNet; either layout trains to the same losses
run hfr-train -t 2 --steps 2 --ids 2 --per-modality 1 --seed 5 --layout channels-last --metrics "$T/cl.jsonl" -o "$T/cl.hft" "$T/w/images.jsonl"
expect_rc 0 "--layout channels-last trains"
run hfr-train -t 2 --steps 1 --ids 2 --per-modality 1 --seed 5 -m mobilefacenet -o "$T/mfn.hft" "$T/w/images.jsonl"
expect_rc 0 "MobileFaceNet trains with --layout auto"
if $PY - "$T/cl.jsonl" "$T/f32.jsonl" "$T/cl.hft" "$T/f32.hft" "$T/mfn.hft" <<'PY' 2>"$T/err"; then pass "layouts: same losses (1e-4), auto = nchw for dlib, channels-last for MobileFaceNet, in the provenance"; else fail "layouts: $(head -c 600 "$T/err")"; fi
import json, subprocess, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 2, (len(a), len(b))
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) <= 1e-4 * abs(y["loss"]), (x["loss"], y["loss"])
def layout(f):
    out = subprocess.run(["hfr-tensor", "info", "--json", f], check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[0])["metadata"]["provenance"]["fine_tuning"]["layout"]
assert [layout(f) for f in sys.argv[3:]] == ["channels-last", "nchw", "channels-last"], [layout(f) for f in sys.argv[3:]]
PY
run hfr-train --layout nhwc --steps 1 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "--layout nhwc is a usage error"

finish
