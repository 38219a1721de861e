#!/usr/bin/env bash
# hfr-train --ssm (switch style modulation, methods.md §4) on a mixture of
# three modalities: the metrics log the routing decisions per block and
# modality, only the blocks train (every other weight stays the base
# model's, byte for byte), the model file carries the routers and hfr-embed
# runs it without being told the modality, a resumed run ends where an
# uninterrupted one does, and bad values are refused.
. "$(dirname "$0")/lib.sh"

unset WORLD_SIZE RANK LOCAL_RANK MASTER_ADDR MASTER_PORT
render_training_pairs
# a third modality: the NIR images again, under another name and id (the
# mechanics of several probe modalities; docs/results.md uses NIR 940 nm)
$PY - "$T/w/images.jsonl" >"$T/w/mix.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(json.dumps(r))
    if r.get("modality") == "NIR":
        r["modality"], r["id"] = "NIRB", r["id"] + "/b"
        print(json.dumps(r))
PY
grep '"spectrum":"nir850"' "$T/w/images.jsonl" | head -6 >"$T/w/few.jsonl"
SSM=(hfr-train -t 1 --ids 4 --per-modality 2 --seed 3 --ssm 3 --lr 0.01 --modalities VIS,NIR,NIRB)

run "${SSM[@]}" --steps 4 --log-every 1 --metrics "$T/m.jsonl" -o "$T/ssm.hft" "$T/w/mix.jsonl"
expect_rc 0 "4 steps with --ssm 3 on VIS, NIR and NIRB"
expect_err "switch style modulation: 2 blocks of 3 experts after" "says where the blocks went"
$PY - "$T/m.jsonl" >"$T/py.out" 2>&1 <<'PY'
import json, math, sys
m = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert len(m) == 4, len(m)
for r in m:
    assert math.isfinite(r["ssm_balance"]) and math.isfinite(r["ssm_teacher"]), r
    assert set(r["routing"]) == {"router_1", "router_2"}, r["routing"]
    for router, per in r["routing"].items():
        assert set(per) == {"VIS", "NIR", "NIRB"}, per
        for mod, frac in per.items():
            assert len(frac) == 3 and abs(sum(frac) - 1) < 1e-9, (router, mod, frac)
    # NIR and NIRB are the same images: routed the same way
    assert r["routing"]["router_1"]["NIR"] == r["routing"]["router_1"]["NIRB"], r["routing"]
# the balance loss is alpha * E * sum f_i P_i >= alpha (at best balanced), per block
assert all(r["ssm_balance"] >= 2 * 0.01 - 1e-6 for r in m), [r["ssm_balance"] for r in m]
assert m[0]["ssm_teacher"] < 1e-5, m[0]  # identity at the start
print("routing at the last step: %s" % json.dumps(m[-1]["routing"]["router_1"]))
PY
[ $? -eq 0 ] && pass "metrics log the routing per block and modality: $(cat "$T/py.out")" || fail "metrics: $(tail -c 400 "$T/py.out")"

hfr-tensor info --json "$T/ssm.hft" | head -1 | $PY -c '
import json, sys
m = json.loads(sys.stdin.readline())["metadata"]
assert set(m["outputs"]) == {"embedding", "router_1", "router_2"}, m["outputs"]
assert m["provenance"]["switch_modulation"]["experts"] == 3
ft = m["provenance"]["fine_tuning"]
assert ft["modalities"] == ["VIS", "NIR", "NIRB"] and ft["switch_modulation"]["backbone"] == "frozen", ft' 2>"$T/py.out" &&
  pass "the model file has the routers and says how it was trained" || fail "model metadata: $(tail -c 300 "$T/py.out")"

# only the blocks trained: every other weight equals dlib's; the blocks moved away from zero
run hfr-embed --save-model "$T/dlib.hft" -m dlib
hfr-tensor info "$T/ssm.hft" 2>/dev/null | grep -o '^  const/[^ ]*' | sed 's/^  //' >"$T/names"
n_same=0 n_moved=0 bad=""
while read -r t; do
  hfr-tensor export --tensor="$t" -o "$T/a.npy" "$T/ssm.hft" || { bad="$bad export:$t"; continue; }
  case $t in
    const/ssm_gamma_* | const/ssm_beta_*)
      $PY -c 'import numpy as np, sys; sys.exit(0 if np.abs(np.load(sys.argv[1])).max() > 0 else 1)' "$T/a.npy" &&
        n_moved=$((n_moved + 1)) || bad="$bad still-zero:$t" ;;
    const/ssm_*) ;;
    *)
      hfr-tensor export --tensor="$t" -o "$T/b.npy" "$T/dlib.hft" && cmp -s "$T/a.npy" "$T/b.npy" && n_same=$((n_same + 1)) ||
        bad="$bad changed:$t" ;;
  esac
done <"$T/names"
[ -z "$bad" ] && [ "$n_same" -gt 50 ] && [ "$n_moved" -eq 4 ] &&
  pass "only the blocks trained: $n_same base tensors byte-identical to dlib's, 4 scale/shift tensors moved" ||
  fail "frozen backbone: same $n_same, moved $n_moved;$bad"

run hfr-embed -q --aligned -m "$T/ssm.hft" -o "$T/e.hft" -r "$T/e.jsonl" "$T/w/few.jsonl"
expect_rc 0 "hfr-embed runs the model with the blocks (no modality given)"
[ "$(grep -c '"embeddings"' "$T/e.jsonl")" -eq 6 ] && pass "an embedding for every face" || fail "records: $(head -c 300 "$T/e.jsonl")"
$PY - "$T/e.jsonl" >"$T/py.out" 2>&1 <<'PY'
import json, sys
e = [json.loads(l)["experts"] for l in open(sys.argv[1])]
assert len(e) == 6 and all(len(k) == 2 and all(0 <= v < 3 for v in k) for k in e), e
print(e)
PY
[ $? -eq 0 ] && pass "each face's record names its expert per block: $(cat "$T/py.out")" || fail "experts: $(tail -c 300 "$T/py.out")"
run hfr-embed -q --aligned -m dlib -o "$T/e0.hft" -r "$T/e0.jsonl" "$T/w/few.jsonl"
! grep -q '"experts"' "$T/e0.jsonl" && pass "no experts from a model without blocks" || fail "dlib records have experts"

# resume: 2 + 2 == 4
run "${SSM[@]}" --steps 2 -o "$T/half.hft" "$T/w/mix.jsonl"
run "${SSM[@]}" --steps 4 --resume "$T/half.hft.state" -o "$T/half.hft" "$T/w/mix.jsonl"
expect_rc 0 "resumed to 4 steps"
C1=$(model_checksum "$T/ssm.hft") C2=$(model_checksum "$T/half.hft")
[ -n "$C1" ] && [ "$C1" = "$C2" ] && pass "resumed --ssm run equals the uninterrupted one ($C1)" || fail "resume differs: $C1 vs $C2"

# stochastic routing (--ssm-noise): trains otherwise than top-1, and resumes exactly too
run "${SSM[@]}" --ssm-noise 1 --steps 4 -o "$T/noisy.hft" "$T/w/mix.jsonl"
expect_rc 0 "4 steps with --ssm-noise 1"
run "${SSM[@]}" --ssm-noise 1 --steps 2 -o "$T/noisy2.hft" "$T/w/mix.jsonl"
run "${SSM[@]}" --ssm-noise 1 --steps 4 --resume "$T/noisy2.hft.state" -o "$T/noisy2.hft" "$T/w/mix.jsonl"
expect_rc 0 "resumed the --ssm-noise run"
C3=$(model_checksum "$T/noisy.hft") C4=$(model_checksum "$T/noisy2.hft")
[ -n "$C3" ] && [ "$C3" = "$C4" ] && pass "resumed --ssm-noise run equals the uninterrupted one" || fail "noisy resume differs: $C3 vs $C4"
[ -n "$C3" ] && [ "$C3" != "$C1" ] && pass "--ssm-noise 1 trains another model than top-1 routing" || fail "noise changed nothing ($C3)"
run "${SSM[@]}" --ssm-noise -1 --steps 1 -o "$T/x.hft" "$T/w/mix.jsonl"
expect_rc 2 "--ssm-noise -1"

# the supervised routing hint (VIS -> expert 0, NIR -> expert 1): its loss is logged and falls,
# the routers learn to tell the modalities apart, the model file says so
run hfr-train -t 1 --ids 4 --per-modality 2 --seed 3 --ssm 2 --lr 0.01 --ssm-route-hint 10 --steps 12 --log-every 1 \
  --metrics "$T/hint.jsonl" -o "$T/hint.hft" "$T/w/images.jsonl"
expect_rc 0 "12 steps with --ssm-route-hint 10"
if $PY - "$T/hint.jsonl" "$T/hint.hft" >"$T/py.out" 2>&1 <<'PY'
import json, subprocess, sys
m = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
h = [r["ssm_route_hint"] for r in m]
assert len(h) == 12 and abs(h[0] - 0.693) < 0.05, h          # two experts at ~1/2 each: log 2
assert max(h[-3:]) < 0.92 * h[0], h                           # and falling
meta = json.loads(subprocess.run(["hfr-tensor", "info", "--json", sys.argv[2]], capture_output=True, text=True,
                                 check=True).stdout.splitlines()[0])["metadata"]
assert meta["provenance"]["fine_tuning"]["switch_modulation"]["route_hint"] == 10, meta["provenance"]["fine_tuning"]
print("hint loss %.3f -> %.3f" % (h[0], h[-1]))
PY
then pass "routing hint: $(cat "$T/py.out")"; else fail "routing hint: $(tail -c 500 "$T/py.out")"; fi
run hfr-train -t 1 --ids 4 --per-modality 2 --steps 1 --ssm-route-hint 1 -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "--ssm-route-hint without blocks"
expect_err "needs switch style modulation" "says why"
run "${SSM[@]}" --ssm-route-hint -1 --steps 1 -o "$T/x.hft" "$T/w/mix.jsonl"
expect_rc 2 "--ssm-route-hint -1"

# a model with blocks trains them again (two modalities now); another expert count is refused
run hfr-train -t 1 --ids 4 --per-modality 2 --steps 1 -m "$T/ssm.hft" -o "$T/again.hft" "$T/w/images.jsonl"
expect_rc 0 "a model with blocks fine-tunes again without --ssm"
run hfr-train -t 1 --ids 4 --per-modality 2 --steps 1 --ssm 2 -m "$T/ssm.hft" -o "$T/x.hft" "$T/w/images.jsonl"
expect_rc 2 "--ssm 2 on a model with 3 experts"
expect_err "3 experts" "says how many it has"

# the example config (its modality names relabelled into the test's)
sed 's/NIR850,NIR940/NIR,NIRB/' "$SRC/examples/configs/ssm-mixture.conf" >"$T/ssm.conf"
run hfr-train -t 1 --config "$T/ssm.conf" --steps 1 --ids 4 --head-steps 0 -o "$T/conf.hft" "$T/w/mix.jsonl"
expect_rc 0 "examples/configs/ssm-mixture.conf"

# bad values
run "${SSM[@]}" --steps 1 --ssm 1 -o "$T/x.hft" "$T/w/mix.jsonl"
expect_rc 2 "--ssm 1"
run "${SSM[@]}" --steps 1 --ssm-at no_such_node -o "$T/x.hft" "$T/w/mix.jsonl"
expect_rc 2 "--ssm-at an unknown node"
expect_err "no_such_node" "names the node"
run hfr-train --steps 1 --ssm-at AddV2_37 -o "$T/x.hft" "$T/w/mix.jsonl"
expect_rc 2 "--ssm-at without --ssm"
run hfr-train --steps 1 --modalities VIS -o "$T/x.hft" "$T/w/mix.jsonl"
expect_rc 2 "--modalities with one name"
run hfr-train --steps 1 --modalities VIS,NIR,VIS -o "$T/x.hft" "$T/w/mix.jsonl"
expect_rc 2 "--modalities naming one twice"
expect_err "VIS is named twice" "says which"
[ ! -e "$T/x.hft" ] && pass "no model written by the refused runs" || fail "x.hft exists"

finish
