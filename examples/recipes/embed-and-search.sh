#!/usr/bin/env bash
# Usage: embed-and-search.sh GALLERY_DIR PROBE_DIR OUTDIR [K]
#
# Embeds every face photo under GALLERY_DIR and under PROBE_DIR (folders are
# searched recursively; the first sub-folder names the subject, as in
# one-folder-per-person layouts) and searches each probe in the gallery.
#
# Writes:  OUTDIR/gallery.hft, gallery.jsonl   gallery embeddings and records
#          OUTDIR/probes.hft,  probes.jsonl    probe embeddings and records
#          OUTDIR/top-k.jsonl                  one record per probe: its K best
#                                              gallery entries (default K = 5)
# Prints:  one line per probe photo on stdout: "PROBE -> BEST_MATCH  SCORE"
#          (cosine similarity; higher is more similar), or why it was not
#          searched (e.g. no face found).
#
# Environment: HFR_BIN (folder of the hfr tools; default: PATH), MODEL
# (hfr-embed --model, default faceres), THREADS (default 0 = all cores).
# Exit status: 0 done, 1 a tool failed, 2 usage error.
set -euo pipefail
BIN=${HFR_BIN:+$HFR_BIN/}
MODEL=${MODEL:-faceres}
THREADS=${THREADS:-0}
me=${0##*/}
say() { printf '%s: %s\n' "$me" "$*" >&2; }
usage() { say "$*"; echo "Usage: $me GALLERY_DIR PROBE_DIR OUTDIR [K]   (see the comment at the top of $0)" >&2; exit 2; }
# run TOOL ARGS...: exit status 3 (some photos failed, e.g. no face) is a warning
run() {
  local rc=0
  "$@" || rc=$?
  [ "$rc" -eq 0 ] && return 0
  [ "$rc" -eq 3 ] && { say "warning: ${1##*/}: some inputs failed (see above); going on with the rest"; return 0; }
  say "${1##*/} failed (exit $rc)"; exit 1
}

if [ $# -lt 3 ] || [ $# -gt 4 ]; then usage "expected 3 or 4 arguments, got $#"; fi
gallery=$1 probes=$2 out=$3 k=${4:-5}
[ -e "$gallery" ] || usage "gallery folder '$gallery' does not exist"
[ -e "$probes" ] || usage "probe folder '$probes' does not exist"
[[ "$k" =~ ^[1-9][0-9]*$ ]] || usage "K must be a positive integer, got '$k'"
for t in hfr-embed hfr-match; do
  command -v "${BIN}$t" >/dev/null || { say "${BIN}$t not found (set HFR_BIN to the folder of the built tools, or put them on PATH)"; exit 1; }
done
mkdir -p "$out"

say "embedding the gallery ($gallery, model $MODEL)"
run "${BIN}hfr-embed" -t "$THREADS" -m "$MODEL" -o "$out/gallery.hft" -r "$out/gallery.jsonl" "$gallery"
grep -q '"row":' "$out/gallery.jsonl" || { say "no face found in any gallery photo under $gallery"; exit 1; }
say "embedding the probes ($probes)"
run "${BIN}hfr-embed" -t "$THREADS" -m "$MODEL" -o "$out/probes.hft" -r "$out/probes.jsonl" "$probes"
grep -q '"row":' "$out/probes.jsonl" || { say "no face found in any probe photo under $probes"; exit 1; }
say "searching: top $k gallery entries per probe -> $out/top-k.jsonl"
run "${BIN}hfr-match" -q -t "$THREADS" -n "$k" -o "$out/top-k.jsonl" "$out/gallery.jsonl" "$out/probes.jsonl"

# The summary, from the JSON lines (the tools write them; no jq needed):
# top-k.jsonl: {"probe":ID,...,"gallery":[ID,...],"score":[S,...],...,"mated":[B,...],...}
awk -v me="$me" '
  function str(key,   s) {  # the JSON string value of key, still escaped
    if (!match($0, "\"" key "\":\"([^\"\\\\]|\\\\.)*\"")) return ""
    s = substr($0, RSTART + length(key) + 4, RLENGTH - length(key) - 5); return s
  }
  FILENAME == ARGV[1] && /"error":/ { printf "%s -> not searched: %s\n", str("id"), str("error"); next }
  FILENAME == ARGV[2] {
    g = ""; if (match($0, /"gallery":\["([^"\\]|\\.)*"/)) g = substr($0, RSTART + 12, RLENGTH - 13)
    s = ""; if (match($0, /"score":\[[^],]*/)) s = substr($0, RSTART + 9, RLENGTH - 9)
    printf "%s -> %s  %.3f\n", str("probe"), g, s
    n++; if ($0 ~ /"mated":\[true/) same++; else if ($0 ~ /"mated":\[false/) diff++
  }
  END { if (same + diff) printf "%s: %d probes searched; best match of the same subject for %d of them\n", me, n, same > "/dev/stderr" }
' "$out/probes.jsonl" "$out/top-k.jsonl"
