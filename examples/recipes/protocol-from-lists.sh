#!/usr/bin/env bash
# Usage: protocol-from-lists.sh LIST_DIR IMAGE_ROOT OUTDIR
#
# Evaluates a CASIA NIR-VIS 2.0-style protocol (View 2: NIR probes against a
# VIS gallery, one score matrix per fold, mean ± std over the folds) with the
# tools' built-in protocol support (hfr-match --protocol casia-nir-vis-2.0).
#
# List format (as the database ships them; hfr-match(1) --protocol, and
# libcommon/include/hfr/protocols.hpp): for each fold K (1..10), in LIST_DIR or
# LIST_DIR/protocols,
#   vis_gallery_K.txt   the fold's VIS gallery images
#   nir_probe_K.txt     the fold's NIR probe images
# one image path a line, relative to the database, Windows or Unix separators:
#   s2\VIS\10117\001.jpg
# The path must have a VIS (or NIR) folder; the folder after it is the subject
# id (10117). A second column on a line is ignored; blank lines and lines
# starting with '#' are skipped; CRLF is fine. The folds present are the
# vis_gallery_K.txt files found.
#
# IMAGE_ROOT is the database folder (e.g. NIR-VIS-2.0/, holding s1/ ... s4/).
# Every image under it is embedded once (hfr-embed, recursive); each list
# entry is then found by its path's last components, whatever the file
# extension (the CASIA lists name .jpg files stored as .bmp). A list entry
# without an embedding (a missing image, or one where no face was found) stops
# the run with an error naming the list file and line; KEEP_GOING=1 leaves such
# entries out with a warning instead.
#
# Writes:  OUTDIR/database.hft, database.jsonl   embeddings of every image
#          OUTDIR/foldK.hft                      fold K's probe x gallery scores
#          OUTDIR/report.json, report.txt        hfr-eval report (mean ± std)
#          OUTDIR/plots/protocol-{roc,det,cmc}.{svg,png}
# Prints:  hfr-eval's table (Rank-1, TAR at FAR, EER, ...) on stdout.
#
# Environment: HFR_BIN (folder of the hfr tools; default: PATH), MODEL
# (hfr-embed --model, default faceres), THREADS (default 0 = all cores),
# KEEP_GOING (1: leave out list entries without an embedding).
# Exit status: 0 done, 1 a tool failed, 2 usage error (arguments, paths).
set -euo pipefail
BIN=${HFR_BIN:+$HFR_BIN/}
MODEL=${MODEL:-faceres}
THREADS=${THREADS:-0}
me=${0##*/}
say() { printf '%s: %s\n' "$me" "$*" >&2; }
usage() { say "$*"; echo "Usage: $me LIST_DIR IMAGE_ROOT OUTDIR   (see the comment at the top of $0)" >&2; exit 2; }
# run TOOL ARGS...: exit status 3 (some items failed) is a warning
run() {
  local rc=0
  "$@" || rc=$?
  [ "$rc" -eq 0 ] && return 0
  [ "$rc" -eq 3 ] && { say "warning: ${1##*/}: some items failed (see above); going on with the rest"; return 0; }
  say "${1##*/} failed (exit $rc)${hint:+; $hint}"; exit 1
}
hint=

[ $# -eq 3 ] || usage "expected 3 arguments, got $#"
lists=$1 root=$2 out=$3
[ -d "$lists" ] || usage "list folder '$lists' does not exist"
[ -d "$root" ] || usage "image folder '$root' does not exist"
for t in hfr-embed hfr-match hfr-eval; do
  command -v "${BIN}$t" >/dev/null || { say "${BIN}$t not found (set HFR_BIN to the folder of the built tools, or put them on PATH)"; exit 1; }
done

# the folds: vis_gallery_K.txt in LIST_DIR (or LIST_DIR/protocols), K ascending
folds=$(for f in "$lists"/vis_gallery_*.txt "$lists"/protocols/vis_gallery_*.txt; do
  [ -f "$f" ] || continue
  k=${f##*_}; k=${k%.txt}
  [[ "$k" =~ ^[0-9]+$ ]] && echo "$k"
done | sort -nu)
[ -n "$folds" ] || usage "no vis_gallery_K.txt in '$lists' (or '$lists/protocols')"
for k in $folds; do
  [ -f "$lists/nir_probe_$k.txt" ] || [ -f "$lists/protocols/nir_probe_$k.txt" ] ||
    usage "fold $k: vis_gallery_$k.txt has no nir_probe_$k.txt beside it in '$lists'"
done
keep=()
[ "${KEEP_GOING:-0}" = 1 ] && keep=(--keep-going)
mkdir -p "$out/plots"

say "embedding every image under $root (model $MODEL)"
run "${BIN}hfr-embed" -t "$THREADS" -m "$MODEL" -o "$out/database.hft" -r "$out/database.jsonl" "$root"

inputs=()
for k in $folds; do
  say "fold $k: scoring the NIR probes against the VIS gallery -> $out/fold$k.hft"
  hint="KEEP_GOING=1 leaves list entries without an embedding out"
  run "${BIN}hfr-match" -t "$THREADS" --matrix --protocol casia-nir-vis-2.0 --protocol-dir "$lists" --fold "$k" \
    --ignore-extension ${keep[@]+"${keep[@]}"} -o "$out/fold$k.hft" "$out/database.jsonl"
  hint=
  inputs+=("$out/fold$k.hft")
done

say "evaluating ${#inputs[@]} fold(s) -> $out/report.json, $out/plots/"
run "${BIN}hfr-eval" --name "${MODEL##*/}" --report "$out/report.json" --plot "$out/plots/protocol" "${inputs[@]}" >"$out/report.txt"
cat "$out/report.txt"
