#!/usr/bin/env bash
# Tensor files through real pipes: NumPy arrays -> import -> cat (stream) ->
# cat --dtype f16 (stream) -> export -> NumPy, compared value by value.
. "$(dirname "$0")/lib.sh"

require_numpy

$PY - "$T" <<'PY'
import numpy as np, sys
d = sys.argv[1]
rng = np.random.default_rng(5)
e = rng.standard_normal((2000, 512)).astype(np.float32)
e /= np.linalg.norm(e, axis=1, keepdims=True)
np.save(f"{d}/emb.npy", e)
np.save(f"{d}/ids.npy", np.arange(2000, dtype=np.int64) * 7 - 3)
np.save(f"{d}/img.npy", rng.integers(0, 256, (3, 64, 48), dtype=np.uint8))
np.save(f"{d}/scalar.npy", np.array(3.25, dtype=np.float32))
PY

run hfr-tensor import --metadata '{"source":"test","n":2000}' "$T/emb.npy" "labels=$T/ids.npy" "$T/img.npy" "$T/scalar.npy" -o "$T/a.hft"
expect_rc 0 "import .npy files"

run hfr-tensor info --json "$T/a.hft"
expect_rc 0 "info --json"
expect_out '{"type":"tensor","name":"emb","dtype":"f32","shape":[2000,512],"bytes":4096000}' "info lists emb"
expect_out '"metadata":{"n":2000,"source":"test"}' "info shows metadata"
expect_out '{"type":"tensor","name":"scalar","dtype":"f32","shape":[],"bytes":4}' "info lists a 0-d tensor"

# Through pipes, with stdin/stdout as '-', the stream format end to end.
hfr-tensor cat --level 1 < "$T/a.hft" | hfr-tensor cat - | hfr-tensor cat --dtype f16 | tee "$T/h.hft" | hfr-tensor export --tensor emb -o "$T/emb16.npy"
st=("${PIPESTATUS[@]}")
[ "${st[*]}" = "0 0 0 0 0" ] && pass "pipeline of four tools" || fail "pipeline statuses ${st[*]}"
cat "$T/a.hft" | hfr-tensor export --tensor labels > "$T/ids.out.npy" && pass "export from a pipe to stdout" || fail "export from a pipe"
hfr-tensor export --tensor img "$T/a.hft" -o "$T/img.out.npy" && pass "export u8" || fail "export u8"
hfr-tensor info "$T/h.hft" >"$T/out" && grep -q "emb  f16 \[2000, 512\]" "$T/out" && pass "cat --dtype f16 converts" || fail "f16 conversion: $(cat "$T/out")"
cat "$T/h.hft" | hfr-tensor info - >"$T/out" && grep -q "labels  i64 \[2000\]" "$T/out" && pass "info from a pipe" || fail "info from a pipe"

$PY - "$T" <<'PY'
import numpy as np, sys
d = sys.argv[1]
e = np.load(f"{d}/emb.npy"); e16 = np.load(f"{d}/emb16.npy")
assert e16.dtype == np.float16 and e16.shape == e.shape, (e16.dtype, e16.shape)
assert np.array_equal(e16, e.astype(np.float16)), "f16 conversion differs from NumPy's rounding"
assert np.array_equal(np.load(f"{d}/ids.out.npy"), np.load(f"{d}/ids.npy"))
assert np.array_equal(np.load(f"{d}/img.out.npy"), np.load(f"{d}/img.npy"))
print("ok: values equal NumPy's after the round trip (f16 rounding bit-identical)")
PY
[ $? -eq 0 ] || fail "values after the round trip"

run hfr-tensor verify "$T/a.hft" "$T/h.hft"
expect_rc 0 "verify good files"
expect_out "$T/a.hft: OK (4 tensors)" "verify prints OK"

# The f16 file is about half the size.
a=$(stat -c %s "$T/a.hft"); h=$(stat -c %s "$T/h.hft")
[ $((h * 10)) -lt $((a * 6)) ] && pass "f16 file is smaller ($h vs $a bytes)" || fail "f16 file not smaller: $h vs $a"
# Tensor order survives re-encoding through pipes.
order_a=$(hfr-tensor info --json "$T/a.hft" | grep -o '"name":"[a-z]*"' | tr '\n' ' ')
order_h=$(cat "$T/a.hft" | hfr-tensor cat | hfr-tensor cat | hfr-tensor info --json | grep -o '"name":"[a-z]*"' | tr '\n' ' ')
[ "$order_a" = "$order_h" ] && pass "tensor order kept through two streaming re-encodes" || fail "order '$order_a' became '$order_h'"
finish
