#!/usr/bin/env bash
# Every tool: --help, --version, usage errors, "not built yet", and the man
# pages and completions in the repository equal what the binaries generate.
. "$(dirname "$0")/lib.sh"

for t in $TOOLS; do
  run "$t" --help
  expect_rc 0 "$t --help"
  expect_out "Usage: $t" "$t --help prints usage to stdout"
  expect_out "Reads:" "$t --help says what it reads"
  expect_out "Writes:" "$t --help says what it writes"
  expect_empty "$T/err" "$t --help writes nothing to stderr"

  run "$t" --version
  expect_rc 0 "$t --version"
  expect_out "$t (hfr) " "$t --version names tool and package"

  run "$t" --bogus-option
  expect_rc 2 "$t with an unknown option"
  expect_err "$t: unknown option '--bogus-option'" "$t names the unknown option"
  expect_err "Try '$t --help'" "$t points at --help"
  expect_empty "$T/out" "$t usage error writes nothing to stdout"

  run "$t" --threads=lots
  expect_rc 2 "$t --threads=lots"
  expect_err "invalid value 'lots' for --threads" "$t validates --threads"

  printf 'quiet\nbogus = 1\n' >"$T/bad.conf"
  run "$t" --config "$T/bad.conf"
  expect_rc 2 "$t --config with an unknown option"
  expect_err "$T/bad.conf:2: unknown option 'bogus'" "$t names the config file's line"

  run "$t" --generate-man
  if cmp -s "$T/out" "$SRC/man/$t.1"; then pass "man/$t.1 is up to date"; else fail "man/$t.1 differs from '$t --generate-man' (run: make docs)"; fi
  run "$t" --generate-completion=bash
  if cmp -s "$T/out" "$SRC/completions/bash/$t"; then pass "bash completion of $t is up to date"; else fail "completions/bash/$t differs (run: make docs)"; fi
  run "$t" --generate-completion=zsh
  if cmp -s "$T/out" "$SRC/completions/zsh/_$t"; then pass "zsh completion of $t is up to date"; else fail "completions/zsh/_$t differs (run: make docs)"; fi
  # The bash completion is valid bash and offers the tool's options.
  if bash -n "$SRC/completions/bash/$t" 2>/dev/null; then pass "bash completion of $t parses"; else fail "bash completion of $t has a syntax error"; fi
  words=$(bash -c ". '$SRC/completions/bash/$t'; COMP_WORDS=($t --th); COMP_CWORD=1; _${t//-/_}; echo \"\${COMPREPLY[*]}\"")
  [ "$words" = "--threads" ] && pass "bash completes --th to --threads for $t" || fail "bash completion of $t gave '$words' for --th"
done

# --config gives options; the command line wins.
$PY -c "import numpy as np; np.save('$T/a.npy', np.arange(6, dtype=np.float32).reshape(2, 3))"
hfr-tensor import -o "$T/a.hft" "$T/a.npy"
printf '# hfr-tensor info options\njson\n' >"$T/info.conf"
run hfr-tensor info --config "$T/info.conf" "$T/a.hft"
expect_rc 0 "hfr-tensor info --config"
expect_out '"shape":[2,3]' "a flag from the config file (json) applies"
printf 'threads = lots\n' >"$T/t.conf"
run hfr-tensor info --config "$T/t.conf" -t 1 "$T/a.hft"
expect_rc 0 "the command line's --threads wins over the config file's"

# Built tools that need inputs say so when given none.
for t in hfr-embed hfr-match hfr-eval hfr-render hfr-train; do
  run "$t"
  expect_rc 2 "$t without inputs is a usage error"
  expect_empty "$T/out" "$t writes nothing to stdout on a usage error"
done

# The man pages are valid roff (man renders them without warnings).
if command -v man >/dev/null 2>&1 && command -v groff >/dev/null 2>&1; then
  for t in $TOOLS; do
    w=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$SRC/man/$t.1" 2>&1 >/dev/null)
    [ -z "$w" ] && pass "man/$t.1 renders cleanly" || fail "man/$t.1: $w"
  done
fi
finish
