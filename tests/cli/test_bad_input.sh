#!/usr/bin/env bash
# Bad input: exact exit codes and messages, nothing half-written, broken pipes
# and signals handled.
. "$(dirname "$0")/lib.sh"

require_numpy
$PY -c "import numpy as np; np.save('$T/big.npy', np.arange(4_000_000, dtype=np.float32).reshape(-1, 100))"
hfr-tensor import "$T/big.npy" -o "$T/big.hft" || fail "import big"

run hfr-tensor info "$T/missing.hft"
expect_rc 1 "missing file"
expect_err "hfr-tensor: $T/missing.hft: No such file or directory" "missing file is named"

head -c 5000 "$T/big.hft" > "$T/trunc.hft"
run hfr-tensor info "$T/trunc.hft"
expect_rc 1 "truncated file"
expect_err "hfr-tensor: $T/trunc.hft: truncated or corrupt tensor file" "truncation is named"
run bash -c "cat '$T/trunc.hft' | '$BIN/hfr-tensor' cat -"
expect_rc 1 "truncated stream"
expect_err "hfr-tensor: <stdin>: chunk 0 (offset 16): truncated payload" "truncated stream names chunk and offset"

# A corrupted byte in the middle of the data.
cp "$T/big.hft" "$T/bad.hft"
printf '\xff\xff\xff\xff' | dd of="$T/bad.hft" bs=1 seek=300000 conv=notrunc status=none
run hfr-tensor verify "$T/big.hft" "$T/bad.hft"
expect_rc 1 "verify with one corrupt file"
expect_out "$T/big.hft: OK" "verify passes the good file"
expect_out "$T/bad.hft: FAILED" "verify fails the corrupt file"
expect_err "payload checksum mismatch" "verify names the problem"

# Nothing half-written: a failed conversion leaves no output and no temporary.
mkdir "$T/o"
run hfr-tensor cat "$T/bad.hft" -o "$T/o/out.hft"
expect_rc 1 "cat of a corrupt file"
[ -z "$(ls -A "$T/o")" ] && pass "no output or temporary left after a failure" || fail "left behind: $(ls -A "$T/o")"
echo "old" > "$T/o/keep.hft"
hfr-tensor cat "$T/bad.hft" -o "$T/o/keep.hft" 2>/dev/null
[ "$(cat "$T/o/keep.hft")" = "old" ] && pass "an existing output survives a failed run" || fail "existing output overwritten"

# Usage errors: exit 2.
run hfr-tensor export "$T/big.hft"
expect_rc 2 "export without --tensor"
expect_err "export needs --tensor=NAME" "missing --tensor is explained"
run hfr-tensor frobnicate
expect_rc 2 "unknown command"
expect_err "unknown COMMAND 'frobnicate'" "unknown command is named"
run hfr-tensor export --tensor nope "$T/big.hft" -o "$T/x.npy"
expect_rc 1 "export of a missing tensor"
expect_err "no tensor named 'nope'" "missing tensor is named"
run hfr-tensor import --metadata '[1]' "$T/big.npy" -o "$T/x.hft"
expect_rc 2 "metadata not an object"
printf 'not a numpy file' > "$T/junk.npy"
run hfr-tensor import "$T/junk.npy" -o "$T/x.hft"
expect_rc 1 "import of a non-.npy file"
expect_err "$T/junk.npy: not a NumPy .npy file" "junk .npy is named"
[ ! -e "$T/x.hft" ] && pass "failed import writes no file" || fail "failed import left x.hft"
run hfr-tensor info "$T/big.npy"
expect_err "NumPy .npy file, not an hfr tensor file" "a .npy given as tensor file is recognised"

# Broken pipe: quiet, status 0.
hfr-tensor cat "$T/big.hft" 2>"$T/err" | head -c 100 >/dev/null
st=${PIPESTATUS[0]}
[ "$st" -eq 0 ] && pass "broken pipe exits 0" || fail "broken pipe exit $st"
expect_empty "$T/err" "broken pipe prints nothing"

# SIGTERM while writing: the temporary output is removed.
mkfifo "$T/fifo"
mkdir "$T/s"
( hfr-tensor cat "$T/fifo" -o "$T/s/out.hft" 2>/dev/null ) &
pid=$!
exec 3>"$T/fifo"
head -c 100000 "$T/big.hft" >&3
sleep 0.5
[ -n "$(ls -A "$T/s")" ] && pass "temporary exists while writing" || fail "no temporary while writing"
kill -TERM $pid 2>/dev/null
wait $pid 2>/dev/null
exec 3>&-
[ -z "$(ls -A "$T/s")" ] && pass "SIGTERM removes the temporary" || fail "after SIGTERM: $(ls -A "$T/s")"

# Binary output is not written to a terminal.
if command -v script >/dev/null 2>&1; then
  script -qec "$BIN/hfr-tensor cat $T/big.hft" /dev/null > "$T/tty.txt" 2>&1
  grep -q "refusing to write binary data to a terminal" "$T/tty.txt" && pass "refuses binary to a terminal" || fail "binary to terminal: $(head -c 200 "$T/tty.txt")"
fi
finish
