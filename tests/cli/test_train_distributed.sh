#!/usr/bin/env bash
# hfr-train data-parallel (torch.distributed, Gloo) with 2 processes on
# localhost: the environment is checked; the 2 ranks end with bitwise identical
# weights (each prints a checksum of its own); the result matches 1-process
# training with the same global batch (CosFace: embeddings within 1e-4) and
# differs from the base model; only rank 0 writes; batch-norm statistics stay
# in sync (MobileFaceNet from scratch); a SIGTERM to rank 1 alone stops both
# with a state, and the resumed 2-process run ends exactly where an
# uninterrupted one does. Options from --config apply. Needs the fetched npm models (face-api's dlib ResNet);
# runs with face-mesh identities when the ICT FaceKit is absent.
. "$(dirname "$0")/lib.sh"

unset WORLD_SIZE RANK LOCAL_RANK MASTER_ADDR MASTER_PORT
# Set-up: 3 reconstructed + 5 sampled identities, 2 poses, VIS + NIR 850.
render_training_pairs
grep '"spectrum":"nir850"' "$T/w/images.jsonl" | head -6 >"$T/w/few.jsonl"

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# two RANK=0,1 processes of CMD...: stdout/stderr in $T/out0,1 $T/err0,1; status in RC0, RC1
run2() {
  local port
  port=$(free_port)
  WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" >"$T/out0" 2>"$T/err0" &
  local p0=$!
  WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" >"$T/out1" 2>"$T/err1" &
  local p1=$!
  wait $p0; RC0=$?
  wait $p1; RC1=$?
}
weights() { sed -n 's/.*rank [0-9] of 2: weights \([0-9a-f]*\).*/\1/p' "$1"; }
embed() { # model out.npy
  hfr-embed -q --aligned -m "$1" -o "$T/emb.hft" "$T/w/few.jsonl" >/dev/null 2>"$T/emb.err" &&
    hfr-tensor export --tensor embeddings -o "$2" "$T/emb.hft"
}

BASE=(hfr-train -t 1 --per-modality 2 --lr 0.002 --head-lr 0.002 --seed 3 --dist-timeout 120)
TR=("${BASE[@]}" --ids 4)

# ---------------------------------------------------------------------------
# 1. The environment is checked before anything starts.
WORLD_SIZE=2 RANK=0 run "${TR[@]}" --steps 2 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "WORLD_SIZE=2 without MASTER_ADDR"
expect_err "MASTER_ADDR" "names the missing variable"
WORLD_SIZE=2 RANK=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=1234 run "${TR[@]}" --steps 2 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "RANK outside WORLD_SIZE"
expect_err "RANK=2" "names the bad rank"
WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=http run "${TR[@]}" --steps 2 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "a MASTER_PORT that is not a number"
[ ! -e "$T/x.hft" ] && pass "nothing written on environment errors" || fail "x.hft written"
run2 "${BASE[@]}" --ids 3 --steps 2 -o "$T/x.hft" "$T/w/images.jsonl"
[ "$RC0" -eq 2 ] && [ "$RC1" -eq 2 ] && grep -q "cannot be split evenly" "$T/err0" && pass "--ids 3 over 2 processes refused on both ranks" ||
  fail "--ids 3: exit $RC0/$RC1: $(head -c 300 "$T/err0")"

# ---------------------------------------------------------------------------
# 2. CosFace, 3 steps: 2 processes (options from --config) == 1 process
# (options on the command line) with the same global batch.
# (Only the order of float sums differs; training amplifies that quickly: after
# 6 steps even -t 1 against -t 2 on one process differ by ~1e-4.)
run "${TR[@]}" --idmmd 0 --steps 3 -o "$T/one.hft" "$T/w/images.jsonl"
expect_rc 0 "1 process, 3 steps"
# the 2 processes read the same options from a config file (--config)
printf '# hfr-train options\nper-modality = 2\nlr = 0.002\nhead-lr = 0.002\nseed = 3\nids = 4\nidmmd = 0\nsteps = 3\n' >"$T/train.conf"
run2 hfr-train -t 1 --config "$T/train.conf" --dist-timeout 120 --log-every 1 --metrics "$T/two.jsonl" -o "$T/two.hft" "$T/w/images.jsonl"
[ "$RC0" -eq 0 ] && [ "$RC1" -eq 0 ] && pass "2 processes, 3 steps (exit 0 on both)" ||
  fail "2 processes: exit $RC0/$RC1: $(tail -c 300 "$T/err0") / $(tail -c 300 "$T/err1")"
W0=$(weights "$T/err0") W1=$(weights "$T/err1")
[ -n "$W0" ] && [ "$W0" = "$W1" ] && pass "both ranks end with the same weights ($W0)" || fail "rank weights: '$W0' vs '$W1'"
grep -q "fine-tuned" "$T/err0" && ! grep -q "fine-tuned" "$T/err1" && pass "rank 0 reports, rank 1 is quiet" ||
  fail "reports: $(cat "$T/err1")"
$PY - "$T/two.jsonl" >"$T/py.out" 2>&1 <<'PY'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert [r["step"] for r in m] == list(range(3)), m
assert all(r["processes"] == 2 for r in m)
print("loss %.3f -> %.3f" % (m[0]["loss"], m[-1]["loss"]))
PY
[ $? -eq 0 ] && pass "one metrics stream, from rank 0: $(cat "$T/py.out")" || fail "metrics: $(tail -c 300 "$T/py.out")"
if embed "$T/one.hft" "$T/one.npy" && embed "$T/two.hft" "$T/two.npy" && embed dlib "$T/base.npy"; then
  $PY -c "
import numpy as np
a, b, c = np.load('$T/one.npy'), np.load('$T/two.npy'), np.load('$T/base.npy')
assert a.shape == b.shape == c.shape == (6, 128), (a.shape, b.shape)
d, moved = np.abs(a - b).max(), np.abs(a - c).max()
assert d <= 1e-4, d
assert moved > 1e-3, moved
print('max |1 process - 2 processes| %.2g; training moved them by %.3f' % (d, moved))" >"$T/py.out" 2>&1 &&
    pass "same embeddings as 1 process: $(cat "$T/py.out")" || fail "1 vs 2 processes: $(tail -c 300 "$T/py.out")"
else
  fail "hfr-embed: $(head -c 300 "$T/emb.err")"
fi

# ---------------------------------------------------------------------------
# 3. ID-MMD (per rank) and batch normalisation (MobileFaceNet from scratch):
# the ranks stay identical.
run2 "${TR[@]}" --steps 3 -o "$T/mmd.hft" "$T/w/images.jsonl"
W0=$(weights "$T/err0") W1=$(weights "$T/err1")
[ "$RC0" -eq 0 ] && [ "$RC1" -eq 0 ] && [ -n "$W0" ] && [ "$W0" = "$W1" ] && pass "CosFace + ID-MMD: identical ranks ($W0)" ||
  fail "ID-MMD: exit $RC0/$RC1, weights '$W0' vs '$W1': $(tail -c 300 "$T/err0")"
run2 hfr-train -t 1 -m mobilefacenet --optimizer adamw --ids 4 --per-modality 2 --seed 5 --steps 2 --dist-timeout 120 \
  -o "$T/mbf.hft" "$T/w/images.jsonl"
W0=$(weights "$T/err0") W1=$(weights "$T/err1")
[ "$RC0" -eq 0 ] && [ "$RC1" -eq 0 ] && [ -n "$W0" ] && [ "$W0" = "$W1" ] &&
  pass "MobileFaceNet: weights and batch-norm statistics identical on both ranks ($W0)" ||
  fail "MobileFaceNet: exit $RC0/$RC1, weights '$W0' vs '$W1': $(tail -c 300 "$T/err0")"

# ---------------------------------------------------------------------------
# 4. SIGTERM to rank 1 only: both stop at the same step, rank 0 saves the
# state; the resumed run ends exactly where an uninterrupted one does.
port=$(free_port)
WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "${TR[@]}" --steps 100000 --checkpoint-every 2 -o "$T/sig.hft" "$T/w/images.jsonl" \
  >"$T/out0" 2>"$T/err0" &
P0=$!
WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "${TR[@]}" --steps 100000 --checkpoint-every 2 -o "$T/sig.hft" "$T/w/images.jsonl" \
  >"$T/out1" 2>"$T/err1" &
P1=$!
for _ in $(seq 240); do [ -f "$T/sig.hft.state" ] && break; sleep 0.5; done  # the first checkpoint: training runs
kill -TERM $P1
wait $P0; RC0=$?
wait $P1; RC1=$?
[ "$RC0" -eq 1 ] && [ "$RC1" -eq 1 ] && pass "a signal to rank 1 stops both (exit 1)" || fail "after SIGTERM: exit $RC0/$RC1"
grep -q "another rank got a signal" "$T/err0" && grep -q -- "--resume" "$T/err0" && pass "rank 0 says why and how to continue" ||
  fail "rank 0: $(tail -c 300 "$T/err0")"
if [ -f "$T/sig.hft.state" ]; then
  STEP=$(hfr-tensor info --json "$T/sig.hft.state" | $PY -c 'import json,sys; print(json.loads(sys.stdin.readline())["metadata"]["step"])')
  END=$((STEP + 2))
  run2 "${TR[@]}" --steps $END --resume "$T/sig.hft.state" -o "$T/sig.hft" "$T/w/images.jsonl"
  [ "$RC0" -eq 0 ] && [ "$RC1" -eq 0 ] && grep -q "resuming at step $STEP" "$T/err0" && pass "resumed at step $STEP on 2 processes" ||
    fail "resume: exit $RC0/$RC1: $(tail -c 300 "$T/err0")"
  run2 "${TR[@]}" --steps $END -o "$T/straight.hft" "$T/w/images.jsonl"
  C1=$(model_checksum "$T/sig.hft") C2=$(model_checksum "$T/straight.hft")
  [ -n "$C1" ] && [ "$C1" = "$C2" ] && pass "interrupted + resumed == uninterrupted, $END steps (checksum $C1)" ||
    fail "resume differs: $C1 vs $C2"
else
  fail "no state after the signal"
fi

# ---------------------------------------------------------------------------
# 5. The shipped example config runs (one step, the command line overriding it).
run hfr-train -t 1 --config "$SRC/examples/configs/finetune-dlib.conf" --steps 1 --ids 4 --checkpoint-every 0 \
  -o "$T/cfg.hft" "$T/w/images.jsonl"
expect_rc 0 "examples/configs/finetune-dlib.conf"
grep -q '"jitter_px":2.0' <(hfr-tensor info --json "$T/cfg.hft") && pass "its augmentation is recorded in the model's provenance" ||
  fail "provenance lacks the config's jitter"

finish
