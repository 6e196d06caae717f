#!/usr/bin/env bash
# Type-checks lpft with `--features cuda` on a machine without a GPU or a system CUDA: CUDA's
# compiler and headers come from PyPI (scripts/cuda-toolkit.sh), candle's CUDA kernels are
# compiled for CUDA_COMPUTE_CAP (default 90, an H100/H200), and `cargo check` runs over every
# target, tests/it/gpu.rs included. CI's step 5.
#
#   scripts/cuda-check.sh [cargo check options]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(bash scripts/cuda-toolkit.sh)
export PATH="$root/bin:$PATH" CUDA_HOME="$root" CUDA_PATH="$root" CUDA_ROOT="$root"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
cargo check --features cuda --all-targets "$@"
echo "cuda-check: --features cuda type-checks (CUDA $("$root/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm_$CUDA_COMPUTE_CAP)"
