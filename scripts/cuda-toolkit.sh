#!/usr/bin/env bash
# CUDA 13.0's compiler and headers from PyPI, without pip or a system toolkit: the nvcc, nvvm
# (cicc), crt, runtime and cccl wheels, pinned by file name and sha256, fetched from PyPI's
# simple index with curl and unpacked into one CUDA root. Prints that root (bin/nvcc,
# include/, nvvm/) on stdout; everything else goes to stderr. Enough to compile candle's CUDA
# kernels and type-check `--features cuda`; linking and running also need the driver's
# libcuda and cuBLAS/cuRAND (a GPU machine has them).
#
#   scripts/cuda-toolkit.sh [DIR]     (default ${LPFT_CUDA_HOME:-$HOME/.cache/lpft/cuda-13.0})
set -euo pipefail
dest=${1:-${LPFT_CUDA_HOME:-$HOME/.cache/lpft/cuda-13.0}}
root="$dest/nvidia/cu13"
wheels=(
  "nvidia-cuda-nvcc nvidia_cuda_nvcc-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl 56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"
  "nvidia-nvvm nvidia_nvvm-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"
  "nvidia-cuda-crt nvidia_cuda_crt-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl 2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"
  "nvidia-cuda-runtime nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
  "nvidia-cuda-cccl nvidia_cuda_cccl-13.0.85-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649"
)
if [ -f "$dest/.complete" ] && [ -x "$root/bin/nvcc" ]; then
  echo "$root"
  exit 0
fi
[ "$(uname -m)" = x86_64 ] || { echo "cuda-toolkit.sh: the pinned wheels are for x86_64 Linux" >&2; exit 1; }
index=${PIP_INDEX_URL:-https://pypi.org/simple}
mkdir -p "$dest/wheels"
for entry in "${wheels[@]}"; do
  read -r project file sha <<<"$entry"
  wheel="$dest/wheels/$file"
  if ! echo "$sha  $wheel" | sha256sum -c --quiet >/dev/null 2>&1; then
    url=$(curl -fsSL "$index/$project/" | grep -o "https://[^\"#]*/$file" | head -n 1 || true)
    [ -n "$url" ] || { echo "cuda-toolkit.sh: $file is not on $index/$project/" >&2; exit 1; }
    echo "cuda-toolkit.sh: fetching $file" >&2
    curl -fsSL -o "$wheel.part" "$url"
    echo "$sha  $wheel.part" | sha256sum -c --quiet >/dev/null 2>&1 \
      || { echo "cuda-toolkit.sh: $file: sha256 differs from the pinned $sha" >&2; rm -f "$wheel.part"; exit 1; }
    mv "$wheel.part" "$wheel"
  fi
  unzip -qo "$wheel" -d "$dest"
done
"$root/bin/nvcc" --version >&2
touch "$dest/.complete"
echo "$root"
